"""The paper's six experiments (its Tables 2-7) and how soiljax runs and reports them.

What each case means here
-------------------------
The data set of every case is the depth-time field of eq. 12: 51 yearly SOC profiles
(t = 0 ... 50 yr, 30 nodes) and the drivers, with the case's noise.  The cases differ in
their *focus* profile, which carries the eq.-16 loss weight ``lambda_term`` and on which
the case is evaluated:

* cases 1-3 (initial focus, ``t = 0``): the ``t = 0`` profile is an observation like any
  other, so the initial state of the UDE is unknown and estimated together with the
  networks (30 log-concentrations, started at the observed profile).  The question is
  how well the UDE recovers the true initial profile; with noise, the later profiles
  constrain it through the dynamics.
* cases 4-6 (terminal focus, ``t = 50``): the initial profile is the known eq.-8 profile
  (paper eq. 5) and the question is how well the UDE predicts the terminal profile.

Noise (paper eq. 13 and the case tables): drivers carry multiplicative AR-1 noise over
depth (rho = 0.5); SOC observations carry independent multiplicative Gaussian noise, and
in case 6 AR-1 noise over depth (the paper: "spatially correlated across depth").
Seeds are fixed per case (``seed = 100 + case``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._data import NoiseSpec, SyntheticData, make_synthetic
from ._model import NZ, initial_profile, make_ude
from ._train import (
    FINAL,
    PAPER_GRID,
    Estimate,
    LossWeights,
    NoiseModel,
    NoisyEstimate,
    Problem,
    SolveOptions,
    grid_search,
    initial_estimate,
    mse,
    noise_aware_loss,
    perturbed_ensemble,
    plain_loss,
    predict,
    r2,
    train,
)


@dataclasses.dataclass(frozen=True)
class CaseConfig:
    """One experiment: data, noise, network, optimiser and loss weights."""

    case: int
    focus: str  # "initial" (t = 0) or "terminal" (t = 50)
    eta: float
    rho_drivers: float
    rho_soc: float
    h1: int
    h2: int
    activation: str
    lr: float
    adam_iters: int
    bfgs_iters: int
    weights: LossWeights

    @property
    def noise(self) -> NoiseSpec:
        eta = self.eta
        return NoiseSpec(eta, self.rho_drivers if eta else 0.0, eta,
                         self.rho_soc if eta else 0.0, seed=100 + self.case)

    @property
    def focus_time(self) -> float:
        return 0.0 if self.focus == "initial" else 50.0


CASES: dict[int, CaseConfig] = {
    1: CaseConfig(1, "initial", 0.0, 0.5, 0.0, 32, 16, "tanh", 3e-3, 200, 400,
                  LossWeights(1.0, 1.0, 1e-4)),
    2: CaseConfig(2, "initial", 0.07, 0.5, 0.0, 32, 32, "tanh", 3e-3, 200, 400,
                  LossWeights(1.5, 1.0, 1e-3)),
    3: CaseConfig(3, "initial", 0.35, 0.5, 0.0, 32, 32, "tanh", 3e-3, 200, 400,
                  LossWeights(1.0, 1.0, 1e-3)),
    4: CaseConfig(4, "terminal", 0.0, 0.5, 0.0, 32, 16, "gelu", 3e-3, 200, 400,
                  LossWeights(1.0, 1.0, 1e-4)),
    5: CaseConfig(5, "terminal", 0.07, 0.5, 0.0, 32, 32, "tanh", 3e-3, 200, 400,
                  LossWeights(1.5, 1.0, 1e-3)),
    6: CaseConfig(6, "terminal", 0.35, 0.5, 0.5, 64, 32, "tanh", 1e-3, 400, 800,
                  LossWeights(2.0, 1.0, 1e-4)),
}
"""Case tables 2-7 of the paper (network, learning rate, iterations, loss weights)."""


NOISE_AWARE_SMOOTHING = 10.0
"""Default weight of the initial-profile smoothness prior in noise-aware runs (plain-loss
units; :func:`~soiljax.ude.noise_aware_loss` rescales it).  The eq.-8 initial profile is
exponential in depth, so the prior costs it nothing, and it stops the estimate copying the
noise of the observed ``t = 0`` profile (cases 2 and 3, benchmarks/UDE_RESULTS.md).  The
profile prior is not on by default: it fixes case 6 (35% driver noise) but at the same
weight it biased case 2 (R2 0.9993 -> 0.9955)."""


def interval_factor(members: int, level: float = 0.95) -> float:
    """Half-width of a ``level`` interval in units of the ensemble's standard deviation.

    The standard deviation of ``members`` refits is itself estimated, with
    ``members - 1`` degrees of freedom, so the factor is Student-t's quantile.
    """
    from scipy.stats import t

    if members < 2:
        raise ValueError(f"an interval needs at least 2 ensemble members, got {members}")
    return float(t.ppf(0.5 + level / 2, members - 1))


def build_problem(cfg: CaseConfig, data: SyntheticData) -> Problem:
    """The inverse problem of a case from its synthetic data."""
    if cfg.focus == "initial":
        return Problem(data.ts, data.c_obs, data.drivers, None, focus=0)
    return Problem(data.ts, data.c_obs, data.drivers, initial_profile(data.z), focus=-1)


def _fit(problem, cfg, hyper, *, seed, noise_aware, noise_family, ar1, n_adam, n_bfgs, adjoint,
         progress, log, desc):
    """One training of a case from the network initialisation ``seed``.

    The plain loss first; with ``noise_aware`` a refit of the learned-noise likelihood
    from there.  Returns ``(estimate, noisy estimate or None, loss histories, best loss of
    the plain fit)``.
    """
    opts = SolveOptions(adjoint=adjoint)
    fine = SolveOptions(1e-8, 1e-8, adjoint=adjoint)
    est = initial_estimate(jax.random.key(seed), problem, hyper["h1"], hyper["h2"],
                           hyper["activation"])
    objective = eqx.Partial(plain_loss, problem=problem, weights=cfg.weights, opts=opts)
    res = train(est, objective, lr=hyper["lr"], adam_iters=n_adam, bfgs_iters=n_bfgs,
                progress=progress, desc=desc,
                fine_objective=eqx.Partial(plain_loss, problem=problem,
                                           weights=cfg.weights, opts=fine))
    est = res.params
    history = {"plain": res.history}
    if not noise_aware:
        return est, None, history, res.best_loss
    use_ar1 = (cfg.rho_soc > 0) if ar1 is None else ar1
    if est.log_c0 is not None:
        # The plain fit copies the noisy t = 0 profile, including values near or
        # below zero that the noise can produce; under a multiplicative likelihood
        # such a node is a huge outlier that Adam takes thousands of steps to move.
        # Restart the initial state from a depth-smoothed observation instead.
        est = eqx.tree_at(lambda e: e.log_c0, est,
                          jnp.log(_smoothed_profile(problem.c_obs[0])))
    nest = NoisyEstimate(est, NoiseModel(noise_family, use_ar1, sigma=max(cfg.eta, 0.01)))
    objective = eqx.Partial(noise_aware_loss, problem=problem, weights=cfg.weights, opts=opts)
    log(f"[{desc}] noise-aware refit ({noise_family}, ar1={use_ar1})")
    res_n = train(nest, objective, lr=hyper["lr"], adam_iters=n_adam, bfgs_iters=n_bfgs,
                  progress=progress, desc=f"{desc} nll",
                  fine_objective=eqx.Partial(noise_aware_loss, problem=problem,
                                             weights=cfg.weights, opts=fine))
    history["noise_aware"] = res_n.history
    return res_n.params.est, res_n.params, history, res.best_loss


ENSEMBLES = ("perturbed", "deep")
"""How ``run_case`` builds its intervals: refits of perturbed data warm-started at the
MAP (randomise-then-optimise), or fully independent fits from other initialisations."""


def run_case(
    case: int,
    out: str | Path,
    *,
    grid_search_on: bool = False,
    noise_aware: bool = False,
    noise_family: str = "normal",
    ar1: bool | None = None,
    members: int = 8,
    adam_iters: int | None = None,
    bfgs_iters: int | None = None,
    grid_iters: int = 100,
    adjoint: str = "recursive",
    seed: int = 0,
    progress: bool = True,
    figures: bool = True,
    smooth_initial: float | None = None,
    smooth_profiles: float | None = None,
    ensemble: str = "perturbed",
) -> dict:
    """Run one case end to end and write ``metrics.json``, ``profiles.nc`` and figures.

    Also writes ``history.json`` (the loss histories) and ``estimate.eqx``, the trained
    centre estimate the prediction is made with (``equinox.tree_serialise_leaves``;
    :func:`load_estimate` reads it back).

    Returns the metrics dictionary.  ``adam_iters`` / ``bfgs_iters`` override the case
    table (for quick runs); ``noise_aware`` replaces the plain loss by the learned-noise
    likelihood and adds an ensemble of ``members`` fits for 95% intervals (``ensemble``:
    ``"perturbed"`` refits warm-started at the fit, or ``"deep"`` independent fits).
    ``smooth_initial`` (beyond the paper; cases 1-3, where the initial profile is
    estimated) adds that weight times :func:`~soiljax.ude.initial_roughness` to both
    losses: a smoothness prior on the unknown initial profile; ``smooth_profiles``
    adds :func:`~soiljax.ude.profile_roughness` of the modelled profiles.  By default
    ``smooth_initial`` is :data:`NOISE_AWARE_SMOOTHING` with ``noise_aware`` and 0 (the
    paper's loss) without; ``smooth_profiles`` is 0 (case 6 needs it: pass 10).
    """
    if smooth_initial is None:
        smooth_initial = NOISE_AWARE_SMOOTHING if noise_aware else 0.0
    if smooth_profiles is None:
        smooth_profiles = 0.0
    if case not in CASES:
        raise ValueError(f"unknown case {case}; the paper has cases {sorted(CASES)}")
    if ensemble not in ENSEMBLES:
        raise ValueError(f"unknown ensemble {ensemble!r}; choose one of {ENSEMBLES}")
    for name, value in (("smooth_initial", smooth_initial), ("smooth_profiles", smooth_profiles)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    cfg = CASES[case]
    if smooth_initial or smooth_profiles:
        cfg = dataclasses.replace(cfg, weights=dataclasses.replace(
            cfg.weights, smooth=float(smooth_initial), smooth_profiles=float(smooth_profiles)))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    data = make_synthetic(cfg.noise)
    problem = build_problem(cfg, data)
    log = (lambda msg: print(msg, flush=True)) if progress else (lambda msg: None)
    log(f"[ude case {case}] focus t={cfg.focus_time:g} yr, noise {cfg.eta:.0%}, "
        f"{'noise-aware' if noise_aware else 'plain'} loss")

    hyper = {"h1": cfg.h1, "h2": cfg.h2, "activation": cfg.activation, "lr": cfg.lr}
    trials = None
    if grid_search_on:
        log(f"[ude case {case}] grid search over {PAPER_GRID}")
        hyper, trials = grid_search(problem, cfg.weights, iters=grid_iters, seed=seed,
                                    progress=progress)
        log(f"[ude case {case}] selected {hyper}")

    n_adam = cfg.adam_iters if adam_iters is None else adam_iters
    n_bfgs = cfg.bfgs_iters if bfgs_iters is None else bfgs_iters

    fit = functools.partial(
        _fit, problem, cfg, hyper, noise_aware=noise_aware, noise_family=noise_family, ar1=ar1,
        n_adam=n_adam, n_bfgs=n_bfgs, adjoint=adjoint, progress=progress, log=log)
    est, nest, history, plain_best = fit(seed=seed, desc=f"case {case}")

    lower = upper = None
    noise_info = None
    if noise_aware:
        use_ar1 = nest.noise.ar1
        if members > 0 and ensemble == "perturbed":
            log(f"[ude case {case}] perturbed ensemble of {members} refits")
            ens = perturbed_ensemble(nest, problem, cfg.weights, members=members,
                                     seed=seed, progress=progress)
        elif members > 0:
            log(f"[ude case {case}] deep ensemble: {members} independent fits")
            ens = [fit(seed=seed + 1 + m, desc=f"member {m + 1}/{members}")[1] for m in range(members)]
        if members > 0:
            preds = np.stack([np.asarray(eqx.filter_jit(predict)(m.est, problem)[0])
                              for m in ens])
            spread = preds.std(axis=0, ddof=1)
            centre = np.asarray(eqx.filter_jit(predict)(est, problem)[0])
            # the spread is estimated from `members` refits: Student-t quantile with
            # members - 1 degrees of freedom (2.78 for 5 members, 1.96 only in the limit)
            half = interval_factor(members) * spread
            lower, upper = centre - half, centre + half
        noise_info = {"family": noise_family, "ar1": use_ar1,
                      "sigma": float(nest.noise.sigma), "rho": float(nest.noise.rho)}
        if noise_family == "student_t":
            noise_info["df"] = float(nest.noise.df)

    ys, ok = eqx.filter_jit(predict)(est, problem, FINAL)
    if not bool(ok):
        raise RuntimeError(
            f"case {case}: the final solve of the trained UDE failed; retry with more "
            "iterations, another --seed, or --grid-search"
        )
    ys = np.asarray(ys)
    k = problem.focus
    c_clean, c_obs, c_pred = (np.asarray(data.c_clean[k]), np.asarray(data.c_obs[k]),
                              ys[k])
    metrics = {
        "case": case,
        "focus_time_yr": float(data.ts[k]),
        "noise_level": cfg.eta,
        "loss": "noise_aware" if noise_aware else "plain",
        "mse_clean": mse(c_pred, c_clean),
        "r2_clean": r2(c_pred, c_clean),
        "mse_noisy": mse(c_pred, c_obs),
        "r2_noisy": r2(c_pred, c_obs),
        "mse_clean_field": mse(ys, data.c_clean),
        "r2_clean_field": r2(ys, data.c_clean),
        "hyperparameters": hyper,
        "weights": dataclasses.asdict(cfg.weights),
        "adam_iters": n_adam,
        "bfgs_iters": n_bfgs,
        "final_train_loss": plain_best,
        "adjoint": adjoint,
        "seed": seed,
    }
    if lower is not None:
        inside = (data.c_clean >= lower) & (data.c_clean <= upper)
        metrics["coverage95_clean"] = float(np.mean(inside[k]))
        metrics["coverage95_clean_field"] = float(np.mean(inside))
        metrics["interval_halfwidth_mean"] = float(np.mean((upper - lower)[k]) / 2)
        metrics["ensemble_members"] = members
        metrics["ensemble"] = ensemble
        metrics["interval_factor"] = interval_factor(members)
    if noise_info:
        metrics["noise_model"] = noise_info
    if trials is not None:
        metrics["grid_search"] = trials
    metrics["wall_time_s"] = time.perf_counter() - t_start

    _write_profiles(out / "profiles.nc", data, ys, k, lower, upper)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "history.json").write_text(json.dumps(history))
    eqx.tree_serialise_leaves(out / ESTIMATE_FILE, est)
    if figures:
        from ._plots import save_figures

        save_figures(out, data, ys, k, lower, upper, title=f"case {case}")
    log(f"[ude case {case}] R2 clean {metrics['r2_clean']:.6f}, noisy "
        f"{metrics['r2_noisy']:.6f}; MSE clean {metrics['mse_clean']:.3e} "
        f"({metrics['wall_time_s']:.0f} s) -> {out}")
    return metrics


ESTIMATE_FILE = "estimate.eqx"
"""File name of the trained centre estimate that :func:`run_case` writes."""


def estimate_skeleton(case: int, hyperparameters: dict) -> Estimate:
    """An estimate with the structure :func:`run_case` trains for ``case`` (values arbitrary).

    ``hyperparameters`` is the ``"hyperparameters"`` entry of ``metrics.json`` (``h1``,
    ``h2``, ``activation``; the grid search may have chosen them).  Cases 1-3 estimate the
    initial profile (``log_c0``, one value per depth node), cases 4-6 know it.
    """
    if case not in CASES:
        raise ValueError(f"unknown case {case}; the paper has cases {sorted(CASES)}")
    hyper = hyperparameters
    model = make_ude(jax.random.key(0), int(hyper["h1"]), int(hyper["h2"]), hyper["activation"])
    log_c0 = jnp.zeros(NZ) if CASES[case].focus == "initial" else None
    return Estimate(model, log_c0)


def load_estimate(path: str | Path) -> Estimate:
    """The trained estimate a :func:`run_case` output folder keeps in ``estimate.eqx``.

    ``path`` is the output folder or the ``.eqx`` file; the ``metrics.json`` next to it
    gives the case and the network sizes the skeleton is rebuilt from.  Predict with it
    as ``run_case`` did: ``predict(est, build_problem(cfg, make_synthetic(cfg.noise)))``.
    """
    path = Path(path)
    file = path / ESTIMATE_FILE if path.is_dir() else path
    metrics_file = file.parent / "metrics.json"
    if not file.exists():
        raise FileNotFoundError(f"no trained estimate at {file} (written by run_case)")
    if not metrics_file.exists():
        raise FileNotFoundError(
            f"{metrics_file} is missing: it tells which case and network sizes {file.name} holds")
    metrics = json.loads(metrics_file.read_text())
    skeleton = estimate_skeleton(int(metrics["case"]), metrics["hyperparameters"])
    mismatch = f"{file} does not match case {metrics['case']} with {metrics['hyperparameters']}"
    with open(file, "rb") as f:
        try:
            est = eqx.tree_deserialise_leaves(f, skeleton)
        except (RuntimeError, ValueError, EOFError) as err:  # a leaf of another shape, too few leaves
            raise ValueError(f"{mismatch}: {err}") from err
        if f.read(1):
            raise ValueError(f"{mismatch}: the file holds more arrays than the estimate")
    for want, got in zip(jax.tree.leaves(skeleton), jax.tree.leaves(est)):
        if jnp.shape(want) != jnp.shape(got) or jnp.result_type(want) != jnp.result_type(got):
            raise ValueError(f"{mismatch}: an array of shape {jnp.shape(got)} ({jnp.result_type(got)}) "
                             f"where {jnp.shape(want)} ({jnp.result_type(want)}) was expected")
    return est


def _smoothed_profile(c, width: int = 5):
    """A positive, depth-smoothed copy of a noisy profile (a starting point only)."""
    c = np.asarray(c)
    floor = 0.02 * float(np.max(c))
    pad = width // 2
    padded = np.pad(np.maximum(c, floor), pad, mode="edge")
    weights = np.bartlett(width + 2)[1:-1]
    smooth = np.convolve(padded, weights / weights.sum(), mode="valid")
    return jnp.asarray(smooth)


def _write_profiles(path, data, ys, k, lower, upper):
    """``profiles.nc``: focus-time profiles over ``z`` plus the full depth-time fields."""
    import xarray as xr

    z = np.asarray(data.z)
    ts = np.asarray(data.ts)
    ds = xr.Dataset(
        {
            "c_clean": ("z", np.asarray(data.c_clean[k]), {"long_name": "clean truth"}),
            "c_obs": ("z", np.asarray(data.c_obs[k]), {"long_name": "noisy observation"}),
            "c_pred": ("z", ys[k], {"long_name": "UDE prediction"}),
            "field_clean": (("time", "z"), np.asarray(data.c_clean)),
            "field_obs": (("time", "z"), np.asarray(data.c_obs)),
            "field_pred": (("time", "z"), ys),
        },
        coords={"z": ("z", z, {"units": "m", "positive": "down"}),
                "time": ("time", ts, {"units": "yr"})},
        attrs={"evaluated_time_yr": float(ts[k]),
               "description": "soiljax SOC UDE: profiles at the evaluated time"},
    )
    if lower is not None:
        ds["c_lower95"] = ("z", lower[k])
        ds["c_upper95"] = ("z", upper[k])
    ds.to_netcdf(path, engine="h5netcdf")
