"""Approximate posteriors corrected by importance sampling: the first stage of ``method="auto"``.

Two kinds of approximation are implemented and were measured side by side
(``benchmarks/README.md``, "Calibration at scale"):

- ``approximation="npe"`` (the default): an amortised neural posterior, one
  conditional normalising flow trained for the whole run on simulations from
  the prior at the run's sites (:mod:`soiljax.calibration._amortized`).  Per
  profile, :func:`flow_importance_sample` draws from the defensive mixture
  ``prior_weight * prior + (1 - prior_weight) * flow``, Pareto-smooths the
  weights and resamples (steps 4 and 5 below).  It costs ``draws`` model
  evaluations per profile and no gradient.
- ``"laplace"`` and ``"pathfinder"``: fitted per profile from L-BFGS paths
  (:func:`importance_sample`, steps 1-5 below).  On PRODA's synthetic CLM5
  profiles their k-hat failed for 95% of the profiles or more: the posteriors
  bend along ridges that no normal covers with few draws.

For one profile with log density ``log p(z)`` (:func:`~soiljax.calibration.log_density`),
:func:`importance_sample` does:

1. **Paths.**  From ``paths`` dispersed starting points, L-BFGS (optax, zoom
   line search) climbs ``log p``.  Along each path a dense BFGS estimate ``H``
   of the inverse Hessian is kept (the parameters are few: 21 for CLM5, 23
   for COMPAS, so a dense matrix is cheap and better than a low-rank one).
2. **An approximation per path.**  ``approximation="pathfinder"``: at
   every iterate ``x`` the normal ``N(x + H grad log p(x), H)`` is scored by
   its ELBO, estimated from ``elbo_draws`` draws, and the best one is kept
   (Zhang et al. 2022, Pathfinder; multi-path as in their algorithm 2).
   ``approximation="laplace"`` (the default): the normal at the path's best
   point (the mode) with the inverse of the exact Hessian (``jax.hessian``),
   the prior's curvature replaced by its precision (:func:`_laplace_covariance`).
   For Pathfinder's ELBO, draws where the model is invalid (log density
   ``-inf``) count as a truncation of the normal: the ELBO is the mean over
   the valid draws plus the log of their share.  (BlackJAX has a Pathfinder;
   in version 1.7.1 its normals' means step along the gradient of ``-log p``,
   away from the mode, which is why the path is followed here.)
3. **A defensive mixture proposal.**  ``q = prior_weight * prior + (1 -
   prior_weight) * mean of the path components`` (Hesterberg 1995), each
   component a Student t (``tail_df``) with the path's mean and covariance.
   The prior (uniform in ``u``, logistic in ``z``) keeps the importance ratio bounded
   by the likelihood: in the directions that the data do not identify (most
   of them, in PRODA's data) the posterior is the prior, whose exponential
   tails a normal would not cover.  Draws are split between the components in
   fixed numbers and weighted with the whole mixture's density.  Adaptive
   importance sampling: ``adapt_rounds`` rounds of ``adapt_draws`` draws each
   fit one more component to the weighted draws (their mean and covariance,
   shrunk towards the paths' when the ESS is small); the final round draws
   ``draws``.
4. **PSIS.**  The final round's log ratios ``log p - log q`` are Pareto-smoothed
   (BlackJAX's ``psis_weights``, Vehtari et al. 2024); its ``k`` (k-hat)
   says whether the weights can be trusted (< 0.7) and ``1 / sum w**2`` is
   the importance-sampling ESS.
5. **Equal-weight draws.**  ``n_out`` draws are resampled systematically
   from the weighted draws and shuffled, so that summaries treat them as any
   other draws.

:func:`importance_sample` is a pure JAX function of one profile;
``calibrate`` vmaps it over the profiles of a batch, so the model runs as one
vectorised call per step.  Random keys come from the profile, not the batch, so a profile's
result does not depend on the batch it was computed in.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from blackjax.diagnostics import psis_weights
from jaxtyping import Array, Float

from ._amortized import flow_precision

APPROXIMATIONS = ("npe", "laplace", "pathfinder")
"""Names accepted by ``ImportanceSampler(approximation=...)``."""

_BIG = 1e30  # the optimiser's objective where the model is invalid (-log p = inf)
_LOG_2PI = math.log(2.0 * math.pi)


class ImportanceSampler(eqx.Module):
    """Settings of the approximate-posterior-plus-PSIS stage (see the module docstring).

    ``approximation``: ``"npe"`` (default: the amortised flow, which needs a
    trained :class:`~soiljax.calibration.Amortizer`), ``"laplace"`` or
    ``"pathfinder"``; ``paths`` L-BFGS paths of at most ``maxiter`` iterations and
    ``linesearch_steps`` line-search steps each (with ``"npe"``: the number of
    flow draws kept as a fall-back's chain starts); ``elbo_draws`` draws per Pathfinder ELBO;
    ``draws`` importance draws in the final round, after ``adapt_rounds``
    rounds of ``adapt_draws``; ``prior_weight`` and ``adapted_share`` the
    mixture weights of the prior and of the adapted component;
    ``tail_df`` the Student-t degrees of freedom of the components (0: normal);
    ``scale`` multiplies the paths' scale matrices and ``init_scale`` the
    adapted component's first covariance; ``eval_batch`` bounds how many
    draws the model evaluates at once (memory).
    """

    approximation: str = "npe"
    paths: int = 4
    maxiter: int = 40
    elbo_draws: int = 10
    draws: int = 4000
    prior_weight: float = 0.1
    eval_batch: int = 250
    tail_df: float = 5.0
    adapt_rounds: int | None = None
    adapt_draws: int = 1000
    adapted_share: float = 0.6
    init_scale: float = 1.0
    linesearch_steps: int = 10
    scale: float = 1.0

    @property
    def rounds(self) -> int:
        """Adaptive rounds before the final one: ``adapt_rounds``, or by default 0 for ``"npe"`` (measured:
        a fitted t took draws from the flow and lowered the ESS) and 2 for the per-profile normals."""
        if self.adapt_rounds is not None:
            return self.adapt_rounds
        return 0 if self.approximation == "npe" else 2

    def __check_init__(self):
        if self.adapt_rounds is not None and self.adapt_rounds < 0:
            raise ValueError(f"adapt_rounds={self.adapt_rounds} must be >= 0 (or None: the approximation's default)")
        if self.approximation not in APPROXIMATIONS:
            raise ValueError(f"approximation={self.approximation!r}: choose one of {APPROXIMATIONS}")
        if self.paths < 1 or self.maxiter < 1 or self.elbo_draws < 1:
            raise ValueError("paths, maxiter and elbo_draws must be at least 1")
        if not 0.0 < self.prior_weight < 1.0:
            raise ValueError(f"prior_weight={self.prior_weight!r} must be in (0, 1): the prior component keeps "
                             "the importance weights bounded, and the normals carry the rest")
        if self.draws < 10 * (self.paths + 1):
            raise ValueError(f"draws={self.draws} is too few for {self.paths} paths and the prior; use at least "
                             f"{10 * (self.paths + 1)} (PSIS fits its tail to about 3 sqrt(draws) of them)")


class Normal(NamedTuple):
    """One normal component: mean (param,) and lower Cholesky factor of its covariance (param, param)."""

    mean: Float[Array, " param"]
    chol: Float[Array, "param param"]


class ImportanceResult(NamedTuple):
    """One profile's importance sampling (leading site axis when vmapped)."""

    z: Float[Array, "draw param"]  # equal-weight draws (resampled), ``n_out`` of them
    pareto_k: Float[Array, ""]
    ess: Float[Array, ""]  # 1 / sum(w^2) of the smoothed weights
    n_valid: Float[Array, ""]  # draws with a finite log density
    evals: Float[Array, ""]  # model evaluations spent (gradients and values)
    variances: Float[Array, "path param"]  # of the path approximations: a fall-back's inverse mass matrix
    starts: Float[Array, "path param"]  # valid proposal draws from the normals, for a fall-back's chains


def normal_logpdf(z, comp: Normal):
    """Log density of ``N(mean, L L^T)`` at ``z`` (param,)."""
    r = jax.scipy.linalg.solve_triangular(comp.chol, z - comp.mean, lower=True)
    d = z.shape[-1]
    return -0.5 * (r @ r) - jnp.sum(jnp.log(jnp.diag(comp.chol))) - 0.5 * d * _LOG_2PI


def student_logpdf(z, comp: Normal, df: float):
    """Log density at ``z`` of the multivariate Student t with ``df`` degrees of freedom,
    location ``mean`` and scale matrix ``L L^T``."""
    r = jax.scipy.linalg.solve_triangular(comp.chol, z - comp.mean, lower=True)
    d = z.shape[-1]
    return (jax.scipy.special.gammaln(0.5 * (df + d)) - jax.scipy.special.gammaln(0.5 * df)
            - 0.5 * d * jnp.log(df * jnp.pi) - jnp.sum(jnp.log(jnp.diag(comp.chol)))
            - 0.5 * (df + d) * jnp.log1p((r @ r) / df))


def prior_logpdf(z):
    """Log density in ``z`` of the prior, uniform in ``u = sigmoid(z)`` (each coordinate logistic)."""
    return jnp.sum(jax.nn.log_sigmoid(z) + jax.nn.log_sigmoid(-z), axis=-1)


def _chol(cov):
    """Cholesky factor of a symmetric covariance, its eigenvalues floored (never NaN)."""
    cov = 0.5 * (cov + cov.T)
    w, v = jnp.linalg.eigh(cov)
    w = jnp.clip(jnp.where(jnp.isfinite(w), w, 1.0), 1e-8, 1e4)
    return jnp.linalg.cholesky((v * w) @ v.T + 1e-10 * jnp.eye(cov.shape[0]))


def _values(logdensity, z, batch: int):
    """``logdensity`` of draws (n, param), ``batch`` at a time (bounded memory)."""
    return jax.lax.map(logdensity, z, batch_size=min(batch, z.shape[0]))


def _truncated_elbo(logp, logq):
    """ELBO of a normal truncated to where the model is valid: mean over the valid draws of
    ``log p - log q``, plus the log of their share (``-inf`` with none)."""
    ok = jnp.isfinite(logp) & jnp.isfinite(logq)
    n_ok = jnp.sum(ok)
    mean = jnp.sum(jnp.where(ok, logp - logq, 0.0)) / jnp.maximum(n_ok, 1)
    return jnp.where(n_ok > 0, mean + jnp.log(n_ok / logp.shape[0]), -jnp.inf)


def _path(logdensity, z0, key, settings: ImportanceSampler):
    """One L-BFGS path from ``z0``: the chosen normal (:class:`Normal`) and the evaluations spent."""
    d = z0.shape[0]

    def objective(z):
        v = logdensity(z)
        return jnp.where(jnp.isfinite(v), -v, _BIG)

    solver = optax.lbfgs(memory_size=10, linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=settings.linesearch_steps))
    value_and_grad = optax.value_and_grad_from_state(objective)
    eye = jnp.eye(d, dtype=z0.dtype)

    def elbo_of(mean, cov, k):
        comp = Normal(mean, _chol(cov))
        eps = jax.random.normal(k, (settings.elbo_draws, d), dtype=z0.dtype)
        z = mean + eps @ comp.chol.T
        logq = jax.vmap(lambda zz: normal_logpdf(zz, comp))(z)
        return _truncated_elbo(_values(logdensity, z, settings.eval_batch), logq)

    def step(carry, k):
        x, state, x_prev, g_prev, h, updated = carry
        f, g = value_and_grad(x, state=state)
        # BFGS update of the inverse Hessian from the last step (skipped where the curvature is not positive)
        s, y = x - x_prev, g - g_prev
        sy = s @ y
        ok = (sy > 1e-10 * jnp.linalg.norm(s) * jnp.linalg.norm(y)) & (sy > 0) & jnp.all(jnp.isfinite(y))
        rho = 1.0 / jnp.where(ok, sy, 1.0)
        h0 = jnp.where(updated, h, eye * jnp.where(ok, sy / jnp.where(ok, y @ y, 1.0), 1.0))
        v = eye - rho * jnp.outer(s, y)
        h_new = v @ h0 @ v.T + rho * jnp.outer(s, s)
        h = jnp.where(ok, h_new, h)
        updated = updated | ok
        valid = f < 0.5 * _BIG
        # Pathfinder's normal at this iterate: a Newton step of the quadratic model, its covariance H
        mean = x - h @ g
        elbo = jnp.where(valid, elbo_of(mean, h, k), -jnp.inf) if settings.approximation == "pathfinder" \
            else jnp.asarray(-jnp.inf, dtype=z0.dtype)
        updates, state = solver.update(g, state, x, value=f, grad=g, value_fn=objective)
        n_ls = optax.tree_utils.tree_get(state, "num_linesearch_steps")  # value-and-gradient evaluations
        return (x + updates, state, x, g, h, updated), (mean, h, jnp.where(jnp.isnan(elbo), -jnp.inf, elbo), x, f,
                                                         jnp.asarray(n_ls, dtype=z0.dtype))

    state = solver.init(z0)
    f0, g0 = jax.value_and_grad(objective)(z0)
    carry = (z0, state, z0, g0, eye, jnp.asarray(False))
    keys = jax.random.split(key, settings.maxiter)
    carry, (means, hs, elbos, xs, fs, n_ls) = jax.lax.scan(step, carry, keys)
    evals = jnp.sum(n_ls) + 1
    if settings.approximation == "pathfinder":
        best = jnp.argmax(elbos)
        evals = evals + settings.maxiter * settings.elbo_draws
        return Normal(means[best], _chol(hs[best])), evals
    # Laplace: the best point of the path (the mode, where the path converged), exact Hessian, with the
    # prior's part of the curvature replaced by the prior's own precision (see :func:`_laplace_covariance`)
    best = jnp.argmin(fs)
    x = xs[best]
    return Normal(x, jnp.linalg.cholesky(_laplace_covariance(jax.hessian(objective)(x), x))), evals + 2 * d


