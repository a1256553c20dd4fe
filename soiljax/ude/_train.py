"""Losses, optimisers, grid search and ensembles for the SOC UDE.

The data flow is ``Problem`` (what was observed) + ``Estimate`` (what is learned) ->
a scalar objective -> Adam (optax) -> L-BFGS (optax, zoom line search) -> a trained
``Estimate``.  Every objective is a pure function of the estimate, so ``jax.grad``
differentiates through the diffrax solve with the adjoint chosen in ``SolveOptions``.

Plain loss (the paper's, case tables 2-7)::

    L = lambda_term * mean_z (u(t_f) - d(t_f))^2                 (eq. 16, t_f the focus time)
      + lambda_coll * mean_{k, z} (u(t_k) - d(t_k))^2           (collocation points)
      + lambda_wd   * mean(theta^2)                              (weight decay)
      [+ smooth * mean_z (second difference of log C(z, 0))^2     (optional, beyond the paper:
       + smooth_profiles * mean_{k, z} (same, of log u(t_k))^2]    smoothness priors over depth)

``u`` is the UDE solution, ``d`` the observations, ``t_f`` the focus time of the case
(``t = 0`` for cases 1-3, ``t = 50`` for cases 4-6) and the collocation points are the
observed profiles at the other sample times: the PDE solution must pass through the
observed depth-time field at those (z, t) points, which is how the data constrain the
dynamics between ``0`` and ``t_f``.  Weight decay is the *mean* of the squared network
weights, so ``lambda_wd`` does not depend on the network size.

A failed solve (step limit, non-finite state) returns ``FAIL_PENALTY + 0 * sum(theta^2)``:
finite, with a defined (zero) gradient, as the paper's safe-solve wrapper.

Noise-aware loss (beyond the paper): the negative log-likelihood of a learned
multiplicative noise model (:class:`NoiseModel`) over every observed profile, weighted
equally, plus the same weight decay.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float
from tqdm.auto import tqdm

from ._model import FAIL_PENALTY, Drivers, SOCModel, make_ude, solve
from ._noise import standard_noise
from ._options import NOISE_FAMILIES as NOISE_FAMILIES

# ---------------------------------------------------------------------------------------
# What is observed and what is learned
# ---------------------------------------------------------------------------------------


class Problem(eqx.Module):
    """An inverse problem: observed profiles at ``ts`` and the drivers the model sees.

    Attributes
    ----------
    ts: sample times, ``ts[0]`` is the start of the integration.
    c_obs: observed profiles ``(nt, nz)``.
    drivers: the drivers as the model sees them.
    c0: the known initial profile, or ``None`` when the initial state is estimated
        (cases 1-3: the ``t = 0`` profile is itself an observation).
    focus: index into ``ts`` of the profile the case is about (eq. 16).
    data_mask: 1 for the sample times whose profiles enter the loss, 0 for held-out ones
        (validation) and for ``t = 0`` when the initial state is known.
    """

    ts: Float[Array, " nt"]
    c_obs: Float[Array, "nt nz"]
    drivers: Drivers
    c0: Float[Array, " nz"] | None
    focus: int = eqx.field(static=True)
    data_mask: Float[Array, " nt"]

    def __init__(self, ts, c_obs, drivers, c0, focus, data_mask=None):
        self.ts = jnp.asarray(ts)
        self.c_obs = jnp.asarray(c_obs)
        self.drivers = drivers
        self.c0 = None if c0 is None else jnp.asarray(c0)
        nt = self.ts.shape[0]
        self.focus = int(focus) % nt
        if data_mask is None:
            data_mask = np.ones(nt)
            if c0 is not None:
                data_mask[0] = 0.0
        self.data_mask = jnp.asarray(data_mask, dtype=float)

    def with_obs(self, c_obs) -> "Problem":
        return eqx.tree_at(lambda p: p.c_obs, self, jnp.asarray(c_obs))

    def with_mask(self, mask) -> "Problem":
        return eqx.tree_at(lambda p: p.data_mask, self, jnp.asarray(mask, dtype=float))


class Estimate(eqx.Module):
    """Everything that is learned: the UDE and, when it is unknown, the initial profile.

    The initial profile is stored as ``log C`` so that it stays positive.
    """

    model: SOCModel
    log_c0: Float[Array, " nz"] | None

    def initial_state(self, problem: Problem) -> Float[Array, " nz"]:
        if self.log_c0 is None:
            if problem.c0 is None:
                raise ValueError(
                    "the problem has no known initial profile and the estimate has no "
                    "log_c0: build the estimate with initial_estimate(...)"
                )
            return problem.c0
        return jnp.exp(self.log_c0)


def initial_estimate(
    key, problem: Problem, h1=32, h2=16, activation="tanh", train_physics=False
) -> Estimate:
    """A fresh UDE; the initial state (if unknown) starts from the observed ``t = 0`` profile."""
    model = make_ude(key, h1, h2, activation, train_physics=train_physics)
    if problem.c0 is not None:
        return Estimate(model, None)
    first = jnp.maximum(problem.c_obs[0], 1e-3)
    return Estimate(model, jnp.log(first))


@dataclasses.dataclass(frozen=True)
class SolveOptions:
    """Solver settings (static at trace time: changing them recompiles)."""

    rtol: float = 1e-5
    atol: float = 1e-5
    adjoint: str = "recursive"
    max_steps: int = 4096


TUNING = SolveOptions(1e-5, 1e-5)
"""Tolerances while training and tuning (paper: 1e-5)."""
FINAL = SolveOptions(1e-6, 1e-6)
"""Tolerances of the final evaluation (paper: 1e-6)."""


def predict(est: Estimate, problem: Problem, opts: SolveOptions = FINAL):
    """Model profiles at ``problem.ts`` and the solve's success flag."""
    return solve(
        est.model,
        problem.drivers,
        est.initial_state(problem),
        problem.ts,
        rtol=opts.rtol,
        atol=opts.atol,
        adjoint=opts.adjoint,
        max_steps=opts.max_steps,
    )


