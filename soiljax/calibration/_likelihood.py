"""Likelihoods and the per-profile log density of the calibration.

A profile's posterior is defined on an unconstrained vector ``z`` (one entry
per model parameter): ``u = sigmoid(z)`` maps it to the scaled parameters in
(0, 1), where PRODA's prior is uniform, and the log density is

    log p(z | obs) = log L(obs | model(u)) + sum log|du/dz|,

the second term being the prior of ``u`` carried over to ``z``.  The model is
solved to steady state, its observable SOC interpolated to the observed
depths with pchip (MODELS.md section 5) and compared with the observations by
one of the likelihoods below.  A parameter vector whose steady state is
invalid (PRODA's rule) has log density ``-inf``, never NaN, with a finite
gradient, so samplers simply reject it.

Likelihoods (``equinox`` modules; all take the prediction and the observed
values of one profile plus the mask of usable layers):

:class:`LogNormal`
    ``log y ~ N(log yhat, s)`` with ``s = soc_sd / soc`` where the
    observations carry an ``soc_sd`` and ``sigma`` otherwise: multiplicative
    error, the right model for the recovery experiment's 10% noise.
:class:`Gaussian`
    ``y ~ N(yhat, s y)``, additive error with a relative standard deviation.
:class:`ProdaCLM5`
    PRODA's CLM5 cost as a log likelihood: layer weights from ranks and a
    Gaussian with 60% relative error (MODELS.md 5).
:class:`ProdaCOMPAS`
    PRODA's COMPAS cost ``5 (1 - NSE)`` as ``-J``.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from .._models import AbstractSoilModel
from .._observe import nse, observe

_LOG_2PI = 1.8378770664093453
_TINY = 1e-30


class AbstractLikelihood(eqx.Module):
    """Log likelihood of one profile's observations given the model's prediction."""

    @abc.abstractmethod
    def __call__(
        self,
        pred: Float[Array, " obs"],
        soc: Float[Array, " obs"],
        soc_sd: Float[Array, " obs"],
        depth: Float[Array, " obs"],
        mask: Bool[Array, " obs"],
    ) -> Float[Array, ""]:
        """Sum of the log likelihood over the usable layers (``mask``)."""


def _relative_sd(soc, soc_sd, sigma):
    given = jnp.isfinite(soc_sd) & (soc_sd > 0)
    return jnp.where(given, soc_sd / jnp.where(given, soc, 1.0), sigma)


class LogNormal(AbstractLikelihood):
    """Multiplicative error: ``log y ~ N(log yhat, s)``, ``s`` = soc_sd/soc or ``sigma``.

    ``use_obs_sd=False`` ignores the observations' ``soc_sd``.
    """

    sigma: float = 0.1
    use_obs_sd: bool = True

    def __call__(self, pred, soc, soc_sd, depth, mask):
        soc = jnp.where(mask, soc, 1.0)  # padded entries are NaN: keep them out of the arithmetic
        s = _relative_sd(soc, soc_sd, self.sigma) if self.use_obs_sd else jnp.full_like(soc, self.sigma)
        y = jnp.log(soc)
        yhat = jnp.log(jnp.maximum(jnp.where(mask, pred, 1.0), _TINY))
        r = (y - yhat) / s
        ll = -0.5 * r**2 - jnp.log(s) - 0.5 * _LOG_2PI - y  # density of y itself: Jacobian 1/y
        return jnp.sum(jnp.where(mask, ll, 0.0))


class Gaussian(AbstractLikelihood):
    """Additive error: ``y ~ N(yhat, s)``, ``s`` = soc_sd or ``rel_sigma * y``."""

    rel_sigma: float = 0.1
    use_obs_sd: bool = True

    def __call__(self, pred, soc, soc_sd, depth, mask):
        y = jnp.where(mask, soc, 1.0)  # padded entries are NaN: keep them out of the arithmetic
        rel = _relative_sd(y, soc_sd, self.rel_sigma) if self.use_obs_sd else self.rel_sigma
        s = jnp.where(mask, rel * y, 1.0)
        r = (y - jnp.where(mask, pred, 1.0)) / s
        ll = -0.5 * r**2 - jnp.log(s) - 0.5 * _LOG_2PI
        return jnp.sum(jnp.where(mask, ll, 0.0))


def _descending_rank(values, mask):
    """Rank 1 for the largest value among the masked entries (ties: first wins)."""
    key = jnp.where(mask, values, -jnp.inf)
    order = jnp.argsort(-key, stable=True)
    return jnp.empty_like(order).at[order].set(jnp.arange(1, order.shape[0] + 1))


def proda_layer_weights(soc, depth, mask):
    """PRODA's CLM5 layer weights: ``max(10 exp(-(r - 1)), 1)`` from mean ranks.

    Layers are ranked by ``|y - mean y|`` and by ``|z - mean z|`` (largest
    first, over the usable layers) and ``r`` is the mean of the two ranks, so
    the layers farthest from the profile's centre weigh up to 10 times more.
    """
    n = jnp.maximum(jnp.sum(mask), 1)
    ymean = jnp.sum(jnp.where(mask, soc, 0.0)) / n
    zmean = jnp.sum(jnp.where(mask, depth, 0.0)) / n
    ry = _descending_rank(jnp.abs(soc - ymean), mask)
    rz = _descending_rank(jnp.abs(depth - zmean), mask)
    r = 0.5 * (ry + rz)
    return jnp.where(mask, jnp.maximum(10.0 * jnp.exp(-(r - 1.0)), 1.0), 0.0)


class ProdaCLM5(AbstractLikelihood):
    """PRODA's CLM5 cost ``J = sum w (yhat - y)^2 / (2 (0.6 y)^2)``, as ``-J``."""

    rel_error: float = 0.6

    def __call__(self, pred, soc, soc_sd, depth, mask):
        w = proda_layer_weights(soc, depth, mask)
        y = jnp.where(mask, soc, 1.0)
        j = w * (pred - y) ** 2 / (2.0 * (self.rel_error * y) ** 2)
        return -jnp.sum(jnp.where(mask, j, 0.0))


