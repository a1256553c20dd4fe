"""Site-level Bayesian calibration of many profiles: :func:`calibrate`.

The sites are split into batches.  In a batch, every chain of every profile
advances in lock-step inside one jitted, vmapped ``lax.scan`` per chunk of
iterations (a progress bar counts the iterations); the draws are summarised
per profile (:mod:`._summary`) and the batch's dataset is written to its own
part file before the next batch starts, so an interrupted run resumes where
it stopped.  Random keys derive from the seed and the *site index*, so a
profile's chains do not depend on the batch it was computed in.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .._forcing import Forcing
from .._models import AbstractSoilModel
from .._engine import fingerprint as run_fingerprint
from .._engine import pad_indices, padded_index, plan, run_batches
from .._options import MIN_SAMPLES
from .._registry import model_classes
from ._likelihood import AbstractLikelihood, LogNormal, log_density, log_likelihood, proda_likelihood
from ._amortized import Amortizer, load_amortizer, save_amortizer, train_amortizer
from ._importance import Auto, flow_importance_sample, importance_sample
from ._samplers import HMC, NUTS, ProdaMetropolis, warmup_schedule
from ._summary import RHAT_THRESHOLD, rhat_and_ess, summarize

METHODS = ("auto", "hmc", "nuts", "proda")
"""Names accepted by ``calibrate(method=...)``."""

DEFAULT_CHUNK = 50
DEFAULT_WARMUP = MappingProxyType({cls.__name__: cls.default_warmup for cls in model_classes()})
"""Warmup (adaptation) iterations per chain when ``calibrate(warmup=None)``, by
model class name (read-only; each model class owns its ``default_warmup``,
where the measurements behind it are noted)."""
DEFAULT_EXTEND = MappingProxyType({cls.__name__: cls.default_extend for cls in model_classes()})
"""Extension rounds per chain when ``calibrate(extend=None)`` (HMC/NUTS), by
model class name (read-only; each model class owns its ``default_extend``).

After sampling, a profile whose mean R-hat is not below 1.05 continues its
chains for another ``samples`` iterations, up to this many times, and its
draws are thinned back to ``samples`` per chain (see :func:`sample_gradient`).
"""
RESCUE_GAP = 10.0
"""Log-density units by which a chain may trail its site's best chain at a rescue point."""
N_START_CANDIDATES = 64
"""Random starting points tried per chain (COMPAS is invalid in much of its prior)."""


def sampler_for(method) -> eqx.Module:
    """A sampler object for a method name (or the object itself)."""
    if isinstance(method, (HMC, NUTS, ProdaMetropolis, Auto)):
        return method
    if method == "auto":
        return Auto()
    if method == "hmc":
        return HMC()
    if method == "nuts":
        return NUTS()
    if method == "proda":
        return ProdaMetropolis()
    raise ValueError(f"unknown calibration method {method!r}; choose one of {METHODS} or pass a sampler object")


def default_likelihood(model: AbstractSoilModel, sampler) -> AbstractLikelihood:
    """PRODA's cost for ``method="proda"``, a 10% log-normal error otherwise."""
    return proda_likelihood(model) if isinstance(sampler, ProdaMetropolis) else LogNormal()


# --------------------------------------------------------------------------
# starting points
# --------------------------------------------------------------------------


@eqx.filter_jit
def _start_points(model, likelihood, forcing, obs, keys, n_candidates: int):
    """Dispersed starts: per chain the first of ``n_candidates`` draws of u in
    U(0.1, 0.9)^d whose log density is finite.  A chain without one takes the
    start of a chain of the same site that has one (so that no chain starts
    where the model is invalid, where it could never move); ``ok`` is false
    for sites where no draw of any chain was valid."""

    n_chains = keys.shape[1] - 1

    def per_site(f, o, k):
        ld = log_density(model, likelihood, f, o)
        d = model.n_params
        u = jax.random.uniform(k, (n_chains, n_candidates, d), minval=0.1, maxval=0.9)
        z = model.space.z_from_u(u)
        lp = jax.vmap(jax.vmap(ld))(z)
        finite = jnp.isfinite(lp)
        pick = jnp.where(finite.any(axis=1), jnp.argmax(finite, axis=1), jnp.argmax(lp, axis=1))
        z0 = jnp.take_along_axis(z, pick[:, None, None], axis=1)[:, 0]
        chain_ok = finite.any(axis=1)
        donor = jnp.argmax(chain_ok)  # first chain with a valid start
        z0 = jnp.where(chain_ok[:, None], z0, z0[donor])
        return z0, jnp.broadcast_to(chain_ok.any(), chain_ok.shape)

    return jax.vmap(per_site)(forcing, obs, keys[:, 0])


class ProfilePosterior(eqx.Module):
    """Maps one site's data ``(forcing, obs)`` to its log density of ``z``."""

    model: AbstractSoilModel
    likelihood: AbstractLikelihood

    def __call__(self, data):
        forcing, obs = data
        return log_density(self.model, self.likelihood, forcing, obs)


@eqx.filter_jit
def _gradient_init(target, sampler, data, z0, inverse_mass=None):
    if inverse_mass is None:
        inverse_mass = jnp.ones_like(z0)

    def per_site(dd, z, im):
        ld = target(dd)
        return jax.vmap(lambda zc, imc: sampler.init(None, zc, ld, imc))(z, im)

    return jax.vmap(per_site)(data, z0, inverse_mass)


@eqx.filter_jit
def _gradient_chunk(target, sampler, data, carry, keys, iters, flags):
    """Advance every chain of every site by ``len(iters)`` iterations."""

    def per_site(dd, c, k):
        ld = target(dd)

        def per_chain(cc, kc):
            def body(state, xs):
                i, fl = xs
                return sampler.step(jax.random.fold_in(kc, i), state, fl, ld)

            return jax.lax.scan(body, cc, (iters, flags))

        return jax.vmap(per_chain)(c, k)

    return jax.vmap(per_site)(data, carry, keys)


def _proda_cost(model, likelihood, f, o):
    """PRODA's cost J(u) = -log likelihood (``inf`` where the model is invalid)."""
    loglik = log_likelihood(model, likelihood, f, o)
    return lambda u: -loglik(u)


@eqx.filter_jit
def _proda_init(model, likelihood, sampler, forcing, obs, u0):
    def per_site(f, o, u):
        cost = _proda_cost(model, likelihood, f, o)
        return jax.vmap(lambda uc: sampler.init(None, uc, cost))(u)

    return jax.vmap(per_site)(forcing, obs, u0)