def weight_decay(est: Estimate) -> Float[Array, ""]:
    """Mean of the squared network weights and biases."""
    leaves = jax.tree.leaves(eqx.filter(est.model.reactions, eqx.is_inexact_array))
    total = sum(jnp.sum(x**2) for x in leaves)
    count = sum(x.size for x in leaves)
    return total / count


def _safe(loss, ok, est):
    """Double-``where``: a failed solve gives a finite penalty with a defined gradient."""
    penalty = FAIL_PENALTY + 0.0 * weight_decay(est)
    return jnp.where(ok & jnp.isfinite(loss), loss, penalty)


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """The case tables' loss weights, and the weights of the smoothness priors over depth.

    ``smooth`` (beyond the paper, 0 in its tables) weights :func:`initial_roughness`, a
    prior that the unknown initial profile is smooth in depth; ``smooth_profiles`` weights
    :func:`profile_roughness` of the modelled profiles at every sample time.
    """

    term: float = 1.0
    coll: float = 1.0
    wd: float = 1e-4
    smooth: float = 0.0
    smooth_profiles: float = 0.0


def initial_roughness(est: Estimate) -> Float[Array, ""]:
    """Mean squared second difference over depth of the estimated ``log C(z, 0)``.

    Zero for an exponential profile (the usual shape of SOC with depth) and for a known
    initial profile.  Without it, the 30 free initial values of cases 1-3 copy the
    noise of the observed ``t = 0`` profile, which the focus weight pulls them towards.
    """
    if est.log_c0 is None:
        return jnp.zeros(())
    return _mean_sq_second_difference(est.log_c0)


def profile_roughness(ys: Float[Array, "nt nz"]) -> Float[Array, ""]:
    """Mean squared second difference over depth of ``log C`` of modelled profiles.

    The networks see the drivers with their per-depth noise; this prior keeps them from
    turning that noise into jagged production or respiration.
    """
    return _mean_sq_second_difference(jnp.log(jnp.abs(ys) + 1e-12))


def _mean_sq_second_difference(c):
    return jnp.mean((c[..., 2:] - 2.0 * c[..., 1:-1] + c[..., :-2]) ** 2)


