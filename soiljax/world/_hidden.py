"""The world's hidden parameter maps: covariates -> true scaled model parameters.

:func:`hidden_parameters` is the truth a learner should recover,
:func:`hidden_map` lists its terms and :func:`standardised_covariates` shows
the covariates as the maps see them.  The "Hidden maps" section of
:mod:`soiljax.world` documents every map.  The world's modules find a model
by name through :func:`model_key` and :func:`model_instance`.
"""

from __future__ import annotations

import numpy as np

from ._catalogue import COVARIATE_STANDARDISATION, COVARIATES
from ._common import check_seed, purpose_rng, sigmoid

MODELS = ("clm5", "compas")
"""Models the world holds a truth for."""

_RHO_RANGE = (0.12, 0.25)
"""Range of COMPAS's rho = p_death_soc tau_decom tau_enz_prod / (tau_enz_decay tau_mic_death) in the world."""

# parameter -> (u_lo, u_hi, ((covariate, sign), ...)): u rises with the covariate for
# sign +1 and falls for sign -1.  Each parameter also gets one seed-chosen covariate
# through a sine, with a small weight.
_HIDDEN: dict[str, dict[str, tuple[float, float, tuple[tuple[str, int], ...]]]] = {
    "clm5": {
        "bio": (0.15, 0.85, (("bio1", +1), ("aridity", +1), ("ph_0_30", +1))),
        "cryo": (0.15, 0.85, (("pzi", +1), ("bio7", +1))),
        "q10": (0.15, 0.85, (("bio1", -1), ("bio4", +1))),
        "efolding": (0.45, 0.9, (("bulk_density_30_100", -1), ("clay_30_100", +1), ("lc_forest", +1))),
        "tau_cwd": (0.15, 0.85, (("bio1", -1), ("bio12", -1))),
        "tau_l1": (0.15, 0.85, (("bio1", -1), ("lc_grass", -1))),
        "tau_l2_l3": (0.15, 0.85, (("lc_forest", +1), ("bio12", -1))),
        "tau_s1": (0.15, 0.85, (("clay_0_30", +1), ("bio1", -1))),
        "tau_s2": (0.1, 0.6, (("clay_0_30", +1), ("cec_0_30", +1), ("ph_0_30", -1))),
        "tau_s3": (0.1, 0.6, (("clay_30_100", +1), ("bio1", -1), ("pzi", +1))),
        "f_l1_s1": (0.15, 0.85, (("npp", +1), ("lc_crop", -1))),
        "f_l2_s1": (0.15, 0.85, (("lc_forest", -1), ("sand_0_30", -1))),
        "f_l3_s2": (0.15, 0.85, (("lc_forest", +1), ("nitrogen_0_30", +1))),
        "f_s1_s2": (0.15, 0.85, (("sand_0_30", -1), ("clay_0_30", +1))),
        "f_s1_s3": (0.15, 0.85, (("clay_30_100", +1), ("bio1", -1))),
        "f_s2_s1": (0.15, 0.85, (("sand_30_100", +1), ("ph_30_100", +1))),
        "f_s2_s3": (0.15, 0.85, (("clay_100_200", +1), ("cec_100_200", +1))),
        "f_s3_s1": (0.15, 0.85, (("ph_30_100", +1), ("bio12", +1))),
        "f_cwd_l2": (0.15, 0.85, (("lc_forest", -1), ("bio1", +1))),
        "w_scaling": (0.3, 0.9, (("aridity", -1), ("bio15", +1))),
        "beta": (0.15, 0.85, (("lc_shrub", +1), ("aridity", -1), ("lc_crop", -1))),
    },
    "compas": {
        "bio": (0.15, 0.85, (("bio1", +1), ("aridity", +1), ("ph_0_30", +1))),
        "cryo": (0.15, 0.85, (("pzi", +1), ("bio7", +1))),
        "q10": (0.1, 0.55, (("bio1", +1), ("bio4", -1))),
        "w_scaling": (0.4, 0.9, (("aridity", -1), ("bio1", -1), ("bio15", +1))),
        "tau_cwd": (0.15, 0.85, (("bio1", -1), ("bio12", -1))),
        "tau_l1": (0.15, 0.85, (("bio1", -1), ("lc_grass", -1))),
        "tau_l2_l3": (0.15, 0.85, (("lc_forest", +1), ("bio12", -1))),
        "tau_assim": (0.15, 0.85, (("bio1", -1), ("ph_0_30", -1))),
        "tau_mic_death": (0.15, 0.85, (("bio1", -1), ("nitrogen_0_30", +1))),
        "tau_enz_prod": (0.15, 0.85, (("nitrogen_0_30", -1), ("ph_0_30", +1))),
        # tau_enz_decay is tied to four others through rho (see _RHO_RANGE): this row maps rho
        "tau_enz_decay": _RHO_RANGE + ((("bio1", -1), ("clay_0_30", +1)),),
        "tau_decom": (0.15, 0.85, (("clay_0_30", +1), ("cec_0_30", +1))),
        "km_assim": (0.15, 0.85, (("clay_0_30", +1), ("bulk_density_0_30", +1))),
        "km_decom": (0.1, 0.6, (("bio1", -1), ("clay_30_100", +1), ("cec_30_100", +1))),
        "f_cwd_l2": (0.15, 0.85, (("lc_forest", -1), ("bio1", +1))),
        "p_l1_doc": (0.15, 0.85, (("bio12", +1), ("sand_0_30", +1))),
        "p_l2_doc": (0.15, 0.85, (("bio12", +1), ("lc_grass", +1))),
        "p_l3_soc": (0.15, 0.85, (("clay_0_30", +1), ("cec_0_30", +1))),
        "cue_l1": (0.15, 0.85, (("bio1", -1), ("nitrogen_0_30", +1))),
        "cue_l2_l3": (0.15, 0.85, (("bio1", -1), ("ph_0_30", +1))),
        "cue_doc": (0.15, 0.85, (("bio1", -1), ("nitrogen_0_30", +1), ("ph_0_30", +1))),
        "p_death_soc": (0.15, 0.85, (("clay_0_30", +1), ("cec_0_30", +1))),
        "beta": (0.15, 0.85, (("lc_shrub", +1), ("aridity", -1), ("lc_crop", -1))),
    },
}
_HIDDEN_GAIN = 1.3  # root-sum-square of the weights: the sigmoid's argument has a spread of about 1
_TRANSFORMS = ("identity", "tanh", "sin")


