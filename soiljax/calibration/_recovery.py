"""Parameter-recovery experiments (PRODA's validation recipe) on synthetic profiles.

:func:`recovery_profiles` draws the recipe's synthetic profiles (sites, known
parameters from :func:`valid_truths`, noisy observations), which
:func:`write_recovery_inputs` / :func:`read_recovery_inputs` keep in a folder;
:func:`recovery_statistics` compares a posterior dataset with them, and
:func:`score_recovery` does so from the truths alone (it solves the true
steady states itself).  :func:`read_recovery_run` reads back a run that
``benchmarks/recovery.py --out POST.nc`` kept, with its synthetic profiles.
Used by ``benchmarks/recovery.py`` and ``notebooks/02_calibration.ipynb``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

PRIOR_SD_U = 1.0 / np.sqrt(12.0)
"""Standard deviation of the uniform prior of every scaled parameter u."""


def valid_truths(model, forcing, rng: np.random.Generator, lo: float = 0.1, hi: float = 0.9, tries: int = 20):
    """``u_true ~ U(lo, hi)^d`` per site, redrawn (up to ``tries`` times) where the
    steady state is invalid.  Returns ``(u_true, valid)``; drop sites with
    ``valid == False`` (no valid draw was found for them)."""
    from .._batch import batched_steady_state

    n = forcing.batch_shape[0]
    u = rng.uniform(lo, hi, (n, model.n_params))
    valid = np.zeros(n, bool)
    for _ in range(tries):
        valid = np.asarray(batched_steady_state(model, u, forcing).valid)
        if valid.all():
            break
        bad = ~valid
        u[bad] = rng.uniform(lo, hi, (int(bad.sum()), model.n_params))
    return u, valid


def identifiable(post, threshold: float = 0.5) -> np.ndarray:
    """(site, param) pairs the data constrain: posterior sd of u below
    ``threshold`` times the prior sd (default: the variance shrank four-fold)."""
    return post["u_sd"].values < threshold * PRIOR_SD_U


def recovery_statistics(post, u_true, stock_true, nse_truth=None) -> dict:
    """PRODA's recovery criteria for a posterior dataset against known truths.

    ``u_true`` (site, param); ``stock_true`` (site,) true SOC stock to 1 m
    (kgC m-2); ``nse_truth`` (site,) optional NSE of the *true* profile
    against the noisy observations: the ceiling any fit can reach.

    ``coverage90_identifiable`` counts the identifiable pairs of all
    profiles; ``coverage90_identifiable_accepted`` only those of profiles that
    pass PRODA's filter (``accepted``).  The second is the one to read: chains
    that have not converged can each sit still in a different place, and then
    a narrow posterior sd is the sampler's failure, not the data's information.
    """
    u_true = np.asarray(u_true)
    ident = identifiable(post)
    ident_accepted = ident & np.asarray(post["accepted"].values, bool)[:, None]
    inside = (post["u_q05"].values <= u_true) & (u_true <= post["u_q95"].values)
    rel = np.abs(post["stock_1m_mean"].values - stock_true) / np.asarray(stock_true)
    rel = np.where(np.isfinite(rel), rel, np.inf)  # no valid posterior draw: a failure
    ess_min = post["ess_min"].values
    out = {
        "n_profiles": int(u_true.shape[0]),
        "rhat_mean_lt_1.05": float(np.mean(post["rhat_mean"].values < 1.05)),
        "rhat_max_lt_1.05": float(np.mean(post["rhat_max"].values < 1.05)),
        "nse_gt_0.9": float(np.mean(post["nse"].values > 0.9)),
        "nse_at_mean_gt_0.9": float(np.mean(post["nse_at_mean"].values > 0.9)),
        "median_nse": float(np.median(post["nse"].values)),
        "identifiable_fraction": float(ident.mean()),
        "coverage90_identifiable": float(inside[ident].mean()) if ident.any() else float("nan"),
        "identifiable_pairs": int(ident.sum()),
        "coverage90_identifiable_accepted": (float(inside[ident_accepted].mean()) if ident_accepted.any()
                                             else float("nan")),
        "identifiable_pairs_accepted": int(ident_accepted.sum()),
        "coverage90_all": float(inside.mean()),
        "stock_within_10pct": float(np.mean(rel < 0.1)),
        "median_stock_error": float(np.median(rel)),
        "accepted_proda_filter": float(np.mean(post["accepted"].values)),
        "evals_per_ess_median": float(np.median(post["model_evals"].values / np.maximum(ess_min, 1e-9))),
        "median_ess_min": float(np.median(ess_min)),
        "divergences_per_profile": float(np.mean(post["divergences"].values)),
    }
    if "rhat_gr_mean" in post:  # posterior files written before it was added lack it
        out["rhat_gr_mean_lt_1.05"] = float(np.mean(post["rhat_gr_mean"].values < 1.05))
    out["stock_within_10pct_expected"] = float(np.mean(expected_within(post, 0.1)))
    if nse_truth is not None:
        nse_truth = np.asarray(nse_truth)
        out["nse_truth_gt_0.9"] = float(np.mean(nse_truth > 0.9))
        out["nse_ge_truth_minus_0.05"] = float(np.mean(post["nse"].values >= nse_truth - 0.05))
        reachable = nse_truth > 0.9
        out["nse_gt_0.9_where_truth_gt_0.9"] = (float(np.mean(post["nse"].values[reachable] > 0.9))
                                                if reachable.any() else float("nan"))
    return out


QUALITY_TARGETS = {"mean_within_0.25_sd": 0.90, "sd_within_1.33": 0.90, "soc_quantiles_within_5pct": 0.90,
                   "coverage90_identifiable": (0.80, 0.98)}
"""What :func:`posterior_agreement` is held to (issue 20): shares of pairs or profiles, and a range for coverage."""


def posterior_agreement(post, reference, u_true=None, *, rhat_reference: float = 1.01) -> dict:
    """How well a posterior dataset agrees with a reference run of the same profiles (long NUTS chains).

    Only profiles whose reference converged (every parameter's R-hat below
    ``rhat_reference``) count.  Returns the number of profiles compared and
    the shares that :data:`QUALITY_TARGETS` names:

    - ``mean_within_0.25_sd``: (profile, parameter) pairs whose posterior mean
      of ``u`` is within 0.25 reference sd of the reference mean;
    - ``sd_within_1.33``: pairs whose posterior sd is within a factor 1.33 of the reference's;
    - ``soc_quantiles_within_5pct``: profiles whose modelled SOC's 5, 50 and
      95% quantiles are, in every layer, within 5% of the maximum over layers
      of the reference's same quantile (and ``soc_q05_within_5pct`` etc., each quantile alone);
    - ``coverage90_identifiable`` (with ``u_true``): of the pairs the reference
      identifies (:func:`identifiable`), the share whose 90% interval covers the truth.
    """
    ok = np.all(reference["rhat"].values < rhat_reference, axis=1)
    out = {"profiles": int(ok.size), "profiles_compared": int(ok.sum())}
    if not ok.any():
        return out
    sd = reference["u_sd"].values[ok]
    mean_err = np.abs(post["u_mean"].values[ok] - reference["u_mean"].values[ok]) / sd
    sd_ratio = post["u_sd"].values[ok] / sd
    within = []
    for q in ("soc_q05", "soc_q50", "soc_q95"):
        ref = reference[q].values[ok]
        top = np.nanmax(ref, axis=1, keepdims=True)
        err = np.abs(post[q].values[ok] - ref) / top
        within.append(np.all(np.where(np.isfinite(ref), err <= 0.05, True), axis=1))
        out[f"{q}_within_5pct"] = float(np.mean(within[-1]))
    out.update({
        "mean_within_0.25_sd": float(np.mean(mean_err < 0.25)),
        "sd_within_1.33": float(np.mean((sd_ratio <= 1.33) & (sd_ratio >= 1 / 1.33))),
        "soc_quantiles_within_5pct": float(np.mean(np.all(within, axis=0))),
    })
    if u_true is not None:
        u_true = np.asarray(u_true)[ok]
        ident = identifiable(reference.isel(site=np.flatnonzero(ok)))
        inside = (post["u_q05"].values[ok] <= u_true) & (u_true <= post["u_q95"].values[ok])
        out["identifiable_pairs"] = int(ident.sum())
        out["coverage90_identifiable"] = float(inside[ident].mean()) if ident.any() else float("nan")
    return out


def meets_quality_targets(agreement: dict) -> dict:
    """Each of :data:`QUALITY_TARGETS` in ``agreement`` (:func:`posterior_agreement`): met or not."""
    met = {}
    for name, target in QUALITY_TARGETS.items():
        value = agreement.get(name)
        if value is None or not np.isfinite(value):
            continue
        met[name] = bool(target[0] <= value <= target[1]) if isinstance(target, tuple) else bool(value >= target)
    return met


def expected_within(post, tolerance: float = 0.1) -> np.ndarray:
    """Per site, the probability that the posterior-mean stock to 1 m lies
    within ``tolerance`` (relative) of the truth *if the truth is a draw from
    the posterior*, i.e. what an exact sampler would score on average.

    Uses a normal approximation of the stock's posterior with sd from its
    90% interval, ``(q95 - q05) / 3.29``.  Its mean over sites is the
    information limit of the "stock within 10%" criterion for the
    observations at hand: no sampler can beat it on average.
    """
    from scipy.stats import norm

    mean = post["stock_1m_mean"].values
    sd = (post["stock_1m_q95"].values - post["stock_1m_q05"].values) / (2.0 * norm.ppf(0.95))
    with np.errstate(divide="ignore", invalid="ignore"):
        half = tolerance * mean / sd
    p = norm.cdf(half) - norm.cdf(-half)
    return np.where(np.isfinite(p), p, np.where(sd == 0, 1.0, 0.0))


def truth_nse(model, u_true, forcing, obs) -> np.ndarray:
    """NSE of each site's true steady-state profile against its observations."""
    from .._batch import batched_steady_state
    from .._observe import score_sites

    soc = batched_steady_state(model, u_true, forcing).soc
    return score_sites(soc, obs.depth, obs.soc, obs.mask)[1]


