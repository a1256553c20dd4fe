"""Samplers for site-level calibration, vmapped over profiles and chains.

Every sampler advances all chains of all profiles of a batch in lock-step:
one jitted, vmapped ``lax.scan`` per chunk of iterations, so the steady-state
solves of the whole batch run as one vectorised call.  A sampler is an
``equinox`` module with three methods used by :func:`soiljax.calibration.calibrate`:

``init(key, z0, logdensity)``
    the state of one chain at unconstrained position ``z0``;
``step(key, state, flags, logdensity)``
    one iteration of one chain, warmup or sampling as ``flags`` say (see
    :func:`warmup_schedule`); returns the new state and a small
    :class:`Record` (position, log density, acceptance probability,
    divergence flag, gradient evaluations).

PRODA's sampler has its own steps (``random_walk_step``, ``adaptive_step``).

:class:`HMC` and :class:`NUTS` (BlackJAX kernels) adapt a step size by dual
averaging and a diagonal mass matrix in Stan's windowed schedule, per chain.
:class:`HMC` integrates a fixed number of leapfrog steps, the same for every
chain, which suits lock-step vmapping: no chain waits for another.
:class:`NUTS` chooses the trajectory length per iteration; vmapped, each
iteration costs as much as the longest trajectory of the batch, hence the
cap on tree doublings.

:class:`ProdaMetropolis` is PRODA's own two-part sampler (MODELS.md 7),
working in ``u`` rather than ``z``: a uniform random walk, then adaptive
Metropolis with PRODA's annealed acceptance rule ``exp(-dJ ln(i + 2)) > U``.
"""

from __future__ import annotations

from types import MappingProxyType

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.mass_matrix import WelfordAlgorithmState, welford_algorithm
from blackjax.adaptation.step_size import DualAveragingAdaptationState, dual_averaging_adaptation
from blackjax.mcmc import hmc as _bj_hmc
from blackjax.mcmc import nuts as _bj_nuts
from jaxtyping import Array, Bool, Float, Int

from .._registry import model_classes

MIN_STEP_SIZE = 1e-4
"""Floor of the adapted step size (in units of the mass matrix's scale)."""


class Record(eqx.Module):
    """What one iteration of one chain leaves behind."""

    position: Float[Array, " param"]
    logdensity: Float[Array, ""]
    acceptance: Float[Array, ""]
    divergent: Bool[Array, ""]
    n_steps: Int[Array, ""]  # model (gradient) evaluations spent by the iteration


# --------------------------------------------------------------------------
# Stan's windowed warmup schedule
# --------------------------------------------------------------------------


def warmup_schedule(num_warmup: int) -> tuple[np.ndarray, np.ndarray]:
    """Stan's adaptation windows as two boolean arrays over the warmup iterations.

    ``slow[i]``: iteration ``i`` feeds the mass-matrix estimate;
    ``window_end[i]``: the estimate is turned into a new mass matrix after
    iteration ``i`` and the step-size adaptation restarts.  Default buffers
    are 75 (fast, step size only), doubling slow windows from 25, and 50 (fast)
    at the end; short warmups scale them to 15% / 75% / 10%, as Stan does.
    """
    n = int(num_warmup)
    slow = np.zeros(n, bool)
    end = np.zeros(n, bool)
    if n < 20:
        return slow, end
    init, term, base = 75, 50, 25
    if init + term + base > n:
        init, term = int(0.15 * n), int(0.1 * n)
        base = n - init - term
    start, size = init, base
    last = n - term
    while start < last:
        stop = start + size
        if stop + 2 * size > last:  # the next window would not fit: stretch this one
            stop = last
        slow[start:stop] = True
        end[stop - 1] = True
        start, size = stop, 2 * size
    return slow, end


class AdaptState(eqx.Module):
    """Dual-averaging step size and Welford mass-matrix state of one chain."""

    da: DualAveragingAdaptationState
    welford: WelfordAlgorithmState
    inverse_mass: Float[Array, "param *param"]
    step_size: Float[Array, ""]


def _select(flag, a, b):
    return jax.tree_util.tree_map(lambda x, y: jnp.where(flag, x, y), a, b)


