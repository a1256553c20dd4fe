"""Posterior summaries and diagnostics of a batch of calibrated profiles.

:func:`summarize` turns the draws of a batch into an :class:`xarray.Dataset`
with a ``site`` dimension.  The names below are a contract other tools read:

Per (site, param), ``param`` holding the model's parameter names (MODELS.md):
    ``u_mean``, ``u_sd``, ``u_q05``, ``u_q50``, ``u_q95``: posterior of the
    scaled parameters u in [0, 1]; ``theta_mean``, ``theta_q05``,
    ``theta_q50``, ``theta_q95``: the same in physical units (quantiles map
    through the monotone u -> theta transform; the mean is of theta draws);
    ``rhat``: rank-normalised split R-hat (Vehtari et al. 2021, BlackJAX
    ``rhat``); ``ess``: bulk effective sample size (BlackJAX ``ess_bulk``);
    ``rhat_gr``: Gelman and Rubin's potential scale reduction factor over
    whole chains (no split, no ranks), the R-hat of PRODA's filter; more
    lenient than ``rhat``, reported for comparison.
Per (site, layer), gC m-3:
    ``soc_q05``, ``soc_q50``, ``soc_q95``, ``soc_mean``: the model's
    steady-state SOC per layer under the posterior (``predictive_draws``
    draws spread over the chains; the model's prediction of the true profile,
    without observation noise).
Per (site, obs):
    ``soc_obs``, ``obs_depth`` (the usable observations), ``soc_post``: the
    posterior mean of the modelled SOC at the observed depths (the
    posterior-mean profile); ``soc_fit``: the model at the posterior mean
    ``u_mean`` (PRODA's point estimate).
Per site:
    ``nse``: Nash-Sutcliffe efficiency of the posterior-mean profile
    ``soc_post``; ``nse_at_mean``: NSE of ``soc_fit`` (PRODA's choice, lower
    where the posterior is a curved ridge, whose mean lies off the ridge);
    ``valid_mean``: the steady state at ``u_mean`` is valid;
    ``accepted``: PRODA's filter, mean R-hat over the parameters < 1.05 and
    ``nse`` > 0, with the stricter ``rhat`` in place of PRODA's
    ``rhat_gr``; ``rhat_max``, ``rhat_mean``, ``rhat_gr_mean`` (mean of
    ``rhat_gr``), ``ess_min``; ``acceptance_rate`` and ``divergences``
    (after warmup, summed over chains); ``stock_1m_mean``, ``stock_1m_q05``,
    ``stock_1m_q95`` (kgC m-2, under the posterior); ``n_obs``;
    ``start_ok`` (a start with a finite log density was found; chains
    without one of their own start from another chain's);
    ``model_evals`` (model evaluations spent on the profile: gradient
    evaluations of HMC/NUTS, warmup and start search included; forward
    evaluations of PRODA's sampler); ``rescued`` (warmup restarts of chains
    that trailed the site's best chain, HMC/NUTS; see
    :func:`soiljax.calibration.sample_gradient`); ``thinning`` (the draws are
    every ``thinning``-th sampling iteration of each chain: 1, or, for a profile
    whose chains were extended because its mean R-hat stayed >= 1.05, the
    number of ``samples``-long stretches its chains ran; then
    ``acceptance_rate`` and ``divergences`` cover all of them).
Optional, with ``keep_draws > 0``: ``draws_u`` (site, chain, draw, param),
every chain thinned to ``keep_draws`` draws.
"""

from __future__ import annotations

from collections.abc import Mapping

import blackjax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .._diagnostics import soc_stock
from .._engine import map_sites
from .._grid import DZ, N_LAYERS, ZISOI, ZSOI
from .._observe import nse_sites, observe
from ..io._netcdf import attr_value, provenance
from ..io.posteriors import read_posterior, write_posterior  # noqa: F401 - the posterior file format

RHAT_THRESHOLD = 1.05
"""PRODA's convergence threshold on the (mean) R-hat."""


@jax.jit
def _rhat_ess(x):
    """x: (site, chain, draw, param) -> R-hat and bulk ESS (site, param)."""
    s, c, n, d = x.shape
    flat = jnp.moveaxis(x, 3, 1).reshape(s * d, c, n)
    rhat = jax.vmap(blackjax.rhat)(flat).reshape(s, d)
    ess = jax.vmap(blackjax.ess_bulk)(flat).reshape(s, d)
    return rhat, ess


def _stuck(u: np.ndarray) -> np.ndarray:
    """(site, param): some chain of draws (site, chain, draw, param) never moved."""
    return np.ptp(u, axis=2).min(axis=1) == 0.0


