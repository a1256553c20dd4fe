"""Observation files: observed SOC profiles for calibration.

Dimensions ``site`` and ``obs`` (NaN-padded ragged profiles); ``depth``
(site, obs) node depth in m, ``soc`` (site, obs) SOC stock density in
gC m-3, optional ``soc_sd`` (site, obs) in gC m-3; optional ``site`` labels
and ``lat``/``lon``.  Any length (cm, mm, ...) and any mass of carbon per
volume (kgC m-3, g cm-3 = 1e6 gC m-3, ...) are converted on reading with
their exact factors; percent and per-soil-mass units are refused (they need
the bulk density), and so are stocks per area (they need the layer
thickness).  Without site labels the profiles are labelled 0..n-1 and pair
with a forcing file's sites in order.  :func:`write_observations`,
:func:`read_observations`.

Problems raise :class:`ObservationFileError`, a
:class:`soiljax.io.FileFormatError` and a :class:`soiljax.ObservationError`.
The reader checks plausibility (``check_plausible=True``): observations
below the model grid (cm read as m?) are an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import xarray as xr

from .. import _units
from .._observations import OM_TO_SOC_HINT, ObservationError, Observations, check_depth_plausibility
from ._layout import case_hint, check_sites, labels_of, site_dataset, site_labels
from ._netcdf import FileFormatError, open_dataset, parse_unit, write_dataset


class ObservationFileError(FileFormatError, ObservationError):
    """An observation file is malformed or holds profiles a calibration cannot use."""


OBSERVATION_UNITS: dict[str, str] = {"depth": "m", "soc": "gC m-3", "soc_sd": "gC m-3"}
"""Units of the variables of an observation file (written as the ``units`` attribute)."""

_OBS_LONG_NAMES = {
    "depth": "node depth of the observed layer",
    "soc": "soil organic carbon stock density",
    "soc_sd": "standard deviation of soc",
}
_ANY_LENGTH = "(or another length such as 'cm', converted on reading)"


def _obs_unit_factor(name: str, unit) -> tuple[float, str | None]:
    """(factor to the file unit of :data:`OBSERVATION_UNITS`, problem or None).

    Depth: any length.  soc, soc_sd: any mass (of carbon) per volume; contents
    per soil mass (%, g/kg) and stocks per area are refused with the conversion.
    """
    if name == "depth":
        q = parse_unit(unit)
        if q is None:
            return 1.0, f"has units {unit!r}, which soiljax cannot interpret; depth must be in 'm' {_ANY_LENGTH}"
        if _units.is_dim(q, "[length]"):
            return _units.factor(q, "m"), None
        return 1.0, f"has units {unit!r}, which is not a length; depth must be in 'm' {_ANY_LENGTH}"
    q = parse_unit(unit, carbon=True)
    if q is None:
        return 1.0, (
            f"has units {unit!r}, which soiljax cannot interpret; {name} must be in 'gC m-3' (or another mass of "
            "carbon per volume such as 'kgC m-3' or 'g cm-3', converted on reading)"
        )
    if _units.is_dim(q, "[mass] / [length] ** 3"):
        return _units.factor(q, "g / m ** 3"), None
    if q.dimensionless:
        return 1.0, (
            f"has units {unit!r}, a content per soil mass (or a fraction), not a stock density: {OM_TO_SOC_HINT}; "
            "then set units = 'gC m-3'"
        )
    if _units.is_dim(q, "[mass] / [length] ** 2"):
        return 1.0, (
            f"has units {unit!r}, a stock per area; divide each layer's stock by its thickness (m) to get "
            "gC m-3 and set units = 'gC m-3'"
        )
    return 1.0, (
        f"has units {unit!r}, which is not a stock density (a mass of carbon per volume); {name} must be in "
        "'gC m-3' (or another mass per volume such as 'kgC m-3', converted on reading)"
    )


def observations_dataset(
    obs: Observations,
    site_id=None,
    attrs: Mapping | None = None,
    *,
    lat=None,
    lon=None,
    sites: xr.Dataset | None = None,
) -> xr.Dataset:
    """The netCDF layout of observations with a leading site axis (see the module docstring).

    ``sites`` (e.g. the metadata of :func:`soiljax.dutch.dutch_profiles`)
    supplies the site labels, ``lat``/``lon`` and any other per-site
    variables, stored as coordinates on ``site``; explicit ``site_id``,
    ``lat`` and ``lon`` take precedence.  ``soc_sd`` is written only when
    some value is known.
    """
    if sites is not None:
        site_id = np.asarray(sites["site"].values) if site_id is None and "site" in sites.coords else site_id
        lat = np.asarray(sites["lat"].values) if lat is None and "lat" in sites.variables else lat
        lon = np.asarray(sites["lon"].values) if lon is None and "lon" in sites.variables else lon
    if obs.batch_shape == ():
        obs = obs[None]
    if len(obs.batch_shape) != 1:
        raise ValueError(f"an observation file holds a 1-D list of sites; got batch shape {obs.batch_shape}")
    n = obs.batch_shape[0]
    data = {}
    for name in ("depth", "soc", "soc_sd"):
        a = np.asarray(getattr(obs, name))
        if name == "soc_sd" and not np.isfinite(a).any():
            continue
        attrs_v = {"units": OBSERVATION_UNITS[name], "long_name": _OBS_LONG_NAMES[name]}
        if name == "depth":
            attrs_v["positive"] = "down"
        data[name] = (("site", "obs"), a, attrs_v)
    coords: dict = {"site": site_labels(n, site_id)}
    return site_dataset(data, coords, n, lat=lat, lon=lon, sites=sites, skip=data,
                         title="soiljax observed SOC profiles", what="the observations have", attrs=attrs)


def write_observations(
    obs: Observations,
    path,
    *,
    site_id=None,
    lat=None,
    lon=None,
    sites: xr.Dataset | None = None,
    attrs: Mapping | None = None,
) -> Path:
    """Write observed profiles (leading site axis) to a netCDF observation file; returns the path.

    Arguments as :func:`observations_dataset`.
    """
    return write_dataset(observations_dataset(obs, site_id, attrs, lat=lat, lon=lon, sites=sites), path)


def _obs_values(ds: xr.Dataset, name: str, single: bool, where: str) -> np.ndarray:
    """Values of ``name`` as (site, obs) in the units of :data:`OBSERVATION_UNITS`."""
    var = ds[name]
    want = ("obs",) if single else ("site", "obs")
    if var.dims == ("obs",) and not single and name == "depth":
        var = var.expand_dims(site=ds.sizes["site"])  # the same depths at every site
    if set(var.dims) != set(want):
        hint = ""
        if "obs" not in var.dims:
            hint = " (name the dimension along each profile 'obs')"
        raise ObservationFileError(f"{where}: variable {name!r} has dimensions {var.dims}, expected {want}{hint}")
    values = var.transpose(*want).values.astype(float)
    unit = var.attrs.get("units")
    if unit is not None:
        factor, problem = _obs_unit_factor(name, unit)
        if problem:
            raise ObservationFileError(f"{where}: variable {name!r} {problem}")
        values = values * factor
    return values[None] if single else values


def observations_from_dataset(
    ds: xr.Dataset,
    *,
    source: str = "observation dataset",
    min_layers: int = 2,
    check_units: bool = True,
    check_plausible: bool = True,
) -> tuple[Observations, xr.Dataset]:
    """Build validated :class:`Observations` from a dataset in the observation-file layout.

    Depths in any length unit (cm, mm, ...) are converted to m, and SOC in
    any mass of carbon per volume (kgC m-3, g cm-3, ...) to gC m-3, each with
    its exact factor; percent, g/kg and per-area units are refused with the
    conversion to apply.  A variable without a ``units`` attribute is taken
    to be in :data:`OBSERVATION_UNITS`.  ``depth`` may be (obs,) when all
    sites share the depths; a dataset without a ``site`` dimension is one
    site.  A dataset with no sites, or with repeated ``site`` labels, is
    refused.  ``min_layers`` and ``check_units`` are those of
    :meth:`Observations.from_arrays`; ``check_plausible`` refuses usable
    layers below the bottom of the model grid (8.6 m; usually a profile in
    cm read as m, :func:`soiljax._observations.check_depth_plausibility`).
    Returns ``(obs, sites)``: ``sites`` is the metadata, the per-site
    variables (``site`` labels, ``lat``/``lon`` and others on ``site``) and
    the global attributes, without the profile arrays.  A dataset without
    site labels gets the labels 0..n-1 (positions: its profiles pair with a
    forcing file's sites in order).
    """
    for name in ("depth", "soc"):
        if name not in ds.variables:
            raise ObservationFileError(
                f"{source}: variable {name!r} is missing; an observation file needs depth (site, obs) in m and "
                f"soc (site, obs) in gC m-3 (soc_sd optional)" + case_hint(ds, name)
            )
    single = "site" not in ds.dims
    if not single:
        check_sites(ds.sizes["site"], labels_of(ds), source, ObservationFileError, "observation")
    depth = _obs_values(ds, "depth", single, source)
    soc = _obs_values(ds, "soc", single, source)
    sd = _obs_values(ds, "soc_sd", single, source) if "soc_sd" in ds.variables else None
    if single:
        ds = ds.expand_dims(site=1)
    labels = labels_of(ds)
    try:
        obs = Observations.from_arrays(depth, soc, sd, labels, min_layers=min_layers, check_units=check_units)
        if check_plausible:
            check_depth_plausibility(depth, soc, labels)
    except ObservationError as exc:
        raise ObservationFileError(f"{source}: {exc}") from None
    keep = [v for v in ds.variables if v not in ("depth", "soc", "soc_sd", "obs") and ds[v].dims == ("site",)]
    sites = ds[keep].copy() if keep else xr.Dataset()
    if "site" not in sites.coords:
        sites = sites.assign_coords(site=labels if labels is not None else np.arange(obs.batch_shape[0]))
    sites.attrs = dict(ds.attrs)
    return obs, sites


def read_observations(
    path, *, min_layers: int = 2, check_units: bool = True, check_plausible: bool = True
) -> tuple[Observations, xr.Dataset]:
    """Read and validate an observation file.

    Returns ``(obs, sites)``: :class:`Observations` with a leading site axis
    and the metadata dataset of :func:`observations_from_dataset` (site
    labels, ``lat``/``lon`` and other per-site variables, the file's global
    attributes; not the profile arrays, which are in ``obs``).  Raises
    :class:`ObservationFileError` (a :class:`FileFormatError` and an
    :class:`soiljax.ObservationError`) naming the file, variable and site.
    Keywords as :func:`observations_from_dataset`.
    """
    ds = open_dataset(path, "observation", ObservationFileError)
    return observations_from_dataset(
        ds, source=f"observation file {str(path)!r}", min_layers=min_layers, check_units=check_units,
        check_plausible=check_plausible,
    )


__all__ = [
    "OBSERVATION_UNITS",
    "ObservationFileError",
    "observations_dataset",
    "observations_from_dataset",
    "read_observations",
    "write_observations",
]