class _Gradient(eqx.Module):
    """Shared machinery of the gradient-based samplers: Stan-style adaptation.

    One ``step`` serves warmup and sampling (one compiled program); the
    iteration's ``flags`` = (adapting, slow, window_end, last) switch the
    adaptation on and off: step size by dual averaging towards
    ``target_acceptance`` while adapting, the mass matrix from the Welford
    estimate of each slow window (regularised as Stan does), and the
    dual-averaging mean step size from the last warmup iteration on.
    """

    target_acceptance: eqx.AbstractVar[float]
    initial_step_size: eqx.AbstractVar[float]
    dense_mass: eqx.AbstractVar[bool]

    def _kernel_step(self, key, hmc_state, logdensity, step_size, inverse_mass):
        raise NotImplementedError

    def init(self, key, z0, logdensity, inverse_mass=None):
        """The state of one chain at ``z0``; ``inverse_mass`` (param,) starts the adaptation from a
        diagonal inverse mass matrix other than the identity (a posterior variance estimate)."""
        del key
        da_init, _, _ = dual_averaging_adaptation(self.target_acceptance)
        w_init, _, _ = welford_algorithm(not self.dense_mass)
        d = z0.shape[-1]
        step = jnp.asarray(self.initial_step_size, dtype=z0.dtype)
        diag = jnp.ones(d, dtype=z0.dtype) if inverse_mass is None else jnp.asarray(inverse_mass, dtype=z0.dtype)
        adapt = AdaptState(
            da=da_init(step),
            welford=w_init(d),
            inverse_mass=jnp.diag(diag) if self.dense_mass else diag,
            step_size=step,
        )
        return _bj_hmc.init(z0, logdensity), adapt

    def step(self, key, carry, flags, logdensity):
        """One iteration of one chain; adapts while ``flags[0]`` is true."""
        state, adapt = carry
        adapting, slow, window_end, last = flags
        da_init, da_update, da_final = dual_averaging_adaptation(self.target_acceptance)
        w_init, w_update, w_final = welford_algorithm(not self.dense_mass)
        new, acc, div, steps = self._kernel_step(key, state, logdensity, adapt.step_size, adapt.inverse_mass)
        acc = jnp.where(jnp.isfinite(acc), acc, 0.0)

        da = da_update(adapt.da, acc)
        # a chain whose every proposal fails (a corner where the model is invalid)
        # would drive the step size to 0 and never move again: keep a floor
        da = da._replace(log_step_size=jnp.maximum(da.log_step_size, jnp.log(MIN_STEP_SIZE)))
        step_size = jnp.exp(da.log_step_size)
        welford = _select(slow, w_update(adapt.welford, new.position), adapt.welford)
        # end of a slow window: new mass matrix (Stan's regularisation), restart step size
        cov, count, _ = w_final(welford)
        count = jnp.asarray(count, dtype=cov.dtype)
        shrink = 1e-3 * (5.0 / (count + 5.0))
        regularised = (count / (count + 5.0)) * cov + (shrink * jnp.eye(cov.shape[-1]) if self.dense_mass else shrink)
        inverse_mass = jnp.where(window_end, regularised, adapt.inverse_mass)
        da = _select(window_end, da_init(step_size), da)
        welford = _select(window_end, w_init(new.position.shape[-1]), welford)
        step_size = jnp.where(last, da_final(da), step_size)
        adapted = AdaptState(da=da, welford=welford, inverse_mass=inverse_mass, step_size=step_size)
        adapt = _select(adapting, adapted, adapt)
        return (new, adapt), Record(new.position, new.logdensity, acc, div, steps)


class HMC(_Gradient):
    """Hamiltonian Monte Carlo with a fixed number of leapfrog steps (BlackJAX ``hmc``).

    Step size and diagonal mass matrix are adapted per chain during warmup.
    The path length is ``num_integration_steps`` times the step size; every
    chain costs the same per iteration, the best case for lock-step vmapping.

    Each iteration draws its step size uniformly from ``step_size * (1 +- step_size_jitter)``
    around the adapted one.  With a fixed path length, HMC can nearly return
    to where it started along the directions whose scale makes the path
    close to a whole orbit, and mix very slowly there (on a correlated
    5-dimensional Gaussian, 12 steps without jitter gave R-hats up to 1.26
    and 4x smaller ESS; the jitter removes that).
    """

    num_integration_steps: int = 12
    target_acceptance: float = 0.8
    initial_step_size: float = 0.1
    dense_mass: bool = False
    step_size_jitter: float = 0.5

    def __check_init__(self):
        if not 0.0 <= self.step_size_jitter < 1.0:
            raise ValueError(f"step_size_jitter={self.step_size_jitter!r} must be in [0, 1)")
        if isinstance(self.num_integration_steps, int) and self.num_integration_steps < 1:
            raise ValueError(f"num_integration_steps={self.num_integration_steps} must be at least 1")

    def _kernel_step(self, key, state, logdensity, step_size, inverse_mass):
        key_jitter, key = jax.random.split(key)
        j = self.step_size_jitter
        step_size = step_size * jax.random.uniform(key_jitter, (), dtype=step_size.dtype, minval=1 - j, maxval=1 + j)
        kernel = _bj_hmc.build_kernel()
        new, info = kernel(key, state, logdensity, step_size, inverse_mass, self.num_integration_steps)
        return new, info.acceptance_rate, info.is_divergent, jnp.asarray(self.num_integration_steps)


