"""Global prediction maps of a trained learner and the CLM5-vs-COMPAS comparison (paper Figures 2c, 4).

PRODA's last step applies the learned covariate -> parameter map to every grid
cell and solves the model to steady state there.  Here::

    from soiljax import learning as lrn
    maps = lrn.predict_maps(learner, world)          # world: soiljax.world.World or a write_world directory
    lrn.write_maps(maps, "maps_clm5.nc")
    cmp = lrn.compare_models(maps_clm5, maps_compas) # Pearson r of log SOC and of the six components
    print(lrn.format_comparison(cmp))

:func:`predict_cells` works on the land cells (dim ``cell``) and
:func:`to_grid` scatters the cells onto the world's (lat, lon) grid;
:func:`predict_maps` does both.  A map dataset (one per model) holds

``soc_stock_0_30``, ``soc_stock_0_100`` (lat, lon), kgC m-2
    SOC stock from the surface to 0.3 m and 1 m (:func:`soiljax.soc_stock`).
``cte``, ``k_bulk``, ``xi_system``, ``v_system``, ``b_system``, ``plant_input`` (lat, lon)
    the six system-level components of the paper, units as
    :data:`soiljax.COMPONENT_UNITS` (1, yr-1, 1, yr-1, 1, gC m-2 yr-1).
``u``, ``theta`` (param, lat, lon)
    predicted scaled parameters (ensemble mean, clipped to [1e-6, 1] as
    PRODA does) and their physical values (units in the ``param_units``
    coordinate); ``u_sd`` (param, lat, lon), the spread (standard deviation)
    of the ensemble members' predictions, when the learner is an ensemble.
``soc`` (layer, lat, lon), gC m-3
    the steady-state SOC profile.
``valid`` (lat, lon) bool, ``land`` (lat, lon) bool
    steady state accepted by the model's validity rule; land cell.

Every value is NaN over the ocean and at land cells whose steady state is
invalid (or whose covariates are missing): never zeros.  Global attributes
say which model (``model``), how many cells are invalid (``n_invalid``,
``n_cells``, ``valid_fraction``) and summarise the learner (``learner``,
``learner_method``, ``learner_metadata`` as JSON).  The eight names of
:data:`MAP_VARIABLES` are a contract of the map files (their format: :mod:`soiljax.io.maps`).

A learner that predicts only some of the model's parameters gets the model's
default u for the others (listed in the attribute ``params_from_default``; the
``predicted`` coordinate of ``param`` marks which were predicted).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .._batch import batched_steady_state
from .._engine import batch_size_for, bounds, run_batches, take
from .._diagnostics import COMPONENT_LONG_NAMES, COMPONENT_UNITS, soc_stock, system_components
from .._grid import DZ, N_LAYERS, ZISOI, ZSOI
from ..io._netcdf import model_attrs as simulation_attrs
from ..io._netcdf import open_dataset
from ..io.maps import MAP_UNITS, MAP_VARIABLES, MapsError, check_maps, read_maps, write_maps
from ._learner import Learner, model_name_of
from ._network import U_EPS

STOCK_DEPTHS = {"soc_stock_0_30": 0.3, "soc_stock_0_100": 1.0}
"""Stock variable -> depth (m) it is integrated to."""

LONG_NAMES = {
    "soc_stock_0_30": "SOC stock from the surface to 0.3 m",
    "soc_stock_0_100": "SOC stock from the surface to 1 m",
    **COMPONENT_LONG_NAMES,
}
"""Long names of the :data:`MAP_VARIABLES`."""

LOG_IF_POSITIVE = ("k_bulk", "v_system")
"""Components that :func:`compare_models` correlates as log10 when they are positive in every compared cell."""

EARTH_RADIUS_KM = 6371.0


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _metadata_summary(learner: Learner, max_list: int = 16) -> dict:
    """The learner's metadata with long lists replaced by a note (netCDF attributes stay small)."""

    def shorten(v):
        if isinstance(v, dict):
            return {k: shorten(x) for k, x in v.items()}
        if isinstance(v, list) and len(v) > max_list:
            return f"<list of {len(v)} values>"
        return v

    return shorten(learner.metadata)


