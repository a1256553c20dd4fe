"""The ``site`` dimension the file kinds of :mod:`soiljax.io` share.

An internal module: the forcing, parameter and observation modules build and
check their datasets with these.

:func:`site_labels`
    the labels written on ``site`` (0..n-1 unless given; unique).
:func:`site_dataset`
    a dataset on ``site`` with ``lat``/``lon``, per-site metadata,
    provenance and the caller's attributes.
:func:`labels_of`, :func:`check_sites`
    a file's labels, and the refusal of a file with 0 sites or repeated labels.
:func:`case_hint`
    the hint for a variable that is present in another letter case.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .._sites import repeated
from ._netcdf import FileFormatError, attr_value, provenance


def site_labels(n: int, site_id) -> np.ndarray:
    """The ``site`` coordinate of ``n`` sites: ``site_id`` (one unique label per site) or 0..n-1."""
    if site_id is None:
        return np.arange(n)
    labels = np.asarray(site_id)
    if labels.shape != (n,):
        raise ValueError(f"site_id must have one label per site ({n}), got shape {labels.shape}")
    dupes = repeated(labels)
    if dupes:
        dup, count = next(iter(dupes.items()))
        raise ValueError(f"site_id labels must be unique; {dup} appears {count} times")
    return labels


def site_dataset(data, coords, n, *, lat, lon, sites, skip, title, what, attrs) -> xr.Dataset:
    """A dataset on ``site`` with optional lat/lon and the per-site metadata of ``sites``
    (its variables on ``site`` that are not in ``skip`` become coordinates, its
    attributes are carried over), provenance and extra ``attrs``."""
    coords = dict(coords)
    for key, values, unit, long in (("lat", lat, "degrees_north", "latitude"), ("lon", lon, "degrees_east", "longitude")):
        if values is not None:
            values = np.asarray(values, dtype=float)
            if values.shape != (n,):
                raise ValueError(f"{key} must have one value per site ({n}), got shape {values.shape}")
            coords[key] = ("site", values, {"units": unit, "long_name": long})
    if sites is not None:
        for key in sites.variables:
            if key not in coords and key not in skip and sites[key].dims == ("site",):
                if sites.sizes["site"] != n:
                    raise ValueError(f"sites has {sites.sizes['site']} sites but {what} {n}")
                coords[key] = ("site", np.asarray(sites[key].values), dict(sites[key].attrs))
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update(provenance(title))
    if sites is not None:
        ds.attrs.update({k: attr_value(v) for k, v in sites.attrs.items() if k not in ds.attrs})
    if attrs:
        ds.attrs.update({k: attr_value(v) for k, v in attrs.items()})
    return ds


def case_hint(ds: xr.Dataset, name: str) -> str:
    """`` (found 'tsoi': ...)`` when ``ds`` has ``name`` in another letter case, else ``""``."""
    for other in ds.variables:
        if str(other).lower() == name.lower() and str(other) != name:
            return f" (found {str(other)!r}: variable names are case sensitive, rename it to {name!r})"
    return ""


def labels_of(ds: xr.Dataset) -> np.ndarray | None:
    """The ``site`` labels of a dataset, or None when it has no ``site`` coordinate."""
    if "site" in ds.coords:
        return np.asarray(ds["site"].values)
    return None


def check_sites(n: int, labels, source: str, error: type[FileFormatError], kind: str) -> None:
    """Refuse a file with no sites, and one whose ``site`` labels repeat (xarray's selection by
    label, merging and pairing with other files all need unique labels)."""
    if n == 0:
        raise error(
            f"{source}: the file holds 0 sites (dimension 'site' has length 0); {kind} files need at least one site"
        )
    if labels is None:
        return
    dupes = repeated(labels)
    if dupes:
        dup, count = next(iter(dupes.items()))
        others = f" ({len(dupes)} labels appear more than once)" if len(dupes) > 1 else ""
        raise error(
            f"{source}: site label {dup} appears {count} times in 'site'{others}; every site needs "
            "its own label: drop the repeated rows or relabel them"
        )