class ProdaCOMPAS(AbstractLikelihood):
    """PRODA's COMPAS cost ``J = scale (1 - NSE)``, as ``-J``."""

    scale: float = 5.0

    def __call__(self, pred, soc, soc_sd, depth, mask):
        return -self.scale * (1.0 - nse(pred, soc, mask))


def proda_likelihood(model: AbstractSoilModel) -> AbstractLikelihood:
    """PRODA's own cost for ``model``: :class:`ProdaCLM5` or :class:`ProdaCOMPAS`."""
    from .._models import COMPAS

    return ProdaCOMPAS() if isinstance(model, COMPAS) else ProdaCLM5()


def predict(model: AbstractSoilModel, u, forcing, depth, mask):
    """Steady-state SOC at the observed depths and the validity flag, one profile.

    The padded depths hold the value at the first node (``fill=None`` of
    :func:`soiljax._observe.observe`): finite, and masked by every likelihood.
    """
    steady = model.steady_state(u, forcing)
    return observe(steady.soc, depth, mask, fill=None), steady.valid


def log_likelihood(model: AbstractSoilModel, likelihood: AbstractLikelihood, forcing, obs):
    """The log likelihood of one profile as a function of the scaled parameters ``u``.

    ``-inf`` where the steady state is invalid (or the likelihood is not
    finite); the double ``where`` keeps the gradient finite there.  Shared by
    :func:`log_density`, PRODA's cost and the NumPyro model.
    """
    mask = obs.mask

    def loglik(u):
        pred, valid = predict(model, u, forcing, obs.depth, mask)
        ll = likelihood(pred, obs.soc, obs.soc_sd, obs.depth, mask)
        ok = valid & jnp.isfinite(ll)
        return jnp.where(ok, jnp.where(ok, ll, 0.0), -jnp.inf)

    return loglik


def log_density(model: AbstractSoilModel, likelihood: AbstractLikelihood, forcing, obs):
    """The log posterior density of one profile as a function of ``z`` (param,).

    ``forcing`` and ``obs`` are one site's :class:`~soiljax.Forcing` and
    :class:`~soiljax.Observations`.  The returned function is a plain JAX
    function: jit, grad and vmap it as you like.
    """
    space = model.space
    loglik = log_likelihood(model, likelihood, forcing, obs)

    def logdensity(z):
        u, log_jac = space.u_from_z(z)
        return loglik(u) + log_jac

    return logdensity