@eqx.filter_jit
def _proda_chunk(model, likelihood, sampler, phase, forcing, obs, carry, keys, iters, thin: int):
    """PRODA steps ``iters`` (global step numbers); keeps every ``thin``-th record."""
    offset = sampler.num_random_walk

    def per_site(f, o, c, k):
        cost = _proda_cost(model, likelihood, f, o)

        def per_chain(cc, kc):
            def body(state, i):
                key = jax.random.fold_in(kc, i)
                if phase == "random_walk":
                    return sampler.random_walk_step(key, state, i, cost)
                return sampler.adaptive_step(key, state, i - offset, i, cost)

            state, rec = jax.lax.scan(body, cc, iters)
            return state, jax.tree_util.tree_map(lambda a: a[thin - 1 :: thin], rec)

        return jax.vmap(per_chain)(c, k)

    return jax.vmap(per_site)(forcing, obs, carry, keys)


@eqx.filter_jit
def _start_adaptive(sampler, carry):
    return jax.vmap(jax.vmap(sampler.start_adaptive))(carry)


# --------------------------------------------------------------------------
# one batch
# --------------------------------------------------------------------------


class _BatchDraws(NamedTuple):
    """Host arrays of one batch: draws in u (site, chain, draw, param) and statistics."""

    u: np.ndarray
    acceptance: np.ndarray  # (site, chain) mean acceptance probability after warmup
    divergences: np.ndarray  # (site, chain) count after warmup
    step_size: np.ndarray  # (site, chain), NaN for PRODA
    start_ok: np.ndarray  # (site,) a finite-density start was found for every chain
    n_evals: np.ndarray  # (site,) model evaluations (gradient evaluations for HMC/NUTS)
    rescued: np.ndarray  # (site, chain) warmup restarts from the site's best chain (HMC/NUTS)
    thinning: np.ndarray | None = None  # (site,) draws kept every thinning-th sampling iteration (None: all 1)


def _chunks(n: int, size: int):
    for s in range(0, n, size):
        yield s, min(s + size, n)


def _site_keys(seed: int, site_index: np.ndarray, chains: int):
    base = jax.random.PRNGKey(seed)
    keys = jax.vmap(lambda i: jax.random.split(jax.random.fold_in(base, i), chains + 1))(jnp.asarray(site_index))
    return keys  # (site, chains + 1, 2): [:, 0] for starts, [:, 1:] per chain


