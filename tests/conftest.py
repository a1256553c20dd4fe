"""Shared test setup: float64 everywhere and access to the PRODA reference outputs."""

import os
from pathlib import Path

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)
# the CLI's on-disk compilation cache stays off in tests: hermetic, and nothing written to $HOME
os.environ.setdefault("SOILJAX_CACHE_DIR", "")

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


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module.

    Every compiled XLA CPU program keeps a few memory mappings; the whole
    suite compiles thousands of them, and a single process that keeps them
    all approaches the kernel's limit on mappings per process (65,530 here),
    where XLA crashed while compiling late in the suite.  Modules do not
    share compiled programs, so releasing them costs nothing.
    """
    yield
    import gc

    jax.clear_caches()
    gc.collect()