_PRIOR_PRECISION = 3.0 / math.pi**2
"""Precision of the logistic distribution (variance pi^2 / 3): the prior of each z."""


def _laplace_covariance(hess, x):
    """Covariance of the Laplace approximation at the mode ``x`` from the Hessian of ``-log p``.

    ``-log p`` is ``-log L - log prior``; at ``x`` the prior's curvature is ``2 s (1 - s)``,
    ``s = sigmoid(x)``: 0.5 at 0, a variance of 2 where the prior's is pi^2/3 = 3.29.  In the
    directions the data do not constrain (most of them) the plain Laplace approximation is so
    too narrow by 1.28 in sd, which over 20 such directions ruins importance sampling.  Here
    that curvature is replaced by the prior's precision 3/pi^2, so that unconstrained
    directions get the prior's variance; eigenvalues of the precision are kept within
    [0.05, 1e8] (a non-convex likelihood can make it indefinite off the mode).
    """
    s = jax.nn.sigmoid(x)
    prior_curv = 2.0 * s * (1.0 - s)
    precision = 0.5 * (hess + hess.T) + jnp.diag(_PRIOR_PRECISION - prior_curv)
    w, v = jnp.linalg.eigh(precision)
    w = jnp.clip(jnp.where(jnp.isfinite(w), w, 1.0), 0.05, 1e8)
    return (v / w) @ v.T + 1e-12 * jnp.eye(x.shape[0])