def proda_filter(rhat_mean, nse):
    """PRODA's acceptance of a profile: mean R-hat below :data:`RHAT_THRESHOLD` and NSE > 0."""
    return (rhat_mean < RHAT_THRESHOLD) & (nse > 0.0)


def rhat_and_ess(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank-normalised split R-hat and bulk ESS of draws (site, chain, draw, param).

    A parameter whose draws do not vary at all (a chain that never moved)
    gets R-hat = inf and ESS = 0, so it fails every convergence filter.
    """
    rhat, ess = (np.asarray(a) for a in _rhat_ess(jnp.asarray(u)))
    stuck = _stuck(u)
    rhat = np.where(stuck | ~np.isfinite(rhat), np.inf, rhat)
    ess = np.where(stuck | ~np.isfinite(ess), 0.0, ess)
    return rhat, ess


def gelman_rubin(u: np.ndarray) -> np.ndarray:
    """Gelman and Rubin's (1992) potential scale reduction factor of draws
    (site, chain, draw, param) -> (site, param).

    With m chains of n draws, chain means and variances ``mean_j``, ``s2_j``:
    ``W = mean_j s2_j``, ``B = n var_j(mean_j)`` (ddof 1),
    ``R = sqrt(((n - 1) / n W + B / n) / W)``.  No split, no ranks and no
    degrees-of-freedom correction: PRODA's convergence statistic.  As in
    :func:`rhat_and_ess`, a parameter that does not move in some chain gets
    ``inf``.
    """
    u = np.asarray(u, dtype=float)
    n = u.shape[2]
    if u.shape[1] < 2 or n < 2:
        raise ValueError(f"R-hat needs at least 2 chains of 2 draws, got {u.shape[1]} chains of {n}")
    w = u.var(axis=2, ddof=1).mean(axis=1)
    b = n * u.mean(axis=2).var(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.sqrt(((n - 1) / n * w + b / n) / w)
    return np.where(_stuck(u) | ~np.isfinite(r), np.inf, r)


@eqx.filter_jit
def _fit_batch(model, u, forcing, depth, mask):
    """The model at one ``u`` per site: SOC at the observed depths (NaN where padded), validity."""

    def one(uu, f, dd, mm):
        st = model.steady_state(uu, f)
        return observe(st.soc, dd, mm), st.valid

    return jax.vmap(one)(u, forcing, depth, mask)


def _fit(model, u, forcing, depth, mask):
    """:func:`_fit_batch` of all sites, batch by batch on the site-batch engine."""
    return map_sites(lambda *batch: _fit_batch(model, *batch), u, forcing, depth, mask)


@eqx.filter_jit
def _predictive_batch(model, u_draws, forcing):
    def one(uk, f):
        st = jax.vmap(lambda uu: model.steady_state(uu, f))(uk)
        return st.soc, st.valid

    return jax.vmap(one)(u_draws, forcing)


def _predictive(model, u_draws, forcing, batch_size: int | None = None):
    """SOC per layer at draws (site, k, param) -> (site, k, layer), validity (site, k).

    Batch by batch on the site-batch engine (``batch_size`` sites per call,
    default :func:`soiljax._engine.default_batch_size`: a calibration batch
    is one call).  Smaller batches give the same values to round-off (1e-16
    relative) and were no faster on CPU: 128 sites of 100 draws took as long
    in batches of 5 sites as in one.
    """
    return map_sites(lambda *batch: _predictive_batch(model, *batch), u_draws, forcing, batch_size=batch_size)


@jax.jit
def _at_depths_batch(soc_k, depth, mask):
    """SOC per layer of k draws (site, k, layer) at the observed depths -> (site, k, obs)."""
    one = lambda s, d, m: jax.vmap(lambda sk: observe(sk, d, m))(s)  # noqa: E731
    return jax.vmap(one)(soc_k, depth, mask)


def _at_depths(soc_k, depth, mask):
    """:func:`_at_depths_batch` of all sites, batch by batch on the site-batch engine (NaN where padded)."""
    return map_sites(_at_depths_batch, soc_k, depth, mask)


def _site_nse(pred, soc, mask):
    """NSE per site, a non-finite prediction at a usable depth counted as 0 (as ``np.nan_to_num``)."""
    return nse_sites(np.nan_to_num(pred), soc, mask)


def summarize(
    model,
    forcing,
    obs,
    draws,
    *,
    site_id=None,
    site_index=None,
    keep_draws: int = 0,
    predictive_draws: int = 100,
    seed: int = 0,
    attrs: Mapping | None = None,
) -> xr.Dataset:
    """The posterior dataset of a batch (see the module docstring for its variables).

    ``draws`` has ``u`` (site, chain, draw, param) and per-chain statistics
    (``acceptance``, ``divergences``, ``step_size``, ``start_ok``,
    ``n_evals``, ``rescued``, optionally ``thinning``) as produced by :func:`soiljax.calibration.calibrate`.
    """
    space = model.space
    u = np.asarray(draws.u)
    n_site, n_chain, n_draw, d = u.shape
    flat = u.reshape(n_site, n_chain * n_draw, d)
    q05, q50, q95 = np.quantile(flat, [0.05, 0.5, 0.95], axis=1)
    u_mean = flat.mean(axis=1)
    theta = np.asarray(space.to_physical(jnp.asarray(flat)))
    rhat, ess = rhat_and_ess(u)
    rhat_gr = gelman_rubin(u)

    mask = np.asarray(obs.mask)
    depth = np.asarray(obs.depth)
    soc_obs = np.asarray(obs.soc)
    fit, valid_mean = _fit(model, u_mean, forcing, depth, mask)
    nse_at_mean = _site_nse(fit, soc_obs, mask)
    nse_at_mean = np.where(valid_mean, nse_at_mean, -np.inf)

    # the model's SOC under the posterior, from draws spread evenly over the chains
    k = max(1, min(int(predictive_draws), n_chain * n_draw))
    pick = np.linspace(0, n_chain * n_draw - 1, k).round().astype(int)
    soc_k, valid_k = _predictive(model, flat[:, pick], forcing)
    soc_k = np.where(valid_k[..., None], soc_k, np.nan)
    at_obs = _at_depths(np.nan_to_num(soc_k), depth, mask)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            post_fit = np.nanmean(np.where(valid_k[..., None], at_obs, np.nan), axis=1)
    post_fit = np.where(mask, post_fit, np.nan)
    nse = np.where(np.isfinite(post_fit).any(axis=1), _site_nse(post_fit, soc_obs, mask), -np.inf)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            soc_q = np.nanquantile(soc_k, [0.05, 0.5, 0.95], axis=1)
            soc_mean = np.nanmean(soc_k, axis=1)
            stock = np.asarray(soc_stock(jnp.asarray(np.nan_to_num(soc_k)), 1.0))
            stock = np.where(valid_k, stock, np.nan)
            stock_q = np.nanquantile(stock, [0.05, 0.95], axis=1)
            stock_mean = np.nanmean(stock, axis=1)

    rhat_mean = rhat.mean(axis=1)
    accepted = proda_filter(rhat_mean, nse)
    sp = ("site", "param")
    unit_u = {"units": "1"}
    data = {
        "u_mean": (sp, u_mean, {**unit_u, "long_name": "posterior mean of the scaled parameter"}),
        "u_sd": (sp, flat.std(axis=1, ddof=1), {**unit_u, "long_name": "posterior standard deviation of u"}),
        "u_q05": (sp, q05, {**unit_u, "long_name": "posterior 5% quantile of u"}),
        "u_q50": (sp, q50, {**unit_u, "long_name": "posterior median of u"}),
        "u_q95": (sp, q95, {**unit_u, "long_name": "posterior 95% quantile of u"}),
        "theta_mean": (sp, theta.mean(axis=1), {"long_name": "posterior mean of the physical parameter"}),
        "theta_q05": (sp, np.asarray(space.to_physical(jnp.asarray(q05))), {"long_name": "5% quantile, physical"}),
        "theta_q50": (sp, np.asarray(space.to_physical(jnp.asarray(q50))), {"long_name": "median, physical"}),
        "theta_q95": (sp, np.asarray(space.to_physical(jnp.asarray(q95))), {"long_name": "95% quantile, physical"}),
        "rhat": (sp, rhat, {"units": "1", "long_name": "rank-normalised split R-hat"}),
        "ess": (sp, ess, {"units": "1", "long_name": "bulk effective sample size"}),
        "rhat_max": ("site", rhat.max(axis=1), {"units": "1", "long_name": "largest R-hat over the parameters"}),
        "rhat_mean": ("site", rhat_mean, {"units": "1", "long_name": "mean R-hat over the parameters (PRODA)"}),
        "rhat_gr": (sp, rhat_gr, {"units": "1", "long_name": "Gelman-Rubin R-hat (whole chains, as PRODA)"}),
        "rhat_gr_mean": ("site", rhat_gr.mean(axis=1), {"units": "1",
                                                         "long_name": "mean Gelman-Rubin R-hat over the parameters"}),
        "ess_min": ("site", ess.min(axis=1), {"units": "1", "long_name": "smallest bulk ESS over the parameters"}),
        "nse": ("site", nse, {"units": "1", "long_name": "Nash-Sutcliffe efficiency of the posterior-mean profile"}),
        "nse_at_mean": ("site", nse_at_mean, {"units": "1", "long_name": "NSE of the model at u_mean (PRODA)"}),
        "soc_post": (("site", "obs"), post_fit, {"units": "gC m-3",
                                                 "long_name": "posterior mean of modelled SOC at the observed depths"}),
        "accepted": ("site", accepted, {"long_name": "PRODA filter: mean R-hat < 1.05 and NSE > 0"}),
        "valid_mean": ("site", valid_mean.astype(bool), {"long_name": "steady state at u_mean is valid"}),
        "soc_q05": (("site", "layer"), soc_q[0], {"units": "gC m-3", "long_name": "5% quantile of modelled SOC"}),
        "soc_q50": (("site", "layer"), soc_q[1], {"units": "gC m-3", "long_name": "median of modelled SOC"}),
        "soc_q95": (("site", "layer"), soc_q[2], {"units": "gC m-3", "long_name": "95% quantile of modelled SOC"}),
        "soc_mean": (("site", "layer"), soc_mean, {"units": "gC m-3", "long_name": "posterior mean of modelled SOC"}),
        "soc_obs": (("site", "obs"), np.where(mask, soc_obs, np.nan), {"units": "gC m-3", "long_name": "observed SOC"}),
        "obs_depth": (("site", "obs"), np.where(mask, depth, np.nan), {"units": "m", "long_name": "observation depth"}),
        "soc_fit": (("site", "obs"), fit, {"units": "gC m-3", "long_name": "model at u_mean at the observed depths"}),
        "stock_1m_mean": ("site", stock_mean, {"units": "kgC m-2", "long_name": "posterior mean SOC stock to 1 m"}),
        "stock_1m_q05": ("site", stock_q[0], {"units": "kgC m-2", "long_name": "5% quantile of SOC stock to 1 m"}),
        "stock_1m_q95": ("site", stock_q[1], {"units": "kgC m-2", "long_name": "95% quantile of SOC stock to 1 m"}),
        "acceptance_rate": ("site", np.asarray(draws.acceptance).mean(axis=1), {"units": "1"}),
        "divergences": ("site", np.asarray(draws.divergences).sum(axis=1), {"units": "1"}),
        "step_size": (("site", "chain"), np.asarray(draws.step_size), {"units": "1"}),
        "n_obs": ("site", mask.sum(axis=1), {"units": "1", "long_name": "usable observed layers"}),
        "start_ok": ("site", np.asarray(draws.start_ok).astype(bool), {}),
        "model_evals": ("site", np.asarray(draws.n_evals), {"units": "1", "long_name": "model evaluations spent"}),
        "rescued": ("site", np.asarray(draws.rescued).sum(axis=1), {"units": "1",
                                                                    "long_name": "warmup restarts of trailing chains"}),
        "thinning": ("site", np.ones(n_site, dtype=np.int64) if getattr(draws, "thinning", None) is None
                     else np.asarray(draws.thinning, dtype=np.int64),
                     {"units": "1", "long_name": "draws kept every n-th sampling iteration (> 1: chains extended)"}),
    }
    if keep_draws > 0:
        t = np.linspace(0, n_draw - 1, min(int(keep_draws), n_draw)).round().astype(int)
        data["draws_u"] = (("site", "chain", "draw", "param"), u[:, :, t], {**unit_u, "long_name": "thinned draws"})
    site = np.asarray(site_id) if site_id is not None else (
        np.arange(n_site) if site_index is None else np.asarray(site_index))
    coords = {
        "site": site,
        "param": ("param", np.array(space.names)),
        "layer": ("layer", np.arange(1, N_LAYERS + 1)),
        "z": ("layer", np.asarray(ZSOI), {"units": "m", "long_name": "node depth of the layer"}),
        "dz": ("layer", np.asarray(DZ), {"units": "m"}),
        "z_bottom": ("layer", np.asarray(ZISOI), {"units": "m"}),
        "chain": ("chain", np.arange(n_chain)),
    }
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update(provenance(f"soiljax {type(model).__name__} calibration"))
    ds.attrs.update({k: attr_value(v) for k, v in (attrs or {}).items()})
    return ds

