"""soiljax: JAX-accelerated, differentiable soil organic carbon models.

The package loads its parts on first use (PEP 562): ``import soiljax`` and
``soiljax --help`` do not import JAX, and ``soiljax.CLM5`` or
``from soiljax import io`` import what they need when asked for.
"""

import os as _os
import sys as _sys

# Steady states of these models reach condition numbers of 1e14: float64 is
# the default.  Set SOILJAX_ENABLE_X64=0 before importing to keep JAX's float32.
# JAX reads JAX_ENABLE_X64 when it is imported; if it already is, set the flag.
if _os.environ.get("SOILJAX_ENABLE_X64", "1") != "0":
    if "jax" in _sys.modules and hasattr(_sys.modules["jax"], "config"):
        _sys.modules["jax"].config.update("jax_enable_x64", True)
    else:
        _os.environ["JAX_ENABLE_X64"] = "1"

try:
    from importlib.metadata import version as _version

    __version__ = _version("soiljax")
except Exception:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

_EXPORTS = {
    "._batch": ("batched_steady_state", "site_mesh"),
    "._diagnostics": ("COMPONENT_UNITS", "soc_stock", "system_components"),
    "._forcing": ("FORCING_UNITS", "FORCING_VARIABLES", "Forcing", "ForcingError", "PlausibilityWarning"),
    "._grid": ("DZ", "N_LAYERS", "ZISOI", "ZSOI"),
    "._models": ("CLM5", "COMPAS", "AbstractSoilModel", "SteadyState"),
    "._observations": ("ObservationError", "Observations"),
    "._options": ("MODELS",),
    "._params": ("CLM5_SPACE", "COMPAS_SPACE", "ParamSpace"),
    "._registry": ("model",),
    "._simulate": ("simulate_to_file",),
    "._transient": ("transient", "vector_field"),
    ".io": ("read_forcing", "read_observations", "read_params", "write_forcing", "write_observations",
            "write_params"),
    ".synthetic": ("synthetic_observations", "synthetic_sites"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
_SUBMODULES = ("calibration", "cli", "dutch", "io", "learning", "synthetic", "ude", "world")

__all__ = sorted(_WHERE) + list(_SUBMODULES)


def __getattr__(name: str):
    import importlib

    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module("." + name, __name__)
    else:
        raise AttributeError(f"module 'soiljax' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
