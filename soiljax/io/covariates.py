"""Covariate files: the covariates of each site, on (``site``, ``covariate``).

A covariate file holds one variable, ``covariates`` (site, covariate), with
the covariate names on the ``covariate`` coordinate and the site labels on
``site``; the sites.nc of a world folder (:func:`soiljax.world.write_world`)
is one.  The learners of :mod:`soiljax.learning` are trained on the rows of
such a matrix, paired with the sites of other files by label, so the labels
are required.  :func:`write_covariates`, :func:`read_covariates`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from ._layout import check_sites, site_labels
from ._netcdf import FileFormatError, attr_value, open_dataset, provenance, write_dataset


class CovariateFileError(FileFormatError):
    """A covariate file lacks ``covariates`` (site, covariate), its names or its site labels."""


def write_covariates(x, names, path, *, site_id, attrs=None) -> Path:
    """Write the covariate matrix ``x`` (site, covariate) with the covariate ``names`` and
    one unique label per site (``site_id``); ``attrs`` become global attributes."""
    x = np.asarray(x, dtype=float)
    names = [str(n) for n in names]
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"x must have shape (site, {len(names)}) for {len(names)} covariate names, got {x.shape}")
    ds = xr.Dataset(
        {"covariates": (("site", "covariate"), x)},
        coords={"site": site_labels(x.shape[0], site_id), "covariate": names},
        attrs=provenance("soiljax covariates"),
    )
    ds.attrs.update({k: attr_value(v) for k, v in (attrs or {}).items()})
    return write_dataset(ds, path)


def read_covariates(path) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    """``(x, names, sites)`` of a covariate file: the matrix (site, covariate) as floats,
    the covariate names and the site labels (as strings, for pairing with other files).

    Raises :class:`CovariateFileError` naming the file when it cannot be read, lacks
    ``covariates`` (site, covariate), the ``covariate`` names or the ``site`` labels,
    holds no site or repeats a label.
    """
    source = f"covariate file {str(path)!r}"
    ds = open_dataset(path, "covariate", CovariateFileError)
    if "covariates" not in ds:
        raise CovariateFileError(f"{source} has no variable 'covariates' (site, covariate); "
                                 "write one like soiljax.world's sites.nc")
    da = ds["covariates"]
    if da.dims != ("site", "covariate"):
        raise CovariateFileError(f"'covariates' in {str(path)!r} has dims {da.dims}, expected ('site', 'covariate')")
    if "covariate" not in ds.coords:
        raise CovariateFileError(f"{source} needs a 'covariate' coordinate with the covariate names")
    if "site" not in ds.coords and "site" not in ds:
        raise CovariateFileError(f"{source} has no 'site' coordinate: files must label their sites so they can "
                                 "be matched")
    sites = np.asarray(ds["site"].values).astype(str)
    check_sites(len(sites), sites, source, CovariateFileError, "covariate")
    names = tuple(str(c) for c in ds["covariate"].values)
    return np.asarray(da.values, dtype=float), names, sites


__all__ = ["CovariateFileError", "read_covariates", "write_covariates"]
