"""Observed SOC profiles: the data a site-level calibration fits.

An :class:`Observations` holds, per site, a ragged list of layers padded with
NaN to a common length on the trailing ``obs`` axis (MODELS.md section 5):

``depth``
    node (centre) depth of each observed layer, in m, positive down;
``soc``
    SOC stock density of the layer, in gC m-3 (the unit of the models'
    ``steady.soc``);
``soc_sd``
    its standard deviation in gC m-3 where known, NaN where not (all NaN when
    no uncertainty was given).

A layer is *usable* (:attr:`Observations.mask`) when its depth and SOC are
finite and SOC > 0: PRODA drops NaN and zero layers.  The mask is computed
from the arrays, so it works inside ``jax.jit`` and ``jax.vmap``.  Site
labels are not part of the pytree; they travel in the metadata dataset that
the readers return (:func:`soiljax.read_observations`, ...).

:meth:`Observations.from_arrays` builds one from numpy arrays and checks it,
raising :class:`ObservationError` with the site, the variable and the fix:
negative depths, depths not strictly increasing, too few usable layers, depths
that look like centimetres, SOC that looks like percent, g/kg or kgC m-3, and
negative or missing standard deviations.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from ._sites import first_site

MAX_DEPTH_M = 20.0
"""Deepest plausible observation (m); a deeper one is taken to be in cm."""

SOC_LOW = 100.0
"""gC m-3.  A site whose every usable layer is below this looks like %, g/kg or kgC m-3."""

SOC_HIGH = 1.0e6
"""gC m-3.  No soil holds more carbon per m3 (pure peat is ~50,000-150,000)."""

OM_TO_SOC_HINT = (
    "convert with the bulk density: SOC [gC m-3] = organic matter % / 1.724 * 10 * density [g cm-3] * 1000 "
    "(for organic carbon %: OC % * 10 * density * 1000; for g/kg: gC/kg * density * 1000)"
)


class ObservationError(ValueError):
    """Observed profiles are mis-shaped, in the wrong units or unusable for a calibration."""


class Observations(eqx.Module):
    """Observed SOC profiles of one site (``(obs,)`` arrays) or a batch (leading site axes).

    Build from data with :meth:`from_arrays`, which validates; the plain
    constructor only converts to arrays (so it also works on traced values).
    """

    depth: Float[Array, "*site obs"]
    soc: Float[Array, "*site obs"]
    soc_sd: Float[Array, "*site obs"]

    def __init__(self, depth, soc, soc_sd=None):
        self.depth = jnp.asarray(depth, dtype=float)
        self.soc = jnp.asarray(soc, dtype=float)
        self.soc_sd = jnp.full(self.soc.shape, jnp.nan) if soc_sd is None else jnp.asarray(soc_sd, dtype=float)

    # -- views ---------------------------------------------------------------
    @property
    def mask(self) -> Bool[Array, "*site obs"]:
        """Usable layers: finite depth, finite SOC and SOC > 0."""
        return jnp.isfinite(self.depth) & jnp.isfinite(self.soc) & (self.soc > 0)

    @property
    def n_usable(self) -> Int[Array, "*site"]:
        """Number of usable layers per site."""
        return self.mask.sum(-1)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.depth.shape[:-1])

    @property
    def n_sites(self) -> int:
        return int(np.prod(self.batch_shape)) if self.batch_shape else 1

    @property
    def n_obs(self) -> int:
        """Length of the (padded) obs axis."""
        return int(self.depth.shape[-1])

    def site(self, i) -> "Observations":
        """The observations of site ``i`` of a 1-D batch."""
        return self[i]

    def __getitem__(self, idx) -> "Observations":
        return jax.tree_util.tree_map(lambda x: x[idx], self)

    # -- construction ---------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        depth,
        soc,
        soc_sd=None,
        site_id=None,
        *,
        min_layers: int = 2,
        check_units: bool = True,
    ) -> "Observations":
        """Validated observations from numpy-like arrays of shape (..., obs).

        ``depth`` in m, ``soc`` in gC m-3, ``soc_sd`` in gC m-3 or None;
        NaN pads ragged profiles.  ``site_id`` (one label per site, flattened
        batch order) names sites in error messages.  ``min_layers`` is the
        fewest usable layers a site may have.  ``check_units=False`` skips the
        unit heuristics (centimetres, percent) for unusual but genuine data.
        Raises :class:`ObservationError`.
        """
        d = np.asarray(depth, dtype=float)
        s = np.asarray(soc, dtype=float)
        sd = None if soc_sd is None else np.asarray(soc_sd, dtype=float)
        validate_observation_arrays(d, s, sd, site_id, min_layers=min_layers, check_units=check_units)
        return cls(d, s, sd)


def validate_observation_arrays(
    depth: np.ndarray,
    soc: np.ndarray,
    soc_sd: np.ndarray | None = None,
    site_id=None,
    *,
    min_layers: int = 2,
    check_units: bool = True,
) -> None:
    """Check observed profiles; raise :class:`ObservationError` naming site and variable.

    Arguments as :meth:`Observations.from_arrays` (numpy arrays, shape (..., obs)).
    """
    if depth.ndim < 1 or depth.shape != soc.shape:
        raise ObservationError(
            f"depth and soc must have the same shape (..., obs); got depth {depth.shape} and soc {soc.shape}"
        )
    if soc_sd is not None and soc_sd.shape != soc.shape:
        raise ObservationError(f"soc_sd has shape {soc_sd.shape}, expected the shape of soc {soc.shape}")
    batch = depth.shape[:-1]
    n = int(np.prod(batch)) if batch else 1
    if site_id is not None and np.asarray(site_id).size != n:
        raise ObservationError(f"site_id must have one label per site ({n}), got {np.asarray(site_id).size}")
    d, s = depth.reshape(n, -1), soc.reshape(n, -1)
    sd = None if soc_sd is None else soc_sd.reshape(n, -1)
    usable = np.isfinite(d) & np.isfinite(s) & (s > 0)

    def fail(site_mask: np.ndarray, message) -> None:
        # message(i) -> text about the first failing site i (built lazily)
        first, where = first_site(site_mask, batch, site_id)
        raise ObservationError(f"{where}: {message(first)}")

    def layer(i: int, bad: np.ndarray) -> int:
        return int(np.argmax(bad[i])) + 1

    bad = np.isfinite(d) & (d < 0)
    if bad.any():
        fail(bad.any(1), lambda i: f"depth of layer {layer(i, bad)} is {d[i, layer(i, bad) - 1]:g} m; depths are "
             "positive downwards from the surface (m): flip the sign")
    bad = np.isfinite(s) & ~np.isfinite(d)
    if bad.any():
        fail(bad.any(1), lambda i: f"layer {layer(i, bad)} has soc {s[i, layer(i, bad) - 1]:g} but no depth (NaN); "
             "give its depth or set its soc to NaN")
    bad = np.isinf(s) | (np.isfinite(s) & (s < 0))
    if bad.any():
        fail(bad.any(1), lambda i: f"soc of layer {layer(i, bad)} is {s[i, layer(i, bad) - 1]:g}; SOC stock density "
             "must be a finite value >= 0 gC m-3 (use NaN for a missing layer)")
    # strictly increasing depths among usable layers
    dz = np.where(usable, d, np.nan)
    order_bad = np.zeros(n, bool)
    for i in np.flatnonzero(usable.sum(1) > 1):
        order_bad[i] = np.any(np.diff(dz[i][usable[i]]) <= 0)
    if order_bad.any():
        fail(order_bad, lambda i: f"depths of the usable layers are not strictly increasing "
             f"({', '.join(f'{v:g}' for v in d[i][usable[i]])} m); sort each profile by depth and merge "
             "layers at the same depth")
    n_use = usable.sum(1)
    few = n_use < min_layers
    if few.any():
        fail(few, lambda i: f"has {n_use[i]} usable layer(s) (finite depth, finite soc > 0), fewer than "
             f"min_layers={min_layers}; drop the site or lower min_layers")
    if check_units:
        deep = np.where(usable, d, -np.inf).max(1)
        bad = n_use > 0
        cm = bad & (deep > MAX_DEPTH_M)
        if cm.any():
            fail(cm, lambda i: f"depth reaches {deep[i]:g}, which looks like cm: depth must be in m, convert to m "
                 "(divide by 100); pass check_units=False if the profile really is that deep")
        top = np.where(usable, s, -np.inf).max(1)
        low = bad & (top < SOC_LOW)
        if low.any():
            fail(low, lambda i: f"every soc value is below {SOC_LOW:g} (largest {top[i]:g}), which looks like "
                 "percent organic matter/carbon, g/kg or kgC m-3 rather than gC m-3 (realistic values are "
                 "~100 to ~100,000 gC m-3, peat ~50,000 and more); multiply kgC m-3 by 1000, or "
                 f"{OM_TO_SOC_HINT}; pass check_units=False if the values are right")
        high = bad & (top > SOC_HIGH)
        if high.any():
            fail(high, lambda i: f"soc reaches {top[i]:g} gC m-3, more carbon than a cubic metre of soil can hold "
                 "(peat holds ~50,000-150,000); check the units (mgC m-3? gC m-2 per layer?)")
    if sd is not None:
        bad = (np.isfinite(sd) & (sd < 0)) | np.isinf(sd)
        if bad.any():
            fail(bad.any(1), lambda i: f"soc_sd of layer {layer(i, bad)} is {sd[i, layer(i, bad) - 1]:g}; "
                 "a standard deviation must be finite and >= 0 gC m-3")
        known = np.isfinite(sd) & usable
        partial = known.any(1) & (known.sum(1) < n_use)
        if partial.any():
            miss = usable & ~np.isfinite(sd)
            fail(partial, lambda i: f"soc_sd is NaN at usable layer {layer(i, miss)} but given at others; give "
                 "soc_sd for every usable layer of a site, or NaN for all of them (unknown)")


def check_depth_plausibility(depth: np.ndarray, soc: np.ndarray, site_id=None, *, bottom: float | None = None) -> None:
    """Refuse usable layers below the bottom of the model grid (``ZISOI[-1]``, 8.6 m).

    The models have no carbon below their 20th layer, so such a layer cannot
    be compared with them; a profile that goes that deep is almost always in
    centimetres read as metres (a profile of 5, 15, 18 cm is read as 18 m,
    which :data:`MAX_DEPTH_M` lets pass).  Raises :class:`ObservationError`
    naming the (first) site; the file readers run it unless
    ``check_plausible=False``.
    """
    from ._grid import ZISOI

    bottom = float(ZISOI[-1]) if bottom is None else float(bottom)
    d = np.asarray(depth, dtype=float)
    s = np.asarray(soc, dtype=float)
    batch = d.shape[:-1]
    n = int(np.prod(batch)) if batch else 1
    d, s = d.reshape(n, -1), s.reshape(n, -1)
    usable = np.isfinite(d) & np.isfinite(s) & (s > 0)
    deep = np.where(usable, d, -np.inf).max(1)
    bad = deep > bottom
    if bad.any():
        first, where = first_site(bad, batch, site_id)
        raise ObservationError(
            f"{where}: depth reaches {float(deep[first]):g} m, below the bottom of "
            f"the model grid ({bottom:g} m), so the models cannot be compared with it; if the profile is in cm "
            "convert it to m (divide by 100) or set depth's units = 'cm', otherwise drop the layers below "
            f"{bottom:g} m (pass check_plausible=False, soiljax --allow-implausible, to read them anyway)"
        )


__all__ = ["Observations", "ObservationError", "check_depth_plausibility", "validate_observation_arrays"]
