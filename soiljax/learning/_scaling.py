"""Min-max scaling of covariates, fitted on training rows only (PRODA: covariates to [0, 1])."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float


class MinMaxScaler(eqx.Module):
    """Per-column min-max scaling: ``(x - lo) / (hi - lo)``.

    Fit it with :meth:`fit` on the *training* rows only, so that nothing of
    the validation or test sites leaks into the inputs of the network.  Values
    outside the training range map outside [0, 1] (they are not clipped: a
    prediction map may cover climates the training sites did not).  A column
    that was constant in the training rows (``hi == lo``) maps to 0.5 for every
    input, without dividing by zero: it carried no information the network
    could have learned from.

    ``lo`` and ``hi`` are arrays of shape (n_features,); :meth:`transform` and
    :meth:`inverse_transform` work on arrays whose last axis is the features,
    inside ``jax.jit`` as well as outside.
    """

    lo: Float[Array, " feature"]
    hi: Float[Array, " feature"]

    def __init__(self, lo, hi):
        lo = jnp.asarray(lo, dtype=float)
        hi = jnp.asarray(hi, dtype=float)
        if lo.ndim != 1 or lo.shape != hi.shape:
            raise ValueError(f"lo and hi must be 1-D arrays of the same length, got shapes {lo.shape} and {hi.shape}")
        self.lo = lo
        self.hi = hi

    @classmethod
    def fit(cls, x, names=None) -> "MinMaxScaler":
        """Column minima and maxima of ``x`` (rows, features), ignoring NaN.

        ``names`` (one per column) only improves the error raised for a column
        that has no finite value at all.
        """
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"MinMaxScaler.fit expects a 2-D array (rows, features) with at least one row, got shape {x.shape}")
        finite = np.isfinite(x)
        empty = ~finite.any(axis=0)
        if empty.any():
            j = int(np.argmax(empty))
            label = f"{names[j]!r} (column {j})" if names is not None else f"column {j}"
            raise ValueError(
                f"covariate {label} has no finite value in the rows the scaler is fitted on "
                f"({int(empty.sum())} such column(s)); drop the column or fill it before training"
            )
        with np.errstate(invalid="ignore"):
            lo = np.nanmin(np.where(finite, x, np.nan), axis=0)
            hi = np.nanmax(np.where(finite, x, np.nan), axis=0)
        return cls(lo, hi)

    @property
    def n_features(self) -> int:
        return int(self.lo.shape[-1])

    def _span(self):
        span = self.hi - self.lo
        constant = span == 0
        return jnp.where(constant, 1.0, span), constant

    def _check(self, x):
        x = jnp.asarray(x, dtype=self.lo.dtype)
        if x.ndim == 0 or x.shape[-1] != self.n_features:
            raise ValueError(
                f"the scaler was fitted on {self.n_features} covariates, got an array of shape {tuple(x.shape)} "
                "(the last axis must be the covariates, in the order used for training)"
            )
        return x

    def transform(self, x):
        """Scale ``x`` (..., features) to [0, 1] on the training range; constant columns give 0.5."""
        x = self._check(x)
        span, constant = self._span()
        return jnp.where(constant, 0.5, (x - self.lo) / span)

    def inverse_transform(self, x):
        """Undo :meth:`transform`; constant columns give their training value."""
        x = self._check(x)
        span, constant = self._span()
        return jnp.where(constant, self.lo, self.lo + x * span)


__all__ = ["MinMaxScaler"]
