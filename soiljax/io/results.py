"""Result files: steady states, SOC stocks and system components of each site.

``state`` (site, pool, layer) and ``soc`` (site, layer) in gC m-3, ``valid``,
``rcond``, the parameters ``u``, SOC stocks to 0.3, 1 and 2 m (kgC m-2,
``soc_stock_0_30`` ...) and the six system-level components of
:func:`soiljax.system_components`.  :func:`soiljax.io.results_dataset`
builds one in memory and :func:`soiljax.simulate_to_file` computes and
writes one batch by batch (both live in :mod:`soiljax._simulate`: they
compute); :func:`write_results`, :func:`read_results`.
"""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from ._netcdf import FileFormatError, open_dataset, write_dataset

STOCK_DEPTHS: tuple[float, ...] = (0.3, 1.0, 2.0)
"""Depths (m) of the SOC stocks in result files (``soc_stock_0_30`` ...)."""


def stock_name(depth: float) -> str:
    """The result-file variable of the SOC stock to ``depth`` m: ``soc_stock_0_30`` for 0.3."""
    return f"soc_stock_0_{int(round(depth * 100))}"


def write_results(ds: xr.Dataset, path) -> Path:
    """Write a results dataset (from :func:`results_dataset`) atomically."""
    return write_dataset(ds, path)


def read_results(path) -> xr.Dataset:
    """Read a result file into memory (``valid`` comes back as bool)."""
    ds = open_dataset(path, "results", FileFormatError)
    if "valid" in ds:
        ds["valid"] = ds["valid"].astype(bool)
    return ds


__all__ = ["STOCK_DEPTHS", "read_results", "write_results"]