def _learner_attrs(learner: Learner) -> dict:
    md = learner.metadata
    return {
        "learner": repr(learner),
        "learner_method": str(md.get("method", "unknown")),
        "learner_members": int(learner.n_members),
        "learner_hidden": ",".join(str(h) for h in learner.hidden),
        "learner_n_covariates": int(learner.n_in),
        "learner_covariates": ",".join(learner.covariate_names),
        "learner_metadata": json.dumps(_metadata_summary(learner), sort_keys=True, default=str),
    }


def _model_attrs(model) -> dict:
    """The model's options as file attributes (those of simulation files), named as the learners name it."""
    return {**simulation_attrs(model), "model": model_name_of(model)}


def _covariates_for(learner: Learner, covariates, what: str = "covariates") -> np.ndarray:
    """(n, n_in) covariates in the learner's order; named inputs are selected by name."""
    names = list(learner.covariate_names)
    if isinstance(covariates, xr.Dataset) and "covariates" in covariates.data_vars:
        covariates = covariates["covariates"]
    if isinstance(covariates, xr.DataArray) and "covariate" in covariates.dims:
        have = [str(c) for c in covariates["covariate"].values]
        missing = [n for n in names if n not in have]
        if missing:
            raise MapsError(
                f"{what} lack {len(missing)} covariate(s) the learner was trained on: {', '.join(missing)} "
                f"(they have {len(have)}: {', '.join(have[:8])}{', ...' if len(have) > 8 else ''}); "
                "predict with a learner trained on these covariates, or add the missing ones"
            )
        other = [d for d in covariates.dims if d != "covariate"]
        if len(other) != 1:
            raise MapsError(f"{what} must have one cell dimension besides 'covariate', got dims {covariates.dims}")
        return np.asarray(covariates.sel(covariate=names).transpose(other[0], "covariate").values, dtype=float)
    if isinstance(covariates, xr.Dataset) or isinstance(covariates, dict):
        missing = [n for n in names if n not in covariates]
        if missing:
            raise MapsError(
                f"{what} lack {len(missing)} covariate(s) the learner was trained on: {', '.join(missing)}; "
                "predict with a learner trained on these covariates, or add the missing ones"
            )
        return np.stack([np.asarray(covariates[n], dtype=float).reshape(-1) for n in names], axis=-1)
    x = np.asarray(covariates, dtype=float)
    if x.ndim != 2 or x.shape[1] != learner.n_in:
        raise MapsError(
            f"{what} must be an array (cell, {learner.n_in}) with columns in the learner's covariate order "
            f"({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}), got shape {x.shape}; or pass a "
            "DataArray with a 'covariate' coordinate to select them by name"
        )
    return x


class _CellJob:
    """Steady-state SOC, validity and components of cells ``lo:hi`` (``job(lo, hi, report)``), as a
    dataset along ``site``; pickles, so that Dask workers can run it."""

    def __init__(self, model, u, forcing, batch_size: int, mesh=None, offset: int = 0):
        self.model, self.u, self.forcing, self.batch_size, self.mesh = model, u, forcing, batch_size, mesh
        self.offset = offset  # index of the first cell held (a part holds only its batch's cells)

    def part(self, lo: int, hi: int) -> "_CellJob":
        """A copy holding only the cells ``lo:hi`` (what one task on a Dask worker needs), called as this job."""
        a, b = lo - self.offset, hi - self.offset
        return _CellJob(self.model, self.u[a:b], self.forcing[a:b], self.batch_size, self.mesh, offset=lo)

    def __getstate__(self):  # host arrays and no devices: what a worker process can take
        return {**self.__dict__, "forcing": jax.tree_util.tree_map(np.asarray, self.forcing), "mesh": None}

    def __call__(self, lo: int, hi: int, report=None) -> xr.Dataset:
        m = hi - lo
        lo, hi = lo - self.offset, hi - self.offset
        u, f = take((self.u, self.forcing), lo, hi, self.batch_size)  # padded: one compiled program
        steady = batched_steady_state(self.model, u, f, batch_size=self.batch_size, mesh=self.mesh)
        comp = {k: np.asarray(v)[:m] for k, v in system_components(self.model, u, f, steady).items()}
        soc, valid = np.asarray(steady.soc)[:m], np.asarray(steady.valid)[:m]
        data = {"soc": (("site", "layer"), soc), "valid": ("site", np.asarray(valid).astype(bool))}
        data.update({k: ("site", np.asarray(v)) for k, v in comp.items()})
        return xr.Dataset(data)