def _model_key(model) -> str:
    from .._registry import model_name

    try:
        key = model_name(model)
    except (TypeError, ValueError):
        key = None
    if key not in _HIDDEN:
        raise ValueError(f"unknown model {model!r}; the world has hidden parameters for {', '.join(MODELS)}")
    return key


def _model_instance(key: str):
    from .._registry import model

    return model(key)


def model_key(model) -> str:
    """The world's name of ``model`` ('clm5' or 'compas', or a model object): the key of its truth and files."""
    return _model_key(model)


def model_instance(key: str):
    """A model object (default options) of the world's model named ``key`` (a :func:`model_key`)."""
    return _model_instance(key)


def _standardise(covariates: np.ndarray) -> np.ndarray:
    x = np.array(covariates, dtype=float, copy=True)
    for j, name in enumerate(COVARIATES):
        offset, centre, scale = COVARIATE_STANDARDISATION[name]
        if offset is not None:
            x[..., j] = np.log(np.maximum(x[..., j], 0.0) + offset)
        x[..., j] = (x[..., j] - centre) / scale
    return x


def hidden_map(model: str, *, seed: int = 0) -> list[dict]:
    """The terms of the hidden map of each parameter of ``model`` ('clm5' or 'compas').

    One dict per parameter (in the model's order) with ``name``, ``u_range``
    (lo, hi), ``intercept`` and ``terms``: a list of (covariate, transform,
    weight, phase) where transform is 'identity', 'tanh' or 'sin' and the
    phase is used by 'sin' only.  See :func:`hidden_parameters`.
    """
    key = _model_key(model)
    seed = check_seed(seed)
    names = _model_instance(key).param_names
    spec = _HIDDEN[key]
    out = []
    for name in names:
        lo, hi, named = spec[name]
        rng = purpose_rng(seed, "hidden", key, name)
        terms = []
        for cov, sign in named:
            transform = _TRANSFORMS[int(rng.integers(0, 2))]  # monotone: identity or tanh
            terms.append([cov, transform, float(sign * rng.uniform(0.6, 1.0)), 0.0])
        used = {cov for cov, _ in named}
        free = [c for c in COVARIATES if c not in used]
        extra = free[int(rng.integers(0, len(free)))]
        terms.append([extra, "sin", float(rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.4)),
                      float(rng.uniform(0.0, 2.0 * np.pi))])
        norm = np.sqrt(sum(t[2] ** 2 for t in terms))
        for t in terms:
            t[2] *= _HIDDEN_GAIN / norm
        out.append(dict(name=name, u_range=(lo, hi), intercept=float(rng.uniform(-0.3, 0.3)),
                        terms=[tuple(t) for t in terms]))
    return out


