"""Parameter files: the scaled parameters of a model at each site.

Variable ``u`` (site, param) of scaled parameters in [0, 1] with a ``param``
coordinate holding the model's parameter names (MODELS.md); the file also
carries the physical values ``theta`` and the bounds for readers, but only
``u`` is read back.  :func:`write_params`, :func:`read_params` (reorders by
name).  Problems raise :class:`ParamsFileError` naming the file, the
parameter and the site.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import xarray as xr

from .._params import ParamSpace
from .._registry import model_class
from .._sites import plain as _plain
from ._layout import check_sites, labels_of, site_labels
from ._netcdf import FileFormatError, attr_value, open_dataset, provenance, write_dataset


class ParamsFileError(FileFormatError):
    """A parameter file is malformed or holds values outside [0, 1]."""


def _space_of(model_or_space) -> ParamSpace:
    if isinstance(model_or_space, ParamSpace):
        return model_or_space
    if isinstance(model_or_space, str):
        return model_class(model_or_space).space
    space = getattr(model_or_space, "space", None)
    if isinstance(space, ParamSpace):
        return space
    raise TypeError(f"expected a model, a ParamSpace or a model name, got {model_or_space!r}")


def params_dataset(u, model_or_space, *, site_id=None, attrs: Mapping | None = None) -> xr.Dataset:
    """The netCDF layout of scaled parameters ``u`` ((site, param) or (param,))."""
    space = _space_of(model_or_space)
    u = np.asarray(u, dtype=float)
    if u.ndim == 1:
        u = u[None]
    if u.ndim != 2 or u.shape[1] != space.size:
        raise ValueError(
            f"{space.model} parameters must have shape (site, {space.size}) or ({space.size},), got {u.shape}"
        )
    n = u.shape[0]
    theta = np.asarray(space.to_physical(u))
    ds = xr.Dataset(
        {
            "u": (("site", "param"), u, {"units": "1", "long_name": "scaled parameter (0 = lower bound, 1 = upper bound)"}),
            "theta": (("site", "param"), theta, {"long_name": "physical parameter value (units in param_units)"}),
        },
        coords={
            "site": site_labels(n, site_id),
            "param": ("param", np.array(space.names), {"long_name": f"{space.model} parameter name (MODELS.md)"}),
            "param_units": ("param", np.array(space.units)),
            "param_lo": ("param", space.lo, {"long_name": "physical value at u = 0 (log10 for log-scaled)"}),
            "param_hi": ("param", space.hi, {"long_name": "physical value at u = 1 (log10 for log-scaled)"}),
        },
        attrs={**provenance(f"soiljax {space.model} parameters"), "model": space.model},
    )
    if attrs:
        ds.attrs.update({k: attr_value(v) for k, v in attrs.items()})
    return ds


def write_params(u, model_or_space, path, *, site_id=None, attrs: Mapping | None = None) -> Path:
    """Write scaled parameters ``u`` ((site, param) or (param,)) of a model to ``path``.

    ``model_or_space`` is a model (``CLM5()``), its ``space`` or the name
    ``"clm5"``/``"compas"``.  The file also carries the physical values
    (``theta``) and the bounds for readers; only ``u`` is read back.
    """
    return write_dataset(params_dataset(u, model_or_space, site_id=site_id, attrs=attrs), path)


def params_from_dataset(ds: xr.Dataset, model_or_space, *, source="parameter dataset", check_bounds: bool = True):
    """Scaled parameters (site, param) in the model's order from a parameter dataset."""
    space = _space_of(model_or_space)
    if "u" not in ds.variables:
        raise ParamsFileError(
            f"{source}: variable 'u' is missing; a parameter file holds u (site, param) with a 'param' "
            "coordinate of parameter names (see soiljax.io.write_params)"
        )
    var = ds["u"]
    if "param" not in var.dims:
        raise ParamsFileError(f"{source}: variable 'u' has dimensions {var.dims}; it needs a 'param' dimension")
    if var.dims == ("param",):
        var = var.expand_dims(site=1)
    if set(var.dims) != {"site", "param"}:
        raise ParamsFileError(f"{source}: variable 'u' has dimensions {var.dims}, expected ('site', 'param')")
    var = var.transpose("site", "param")
    site_coord = labels_of(ds) if "site" in ds.coords and ds["site"].size == var.sizes["site"] else None
    check_sites(var.sizes["site"], site_coord, source, ParamsFileError, "parameter")
    if "param" not in ds.coords:
        raise ParamsFileError(
            f"{source}: 'u' has no 'param' coordinate; add one with the {space.model} parameter names "
            f"({', '.join(space.names)})"
        )
    names = [str(n) for n in np.asarray(ds["param"].values)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ParamsFileError(f"{source}: parameter(s) {', '.join(dupes)} appear more than once in 'param'")
    unknown = [n for n in names if n not in space.names]
    missing = [n for n in space.names if n not in names]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(f"unknown parameter(s) {', '.join(unknown)}")
        if missing:
            parts.append(f"missing parameter(s) {', '.join(missing)}")
        model_attr = ds.attrs.get("model")
        hint = ""
        if model_attr and str(model_attr).lower() != space.model.lower():
            hint = f" (the file says it holds {model_attr} parameters; use the matching model)"
        raise ParamsFileError(
            f"{source}: {' and '.join(parts)} for {space.model}{hint}; {space.model} needs exactly: "
            f"{', '.join(space.names)}"
        )
    u = var.sel(param=list(space.names)).values.astype(float)
    labels = np.asarray(ds["site"].values) if "site" in ds.coords else np.arange(u.shape[0])
    bad = ~np.isfinite(u)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ParamsFileError(
            f"{source}: u of parameter {space.names[j]!r} at site {_plain(labels[i])} is {float(u[i, j])}; "
            f"every u must be a finite number ({int(bad.sum())} value(s) are not)"
        )
    if check_bounds:
        bad = (u < 0) | (u > 1)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ParamsFileError(
                f"{source}: u of parameter {space.names[j]!r} at site {_plain(labels[i])} is {float(u[i, j]):g}, "
                f"outside [0, 1] ({int(bad.sum())} value(s) outside); u is the scaled value "
                f"(lo + u (hi - lo)), not the physical one -- convert with {space.model}_SPACE.to_u"
            )
    return u


def read_params(path, model_or_space, *, check_bounds: bool = True, with_sites: bool = False):
    """Read scaled parameters (site, param), reordered to the model's parameter order.

    Raises :class:`ParamsFileError` on a missing file or variable, unknown or
    missing names, non-finite values or (with ``check_bounds``) values outside
    [0, 1].  ``check_bounds=False`` admits values outside the prior such as
    CLM5's default efolding of 10 m (u = 10).  ``with_sites=True`` returns
    ``(u, labels)``: the file's site labels, or None when it has none, to
    pair its rows with another file's sites (:func:`soiljax._sites.pair_sites`).
    """
    ds = open_dataset(path, "parameter", ParamsFileError)
    u = params_from_dataset(ds, model_or_space, source=f"parameter file {str(path)!r}", check_bounds=check_bounds)
    if not with_sites:
        return u
    labels = np.asarray(ds["site"].values) if "site" in ds.coords and ds["site"].size == u.shape[0] else None
    return u, labels


__all__ = ["ParamsFileError", "params_dataset", "params_from_dataset", "read_params", "write_params"]
