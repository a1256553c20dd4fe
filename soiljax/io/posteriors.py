"""Posterior files: the summaries and diagnostics of a calibration, per site.

The variables (``u_mean``, ``rhat``, ``nse``, ``accepted``, ...) are those of
:func:`soiljax.calibration.summarize`, listed in
:mod:`soiljax.calibration._summary`.  On disk the flags ``accepted``,
``valid_mean`` and ``start_ok`` are stored as int8; they come back as bool.
:func:`write_posterior`, :func:`read_posterior` (both also in
:mod:`soiljax.calibration`).
"""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from ._netcdf import FileFormatError, open_dataset, write_dataset

_FLAGS = ("accepted", "valid_mean", "start_ok")


def write_posterior(ds: xr.Dataset, path) -> Path:
    """Write a posterior dataset atomically (booleans stored as int8)."""
    out = ds.copy()
    for name in _FLAGS:
        if name in out:
            out[name] = out[name].astype("int8")
    return write_dataset(out, path)


def read_posterior(path) -> xr.Dataset:
    """Read a posterior file written by :func:`soiljax.calibration.calibrate` (flags back as bool)."""
    ds = open_dataset(path, "posterior", FileFormatError)
    for name in _FLAGS:
        if name in ds:
            ds[name] = ds[name].astype(bool)
    return ds


__all__ = ["read_posterior", "write_posterior"]