def hidden_parameters(model, covariates, *, seed: int = 0) -> np.ndarray:
    """The true scaled parameters u of ``model`` from covariates: the world's hidden map.

    Parameters
    ----------
    model:
        ``"clm5"`` or ``"compas"`` (or a :class:`soiljax.CLM5` / :class:`soiljax.COMPAS`).
    covariates:
        (..., 60) in the order of :data:`COVARIATES`, in :data:`COVARIATE_UNITS`.
    seed:
        Seed of the map's weights (:func:`synthetic_world` uses its own seed).

    Returns
    -------
    numpy.ndarray
        (..., n_params) in (0, 1): ``u_k = lo_k + (hi_k - lo_k) sigmoid(a_k +
        sum_j w_kj s_kj(x'_j))`` with x' the standardised covariates
        (:func:`standardised_covariates`) and s in {identity, tanh, sin}; the
        terms are those of :func:`hidden_map`.  Smooth in every covariate.
    """
    key = _model_key(model)
    x = np.asarray(covariates, dtype=float)
    if x.shape[-1:] != (len(COVARIATES),):
        raise ValueError(
            f"covariates must have shape (..., {len(COVARIATES)}) in the order of soiljax.world.COVARIATES; "
            f"got {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x.reshape(-1, x.shape[-1])))[0]
        raise ValueError(
            f"covariates contain NaN or inf (row {bad[0]}, covariate {COVARIATES[bad[1]]!r}); "
            "hidden parameters exist on land only: drop ocean cells (the grid's NaN) first"
        )
    xs = _standardise(x)
    index = {c: j for j, c in enumerate(COVARIATES)}
    out = []
    for p in hidden_map(key, seed=seed):
        arg = np.full(x.shape[:-1], p["intercept"])
        for cov, transform, weight, phase in p["terms"]:
            v = xs[..., index[cov]]
            if transform == "tanh":
                v = np.tanh(v)
            elif transform == "sin":
                v = np.sin(v + phase)
            arg = arg + weight * v
        lo, hi = p["u_range"]
        out.append(lo + (hi - lo) * sigmoid(arg))
    u = np.stack(out, axis=-1)
    if key == "compas":
        u = _tie_enzyme_decay(u)
    return u


def _tie_enzyme_decay(u: np.ndarray) -> np.ndarray:
    """Replace COMPAS's tau_enz_decay column (which holds rho on entry) by the u that gives
    that rho with the other four parameters, softly kept inside (0.05, 0.95)."""
    from .._params import COMPAS_SPACE

    ix = {n: i for i, n in enumerate(COMPAS_SPACE.names)}
    lo, hi = COMPAS_SPACE.lo, COMPAS_SPACE.hi

    def phys(name):
        k = ix[name]
        return lo[k] + u[..., k] * (hi[k] - lo[k])

    rho = u[..., ix["tau_enz_decay"]]
    tau = phys("p_death_soc") * phys("tau_decom") * phys("tau_enz_prod") / (rho * phys("tau_mic_death"))
    k = ix["tau_enz_decay"]
    raw = (np.log10(tau) - lo[k]) / (hi[k] - lo[k])
    out = u.copy()
    out[..., k] = 0.5 + 0.45 * np.tanh((raw - 0.5) / 0.45)
    return out


def standardised_covariates(covariates) -> np.ndarray:
    """Covariates as the hidden maps see them: log-transformed where the table says so,
    then centred and scaled by fixed constants (:data:`COVARIATE_STANDARDISATION`)."""
    x = np.asarray(covariates, dtype=float)
    if x.shape[-1:] != (len(COVARIATES),):
        raise ValueError(f"covariates must have shape (..., {len(COVARIATES)}); got {x.shape}")
    return _standardise(x)
