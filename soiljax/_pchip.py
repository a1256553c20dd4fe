"""Shape-preserving piecewise cubic Hermite interpolation (pchip) in JAX.

The interpolant of PRODA's observation operator (:func:`soiljax._observe.observe`):
the model's 20 layer values at the node depths ``ZSOI`` are interpolated to the
observed depths with MATLAB's
``interp1(..., 'pchip', 'extrap')``, which is the same interpolant as scipy's
``PchipInterpolator(extrapolate=True)`` (Fritsch & Carlson 1980 slopes with
the Fritsch & Butland weighted harmonic mean; the end slopes from the
non-centred three-point formula, limited to keep the shape).  Outside the node
range the end intervals' cubics are continued.

Everything is differentiable in the node values ``y`` (the quantity we
calibrate through) and in the query points.  The harmonic mean is evaluated
with a guarded denominator, so that flat or sign-changing data (slope 0) give
finite gradients, and its derivative is written in a bounded form, so that
tiny (underflowing) secants do too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


@jax.custom_jvp
def _harmonic_mean(w1, w2, d0, d1):
    """Fritsch-Butland weighted harmonic mean ``(w1 + w2) / (w1 / d0 + w2 / d1)``.

    For secants of one sign (``d0 / d1 > 0``).  Written like scipy's, so the
    value is the same to the last bit.  The default derivative goes through
    ``1 / d0**2``, which overflows where the secants are tiny but finite (SOC
    ~1e-160 gC m-3 deep below a shallow bedrock) although the true derivative
    is bounded; :func:`_harmonic_mean_jvp` uses the bounded form.
    """
    return (w1 + w2) / (w1 / d0 + w2 / d1)


@_harmonic_mean.defjvp
def _harmonic_mean_jvp(primals, tangents):
    w1, w2, d0, d1 = primals
    dw1, dw2, dd0, dd1 = tangents
    hm = _harmonic_mean(w1, w2, d0, d1)
    w = w1 + w2
    r = d0 / d1  # > 0, possibly 0 or inf when one secant underflows against the other
    a = w / (w1 + w2 * r)  # hm / d0, in [0, w / w1]
    b = w / (w2 + w1 / r)  # hm / d1, in [0, w / w2]
    tangent = (a * a * w1 * dd0 + b * b * w2 * dd1 + hm * (1.0 - a) * dw1 + hm * (1.0 - b) * dw2) / w
    return hm, tangent


def _interior_slopes(h, delta):
    """Slopes at the interior nodes (Fritsch-Butland weighted harmonic mean).

    Zero where the secants on either side differ in sign or one is zero
    (scipy's rule; a sign test, so products that underflow do not count).
    """
    h0, h1 = h[:-1], h[1:]
    d0, d1 = delta[:-1], delta[1:]
    w1 = 2.0 * h1 + h0
    w2 = h1 + 2.0 * h0
    monotone = (jnp.sign(d0) == jnp.sign(d1)) & (d0 != 0.0)
    safe0 = jnp.where(monotone, d0, 1.0)
    safe1 = jnp.where(monotone, d1, 1.0)
    return jnp.where(monotone, _harmonic_mean(w1, w2, safe0, safe1), 0.0)


def _end_slope(h0, h1, d0, d1):
    """Slope at an end node: three-point formula limited to preserve shape."""
    d = ((2.0 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
    d = jnp.where(jnp.sign(d) != jnp.sign(d0), 0.0, d)
    overshoot = (jnp.sign(d0) != jnp.sign(d1)) & (jnp.abs(d) > jnp.abs(3.0 * d0))
    return jnp.where(overshoot, 3.0 * d0, d)


def pchip_slopes(x: Float[Array, " node"], y: Float[Array, " node"]) -> Float[Array, " node"]:
    """The pchip derivative at every node (``x`` strictly increasing, >= 3 nodes)."""
    h = jnp.diff(x)
    delta = jnp.diff(y) / h
    inner = _interior_slopes(h, delta)
    first = _end_slope(h[0], h[1], delta[0], delta[1])
    last = _end_slope(h[-1], h[-2], delta[-1], delta[-2])
    return jnp.concatenate([first[None], inner, last[None]])


def pchip_interpolate(
    x: Float[Array, " node"], y: Float[Array, " node"], xq: Float[Array, "*query"]
) -> Float[Array, "*query"]:
    """Evaluate the pchip interpolant of (x, y) at ``xq``, extrapolating outside.

    One profile; use ``jax.vmap`` for many.  ``x`` must be strictly increasing
    and have at least three nodes (the model grid has 20).
    """
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    xq = jnp.asarray(xq, dtype=y.dtype)
    d = pchip_slopes(x, y)
    h = jnp.diff(x)
    delta = jnp.diff(y) / h
    i = jnp.clip(jnp.searchsorted(x, xq, side="right") - 1, 0, x.shape[0] - 2)
    t = xq - x[i]
    hi = h[i]
    c2 = (3.0 * delta[i] - 2.0 * d[i] - d[i + 1]) / hi
    c3 = (d[i] + d[i + 1] - 2.0 * delta[i]) / (hi * hi)
    return y[i] + t * (d[i] + t * (c2 + t * c3))
