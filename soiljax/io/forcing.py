"""Forcing files: the monthly climatology and carbon inputs of each site.

Dimensions ``site``, ``month`` (12), ``layer`` (20).  Variables TSOI,
W_SCALAR, O_SCALAR, FPI_vr (site, month, layer); ALTMAX, ALTMAX_LASTYEAR,
nbedrock, CWD_INPUT, LITR1_INPUT, LITR2_INPUT, LITR3_INPUT (site, month);
CELLSAND (site, layer, optional); optional ``lat``/``lon`` on ``site``.
Units as :data:`soiljax.FORCING_UNITS` (a variable without a ``units``
attribute is taken to be in those units).  Units attributes are parsed
with pint (:mod:`soiljax._units`; CF/UDUNITS spellings such as
``gC m-2 month-1``, ``g C/m^2/month``; case matters: ``Mg`` is a
megagram, ``mg`` a milligram).  The carbon inputs may be in any mass (of
carbon) per area *and month* -- ``kgC m-2 month-1``, ``gC cm-2 month-1``,
``MgC ha-1 month-1`` -- and are converted to gC m-2 month-1 on reading;
rates per second, day, hour or year are refused with the conversion to
apply (months have unequal lengths).  Every other variable must be in its
own unit (kelvin, fractions, metres, percent sand): another one is
refused with the fix.  :func:`write_forcing`, :func:`read_forcing`.

Problems with a file or with its values raise :class:`ForcingFileError`,
which is a :class:`soiljax.io.FileFormatError` and a
:class:`soiljax.ForcingError`.  The reader checks plausibility
(``check_plausible=True``): an annual carbon input above
:data:`ANNUAL_INPUT_MAX` (annual totals in every month?) or positive below
:data:`ANNUAL_INPUT_MIN` gC m-2 yr-1 (a rate per second without units?) is an
error; one above :data:`ANNUAL_INPUT_HIGH` is a :class:`PlausibilityWarning`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import xarray as xr

from .. import _units
from .._forcing import (
    ANNUAL_INPUT_HIGH,
    ANNUAL_INPUT_MAX,
    ANNUAL_INPUT_MIN,
    FORCING_UNITS,
    FORCING_VARIABLES,
    Forcing,
    ForcingError,
    PlausibilityWarning,
    check_input_plausibility,
)
from .._grid import N_LAYERS, ZSOI
from ._layout import case_hint, check_sites, labels_of, site_dataset, site_labels
from ._netcdf import FileFormatError, open_dataset, parse_unit, write_dataset

N_MONTHS = 12

_SIZES = {"month": N_MONTHS, "layer": N_LAYERS}


class ForcingFileError(FileFormatError, ForcingError):
    """A forcing file is malformed or holds values a model cannot use."""


# ---------------------------------------------------------------------------
# units
# ---------------------------------------------------------------------------

_CARBON_INPUTS = ("CWD_INPUT", "LITR1_INPUT", "LITR2_INPUT", "LITR3_INPUT")
_PER_TIME_ADVICE = {
    "second": "it is a rate per second (as CLM history fields are): multiply each month by its length in seconds "
    "(86400 x days in the month) to get the monthly total",
    "minute": "it is a rate per minute: multiply each month by 1440 x its number of days",
    "hour": "it is a rate per hour: multiply each month by 24 x its number of days",
    "day": "it is a rate per day: multiply each month by its number of days",
    "year": "it is per year: give each month's share of the annual total (e.g. divide an even rate by 12)",
}


def _forcing_unit(name: str, unit) -> tuple[float, str | None]:
    """(factor to :data:`FORCING_UNITS`, None), or (1, how to fix) when ``unit`` is refused.

    Only the carbon inputs are converted (by a constant mass/area factor, per
    month); every other variable must be in its unit of FORCING_UNITS.
    """
    want = FORCING_UNITS[name]
    if name in _CARBON_INPUTS:
        return _carbon_input_unit(name, unit)
    text = " ".join(str(unit).split()).lower()
    if name == "nbedrock" and text in _units.WORDS_INDEX:
        return 1.0, None
    q = parse_unit(unit)
    if want == "K":
        if q is not None and _units.is_dim(q, "[temperature]"):
            if _units.unit_name(q) == "kelvin" and q.magnitude == 1:
                return 1.0, None
            if _units.unit_name(q) == "degree_Celsius":
                return 1.0, (
                    f"has units {unit!r}, degrees Celsius; TSOI must be in kelvin: add 273.15 and set units = 'K'"
                )
        return 1.0, f"has units {unit!r}; TSOI must be in kelvin ('K')"
    if want == "m":
        if q is not None and _units.is_dim(q, "[length]"):
            f = _units.factor(q, "m")
            if f == 1.0:
                return 1.0, None
            if f == 0.01:
                return 1.0, (
                    f"has units {unit!r}, centimetres; {name} must be in metres: divide by 100 and set units = 'm'"
                )
            return 1.0, f"has units {unit!r}; {name} must be in metres: multiply by {f:g} and set units = 'm'"
        return 1.0, f"has units {unit!r}; {name} must be in metres ('m')"
    dimensionless = q is not None and q.dimensionless
    f = _units.factor(q, "") if dimensionless else None
    if name == "nbedrock":
        return (1.0, None) if f == 1.0 else (1.0, f"has units {unit!r}; nbedrock is a layer index (units '1')")
    if want == "1":
        if f == 1.0:
            return 1.0, None
        if f == 0.01:
            return 1.0, (
                f"has units {unit!r}, percent; {name} is a fraction in [0, 1]: divide by 100 and set units = '1'"
            )
        if f is not None:
            return 1.0, f"has units {unit!r}; {name} is a fraction in [0, 1]: multiply by {f:g} and set units = '1'"
        return 1.0, f"has units {unit!r}; {name} is a dimensionless scalar in [0, 1] (units '1')"
    # CELLSAND, percent sand
    if f == 0.01:
        return 1.0, None
    if f == 1.0:
        return 1.0, (
            f"has units {unit!r}, a fraction; CELLSAND must be in percent sand: multiply by 100 and set units = '%'"
        )
    if f is not None:
        return 1.0, f"has units {unit!r}; CELLSAND must be in percent sand: multiply by {f * 100:g} and set units = '%'"
    return 1.0, f"has units {unit!r}; CELLSAND must be in percent sand ('%')"


def _carbon_input_unit(name: str, unit) -> tuple[float, str | None]:
    """Factor from a carbon input's unit to gC m-2 month-1: any mass (of carbon) per area and month."""
    want = FORCING_UNITS[name]
    q = parse_unit(unit, carbon=True)
    if q is None:
        return 1.0, (
            f"has units {unit!r}, which soiljax cannot interpret; {name} must be in '{want}' (monthly column total; "
            "another mass or area per month, such as 'kgC m-2 month-1', is converted on reading)"
        )
    if _units.is_dim(q, "[mass] / [length] ** 2"):
        return 1.0, (
            f"has units {unit!r}, with no time unit; {name} holds each month's total: if that is what the values "
            f"are, set units = '{want}'"
        )
    if not _units.is_dim(q, "[mass] / [length] ** 2 / [time]"):
        return 1.0, f"has units {unit!r}, not a mass of carbon per area and month; {name} must be in '{want}'"
    times = _units.time_units(q)
    if times == [("month", -1)]:
        return _units.factor(q, "g / m ** 2 / month"), None
    fixes = []
    if len(times) == 1 and times[0][1] == -1:
        per = times[0][0]
        area = _units.factor(q * _units.registry().Quantity(1, per), "g / m ** 2")
        if area != 1.0:
            fixes.append(f"multiply by {area:g} to get gC m-2")
        kind = next((k for k in _PER_TIME_ADVICE if per.endswith(k)), None)
        fixes.append(_PER_TIME_ADVICE[kind] if kind else f"it is a rate per {per}: give each month's total")
    else:
        fixes.append("give each month's total")
    return 1.0, (
        f"has units {unit!r}; {name} must be in '{want}' (months have unequal lengths, so soiljax does not convert "
        "rates): " + "; ".join(fixes) + f", then set units = '{want}'"
    )