# ---------------------------------------------------------------------------
# prediction on cells
# ---------------------------------------------------------------------------


def predict_cells(
    learner: Learner,
    covariates,
    forcing,
    *,
    model=None,
    cells: xr.Dataset | None = None,
    batch_size: int | None = None,
    mesh=None,
    progress: bool = False,
    client=None,
) -> xr.Dataset:
    """Predicted parameters, steady states, stocks and components of every cell.

    Parameters
    ----------
    learner:
        A trained (or untrained) :class:`Learner`.
    covariates:
        The cells' raw covariates: an array (cell, covariate) in the order of
        ``learner.covariate_names``, or a DataArray with a ``covariate``
        coordinate (or a dataset with a ``covariates`` variable, such as
        ``world.cells``) from which the learner's covariates are selected by
        name.  Rows with NaN covariates give NaN and ``valid`` False.
    forcing:
        :class:`soiljax.Forcing` with one leading cell axis, one row per
        covariate row.
    model:
        The model to solve; by default ``learner.make_model()``.  It must be
        the learner's kind.
    cells:
        Optional cell dataset (``world.cells``) whose per-cell variables
        ``lat``, ``lon``, ``i_lat``, ``i_lon``, ``area`` become coordinates.
    batch_size:
        Cells per compiled call (default: 512 on CPU, all cells on an
        accelerator); every chunk reuses one compiled program.
    mesh:
        Optional ``jax.sharding.Mesh`` with a ``"site"`` axis (see
        :func:`soiljax.site_mesh`).
    progress:
        Show a tqdm progress bar over the cells.
    client:
        A ``distributed.Client``: the batches of cells are solved on that Dask
        cluster (:mod:`soiljax._dask`) instead of in this process.

    Returns
    -------
    xarray.Dataset with dim ``cell`` (and ``param``, ``layer``):
    ``u``, ``theta`` (cell, param), ``u_sd`` (cell, param, ensembles only),
    ``valid`` (cell) bool, ``soc`` (cell, layer) gC m-3, and the
    :data:`MAP_VARIABLES` (cell) with ``units`` attributes.  Cells with an
    invalid steady state hold NaN in ``soc``, the stocks and the components
    (their ``u`` and ``theta`` are kept).  Attributes: ``model``,
    ``n_cells``, ``n_valid``, ``n_invalid``, ``valid_fraction``,
    ``n_missing_covariates`` and the learner summary.
    """
    if not isinstance(learner, Learner):
        raise TypeError(f"predict_cells needs a soiljax.learning.Learner, got {type(learner).__name__}")
    if model is None:
        model = learner.make_model()
    elif model_name_of(model) != learner.model_name:
        raise MapsError(
            f"the learner predicts {learner.model_name} parameters but the model is {model_name_of(model)}; "
            "pass model=None to use learner.make_model()"
        )
    x = _covariates_for(learner, covariates)
    n = x.shape[0]
    if n < 1:
        raise MapsError("no cells to predict: the covariates have 0 rows")
    if tuple(forcing.batch_shape) != (n,):
        raise MapsError(
            f"the covariates have {n} rows but the forcing has batch shape {tuple(forcing.batch_shape)}; "
            "give one forcing row per cell, in the same order"
        )
    names = tuple(model.param_names)
    space = model.space
    missing_x = ~np.all(np.isfinite(x), axis=1)

    # --- parameters ----------------------------------------------------------------
    members = learner.predict_u_members(x, allow_nan=True)
    u_pred = np.asarray(jnp.clip(jnp.mean(members, axis=0), U_EPS, 1.0))  # = learner.predict_u
    cols = [names.index(p) for p in learner.param_names]
    from_default = [p for p in names if p not in learner.param_names]
    u = np.array(np.broadcast_to(np.asarray(model.default_u(), dtype=float), (n, len(names))))
    u[:, cols] = u_pred
    u[missing_x] = np.nan
    u_sd = None
    if learner.n_members > 1:
        u_sd = np.full((n, len(names)), np.nan)
        u_sd[:, cols] = np.std(np.asarray(members), axis=0, ddof=1)
        u_sd[missing_x] = np.nan
    u_solve = np.where(missing_x[:, None], np.asarray(model.default_u(), dtype=float)[None, :], u)

    # --- steady states and components, batch by batch (one compiled program) --------
    chunk = batch_size_for(n, batch_size, mesh)
    batches = bounds(n, chunk)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=f"{learner.model_name} maps", unit="cell")
    try:
        solved = run_batches(_CellJob(model, u_solve, forcing, chunk, mesh=mesh), n, chunk, client=client,
                             batch_done=None if bar is None else (lambda i: bar.update(batches[i][2] - batches[i][1])))
    finally:
        if bar is not None:
            bar.close()
    soc = np.array(solved["soc"].values, dtype=float)
    valid = np.array(solved["valid"].values, dtype=bool)
    comps = {k: np.array(solved[k].values, dtype=float) for k in COMPONENT_UNITS}
    valid &= ~missing_x
    stocks = {k: np.array(soc_stock(soc, d)) for k, d in STOCK_DEPTHS.items()}
    bad = ~valid
    soc[bad] = np.nan
    for v in (*stocks.values(), *comps.values()):
        v[bad] = np.nan
    theta = np.asarray(space.to_physical(u))

    # --- dataset -----------------------------------------------------------------
    data = {
        "u": (("cell", "param"), u,
              {"units": "1", "long_name": "predicted scaled parameter (0 = lower bound, 1 = upper bound)"}),
        "theta": (("cell", "param"), theta, {"long_name": "predicted physical parameter value (units in param_units)"}),
        "valid": ("cell", valid, {"long_name": "steady state valid (model's rule) and covariates complete"}),
        "soc": (("cell", "layer"), soc, {"units": "gC m-3", "long_name": "steady-state soil organic carbon per layer"}),
    }
    if u_sd is not None:
        data["u_sd"] = (
            ("cell", "param"),
            u_sd,
            {"units": "1", "long_name": f"standard deviation of u over the {learner.n_members} ensemble members"},
        )
    for key in MAP_VARIABLES:
        values = stocks[key] if key in stocks else comps[key]
        data[key] = ("cell", values, {"units": MAP_UNITS[key], "long_name": LONG_NAMES[key]})
    coords = {
        "cell": ("cell", np.arange(n), {"long_name": "index of the land cell"}),
        "param": ("param", np.array(names), {"long_name": f"{space.model} parameter name"}),
        "param_units": ("param", np.array(space.units)),
        "predicted": ("param", np.array([p in learner.param_names for p in names]),
                      {"long_name": "predicted by the learner (else the model's default)"}),
        "layer": ("layer", np.arange(1, N_LAYERS + 1), {"long_name": "soil layer index (1 = top)"}),
        "z": ("layer", np.asarray(ZSOI), {"units": "m", "long_name": "node depth of the layer", "positive": "down"}),
        "dz": ("layer", np.asarray(DZ), {"units": "m", "long_name": "layer thickness"}),
        "z_bottom": ("layer", np.asarray(ZISOI), {"units": "m", "long_name": "depth of the layer's lower interface"}),
    }
    if cells is not None:
        if cells.sizes.get("cell") != n:
            raise MapsError(f"cells has {cells.sizes.get('cell')} cells but the covariates have {n} rows")
        coords["cell"] = ("cell", np.asarray(cells["cell"].values) if "cell" in cells.coords else np.arange(n),
                          {"long_name": "index of the land cell"})
        for key in ("lat", "lon", "i_lat", "i_lon", "area"):
            if key in cells.variables and cells[key].dims == ("cell",):
                coords[key] = ("cell", np.asarray(cells[key].values), dict(cells[key].attrs))
    ds = xr.Dataset(data, coords=coords)
    n_valid = int(valid.sum())
    ds.attrs.update(
        title=f"soiljax {learner.model_name} predictions on land cells",
        **_model_attrs(model),
        n_cells=n,
        n_valid=n_valid,
        n_invalid=n - n_valid,
        valid_fraction=n_valid / n,
        n_missing_covariates=int(missing_x.sum()),
        params_from_default=",".join(from_default),
        **_learner_attrs(learner),
    )
    return ds