def true_stock(model, u_true, forcing, depth: float = 1.0) -> np.ndarray:
    """SOC stock (kgC m-2) to ``depth`` m of each site's true steady state."""
    from .._batch import batched_steady_state
    from .._diagnostics import soc_stock

    return np.asarray(soc_stock(batched_steady_state(model, u_true, forcing).soc, depth))


def score_recovery(model, post, forcing, obs, u_true) -> dict:
    """:func:`recovery_statistics` of ``post`` against the true parameters
    ``u_true`` of the synthetic profiles ``obs`` (drawn on ``forcing``): the
    true stock to 1 m and the truth's NSE are solved here from the model."""
    return recovery_statistics(post, u_true, true_stock(model, u_true, forcing), truth_nse(model, u_true, forcing, obs))


def recovery_profiles(model, n_sites: int, *, seed: int = 0, noise: float = 0.1):
    """``(forcing, obs, u_true)``: PRODA's validation recipe's synthetic profiles.

    ``n_sites`` synthetic sites of all zones (:func:`soiljax.synthetic_sites`), true
    parameters ``u_true ~ U(0.1, 0.9)^d`` redrawn where the steady state is invalid
    (:func:`valid_truths`; sites without a valid draw are dropped, so there may be fewer
    profiles than ``n_sites``) and observations at 4-8 depths with ``noise`` multiplicative
    (log-normal) error (:func:`soiljax.synthetic_observations`), all seeded by ``seed``.
    """
    from ..synthetic import synthetic_observations, synthetic_sites

    rng = np.random.default_rng(seed)
    forcing, _ = synthetic_sites(n_sites, seed=seed)
    u_true, valid = valid_truths(model, forcing, rng)
    keep = np.flatnonzero(valid)
    forcing, u_true = forcing[keep], u_true[keep]
    obs, _ = synthetic_observations(model, u_true, forcing, noise=noise, seed=seed)
    return forcing, obs, u_true