def _systematic(key, log_w, n: int):
    """``n`` indices resampled systematically from normalised log weights, in random order."""
    k1, k2 = jax.random.split(key)
    w = jnp.exp(log_w)
    cdf = jnp.cumsum(w)
    cdf = cdf / cdf[-1]
    pos = (jax.random.uniform(k1, dtype=w.dtype) + jnp.arange(n)) / n
    idx = jnp.clip(jnp.searchsorted(cdf, pos), 0, w.shape[0] - 1)
    return jax.random.permutation(k2, idx)


def _component_draws(key, mean, chol, n: int, df: float):
    """``n`` draws of the component ``(mean, chol)``: Student t with ``df`` degrees of freedom, or normal (df 0)."""
    eps = jax.random.normal(key, (n, mean.shape[-1]), dtype=mean.dtype)
    if df:  # Student t: a normal divided by sqrt(chi2_df / df)
        chi2 = 2.0 * jax.random.gamma(jax.random.fold_in(key, 1), 0.5 * df, (n,), dtype=mean.dtype)
        eps = eps * jnp.sqrt(df / chi2)[:, None]
    return mean + eps @ chol.T


def _component_logpdf(z, mean, chol, df: float):
    return student_logpdf(z, Normal(mean, chol), df) if df else normal_logpdf(z, Normal(mean, chol))