# ---------------------------------------------------------------------------
# cells -> grid
# ---------------------------------------------------------------------------


def to_grid(cells_ds: xr.Dataset, grid) -> xr.Dataset:
    """Scatter the per-cell results of :func:`predict_cells` onto the (lat, lon) grid.

    ``grid`` is the world's grid dataset (``world.grid``, or the World
    itself): its ``cell`` variable (lat, lon) holds the index of the land
    cell in the cell axis, -1 over the ocean.  Every variable of
    ``cells_ds`` whose first dimension is ``cell`` becomes a map: (cell,) ->
    (lat, lon), (cell, X) -> (X, lat, lon).  Float values are NaN over the
    ocean, ``valid`` is False there; ``land`` (lat, lon) is added.  The
    ``param`` and ``layer`` coordinates and all attributes are kept, plus the
    grid's ``resolution`` and ``seed`` (as ``world_resolution``,
    ``world_seed``).
    """
    if hasattr(grid, "grid") and isinstance(getattr(grid, "grid"), xr.Dataset):
        grid = grid.grid
    if not isinstance(grid, xr.Dataset) or "cell" not in grid.data_vars:
        raise MapsError("grid must be a world grid dataset with a 'cell' variable (lat, lon) (world.grid)")
    index = np.asarray(grid["cell"].transpose("lat", "lon").values).astype(np.int64)
    land = index >= 0
    i_lat, i_lon = np.nonzero(land)
    cell_of = index[land]
    n = cells_ds.sizes.get("cell")
    if n is None:
        raise MapsError("cells_ds has no 'cell' dimension; pass the result of predict_cells")
    if cell_of.size != n or (n and (cell_of.min() != 0 or cell_of.max() != n - 1)):
        raise MapsError(
            f"the grid has {cell_of.size} land cells (indices {cell_of.min() if cell_of.size else '-'}.."
            f"{cell_of.max() if cell_of.size else '-'}) but cells_ds has {n} cells; use the grid of the world "
            "whose cells were predicted"
        )
    for key, axis in (("i_lat", i_lat), ("i_lon", i_lon)):
        if key in cells_ds.coords or key in cells_ds.data_vars:
            got = np.asarray(cells_ds[key].values)[cell_of]
            if not np.array_equal(got, axis):
                raise MapsError(
                    f"cells_ds's {key} do not match the grid's cell index map; use the grid of the world whose "
                    "cells were predicted"
                )
    shape = land.shape
    data = {}
    for name, var in cells_ds.data_vars.items():
        if not var.dims or var.dims[0] != "cell":
            continue
        values = np.asarray(var.values)
        rest = values.shape[1:]
        if values.dtype == bool:
            out = np.zeros(shape + rest, dtype=bool)
        else:
            out = np.full(shape + rest, np.nan, dtype=float)
        out[i_lat, i_lon] = values[cell_of]
        out = np.moveaxis(out, (0, 1), (-2, -1)) if rest else out
        data[name] = (var.dims[1:] + ("lat", "lon"), out, dict(var.attrs))
    data["land"] = (("lat", "lon"), land, {"long_name": "land cell"})
    coords = {"lat": grid["lat"], "lon": grid["lon"]}
    for name, c in cells_ds.coords.items():
        if "cell" not in c.dims:
            coords[name] = c
    ds = xr.Dataset(data, coords=coords, attrs=dict(cells_ds.attrs))
    ds.attrs["title"] = f"soiljax {ds.attrs.get('model', '')} prediction maps".replace("  ", " ")
    for key in ("resolution", "seed"):
        if key in grid.attrs:
            ds.attrs[f"world_{key}"] = grid.attrs[key]
    return ds