def rescue_points(warmup: int, chunk: int = DEFAULT_CHUNK) -> tuple[int, ...]:
    """Default rescue points: the ends of the chunks in the first half of warmup
    (from the second chunk on), e.g. iterations 100, 150 and 200 of a 400-iteration warmup."""
    return tuple(a for a in range(2 * chunk, warmup // 2 + 1, chunk))


def _rescue(carry, mean_logdensity: np.ndarray, gap: float, sharding=None):
    """Restart chains that trail their site's best chain by more than ``gap``.

    ``mean_logdensity`` (site, chain) is each chain's mean log density over
    the last chunk.  A trailing chain takes over the whole state (position and
    adaptation) of its site's best chain; its own random keys then take it
    elsewhere.  Returns the new carry and the (site, chain) mask of restarted
    chains.
    """
    ld = np.where(np.isfinite(mean_logdensity), mean_logdensity, -np.inf)
    best = np.argmax(ld, axis=1)  # (site,)
    best_ld = np.take_along_axis(ld, best[:, None], axis=1)
    trailing = (ld < best_ld - gap) & np.isfinite(best_ld)
    if not trailing.any():
        return carry, trailing
    n_chain = ld.shape[1]
    donor = np.where(trailing, best[:, None], np.arange(n_chain)[None, :])
    sites = np.arange(ld.shape[0])[:, None]
    new = jax.tree_util.tree_map(lambda x: jnp.asarray(np.asarray(x)[sites, donor], dtype=x.dtype), carry)
    if sharding is not None:
        new = jax.device_put(new, sharding)
    return new, trailing


def sample_gradient(target, sampler, data, z0, chain_keys, *, warmup: int, samples: int,
                    chunk: int = DEFAULT_CHUNK, bar: Callable[..., object] | None = None, sharding=None,
                    rescue: tuple[int, ...] | None = None, rescue_gap: float = RESCUE_GAP,
                    extend: int = 0, rhat_threshold: float = RHAT_THRESHOLD, extendable=None, inverse_mass=None):
    """Warm up and sample HMC/NUTS chains for a batch of targets, in lock-step.

    ``target(data_i)`` returns the log density (a function of z) of site
    ``i``; ``data`` is a pytree with a leading site axis; ``z0`` is
    (site, chain, param); ``chain_keys`` (site, chain, 2).  Returns the draws
    of z (site, chain, draw, param) and a dict of statistics per chain:
    ``acceptance`` (mean acceptance probability after warmup),
    ``divergences`` (after warmup), ``step_size`` (adapted), ``n_steps``
    (gradient evaluations, warmup included), ``lockstep_steps``, the
    evaluations the batch paid for in lock-step (the per-iteration maximum),
    and ``rescued`` (restarts per chain, see below).  Works for
    any log density, which is how the sampler is tested on known posteriors.
    ``sharding`` (a ``NamedSharding`` over the site axis) spreads the sites
    over devices; the site count must be a multiple of the device count.

    Rescue: at the warmup iterations in ``rescue`` (default
    :func:`rescue_points`; they must be multiples of ``chunk``), a chain whose
    mean log density over the last chunk trails the best chain of its site by
    more than ``rescue_gap`` is restarted from that chain's state.  Chains
    that start in a poor local mode (a fit with negative NSE beside chains
    with a good one) otherwise never leave it within the budget, and R-hat
    rightly fails the profile.  This is warmup only: no draw is affected, and
    the chains still start from dispersed points.  ``stats["rescued"]``
    counts the restarts per chain; ``rescue=()`` turns it off.

    Extension: with ``extend`` > 0, a site whose mean R-hat over the
    parameters (of ``sigmoid(z)``, as :func:`summarize` computes it) is not
    below ``rhat_threshold`` after sampling continues its chains, without
    adaptation, for another ``samples`` iterations, and again after each
    round while it still fails, up to ``extend`` rounds.  The draws returned
    for it are its whole chains thinned to ``samples`` draws: every
    ``stats["thinning"][i]``-th iteration (1 for sites that were not extended),
    so the returned array keeps its shape.  Only the failing sites run in an
    extension round (padded to a power of two, or to a multiple of the
    devices, so that few programs are compiled).  ``acceptance`` and
    ``divergences`` then cover all of a site's sampling iterations, and
    ``n_steps`` and ``lockstep_steps`` include the extension.
    ``extendable`` (site,) bool limits the extension to some sites (a
    batch's padding copies need none).

    ``bar(k)`` is called after every chunk with the iterations done; an
    extension round first calls ``bar(0, more)`` with the ``more``
    iterations it adds to the batch.

    ``inverse_mass`` (site, chain, param) starts the adaptation of the
    diagonal inverse mass matrix from those values instead of ones (the
    ``auto`` method's fall-back starts from its approximation's variances).
    """
    bar = bar or (lambda k, more=0: None)
    if inverse_mass is None:
        inverse_mass = np.ones(np.shape(z0))
    if sharding is not None:
        data, z0, chain_keys, inverse_mass = jax.device_put((data, z0, chain_keys, inverse_mass), sharding)
    # strong dtypes: otherwise the first chunk's weakly typed scalars would
    # make the second chunk compile a second program
    carry = jax.tree_util.tree_map(lambda x: jnp.array(x, dtype=x.dtype),
                                   _gradient_init(target, sampler, data, z0, jnp.asarray(inverse_mass)))
    n_site, n_chain = z0.shape[:2]
    n_steps = np.zeros((n_site, n_chain), dtype=np.int64)
    lockstep = 0
    total = warmup + samples
    slow, end = warmup_schedule(warmup)
    adapting = np.arange(total) < warmup
    flags_all = (adapting, np.concatenate([slow, np.zeros(samples, bool)]),
                 np.concatenate([end, np.zeros(samples, bool)]), np.arange(total) == warmup - 1)
    z = np.empty((n_site, n_chain, samples, z0.shape[-1]))
    acc = np.zeros((n_site, n_chain))
    div = np.zeros((n_site, n_chain), dtype=np.int64)
    rescue = set(rescue_points(warmup, chunk) if rescue is None else rescue)
    if any(r % chunk or r > warmup for r in rescue):
        raise ValueError(f"rescue points {sorted(rescue)} must be multiples of chunk={chunk} within the warmup ({warmup})")
    rescued = np.zeros((n_site, n_chain), dtype=np.int64)
    # Every chunk has the same length, so one program is compiled.  The last
    # chunk may run past the end: its extra iterations are sampling iterations
    # (no adaptation) whose records are dropped.
    for a in range(0, total, chunk):
        idx = np.minimum(np.arange(a, a + chunk), total - 1)
        flags = tuple(jnp.asarray(f[idx]) for f in flags_all)
        carry, rec = _gradient_chunk(target, sampler, data, carry, chain_keys, jnp.arange(a, a + chunk), flags)
        keep = min(chunk, total - a)
        steps = np.asarray(rec.n_steps)[:, :, :keep]
        n_steps += steps.sum(axis=2)
        lockstep += int(steps.max(axis=(0, 1)).sum())
        s0 = max(a, warmup)
        if s0 < a + keep:
            sl = slice(s0 - a, keep)
            z[:, :, s0 - warmup : a + keep - warmup] = np.asarray(rec.position)[:, :, sl]
            acc += np.asarray(rec.acceptance)[:, :, sl].sum(axis=2)
            div += np.asarray(rec.divergent)[:, :, sl].sum(axis=2)
        if a + chunk in rescue:
            carry, restarted = _rescue(carry, np.asarray(rec.logdensity).mean(axis=2), rescue_gap, sharding)
            rescued += restarted
        bar(keep)
    thin = np.ones(n_site, dtype=np.int64)
    if extend > 0 and samples > 0:
        start = -(-total // chunk) * chunk  # the last chunk may have run past ``total``
        n_dev = 1 if sharding is None else sharding.mesh.devices.size
        allowed = np.ones(n_site, bool) if extendable is None else np.asarray(extendable, bool)
        carry, ext = _extend(target, sampler, data, carry, chain_keys, z, start=start, samples=samples,
                             rounds=extend, threshold=rhat_threshold, chunk=chunk, bar=bar, sharding=sharding,
                             n_dev=n_dev, allowed=allowed)
        thin = ext["thinning"]
        acc += ext["acceptance"]
        div += ext["divergences"]
        n_steps += ext["n_steps"]
        lockstep += ext["lockstep"]
    stats = {"acceptance": acc / (max(samples, 1) * thin[:, None]), "divergences": div,
             "step_size": np.asarray(carry[1].step_size), "n_steps": n_steps, "lockstep_steps": int(lockstep),
             "rescued": rescued, "thinning": thin}
    return z, stats


def _subset_size(k: int, n_dev: int) -> int:
    """Sites in an extension round for ``k`` failing ones: the next power of
    two, rounded up to a multiple of the devices (few distinct programs)."""
    size = 1 << max(k - 1, 0).bit_length()
    return -(-max(size, n_dev) // n_dev) * n_dev


def _mean_rhat(z: np.ndarray) -> np.ndarray:
    """Mean rank-normalised R-hat per site of draws of z (site, chain, draw, param), in u."""
    return rhat_and_ess(np.asarray(jax.nn.sigmoid(z)))[0].mean(axis=1)


def _extend(target, sampler, data, carry, chain_keys, z, *, start, samples, rounds, threshold, chunk, bar,
            sharding, n_dev, allowed):
    """The extension rounds of :func:`sample_gradient`; updates ``z`` in place.

    Returns the carry (extended sites advanced) and per-site statistics of
    the extension: ``thinning``, and the sums ``acceptance``, ``divergences``,
    ``n_steps`` (site, chain) and the ``lockstep`` gradient count.
    """
    n_site, n_chain = z.shape[:2]
    out = {"thinning": np.ones(n_site, dtype=np.int64), "acceptance": np.zeros((n_site, n_chain)),
           "divergences": np.zeros((n_site, n_chain), dtype=np.int64),
           "n_steps": np.zeros((n_site, n_chain), dtype=np.int64), "lockstep": 0}
    failing = ~(_mean_rhat(z) < threshold) & allowed  # NaN R-hat fails too
    chains = {int(s): z[s] for s in np.flatnonzero(failing)}  # whole chains of the sites being extended
    n_chunks = -(-samples // chunk)
    off = tuple(jnp.zeros(chunk, dtype=bool) for _ in range(4))  # no adaptation
    carry = jax.tree_util.tree_map(np.asarray, carry)
    it = start
    for r in range(1, rounds + 1):
        sites = np.flatnonzero(failing)
        if sites.size == 0:
            break
        idx = pad_indices(sites, _subset_size(sites.size, n_dev))
        sub_data, sub_carry, sub_keys = jax.tree_util.tree_map(
            lambda x: jnp.asarray(np.asarray(x)[idx]), (data, carry, chain_keys))
        if sharding is not None:
            sub_data, sub_carry, sub_keys = jax.device_put((sub_data, sub_carry, sub_keys), sharding)
        bar(0, n_chunks * chunk)
        pos = []
        k = sites.size
        for c in range(n_chunks):
            sub_carry, rec = _gradient_chunk(target, sampler, sub_data, sub_carry, sub_keys,
                                             jnp.arange(it, it + chunk), off)
            it += chunk
            # every iteration run costs gradients; only the first ``samples`` of the round are draws
            out["n_steps"][sites] += np.asarray(rec.n_steps)[:k].sum(axis=2)
            out["lockstep"] += int(np.asarray(rec.n_steps).max(axis=(0, 1)).sum())
            kept = slice(0, min(chunk, samples - c * chunk))
            pos.append(np.asarray(rec.position)[:k, :, kept])
            out["acceptance"][sites] += np.asarray(rec.acceptance)[:k, :, kept].sum(axis=2)
            out["divergences"][sites] += np.asarray(rec.divergent)[:k, :, kept].sum(axis=2)
            bar(chunk)
        new = np.concatenate(pos, axis=2)
        for j, s in enumerate(sites):
            chains[int(s)] = np.concatenate([chains[int(s)], new[j]], axis=1)
            z[s] = chains[int(s)][:, :: r + 1]
            out["thinning"][s] = r + 1
        # the extended sites' states go back into the batch's carry for the next round
        carry = jax.tree_util.tree_map(
            lambda full, part: _set_rows(full, sites, np.asarray(part)[: sites.size]), carry, sub_carry)
        failing[sites] = ~(_mean_rhat(z[sites]) < threshold)
    return carry, out


def _set_rows(full: np.ndarray, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    full = np.array(full, copy=True)
    full[rows] = values
    return full


def _sample_gradient(model, likelihood, sampler, forcing, obs, keys, *, warmup, samples, chunk, bar, sharding,
                     extend=0, extendable=None):
    z0, start_ok = _start_points(model, likelihood, forcing, obs, keys, N_START_CANDIDATES)
    target = ProfilePosterior(model, likelihood)
    z, stats = sample_gradient(target, sampler, (forcing, obs), z0, keys[:, 1:], warmup=warmup, samples=samples,
                               chunk=chunk, bar=bar, sharding=sharding, extend=extend, extendable=extendable)
    return _BatchDraws(
        u=np.asarray(jax.nn.sigmoid(z)),
        acceptance=stats["acceptance"],
        divergences=stats["divergences"],
        step_size=stats["step_size"],
        start_ok=np.asarray(start_ok).all(axis=1),
        n_evals=stats["n_steps"].sum(axis=1) + z0.shape[1] * N_START_CANDIDATES,
        rescued=stats["rescued"],
        thinning=stats["thinning"],
    )


@eqx.filter_jit
def _importance_batch(model, likelihood, settings, forcing, obs, z0, keys, n_out: int):
    """:func:`soiljax.calibration.importance_sample` of every site of a batch, vmapped."""

    def one(f, o, z, k):
        return importance_sample(log_density(model, likelihood, f, o), z, k, settings, n_out)

    return jax.vmap(one)(forcing, obs, z0, keys)


@eqx.filter_jit
def _flow_batch(model, likelihood, settings, flow, forcing, obs, conditions, keys, n_out: int, n_starts: int):
    """:func:`soiljax.calibration.flow_importance_sample` of every site of a batch, vmapped."""

    def one(f, o, c, k):
        return flow_importance_sample(log_density(model, likelihood, f, o), flow, c, k, settings, n_out, n_starts,
                                      dtype=f.tsoi.dtype)

    return jax.vmap(one)(forcing, obs, conditions, keys)


FLOW_DRAWS_PER_CALL = 1 << 18
"""Importance draws from the flow computed in one compiled call at most (profiles x draws).  The
flow's intermediate arrays grow with both: 128 profiles x 16,000 draws in one call asked for 29 GB."""


def _flow_sites(model, likelihood, settings, flow, forcing, obs, conditions, keys, n_out: int, n_starts: int):
    """:func:`_flow_batch` over the sites of ``forcing``, in chunks of a power-of-two number of sites
    small enough for :data:`FLOW_DRAWS_PER_CALL`; returns numpy arrays, one row per site."""
    n = forcing.batch_shape[0]
    per_call = 1 << max(0, (FLOW_DRAWS_PER_CALL // settings.draws).bit_length() - 1)
    size = min(per_call, _subset_size(n, 1))
    conditions = np.asarray(conditions, dtype=np.float32)
    parts = []
    for lo in range(0, n, size):
        hi = min(n, lo + size)
        idx = padded_index(lo, hi, size)
        res = _flow_batch(model, likelihood, settings, flow, *jax.tree_util.tree_map(lambda x: x[idx], (forcing, obs)),
                          jnp.asarray(conditions[idx]), keys[idx], n_out, n_starts)
        parts.append(jax.tree_util.tree_map(lambda x: np.asarray(x)[: hi - lo], res))
    return jax.tree_util.tree_map(lambda *x: np.concatenate(x), *parts)


def _path_keys(keys, paths: int):
    """Keys for the paths' starting points, derived from each site's start key (site, paths + 1, 2)."""
    return jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, 0x5EED), paths + 1))(keys[:, 0])


def _put(a: np.ndarray, idx: np.ndarray, values) -> np.ndarray:
    """A copy of ``a`` with rows ``idx`` replaced by ``values``."""
    a = np.array(a)
    a[idx] = values
    return a


AUTO_REASONS = ("", "pareto_k", "ess", "no_valid_start", "outside_amortizer", "few_profiles")
"""``fallback_reason`` values of ``method="auto"``: empty where importance sampling was accepted;
``few_profiles`` where the run was too small to train a flow for (:class:`Auto`'s ``min_profiles``)."""


def _fallback_sampler(auto: Auto, model) -> eqx.Module:
    """The sampler of ``auto``'s fall-back: NUTS with the model's tree-depth cap unless it names another."""
    sampler = NUTS() if auto.fallback is None else auto.fallback
    return sampler.for_model(model) if isinstance(sampler, NUTS) else sampler


def _auto_skips_flow(auto: Auto, model, n_profiles: int, amortizer) -> bool:
    """Whether a ``method="auto"`` run samples every profile by its fall-back, without a flow:
    approximation ``"npe"``, no trained flow given, and fewer profiles than its ``min_profiles``."""
    least = type(model).default_auto_min_profiles if auto.min_profiles is None else auto.min_profiles
    return auto.importance.approximation == "npe" and amortizer is None and n_profiles < least


def _sample_auto(model, likelihood, auto: Auto, forcing, obs, keys, *, warmup, samples, chunk, bar, sharding,
                 extend, m, nuts_only=False, amortizer=None, conditions=None, in_domain=None):
    """``method="auto"`` for one padded batch whose first ``m`` sites are real.

    Returns the :class:`_BatchDraws` and a dict of per-site arrays for
    :func:`auto_variables`: ``pareto_k``, ``ess_is``, ``fallback`` (bool) and
    ``fallback_reason``.
    """
    settings = auto.importance
    n_site = forcing.batch_shape[0]
    chains = keys.shape[1] - 1
    if nuts_only:
        # a run too small to pay for training a flow (_auto_skips_flow): every profile as method="nuts"
        bar(1)
        bar(0, warmup + samples)
        draws = _sample_gradient(model, likelihood, _fallback_sampler(auto, model), forcing, obs, keys,
                                 warmup=warmup, samples=samples, chunk=chunk, bar=bar, sharding=sharding,
                                 extend=extend, extendable=np.arange(n_site) < m)
        nan = np.full(n_site, np.nan)
        return draws, {"pareto_k": nan, "ess_is": nan, "fallback": np.ones(n_site, bool),
                       "fallback_reason": np.full(n_site, "few_profiles")}
    pkeys = _path_keys(keys, settings.paths)
    if settings.approximation == "npe":
        res = _flow_sites(model, likelihood, settings, amortizer.flow, forcing, obs, conditions, pkeys[:, 0],
                          chains * samples, settings.paths)
        start_ok = res.n_valid > 0
        n_start_evals = 0
    else:
        z0, start_ok = _start_points(model, likelihood, forcing, obs, pkeys, N_START_CANDIDATES)
        start_ok = np.asarray(start_ok).all(axis=1)
        res = _importance_batch(model, likelihood, settings, forcing, obs, z0, pkeys[:, 0], chains * samples)
        res = jax.tree_util.tree_map(np.asarray, res)
        n_start_evals = settings.paths * N_START_CANDIDATES
        in_domain = np.ones(n_site, bool)
    bar(1)

    def reasons(res):
        return np.where(~np.asarray(in_domain, bool), "outside_amortizer",
                        np.where(~start_ok, "no_valid_start",
                                 np.where(~(res.pareto_k < auto.khat_threshold), "pareto_k",
                                          np.where(~(res.ess >= auto.min_ess), "ess", ""))))

    reason = reasons(res)
    retry = np.flatnonzero(np.isin(reason, ("pareto_k", "ess")) & (np.arange(n_site) < m))
    if settings.approximation == "npe" and auto.retry_draws and retry.size:
        # a second, larger importance sampling from the flow for the profiles that failed a check
        more = _flow_sites(model, likelihood, dataclasses.replace(settings, draws=auto.retry_draws),
                           amortizer.flow, *jax.tree_util.tree_map(lambda x: x[retry], (forcing, obs)),
                           np.asarray(conditions)[retry], jax.vmap(lambda k: jax.random.fold_in(k, 1))(pkeys[retry, 0]),
                           chains * samples, settings.paths)
        res = res._replace(**{name: _put(getattr(res, name), retry, getattr(more, name))
                              for name in res._fields if name != "evals"},
                           evals=_put(res.evals, retry, res.evals[retry] + more.evals))
        reason = reasons(res)
    khat, ess = res.pareto_k, res.ess
    fallback = (reason != "") & (np.arange(n_site) < m)
    d = res.z.shape[-1]
    u = np.array(jax.nn.sigmoid(res.z)).reshape(n_site, chains, samples, d)
    acceptance = np.full((n_site, chains), np.nan)
    divergences = np.zeros((n_site, chains), dtype=np.int64)
    step_size = np.full((n_site, chains), np.nan)
    n_evals = np.array(res.evals + n_start_evals)
    rescued = np.zeros((n_site, chains), dtype=np.int64)
    thinning = np.ones(n_site, dtype=np.int64)
    sites = np.flatnonzero(fallback)
    if sites.size:
        n_dev = 1 if sharding is None else sharding.mesh.devices.size
        idx = pad_indices(sites, _subset_size(sites.size, n_dev))
        # chains start at valid draws of the approximation, with its variances as inverse mass matrix
        z_start = res.starts[idx][:, np.arange(chains) % settings.paths]
        inv_mass = np.clip(res.variances[idx].mean(axis=1), 1e-3, 10.0)
        inv_mass = np.broadcast_to(inv_mass[:, None, :], z_start.shape)
        bar(0, warmup + samples)
        z, stats = sample_gradient(ProfilePosterior(model, likelihood), _fallback_sampler(auto, model),
                                   jax.tree_util.tree_map(lambda x: x[idx], (forcing, obs)), z_start,
                                   keys[idx, 1:], warmup=warmup, samples=samples, chunk=chunk, bar=bar,
                                   sharding=sharding, extend=extend, extendable=np.arange(idx.size) < sites.size,
                                   inverse_mass=inv_mass)
        k = sites.size
        u[sites] = np.asarray(jax.nn.sigmoid(z))[:k]
        acceptance[sites] = stats["acceptance"][:k]
        divergences[sites] = stats["divergences"][:k]
        step_size[sites] = stats["step_size"][:k]
        n_evals[sites] = n_evals[sites] + stats["n_steps"][:k].sum(axis=1)
        rescued[sites] = stats["rescued"][:k]
        thinning[sites] = stats["thinning"][:k]
    draws = _BatchDraws(u=u, acceptance=acceptance, divergences=divergences, step_size=step_size,
                        start_ok=start_ok, n_evals=n_evals, rescued=rescued, thinning=thinning)
    extra = {"pareto_k": khat, "ess_is": ess, "fallback": fallback, "fallback_reason": np.where(fallback, reason, "")}
    return draws, extra


def _sample_proda(model, likelihood, sampler, forcing, obs, keys, *, chunk, max_draws, bar):
    n_site = forcing.batch_shape[0]
    n_chain = keys.shape[1] - 1
    chain_keys = keys[:, 1:]
    u0 = jnp.full((n_site, n_chain, model.n_params), 0.5)
    carry = _proda_init(model, likelihood, sampler, forcing, obs, u0)
    chunk = max(chunk, 1000)
    n_rw, n_am = sampler.num_random_walk, sampler.num_adaptive
    for a, b in _chunks(n_rw, chunk):
        carry, _ = _proda_chunk(model, likelihood, sampler, "random_walk", forcing, obs, carry, chain_keys,
                                jnp.arange(a, b), 1)
        bar(b - a)
    carry = _start_adaptive(sampler, carry)
    keep_from = n_am // 2  # posterior: second half of part 2
    n_post = n_am - keep_from
    thin = max(1, -(-n_post // max_draws))
    draws, acc = [], np.zeros((n_site, n_chain))
    for a, b in _chunks(keep_from, chunk):  # first half of part 2: adaptation only
        carry, _ = _proda_chunk(model, likelihood, sampler, "adaptive", forcing, obs, carry, chain_keys,
                                jnp.arange(n_rw + a, n_rw + b), b - a)
        bar(b - a)
    post_chunk = thin * max(1, chunk // thin)  # whole thinning periods per chunk
    for a, b in _chunks(n_post, post_chunk):
        lo = n_rw + keep_from + a
        carry, rec = _proda_chunk(model, likelihood, sampler, "adaptive", forcing, obs, carry, chain_keys,
                                  jnp.arange(lo, lo + b - a), min(thin, b - a))
        draws.append(np.asarray(rec.position))
        acc += np.asarray(rec.acceptance).sum(axis=2)
        bar(b - a)
    u = np.concatenate(draws, axis=2)
    return _BatchDraws(
        u=u,
        acceptance=acc / u.shape[2],
        divergences=np.zeros((n_site, n_chain), dtype=np.int64),
        step_size=np.full((n_site, n_chain), np.nan),
        start_ok=np.ones(n_site, bool),
        n_evals=np.full(n_site, n_chain * (n_rw + n_am + 1)),
        rescued=np.zeros((n_site, n_chain), dtype=np.int64),
    )


def auto_variables(ds: xr.Dataset, extra: Mapping) -> xr.Dataset:
    """Add ``method="auto"``'s variables to a batch's posterior dataset, and say what its
    convergence diagnostics mean for importance-sampled profiles.

    ``pareto_k``, ``ess_is`` (every profile: the importance sampling that ran
    first; NaN where none ran, ``fallback_reason`` ``"few_profiles"``),
    ``method_used`` (``"importance"`` or ``"nuts"``) and
    ``fallback_reason`` (:data:`AUTO_REASONS`).  For importance-sampled
    profiles R-hat does not apply (``rhat``, ``rhat_gr`` and their summaries
    are NaN), ``ess`` and ``ess_min`` are the importance-sampling ESS, and
    ``accepted`` is true (their k-hat is below the threshold); profiles that
    fell back keep PRODA's rule (mean R-hat < 1.05 and NSE > 0).
    """
    fallback = np.asarray(extra["fallback"], bool)
    is_site = ~fallback
    ess_is = np.asarray(extra["ess_is"], dtype=float)
    ds = ds.copy()
    for name in ("rhat", "rhat_gr"):
        ds[name] = ds[name].where(xr.DataArray(fallback, dims="site"))
    for name in ("rhat_max", "rhat_mean", "rhat_gr_mean"):
        ds[name] = ds[name].where(xr.DataArray(fallback, dims="site"))
    ds["ess"] = xr.where(xr.DataArray(is_site, dims="site"), xr.DataArray(ess_is, dims="site"), ds["ess"]).transpose(
        *ds["ess"].dims).assign_attrs(ds["ess"].attrs)
    ds["ess_min"] = ds["ess"].min("param").assign_attrs(ds["ess_min"].attrs)
    ds["accepted"] = (ds["accepted"] | xr.DataArray(is_site, dims="site")).assign_attrs(
        long_name="importance sampled: k-hat < threshold; fell back to NUTS: mean R-hat < 1.05 and NSE > 0")
    ds["pareto_k"] = ("site", np.asarray(extra["pareto_k"], dtype=float),
                      {"units": "1", "long_name": "Pareto k-hat of the importance weights (PSIS)"})
    ds["ess_is"] = ("site", ess_is, {"units": "1", "long_name": "effective sample size of the importance weights"})
    ds["method_used"] = ("site", np.where(fallback, "nuts", "importance").astype(str),
                         {"long_name": "importance: PSIS from the approximation; nuts: fell back to NUTS"})
    ds["fallback_reason"] = ("site", np.asarray(extra["fallback_reason"]).astype(str),
                             {"long_name": "why a profile fell back to NUTS (empty: it did not)"})
    return ds


def even_batch_size(n: int, batch_size: int, n_devices: int = 1) -> int:
    """The batch size actually used for ``n`` sites asked to run ``batch_size`` at a time
    (:func:`soiljax._engine.plan`: the sites spread evenly over ``ceil(n / batch_size)`` batches)."""
    return plan(n, batch_size, n_devices)


@dataclasses.dataclass
class _BatchJob:
    """Samples and summarises the sites ``lo:hi`` of a run: ``job(lo, hi, bar)``.

    Holds everything a batch needs, so that worker processes
    (``calibrate(workers=N)``) can run it: :meth:`portable` gives a copy with
    host (numpy) arrays that pickles.  Every batch is padded to
    ``batch_size`` sites, so one compiled program serves them all.
    """

    model: AbstractSoilModel
    likelihood: AbstractLikelihood
    sampler: eqx.Module
    forcing: Forcing
    obs: object
    chains: int
    warmup: int
    samples: int
    extend: int
    batch_size: int
    seed: int
    chunk: int
    keep_draws: int
    predictive_draws: int
    site_id: object
    sharding: object
    attrs: Mapping
    stage: Callable[[str], object] | None = None
    """Told ``"summarising"`` when a batch's draws are summarised (a progress bar in this process)."""
    offset: int = 0
    """Index of the first site held (a :meth:`part` holds only its batch's sites)."""
    amortizer: Amortizer | None = None
    """``method="auto"`` with NPE: the trained flow, and every held site's conditioning vector and domain flag."""
    conditions: np.ndarray | None = None
    in_domain: np.ndarray | None = None
    nuts_only: bool = False
    """``method="auto"`` on too few profiles to train a flow for (:func:`_auto_skips_flow`): NUTS for every site."""

    def portable(self) -> "_BatchJob":
        """A copy that pickles: data as numpy arrays, no device sharding, no ``stage``."""
        forcing, obs = jax.tree_util.tree_map(np.asarray, (self.forcing, self.obs))
        return dataclasses.replace(self, forcing=forcing, obs=obs, sharding=None, stage=None)

    def part(self, lo: int, hi: int) -> "_BatchJob":
        """A copy holding only the sites ``lo:hi`` (what one task on a Dask worker needs), called as this job."""
        a, b = lo - self.offset, hi - self.offset
        site_id = None if self.site_id is None else np.asarray(self.site_id)[a:b]
        conditions = None if self.conditions is None else self.conditions[a:b]
        in_domain = None if self.in_domain is None else self.in_domain[a:b]
        return dataclasses.replace(self, forcing=self.forcing[a:b], obs=self.obs[a:b], site_id=site_id, offset=lo,
                                   conditions=conditions, in_domain=in_domain)

    def __call__(self, lo: int, hi: int, bar: Callable[[int], object]) -> xr.Dataset:
        m = hi - lo
        idx = padded_index(lo, hi, self.batch_size)  # one compiled program for every batch
        f_b, o_b = self.forcing[idx - self.offset], self.obs[idx - self.offset]
        keys = _site_keys(self.seed, idx, self.chains)
        extra = None
        if isinstance(self.sampler, ProdaMetropolis):
            draws = _sample_proda(self.model, self.likelihood, self.sampler, f_b, o_b, keys, chunk=self.chunk,
                                  max_draws=max(self.samples, 4), bar=bar)
        elif isinstance(self.sampler, Auto):
            held = None if self.conditions is None else idx - self.offset
            draws, extra = _sample_auto(self.model, self.likelihood, self.sampler, f_b, o_b, keys, warmup=self.warmup,
                                        samples=self.samples, chunk=self.chunk, bar=bar, sharding=self.sharding,
                                        extend=self.extend, m=m, nuts_only=self.nuts_only, amortizer=self.amortizer,
                                        conditions=None if held is None else self.conditions[held],
                                        in_domain=None if held is None else self.in_domain[held])
            extra = {k: v[:m] for k, v in extra.items()}
        else:
            draws = _sample_gradient(self.model, self.likelihood, self.sampler, f_b, o_b, keys, warmup=self.warmup,
                                     samples=self.samples, chunk=self.chunk, bar=bar, sharding=self.sharding,
                                     extend=self.extend, extendable=np.arange(len(idx)) < m)
        draws = jax.tree_util.tree_map(lambda a: a[:m], draws)
        a, b = lo - self.offset, hi - self.offset
        labels = None if self.site_id is None else np.asarray(self.site_id)[a:b]
        if self.stage is not None:
            self.stage("summarising")
        ds = summarize(self.model, self.forcing[a:b], self.obs[a:b], draws, site_id=labels,
                       site_index=np.arange(lo, hi), keep_draws=self.keep_draws,
                       predictive_draws=self.predictive_draws, seed=self.seed, attrs=self.attrs)
        return ds if extra is None else auto_variables(ds, extra)


# --------------------------------------------------------------------------
# the public entry point
# --------------------------------------------------------------------------


def _fingerprint(model, likelihood, sampler, forcing, obs, settings: Mapping, site_id=None, attrs=None) -> str:
    """Everything a posterior file is computed from or carries: model, likelihood,
    sampler, settings, forcing, observations, site labels and attributes."""
    labels = np.arange(forcing.batch_shape[0]) if site_id is None else np.asarray(site_id)
    return run_fingerprint(model, likelihood, sampler, sorted(settings.items()),
                           arrays=[*forcing.variables().values(), obs.depth, obs.soc, obs.soc_sd], sites=labels,
                           attrs=attrs)


def _run_amortizer(model, likelihood, sampler, forcing, obs, amortizer, out, inputs_fp: str, seed: int,
                   progress: bool, pbar=None):
    """The trained flow of a ``method="auto"`` run with ``approximation="npe"`` (None for other methods).

    ``amortizer`` is an :class:`Amortizer`, a file (read when it exists;
    otherwise trained on this run's sites and written there) or None: trained
    on this run's sites, and with ``out`` kept next to it (``OUT.amortizer``)
    so that a resumed run reuses it instead of training again.
    """
    from pathlib import Path

    npe = isinstance(sampler, Auto) and sampler.importance.approximation == "npe"
    if not npe:
        if amortizer is not None:
            raise ValueError("amortizer= applies to method='auto' with its default approximation 'npe' only")
        return None
    if isinstance(amortizer, Amortizer):
        return amortizer
    path = None if amortizer is None else Path(amortizer)
    own = path is None and out is not None  # the run's own file: valid only for these inputs
    if own:
        path = Path(str(out) + ".amortizer")
    if path is not None and path.exists():
        found = load_amortizer(path)
        if not own or dict(found.info).get("trained_for") == inputs_fp:
            return found
    if pbar is not None:
        pbar.set_postfix_str("training the amortizer", refresh=True)
    noise = float(getattr(likelihood, "sigma", getattr(likelihood, "rel_sigma", 0.1)))
    simulations = type(model).default_auto_simulations if sampler.simulations is None else sampler.simulations
    trained = train_amortizer(model, forcing, obs, simulations=simulations, max_epochs=sampler.max_epochs,
                              noise=noise, seed=seed, progress=progress, extra_info={"trained_for": inputs_fp})
    if path is not None:
        save_amortizer(trained, path)
    return trained


def _check_inputs(model, forcing: Forcing, obs, chains: int, warmup: int, samples: int):
    if len(forcing.batch_shape) != 1:
        raise ValueError(f"calibrate expects a forcing with one leading site axis, got batch shape {forcing.batch_shape}")
    if obs.batch_shape != forcing.batch_shape:
        raise ValueError(
            f"the observations have {obs.batch_shape[0] if obs.batch_shape else 'no'} sites but the forcing has "
            f"{forcing.batch_shape[0]}; pass one observed profile per forcing site, in the same order"
        )
    if chains < 2:
        raise ValueError(f"chains={chains}: R-hat needs at least 2 chains per profile (PRODA uses 3)")
    if samples < MIN_SAMPLES:
        raise ValueError(f"samples={samples}: at least {MIN_SAMPLES} draws per chain are needed for R-hat and ESS")
    if warmup < 0:
        raise ValueError(f"warmup={warmup} must be >= 0")


def calibrate(
    model: AbstractSoilModel,
    forcing: Forcing,
    obs,
    *,
    method="auto",
    likelihood: AbstractLikelihood | None = None,
    chains: int = 3,
    warmup: int | None = None,
    samples: int = 500,
    extend: int | None = None,
    batch_size: int = 128,
    seed: int = 0,
    out=None,
    resume: bool = True,
    progress: bool = True,
    keep_draws: int = 0,
    predictive_draws: int = 100,
    site_id=None,
    chunk: int = DEFAULT_CHUNK,
    mesh=None,
    workers: int = 1,
    client=None,
    attrs: Mapping | None = None,
    amortizer=None,
) -> xr.Dataset:
    """Posterior of every profile's parameters; returns (and writes) an xarray Dataset.

    ``forcing`` and ``obs`` (:class:`~soiljax.Observations`) hold the same
    sites in the same order.  ``method`` is ``"auto"`` (default: importance
    sampling from an amortised flow trained on prior simulations at these
    sites, or given as ``amortizer``, with PSIS, and NUTS for the profiles
    whose k-hat or ESS fails; a run of fewer profiles than the model's
    ``default_auto_min_profiles`` and no ``amortizer`` is sampled by NUTS
    alone, because training the flow would cost more than it saves; see
    :class:`~soiljax.calibration.Auto` and :func:`auto_variables` for the
    variables it adds), ``"nuts"`` (windowed adaptation, then NUTS with the
    model's tree-depth cap, :data:`~soiljax.calibration.DEFAULT_DOUBLINGS`),
    ``"hmc"`` (fixed-length HMC), ``"proda"`` (PRODA's
    random walk + adaptive Metropolis with its annealed acceptance rule and
    PRODA's costs; ``warmup``/``samples`` do not apply, the sampler object
    holds its step counts) or a sampler object from
    :mod:`soiljax.calibration`.  ``likelihood`` defaults to PRODA's cost for
    ``"proda"`` and to :class:`LogNormal` (10% multiplicative error, or the
    observations' ``soc_sd``) otherwise.  ``warmup`` (adaptation iterations
    per chain) defaults to the model's ``default_warmup`` (:data:`DEFAULT_WARMUP`), and for
    ``"auto"``'s fall-back, which starts from the flow's draws, to :class:`Auto`'s ``fallback_warmup``.
    ``extend`` (HMC/NUTS) lets a profile whose mean R-hat is still >= 1.05
    after ``samples`` iterations continue its chains for up to that many more
    rounds of ``samples`` iterations; its draws are then its whole chains
    thinned to ``samples`` per chain (the dataset's ``thinning``, see
    :func:`sample_gradient`).  It defaults to the model's ``default_extend``
    (:data:`DEFAULT_EXTEND`); ``extend=0`` turns it off.

    ``batch_size`` profiles at most are sampled together (each with ``chains``
    chains; the sites are spread evenly over ``ceil(n / batch_size)``
    batches, see :func:`even_batch_size`); with ``out`` every finished batch is written to a part file
    next to ``out`` and a rerun with the same inputs resumes.  ``mesh``
    (:func:`soiljax.site_mesh`) spreads each batch's profiles over devices
    (HMC/NUTS).  ``workers`` > 1 computes that many batches at a time on an
    embedded Dask cluster of worker processes, each pinned to its share of
    the CPU cores (on CPU, one worker per core nearly multiplies the
    throughput by the core count; a ``mesh`` over host devices does not, see
    :mod:`soiljax._dask`); ``client`` (a ``distributed.Client``) runs the
    batches on that Dask cluster instead, for example one on many machines.
    Finished batches come back to this process, which writes them.
    Results do not depend on ``workers``, ``client`` or on how sites fall into batches of
    the same size.  The dataset's
    variables are described in :func:`soiljax.calibration.summarize`.
    """
    sampler = sampler_for(method)
    if isinstance(sampler, NUTS):
        sampler = sampler.for_model(model)
    likelihood = default_likelihood(model, sampler) if likelihood is None else likelihood
    auto = isinstance(sampler, Auto)
    # auto on too few profiles to train a flow for: NUTS for all, with NUTS's warmup
    nuts_only = auto and _auto_skips_flow(sampler, model, forcing.batch_shape[0] if forcing.batch_shape else 1,
                                          amortizer)
    if warmup is None:
        warmup = sampler.fallback_warmup if auto and not nuts_only else type(model).default_warmup
    _check_inputs(model, forcing, obs, chains, warmup, samples)
    proda = isinstance(sampler, ProdaMetropolis)
    if extend is None:
        extend = 0 if proda else type(model).default_extend
    if int(extend) != extend or extend < 0:
        raise ValueError(f"extend={extend!r} must be a whole number >= 0 (extension rounds; 0 turns them off)")
    if proda and extend:
        raise ValueError("extend applies to HMC/NUTS; PRODA's sampler runs its fixed number of steps (use extend=0)")
    extend = int(extend)
    if int(keep_draws) != keep_draws or not 0 <= keep_draws <= samples:
        raise ValueError(f"keep_draws={keep_draws!r} must be a whole number from 0 to samples={samples}")
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers={workers!r} must be a whole number >= 1")
    if (workers > 1 or client is not None) and mesh is not None:
        raise ValueError("pass either workers > 1 or client (Dask worker processes) or mesh (devices in this "
                         "process), not both")
    n = forcing.batch_shape[0]
    n_dev = 1
    sharding = None
    if mesh is not None:
        from jax.sharding import NamedSharding, PartitionSpec

        n_dev = mesh.devices.size
        sharding = NamedSharding(mesh, PartitionSpec("site"))
    batch_size = even_batch_size(n, batch_size, n_dev)
    # auto: one unit for the importance sampling of a batch; a fall-back adds its iterations as it starts
    iters_per_batch = (sampler.num_random_walk + sampler.num_adaptive) if proda else 1 if auto else warmup + samples
    n_batches = -(-n // batch_size)
    name = type(model).__name__
    method_name = {HMC: "hmc", NUTS: "nuts", ProdaMetropolis: "proda", Auto: "auto"}[type(sampler)]
    run_attrs = {
        "model": name,
        "bedrock": model.bedrock,
        "method": method_name,
        "sampler": repr(sampler),
        "likelihood": repr(likelihood),
        "chains": chains,
        "warmup": 0 if proda else warmup,
        "samples": samples if not proda else sampler.num_adaptive - sampler.num_adaptive // 2,
        "seed": seed,
        "extend": extend,
    }
    if isinstance(sampler, NUTS):
        run_attrs["max_doublings"] = sampler.max_num_doublings
    run_attrs.update(attrs or {})

    bar_total = n_batches * iters_per_batch
    if progress:
        from tqdm.auto import tqdm

        pbar = tqdm(total=bar_total, desc=f"{name} {method_name} ({n} profiles x {chains} chains)", unit="it")
        shown = {"stage": "", "note": ""}  # the bar's postfix: what runs now, and a note on resumed batches

        def show() -> None:
            pbar.set_postfix_str(", ".join(s for s in shown.values() if s), refresh=True)

        def stage(what: str) -> None:
            if what != shown["stage"]:
                shown["stage"] = what
                show()

        # the first chunk compiles the sampler (a minute for NUTS); the iterations
        # all done, the batches left are summarising (in worker processes too)
        stage("compiling")

        def bar(k: int, more: int = 0) -> None:
            if more:  # an extension round adds iterations to its batch
                pbar.total += more
                pbar.refresh()
            pbar.update(k)
            if k or more:
                stage("summarising" if pbar.n >= pbar.total else "")

        def kept(k: int) -> None:  # batches finished by an earlier run: not part of this run's work
            if k:
                pbar.total -= k * iters_per_batch
                shown["note"] = f"resumed: {k} of {n_batches} batches already done"
                shown["stage"] = "compiling" if pbar.total > 0 else ""
                show()
    else:
        pbar, bar, kept, stage = None, (lambda k, more=0: None), None, None

    try:
        from .._dask import cluster
        from ._summary import write_posterior

        settings = dict(chains=chains, warmup=warmup, samples=samples, batch_size=batch_size, seed=seed,
                        keep_draws=keep_draws, predictive_draws=predictive_draws)
        if extend:  # absent when off, so that runs from before the option still resume
            settings["extend"] = extend
        inputs_fp = _fingerprint(model, likelihood, sampler, forcing, obs, settings, site_id, run_attrs)
        amortizer = None if nuts_only else _run_amortizer(model, likelihood, sampler, forcing, obs, amortizer, out,
                                                          inputs_fp, seed, progress and pbar is not None, pbar)
        conditions = in_domain = None
        if amortizer is not None:
            conditions, in_domain = amortizer.conditions(model, forcing, obs)
            settings["amortizer"] = amortizer.digest()
        fp = None if out is None else (inputs_fp if amortizer is None else
                                       _fingerprint(model, likelihood, sampler, forcing, obs, settings, site_id,
                                                    run_attrs))
        job = _BatchJob(model=model, likelihood=likelihood, sampler=sampler, forcing=forcing, obs=obs, chains=chains,
                        warmup=warmup, samples=samples, extend=extend, batch_size=batch_size, seed=seed, chunk=chunk,
                        keep_draws=keep_draws, predictive_draws=predictive_draws, site_id=site_id, sharding=sharding,
                        attrs=run_attrs, stage=stage, amortizer=amortizer, conditions=conditions,
                        in_domain=in_domain, nuts_only=nuts_only)
        echo = (lambda line: pbar.write(line, file=sys.stderr)) if pbar is not None else None
        with cluster(workers=workers, client=client, echo=echo) as dask_client:
            return run_batches(job if dask_client is None else job.portable(), n, batch_size, out=out,
                               fingerprint=fp, write=write_posterior, required="u_mean", resume=resume, progress=bar,
                               kept=kept, client=dask_client, manifest={"model": name})
    finally:
        if pbar is not None:
            pbar.close()