def _round(logdensity, key, means, chols, counts: tuple[int, ...], settings: ImportanceSampler):
    """One importance-sampling round from the defensive mixture: ``counts[0]`` prior draws, then
    ``counts[c + 1]`` draws of the component ``(means[c], chols[c])`` (Student t or normal).

    Returns the draws, their log density, PSIS log weights (normalised), k-hat, the ESS and the
    mask of draws where both densities are finite."""
    d = means.shape[-1]
    n = sum(counts)
    df = settings.tail_df
    keys = jax.random.split(key, len(counts))
    blocks = [jax.random.logistic(keys[0], (counts[0], d), dtype=means.dtype)]
    for c, m in enumerate(counts[1:]):
        blocks.append(_component_draws(keys[c + 1], means[c], chols[c], m, df))
    z = jnp.concatenate(blocks, axis=0)
    # the whole mixture's density at every draw (fixed numbers per component: weights n_c / n)
    log_mix = jnp.log(jnp.asarray(counts[1:], dtype=means.dtype) / n)
    log_comp = jax.vmap(lambda zz: jax.vmap(lambda m, c: _component_logpdf(zz, m, c, df))(means, chols))(z)
    logq = jnp.logaddexp(math.log(counts[0] / n) + prior_logpdf(z), jax.nn.logsumexp(log_comp + log_mix, axis=1))
    logp = _values(logdensity, z, settings.eval_batch)
    khat, ess, valid, log_w = _psis(logp, logq)
    return z, khat, ess, valid, log_w


