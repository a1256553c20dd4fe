"""The notebooks under notebooks/: they execute from top to bottom at a small size, and
the committed ones carry the outputs of one full-size run.

Every notebook starts with a code cell tagged ``parameters`` (papermill's convention)
that sets ``SIZE`` from the environment variable ``SOILJAX_NOTEBOOK_SIZE`` ("full",
the default, or "small"); the next code cell checks it, derives every expensive size
from it and prints ``notebook size: <SIZE> ...``.  The slow test runs each notebook
with ``SOILJAX_NOTEBOOK_SIZE=small``; the fast tests read the committed files only.
"""

import ast
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
IDS = [p.name for p in NOTEBOOKS]
SIZE_VARIABLE = "SOILJAX_NOTEBOOK_SIZE"

# calls whose cell shows something; calls that make one figure each, which the cell must show;
# pyplot calls that draw into a (new or current) figure
PRINTING = {"print", "display"}
NEW_FIGURE = re.compile(r"^plt\.(subplots|figure)$|_figure$|^Image$")
PYPLOT_DRAWING = re.compile(r"^plt\.(plot|bar|hist|scatter|imshow|pcolormesh)$")
# outputs must not give away where the notebook ran
MACHINE_PATH = re.compile(r"/tmp/|/work/|/home/|/root/|/Users/|/private/var/|site-packages|\b[A-Z]:\\[A-Za-z]")


def _code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _source(cell):
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def _call_names(source):
    """Dotted names of every function called in ``source`` (``print``, ``plt.subplots``, ``L.maps_figure``)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            parts, f = [], node.func
            while isinstance(f, ast.Attribute):
                parts.append(f.attr)
                f = f.value
            if isinstance(f, ast.Name):
                parts.append(f.id)
            names.append(".".join(reversed(parts)))
    return names


def _figures_made(source):
    """How many figures the cell makes at least: one per call that makes a figure
    (``plt.subplots``, ``L.maps_figure``, ``Image``; a call in a loop counts once), or
    one if it only draws with pyplot."""
    names = _call_names(source)
    made = sum(bool(NEW_FIGURE.search(n) or NEW_FIGURE.search(n.rsplit(".", 1)[-1])) for n in names)
    return made or int(any(PYPLOT_DRAWING.search(n) for n in names))


def _shows_something(source):
    """Whether the cell must leave an output: it prints, displays or draws, or ends in an
    expression (not silenced with ``;``) whose value Jupyter shows."""
    if _figures_made(source) or any(n in PRINTING for n in _call_names(source)):
        return True
    body = ast.parse(source).body
    if not body or not isinstance(body[-1], ast.Expr) or source.rstrip().endswith(";"):
        return False
    last = body[-1].value  # plt.show() and plt.close() return None, which Jupyter does not show
    return not (isinstance(last, ast.Call) and _call_names(ast.unparse(last))[0] in {"plt.show", "plt.close"})


def _text(output):
    if output["output_type"] == "stream":
        return "".join(output["text"])
    if output["output_type"] == "error":
        return "\n".join(output.get("traceback", [])) + output.get("evalue", "")
    plain = output.get("data", {}).get("text/plain", "")
    return plain if isinstance(plain, str) else "".join(plain)


def _size_cells(nb):
    """The parameters cell and the sizes cell right after it."""
    code = _code_cells(nb)
    tagged = [i for i, c in enumerate(code) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert tagged == [0], "the first code cell, and only it, must carry the tag 'parameters'"
    return code[0], code[1]


def check_outputs(nb, size):
    """The outputs of a run at ``size`` from top to bottom: returns a list of problems."""
    problems = []
    code = _code_cells(nb)
    counts = [c.get("execution_count") for c in code]
    if counts != list(range(1, len(code) + 1)):
        problems.append(f"execution counts {counts}: not one run from top to bottom")
    for i, c in enumerate(code):
        src, outs = _source(c), c.get("outputs", [])
        head = src.strip().splitlines()[0] if src.strip() else ""
        for o in outs:
            if o["output_type"] == "error":
                problems.append(f"code cell {i} ({head}): {o['ename']}: {o['evalue']}")
            elif MACHINE_PATH.search(_text(o)):
                problems.append(f"code cell {i} ({head}): output names a path of the machine: {_text(o)[:300]!r}")
        if _shows_something(src) and not outs:
            problems.append(f"code cell {i} ({head}): no saved output")
        shown = sum("image/png" in o.get("data", {}) for o in outs)
        if shown < _figures_made(src):
            problems.append(f"code cell {i} ({head}): makes {_figures_made(src)} figure(s) but shows {shown}")
    sizes = "".join(_text(o) for o in code[1].get("outputs", []) if o["output_type"] == "stream")
    if f"notebook size: {size}" not in sizes:
        problems.append(f"the sizes cell printed {sizes.strip()!r}, not 'notebook size: {size} ...'")
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_executes_small(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv(SIZE_VARIABLE, "small")  # the kernel inherits this process's environment
    nb = nbformat.read(path, as_version=4)
    for c in nb.cells:  # the saved full-size outputs must not count
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    assert check_outputs(nb, "small") == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_notebook_has_full_size_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    params, sizes = _size_cells(nb)
    assert SIZE_VARIABLE in _source(params) and "SIZE =" in _source(params)
    assert "notebook size:" in _source(sizes)
    assert check_outputs(nb, "full") == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_size_cells_read_the_environment(path, monkeypatch, capsys):
    """The two size cells alone (plain Python): full by default, small on request, else a ValueError."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    params, sizes = (_source(c) for c in _size_cells(nb))

    def run():
        ns = {}
        exec(compile(params, "parameters", "exec"), ns)
        exec(compile(sizes, "sizes", "exec"), ns)
        return ns["SIZE"], capsys.readouterr().out

    monkeypatch.delenv(SIZE_VARIABLE, raising=False)
    assert run()[0] == "full"
    monkeypatch.setenv(SIZE_VARIABLE, "small")
    size, printed = run()
    assert size == "small" and printed.startswith("notebook size: small")
    monkeypatch.setenv(SIZE_VARIABLE, "medium")
    with pytest.raises(ValueError, match="'full'.*'small'"):
        run()