def write_recovery_inputs(folder, model, forcing, obs, u_true, *, attrs=None) -> Path:
    """Keep synthetic profiles in ``folder`` (made if needed): ``forcing.nc``, ``obs.nc`` and the
    true parameters ``u_true.nc``, whose global attributes get ``attrs`` (e.g. the recipe);
    :func:`read_recovery_inputs` reads them back."""
    from ..io import write_forcing, write_observations, write_params

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_forcing(forcing, folder / "forcing.nc")
    write_observations(obs, folder / "obs.nc")
    write_params(u_true, model, folder / "u_true.nc", attrs=attrs)
    return folder


def read_recovery_inputs(folder, model):
    """``(forcing, obs, u_true)``: the synthetic profiles that :func:`write_recovery_inputs`
    kept in ``folder`` (``benchmarks/recovery.py --out POST.nc`` keeps them in ``POST.nc.inputs/``)."""
    from ..io import read_forcing, read_observations, read_params

    folder = Path(folder)
    forcing, _ = read_forcing(folder / "forcing.nc")
    # synthetic COMPAS profiles can hold more carbon than the unit check expects of real soils
    obs, _ = read_observations(folder / "obs.nc", check_units=False)
    return forcing, obs, read_params(folder / "u_true.nc", model)


class RecoveryRun(NamedTuple):
    """A kept recovery run: its posterior, the synthetic profiles behind it and
    PRODA's criteria recomputed from both (as :func:`score_recovery` does)."""

    post: object  # xarray.Dataset
    forcing: object  # soiljax.Forcing
    obs: object  # soiljax.Observations
    u_true: np.ndarray
    stock_true: np.ndarray  # (site,) true SOC stock to 1 m, kgC m-2
    stats: dict