def _psis(logp, logq):
    """PSIS of draws with target and proposal log densities: k-hat, ESS, the mask of draws where
    both are finite and the normalised smoothed log weights (``-inf`` at the others)."""
    valid = jnp.isfinite(logp) & jnp.isfinite(logq)
    n_valid = jnp.sum(valid)
    # PSIS needs finite ratios; a profile without any falls back (``n_valid`` = 0)
    log_ratio = jnp.where(valid, logp - logq, -jnp.inf)
    log_w, khat = psis_weights(jnp.where(n_valid > 0, log_ratio, 0.0))
    log_w = jnp.where(valid & jnp.isfinite(log_w), log_w, -jnp.inf)
    log_w = log_w - jax.nn.logsumexp(log_w)
    ess = 1.0 / jnp.sum(jnp.exp(2.0 * log_w))
    ok = n_valid > 0
    return jnp.where(ok, khat, jnp.inf), jnp.where(ok, ess, 0.0), valid, log_w


def _moments(z, log_w, ess, fallback_cov):
    """Weighted mean and covariance of the draws, shrunk towards ``fallback_cov`` when the ESS is small."""
    w = jnp.where(jnp.isfinite(log_w), jnp.exp(log_w), 0.0)
    mean = w @ jnp.where(jnp.isfinite(z), z, 0.0)
    r = jnp.where(w[:, None] > 0, z - mean, 0.0)
    cov = (r * w[:, None]).T @ r
    d = z.shape[-1]
    lam = ess / (ess + d + 1.0)
    return mean, lam * cov + (1.0 - lam) * fallback_cov


