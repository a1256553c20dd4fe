"""Map files: the global prediction maps of a trained learner, one file per model.

A map file holds the :data:`MAP_VARIABLES` over (lat, lon), each with a
``units`` attribute (:data:`MAP_UNITS`), and whatever else the map dataset of
:func:`soiljax.learning.predict_maps` carries (``u``, ``theta``, ``soc``,
``valid``, ``land``, ...; see :mod:`soiljax.learning._maps`).  Float
variables are compressed (zlib); the flags ``valid``, ``land`` and
``predicted`` come back as bool.  :func:`write_maps`, :func:`read_maps` and
:func:`check_maps` (all three also in :mod:`soiljax.learning`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from .._diagnostics import COMPONENT_UNITS
from ._netcdf import FileFormatError, open_dataset, write_dataset

MAP_VARIABLES: tuple[str, ...] = (
    "soc_stock_0_30",
    "soc_stock_0_100",
    "cte",
    "k_bulk",
    "xi_system",
    "v_system",
    "b_system",
    "plant_input",
)
"""The map variables every map dataset and file holds, each over (lat, lon)."""

MAP_UNITS = {"soc_stock_0_30": "kgC m-2", "soc_stock_0_100": "kgC m-2", **COMPONENT_UNITS}
"""Units of the :data:`MAP_VARIABLES`."""


class MapsError(ValueError):
    """Inputs of the map functions do not fit together (names, shapes, grids)."""


def check_maps(ds: xr.Dataset, what: str = "maps") -> None:
    """Raise :class:`MapsError` unless ``ds`` holds the :data:`MAP_VARIABLES` over (lat, lon) with units."""
    missing = [v for v in MAP_VARIABLES if v not in ds.data_vars]
    if missing:
        raise MapsError(
            f"{what} lack the map variable(s) {', '.join(missing)}; map datasets come from predict_maps or to_grid"
        )
    for v in MAP_VARIABLES:
        if ds[v].dims != ("lat", "lon"):
            raise MapsError(f"{what}: {v} must have dims ('lat', 'lon'), got {ds[v].dims}")
        if "units" not in ds[v].attrs:
            raise MapsError(f"{what}: {v} has no units attribute (expected {MAP_UNITS[v]!r})")


def write_maps(ds: xr.Dataset, path) -> Path:
    """Write a map dataset to netCDF atomically (temporary file, then rename); returns the path.

    Float variables are compressed (zlib); units and attributes are kept.
    """
    check_maps(ds)
    encoding = {
        name: {"zlib": True, "complevel": 4}
        for name, var in ds.data_vars.items()
        if np.issubdtype(var.dtype, np.floating)
    }
    return write_dataset(ds, path, encoding=encoding)


def read_maps(path) -> xr.Dataset:
    """Read a map file written by :func:`write_maps` (into memory; ``valid`` and ``land`` as bool)."""
    ds = open_dataset(path, "maps", FileFormatError)
    for key in ("valid", "land", "predicted"):
        if key in ds.variables and ds[key].dtype != bool:
            ds[key] = ds[key].astype(bool)
    check_maps(ds, what=f"maps file {str(path)!r}")
    return ds


__all__ = ["MAP_UNITS", "MAP_VARIABLES", "MapsError", "check_maps", "read_maps", "write_maps"]
