"""The netCDF base every soiljax file goes through: engine, open, write, attributes, units.

An internal module: its names are public so that the file modules of
:mod:`soiljax.io` and the other packages that write or read their own files
(calibration posteriors, learning maps, world directories, the command line)
share one way of doing it.  Users read and write files with the functions of
:mod:`soiljax.io`.

:func:`netcdf_engine`
    the xarray engine for writing (h5netcdf, else netCDF4).
:func:`open_dataset`
    read a whole file into memory; a missing, unreadable or non-netCDF file
    raises the caller's :class:`FileFormatError` subclass naming the file.
:func:`write_dataset`
    write atomically (a hidden temporary file, then a rename), the file made
    in memory first so that a full disk is a one-line
    :class:`OutputWriteError`, never a crash.
:func:`provenance`, :func:`attr_value`, :func:`model_name`, :func:`model_attrs`
    the global attributes soiljax files carry.
:func:`parse_unit`
    a ``units`` attribute as a pint quantity (:mod:`soiljax._units`), or None.

It also holds the errors shared by every file kind: :class:`FileFormatError`
and the output errors; each file module adds its own subclass.
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
from pathlib import Path

import numpy as np
import xarray as xr

from .. import _units


class FileFormatError(ValueError):
    """A file is missing, unreadable, or does not have the expected content."""


class OutputError(FileFormatError):
    """An output file cannot be written: its path is a folder, its folder cannot be written, ..."""


class OutputWriteError(OutputError):
    """Writing an output file failed (a full disk, a quota, no permission); nothing half-written is left."""


class OutputLockedError(OutputError):
    """Another run is writing the same output (its lock file names it)."""


# ---------------------------------------------------------------------------
# engine, open, write
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


def open_dataset(path, kind: str, error: type[Exception]) -> xr.Dataset:
    """The whole netCDF file ``path``, loaded into memory (the file is closed again).

    Tries :func:`netcdf_engine` first, then the other engines.  A missing
    path, a folder or a file no engine can read raises ``error`` with a
    one-line message naming the ``kind`` of file (``"forcing"``,
    ``"posterior"``, ...) and the path.
    """
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


def write_dataset(ds: xr.Dataset, path, encoding=None) -> Path:
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
# global attributes
# ---------------------------------------------------------------------------


def provenance(title: str) -> dict:
    """The global attributes every soiljax file starts with: title, version, creation time, conventions."""
    from .. import __version__

    return {
        "title": title,
        "soiljax_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "Conventions": "CF-1.8",
    }


def attr_value(v):
    """``v`` as a netCDF attribute: strings and numbers as they are, booleans as 0/1, anything else as text."""
    if isinstance(v, (str, int, float, np.integer, np.floating)):
        return v
    if isinstance(v, bool):
        return int(v)
    return str(v)


def model_name(model) -> str:
    """The name of a model in file attributes and messages: its class name (``CLM5``, ``COMPAS``)."""
    return type(model).__name__


def model_attrs(model) -> dict:
    """A model's options as file attributes: ``model``, ``bedrock`` and its boolean switches (0/1)."""
    attrs = {"model": model_name(model), "bedrock": str(getattr(model, "bedrock", ""))}
    for field in ("sand_dependent_transfers", "proda_enzyme_quirk"):
        if hasattr(model, field):
            attrs[field] = int(bool(getattr(model, field)))
    return attrs


# ---------------------------------------------------------------------------
# units
# ---------------------------------------------------------------------------


def parse_unit(unit, *, carbon: bool = False):
    """The pint quantity of a units attribute (see :mod:`soiljax._units`), or None if pint cannot read it."""
    try:
        return _units.parse(unit, carbon=carbon)
    except _units.UnitParseError:
        return None