def importance_sample(logdensity, z0, key, settings: ImportanceSampler, n_out: int) -> ImportanceResult:
    """Approximate, propose, weight and resample one profile (see the module docstring).

    ``z0`` (paths, param) are the paths' starting points (finite log
    density); ``n_out`` equal-weight draws are returned.
    """
    d = z0.shape[-1]
    k_path, k_draw, k_res, k_start = jax.random.split(key, 4)
    comps, path_evals = jax.vmap(lambda z, k: _path(logdensity, z, k, settings))(
        z0, jax.random.split(k_path, z0.shape[0]))
    chols = comps.chol * settings.scale
    mean_cov = jnp.mean(jnp.einsum("pij,pkj->pik", chols, chols), axis=0)
    evals = jnp.sum(path_evals)

    def counts(n: int) -> tuple[int, ...]:
        """Draws per component: the prior, the adapted component, then each path."""
        n_prior = int(round(settings.prior_weight * n))
        n_adapt = int(round((1.0 - settings.prior_weight) * settings.adapted_share * n))
        per_path = (n - n_prior - n_adapt) // settings.paths
        return (n - n_adapt - per_path * settings.paths, n_adapt) + (per_path,) * settings.paths

    # adaptive importance sampling: every round draws from the prior, the path approximations and one
    # more component fitted to the previous round's weighted draws (at first: to the paths'
    # approximations); the last round (``draws`` draws) is the result.  The rounds before it are one
    # ``lax.scan`` (a single compiled body, whatever their number).
    def round_with(n, key, mean, cov):
        means = jnp.concatenate([mean[None], comps.mean], axis=0)
        all_chols = jnp.concatenate([_chol(cov)[None], chols], axis=0)
        return _round(logdensity, key, means, all_chols, counts(n), settings)

    def adapt(carry, key):
        mean, cov = carry
        z, khat, ess, valid, log_w = round_with(settings.adapt_draws, key, mean, cov)
        return _moments(z, log_w, ess, wide), None

    keys = jax.random.split(k_draw, settings.rounds + 1)
    wide = settings.init_scale**2 * (mean_cov + jnp.cov(comps.mean.T, bias=True).reshape(d, d))
    start = (jnp.mean(comps.mean, axis=0), wide)
    (mean, cov), _ = jax.lax.scan(adapt, start, keys[:-1])
    z, khat, ess, valid, log_w = round_with(settings.draws, keys[-1], mean, cov)
    evals = evals + settings.rounds * settings.adapt_draws + settings.draws
    idx = _systematic(k_res, log_w, n_out)

    # for a fall-back: valid draws of the final round in random order, one per chain start
    n_prior = counts(z.shape[0])[0]
    score = jnp.where(valid[n_prior:], jax.random.uniform(k_start, (z.shape[0] - n_prior,)), -1.0)
    _, pick = jax.lax.top_k(score, settings.paths)
    variances = jnp.sum(comps.chol**2, axis=-1)
    return ImportanceResult(
        z=z[idx],
        pareto_k=khat,
        ess=ess,
        n_valid=jnp.sum(valid).astype(z0.dtype),
        evals=evals.astype(z0.dtype),
        variances=variances,
        starts=z[n_prior:][pick],
    )


def _in_flow_precision(flow, fn, *args):
    """``fn(*args)`` traced in the flow's own precision: a float32 flow (as
    :func:`~soiljax.calibration.train_amortizer` trains it) in float32, its
    inputs cast (:func:`~soiljax.calibration._amortized.flow_precision`); any
    other flow as it is."""
    leaves = [a for a in jax.tree_util.tree_leaves(flow) if eqx.is_inexact_array(a)]
    if not leaves or any(a.dtype != jnp.float32 for a in leaves):
        return fn(*args)
    args = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a, args)
    with flow_precision():
        return fn(*args)