DEFAULT_DOUBLINGS = MappingProxyType({cls.__name__: cls.default_max_doublings for cls in model_classes()})
"""NUTS tree-depth cap per model when ``NUTS(max_num_doublings=None)``, by model
class name (read-only; each model class owns its ``default_max_doublings``,
where the measurements behind it are noted)."""


class NUTS(_Gradient):
    """The No-U-Turn Sampler (BlackJAX ``nuts``), at most ``2**max_num_doublings - 1`` steps.

    Vmapped NUTS advances in lock-step: each iteration costs the longest
    trajectory among all chains of the batch.  ``max_num_doublings=None``
    takes the model's ``default_max_doublings`` (:data:`DEFAULT_DOUBLINGS`) when
    :func:`~soiljax.calibration.calibrate` runs it (:meth:`for_model`), and
    6 when the sampler is used on its own.
    """

    max_num_doublings: int | None = None
    target_acceptance: float = 0.8
    initial_step_size: float = 0.1
    dense_mass: bool = False

    def __check_init__(self):
        if isinstance(self.max_num_doublings, int) and self.max_num_doublings < 1:
            raise ValueError(f"max_num_doublings={self.max_num_doublings} must be at least 1 "
                             "(at most 2**max_num_doublings - 1 leapfrog steps per iteration)")

    def _kernel_step(self, key, state, logdensity, step_size, inverse_mass):
        kernel = _bj_nuts.build_kernel()
        depth = 6 if self.max_num_doublings is None else self.max_num_doublings
        new, info = kernel(key, state, logdensity, step_size, inverse_mass, max_num_doublings=depth)
        return new, info.acceptance_rate, info.is_divergent, jnp.asarray(info.num_integration_steps)

    def for_model(self, model) -> "NUTS":
        """This sampler with ``max_num_doublings`` set (the model's default where it is ``None``)."""
        if self.max_num_doublings is not None:
            return self
        depth = type(model).default_max_doublings
        return eqx.tree_at(lambda s: s.max_num_doublings, self, depth, is_leaf=lambda x: x is None)


# --------------------------------------------------------------------------
# PRODA's random walk + adaptive Metropolis
# --------------------------------------------------------------------------


class ProdaState(eqx.Module):
    u: Float[Array, " param"]
    cost: Float[Array, ""]
    welford: WelfordAlgorithmState
    cov: Float[Array, "param param"]
    scale: Float[Array, ""]
    window_accepts: Int[Array, ""]


