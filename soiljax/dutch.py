"""Real example data: the normal soil profiles of the Dutch Soil Map, and a Dutch climate.

The ``dutchsoils`` package (MIT; ``pip install "soiljax[dutch]"``) ships the
normal soil profiles of the Dutch Soil Map (BRO Bodemkaart, version 2025-01)
as CSV files.  This module reads those files directly (``SoilProfiles.csv``,
``SoilHorizons.csv`` in ``dutchsoils/data``, lines starting with ``#`` are
comments); it finds them with :func:`importlib.util.find_spec`, so the
``dutchsoils`` package itself (which imports pandas, matplotlib and requests)
is never imported.

:func:`dutch_profiles`
    One site per normal soil profile: :class:`~soiljax.Observations` and a
    metadata dataset (soil unit, name, a coarse soil group, texture).
:func:`netherlands_forcing`
    An approximate monthly CLM5-style forcing of the Dutch climate for every
    profile, so that the models can be run and calibrated against them.

Observations
------------
- depth (m): the horizon midpoint ``(ztop + zbottom) / 2``.
- SOC (gC m-3) = organic matter % / 1.724 * 10 * density (g cm-3) * 1000
  (DESIGN.md; van Bemmelen factor 1.724 = organic matter per organic carbon,
  x 10 from percent to g per kg, x density x 1000 from kg soil to m3).
- soc_sd (gC m-3): the map gives the 10th and 90th percentiles of organic
  matter in each horizon; for a normal distribution they lie 2 x 1.2816 sd
  apart, so sd(OM) = (p90 - p10) / 2.563, converted like SOC.
- Horizons without organic matter or density are dropped; profiles with
  fewer than ``min_layers`` usable horizons are dropped (counted in the
  dataset attributes).  The profiles reach 1.2 m at most.

Soil groups
-----------
The Dutch classification (De Bakker & Schelling, 1966/1989) writes a soil unit
as lower-case prefixes, a code of capitals for the main class, then
lower-case letters and digits (texture, subtype) and suffixes.  The rule looks
at the first run of capitals (the main class; e.g. ``hVb`` -> ``V``,
``cHn21g`` -> ``H``, ``zEZ23`` -> ``EZ``, ``KRn1`` -> ``KR``), in this order:

``peat``
    contains ``V`` (veen): veengronden, incl. ``AVk`` (veenafbraakgebied);
``peaty``
    contains ``W`` (moerige gronden: a peaty top layer or intermediate layer);
``podzol``
    starts with ``H`` or ``Y`` (veld-, laar-, haar-, holt-, loopodzolgronden
    in sand);
``loam``
    contains ``L`` (leem, loess: brik-, tuineerd- and ooivaaggronden in
    South Limburg);
``sand``
    contains ``Z`` or ``S`` (other sandy soils: vaag-, beek-, goor- and
    enkeerdgronden; ``S`` is loamy/clayey very fine sand);
``clay``
    contains ``M`` (marine clay), ``R`` (river clay) or ``K`` (old clay,
    boulder clay); ``MO`` are tidal-flat soils;
``other``
    anything else (none in version 2025-01).

The tests check the rule against the Dutch names (every ``peat`` name says
"veen", every ``peaty`` name "moerige", every ``podzol`` name "podzol").

Netherlands forcing
-------------------
One climate for the whole (small, flat) country, the hydrology and thermal
properties by soil group; no randomness.  Sources of the numbers:

- TSOI (K): the damped, lagged annual wave of
  :mod:`soiljax.synthetic`, ``T(z, m) = T_mean + g z + A exp(-z/d)
  cos(2 pi (m - m_peak)/12 - z/d)``.  De Bilt (KNMI normals 1991-2020): mean
  annual air temperature ~10.5 degC, January ~3.5 degC, July ~17.5 degC;
  soil is ~0.5 K warmer than air on average (little snow cover), so
  ``T_mean`` = 11.0 degC, surface amplitude ``A`` = 7 K (half the
  January-July range), warmest month July (``m_peak`` = 6, months 0-11).
  Damping depth ``d = sqrt(2 kappa / omega)`` with thermal diffusivity
  kappa = 6e-7 m2 s-1 for wet mineral soil (d = 2.5 m), 3e-7 for peaty soils
  (d = 1.7 m) and 1.2e-7 for peat (d = 1.1 m) (textbook values, e.g. Hillel,
  *Environmental Soil Physics*).  Geothermal gradient ``g`` = 0.03 K m-1
  (the Dutch average of ~31 K km-1).  The soil never freezes.
- ALTMAX, ALTMAX_LASTYEAR: no permafrost: CTSM's rule on that TSOI
  (:func:`soiljax.synthetic.active_layer_depth`) gives the full column,
  49.556 m, the bottom of level 25, in every month.
- nbedrock = 20: deep unconsolidated sediments, no bedrock within 8.6 m.
- Groundwater: the mean water-table depth by group (typical Dutch
  groundwater classes): peat 0.4 m, peaty 0.6 m, clay 0.9 m, sand 1.2 m,
  podzol 1.5 m, loam (loess plateaus) 3.0 m, other 1.2 m; 0.25 m shallower in
  winter and deeper in late summer (deepest in August).
- W_SCALAR: the unsaturated zone has a mean of 0.9 (peat), 0.85 (peaty),
  0.75 (clay), 0.7 (loam), 0.6 (sand, podzol, other), 0.15 lower in
  July-August (summer moisture deficit, ~850 mm precipitation spread over the
  year); it rises smoothly (0.15 m transition) to 1 below the water table
  (CLM5's water scalar is 1 near saturation; anoxia is the oxygen scalar's
  job).
- O_SCALAR: 1 above the water table, falling (0.15 m transition) below it to
  0.2 for peat and peaty soils (waterlogged, oxygen-poor; 0.2 is CTSM's
  minimum oxygen scalar) and 0.4 for mineral soils (periodically aerated
  by the fluctuating water table).
- FPI_vr: weak nitrogen limitation (high N deposition and fertilisation):
  0.8 at the surface rising towards 1 with depth (e-folding 0.5 m), 0.05
  lower near the surface in the growing season.
- Inputs: 600 gC m-2 yr-1 (NPP of Dutch grassland, arable land and forest
  ~500-700 gC m-2 yr-1), 3 % of it coarse woody debris (woodland is ~10 % of
  the land), the rest 40 % metabolic, 42 % cellulose and 18 % lignin litter
  (grass and crop residues); spread over the months as 1 + 0.6 cos(2 pi
  (m - 8) / 12), peaking in September (senescence, harvest residues).
- CELLSAND (%): the profile's sand on the 20 layers (``sand_layer`` of
  :func:`dutch_profiles`): the sand of the horizon that holds the layer's
  node, the deepest horizon's below the profile.  Sand of a horizon = (100 -
  loam content) x (1 - organic matter / 100): the map's loam (leem) is the
  mineral fraction < 50 um, so the rest of the mineral fraction is sand, and
  organic matter dilutes it (peat has little sand).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import xarray as xr

from ._climate import (
    N_MONTHS,
    active_layer,
    annual_wave,
    carbon_inputs,
    growing_season,
    layer_sand,
    monthly,
    nitrogen_limitation,
    oxygen_scalar,
    seasonal_weights,
)
from ._forcing import Forcing
from ._grid import N_LAYERS, ZSOI
from ._observations import Observations

SOIL_GROUPS: tuple[str, ...] = ("peat", "peaty", "podzol", "sand", "clay", "loam", "other")
"""Coarse soil groups of :func:`soil_group` (see the module docstring)."""

OM_PER_C = 1.724
"""van Bemmelen factor: g organic matter per g organic carbon."""

_Z90 = 1.2815515655446004  # standard normal 90th percentile

# per soil group: (mean water table m, unsaturated W_SCALAR, O_SCALAR floor, thermal diffusivity m2 s-1)
_HYDRO: dict[str, tuple[float, float, float, float]] = {
    "peat": (0.4, 0.90, 0.2, 1.2e-7),
    "peaty": (0.6, 0.85, 0.2, 3.0e-7),
    "clay": (0.9, 0.75, 0.4, 6.0e-7),
    "sand": (1.2, 0.60, 0.4, 6.0e-7),
    "podzol": (1.5, 0.60, 0.4, 6.0e-7),
    "loam": (3.0, 0.70, 0.4, 6.0e-7),
    "other": (1.2, 0.60, 0.4, 6.0e-7),
}
T_MEAN_C = 11.0
T_AMPLITUDE = 7.0
T_PEAK_MONTH = 6.0
GEOTHERMAL = 0.03
ANNUAL_INPUT = 600.0
CWD_FRACTION = 0.03
LITTER_SPLIT = (0.40, 0.42, 0.18)  # metabolic, cellulose, lignin
INPUT_PEAK_MONTH = 8.0
INPUT_SEASONALITY = 0.6


def _data_dir() -> Path:
    spec = importlib.util.find_spec("dutchsoils")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            'the Dutch Soil Map profiles need the dutchsoils package: pip install "soiljax[dutch]"'
        )
    for location in spec.submodule_search_locations:
        data = Path(location) / "data"
        if (data / "SoilHorizons.csv").exists():
            return data
    raise ImportError(
        f"dutchsoils is installed but has no data/SoilHorizons.csv in {list(spec.submodule_search_locations)}; "
        'reinstall it: pip install --force-reinstall "soiljax[dutch]"'
    )


def _read_csv(name: str):
    import pandas as pd

    return pd.read_csv(_data_dir() / name, comment="#")


def soil_group(code: str) -> str:
    """Coarse soil group of a Dutch soil unit code (rule in the module docstring)."""
    code = str(code)
    start = next((i for i, c in enumerate(code) if c.isupper()), len(code))
    end = start
    while end < len(code) and code[end].isupper():
        end += 1
    core = code[start:end]
    if "V" in core:
        return "peat"
    if "W" in core:
        return "peaty"
    if core[:1] in ("H", "Y"):
        return "podzol"
    if "L" in core:
        return "loam"
    if "Z" in core or "S" in core:
        return "sand"
    if any(c in core for c in "MRK"):
        return "clay"
    return "other"


def om_to_soc(organic_matter_percent, density_g_cm3):
    """SOC stock density (gC m-3) from organic matter (%) and dry bulk density (g cm-3)."""
    return np.asarray(organic_matter_percent) / OM_PER_C * 10.0 * np.asarray(density_g_cm3) * 1000.0


def dutch_profiles(*, min_layers: int = 2) -> tuple[Observations, xr.Dataset]:
    """The normal soil profiles of the Dutch Soil Map as observed SOC profiles.

    Returns ``(obs, meta)``: validated :class:`~soiljax.Observations`
    (site, obs) (depths = horizon midpoints in m, SOC and its sd in gC m-3;
    see the module docstring) and an :class:`xarray.Dataset` on ``site``
    (the normal soil profile id) with ``soil_unit``, ``soil_name``,
    ``soil_group`` (:func:`soil_group`), ``max_depth`` (m, the bottom of the
    deepest usable horizon), ``n_horizons`` (usable horizons),
    ``sand`` (thickness-weighted mean sand %, organic matter counted as
    non-sand), ``organic_matter`` (thickness-weighted mean %) and
    ``sand_layer`` (site, layer) on the 20 model layers (used by
    :func:`netherlands_forcing`).  Attributes count the dropped horizons and
    profiles.  Raises ImportError when dutchsoils is not installed.
    """
    profiles = _read_csv("SoilProfiles.csv")
    horizons = _read_csv("SoilHorizons.csv")
    n_all = int(profiles["normalsoilprofile_id"].nunique())
    ok = horizons["organicmattercontent"].notna() & horizons["density"].notna() & (horizons["density"] > 0)
    ok &= horizons["ztop"].notna() & horizons["zbottom"].notna() & (horizons["zbottom"] > horizons["ztop"])
    n_horizons_dropped = int((~ok).sum())
    horizons = horizons[ok].sort_values(["normalsoilprofile_id", "ztop"])
    groups = {int(k): g for k, g in horizons.groupby("normalsoilprofile_id")}
    names = profiles.drop_duplicates("normalsoilprofile_id").set_index("normalsoilprofile_id")
    ids = [int(i) for i in names.index if int(i) in groups and len(groups[int(i)]) >= max(min_layers, 1)]
    n_obs = max(len(groups[i]) for i in ids)
    n = len(ids)
    depth = np.full((n, n_obs), np.nan)
    soc = np.full((n, n_obs), np.nan)
    sd = np.full((n, n_obs), np.nan)
    sand_layer = np.empty((n, N_LAYERS))
    meta = {k: np.empty(n) for k in ("max_depth", "sand", "organic_matter")}
    n_hor = np.empty(n, dtype=int)
    z = np.asarray(ZSOI)
    for row, pid in enumerate(ids):
        g = groups[pid]
        top, bot = g["ztop"].to_numpy(float), g["zbottom"].to_numpy(float)
        om, rho = g["organicmattercontent"].to_numpy(float), g["density"].to_numpy(float)
        spread = (g["organicmattercontent90p"] - g["organicmattercontent10p"]).to_numpy(float)
        k = len(g)
        depth[row, :k] = 0.5 * (top + bot)
        soc[row, :k] = om_to_soc(om, rho)
        if np.all(np.isfinite(spread)):  # else unknown for the whole profile
            sd[row, :k] = om_to_soc(np.abs(spread) / (2.0 * _Z90), rho)
        sand = np.clip(100.0 - g["loamcontent"].to_numpy(float), 0.0, 100.0) * (1.0 - np.clip(om, 0, 100) / 100.0)
        thick = bot - top
        meta["max_depth"][row] = bot.max()
        meta["sand"][row] = np.sum(sand * thick) / thick.sum()
        meta["organic_matter"][row] = np.sum(om * thick) / thick.sum()
        n_hor[row] = k
        which = np.clip(np.searchsorted(bot, z, side="right"), 0, k - 1)  # horizon holding each node
        sand_layer[row] = sand[which]
    labels = np.array(ids)
    obs = Observations.from_arrays(depth, soc, sd, labels, min_layers=min_layers)
    units = names.loc[ids, "soilunit"].astype(str).to_numpy()
    ds = xr.Dataset(
        {
            "soil_unit": ("site", units, {"long_name": "soil unit code of the Dutch Soil Map"}),
            "soil_name": (
                "site",
                names.loc[ids, "othersoilname"].astype(str).to_numpy(),
                {"long_name": "Dutch name of the soil unit"},
            ),
            "soil_group": (
                "site",
                np.array([soil_group(u) for u in units]),
                {"long_name": "coarse soil group (soiljax.dutch.soil_group)"},
            ),
            "max_depth": ("site", meta["max_depth"], {"units": "m", "long_name": "bottom of the deepest horizon"}),
            "n_horizons": ("site", n_hor, {"long_name": "number of usable horizons"}),
            "sand": ("site", meta["sand"], {"units": "%", "long_name": "thickness-weighted mean sand content"}),
            "organic_matter": (
                "site",
                meta["organic_matter"],
                {"units": "%", "long_name": "thickness-weighted mean organic matter content"},
            ),
            "sand_layer": (
                ("site", "layer"),
                sand_layer,
                {"units": "%", "long_name": "sand content at the model layer nodes"},
            ),
        },
        coords={
            "site": ("site", labels, {"long_name": "normal soil profile id of the Dutch Soil Map"}),
            "layer": ("layer", np.arange(1, N_LAYERS + 1), {"long_name": "soil layer index (1 = top)"}),
        },
        attrs={
            "title": "Dutch Soil Map normal soil profiles (dutchsoils package, MIT)",
            "source": "BRO Bodemkaart (Dutch Soil Map) via the dutchsoils package",
            "soc_conversion": "SOC [gC m-3] = organic matter % / 1.724 * 10 * density [g cm-3] * 1000",
            "soc_sd": "from the 10th-90th percentile range of organic matter: (p90 - p10) / 2.563",
            "depth": "horizon midpoint (ztop + zbottom) / 2",
            "n_profiles_total": n_all,
            "n_profiles_dropped": n_all - n,
            "n_horizons_dropped": n_horizons_dropped,
            "min_layers": int(min_layers),
        },
    )
    return obs, ds


def _smooth_step(x: np.ndarray, width: float) -> np.ndarray:
    """0 well above, 1 well below, 0.5 at x = 0 (logistic of width ``width``)."""
    return 1.0 / (1.0 + np.exp(-x / width))


def netherlands_forcing(profiles_meta: xr.Dataset) -> tuple[Forcing, xr.Dataset]:
    """Approximate monthly forcing of the Dutch climate for every profile of ``profiles_meta``.

    ``profiles_meta`` is the metadata of :func:`dutch_profiles` (it needs
    ``soil_group``; ``sand_layer`` (site, layer) or ``sand`` (site) give
    CELLSAND, 50 % without them).  Every choice is documented, with its
    source, in the module docstring.  Returns a validated
    :class:`~soiljax.Forcing` (site, ...) and a dataset on ``site`` with the
    ``soil_group``, the mean ``water_table`` depth (m) and
    ``annual_input`` (gC m-2 yr-1) used.
    """
    if "soil_group" not in profiles_meta.variables:
        raise ValueError("profiles_meta needs a 'soil_group' variable on 'site' (the metadata of dutch_profiles)")
    group = np.asarray(profiles_meta["soil_group"].values).astype(str)
    n = group.shape[0]
    unknown = sorted(set(group) - set(_HYDRO))
    if unknown:
        raise ValueError(f"unknown soil group(s) {unknown}; the groups are {', '.join(SOIL_GROUPS)}")
    gw, w_unsat, o_floor, kappa = (np.array([_HYDRO[g][k] for g in group]) for k in range(4))
    s = lambda x: np.asarray(x)[:, None, None]  # noqa: E731  per-site -> (site, month, layer)
    z = np.asarray(ZSOI)[None, None, :]
    m = np.arange(N_MONTHS, dtype=float)[None, :, None]

    # temperature: damped, lagged annual wave (as soiljax.synthetic)
    omega = 2.0 * np.pi / (365.0 * 86400.0)
    d = np.sqrt(2.0 * kappa / omega)  # damping depth (m)
    tsoi = 273.15 + T_MEAN_C + GEOTHERMAL * z + annual_wave(T_AMPLITUDE, d, T_PEAK_MONTH)
    altmax, altmax_lastyear = active_layer(tsoi)
    # the soil never freezes here, so this is ALT_FULL_COLUMN (49.556 m) everywhere

    # water table: 0.25 m shallower in winter, deepest in August (month 7)
    table = s(gw) + 0.25 * np.cos(2.0 * np.pi * (m - 7.0) / N_MONTHS)
    below = _smooth_step(z - table, 0.15)
    summer = 0.5 * (1.0 + np.cos(2.0 * np.pi * (m - 6.5) / N_MONTHS))  # 1 in July-August, 0 in winter
    w_top = np.clip(s(w_unsat) + 0.15 * (0.5 - summer), 0.0, 1.0)
    w = np.clip(w_top + (1.0 - w_top) * below, 0.0, 1.0)
    o = oxygen_scalar((1.0 - s(o_floor)) * below, n)
    fpi = nitrogen_limitation(0.8, 0.2, 0.5, 0.05, growing_season(T_PEAK_MONTH))
    fpi = np.broadcast_to(fpi, (n, N_MONTHS, N_LAYERS))

    # inputs (gC m-2 month-1)
    weights = np.broadcast_to(seasonal_weights(INPUT_SEASONALITY, INPUT_PEAK_MONTH), (n, N_MONTHS))
    metabolic, cellulose, lignin = (np.full(n, f) for f in LITTER_SPLIT)
    inputs = carbon_inputs(np.full(n, ANNUAL_INPUT), weights, cwd=np.full(n, CWD_FRACTION), metabolic=metabolic,
                           cellulose=cellulose, lignin=lignin)

    if "sand_layer" in profiles_meta.variables:
        sand = np.asarray(profiles_meta["sand_layer"].transpose("site", "layer").values, dtype=float)
    elif "sand" in profiles_meta.variables:
        sand = np.repeat(np.asarray(profiles_meta["sand"].values, dtype=float)[:, None], N_LAYERS, axis=1)
    else:
        sand = np.full((n, N_LAYERS), 50.0)
    labels = np.asarray(profiles_meta["site"].values) if "site" in profiles_meta.coords else np.arange(n)
    forcing = Forcing(
        tsoi=tsoi,
        w_scalar=w,
        o_scalar=o,
        fpi_vr=fpi,
        altmax=altmax,
        altmax_lastyear=altmax_lastyear,
        nbedrock=monthly(np.full(n, N_LAYERS)),
        cwd_input=inputs["CWD_INPUT"],
        litr1_input=inputs["LITR1_INPUT"],
        litr2_input=inputs["LITR2_INPUT"],
        litr3_input=inputs["LITR3_INPUT"],
        cellsand=layer_sand(sand),
        site_labels=labels,
    )
    info = xr.Dataset(
        {
            "soil_group": ("site", group),
            "water_table": ("site", gw, {"units": "m", "long_name": "mean water-table depth assumed"}),
            "annual_input": ("site", np.full(n, ANNUAL_INPUT), {"units": "gC m-2 yr-1"}),
        },
        coords={"site": labels},
        attrs={"title": "approximate Netherlands forcing (soiljax.dutch.netherlands_forcing)"},
    )
    return forcing, info


__all__ = ["SOIL_GROUPS", "dutch_profiles", "netherlands_forcing", "om_to_soc", "soil_group"]
