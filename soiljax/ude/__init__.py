"""The SOC universal differential equation (UDE) of Raju et al. (2025), in JAX.

Flow: drivers (:mod:`._model`, paper eqs. 8-11) -> :class:`SOCModel` vector field
(advection-diffusion by the method of lines + ``NN_P`` - ``NN_R``) -> diffrax solve
(:func:`solve`) -> loss (:func:`plain_loss`, :func:`noise_aware_loss`) -> Adam + L-BFGS
(:func:`train`) -> metrics and figures (:func:`run_case`, CLI ``soiljax ude``).

The names load on first use (PEP 562), so that ``soiljax --help`` and
``soiljax ude --help`` do not import JAX and diffrax.
"""

_EXPORTS = {
    "._cases": (
        "CASES", "NOISE_AWARE_SMOOTHING", "CaseConfig", "build_problem", "ESTIMATE_FILE",
        "estimate_skeleton", "interval_factor", "load_estimate", "run_case",
    ),
    "._data": (
        "NoiseSpec", "SyntheticData", "clean_truth", "make_synthetic",
    ),
    "._model": (
        "ADJOINTS", "DIFFUSIVITY", "NZ", "T_END", "VELOCITY", "AbstractReactions", "Drivers",
        "INPUT_CENTRE", "INPUT_SCALE", "NeuralReactions", "NoReactions", "RateNet", "ReferenceReactions", "SOCModel",
        "depth_grid", "initial_profile", "make_ude", "solve", "transport", "trapezoid_mass",
    ),
    "._noise": (
        "ar1_noise", "multiplicative", "white_noise",
    ),
    "._train": (
        "FINAL", "initial_roughness", "profile_roughness", "TUNING", "Estimate", "LossWeights",
        "NoiseModel", "NoisyEstimate", "Problem", "SolveOptions", "grid_search", "initial_estimate",
        "noise_aware_loss", "plain_loss", "predict", "r2", "train",
    ),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    import importlib

    if name not in _WHERE:
        raise AttributeError(f"module 'soiljax.ude' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
