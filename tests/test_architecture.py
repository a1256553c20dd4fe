"""The shape of the package, read from its source with ``ast`` (nothing is imported).

Two rules keep soiljax easy to change:

- no import cycles between its modules (imports inside functions count: a
  deferred import hides a cycle from Python, not from a reader);
- no module imports another module's private name (``from m import _x`` or
  ``m._x``): what several modules share gets a public name in a documented
  internal module (such as ``soiljax.io._netcdf`` or ``soiljax._sites``).

A module's imports of its own parent packages (``from .. import __version__``)
are not edges: a package's ``__init__`` may re-export its children.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "soiljax"


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package ``__init__``) of every module of soiljax."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


MODULES = _modules()


def _target(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name of the module a ``from ... import`` reads from."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _is_parent(module: str, other: str) -> bool:
    return module.startswith(other + ".")


def _scan(sources: dict[str, str] | None = None):
    """(imports: module -> set of soiljax modules it imports, private: [(module, source, name)]).

    ``sources`` replaces the text of some modules (to test the rules on a few lines)."""
    imports: dict[str, set[str]] = {m: set() for m in MODULES}
    private = []
    for module, (path, is_package) in MODULES.items():
        text = (sources or {}).get(module)
        tree = ast.parse(path.read_text() if text is None else text, filename=str(path))
        aliases = {}  # local name -> soiljax module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _target(module, is_package, node)
                if target != "soiljax" and not target.startswith("soiljax."):
                    continue
                for alias in node.names:
                    submodule = f"{target}.{alias.name}"
                    if submodule in MODULES:  # from package import module
                        imports[module].add(submodule)
                        aliases[alias.asname or alias.name] = submodule
                        continue
                    imports[module].add(target)
                    if _is_private(alias.name) and target != module and not _is_parent(module, target):
                        private.append((module, target, alias.name))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("soiljax"):
                        imports[module].add(alias.name)
                        if alias.asname:
                            aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and _is_private(node.attr) and f"{aliases[node.value.id]}.{node.attr}" not in MODULES):
                private.append((module, aliases[node.value.id], node.attr))
    for module in imports:
        imports[module] = {m for m in imports[module] if m in MODULES and m != module and not _is_parent(module, m)}
    return imports, sorted(set(private))


IMPORTS, PRIVATE = _scan()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _path(graph, start: str, members: set[str]) -> list[str]:
    """A shortest cycle through ``start`` inside ``members``, as a list of modules (for the message)."""
    came_from = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                path = [v]
                while came_from[path[-1]] is not None:
                    path.append(came_from[path[-1]])
                return path[::-1] + [start]
            if w not in came_from:
                came_from[w] = v
                queue.append(w)
    return [start]


def test_the_scan_sees_the_package():
    assert "soiljax.io" in MODULES and "soiljax._forcing" in MODULES
    assert "soiljax._forcing" in IMPORTS["soiljax._batch"]  # a top-level relative import
    assert "soiljax._diagnostics" in IMPORTS["soiljax._simulate"]  # an import inside a function


def test_no_import_cycles():
    cycles = _cycles(IMPORTS)
    messages = [
        f"modules {', '.join(c)} import one another ({' -> '.join(_path(IMPORTS, c[0], set(c)))}); make the "
        "dependency one-way: move what both need into a lower module (a documented internal module) that "
        "imports neither"
        for c in cycles
    ]
    assert not cycles, "\n".join(messages)


def test_no_module_imports_another_modules_private_name():
    messages = [
        f"{module} imports the private name {name} of {source}; give it a public name (no leading "
        f"underscore) in a documented internal module and import that"
        for module, source, name in PRIVATE
    ]
    assert not PRIVATE, "\n".join(messages)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from ..io import _open\n", [("soiljax.learning._maps", "soiljax.io", "_open")]),
        ("from .. import io\nio._write(ds, path)\n", [("soiljax.learning._maps", "soiljax.io", "_write")]),
        ("from ._train import _provenance as p\n",
         [("soiljax.learning._maps", "soiljax.learning._train", "_provenance")]),
        ("from ..io._netcdf import write_dataset as _write\n", []),  # a public name under a private alias
        ("from .. import __version__\n", []),  # a dunder of the parent package
    ],
)
def test_the_private_name_rule(source, expected):
    """The rule on a few lines read as if they were soiljax.learning._maps (the file is not touched)."""
    _, private = _scan({"soiljax.learning._maps": source})
    assert [p for p in private if p[0] == "soiljax.learning._maps"] == expected


def test_the_cycle_rule_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _path(graph, "a", {"a", "b", "c"}) == ["a", "b", "c", "a"]
    imports, _ = _scan({"soiljax._grid": "from .io import forcing\n"})  # io.forcing imports _grid
    assert any("soiljax._grid" in c and "soiljax.io.forcing" in c for c in _cycles(imports))



# --------------------------------------------------------------------------
# benchmarks/ use the public API only
# --------------------------------------------------------------------------

BENCHMARKS = PACKAGE.parent / "benchmarks"


def _benchmark_private_uses(text: str) -> list[str]:
    """The private soiljax names a script uses: a module with a private part
    (``soiljax._batch``, ``soiljax.ude._model``), a private name imported from soiljax
    (``from soiljax import _plots``) or a private attribute of a soiljax module or of a
    name imported from one (``soiljax._parts``, ``io._write``)."""
    found = []
    bound = set()  # local names bound to soiljax modules or names
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "soiljax":
            if any(_is_private(part) for part in node.module.split(".")):
                found.append(f"line {node.lineno}: from {node.module} import ...")
            for alias in node.names:
                if _is_private(alias.name):
                    found.append(f"line {node.lineno}: {alias.name} of {node.module}")
                bound.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "soiljax":
                    if any(_is_private(part) for part in alias.name.split(".")):
                        found.append(f"line {node.lineno}: import {alias.name}")
                    bound.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in bound:
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_benchmark_scripts_use_public_names_only():
    scripts = sorted(BENCHMARKS.glob("*.py"))
    assert scripts, BENCHMARKS
    messages = [
        f"{path.relative_to(PACKAGE.parent)} uses the private soiljax name at {use}; benchmarks use the public "
        "API only: give what they need a public, documented name in the library"
        for path in scripts
        for use in _benchmark_private_uses(path.read_text())
    ]
    assert not messages, "\n".join(messages)


@pytest.mark.parametrize(
    "source, n_found",
    [
        ("from soiljax._batch import batched_steady_state\n", 1),
        ("from soiljax.ude._model import INPUT_SCALE\n", 1),
        ("from soiljax import _plots\n", 1),
        ("import soiljax._parts\n", 1),
        ("import soiljax\nsoiljax._parts.parts_dir(p)\n", 1),
        ("from soiljax import io\nio._netcdf.write_dataset(ds, p)\n", 1),
        ("from soiljax.learning import evaluate\nevaluate._cache\n", 1),
        ("import soiljax\nfrom soiljax.io import write_covariates\nsoiljax.__version__\n", 0),
        ("import numpy as np\nnp._core\n", 0),  # not soiljax
    ],
)
def test_the_benchmark_rule(source, n_found):
    assert len(_benchmark_private_uses(source)) == n_found, _benchmark_private_uses(source)