def _flow_round(logdensity, flow, condition, key, n: int, settings: ImportanceSampler, adapted=None, dtype=None):
    """One round of :func:`flow_importance_sample`: ``n`` draws of the defensive mixture of the prior,
    the flow and (when ``adapted = (mean, chol)``) a Student t fitted to an earlier round.

    The flow runs in its own precision (float32 as trained: it only
    proposes); the draws and every other density are in ``dtype``.  The flow
    density of its own draws comes with them (``sample_and_log_prob``); it is
    evaluated only for the other components' draws.  The draws are ordered
    prior, flow, adapted.  Returns them, the mask of valid draws, the PSIS log
    weights, k-hat, the ESS and the numbers of prior and flow draws."""
    n_prior = int(round(settings.prior_weight * n))
    n_adapt = 0 if adapted is None else int(round((1.0 - settings.prior_weight) * settings.adapted_share * n))
    n_flow = n - n_prior - n_adapt
    k_flow, k_prior, k_adapt = jax.random.split(key, 3)
    typed = k_flow if jax.dtypes.issubdtype(k_flow.dtype, jax.dtypes.prng_key) else jax.random.wrap_key_data(k_flow)
    z_flow, log_flow_own = _in_flow_precision(  # flowjax takes typed keys
        flow, lambda k, c: flow.sample_and_log_prob(k, (n_flow,), condition=c), typed, condition)
    dtype = z_flow.dtype if dtype is None else dtype
    d = z_flow.shape[-1]
    others = [jax.random.logistic(k_prior, (n_prior, d), dtype=dtype)]
    df = settings.tail_df
    if adapted is not None:
        others.append(_component_draws(k_adapt, adapted[0].astype(dtype), adapted[1].astype(dtype), n_adapt, df))
    # rounded to the flow's precision, so that the flow's density and the model's are taken at the same point
    z_other = jnp.concatenate(others, axis=0).astype(z_flow.dtype).astype(dtype)
    log_flow_other = _in_flow_precision(
        flow, lambda zs, c: jax.lax.map(lambda zz: flow.log_prob(zz, condition=c), zs,
                                        batch_size=min(settings.eval_batch, zs.shape[0])),
        z_other.astype(z_flow.dtype), condition)
    z = jnp.concatenate([z_other[:n_prior], z_flow.astype(dtype), z_other[n_prior:]], axis=0)
    log_flow = jnp.concatenate([log_flow_other[:n_prior], log_flow_own, log_flow_other[n_prior:]]).astype(dtype)
    finite = jnp.all(jnp.isfinite(z), axis=1) & jnp.isfinite(log_flow)
    z = jnp.where(finite[:, None], z, 0.0)  # a flow can overflow far out: such a draw is dropped below
    parts = [math.log(n_prior / n) + prior_logpdf(z), math.log(n_flow / n) + log_flow]
    if adapted is not None:
        parts.append(math.log(n_adapt / n) + jax.vmap(lambda zz: _component_logpdf(zz, *adapted, df))(z))
    logq = jnp.where(finite, jax.nn.logsumexp(jnp.stack(parts), axis=0), -jnp.inf)
    logp = jnp.where(finite, _values(logdensity, z, settings.eval_batch), -jnp.inf)
    khat, ess, valid, log_w = _psis(logp, logq)
    return z, valid, log_w, khat, ess, n_prior, n_flow