def _world_parts(world):
    """(grid, cells, cell_forcing) of a World, a write_world directory or such a triple."""
    from ..world import World

    if isinstance(world, World):
        return world.grid, world.cells, world.cell_forcing
    if isinstance(world, (tuple, list)) and len(world) == 3:
        return tuple(world)
    if isinstance(world, (str, Path)):
        from ..io import FileFormatError, read_forcing

        path = Path(world)
        need = ("grid.nc", "cells.nc", "cell_forcing.nc")
        missing = [f for f in need if not (path / f).exists()]
        if not path.is_dir() or missing:
            raise FileNotFoundError(
                f"{str(path)!r} is not a world directory with {', '.join(need)} "
                f"({'missing: ' + ', '.join(missing) if path.is_dir() else 'no such directory'}); "
                "write one with soiljax.world.write_world"
            )
        grid = open_dataset(path / "grid.nc", "world grid", FileFormatError)
        cells = open_dataset(path / "cells.nc", "world cells", FileFormatError)
        forcing, _ = read_forcing(path / "cell_forcing.nc")
        return grid, cells, forcing
    raise TypeError(
        "predict_maps needs a soiljax.world.World, a directory written by soiljax.world.write_world, or a "
        f"triple (grid, cells, cell_forcing); got {type(world).__name__}"
    )