def _smoothness(est: Estimate, ys, weights: "LossWeights"):
    total = jnp.zeros(())
    if weights.smooth:
        total = total + weights.smooth * initial_roughness(est)
    if weights.smooth_profiles:
        total = total + weights.smooth_profiles * profile_roughness(ys)
    return total


def plain_loss(
    est: Estimate, problem: Problem, weights: LossWeights, opts: SolveOptions = TUNING
) -> Float[Array, ""]:
    """The paper's loss: focus-time MSE + collocation MSE + weight decay (module docstring)."""
    ys, ok = predict(est, problem, opts)
    sq = (ys - problem.c_obs) ** 2
    term = jnp.mean(sq[problem.focus])
    coll_mask = problem.data_mask.at[problem.focus].set(0.0)
    coll = jnp.sum(coll_mask * jnp.mean(sq, axis=1)) / jnp.maximum(jnp.sum(coll_mask), 1.0)
    loss = weights.term * term + weights.coll * coll + weights.wd * weight_decay(est)
    loss = loss + _smoothness(est, ys, weights)
    return _safe(loss, ok, est)


def validation_mse(est: Estimate, problem: Problem, val_mask, opts=TUNING):
    """MSE over the held-out sample times (``val_mask == 1``)."""
    ys, ok = predict(est, problem, opts)
    per_time = jnp.mean((ys - problem.c_obs) ** 2, axis=1)
    val_mask = jnp.asarray(val_mask, dtype=float)
    mse = jnp.sum(val_mask * per_time) / jnp.sum(val_mask)
    return jnp.where(ok, mse, FAIL_PENALTY)


# ---------------------------------------------------------------------------------------
# Noise-aware likelihood
# ---------------------------------------------------------------------------------------


class NoiseModel(eqx.Module):
    """A learned multiplicative observation-noise model for SOC profiles.

    * ``normal``: ``d = u (1 + sigma eps)``, ``eps ~ N(0, 1)`` - exactly paper eq. 13, a
      Gaussian whose standard deviation is proportional to the modelled concentration.
    * ``student_t``: the same with Student-t ``eps`` (``nu`` learned, ``nu > 2``); robust
      to outliers, it down-weights the largest relative errors.
    * ``lognormal``: ``log d = log u + sigma eps``; needs positive observations.

    With ``ar1=True`` the standardised errors of one profile form an AR-1 sequence over
    depth with learned ``rho`` (``|rho| < 0.95``); the likelihood is then evaluated on the
    innovations ``e_i - rho e_{i-1}`` with scale ``sqrt(1 - rho^2)``.
    """

    log_sigma: Float[Array, ""]
    rho_raw: Float[Array, ""]
    log_df: Float[Array, ""]
    family: str = eqx.field(static=True)
    ar1: bool = eqx.field(static=True)

    def __init__(self, family="normal", ar1=False, sigma=0.1, rho=0.0, df=5.0):
        if family not in NOISE_FAMILIES:
            raise ValueError(f"unknown noise family {family!r}; choose one of {NOISE_FAMILIES}")
        self.family = family
        self.ar1 = ar1
        self.log_sigma = jnp.log(jnp.asarray(sigma, dtype=float))
        self.rho_raw = jnp.arctanh(jnp.asarray(rho / 0.95, dtype=float))
        self.log_df = jnp.log(jnp.asarray(df - 2.0, dtype=float))

    @property
    def sigma(self):
        return jnp.exp(self.log_sigma)

    @property
    def rho(self):
        return 0.95 * jnp.tanh(self.rho_raw) if self.ar1 else jnp.zeros(())

    @property
    def df(self):
        return 2.0 + jnp.exp(self.log_df)

    def _std_residuals(self, obs, pred):
        """Standardised residuals and the log of their scale (the Jacobian term)."""
        if self.family == "lognormal":
            resid = (jnp.log(obs) - jnp.log(jnp.abs(pred) + 1e-12)) / self.sigma
            return resid, jnp.broadcast_to(self.log_sigma, obs.shape)
        scale = self.sigma * jnp.sqrt(pred**2 + 1e-8)
        return (obs - pred) / scale, jnp.log(scale)

    def _log_density(self, x):
        if self.family == "student_t":
            nu = self.df
            return (
                jax.scipy.special.gammaln((nu + 1) / 2)
                - jax.scipy.special.gammaln(nu / 2)
                - 0.5 * jnp.log(nu * jnp.pi)
                - (nu + 1) / 2 * jnp.log1p(x**2 / nu)
            )
        return -0.5 * x**2 - 0.5 * jnp.log(2 * jnp.pi)

    def nll(self, obs: Float[Array, "... nz"], pred: Float[Array, "... nz"]):
        """Negative log-likelihood of each profile (summed over depth)."""
        e, log_scale = self._std_residuals(obs, pred)
        if self.ar1:
            rho = self.rho
            s = jnp.sqrt(1.0 - rho**2)
            innov = jnp.concatenate([e[..., :1], (e[..., 1:] - rho * e[..., :-1]) / s], -1)
            extra = jnp.log(s) * (e.shape[-1] - 1)
        else:
            innov, extra = e, 0.0
        return -jnp.sum(self._log_density(innov) - log_scale, axis=-1) + extra

    def sample_eps(self, key, shape):
        """Standardised errors from the fitted model (for parametric perturbations)."""
        rho = float(self.rho)
        eps = standard_noise(key, shape, rho)
        if self.family == "student_t":
            nu = float(self.df)
            k2 = jax.random.fold_in(key, 1)
            chi = jax.random.gamma(k2, nu / 2, shape[:-1] + (1,)) * 2 / nu
            eps = eps / jnp.sqrt(chi) * jnp.sqrt((nu - 2) / nu)
        return eps


