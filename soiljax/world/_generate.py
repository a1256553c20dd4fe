"""Making a world: :func:`synthetic_world` puts the planet, its forcing and the hidden maps together."""

from __future__ import annotations

import numpy as np
import xarray as xr

from .._climate import N_MONTHS
from .._stages import Stages
from ._catalogue import COVARIATE_DESCRIPTIONS, COVARIATE_UNITS, COVARIATES, covariate_attrs
from ._common import check_seed, purpose_rng
from ._container import World
from ._forcing import environment_forcing
from ._hidden import MODELS, hidden_parameters, model_instance, model_key
from ._planet import LAT_RANGE, check_resolution, environment, field, grid_axes, land_threshold, unit_vectors


def synthetic_world(
    n_sites: int = 1000,
    *,
    resolution: float = 5.0,
    seed: int = 0,
    models=MODELS,
    noise: float = 0.1,
    n_obs=(4, 8),
    progress: bool = False,
) -> World:
    """Generate a synthetic world (see the module docstring).

    Parameters
    ----------
    n_sites:
        Number of profile sites (>= 1), placed in land cells (with repetition).
    resolution:
        Grid spacing in degrees; must divide 180 (10 or 15 for tests, 1 for maps).
    seed:
        Non-negative integer: the same arguments always give the same world.
        The continents, climate and hidden maps depend on the seed only, not on
        ``resolution`` or ``n_sites``.
    models:
        Models to make the truth and observations for: any of 'clm5', 'compas'.
        An empty tuple skips the truth and the steady-state solves (covariates
        and forcing only; :func:`hidden_parameters` still gives the truth).
    noise, n_obs:
        Observation error and number of observed layers per site, passed to
        :func:`soiljax.synthetic_observations`.
    progress:
        Show the stages on stderr (a tqdm bar, and one over the steady states'
        batches of a large world); off by default.
    """
    from ..synthetic import synthetic_observations

    if isinstance(n_sites, bool) or not isinstance(n_sites, (int, np.integer)):
        raise ValueError(f"n_sites must be an integer >= 1, got {n_sites!r}")
    n_sites = int(n_sites)
    if n_sites < 1:
        raise ValueError(f"n_sites must be at least 1, got {n_sites}")
    res = check_resolution(resolution)
    seed = check_seed(seed)
    if isinstance(models, str):
        models = (models,)
    keys = []
    for m in models:
        key = model_key(m)
        if key in keys:
            raise ValueError(f"model {key!r} is listed twice in models={models!r}")
        keys.append(key)
    try:
        noise = float(noise)
    except (TypeError, ValueError):
        raise ValueError(f"noise must be a number >= 0 (the sd of log SOC), got {noise!r}") from None
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0 (the sd of log SOC), got {noise!r}")
    try:
        lo_n, hi_n = (int(k) for k in n_obs)
    except (TypeError, ValueError):
        raise ValueError(f"n_obs must be a pair (low, high) of layer counts, e.g. (4, 8); got {n_obs!r}") from None
    if not 1 <= lo_n <= hi_n:
        raise ValueError(f"n_obs must be (low, high) with 1 <= low <= high, e.g. (4, 8); got {n_obs!r}")

    # --- grid and land cells ------------------------------------------------------
    stage = Stages(f"world ({n_sites} sites, {res:g} deg)", 4 + len(keys), progress)
    stage("land cells")
    threshold = land_threshold(seed)
    lat, lon = grid_axes(res)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    land_field = field(seed, "land", unit_vectors(la.ravel(), lo.ravel())).reshape(la.shape)
    land = (land_field > threshold) & (la >= LAT_RANGE[0]) & (la <= LAT_RANGE[1])
    if not land.any():
        raise ValueError(f"the {res:g}-degree grid has no land cell for seed {seed}; use a finer resolution")
    i_lat, i_lon = np.nonzero(land)
    n_cells = i_lat.size
    cell_index = np.full(land.shape, -1, dtype=np.int64)
    cell_index[i_lat, i_lon] = np.arange(n_cells)
    stage("cell climate and covariates")
    cell_env = environment(lat[i_lat], lon[i_lon], seed, threshold)
    cell_cov = cell_env["covariates"]
    band = np.sin(np.deg2rad(lat[i_lat] + res / 2)) - np.sin(np.deg2rad(lat[i_lat] - res / 2))
    area = np.deg2rad(res) * 6371.0**2 * band  # km2

    # --- sites ----------------------------------------------------------------
    stage("sites")
    rng = purpose_rng(seed, "sites")
    weight = area * np.exp(0.7 * field(seed, "sampling", unit_vectors(lat[i_lat], lon[i_lon])))
    site_cell = rng.choice(n_cells, size=n_sites, p=weight / weight.sum())
    site_lat = lat[i_lat][site_cell] + res * (rng.random(n_sites) - 0.5)
    site_lon = lon[i_lon][site_cell] + res * (rng.random(n_sites) - 0.5)
    site_env = environment(site_lat, site_lon, seed, threshold, local=purpose_rng(seed, "local", n_sites))
    width = max(6, len(str(n_sites - 1)))
    site_id = np.array([f"w{seed}_{i:0{width}d}" for i in range(n_sites)])

    stage("forcing")
    cell_forcing = environment_forcing(cell_env, [f"cell {i}" for i in range(n_cells)])
    site_forcing = environment_forcing(site_env, site_id)

    # --- datasets ---------------------------------------------------------------
    attrs = dict(
        title="soiljax synthetic world",
        seed=seed,
        resolution=res,
        n_sites=n_sites,
        models=",".join(keys),
        noise=noise,
        n_obs=f"{lo_n}-{hi_n}",
        land_threshold=threshold,
    )
    grid_vars = {}
    for j, name in enumerate(COVARIATES):
        values = np.full(land.shape, np.nan)
        values[i_lat, i_lon] = cell_cov[:, j]
        var_attrs = {"units": COVARIATE_UNITS[name], "long_name": COVARIATE_DESCRIPTIONS[name]}
        grid_vars[name] = (("lat", "lon"), values, var_attrs)
    grid_vars["land"] = (("lat", "lon"), land, {"long_name": "land cell"})
    grid_vars["cell"] = (("lat", "lon"), cell_index, {"long_name": "index into the cell axis (-1 over the ocean)"})
    coords = {
        "lat": ("lat", lat, {"units": "degrees_north", "long_name": "latitude of the cell centre"}),
        "lon": ("lon", lon, {"units": "degrees_east", "long_name": "longitude of the cell centre"}),
    }
    grid = xr.Dataset(grid_vars, coords=coords, attrs=attrs)
    cov_coord = ("covariate", np.array(COVARIATES), {"long_name": "covariate name"})
    month = ("month", np.arange(1, N_MONTHS + 1), {"long_name": "calendar month (1 = January)"})

    def climate(env, dim):
        return {
            "tmean": ((dim, "month"), env["t_air"], {"units": "degC", "long_name": "monthly mean air temperature"}),
            "dtr": ((dim, "month"), env["dtr"],
                    {"units": "degC", "long_name": "monthly mean diurnal temperature range"}),
            "prec": ((dim, "month"), env["precip"], {"units": "mm", "long_name": "monthly precipitation"}),
        }

    cells = xr.Dataset(
        {
            "lat": ("cell", lat[i_lat], {"units": "degrees_north", "long_name": "latitude of the cell centre"}),
            "lon": ("cell", lon[i_lon], {"units": "degrees_east", "long_name": "longitude of the cell centre"}),
            "i_lat": ("cell", i_lat.astype(np.int64), {"long_name": "row of the cell in the grid"}),
            "i_lon": ("cell", i_lon.astype(np.int64), {"long_name": "column of the cell in the grid"}),
            "area": ("cell", area, {"units": "km2", "long_name": "area of the cell"}),
            "covariates": (("cell", "covariate"), cell_cov, covariate_attrs()),
            **climate(cell_env, "cell"),
        },
        coords={"cell": np.arange(n_cells), "covariate": cov_coord, "month": month},
        attrs=attrs,
    )
    sites = xr.Dataset(
        {
            "lat": ("site", site_lat, {"units": "degrees_north", "long_name": "latitude"}),
            "lon": ("site", site_lon, {"units": "degrees_east", "long_name": "longitude"}),
            "cell": ("site", site_cell.astype(np.int64), {"long_name": "index of the land cell the site lies in"}),
            "covariates": (("site", "covariate"), site_env["covariates"], covariate_attrs()),
            **climate(site_env, "site"),
        },
        coords={"site": site_id, "covariate": cov_coord, "month": month},
        attrs=attrs,
    )

    # --- truth and observations ---------------------------------------------------
    u_true, cell_u, observations, valid = {}, {}, {}, {}
    for key in keys:
        stage(f"{key} truth and observations (steady states)")
        model = model_instance(key)
        u_true[key] = hidden_parameters(key, site_env["covariates"], seed=seed)
        cell_u[key] = hidden_parameters(key, cell_cov, seed=seed)
        obs, truth = synthetic_observations(
            model,
            u_true[key],
            site_forcing,
            noise=noise,
            n_obs=(lo_n, hi_n),
            seed=int(purpose_rng(seed, "observations", key).integers(0, 2**31 - 1)),
            site_id=site_id,
            progress=progress,
        )
        observations[key] = obs
        valid[key] = np.asarray(truth["valid"].values, dtype=bool)
    stage.close()
    return World(grid, cells, cell_forcing, sites, site_forcing, u_true, cell_u, observations, valid)