def predict_maps(
    learner: Learner,
    world,
    *,
    model=None,
    batch_size: int | None = None,
    mesh=None,
    progress: bool = True,
    client=None,
) -> xr.Dataset:
    """Maps of predicted parameters, SOC stocks and components over the world's grid.

    ``world`` is a :class:`soiljax.world.World`, a directory written by
    :func:`soiljax.world.write_world` (only ``grid.nc``, ``cells.nc`` and
    ``cell_forcing.nc`` are read) or a triple ``(grid, cells,
    cell_forcing)``.  The learner's covariates are selected by name from
    ``cells["covariates"]`` (a clear error lists any that are missing).
    :func:`predict_cells` followed by :func:`to_grid`; see the module
    docstring for the variables; ``client`` (a ``distributed.Client``) solves the
    cells on that Dask cluster.
    """
    grid, cells, forcing = _world_parts(world)
    if "covariates" not in cells.data_vars:
        raise MapsError("the world's cells dataset has no 'covariates' variable (cell, covariate)")
    ds = predict_cells(
        learner, cells["covariates"], forcing, model=model, cells=cells, batch_size=batch_size, mesh=mesh,
        progress=progress, client=client,
    )
    return to_grid(ds, grid)


# ---------------------------------------------------------------------------
# comparison and summaries
# ---------------------------------------------------------------------------


def _flat(ds: xr.Dataset, var: str) -> np.ndarray:
    return np.asarray(ds[var].values, dtype=float).ravel()


def _lat_weights(ds: xr.Dataset, var: str) -> np.ndarray:
    if "lat" not in ds.variables:  # cells without coordinates: equal weights
        return np.ones(ds[var].size)
    lat = ds["lat"]
    _, lat_b = xr.broadcast(ds[var], lat)
    return np.cos(np.deg2rad(np.asarray(lat_b.transpose(*ds[var].dims).values, dtype=float))).ravel()


def _valid_mask(ds: xr.Dataset, ref: str = "soc_stock_0_100") -> np.ndarray:
    if "valid" in ds.data_vars:
        return np.asarray(ds["valid"].transpose(*ds[ref].dims).values, dtype=bool).ravel()
    return np.isfinite(_flat(ds, ref))