# ---------------------------------------------------------------------------
# forcing files
# ---------------------------------------------------------------------------


def forcing_dataset(
    forcing: Forcing, *, lat=None, lon=None, site_id=None, sites: xr.Dataset | None = None, attrs: Mapping | None = None
) -> xr.Dataset:
    """The netCDF layout of a forcing with a leading site axis (see the module docstring).

    ``sites`` (e.g. the ``info`` of :func:`soiljax.synthetic.synthetic_sites`)
    supplies site labels, ``lat``/``lon`` and any other per-site variables,
    which are stored as coordinates on ``site``; explicit ``lat``, ``lon`` and
    ``site_id`` take precedence.
    """
    if sites is not None:
        site_id = np.asarray(sites["site"].values) if site_id is None and "site" in sites.coords else site_id
        lat = np.asarray(sites["lat"].values) if lat is None and "lat" in sites.variables else lat
        lon = np.asarray(sites["lon"].values) if lon is None and "lon" in sites.variables else lon
    if forcing.batch_shape == ():
        forcing = _expand_site(forcing)
    if len(forcing.batch_shape) != 1:
        raise ValueError(f"a forcing file holds a 1-D list of sites; got batch shape {forcing.batch_shape}")
    n = forcing.batch_shape[0]
    data = {}
    for name, arr in forcing.variables().items():
        dims = ("site",) + FORCING_VARIABLES[name]
        a = np.asarray(arr)
        data[name] = (dims, a, {"units": FORCING_UNITS[name], "long_name": _FORCING_LONG_NAMES[name]})
    coords: dict = {
        "site": site_labels(n, site_id),
        "month": ("month", np.arange(1, N_MONTHS + 1), {"long_name": "calendar month (1 = January)"}),
        "layer": ("layer", np.arange(1, N_LAYERS + 1), {"long_name": "soil layer index (1 = top)"}),
        "z": ("layer", np.asarray(ZSOI), {"units": "m", "long_name": "node depth of the layer", "positive": "down"}),
    }
    return site_dataset(data, coords, n, lat=lat, lon=lon, sites=sites, skip=FORCING_VARIABLES,
                         title="soiljax forcing", what="the forcing has", attrs=attrs)