class ProdaMetropolis(eqx.Module):
    """PRODA's site-level MCMC (MODELS.md 7), vectorised.

    Works on ``u`` in (0, 1) with PRODA's cost ``J`` (the negative log
    likelihood of the chosen likelihood, whose prior is uniform in ``u``).

    Part 1 (``num_random_walk`` steps): each coordinate moves uniformly within
    +-``step`` of its value, restricted to (0, 1) (PRODA redraws until the
    proposal is inside, which gives the same distribution).  Part 2
    (``num_adaptive`` steps): Gaussian proposals with covariance
    ``scale * 2.4 / d * C``; ``C`` is the sample covariance of the chain,
    taken from part 1 at its end and recomputed from part 2's states every
    ``adapt_every`` steps after step ``adapt_start``; ``scale`` is halved or
    doubled after any ``adapt_every`` steps whose acceptance rate left
    [10%, 50%] (PRODA restarts with a rescaled proposal).  A proposal outside
    (0, 1) is rejected.  Acceptance in both parts: ``exp(-dJ ln(i + 2)) > U``
    with ``i`` the step number counted from 0 over both parts: a target
    sharpened as the chain runs (PRODA's annealing).

    The posterior is the second half of part 2; PRODA keeps only the distinct
    accepted states of that half, soiljax keeps the chain itself (states
    repeated on rejection), the standard Metropolis estimator.
    """

    num_random_walk: int = 20_000
    num_adaptive: int = 50_000
    step: float = 0.1
    adapt_start: int = 4_000
    adapt_every: int = 1_000
    annealed: bool = True

    def init(self, key, u0, cost_fn):
        d = u0.shape[-1]
        w_init, _, _ = welford_algorithm(False)
        return ProdaState(
            u=u0,
            cost=cost_fn(u0),
            welford=w_init(d),
            cov=jnp.eye(d, dtype=u0.dtype) * (self.step**2 / 3.0),
            scale=jnp.asarray(1.0, dtype=u0.dtype),
            window_accepts=jnp.asarray(0),
        )

    def _accept(self, key, state, proposal, inside, i, cost_fn):
        cost = jnp.where(inside, cost_fn(jnp.clip(proposal, 1e-12, 1 - 1e-12)), jnp.inf)
        d_cost = cost - state.cost
        temper = jnp.log(i + 2.0) if self.annealed else 1.0
        log_ratio = jnp.where(jnp.isfinite(cost), -d_cost * temper, -jnp.inf)
        accept = jnp.log(jax.random.uniform(key, dtype=proposal.dtype)) < log_ratio
        u = jnp.where(accept, proposal, state.u)
        cost = jnp.where(accept, cost, state.cost)
        return u, cost, accept

    def random_walk_step(self, key, state: ProdaState, i, cost_fn):
        k1, k2 = jax.random.split(key)
        lo = jnp.maximum(state.u - self.step, 0.0)
        hi = jnp.minimum(state.u + self.step, 1.0)
        proposal = lo + (hi - lo) * jax.random.uniform(k1, state.u.shape, dtype=state.u.dtype)
        inside = jnp.all((proposal > 0.0) & (proposal < 1.0))
        u, cost, accept = self._accept(k2, state, proposal, inside, i, cost_fn)
        _, w_update, _ = welford_algorithm(False)
        welford = w_update(state.welford, u)
        new = ProdaState(u, cost, welford, state.cov, state.scale, state.window_accepts + accept)
        return new, Record(u, -cost, accept.astype(u.dtype), jnp.asarray(False), jnp.asarray(1))

    def start_adaptive(self, state: ProdaState):
        """Covariance of part 1's chain as the first adaptive proposal; reset counters."""
        w_init, _, w_final = welford_algorithm(False)
        cov, _, _ = w_final(state.welford)
        d = state.u.shape[-1]
        cov = cov + 1e-10 * jnp.eye(d, dtype=cov.dtype)
        return ProdaState(state.u, state.cost, w_init(d), cov, state.scale, jnp.asarray(0))

    def adaptive_step(self, key, state: ProdaState, i_part, i_total, cost_fn):
        k1, k2 = jax.random.split(key)
        d = state.u.shape[-1]
        chol = jnp.linalg.cholesky(state.scale * (2.4 / d) * state.cov)
        proposal = state.u + chol @ jax.random.normal(k1, (d,), dtype=state.u.dtype)
        inside = jnp.all((proposal > 0.0) & (proposal < 1.0)) & jnp.all(jnp.isfinite(proposal))
        u, cost, accept = self._accept(k2, state, proposal, inside, i_total, cost_fn)
        _, w_update, w_final = welford_algorithm(False)
        welford = w_update(state.welford, u)
        accepts = state.window_accepts + accept
        window_done = (i_part + 1) % self.adapt_every == 0
        rate = accepts / self.adapt_every
        scale = jnp.where(
            window_done & (rate < 0.1),
            state.scale * 0.5,
            jnp.where(window_done & (rate > 0.5), state.scale * 2.0, state.scale),
        )
        recompute = window_done & (i_part + 1 >= self.adapt_start)
        cov_new, _, _ = w_final(welford)
        cov_new = cov_new + 1e-10 * jnp.eye(d, dtype=cov_new.dtype)
        cov = jnp.where(recompute & jnp.all(jnp.isfinite(cov_new)), cov_new, state.cov)
        accepts = jnp.where(window_done, 0, accepts)
        new = ProdaState(u, cost, welford, cov, scale, accepts)
        return new, Record(u, -cost, accept.astype(u.dtype), jnp.asarray(False), jnp.asarray(1))
