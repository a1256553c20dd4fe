"""Shared test setup: float64 everywhere, one compilation cache per test session, and
access to the PRODA reference outputs."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path


def _session_compilation_cache() -> str:
    """Switch JAX's persistent compilation cache on for this test session.

    Compiling (the samplers, the UDE's adjoint, the solvers) is most of the
    suite's time, and many programs are compiled again: by the subprocesses and
    notebook kernels the tests start, by the worker processes of parallel
    calibrations, and after a module releases its programs (see
    ``_release_compiled_programs_when_needed``).  All of them read and write one
    folder: ``$SOILJAX_TEST_CACHE_DIR`` if it is set (set it to keep compiled
    programs between local runs; it is not deleted), otherwise a fresh temporary
    folder, deleted when the session ends.  The variables set here are inherited
    by every process the tests start, and the CLI's own cache
    (``SOILJAX_CACHE_DIR``) points at the same folder, so nothing is written to
    $HOME and every session starts from what this checkout compiles.  The
    cache's keys hold the program, the JAX version and the compile options, so a
    kept folder never serves a program of other code.
    """
    folder = os.environ.get("SOILJAX_TEST_CACHE_DIR")
    if not folder:
        folder = tempfile.mkdtemp(prefix="soiljax-test-xla-")
        os.environ["SOILJAX_TEST_CACHE_DIR"] = folder  # pytest-xdist workers and subprocesses share it
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    os.environ["SOILJAX_CACHE_DIR"] = folder
    # JAX keeps only programs that took >= 1 s to compile by default; the many
    # programs of 0.1-1 s that subprocesses compile again are worth keeping too
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
    return folder


COMPILATION_CACHE = _session_compilation_cache()  # before JAX is imported: JAX reads these at import

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)

import soiljax  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def reference_dir() -> Path:
    """The folder with ``reference_A.npz``: $SOILJAX_REFERENCE_DIR or ../shared/reference."""
    env = os.environ.get("SOILJAX_REFERENCE_DIR")
    return Path(env) if env else REPO.parent / "shared" / "reference"


def reference_forcing(R) -> soiljax.Forcing:
    """Forcing of the reference sites (the reference stores layer-by-month arrays)."""
    t = lambda a: np.swapaxes(a, -1, -2)  # noqa: E731  (site, layer, month) -> (site, month, layer)
    return soiljax.Forcing(
        tsoi=t(R["tsoi"]),
        w_scalar=t(R["w_scalar"]),
        o_scalar=t(R["o_scalar"]),
        fpi_vr=t(R["fpi_vr"]),
        altmax=R["altmax"],
        altmax_lastyear=R["altmax_lastyear"],
        nbedrock=R["nbedrock"],
        cwd_input=R["input_cwd"],
        litr1_input=R["input_litter1"],
        litr2_input=R["input_litter2"],
        litr3_input=R["input_litter3"],
        cellsand=R["cellsand"][:, :, 0],
    )


@pytest.fixture(scope="session")
def reference():
    path = reference_dir() / "reference_A.npz"
    if not path.exists():
        pytest.skip(f"PRODA reference outputs not found at {path} (set SOILJAX_REFERENCE_DIR)")
    return dict(np.load(path))


@pytest.fixture(scope="session")
def ref_forcing(reference):
    return reference_forcing(reference)


def _memory_mappings() -> tuple[int, int]:
    """(memory mappings of this process, the kernel's limit per process); (0, 0) off Linux."""
    try:
        with open("/proc/self/maps", "rb") as fh:
            used = sum(1 for _ in fh)
        limit = int(Path("/proc/sys/vm/max_map_count").read_text())
    except (OSError, ValueError):
        return 0, 0
    return used, limit


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs_when_needed():
    """Drop JAX's in-memory compiled programs after a module, only when needed.

    Every compiled XLA CPU program keeps a few memory mappings.  A single
    process that keeps all the programs of the whole suite approaches the
    kernel's limit on mappings per process (65,530 on the CI machine), and XLA
    crashed while compiling there.  So after each module the count is checked,
    and the programs are released when it passes half the limit; otherwise they
    stay, and later modules reuse them (the models' solvers, for one).  A
    released program that is needed again is read back from the session's
    compilation cache rather than compiled anew.
    """
    yield
    used, limit = _memory_mappings()
    if limit and used > limit // 2:
        import gc

        jax.clear_caches()
        gc.collect()
