"""netCDF input and output with xarray: forcing, parameter, result and observation files.

Four file kinds, all on a ``site`` dimension:

Forcing files
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
Parameter files
    Variable ``u`` (site, param) of scaled parameters in [0, 1] with a
    ``param`` coordinate holding the model's parameter names (MODELS.md).
    :func:`write_params`, :func:`read_params` (reorders by name).
Result files
    ``state`` (site, pool, layer) and ``soc`` (site, layer) in gC m-3,
    ``valid``, ``rcond``, the parameters ``u``, SOC stocks to 0.3, 1 and 2 m
    (kgC m-2) and the six system-level components of
    :func:`soiljax.system_components`.  :func:`results_dataset` builds one in
    memory; :func:`simulate_to_file` computes and writes batch by batch into
    part files (a crash loses at most one batch, a rerun resumes) and merges
    them at the end.
Observation files
    Observed SOC profiles for calibration: dimensions ``site`` and ``obs``
    (NaN-padded ragged profiles); ``depth`` (site, obs) node depth in m,
    ``soc`` (site, obs) SOC stock density in gC m-3, optional ``soc_sd``
    (site, obs) in gC m-3; optional ``site`` labels and ``lat``/``lon``.
    Any length (cm, mm, ...) and any mass of carbon per volume (kgC m-3,
    g cm-3 = 1e6 gC m-3, ...) are converted on reading with their exact
    factors; percent and per-soil-mass units are refused (they need the bulk
    density), and so are stocks per area (they need the layer thickness).
    Without site labels the profiles are labelled 0..n-1 and pair with a
    forcing file's sites in order.  :func:`write_observations`,
    :func:`read_observations`.

Every problem with a file raises :class:`FileFormatError` (a ``ValueError``)
whose message names the file, the variable and, where it applies, the site,
and says how to fix it.  Problems with forcing values raise
:class:`ForcingFileError`, which is also a :class:`soiljax.ForcingError`.
Every reader refuses a file with 0 sites or with a repeated ``site`` label.
The forcing and observation readers also check plausibility
(``check_plausible=True``): an annual carbon input above
:data:`ANNUAL_INPUT_MAX` (annual totals in every month?) or positive below
:data:`ANNUAL_INPUT_MIN` gC m-2 yr-1 (a rate per second without units?), and
observations below the model grid (cm read as m?), are errors; an annual
input above :data:`ANNUAL_INPUT_HIGH` is a :class:`PlausibilityWarning`.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import equinox as eqx
import numpy as np
import xarray as xr

from . import _units
from ._forcing import (
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
from ._grid import DZ, N_LAYERS, ZISOI, ZSOI
from ._observations import OM_TO_SOC_HINT, ObservationError, Observations, check_depth_plausibility
from ._params import ParamSpace
from ._parts import parts_dir
from ._registry import model_class
from ._sites import plain as _plain
from ._sites import repeated as _repeated

N_MONTHS = 12
STOCK_DEPTHS: tuple[float, ...] = (0.3, 1.0, 2.0)
"""Depths (m) of the SOC stocks in result files (``soc_stock_0_30`` ...)."""

_SIZES = {"month": N_MONTHS, "layer": N_LAYERS}


class FileFormatError(ValueError):
    """A file is missing, unreadable, or does not have the expected content."""


class ForcingFileError(FileFormatError, ForcingError):
    """A forcing file is malformed or holds values a model cannot use."""


class ParamsFileError(FileFormatError):
    """A parameter file is malformed or holds values outside [0, 1]."""


class OutputError(FileFormatError):
    """An output file cannot be written: its path is a folder, its folder cannot be written, ..."""


class OutputWriteError(OutputError):
    """Writing an output file failed (a full disk, a quota, no permission); nothing half-written is left."""


class OutputLockedError(OutputError):
    """Another run is writing the same output (its lock file names it)."""


# ---------------------------------------------------------------------------
# netCDF backend
# ---------------------------------------------------------------------------


def netcdf_engine() -> str:
    """The xarray engine used for writing: h5netcdf when h5py is importable, else netCDF4.

    Set ``SOILJAX_NETCDF_ENGINE`` to force one.  Both write netCDF-4 files
    that either can read.
    """
    forced = os.environ.get("SOILJAX_NETCDF_ENGINE")
    if forced:
        return forced
    try:
        import h5netcdf  # noqa: F401
        import h5py  # noqa: F401

        return "h5netcdf"
    except ImportError:
        return "netcdf4"


def _open(path, kind: str, error: type[FileFormatError]) -> xr.Dataset:
    path = Path(path)
    if not path.exists():
        raise error(f"{kind} file {str(path)!r} does not exist; check the path")
    if path.is_dir():
        raise error(f"{kind} file {str(path)!r} is a directory, not a netCDF file")
    engines = [netcdf_engine()] + [e for e in ("h5netcdf", "netcdf4", "scipy") if e != netcdf_engine()]
    problems = []
    for engine in engines:
        try:
            with xr.open_dataset(path, engine=engine) as ds:
                return ds.load()
        except Exception as exc:  # noqa: BLE001 - each backend fails in its own way
            problems.append(f"{engine}: {type(exc).__name__}: {exc}".splitlines()[0])
    raise error(
        f"{kind} file {str(path)!r} could not be read as netCDF ({'; '.join(problems)}); "
        "write it as netCDF-4 or netCDF-3, e.g. with xarray's Dataset.to_netcdf"
    )


_MEMORY_WRITES: dict[str, bool] = {}


def _writes_to_memory(engine: str) -> bool:
    """Whether this xarray can make a netCDF-4 file in memory with ``engine`` (xarray >= 2025.07.2)."""
    if engine not in _MEMORY_WRITES:
        try:
            _MEMORY_WRITES[engine] = xr.Dataset({"x": ("d", [0])}).to_netcdf(engine=engine) is not None
        except (ValueError, TypeError, NotImplementedError):  # older xarray: bytes only from scipy (netCDF-3)
            _MEMORY_WRITES[engine] = False
    return _MEMORY_WRITES[engine]


_FULL_DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _write(ds: xr.Dataset, path, encoding=None) -> Path:
    """Write atomically: to a hidden temporary file next to ``path``, then rename.

    The file is made in memory and then written with plain file I/O (it
    takes memory of the file's size once more): HDF5 writing to disk carries
    on after a failed write (a full disk) and crashes the interpreter with a
    segmentation fault, whereas a failed write of bytes raises an
    ``OSError``, which becomes a one-line :class:`OutputWriteError` naming
    the file.  The temporary file (``.NAME.tmpPID``) is removed on failure;
    its name carries the writer's process id, so a later run can tell the
    leftovers of a killed writer (:func:`soiljax._parts.run_in_parts`
    removes them).
    """
    path = Path(path)
    engine = netcdf_engine()
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if _writes_to_memory(engine):
            image = ds.to_netcdf(engine=engine, encoding=encoding)
            with open(tmp, "wb") as fh:
                fh.write(image)
                fh.flush()
                os.fsync(fh.fileno())  # a full disk can show only here (delayed allocation, network disks)
        else:
            ds.to_netcdf(tmp, engine=engine, encoding=encoding)
        os.replace(tmp, path)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        hint = ""
        if exc.errno in _FULL_DISK_ERRNOS:
            hint = " (the disk may be full, or a disk quota or file-size limit reached: free some space and run again)"
        raise OutputWriteError(f"could not write {str(path)!r}: {reason}{hint}") from exc
    finally:
        try:
            tmp.unlink()
        except OSError:  # renamed into place, never made, or the folder is gone
            pass
    return path


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


def _parse_unit(unit, *, carbon: bool = False):
    """The pint quantity of a units attribute (see :mod:`soiljax._units`), or None if pint cannot read it."""
    try:
        return _units.parse(unit, carbon=carbon)
    except _units.UnitParseError:
        return None


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
    q = _parse_unit(unit)
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
    q = _parse_unit(unit, carbon=True)
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


def _site_labels(n: int, site_id) -> np.ndarray:
    if site_id is None:
        return np.arange(n)
    labels = np.asarray(site_id)
    if labels.shape != (n,):
        raise ValueError(f"site_id must have one label per site ({n}), got shape {labels.shape}")
    dupes = _repeated(labels)
    if dupes:
        dup, count = next(iter(dupes.items()))
        raise ValueError(f"site_id labels must be unique; {dup} appears {count} times")
    return labels


def _site_dataset(data, coords, n, *, lat, lon, sites, skip, title, what, attrs) -> xr.Dataset:
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
    ds.attrs.update(_provenance(title))
    if sites is not None:
        ds.attrs.update({k: _attr_value(v) for k, v in sites.attrs.items() if k not in ds.attrs})
    if attrs:
        ds.attrs.update({k: _attr_value(v) for k, v in attrs.items()})
    return ds


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
        "site": _site_labels(n, site_id),
        "month": ("month", np.arange(1, N_MONTHS + 1), {"long_name": "calendar month (1 = January)"}),
        "layer": ("layer", np.arange(1, N_LAYERS + 1), {"long_name": "soil layer index (1 = top)"}),
        "z": ("layer", np.asarray(ZSOI), {"units": "m", "long_name": "node depth of the layer", "positive": "down"}),
    }
    return _site_dataset(data, coords, n, lat=lat, lon=lon, sites=sites, skip=FORCING_VARIABLES,
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
    return _write(forcing_dataset(forcing, lat=lat, lon=lon, site_id=site_id, sites=sites, attrs=attrs), path)


def _conform(ds: xr.Dataset, name: str, dims: tuple[str, ...], where: str, err: type[FileFormatError]):
    """The values of ``name`` with dims ``dims`` (transposing if only the order differs)."""
    if name not in ds.variables:
        raise err(
            f"{where}: variable {name!r} is missing; a forcing file needs "
            f"{', '.join(n for n in FORCING_VARIABLES if n != 'CELLSAND')} (CELLSAND optional)"
            + _case_hint(ds, name)
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


def _case_hint(ds: xr.Dataset, name: str) -> str:
    for other in ds.variables:
        if str(other).lower() == name.lower() and str(other) != name:
            return f" (found {str(other)!r}: variable names are case sensitive, rename it to {name!r})"
    return ""


def _labels_of(ds: xr.Dataset) -> np.ndarray | None:
    if "site" in ds.coords:
        return np.asarray(ds["site"].values)
    return None


def _check_sites(n: int, labels, source: str, error: type[FileFormatError], kind: str) -> None:
    """Refuse a file with no sites, and one whose ``site`` labels repeat (xarray's selection by
    label, merging and pairing with other files all need unique labels)."""
    if n == 0:
        raise error(
            f"{source}: the file holds 0 sites (dimension 'site' has length 0); {kind} files need at least one site"
        )
    if labels is None:
        return
    dupes = _repeated(labels)
    if dupes:
        dup, count = next(iter(dupes.items()))
        others = f" ({len(dupes)} labels appear more than once)" if len(dupes) > 1 else ""
        raise error(
            f"{source}: site label {dup} appears {count} times in 'site'{others}; every site needs "
            "its own label: drop the repeated rows or relabel them"
        )


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
    labels = _labels_of(ds)
    _check_sites(values["TSOI"].shape[0], labels, source, ForcingFileError, "forcing")
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
    ds = _open(path, "forcing", ForcingFileError)
    return forcing_from_dataset(ds, source=f"forcing file {str(path)!r}", check_plausible=check_plausible)


# ---------------------------------------------------------------------------
# parameter files
# ---------------------------------------------------------------------------


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
            "site": _site_labels(n, site_id),
            "param": ("param", np.array(space.names), {"long_name": f"{space.model} parameter name (MODELS.md)"}),
            "param_units": ("param", np.array(space.units)),
            "param_lo": ("param", space.lo, {"long_name": "physical value at u = 0 (log10 for log-scaled)"}),
            "param_hi": ("param", space.hi, {"long_name": "physical value at u = 1 (log10 for log-scaled)"}),
        },
        attrs={**_provenance(f"soiljax {space.model} parameters"), "model": space.model},
    )
    if attrs:
        ds.attrs.update({k: _attr_value(v) for k, v in attrs.items()})
    return ds


def write_params(u, model_or_space, path, *, site_id=None, attrs: Mapping | None = None) -> Path:
    """Write scaled parameters ``u`` ((site, param) or (param,)) of a model to ``path``.

    ``model_or_space`` is a model (``CLM5()``), its ``space`` or the name
    ``"clm5"``/``"compas"``.  The file also carries the physical values
    (``theta``) and the bounds for readers; only ``u`` is read back.
    """
    return _write(params_dataset(u, model_or_space, site_id=site_id, attrs=attrs), path)


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
    site_coord = _labels_of(ds) if "site" in ds.coords and ds["site"].size == var.sizes["site"] else None
    _check_sites(var.sizes["site"], site_coord, source, ParamsFileError, "parameter")
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
    ds = _open(path, "parameter", ParamsFileError)
    u = params_from_dataset(ds, model_or_space, source=f"parameter file {str(path)!r}", check_bounds=check_bounds)
    if not with_sites:
        return u
    labels = np.asarray(ds["site"].values) if "site" in ds.coords and ds["site"].size == u.shape[0] else None
    return u, labels


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------


def _stock_name(depth: float) -> str:
    return f"soc_stock_0_{int(round(depth * 100))}"


def _model_name(model) -> str:
    return type(model).__name__


def _provenance(title: str) -> dict:
    from . import __version__

    return {
        "title": title,
        "soiljax_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "Conventions": "CF-1.8",
    }


def _attr_value(v):
    if isinstance(v, (str, int, float, np.integer, np.floating)):
        return v
    if isinstance(v, bool):
        return int(v)
    return str(v)


def _model_attrs(model) -> dict:
    attrs = {"model": _model_name(model), "bedrock": str(getattr(model, "bedrock", ""))}
    for field in ("sand_dependent_transfers", "proda_enzyme_quirk"):
        if hasattr(model, field):
            attrs[field] = int(bool(getattr(model, field)))
    return attrs


def _broadcast_u(model, u, n: int) -> np.ndarray:
    u = np.asarray(u, dtype=float)
    if u.ndim == 1:
        u = np.broadcast_to(u, (n, u.shape[0]))
    if u.ndim != 2 or u.shape != (n, model.space.size):
        raise ValueError(
            f"{_model_name(model)} parameters must have shape ({model.space.size},) or ({n}, {model.space.size}); "
            f"got {u.shape} (a parameter file with one site is broadcast to all sites)"
        )
    return u


def _call_components(model, u, forcing, steady) -> dict:
    from ._diagnostics import system_components

    return system_components(model, u, forcing, steady)


# system_components builds a new vmapped function on every call; one cached
# jit around it compiles once per model configuration and batch shape.
_components = eqx.filter_jit(_call_components)


def results_dataset(
    model,
    u,
    forcing: Forcing,
    steady,
    *,
    sites: xr.Dataset | None = None,
    components: Mapping | None = None,
    attrs: Mapping | None = None,
) -> xr.Dataset:
    """Results of a batch of sites as an :class:`xarray.Dataset`.

    ``steady`` is the :class:`~soiljax.SteadyState` of ``model`` at ``u``
    (site, param) or (param,) and ``forcing`` (leading site axis).
    ``components`` (from :func:`soiljax.system_components`) are computed when
    not given.  ``sites`` (as returned by :func:`read_forcing`) provides the
    ``site`` labels and ``lat``/``lon``/``zone``.
    """
    from ._diagnostics import COMPONENT_LONG_NAMES, COMPONENT_UNITS, soc_stock

    if len(forcing.batch_shape) != 1:
        raise ValueError(f"results_dataset expects a forcing with one leading site axis, got {forcing.batch_shape}")
    n = forcing.batch_shape[0]
    u = _broadcast_u(model, u, n)
    if components is None:
        components = _components(model, u, forcing, steady)
    state = np.asarray(steady.state)
    soc = np.asarray(steady.soc)
    valid = np.asarray(steady.valid).astype(bool)
    data = {
        "state": (
            ("site", "pool", "layer"),
            state,
            {"units": "gC m-3", "long_name": "steady-state carbon per pool and layer"},
        ),
        "soc": (
            ("site", "layer"),
            soc,
            {"units": "gC m-3", "long_name": f"steady-state soil organic carbon ({'+'.join(model.pool_names[p] for p in model.soc_pools)})"},
        ),
        "valid": (
            ("site",),
            valid,
            {"long_name": "steady state accepted by PRODA's rule (1) or rejected (0)", "units": "1"},
        ),
        "rcond": (
            ("site",),
            np.asarray(steady.rcond),
            {"units": "1", "long_name": "reciprocal 1-norm condition number of the linear system solved"},
        ),
        "u": (("site", "param"), u, {"units": "1", "long_name": "scaled parameters used"}),
    }
    for depth in STOCK_DEPTHS:
        data[_stock_name(depth)] = (
            ("site",),
            np.asarray(soc_stock(soc, depth)),
            {"units": "kgC m-2", "long_name": f"SOC stock from the surface to {depth:g} m"},
        )
    for key, unit in COMPONENT_UNITS.items():
        data[key] = (("site",), np.asarray(components[key]), {"units": unit, "long_name": COMPONENT_LONG_NAMES.get(key, key)})
    coords = {
        "site": np.arange(n) if sites is None else np.asarray(sites["site"].values),
        "pool": ("pool", np.array(model.pool_names), {"long_name": "carbon pool"}),
        "layer": ("layer", np.arange(1, N_LAYERS + 1), {"long_name": "soil layer index (1 = top)"}),
        "z": ("layer", np.asarray(ZSOI), {"units": "m", "long_name": "node depth of the layer", "positive": "down"}),
        "dz": ("layer", np.asarray(DZ), {"units": "m", "long_name": "layer thickness"}),
        "z_bottom": ("layer", np.asarray(ZISOI), {"units": "m", "long_name": "depth of the layer's lower interface"}),
        "param": ("param", np.array(model.space.names), {"long_name": f"{model.space.model} parameter name"}),
    }
    if len(coords["site"]) != n:
        raise ValueError(f"sites has {len(coords['site'])} sites but the forcing has {n}")
    ds = xr.Dataset(data, coords=coords)
    if sites is not None:
        for key in sites.variables:
            if key != "site" and sites[key].dims == ("site",):
                ds = ds.assign_coords({key: ("site", np.asarray(sites[key].values), dict(sites[key].attrs))})
    ds.attrs.update(_provenance(f"soiljax {_model_name(model)} steady states"))
    ds.attrs.update(_model_attrs(model))
    if attrs:
        ds.attrs.update({k: _attr_value(v) for k, v in attrs.items()})
    return ds




def write_results(ds: xr.Dataset, path) -> Path:
    """Write a results dataset (from :func:`results_dataset`) atomically."""
    return _write(ds, path)


def read_results(path) -> xr.Dataset:
    """Read a result file into memory (``valid`` comes back as bool)."""
    ds = _open(path, "results", FileFormatError)
    if "valid" in ds:
        ds["valid"] = ds["valid"].astype(bool)
    return ds


def _hash_sites(h, sites: xr.Dataset | None) -> None:
    """Feed the per-site metadata that ends up in a result file (labels, lat/lon, other
    variables on ``site``) to the hash ``h``: a resumed run must not mix two sets of sites."""
    if sites is None:
        h.update(b"no sites")
        return
    for key in sorted(map(str, sites.variables)):
        if sites[key].dims != ("site",):
            continue
        values = np.asarray(sites[key].values)
        h.update(key.encode())
        h.update(str(values.dtype).encode())
        h.update(values.astype(str).tobytes() if values.dtype.kind in "OUSM" else np.ascontiguousarray(values).tobytes())


def _fingerprint(model, u: np.ndarray, forcing: Forcing, batch_size: int, sites=None, attrs=None) -> str:
    """Everything a result file is computed from or carries: model, parameters,
    forcing, batch size, site labels and coordinates, and the caller's attributes."""
    h = hashlib.sha256()
    h.update(repr(sorted(_model_attrs(model).items())).encode())
    h.update(str(batch_size).encode())
    h.update(np.ascontiguousarray(u).tobytes())
    for arr in forcing.variables().values():
        h.update(np.ascontiguousarray(np.asarray(arr)).tobytes())
    _hash_sites(h, sites)
    h.update(repr(sorted((str(k), str(v)) for k, v in (attrs or {}).items())).encode())
    return h.hexdigest()


def simulate_to_file(
    model,
    u,
    forcing: Forcing,
    path,
    *,
    sites: xr.Dataset | None = None,
    batch_size: int = 4096,
    progress: bool | Callable = False,
    resume: bool = True,
    attrs: Mapping | None = None,
) -> xr.Dataset:
    """Steady states, stocks and components of every site, written to ``path``.

    Sites are computed ``batch_size`` at a time; each batch is written to its
    own part file in ``<path>.parts/`` as soon as it is done, so an
    interrupted run loses at most one batch.  Calling again with the same
    inputs (``resume=True``) skips the batches already on disk; with other
    inputs it refuses (remove the folder or pass ``resume=False``, which
    starts over).  When every batch is done the parts are merged into
    ``path`` and the folder is removed.  Returns the merged dataset.

    ``progress=True`` shows a tqdm bar over batches; a callable is used as
    the wrapper (``progress(iterable, total=...)``).
    """
    from ._batch import batched_steady_state
    from ._parts import PartsMismatchError, run_in_parts

    if len(forcing.batch_shape) != 1:
        raise ValueError(f"simulate_to_file expects a forcing with one leading site axis, got {forcing.batch_shape}")
    n = forcing.batch_shape[0]
    u = _broadcast_u(model, u, n)
    batch_size = max(1, min(int(batch_size), n))
    n_batches = -(-n // batch_size)

    def compute(lo: int, hi: int) -> xr.Dataset:
        f_b, u_b = forcing[lo:hi], u[lo:hi]
        if hi - lo < batch_size and n_batches > 1:
            # pad the last batch to the common shape: one compiled program for every batch
            idx = np.concatenate([np.arange(lo, hi), np.full(batch_size - (hi - lo), hi - 1)])
            f_b, u_b = forcing[idx], u[idx]
        steady = batched_steady_state(model, u_b, f_b)
        comps = _components(model, u_b, f_b, steady)
        m = hi - lo
        steady = type(steady)(**{k: np.asarray(getattr(steady, k))[:m] for k in ("state", "soc", "valid", "rcond")})
        comps = {k: np.asarray(v)[:m] for k, v in comps.items()}
        sub_sites = None if sites is None else sites.isel(site=slice(lo, hi))
        ds = results_dataset(model, u[lo:hi], forcing[lo:hi], steady, sites=sub_sites, components=comps, attrs=attrs)
        if sites is None:
            ds = ds.assign_coords(site=np.arange(lo, hi))
        return ds

    def finalize(merged: xr.Dataset) -> xr.Dataset:
        merged["valid"] = merged["valid"].astype(bool)
        return merged

    try:
        return run_in_parts(path, n=n, batch_size=batch_size, fingerprint=_fingerprint(model, u, forcing, batch_size, sites, attrs),
                            compute=compute, write=_write, required="state", resume=resume, progress=progress,
                            desc=f"{_model_name(model)} batches", finalize=finalize)
    except PartsMismatchError as exc:
        raise FileFormatError(
            f"{str(parts_dir(path))!r} holds part files of a run with other inputs (forcing, parameters, model "
            "or batch size); remove that folder or start over with resume=False (--restart)"
        ) from exc


__all__ = [
    "ANNUAL_INPUT_HIGH",
    "ANNUAL_INPUT_MAX",
    "ANNUAL_INPUT_MIN",
    "FileFormatError",
    "ForcingFileError",
    "OutputError",
    "OutputLockedError",
    "OutputWriteError",
    "ParamsFileError",
    "PlausibilityWarning",
    "STOCK_DEPTHS",
    "forcing_dataset",
    "forcing_from_dataset",
    "netcdf_engine",
    "params_dataset",
    "params_from_dataset",
    "parts_dir",
    "read_forcing",
    "read_params",
    "read_results",
    "results_dataset",
    "simulate_to_file",
    "write_forcing",
    "write_params",
    "write_results",
]


# ---------------------------------------------------------------------------
# observation files
# ---------------------------------------------------------------------------


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
        q = _parse_unit(unit)
        if q is None:
            return 1.0, f"has units {unit!r}, which soiljax cannot interpret; depth must be in 'm' {_ANY_LENGTH}"
        if _units.is_dim(q, "[length]"):
            return _units.factor(q, "m"), None
        return 1.0, f"has units {unit!r}, which is not a length; depth must be in 'm' {_ANY_LENGTH}"
    q = _parse_unit(unit, carbon=True)
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
    coords: dict = {"site": _site_labels(n, site_id)}
    return _site_dataset(data, coords, n, lat=lat, lon=lon, sites=sites, skip=data,
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
    return _write(observations_dataset(obs, site_id, attrs, lat=lat, lon=lon, sites=sites), path)


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
                f"soc (site, obs) in gC m-3 (soc_sd optional)" + _case_hint(ds, name)
            )
    single = "site" not in ds.dims
    if not single:
        _check_sites(ds.sizes["site"], _labels_of(ds), source, ObservationFileError, "observation")
    depth = _obs_values(ds, "depth", single, source)
    soc = _obs_values(ds, "soc", single, source)
    sd = _obs_values(ds, "soc_sd", single, source) if "soc_sd" in ds.variables else None
    if single:
        ds = ds.expand_dims(site=1)
    labels = _labels_of(ds)
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
    ds = _open(path, "observation", ObservationFileError)
    return observations_from_dataset(
        ds, source=f"observation file {str(path)!r}", min_layers=min_layers, check_units=check_units,
        check_plausible=check_plausible,
    )


__all__ += [
    "OBSERVATION_UNITS",
    "ObservationFileError",
    "observations_dataset",
    "observations_from_dataset",
    "read_observations",
    "write_observations",
]
