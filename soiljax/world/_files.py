"""World files: :func:`write_world` and :func:`read_world` (the "Files" section of :mod:`soiljax.world`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from ._container import World
from ._hidden import model_instance, model_key


WORLD_FILES = ("grid.nc", "cells.nc", "cell_forcing.nc", "sites.nc", "site_forcing.nc")
"""Files of a world directory besides obs_<model>.nc and truth_<model>.nc (one pair per model)."""


def write_world(world: World, directory) -> None:
    """Write ``world`` to netCDF files in ``directory`` (created if needed).

    ``grid.nc`` (the grid dataset), ``cells.nc``, ``cell_forcing.nc`` (forcing
    file of the land cells, :func:`soiljax.write_forcing`, its ``site``
    labels are the cell indices), ``sites.nc``, ``site_forcing.nc``, and for
    each model ``obs_<model>.nc`` (:func:`soiljax.write_observations`) and
    ``truth_<model>.nc`` (``u_true`` (site, param), ``valid`` (site) and
    ``cell_u_true`` (cell, param), with the model's parameter names as the
    ``param`` coordinate).  Existing files of the same names are replaced.
    """
    from ..io import write_forcing, write_observations
    from ..io._netcdf import write_dataset

    if not isinstance(world, World):
        raise TypeError(f"write_world needs a World (from synthetic_world or read_world), got {type(world).__name__}")
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{str(out)!r} is a file; write_world needs a directory (it writes several files)")
    out.mkdir(parents=True, exist_ok=True)
    attrs = dict(world.grid.attrs)
    write_dataset(world.grid, out / "grid.nc")
    write_dataset(world.cells, out / "cells.nc")
    cells, sites = world.cells, world.sites
    write_forcing(world.cell_forcing, out / "cell_forcing.nc", lat=cells["lat"].values, lon=cells["lon"].values,
                  site_id=cells["cell"].values,
                  attrs=attrs | {"title": "soiljax synthetic world: forcing of the land cells"})
    write_dataset(sites, out / "sites.nc")
    site_id = sites["site"].values
    write_forcing(world.site_forcing, out / "site_forcing.nc", lat=sites["lat"].values, lon=sites["lon"].values,
                  site_id=site_id, attrs=attrs | {"title": "soiljax synthetic world: forcing of the sites"})
    for key in world.models:
        write_observations(world.observations[key], out / f"obs_{key}.nc", site_id=site_id, lat=sites["lat"].values,
                           lon=sites["lon"].values, attrs=attrs | {"model": key})
        names = np.array(world.param_names(key))
        truth = xr.Dataset(
            {
                "u_true": (("site", "param"), world.u_true[key],
                           {"units": "1", "long_name": "true scaled parameters"}),
                "valid": ("site", world.valid[key].astype(np.int8),
                          {"long_name": "steady state of the truth is valid (1) or not (0)"}),
                "cell_u_true": (("cell", "param"), world.cell_u_true[key],
                                {"units": "1", "long_name": "true scaled parameters of the land cells"}),
            },
            coords={
                "site": site_id,
                "cell": cells["cell"].values,
                "param": ("param", names, {"long_name": "parameter name"}),
            },
            attrs=attrs | {"model": key},
        )
        write_dataset(truth, out / f"truth_{key}.nc")


def read_world(directory) -> World:
    """Read a world written by :func:`write_world`."""
    from ..io import FileFormatError, read_forcing, read_observations
    from ..io._netcdf import open_dataset

    path = Path(directory)
    if not path.is_dir():
        raise FileNotFoundError(
            f"world directory {str(path)!r} does not exist; write one with soiljax.world.write_world"
        )
    missing = [f for f in WORLD_FILES if not (path / f).exists()]
    if missing:
        raise FileNotFoundError(
            f"{str(path)!r} is not a complete world directory: {', '.join(missing)} missing "
            "(write_world writes grid.nc, cells.nc, cell_forcing.nc, sites.nc, site_forcing.nc, obs_<model>.nc "
            "and truth_<model>.nc)"
        )
    grid = open_dataset(path / "grid.nc", "world grid", FileFormatError)
    grid["land"] = grid["land"].astype(bool)
    keys = [k for k in str(grid.attrs.get("models", "")).split(",") if k]
    missing = [f"{kind}_{k}.nc" for k in keys for kind in ("obs", "truth") if not (path / f"{kind}_{k}.nc").exists()]
    if missing:
        raise FileNotFoundError(
            f"world directory {str(path)!r} lacks {', '.join(missing)} (grid.nc lists the models {keys})"
        )
    cells = open_dataset(path / "cells.nc", "world cells", FileFormatError)
    sites = open_dataset(path / "sites.nc", "world sites", FileFormatError)
    cell_forcing, _ = read_forcing(path / "cell_forcing.nc")
    site_forcing, _ = read_forcing(path / "site_forcing.nc")
    u_true, cell_u, observations, valid = {}, {}, {}, {}
    for key in keys:
        obs, _ = read_observations(path / f"obs_{key}.nc", min_layers=0, check_units=False)
        truth = open_dataset(path / f"truth_{key}.nc", f"world truth of {key}", FileFormatError)
        names = list(model_instance(model_key(key)).param_names)
        have = [str(p) for p in truth["param"].values]
        if sorted(have) != sorted(names):
            raise FileFormatError(
                f"truth_{key}.nc holds parameters {have}, expected the {key} parameters {names}; was it written "
                "by write_world?"
            )
        truth = truth.sel(param=names)
        u_true[key] = np.asarray(truth["u_true"].values, dtype=float)
        cell_u[key] = np.asarray(truth["cell_u_true"].values, dtype=float)
        valid[key] = np.asarray(truth["valid"].values).astype(bool)
        observations[key] = obs
    return World(grid, cells, cell_forcing, sites, site_forcing, u_true, cell_u, observations, valid)
