"""The observation operator and the score: model layers -> observed depths -> NSE.

Every comparison of a modelled profile with an observed one goes through
here: the likelihoods of the calibration, its posterior summaries, the
recovery criteria, the end-to-end learning loss, the held-out evaluation of
a learner and the synthetic observations.

:func:`observe`
    The observation operator of MODELS.md section 5: the model's SOC at the
    20 layer nodes :data:`soiljax.ZSOI`, interpolated by pchip
    (:mod:`soiljax._pchip`, MATLAB's ``interp1(..., 'pchip', 'extrap')``) to
    one profile's observed depths.
:func:`nse`
    The Nash-Sutcliffe efficiency of one profile over its usable layers
    (PRODA's paper, eq. 1).
:func:`observe_sites`, :func:`nse_sites`, :func:`score_sites`
    The operator, the score and both over many sites, batch by batch on the site-batch engine
    (:func:`soiljax._engine.map_sites`).

Observed profiles are ragged: the ``obs`` axis is padded, with NaN depths
and a ``mask`` of the usable layers (:class:`soiljax.Observations`).  Padded
entries are evaluated at a grid node (:func:`safe_depth`), so that values and
gradients stay finite, and are then ignored: :func:`observe` returns NaN there
and :func:`nse` leaves them out of every sum.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from ._grid import ZSOI
from ._pchip import pchip_interpolate

TINY = 1e-30
"""Floor of a profile's variance in :func:`nse` (a profile whose usable layers all hold one value)."""


def safe_depth(depth: Float[Array, " obs"], mask: Bool[Array, " obs"]) -> Float[Array, " obs"]:
    """Depths with the padded entries (``mask`` False) replaced by the first grid node.

    The interpolant is then finite everywhere, and so is its gradient: a NaN
    depth would make the gradient NaN even where the value is masked out.
    """
    return jnp.where(mask, depth, ZSOI[0])


def observe(
    soc_layers: Float[Array, " layer"],
    depth: Float[Array, " obs"],
    mask: Bool[Array, " obs"] | None = None,
    *,
    fill: float | None = jnp.nan,
) -> Float[Array, " obs"]:
    """One profile's modelled SOC at its observed depths (the observation operator).

    ``soc_layers`` (gC m-3) are the model's values at the 20 layer nodes
    :data:`soiljax.ZSOI`; ``depth`` (m) the observed depths; ``mask`` the
    usable ones (default: the finite depths).  The pchip interpolant of the
    layers is evaluated at the usable depths, extrapolating beyond the first
    and last nodes.  The padded entries are evaluated at the first node
    (:func:`safe_depth`) and returned as ``fill`` (NaN by default);
    ``fill=None`` leaves that first node's value there, for a differentiable
    consumer that masks the padding itself (the likelihoods).

    Differentiable in ``soc_layers``; one profile: ``jax.vmap`` it over sites,
    or use :func:`observe_sites`.
    """
    depth = jnp.asarray(depth)
    mask = jnp.isfinite(depth) if mask is None else jnp.asarray(mask)
    pred = pchip_interpolate(jnp.asarray(ZSOI), soc_layers, safe_depth(depth, mask))
    return pred if fill is None else jnp.where(mask, pred, fill)


def nse(pred: Float[Array, " obs"], soc: Float[Array, " obs"], mask: Bool[Array, " obs"]) -> Float[Array, ""]:
    """Nash-Sutcliffe efficiency of one profile over its usable layers (paper eq. 1).

    ``NSE = 1 - sum (soc - pred)^2 / sum (soc - mean soc)^2`` over the
    entries where ``mask`` is True: ``pred`` the modelled and ``soc`` the
    observed SOC.  The other entries may hold anything (NaN padding): they
    count neither in the value nor in its gradient.  1 is a perfect fit, 0
    the skill of the profile's mean.  The variance is floored at
    :data:`TINY`, so a profile whose usable values are all equal scores 1 if
    matched exactly and a hugely negative number otherwise; a profile
    without usable layers scores 1.
    """
    pred = jnp.where(mask, pred, 0.0)
    soc = jnp.where(mask, soc, 0.0)
    n = jnp.maximum(jnp.sum(mask), 1)
    ymean = jnp.sum(soc) / n
    num = jnp.sum(jnp.where(mask, (soc - pred) ** 2, 0.0))
    den = jnp.sum(jnp.where(mask, (soc - ymean) ** 2, 0.0))
    return 1.0 - num / jnp.maximum(den, TINY)


@eqx.filter_jit
def _observe_batch(soc_layers, depth, mask):
    return jax.vmap(observe)(soc_layers, depth, mask)


@eqx.filter_jit
def _nse_batch(pred, soc, mask):
    return jax.vmap(nse)(pred, soc, mask)


@eqx.filter_jit
def _score_batch(soc_layers, depth, soc, mask):
    pred = jax.vmap(observe)(soc_layers, depth, mask)
    return pred, jax.vmap(nse)(pred, soc, mask)


def observe_sites(soc_layers, depth, mask=None, *, batch_size: int | None = None) -> np.ndarray:
    """:func:`observe` of every site: (site, layer) SOC at (site, obs) depths -> (site, obs).

    ``mask`` (site, obs) defaults to the finite depths; padded entries are
    NaN.  Runs batch by batch on the site-batch engine
    (:func:`soiljax._engine.map_sites`, ``batch_size`` sites per call) and
    returns a numpy array.
    """
    from ._engine import map_sites

    depth = np.asarray(depth)
    mask = np.isfinite(depth) if mask is None else np.asarray(mask, dtype=bool)
    return map_sites(_observe_batch, np.asarray(soc_layers, dtype=float), depth, mask, batch_size=batch_size)


def nse_sites(pred, soc, mask, *, batch_size: int | None = None) -> np.ndarray:
    """:func:`nse` of every site: (site, obs) predictions and observations -> (site,).

    Runs batch by batch on the site-batch engine
    (:func:`soiljax._engine.map_sites`) and returns a numpy array.
    """
    from ._engine import map_sites

    return map_sites(_nse_batch, np.asarray(pred), np.asarray(soc), np.asarray(mask, dtype=bool),
                     batch_size=batch_size)


def score_sites(soc_layers, depth, soc, mask, *, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Observe and score every site: ``(pred, nse)``, numpy arrays (site, obs) and (site,).

    ``soc_layers`` (site, layer) is the modelled SOC per layer, ``depth``,
    ``soc`` and ``mask`` (site, obs) the observed profiles
    (:class:`soiljax.Observations`' fields).  ``pred`` is :func:`observe` (NaN
    where padded), ``nse`` is :func:`nse` of each profile.  Runs batch by
    batch on the site-batch engine (:func:`soiljax._engine.map_sites`).
    """
    from ._engine import map_sites

    return map_sites(_score_batch, np.asarray(soc_layers), np.asarray(depth), np.asarray(soc),
                     np.asarray(mask, dtype=bool), batch_size=batch_size)


__all__ = ["TINY", "nse", "nse_sites", "observe", "observe_sites", "safe_depth", "score_sites"]