def _expand_site(forcing: Forcing) -> Forcing:
    """Add a leading site axis of length 1 to a single-site forcing."""
    import jax

    return jax.tree_util.tree_map(lambda a: a[None], forcing)


_FORCING_LONG_NAMES = {
    "TSOI": "soil temperature",
    "W_SCALAR": "water scalar for decomposition",
    "O_SCALAR": "oxygen scalar for decomposition",
    "FPI_vr": "fraction of potential immobilisation (nitrogen scalar)",
    "ALTMAX": "maximum active-layer depth of the current year",
    "ALTMAX_LASTYEAR": "maximum active-layer depth of the previous year",
    "nbedrock": "index of the last soil layer above bedrock",
    "CWD_INPUT": "carbon input to coarse woody debris (column total)",
    "LITR1_INPUT": "carbon input to metabolic litter (column total)",
    "LITR2_INPUT": "carbon input to cellulose litter (column total)",
    "LITR3_INPUT": "carbon input to lignin litter (column total)",
    "CELLSAND": "sand content",
}


def write_forcing(
    forcing: Forcing,
    path,
    *,
    lat=None,
    lon=None,
    site_id=None,
    sites: xr.Dataset | None = None,
    attrs: Mapping | None = None,
) -> Path:
    """Write ``forcing`` (leading site axis) to a netCDF forcing file; returns the path.

    ``lat``/``lon`` (degrees, one per site) become coordinates on ``site``;
    ``site_id`` labels the sites (default 0..n-1); ``sites`` adds per-site
    metadata (see :func:`forcing_dataset`).
    """
    return write_dataset(forcing_dataset(forcing, lat=lat, lon=lon, site_id=site_id, sites=sites, attrs=attrs), path)


def _conform(ds: xr.Dataset, name: str, dims: tuple[str, ...], where: str, err: type[FileFormatError]):
    """The values of ``name`` with dims ``dims`` (transposing if only the order differs)."""
    if name not in ds.variables:
        raise err(
            f"{where}: variable {name!r} is missing; a forcing file needs "
            f"{', '.join(n for n in FORCING_VARIABLES if n != 'CELLSAND')} (CELLSAND optional)"
            + case_hint(ds, name)
        )
    var = ds[name]
    if set(var.dims) != set(dims):
        hint = ""
        if "layer" in dims and any(d in var.dims for d in ("levsoi", "levgrnd", "levdcmp")):
            hint = " (rename the CLM level dimension to 'layer' and keep the 20 soil layers)"
        if "month" in dims and "time" in var.dims:
            hint = " (rename 'time' to 'month': the file holds a 12-month climatology)"
        raise err(f"{where}: variable {name!r} has dimensions {var.dims}, expected {dims}{hint}")
    if var.dims != dims:
        var = var.transpose(*dims)
    for d in dims:
        if d in _SIZES and var.sizes[d] != _SIZES[d]:
            extra = ""
            if d == "layer" and var.sizes[d] == 25:
                extra = "; the file holds CLM's 25 ground levels: keep the first 20 (isel(layer=slice(0, 20)))"
            raise err(
                f"{where}: variable {name!r} has {var.sizes[d]} entries along {d!r}, expected {_SIZES[d]}{extra}"
            )
    return var.values


