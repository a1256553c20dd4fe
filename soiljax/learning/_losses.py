"""Losses of the two-stage learning: plain MSE and PRODA's L1 x L2 product."""

from __future__ import annotations

import jax.numpy as jnp

REL_FLOOR = 1e-7
"""|target| is floored at this value in the relative error (Keras' epsilon, as in
PRODA's Keras loss), so a target of exactly 0 gives a large but finite loss."""


def _weights(pred, weight):
    """Weights broadcast to ``pred``'s shape, or None.

    ``weight`` of ``pred.ndim - 1`` dimensions is one weight per sample (it
    multiplies every parameter of that sample); otherwise it must broadcast to
    ``pred.shape`` (e.g. ``(1, n_params)`` for per-parameter weights).
    """
    if weight is None:
        return None
    w = jnp.asarray(weight, dtype=pred.dtype)
    if w.ndim == pred.ndim - 1 and pred.ndim >= 1:
        w = w[..., None]
    try:
        return jnp.broadcast_to(w, pred.shape)
    except ValueError:
        raise ValueError(
            f"weight of shape {tuple(jnp.shape(weight))} does not fit predictions of shape {tuple(pred.shape)}: "
            "give one weight per sample (n,), or an array that broadcasts to (n, n_params)"
        ) from None


def _mean(values, w):
    if w is None:
        return jnp.mean(values)
    return jnp.sum(w * values) / jnp.maximum(jnp.sum(w), 1e-300)


def _check(pred, target):
    pred = jnp.asarray(pred)
    target = jnp.asarray(target, dtype=pred.dtype)
    if pred.shape != target.shape:
        raise ValueError(f"pred has shape {tuple(pred.shape)} but target has {tuple(target.shape)}; they must match")
    return pred, target


def mse_loss(pred, target, weight=None):
    """Mean squared error over all samples and parameters.

    ``weight`` (optional) is one non-negative weight per sample, shape (n,), or
    an array broadcasting to ``pred.shape``; the mean is then the weighted mean
    ``sum(w (pred - target)^2) / sum(w)``.
    """
    pred, target = _check(pred, target)
    return _mean((pred - target) ** 2, _weights(pred, weight))


def mean_relative_error(pred, target, weight=None):
    """Mean of ``|pred - target| / max(|target|, REL_FLOOR)`` (weighted like :func:`mse_loss`)."""
    pred, target = _check(pred, target)
    rel = jnp.abs(pred - target) / jnp.maximum(jnp.abs(target), REL_FLOOR)
    return _mean(rel, _weights(pred, weight))


def proda_loss(pred, target, weight=None):
    """PRODA's loss: mean squared error times mean relative absolute error.

    ``mean((pred - target)^2) * mean(|pred - target| / |target|)``: the product
    of an L2 and an L1 term (MODELS.md section 8), with ``|target|`` floored at
    :data:`REL_FLOOR`.  Being a product of two errors it is quartic-like near
    the optimum: its values are much smaller than the MSE's, and learning
    rates tuned for one need not suit the other.  ``weight`` as in
    :func:`mse_loss` (both means weighted).
    """
    return mse_loss(pred, target, weight) * mean_relative_error(pred, target, weight)


LOSSES = {"mse": mse_loss, "proda": proda_loss}
"""Loss names accepted by :func:`~soiljax.learning.train_two_stage`."""


def get_loss(loss):
    """A loss function from its name (``"mse"``, ``"proda"``) or a callable ``f(pred, target, weight)``."""
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; use one of {', '.join(map(repr, LOSSES))} or a callable f(pred, target, weight)")
    return LOSSES[loss]


__all__ = ["mse_loss", "proda_loss", "mean_relative_error", "get_loss", "LOSSES", "REL_FLOOR"]