def weighted_pearson(x, y, w=None) -> float:
    """Pearson r of ``x`` and ``y`` with weights ``w`` (None: equal); NaN when undefined (n < 2 or no variance)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    w = np.ones_like(x) if w is None else np.asarray(w, float)
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(w) & (w > 0)
    if ok.sum() < 2:
        return float("nan")
    x, y, w = x[ok], y[ok], w[ok]
    w = w / w.sum()
    dx, dy = x - np.sum(w * x), y - np.sum(w * y)
    den = math.sqrt(float(np.sum(w * dx * dx)) * float(np.sum(w * dy * dy)))
    return float(np.sum(w * dx * dy) / den) if den > 0 else float("nan")


def _check_same_grid(a: xr.Dataset, b: xr.Dataset, names) -> None:
    var = MAP_VARIABLES[1]
    if a[var].shape != b[var].shape:
        raise MapsError(f"{names[0]} and {names[1]} maps have different shapes {a[var].shape} and {b[var].shape}")
    for c in ("lat", "lon"):
        if c in a.coords and c in b.coords and not np.allclose(a[c].values, b[c].values):
            raise MapsError(f"{names[0]} and {names[1]} maps lie on different grids ({c} differs)")


def compare_models(maps_a: xr.Dataset, maps_b: xr.Dataset, *, names=("clm5", "compas")) -> dict:
    """Pearson correlations between two models' maps over the cells valid in both (paper Figure 4).

    Works on map datasets (lat, lon) and on cell datasets of :func:`predict_cells`
    for the same cells.  Compared: log10 of ``soc_stock_0_30`` and
    ``soc_stock_0_100`` (cells with a non-positive stock dropped), and each of
    the six components, as log10 for ``k_bulk`` and ``v_system`` when they are
    positive in every compared cell of both models, as they are otherwise.

    Returns ``{"models": names, "n_cells": n valid in both, "n_valid": {name:
    n}, "variables": {var: {"transform": "log10" | "none", "n": cells used,
    "r": Pearson r, "r_area_weighted": r with cos(latitude) weights,
    "mean_a", "mean_b": means of the transformed values (cos-lat weighted)}}}``.
    r is NaN where a variable is constant in either model.
    """
    names = tuple(str(n) for n in names)
    check = check_maps if "lat" in maps_a.dims else (lambda ds, what: None)
    check(maps_a, what=names[0])
    check(maps_b, what=names[1])
    _check_same_grid(maps_a, maps_b, names)
    va, vb = _valid_mask(maps_a), _valid_mask(maps_b)
    both = va & vb
    w = _lat_weights(maps_a, MAP_VARIABLES[1])
    out = {"models": names, "n_cells": int(both.sum()), "n_valid": {names[0]: int(va.sum()), names[1]: int(vb.sum())},
           "variables": {}}
    for var in MAP_VARIABLES:
        a, b = _flat(maps_a, var), _flat(maps_b, var)
        use = both & np.isfinite(a) & np.isfinite(b)
        if var in STOCK_DEPTHS:
            transform = "log10"
            use &= (a > 0) & (b > 0)
        elif var in LOG_IF_POSITIVE and use.any() and np.all(a[use] > 0) and np.all(b[use] > 0):
            transform = "log10"
        else:
            transform = "none"
        x, y = a[use], b[use]
        if transform == "log10":
            x, y = np.log10(x), np.log10(y)
        ww = w[use]
        out["variables"][var] = {
            "transform": transform,
            "n": int(use.sum()),
            "r": weighted_pearson(x, y),
            "r_area_weighted": weighted_pearson(x, y, ww),
            "mean_a": float(np.sum(ww * x) / np.sum(ww)) if x.size else float("nan"),
            "mean_b": float(np.sum(ww * y) / np.sum(ww)) if y.size else float("nan"),
        }
    return out


def format_comparison(cmp: dict) -> str:
    """A small text table of :func:`compare_models`' result."""
    a, b = cmp["models"]
    lines = [
        f"{a} vs {b}: {cmp['n_cells']} cells valid in both ({a} {cmp['n_valid'][a]}, {b} {cmp['n_valid'][b]})",
        f"{'variable':<18}{'transform':>10}{'n':>8}{'r':>8}{'r (area)':>10}",
    ]
    for var, c in cmp["variables"].items():
        lines.append(f"{var:<18}{c['transform']:>10}{c['n']:>8}{c['r']:>8.3f}{c['r_area_weighted']:>10.3f}")
    return "\n".join(lines)