def test_output_checks_catch_problems():
    """check_outputs itself: a silent figure cell, an error, a machine path, a small-size run."""
    def cell(src, outputs, n):
        return {"cell_type": "code", "source": src, "execution_count": n, "metadata": {}, "outputs": outputs}

    stream = lambda text: {"output_type": "stream", "name": "stdout", "text": text}  # noqa: E731
    image = {"output_type": "display_data", "data": {"image/png": "", "text/plain": "<Figure>"}, "metadata": {}}
    good = [cell("import os\nSIZE = 'full'", [], 1), cell("print('notebook size: full')", [stream("notebook size: full\n")], 2),
            cell("import numpy as np\nx = np.ones(3)", [], 3), cell("fig, ax = plt.subplots()\nax.plot([1])", [image], 4),
            cell("display(L.maps_figure(maps))", [image], 5), cell("L.latitude_figure(maps);", [image], 6)]
    assert check_outputs({"cells": good}, "full") == []
    assert len(check_outputs({"cells": good}, "small")) == 1
    bad = list(good)
    bad[3] = cell("fig, ax = plt.subplots()\nax.plot([1])", [], 4)
    bad[4] = cell("display(L.maps_figure(maps))", [image, stream("saved to C:\\Users\\me\\maps.png\n")], 5)
    bad[5] = cell("x", [{"output_type": "error", "ename": "NameError", "evalue": "x", "traceback": []}], 6)
    problems = check_outputs({"cells": bad}, "full")
    assert [p.split(":")[0] for p in problems] == ["code cell 3 (fig, ax = plt.subplots())"] * 2 + [
        "code cell 4 (display(L.maps_figure(maps)))", "code cell 5 (x)"], problems
    assert "no saved output" in problems[0] and "shows 0" in problems[1] and "path" in problems[2]
    assert "NameError" in problems[3]
    two = cell("display(L.latitude_figure(maps))\ndisplay(L.comparison_figure(a, b))", [image, stream("(<Figure>, {})")], 3)
    assert "makes 2 figure(s) but shows 1" in check_outputs({"cells": good[:2] + [two]}, "full")[0]
    assert check_outputs({"cells": good[:2] + [cell("for f in names:\n    display(Image(f))", [image] * 3, 3)]}, "full") == []
    assert check_outputs({"cells": good[:2] + [cell("plt.plot(x)\nplt.show()", [], 3)]}, "full")  # pyplot drew, nothing shown
    assert check_outputs({"cells": good[:2] + [cell("x + 1", [], 3)]}, "full")  # an expression's value is missing
    for where in ["/tmp/tmpab12/case4", "/work/venv/lib/python3.11/site-packages/tqdm/auto.py", "/home/me/x"]:
        assert "path of the machine" in check_outputs({"cells": good[:2] + [cell("print(p)", [stream(where)], 3)]}, "full")[0]
    assert check_outputs({"cells": good[:2] + [cell("plt.close(fig)", [], 3)]}, "full") == []
    assert check_outputs({"cells": good[:2] + [cell("x = 1", [], 4)]}, "full")  # not one run from top to bottom