def forcing_from_dataset(
    ds: xr.Dataset, *, source: str = "forcing dataset", check_plausible: bool = True
) -> tuple[Forcing, xr.Dataset]:
    """Build a validated :class:`Forcing` from a dataset in the forcing-file layout.

    ``source`` names the data in error messages (the file name when called by
    :func:`read_forcing`).  Returns ``(forcing, sites)`` where ``sites`` holds
    the ``site`` coordinate, ``lat``/``lon`` if present, any other per-site
    variables (e.g. ``zone``) and the file's global attributes.  Carbon
    inputs in another mass or area per month are converted (see the module
    docstring).  Refuses a dataset with no sites or with repeated site
    labels.  ``check_plausible`` runs
    :func:`soiljax._forcing.check_input_plausibility`: an annual input above
    :data:`ANNUAL_INPUT_MAX` or positive below :data:`ANNUAL_INPUT_MIN`
    gC m-2 yr-1 raises, one above :data:`ANNUAL_INPUT_HIGH` warns
    (:class:`PlausibilityWarning`); ``False`` skips both.
    """
    single = "site" not in ds.dims
    values = {}
    for name, dims in FORCING_VARIABLES.items():
        if name == "CELLSAND" and name not in ds.variables:
            continue
        want = dims if single else ("site",) + dims
        values[name] = _conform(ds, name, want, source, ForcingFileError)
        unit = ds[name].attrs.get("units")
        if unit is not None:
            factor, problem = _forcing_unit(name, unit)
            if problem:
                raise ForcingFileError(f"{source}: variable {name!r} {problem}")
            if factor != 1.0:
                values[name] = values[name] * factor
    if single:
        values = {k: v[None] for k, v in values.items()}
        ds = ds.expand_dims(site=1)
    labels = labels_of(ds)
    check_sites(values["TSOI"].shape[0], labels, source, ForcingFileError, "forcing")
    try:
        forcing = Forcing.from_variables(values, site_labels=labels)
    except ForcingError as exc:
        raise ForcingFileError(f"{source}: {exc}") from None
    if check_plausible:
        try:
            check_input_plausibility(forcing, labels, where=source)
        except ForcingError as exc:
            raise ForcingFileError(str(exc)) from None
    keep = [v for v in ds.variables if v not in FORCING_VARIABLES and ds[v].dims == ("site",)]
    sites = ds[keep].copy() if keep else xr.Dataset(coords={"site": ds["site"] if "site" in ds.coords else np.arange(forcing.batch_shape[0])})
    if "site" not in sites.coords:
        sites = sites.assign_coords(site=np.arange(forcing.batch_shape[0]))
    sites.attrs = dict(ds.attrs)
    return forcing, sites


def read_forcing(path, *, check_plausible: bool = True) -> tuple[Forcing, xr.Dataset]:
    """Read and validate a forcing file.

    Returns ``(forcing, sites)``: a :class:`Forcing` with a leading site axis
    and an :class:`xarray.Dataset` with the ``site`` coordinate, ``lat`` /
    ``lon`` when the file has them, other per-site variables, and the file's
    global attributes.  Dimensions in another order are transposed; a file
    without a ``site`` dimension is read as one site.  Raises
    :class:`ForcingFileError` naming the file, variable and site;
    ``check_plausible`` as :func:`forcing_from_dataset`.
    """
    ds = open_dataset(path, "forcing", ForcingFileError)
    return forcing_from_dataset(ds, source=f"forcing file {str(path)!r}", check_plausible=check_plausible)


__all__ = [
    "ANNUAL_INPUT_HIGH",
    "ANNUAL_INPUT_MAX",
    "ANNUAL_INPUT_MIN",
    "ForcingFileError",
    "N_MONTHS",
    "PlausibilityWarning",
    "forcing_dataset",
    "forcing_from_dataset",
    "read_forcing",
    "write_forcing",
]