def latitude_profile(maps: xr.Dataset, var: str, *, band: float | None = None,
                     quantiles=(0.25, 0.5, 0.75)) -> xr.DataArray:
    """Zonal statistics of ``maps[var]`` over valid land cells by latitude (paper Figure 2c).

    ``band`` (degrees) groups latitudes into bands of that width starting at
    90 S (default: the grid's own rows).  Returns a DataArray (lat, stat) with
    ``stat`` = ``mean`` (cos-latitude weighted, which within one grid row is
    the area-weighted mean), then the (unweighted) ``quantiles``, named
    ``q25``, ``median``, ``q75`` ...; the coordinate ``n`` (lat) counts the
    cells.  Latitudes without valid cells hold NaN (n = 0).  Units as the
    variable's.
    """
    if var not in maps.data_vars:
        raise MapsError(f"maps have no variable {var!r}; map variables are {', '.join(MAP_VARIABLES)}")
    values = _flat(maps, var)
    lat = np.asarray(xr.broadcast(maps[var], maps["lat"])[1].transpose(*maps[var].dims).values, dtype=float).ravel()
    ok = np.isfinite(values)
    if "valid" in maps.data_vars and maps["valid"].dims == maps[var].dims:
        ok &= np.asarray(maps["valid"].values, dtype=bool).ravel()
    if band is None:
        centres = np.unique(np.asarray(maps["lat"].values, dtype=float))
        which = np.searchsorted(centres, lat)
        which = np.where((which < centres.size) & (centres[np.minimum(which, centres.size - 1)] == lat), which, -1)
    else:
        band = float(band)
        if not (0 < band <= 180):
            raise MapsError(f"band must be a latitude width in (0, 180] degrees, got {band}")
        n_band = int(math.ceil(180.0 / band - 1e-9))
        centres = -90.0 + band * (np.arange(n_band) + 0.5)
        which = np.clip(((lat + 90.0) // band).astype(int), 0, n_band - 1)
    qs = [float(q) for q in quantiles]
    stat_names = ["mean"] + ["median" if q == 0.5 else f"q{round(q * 100):02d}" for q in qs]
    out = np.full((centres.size, len(stat_names)), np.nan)
    count = np.zeros(centres.size, dtype=np.int64)
    weights = np.cos(np.deg2rad(lat))
    for i in range(centres.size):
        m = ok & (which == i)
        count[i] = int(m.sum())
        if count[i]:
            v = values[m]
            out[i, 0] = float(np.sum(weights[m] * v) / np.sum(weights[m]))
            out[i, 1:] = np.quantile(v, qs)
    attrs = dict(maps[var].attrs)
    attrs["long_name"] = f"zonal statistics of {attrs.get('long_name', var)}"
    return xr.DataArray(
        out,
        dims=("lat", "stat"),
        coords={
            "lat": ("lat", centres, {"units": "degrees_north"}),
            "stat": ("stat", np.array(stat_names)),
            "n": ("lat", count, {"long_name": "valid land cells"}),
        },
        attrs=attrs,
        name=var,
    )


def cell_area(maps: xr.Dataset) -> xr.DataArray:
    """Area (km2) of each grid cell of a regular lat/lon map (lat, lon)."""
    lat = np.asarray(maps["lat"].values, dtype=float)
    lon = np.asarray(maps["lon"].values, dtype=float)
    dlat = float(np.median(np.diff(lat))) if lat.size > 1 else 180.0
    dlon = float(np.median(np.diff(lon))) if lon.size > 1 else 360.0
    band = np.sin(np.deg2rad(np.clip(lat + dlat / 2, -90, 90))) - np.sin(np.deg2rad(np.clip(lat - dlat / 2, -90, 90)))
    area = EARTH_RADIUS_KM**2 * np.deg2rad(dlon) * band[:, None] * np.ones(lon.size)[None, :]
    return xr.DataArray(area, dims=("lat", "lon"), coords={"lat": maps["lat"], "lon": maps["lon"]},
                        attrs={"units": "km2", "long_name": "area of the grid cell"})


def global_stock(maps: xr.Dataset, var: str = "soc_stock_0_100") -> dict:
    """Total SOC (Pg C) of a stock map over its valid cells, and the share of the land area they cover.

    ``{"total_PgC": ..., "valid_area_fraction": ..., "total_if_invalid_at_mean_PgC": ...}``; the last
    fills invalid land cells with the area-weighted mean stock (an estimate only).
    """
    if var not in STOCK_DEPTHS:
        raise MapsError(f"global_stock works on the stock maps {', '.join(STOCK_DEPTHS)}, not {var!r}")
    area = cell_area(maps).values * 1e6  # m2
    stock = np.asarray(maps[var].values, dtype=float)  # kgC m-2
    land = np.asarray(maps["land"].values, dtype=bool) if "land" in maps else np.isfinite(stock)
    ok = land & np.isfinite(stock)
    total = float(np.sum(stock[ok] * area[ok]) / 1e12)  # kg -> Pg
    land_area = float(np.sum(area[land]))
    frac = float(np.sum(area[ok]) / land_area) if land_area > 0 else float("nan")
    mean = float(np.sum(stock[ok] * area[ok]) / np.sum(area[ok])) if ok.any() else float("nan")
    return {
        "total_PgC": total,
        "valid_area_fraction": frac,
        "total_if_invalid_at_mean_PgC": total + mean * float(np.sum(area[land & ~ok])) / 1e12,
    }


__all__ = [
    "LOG_IF_POSITIVE",
    "MAP_UNITS",
    "MAP_VARIABLES",
    "MapsError",
    "cell_area",
    "check_maps",
    "compare_models",
    "format_comparison",
    "global_stock",
    "latitude_profile",
    "predict_cells",
    "predict_maps",
    "read_maps",
    "to_grid",
    "weighted_pearson",
    "write_maps",
]
