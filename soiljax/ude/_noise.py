"""Noise generators for the UDE experiments (paper eq. 13 and the case tables).

Two standard-normal generators and one way of applying them:

* :func:`white_noise` draws independent ``eps ~ N(0, 1)``.
* :func:`ar1_noise` draws a stationary AR-1 sequence along the last axis (depth):
  ``eps_0 = n_0`` and ``eps_i = rho * eps_{i-1} + sqrt(1 - rho^2) * n_i``, so every
  element still has mean 0 and variance 1, and ``corr(eps_i, eps_{i+k}) = rho^k``.
  This is the paper's "spatially correlated" noise: a measurement error that drifts
  smoothly down a profile (one mis-calibrated instrument, one sampling campaign).
* :func:`multiplicative` applies paper eq. 13, ``x_obs = x * (1 + eta * eps)``: the error
  is proportional to the measured value, so ``E[x_obs] = x`` and ``sd[x_obs] = eta * |x|``.

All functions take an explicit JAX PRNG key, so every noisy data set in soiljax is
reproducible from its seed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray


def white_noise(key: PRNGKeyArray, shape: tuple[int, ...]) -> Float[Array, "..."]:
    """Independent standard-normal draws of the given shape."""
    return jax.random.normal(key, shape)


def ar1_noise(key: PRNGKeyArray, shape: tuple[int, ...], rho: float) -> Float[Array, "..."]:
    """Stationary AR-1 standard-normal noise, correlated along the last axis.

    Parameters
    ----------
    key: PRNG key.
    shape: output shape; the last axis is the correlated one (depth nodes).
    rho: lag-1 correlation, ``-1 < rho < 1``. ``rho = 0`` reduces to white noise.

    The recursion starts from a unit-variance draw and scales the innovations by
    ``sqrt(1 - rho^2)``, so the marginal distribution of every element is exactly
    N(0, 1) (no burn-in needed).
    """
    rho = float(rho)
    if not -1.0 < rho < 1.0:
        raise ValueError(
            f"AR-1 correlation rho must lie strictly between -1 and 1, got {rho}; "
            "use rho=0 for independent noise."
        )
    n = jax.random.normal(key, shape)
    n_first = n[..., 0]
    innov = jnp.moveaxis(n[..., 1:], -1, 0) * jnp.sqrt(1.0 - rho**2)

    def step(prev, innovation):
        cur = rho * prev + innovation
        return cur, cur

    _, rest = jax.lax.scan(step, n_first, innov)
    return jnp.concatenate([n_first[..., None], jnp.moveaxis(rest, 0, -1)], axis=-1)


def standard_noise(key: PRNGKeyArray, shape: tuple[int, ...], rho: float = 0.0):
    """White noise for ``rho == 0``, AR-1 noise along the last axis otherwise."""
    if rho == 0.0:
        return white_noise(key, shape)
    return ar1_noise(key, shape, rho)


def multiplicative(x: Float[Array, "..."], eps: Float[Array, "..."], eta: float):
    """Paper eq. 13: ``x * (1 + eta * eps)``; ``eta`` is the relative noise level (0.07 = 7%)."""
    return x * (1.0 + eta * eps)