def flow_importance_sample(logdensity, flow, condition, key, settings: ImportanceSampler, n_out: int,
                           n_starts: int, dtype=None) -> ImportanceResult:
    """Importance sampling of one profile from an amortised flow (:mod:`soiljax.calibration._amortized`).

    The proposal is the defensive mixture ``prior_weight * prior + (1 -
    prior_weight) * q(z | condition)``, in fixed numbers of draws per
    component; the flow is any distribution with flowjax's
    ``sample_and_log_prob`` and ``log_prob`` taking ``condition``.  Then
    ``adapt_rounds`` times (``adapt_draws`` draws each, the last ``draws``):
    a Student t (``tail_df``) fitted to the weighted draws of the round before
    (their mean and covariance, shrunk towards the flow draws' covariance when
    the ESS is small) joins the mixture with the share ``(1 - prior_weight) *
    adapted_share``; it corrects per profile what the amortised flow gets
    wrong.  The final round's weights are Pareto-smoothed (:func:`_psis`) and
    ``n_out`` draws resampled as in :func:`importance_sample`.  For a
    fall-back: ``n_starts`` valid flow draws of the final round and the
    weighted variances of its draws (repeated per start).  ``dtype``: the
    precision of the draws and densities (default: the flow's).
    """
    keys = jax.random.split(key, settings.rounds + 3)
    adapted = None
    for r in range(settings.rounds):
        z, valid, log_w, khat, ess, n_prior, _ = _flow_round(logdensity, flow, condition, keys[r],
                                                          settings.adapt_draws, settings, adapted, dtype)
        broad = jnp.cov(jnp.where(valid[:, None], z, 0.0)[n_prior:].T)  # the round's flow and t draws
        mean, cov = _moments(z, log_w, ess, broad)
        adapted = (mean, _chol(cov))
    z, valid, log_w, khat, ess, n_prior, n_flow = _flow_round(logdensity, flow, condition, keys[-3], settings.draws,
                                                              settings, adapted, dtype)
    idx = _systematic(keys[-2], log_w, n_out)
    w = jnp.where(valid, jnp.exp(log_w), 0.0)
    mean = w @ z
    var = w @ (z - mean) ** 2
    d = z.shape[-1]
    n_flow_end = n_prior + n_flow
    score = jnp.where(valid[n_prior:n_flow_end], jax.random.uniform(keys[-1], (n_flow_end - n_prior,)), -1.0)
    _, pick = jax.lax.top_k(score, n_starts)
    return ImportanceResult(
        z=z[idx],
        pareto_k=khat,
        ess=ess,
        n_valid=jnp.sum(valid).astype(z.dtype),
        evals=jnp.asarray(settings.rounds * settings.adapt_draws + settings.draws, dtype=z.dtype),
        variances=jnp.broadcast_to(var, (n_starts, d)),
        starts=z[n_prior:n_flow_end][pick],
    )


class Auto(eqx.Module):
    """``method="auto"``: importance sampling from an approximate posterior (:class:`ImportanceSampler`),
    and NUTS for exactly the profiles whose importance sampling fails its checks.

    A profile is accepted from importance sampling when its k-hat is below
    ``khat_threshold`` and its ESS at least ``min_ess``.
    The others are sampled by ``fallback`` (NUTS with the model's tree-depth
    cap by default), their chains started from valid draws of the
    approximation and their diagonal inverse mass matrix from its variances,
    so that a short warmup (``fallback_warmup`` iterations, unless
    ``calibrate(warmup=...)`` says otherwise) suffices.

    With the ``"npe"`` approximation, ``calibrate`` trains the flow on
    ``simulations`` prior simulations at the run's sites (None: the model's
    ``default_auto_simulations``) for at most
    ``max_epochs`` epochs (:func:`~soiljax.calibration.train_amortizer`),
    unless ``calibrate(amortizer=...)`` gives one.  A profile whose first
    importance sampling fails either check is sampled once more from the flow
    with ``retry_draws`` draws (0: no second try) before it falls back: more
    draws raise the ESS in proportion and settle a k-hat near the threshold,
    for a few percent of a NUTS run's cost (measured: ``benchmarks/README.md``).

    Training the flow is a fixed cost (minutes on a CPU), which only a run of
    many profiles repays.  A ``"npe"`` run of fewer than ``min_profiles``
    profiles (None: the model's ``default_auto_min_profiles``) that is given
    no trained flow therefore samples every profile with ``fallback``,
    started and warmed up as ``method="nuts"`` would be (its draws are those
    of NUTS with the same seed), with ``fallback_reason`` ``"few_profiles"``.
    """

    importance: ImportanceSampler = ImportanceSampler()
    khat_threshold: float = 0.7
    min_ess: float = 100.0
    fallback: eqx.Module | None = None
    fallback_warmup: int = 200
    simulations: int | None = None
    max_epochs: int = 60
    retry_draws: int = 16_000
    min_profiles: int | None = None

    def __check_init__(self):
        if self.fallback_warmup < 0:
            raise ValueError(f"fallback_warmup={self.fallback_warmup} must be >= 0")
        if self.retry_draws < 0:
            raise ValueError(f"retry_draws={self.retry_draws} must be >= 0 (0: no second importance sampling)")
        if self.min_profiles is not None and self.min_profiles < 0:
            raise ValueError(f"min_profiles={self.min_profiles} must be >= 0 or None (the model's default)")