class NoisyEstimate(eqx.Module):
    """An :class:`Estimate` together with its learned :class:`NoiseModel`."""

    est: Estimate
    noise: NoiseModel


def noise_aware_loss(
    nest: NoisyEstimate, problem: Problem, weights: LossWeights, opts=TUNING
) -> Float[Array, ""]:
    """Mean negative log-likelihood per observation + weight decay."""
    ys, ok = predict(nest.est, problem, opts)
    obs = problem.c_obs
    if nest.noise.family == "lognormal":
        # Multiplicative Gaussian noise can push a few observations to or below zero,
        # where the log-normal density does not exist; such values are floored at 1e-6.
        obs = jnp.maximum(obs, 1e-6)
    per_profile = nest.noise.nll(obs, ys)
    n_obs = jnp.sum(problem.data_mask) * problem.c_obs.shape[1]
    loss = jnp.sum(problem.data_mask * per_profile) / n_obs
    loss = loss + weights.wd * weight_decay(nest.est)
    if weights.smooth or weights.smooth_profiles:
        # the same prior strength as in the plain loss: there the data term is a squared
        # error, which at the noise level is ~ sigma^2 mean(C^2) per observation; here it
        # is ~1/2 per observation, so the weight is rescaled by 1 / (2 sigma^2 mean(C^2))
        mask = problem.data_mask[:, None]
        mean_sq = jnp.sum(mask * problem.c_obs**2) / n_obs
        scale = 2.0 * jax.lax.stop_gradient(nest.noise.sigma) ** 2 * mean_sq
        loss = loss + _smoothness(nest.est, ys, weights) / scale
    return _safe(loss, ok, nest.est)


# ---------------------------------------------------------------------------------------
# Optimisation
# ---------------------------------------------------------------------------------------
def _finite(tree):
    return jax.tree.map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), tree)