def read_recovery_run(path, model) -> RecoveryRun:
    """Read a run that ``benchmarks/recovery.py --out POST.nc`` kept: the
    posterior ``POST.nc`` and the profiles in ``POST.nc.inputs/`` (forcing,
    noisy observations, true parameters), and score it again.

    Raises ``FileNotFoundError`` when either is missing and ``ValueError``
    when the profiles were drawn for another model than ``model``.
    """
    from ._summary import read_posterior

    path = Path(path)
    inputs = Path(str(path) + ".inputs")
    for need in (path, inputs / "forcing.nc", inputs / "obs.nc", inputs / "u_true.nc"):
        if not need.exists():
            raise FileNotFoundError(f"{need} is missing: a kept recovery run needs the posterior file and the "
                                    f"folder {inputs.name}/ next to it, as `benchmarks/recovery.py --out "
                                    f"{path.name}` writes them")
    post = read_posterior(path)
    name = type(model).__name__.lower()
    if str(post.attrs.get("model", name)).lower() != name:
        raise ValueError(f"{path} holds a {post.attrs['model']} posterior, not a {type(model).__name__} one: "
                         f"pass soiljax.{str(post.attrs['model']).upper()}() as the model")
    forcing, obs, u_true = read_recovery_inputs(inputs, model)
    stock = true_stock(model, u_true, forcing)
    stats = recovery_statistics(post, u_true, stock, truth_nse(model, u_true, forcing, obs))
    return RecoveryRun(post, forcing, obs, u_true, stock, stats)