@eqx.filter_jit
def _adam_step(params, static, opt_state, objective, optimizer):
    def f(p):
        return objective(eqx.combine(p, static))

    loss, grads = jax.value_and_grad(f)(params)
    updates, opt_state = optimizer.update(_finite(grads), opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


@eqx.filter_jit
def _lbfgs_step(params, static, opt_state, objective, optimizer):
    def f(p):
        return objective(eqx.combine(p, static))

    value, grads = optax.value_and_grad_from_state(f)(params, state=opt_state)
    grads = _finite(grads)
    updates, opt_state = optimizer.update(
        grads, opt_state, params, value=value, grad=grads, value_fn=f
    )
    return optax.apply_updates(params, updates), opt_state, value


@functools.lru_cache(maxsize=None)
def _adam(lr: float):
    # One optimizer object per learning rate: the jitted steps take the optimizer as a
    # static argument, and a fresh optax.adam(...) (new closures) would recompile them.
    return optax.adam(lr)


@functools.lru_cache(maxsize=None)
def _lbfgs():
    return optax.lbfgs()


@dataclasses.dataclass
class TrainResult:
    """A trained pytree, the loss history and the best loss reached."""

    params: Any
    history: list[float]
    best_loss: float


def train(
    init,
    objective: Callable[[Any], Array],
    *,
    lr: float = 3e-3,
    adam_iters: int = 200,
    bfgs_iters: int = 400,
    progress: bool = True,
    desc: str = "train",
    fine_objective: Callable[[Any], Array] | None = None,
    patience: int = 25,
) -> TrainResult:
    """Adam then L-BFGS on ``objective(params)``; returns the best parameters seen.

    ``objective`` should be an ``equinox.Partial`` (or another pytree-callable) so that
    its arrays are traced rather than baked into the compiled step.  Progress (iteration
    and loss) is shown with tqdm unless ``progress=False``.

    ``fine_objective`` (default: ``objective``) is minimised in the L-BFGS phase.  Pass
    the same loss solved with tighter tolerances: the zoom line search compares loss
    values that differ by far less than the adaptive solver's error at ``rtol = 1e-5``,
    and on that noisy loss it stalls (measured: no progress at 1e-5, a tenfold decrease in
    100 iterations at 1e-8).  L-BFGS stops early when the best loss has not improved for
    ``patience`` iterations.
    """
    params, static = eqx.partition(init, eqx.is_inexact_array)
    history: list[float] = []
    best = (math.inf, params)

    def record(loss, p):
        nonlocal best
        val = float(loss)
        history.append(val)
        if val < best[0]:
            best = (val, p)
        return val

    adam = _adam(float(lr))
    state = adam.init(params)
    bar = tqdm(total=adam_iters + bfgs_iters, desc=desc, disable=not progress, leave=False)
    for _ in range(adam_iters):
        new_params, state, loss = _adam_step(params, static, state, objective, adam)
        val = record(loss, params)
        params = new_params
        bar.update(1)
        bar.set_postfix(phase="adam", loss=f"{val:.3e}", refresh=False)
    if bfgs_iters:
        fine = objective if fine_objective is None else fine_objective
        params = best[1]
        # restart the bookkeeping on the fine objective (its values differ slightly)
        best = (float(eqx.filter_jit(fine)(eqx.combine(params, static))), params)
        lbfgs = _lbfgs()
        state = lbfgs.init(params)
        since_best = 0
        for _ in range(bfgs_iters):
            new_params, state, loss = _lbfgs_step(params, static, state, fine, lbfgs)
            before = best[0]
            val = record(loss, params)
            since_best = 0 if val < before * (1 - 1e-9) else since_best + 1
            params = new_params
            bar.update(1)
            bar.set_postfix(phase="lbfgs", loss=f"{val:.3e}", refresh=False)
            if since_best >= patience:
                break
        record(eqx.filter_jit(fine)(eqx.combine(params, static)), params)
    bar.close()
    return TrainResult(eqx.combine(best[1], static), history, best[0])


# ---------------------------------------------------------------------------------------
# Grid search
# ---------------------------------------------------------------------------------------
PAPER_GRID = {
    "h1": (32, 64),
    "h2": (16, 32),
    "activation": ("tanh", "gelu"),
    "lr": (3e-3, 5e-3),
}
"""The paper's Table 1 grid: 2 x 2 x 2 x 2 = 16 configurations."""


def validation_split(nt: int, every: int = 5, offset: int = 2) -> np.ndarray:
    """Hold out every ``every``-th sample time (starting at ``offset``) for validation."""
    mask = np.zeros(nt)
    mask[offset::every] = 1.0
    mask[0] = mask[-1] = 0.0
    return mask


def grid_search(
    problem: Problem,
    weights: LossWeights,
    grid: dict[str, Sequence] = PAPER_GRID,
    *,
    iters: int = 100,
    seed: int = 0,
    progress: bool = True,
) -> tuple[dict, list[dict]]:
    """Train every configuration briefly (Adam) without the validation profiles.

    Returns the configuration with the lowest validation MSE on the held-out sample times
    and a table of all trials.  The focus profile is never held out: it is the one the
    case is about.
    """
    val = validation_split(problem.ts.shape[0])
    val[problem.focus] = 0.0
    train_problem = problem.with_mask(np.asarray(problem.data_mask) * (1.0 - val))
    trials = []
    keys = list(grid)
    combos = list(itertools.product(*(grid[k] for k in keys)))
    for i, values in enumerate(combos):
        cfg = dict(zip(keys, values))
        est = initial_estimate(
            jax.random.key(seed), problem, cfg["h1"], cfg["h2"], cfg["activation"]
        )
        objective = eqx.Partial(plain_loss, problem=train_problem, weights=weights)
        res = train(
            est, objective, lr=cfg["lr"], adam_iters=iters, bfgs_iters=0,
            progress=progress, desc=f"grid {i + 1}/{len(combos)}",
        )
        vloss = float(eqx.filter_jit(validation_mse)(res.params, problem, val))
        trials.append({**cfg, "train_loss": res.best_loss, "val_mse": vloss})
        if progress:
            tqdm.write(f"grid {i + 1}/{len(combos)} {cfg}: val_mse={vloss:.3e}")
    best = min(trials, key=lambda r: r["val_mse"])
    return {k: best[k] for k in keys}, trials


# ---------------------------------------------------------------------------------------
# Metrics and ensembles
# ---------------------------------------------------------------------------------------
def mse(pred, ref) -> float:
    return float(np.mean((np.asarray(pred) - np.asarray(ref)) ** 2))


def r2(pred, ref) -> float:
    """Coefficient of determination of ``pred`` against the reference ``ref``."""
    pred, ref = np.asarray(pred), np.asarray(ref)
    return float(1.0 - np.sum((pred - ref) ** 2) / np.sum((ref - ref.mean()) ** 2))


def perturbed_ensemble(
    nest: NoisyEstimate,
    problem: Problem,
    weights: LossWeights,
    *,
    members: int = 8,
    seed: int = 0,
    lr: float = 1e-3,
    adam_iters: int = 100,
    bfgs_iters: int = 100,
    progress: bool = True,
) -> list[NoisyEstimate]:
    """Randomised-MAP ensemble for predictive intervals.

    Each member refits the noise-aware objective, warm-started at the MAP estimate, to
    the observations perturbed by a fresh draw of the *fitted* noise model
    (``d_m = d + sigma_hat * u_hat * eps_m``, AR-1 when the noise model is).  For a
    linear-Gaussian model the refitted estimates are exact posterior draws
    ("randomise-then-optimise"); here they are an approximation that, unlike an
    ensemble of random restarts, reflects how much the data pin down the profile.
    """
    u_hat, ok = eqx.filter_jit(predict)(nest.est, problem, TUNING)
    if not bool(ok):
        raise RuntimeError("the MAP estimate does not solve; train it before the ensemble")
    sigma = float(nest.noise.sigma)
    out = []
    for m in range(members):
        eps = nest.noise.sample_eps(jax.random.key(seed * 1000 + m), problem.c_obs.shape)
        member_problem = problem.with_obs(problem.c_obs + sigma * jnp.abs(u_hat) * eps)
        objective = eqx.Partial(noise_aware_loss, problem=member_problem, weights=weights)
        fine = eqx.Partial(noise_aware_loss, problem=member_problem, weights=weights,
                           opts=SolveOptions(1e-8, 1e-8))
        res = train(
            nest, objective, lr=lr, adam_iters=adam_iters, bfgs_iters=bfgs_iters,
            progress=progress, desc=f"member {m + 1}/{members}", fine_objective=fine,
        )
        out.append(res.params)
    return out
