"""A synthetic world for developing and testing PRODA's parameter-learning stage.

PRODA's second stage learns a map from environmental covariates to model
parameters at profile sites and applies it to every grid cell (MODELS.md
section 8).  :func:`synthetic_world` builds a world where that map is known::

    from soiljax import world as W
    w = W.synthetic_world(1000, resolution=5.0, seed=0)   # tests: resolution=10, ~40 sites
    X, U = w.covariate_matrix("sites"), w.u_true["clm5"]     # (site, 60), (site, 21)
    keep = w.valid["clm5"]                                    # drop sites with an invalid truth
    obs = w.observations["clm5"][keep]                        # their noisy observed profiles
    cells_X = w.covariate_matrix("cells")                     # (cell, 60): predict maps here
    W.write_world(w, "world_dir"); w2 = W.read_world("world_dir")

A :class:`World` holds

``grid``
    dims (lat, lon): every covariate as a map (NaN over the ocean), ``land``
    (bool), ``cell`` (index into the cell axis, -1 over the ocean); attrs
    ``seed``, ``resolution`` and the other arguments.
``cells``
    dim ``cell`` (land cells, row-major from the south-west): ``lat``, ``lon``,
    ``i_lat``, ``i_lon``, ``area`` (km2), ``covariates`` (cell, covariate) and
    the monthly climate ``tmean``, ``dtr``, ``prec`` (cell, month).
``cell_forcing``, ``site_forcing``
    :class:`soiljax.Forcing` with a leading cell or site axis.
``sites``
    dim ``site`` (string ids ``w<seed>_<index>``): ``lat``, ``lon``, ``cell``
    (the land cell it lies in), ``covariates`` (site, covariate) and the monthly
    climate.
``u_true``, ``cell_u_true``
    model -> (site or cell, param) true scaled parameters in (0, 1), columns in
    the model's ``param_names``.
``observations``, ``valid``
    model -> :class:`soiljax.Observations` (site, obs) and (site,) bool.

Everything is a deterministic function of ``seed`` (numpy generators seeded
from the world seed and a stable hash of each purpose).  The continents,
climate and hidden maps depend on the seed only, not on the resolution or the
number of sites, so a 10-degree world and a 1-degree world of one seed show the
same planet.  All generation is vectorised numpy: 50,000 sites on a 1-degree
grid (about 17,000 land cells) take 10-18 s on one CPU core without the truth
(``models=()``), with a peak memory of about 3 GB; with both models' steady
states and observations about 16 s in all (measured 2026-11-21).

Grid and land
-------------
A regular lat/lon grid of ``resolution`` degrees (it must divide 180); cell
centres ``-90 + res (i + 1/2)`` and ``-180 + res (j + 1/2)``.  Land is where a
smooth random field (a sum of 24 plane waves on the sphere, wavelengths of
continents) exceeds the level that makes 29 % of the globe's area land,
restricted to cell centres between 56 S and 75 N.  The level is set on a fixed
1-degree reference grid, so about 30 % of the cells are land at any resolution.
``continentality`` (0 at the coast, towards 1 inland) grows with the field above
that level and shapes the climate.

Climate (monthly)
-----------------
Air temperature: a latitude profile (27 degC at the equator, about -7 degC
at 75 deg) minus a continental cooling at high latitudes, a lapse rate of
6.5 K km-1 and a smooth noise field; an annual wave whose amplitude grows with
latitude and continentality (0-5 K in the tropics, 27 K in a high-latitude
continental interior), peaking in July in the north and January in the south
(through the equator smoothly), a second harmonic and a semi-annual wave near
the equator; the warmest month is kept at or above about 2 degC (no ice caps).
Precipitation: a wet equatorial belt, dry subtropics, wet mid-latitudes,
drier interiors, wetter mountains and a noise field; monthly shares with a
monsoon seasonality at 8-20 deg, summer rains in continental interiors, winter
rains on subtropical west-coast-like margins (30-42 deg) and a double rainy
season at the equator.  PET = 4.7 max(T + 3, 0) mm per month; the monthly
moisture index P / (P + PET + 1 mm); the diurnal range is wider where it is dry
and inland.  The ground surface is 1 K warmer than the air and snow insulates
it in winter (it feels 45-70 % of the air's frost).
``cells`` and ``sites`` hold the monthly climate as ``tmean`` and ``dtr``
(degC) and ``prec`` (mm), dims (cell or site, month).

Covariates
----------
:data:`COVARIATES` (60, in this order; units in :data:`COVARIATE_UNITS`,
descriptions in :data:`COVARIATE_DESCRIPTIONS`):

- ``bio1`` ... ``bio19``: WorldClim's bioclimatic variables computed from the
  monthly climate by :func:`bioclim` (dismo::biovars definitions).  degC for
  bio1, 2, 5-11; % for bio3 (isothermality) and bio15 (precipitation CV);
  bio4 = 100 x standard deviation of monthly means (so in 0.01 degC, as in
  WorldClim); mm for bio12-14, 16-19.
- ``pet`` (mm yr-1), ``aridity`` (P / max(PET, 100 mm), 1), ``gdd5``
  (degC day above 5 degC), ``pzi`` (permafrost zonation index 0-1, from the
  mean annual ground-surface temperature).
- ``elevation`` (m; mountain chains along the zero line of a field),
  ``slope`` (degree), ``twi`` (topographic wetness index, 1),
  ``bedrock_depth`` (m: bottom of the last soil layer above bedrock, 8.6 where
  the bedrock is below the 20-layer column; shallow in 0-22 % of the land,
  mostly on steep slopes).
- Soil at 0-30, 30-100 and 100-200 cm (``<property>_0_30``, ``_30_100``,
  ``_100_200``): ``sand``, ``silt``, ``clay`` (%, summing to 100; sandier where
  dry, more clay where warm and deeper down), ``ph`` (pH; acid where wet,
  alkaline where dry), ``bulk_density`` (g cm-3), ``cec`` (cmol(+) kg-1; from
  clay and organic matter), ``cfvo`` (coarse fragments, volume %),
  ``nitrogen`` (g kg-1).
- Land-cover fractions ``lc_forest``, ``lc_grass``, ``lc_crop``, ``lc_shrub``,
  ``lc_bare`` (1, summing to 1; forest where warm and wet, shrub and bare where
  dry or cold).
- ``npp`` (gC m-2 yr-1; the Miami model of annual temperature and
  precipitation, reduced on bare ground, at least 30): the annual carbon input
  of the forcing.  ``ndvi`` (1), ``lai`` (m2 m-2).
- ``abs_lat`` (degree).

Cells carry the smooth fields at their centres.  A site sits at a random
position inside a land cell (cells drawn with repetition, with probability
proportional to their area times a smooth "sampling effort" field, so that some
regions are sampled more densely, as in real profile databases) and has the
fields at its own position plus small local perturbations (elevation, slope,
TWI, a 0.2 K temperature offset, 5 % of precipitation, diurnal range, texture,
pH, bulk density, CEC, coarse fragments, nitrogen, land cover and NPP), so
sites in one cell differ a little.

Forcing (:class:`soiljax.Forcing`, leading axis = cell or site)
---------------------------------------------------------------
Built from the same climate as the covariates, with the physics of
:mod:`soiljax.synthetic`:

- TSOI: the ground-surface monthly series propagated down with the periodic
  solution of the heat equation (harmonic k damped by exp(-z sqrt(k) / d) and
  delayed by z sqrt(k) / d), plus a 0.02 K m-1 geothermal gradient.  The
  damping depth d (1.5-3 m) shrinks to 40 % in frozen ground (latent heat), so
  that where the ground is cold the active layer is shallow: ALTMAX_LASTYEAR
  <= 2 m (CLM5's cryoturbation branch) in 0-11 % of the land area, depending on
  the seed's geography.
- W_SCALAR: 1.3 m^0.8 - 0.1 of the monthly moisture index m at the surface,
  its seasonal swing fading with depth (1 m), a subsoil floor, reduced to
  20 % (at least 0.05) in frozen layers; every layer has a month above 0.05.
- O_SCALAR: limited at depth in wet soils and wet terrain (TWI), >= 0.2.
- FPI_vr: from temperature and topsoil nitrogen at the surface, rising with
  depth, lower in the growing season.
- ALTMAX, ALTMAX_LASTYEAR: :func:`soiljax.synthetic.active_layer_depth` of TSOI.
- nbedrock: from ``bedrock_depth``.
- Inputs: ``npp`` split into CWD (2-35 %, mostly forest), metabolic,
  cellulose and lignin litter by land cover, spread over the months by
  temperature and moisture (the growing season).
- CELLSAND: the sand covariates interpolated to the layer nodes.

Hidden maps (the truth)
-----------------------
:func:`hidden_parameters` maps covariates to the true scaled parameters::

    u_k = lo_k + (hi_k - lo_k) sigmoid(a_k + sum_j w_kj s_kj(x'_j))

with x' the standardised covariates (:func:`standardised_covariates`: log
for skewed ones, then fixed centre and scale), 2-3 documented covariates per
parameter through s = identity or tanh with the sign below, plus one
seed-chosen covariate through sin(x' + phase) with a small weight.  Weight
magnitudes, transforms, the extra covariate and the intercept a_k (in
[-0.3, 0.3]) come from the seed; the weights of a parameter have a
root-sum-square of 1.3.  :func:`hidden_map` lists the terms.  ``world.u_true``
equals ``hidden_parameters(model, world.covariate_matrix(), seed=world.seed)``.

CLM5 (u range: covariates)::

    bio 0.15-0.85: +bio1 +aridity +ph_0_30        cryo 0.15-0.85: +pzi +bio7
    q10 0.15-0.85: -bio1 +bio4                    efolding 0.45-0.90: -bulk_density_30_100 +clay_30_100 +lc_forest
    tau_cwd 0.15-0.85: -bio1 -bio12               tau_l1 0.15-0.85: -bio1 -lc_grass
    tau_l2_l3 0.15-0.85: +lc_forest -bio12        tau_s1 0.15-0.85: +clay_0_30 -bio1
    tau_s2 0.10-0.60: +clay_0_30 +cec_0_30 -ph_0_30
    tau_s3 0.10-0.60: +clay_30_100 -bio1 +pzi     f_l1_s1 0.15-0.85: +npp -lc_crop
    f_l2_s1 0.15-0.85: -lc_forest -sand_0_30      f_l3_s2 0.15-0.85: +lc_forest +nitrogen_0_30
    f_s1_s2 0.15-0.85: -sand_0_30 +clay_0_30      f_s1_s3 0.15-0.85: +clay_30_100 -bio1
    f_s2_s1 0.15-0.85: +sand_30_100 +ph_30_100    f_s2_s3 0.15-0.85: +clay_100_200 +cec_100_200
    f_s3_s1 0.15-0.85: +ph_30_100 +bio12          f_cwd_l2 0.15-0.85: -lc_forest +bio1
    w_scaling 0.30-0.90: -aridity +bio15          beta 0.15-0.85: +lc_shrub -aridity -lc_crop

COMPAS::

    bio, cryo, tau_cwd, tau_l1, tau_l2_l3, f_cwd_l2, beta: as CLM5
    q10 0.10-0.55: +bio1 -bio4                    w_scaling 0.40-0.90: -aridity -bio1 +bio15
    tau_assim 0.15-0.85: -bio1 -ph_0_30           tau_mic_death 0.15-0.85: -bio1 +nitrogen_0_30
    tau_enz_prod 0.15-0.85: -nitrogen_0_30 +ph_0_30
    tau_enz_decay: tied, see below (rho 0.12-0.25: -bio1 +clay_0_30)
    tau_decom 0.15-0.85: +clay_0_30 +cec_0_30     km_assim 0.15-0.85: +clay_0_30 +bulk_density_0_30
    km_decom 0.10-0.60: -bio1 +clay_30_100 +cec_30_100
    p_l1_doc 0.15-0.85: +bio12 +sand_0_30         p_l2_doc 0.15-0.85: +bio12 +lc_grass
    p_l3_soc 0.15-0.85: +clay_0_30 +cec_0_30      cue_l1 0.15-0.85: -bio1 +nitrogen_0_30
    cue_l2_l3 0.15-0.85: -bio1 +ph_0_30           cue_doc 0.15-0.85: -bio1 +nitrogen_0_30 +ph_0_30
    p_death_soc 0.15-0.85: +clay_0_30 +cec_0_30

COMPAS has a valid steady state only in a narrow part of its prior (MODELS.md
4.3): its mineral SOC is positive only while
``rho = p_death_soc tau_decom tau_enz_prod / (tau_enz_decay tau_mic_death)``
stays below roughly 0.3-0.5 (site dependent), and the total stock reaches 10 times the microbial stock
(PRODA's rule) only when rho is not too small (SOC / MIC grows like
xi^2 km_decom rho / (1 - rho)).  With independent maps rho fell at 0.01-0.1
and about half the sites, all the cold ones, failed.  So the world ties tau_enz_decay to the
other four: a smooth map of covariates gives rho in [0.12, 0.25] (higher where
cold) and tau_enz_decay is the value that realises it (its u softly kept in
(0.05, 0.95); about 0.2-0.5 in practice).  COMPAS's Q10 is low and its water
scaling high where it is cold, which keeps the cold sites' decomposition
scalar (and so SOC / MIC) up.  All maps stay smooth functions of the
covariates.

Valid fractions (sites whose true steady state is valid; ``world.valid``),
10 seeds x 2,000 sites at 5 degrees: CLM5 100 % for every seed, COMPAS
99.5-100 % (at least 85 % is what tests require).  Median SOC stocks to 1 m
are 11-33 kgC m-2 (CLM5; highest where cold) and 28-65 kgC m-2 (COMPAS;
highest where warm).

Observations
------------
``world.observations[model]`` are :func:`soiljax.synthetic_observations` of
the true parameters on the site forcing (CLM5 with PRODA's bedrock rule,
COMPAS with its defaults): ``n_obs`` = (4, 8) layers per site by default at
random depths down to 1.5 m (or the bedrock), log-normal noise of sd
``noise`` (0.1), NaN-padded to ``n_obs[1]``; sites with an invalid truth have
all-NaN profiles and ``valid`` False: drop them.

Files
-----
:func:`write_world` writes ``grid.nc``, ``cells.nc``, ``cell_forcing.nc`` and
``site_forcing.nc`` (forcing files, :func:`soiljax.write_forcing`),
``sites.nc``, and per model ``obs_<model>.nc``
(:func:`soiljax.write_observations`) and ``truth_<model>.nc`` (``u_true``,
``valid``, ``cell_u_true`` with the parameter names as the ``param``
coordinate); :func:`read_world` reads them back unchanged.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from ._forcing import Forcing
from ._grid import N_LAYERS, ZISOI, ZSOI
from ._observations import Observations
from ._stages import Stages
from .synthetic import T_FREEZE, active_layer_depth

N_MONTHS = 12
DAYS_PER_MONTH = 365.25 / 12.0
LAND_FRACTION = 0.29
"""Share of the globe's area that is land (as on Earth)."""
LAT_RANGE = (-56.0, 75.0)
"""Latitudes (of cell centres, degrees) that may hold land."""
SOIL_DEPTHS = ("0_30", "30_100", "100_200")
"""Depth intervals (cm) of the soil covariates."""
SOIL_PROPERTIES = ("sand", "silt", "clay", "ph", "bulk_density", "cec", "cfvo", "nitrogen")
"""Soil properties given at each of :data:`SOIL_DEPTHS`."""
LAND_COVERS = ("forest", "grass", "crop", "shrub", "bare")
"""Land-cover classes (``lc_<class>`` covariates, fractions summing to 1)."""
MODELS = ("clm5", "compas")
"""Models the world holds a truth for."""
BIOCLIM = tuple(f"bio{i}" for i in range(1, 20))
"""WorldClim's 19 bioclimatic variables, in order."""

_SOIL_MID = np.array([0.15, 0.65, 1.5])  # m, middle of each soil depth interval
_GEOTHERMAL = 0.02  # K m-1

# ---------------------------------------------------------------------------
# covariates: name, units, description, standardisation used by the hidden maps
# ---------------------------------------------------------------------------
# (name, units, description, log offset or None).  The hidden parameter maps
# use x' = (g(x) - centre) / scale with g(x) = log(x + offset) when an offset
# is given and g(x) = x otherwise; centre and scale (_SCALING) are fixed
# numbers, the median and the larger of the standard deviation and the
# 10-90 % range / 2.56 of g(x) over the land cells of six 2-degree worlds
# (seeds 0-5), so the maps are plain functions of one site's covariates.
_TABLE: list[tuple[str, str, str, float | None]] = [
    ("bio1", "degC", "annual mean temperature", None),
    ("bio2", "degC", "mean diurnal range (mean of monthly max - min)", None),
    ("bio3", "%", "isothermality (100 bio2 / bio7)", None),
    ("bio4", "0.01 degC", "temperature seasonality (100 x standard deviation of monthly means)", None),
    ("bio5", "degC", "max temperature of the warmest month", None),
    ("bio6", "degC", "min temperature of the coldest month", None),
    ("bio7", "degC", "temperature annual range (bio5 - bio6)", None),
    ("bio8", "degC", "mean temperature of the wettest quarter", None),
    ("bio9", "degC", "mean temperature of the driest quarter", None),
    ("bio10", "degC", "mean temperature of the warmest quarter", None),
    ("bio11", "degC", "mean temperature of the coldest quarter", None),
    ("bio12", "mm", "annual precipitation", 1.0),
    ("bio13", "mm", "precipitation of the wettest month", 1.0),
    ("bio14", "mm", "precipitation of the driest month", 1.0),
    ("bio15", "%", "precipitation seasonality (coefficient of variation of monthly precipitation + 1 mm)", None),
    ("bio16", "mm", "precipitation of the wettest quarter", 1.0),
    ("bio17", "mm", "precipitation of the driest quarter", 1.0),
    ("bio18", "mm", "precipitation of the warmest quarter", 1.0),
    ("bio19", "mm", "precipitation of the coldest quarter", 1.0),
    ("pet", "mm yr-1", "potential evapotranspiration (sum of 4.7 max(T + 3, 0) mm per month)", 1.0),
    ("aridity", "1", "aridity index: annual precipitation / max(PET, 100 mm)", 0.01),
    ("gdd5", "degC day", "growing degree days above 5 degC", 10.0),
    ("pzi", "1", "permafrost zonation index (from the mean annual ground-surface temperature)", None),
    ("elevation", "m", "elevation above sea level", None),
    ("slope", "degree", "terrain slope", 1.0),
    ("twi", "1", "topographic wetness index", None),
    ("bedrock_depth", "m", "depth to bedrock (bottom of the last soil layer above it; 8.6: below the column)", None),
]
_SOIL_UNITS = {
    "sand": ("%", "sand content (mass)"),
    "silt": ("%", "silt content (mass)"),
    "clay": ("%", "clay content (mass)"),
    "ph": ("pH", "soil pH in water"),
    "bulk_density": ("g cm-3", "bulk density of the fine earth"),
    "cec": ("cmol(+) kg-1", "cation exchange capacity"),
    "cfvo": ("%", "coarse fragments (volume)"),
    "nitrogen": ("g kg-1", "total nitrogen"),
}
_SOIL_LOG = {"cec": 1.0, "nitrogen": 0.05}
for _prop in SOIL_PROPERTIES:
    for _d in SOIL_DEPTHS:
        _top, _bottom = _d.split("_")
        _TABLE.append(
            (f"{_prop}_{_d}", _SOIL_UNITS[_prop][0], f"{_SOIL_UNITS[_prop][1]}, {_top}-{_bottom} cm",
             _SOIL_LOG.get(_prop))
        )
for _lc in LAND_COVERS:
    _TABLE.append((f"lc_{_lc}", "1", f"fraction of {_lc} land cover", None))
_TABLE += [
    ("npp", "gC m-2 yr-1", "net primary production = annual carbon input of the forcing", 1.0),
    ("ndvi", "1", "normalised difference vegetation index (annual mean)", None),
    ("lai", "m2 m-2", "leaf area index (annual maximum)", None),
    ("abs_lat", "degree", "absolute latitude", None),
]
del _prop, _d, _top, _bottom, _lc

_SCALING: dict[str, tuple[float, float]] = {
    "bio1": (12.5, 11.1),
    "bio2": (11.4, 2.53),
    "bio3": (42.3, 18.8),
    "bio4": (598.0, 462.0),
    "bio5": (28.3, 7.29),
    "bio6": (-1.18, 14.6),
    "bio7": (27.7, 11.5),
    "bio8": (20.0, 7.96),
    "bio9": (7.0, 15.9),
    "bio10": (21.1, 7.18),
    "bio11": (5.33, 15.5),
    "bio12": (6.46, 0.99),
    "bio13": (4.38, 1.01),
    "bio14": (3.1, 1.44),
    "bio15": (32.2, 27.9),
    "bio16": (5.44, 1.01),
    "bio17": (4.28, 1.48),
    "bio18": (5.37, 1.0),
    "bio19": (4.4, 1.3),
    "pet": (6.78, 0.816),
    "aridity": (0.0163, 1.14),
    "gdd5": (7.98, 1.5),
    "pzi": (0.0, 0.272),
    "elevation": (625.0, 649.0),
    "slope": (1.39, 0.713),
    "twi": (8.23, 1.73),
    "bedrock_depth": (8.6, 2.76),
    "sand_0_30": (45.5, 24.0),
    "sand_30_100": (39.3, 23.2),
    "sand_100_200": (33.1, 21.9),
    "silt_0_30": (28.5, 21.0),
    "silt_30_100": (28.6, 20.9),
    "silt_100_200": (28.2, 20.9),
    "clay_0_30": (16.0, 16.7),
    "clay_30_100": (21.2, 19.0),
    "clay_100_200": (27.4, 21.0),
    "ph_0_30": (6.28, 1.31),
    "ph_30_100": (6.53, 1.24),
    "ph_100_200": (6.75, 1.22),
    "bulk_density_0_30": (1.22, 0.156),
    "bulk_density_30_100": (1.31, 0.1),
    "bulk_density_100_200": (1.39, 0.0831),
    "cec_0_30": (2.8, 0.574),
    "cec_30_100": (2.71, 0.524),
    "cec_100_200": (2.79, 0.546),
    "cfvo_0_30": (10.5, 5.17),
    "cfvo_30_100": (14.5, 5.19),
    "cfvo_100_200": (18.5, 5.19),
    "nitrogen_0_30": (0.295, 0.487),
    "nitrogen_30_100": (-0.148, 0.448),
    "nitrogen_100_200": (-0.54, 0.403),
    "lc_forest": (0.458, 0.29),
    "lc_grass": (0.207, 0.162),
    "lc_crop": (0.0525, 0.115),
    "lc_shrub": (0.0965, 0.109),
    "lc_bare": (0.0371, 0.0862),
    "npp": (5.85, 0.836),
    "ndvi": (0.491, 0.219),
    "lai": (2.13, 1.42),
    "abs_lat": (33.0, 21.8),
}

COVARIATES: tuple[str, ...] = tuple(row[0] for row in _TABLE)
"""Names of the covariates, in the order of every covariate axis."""
COVARIATE_UNITS: dict[str, str] = {row[0]: row[1] for row in _TABLE}
"""Units of each covariate."""
COVARIATE_DESCRIPTIONS: dict[str, str] = {row[0]: row[2] for row in _TABLE}
"""What each covariate is."""


# ---------------------------------------------------------------------------
# seeds and smooth random fields on the sphere
# ---------------------------------------------------------------------------


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _rng(seed: int, *keys) -> np.random.Generator:
    """A generator for one purpose: the world seed plus stable hashes of ``keys``."""
    entropy = [int(seed)] + [zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x)))


def _unit_vectors(lat, lon) -> np.ndarray:
    phi, lam = np.deg2rad(lat), np.deg2rad(lon)
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=-1)


# wavenumber range (radians per unit of chord length on the unit sphere) of each named field:
# 1.5-4 gives continent-sized patterns, 3-8 (the default of fields not listed) regional ones
_FIELD_WAVENUMBERS = {
    "land": (2.0, 5.0),
    "sampling": (1.5, 4.0),
    "ridge": (2.0, 5.0),
    "elev": (1.5, 4.0),
    "rough": (3.0, 8.0),
    "temp": (2.0, 6.0),
    "tamp": (2.0, 6.0),
    "prec": (2.0, 6.0),
    "pseas": (2.0, 5.0),
    "pphase": (2.0, 5.0),
    "dtr": (2.0, 6.0),
    "damp": (2.0, 6.0),
    "twi": (4.0, 10.0),
    "bedrock": (4.0, 10.0),
    "npp": (3.0, 8.0),
}
_N_WAVES = 24


def _field(seed: int, name: str, xyz: np.ndarray) -> np.ndarray:
    """A smooth random field of about unit variance at the points ``xyz`` (unit vectors).

    A sum of 24 plane waves ``cos(k v . x + phase)`` with random directions v,
    wavenumbers k in the field's range (amplitude ~ 1/k) and phases; the same
    (seed, name) always gives the same field, evaluated anywhere.
    """
    k_lo, k_hi = _FIELD_WAVENUMBERS.get(name, (3.0, 8.0))
    rng = _rng(seed, "field", name)
    v = rng.standard_normal((_N_WAVES, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    k = rng.uniform(k_lo, k_hi, _N_WAVES)
    phase = rng.uniform(0.0, 2.0 * np.pi, _N_WAVES)
    amp = 1.0 / k
    amp *= np.sqrt(2.0 / np.sum(amp**2))
    return np.cos(xyz @ (v * k[:, None]).T + phase) @ amp


def _land_threshold(seed: int) -> float:
    """Level of the land field above which a point is land: LAND_FRACTION of the globe's
    area within LAT_RANGE, measured on a fixed 1-degree reference grid (so that the
    continents are the same at every resolution)."""
    lat = np.arange(-89.5, 90.0, 1.0)
    lon = np.arange(-179.5, 180.0, 1.0)
    band = lat[(lat >= LAT_RANGE[0]) & (lat <= LAT_RANGE[1])]
    la, lo = np.meshgrid(band, lon, indexing="ij")
    f = _field(seed, "land", _unit_vectors(la.ravel(), lo.ravel()))
    area = np.repeat(np.cos(np.deg2rad(band)), lon.size)
    order = np.argsort(-f)
    cum = np.cumsum(area[order])
    total = np.cos(np.deg2rad(lat)).sum() * lon.size
    return float(f[order][np.searchsorted(cum, LAND_FRACTION * total)])


# ---------------------------------------------------------------------------
# WorldClim bioclimatic variables
# ---------------------------------------------------------------------------


def bioclim(t_mean, t_range, precip) -> np.ndarray:
    """WorldClim's 19 bioclimatic variables from monthly climate.

    Parameters
    ----------
    t_mean:
        Monthly mean temperature (degC), shape (..., 12): the mean of the
        monthly mean daily maximum and minimum.
    t_range:
        Monthly mean diurnal temperature range (degC, max - min), (..., 12).
    precip:
        Monthly precipitation (mm), (..., 12).

    Returns
    -------
    numpy.ndarray
        (..., 19): ``bio1`` ... ``bio19`` in the order of :data:`BIOCLIM`, with
        the definitions of ``dismo::biovars`` (the code behind WorldClim's
        layers): monthly maximum = t_mean + t_range / 2, minimum = t_mean -
        t_range / 2; quarters are the 12 runs of three consecutive months,
        wrapping December -> January; a tie picks the first quarter from
        January on; standard deviations use n - 1; bio15 is the coefficient
        of variation of (precip + 1 mm), in %.
    """
    t = np.asarray(t_mean, dtype=float)
    r = np.asarray(t_range, dtype=float)
    p = np.asarray(precip, dtype=float)
    if t.shape[-1:] != (N_MONTHS,) or r.shape != t.shape or p.shape != t.shape:
        raise ValueError(
            f"bioclim needs t_mean, t_range and precip of one shape (..., 12); got {t.shape}, {r.shape}, {p.shape}"
        )
    tmax, tmin = t + r / 2.0, t - r / 2.0
    quarter = (np.arange(N_MONTHS)[:, None] + np.arange(3)[None, :]) % N_MONTHS  # (12 quarters, 3 months)
    tq = t[..., quarter].mean(-1)
    pq = p[..., quarter].sum(-1)

    def at(values, index):
        return np.take_along_axis(values, index[..., None], -1)[..., 0]

    wet, dry = pq.argmax(-1), pq.argmin(-1)
    warm, cold = tq.argmax(-1), tq.argmin(-1)
    bio2 = r.mean(-1)
    bio5, bio6 = tmax.max(-1), tmin.min(-1)
    bio7 = bio5 - bio6
    p1 = p + 1.0
    out = [
        t.mean(-1),  # 1
        bio2,  # 2
        100.0 * bio2 / np.where(bio7 > 0, bio7, np.nan),  # 3
        100.0 * t.std(-1, ddof=1),  # 4
        bio5,  # 5
        bio6,  # 6
        bio7,  # 7
        at(tq, wet),  # 8
        at(tq, dry),  # 9
        at(tq, warm),  # 10
        at(tq, cold),  # 11
        p.sum(-1),  # 12
        p.max(-1),  # 13
        p.min(-1),  # 14
        100.0 * p1.std(-1, ddof=1) / p1.mean(-1),  # 15
        pq.max(-1),  # 16
        pq.min(-1),  # 17
        at(pq, warm),  # 18
        at(pq, cold),  # 19
    ]
    return np.stack(out, axis=-1)


# ---------------------------------------------------------------------------
# the environment of a set of points: climate, soil, land cover
# ---------------------------------------------------------------------------


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _environment(lat, lon, seed: int, threshold: float, local: np.random.Generator | None = None) -> dict:
    """Everything about the points (lat, lon): monthly climate, covariates and the
    hidden quantities the forcing needs.  ``local`` (sites only) adds small
    point-scale perturbations to the smooth fields."""
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    n = lat.size
    xyz = _unit_vectors(lat, lon)

    def F(name):
        return _field(seed, name, xyz)

    def noise(sd, shape=None):
        if local is None:
            return np.zeros(n if shape is None else shape)
        return local.normal(0.0, 1.0, n if shape is None else shape) * sd

    alat = np.abs(lat)
    hemi = np.tanh(lat / 4.0)  # +1 north, -1 south, 0 at the equator: the sign of the seasons
    cont = np.tanh(np.clip(F("land") - threshold, 0.0, None) / 0.6)  # continentality 0 (coast) .. 1

    # --- topography --------------------------------------------------------
    f_elev = F("elev")
    ridge = np.exp(-((F("ridge") / 0.25) ** 2))  # mountain chains along the zero line of a field
    elev = 50.0 + 400.0 * cont + 900.0 * _sigmoid(1.5 * f_elev - 0.5) + 2800.0 * ridge * _sigmoid(1.5 * f_elev + 0.5)
    elev = np.maximum(elev + noise(1.0) * (60.0 + 0.05 * elev), 0.0)
    slope = (0.3 + 2.0 * _sigmoid(2.0 * F("rough")) + 14.0 * ridge + 0.002 * elev) * np.exp(noise(0.25))
    twi = np.clip(11.0 - 1.8 * np.log1p(slope) + 1.2 * F("twi") + noise(0.5), 2.0, 20.0)

    # --- air temperature (degC), monthly ------------------------------------
    m = np.arange(N_MONTHS, dtype=float)[None, :]
    peak = (6.5 + 0.5 * (1.0 - cont))[:, None]  # month index (0 = January) of the northern summer maximum
    season = 2.0 * np.pi * (m - peak) / N_MONTHS
    t_lat = -14.0 + 41.0 * np.cos(np.deg2rad(lat)) ** 1.3
    t_ann = t_lat - 5.0 * cont * (alat / 70.0) ** 2 - 0.0065 * elev + 1.2 * F("temp") + noise(0.2)
    amp = (0.8 + alat * (0.12 + 0.26 * cont)) * np.exp(0.1 * F("tamp"))
    equatorial = 0.6 * np.exp(-((lat / 12.0) ** 2))  # two warm seasons near the equator
    t_air = (
        t_ann[:, None]
        + (amp * hemi)[:, None] * np.cos(season)
        + 0.1 * amp[:, None] * np.cos(2.0 * season)
        + equatorial[:, None] * np.cos(4.0 * np.pi * (m - 3.3) / N_MONTHS)
    )
    t_air += t_ann[:, None] - t_air.mean(1, keepdims=True)  # exact annual mean
    # no ice caps: the warmest month is at least about 2 degC (a smooth floor)
    t_air += np.logaddexp(0.0, 2.0 - t_air.max(1))[:, None]
    t_ann = t_air.mean(1)

    # --- precipitation (mm), monthly ----------------------------------------
    p_lat = 200.0 + 2400.0 * np.exp(-0.5 * ((lat - 5.0) / 8.0) ** 2)
    p_lat = p_lat + 900.0 * np.exp(-0.5 * ((alat - 50.0) / 10.0) ** 2)
    p_ann = p_lat * (1.3 - 0.7 * cont) * np.exp(0.55 * F("prec")) * (1.0 + 0.3 * ridge) * np.exp(noise(0.05))
    med = _sigmoid((alat - 30.0) / 2.0) * _sigmoid((42.0 - alat) / 2.0) * (1.0 - cont)  # winter rains
    strength = np.clip(
        1.2 * np.exp(-0.5 * ((alat - 14.0) / 6.0) ** 2)
        + (0.25 + 0.35 * cont) * (1.0 - np.exp(-((alat / 20.0) ** 2)))
        + 0.6 * med
        + 0.15 * F("pseas"),
        0.0,
        1.4,
    )
    shift = 0.7 * F("pphase")
    p_wave = (strength * hemi * (1.0 - 2.0 * med))[:, None] * np.cos(season - 2.0 * np.pi * shift[:, None] / N_MONTHS)
    p_semi = 0.4 * np.exp(-((lat / 8.0) ** 2))[:, None] * np.cos(4.0 * np.pi * (m - 3.5) / N_MONTHS)
    w = np.maximum(1.0 + p_wave + p_semi, 0.03)
    precip = p_ann[:, None] * w / w.sum(1, keepdims=True)

    # --- evaporative demand, moisture, diurnal range --------------------------
    pet_m = 4.7 * np.maximum(t_air + 3.0, 0.0)
    pet = pet_m.sum(1)
    aridity = p_ann / np.maximum(pet, 100.0)
    moist = precip / (precip + pet_m + 1.0)  # monthly moisture index in (0, 1)
    dtr = np.clip(7.0 + 7.0 * (1.0 - moist) + 2.0 * cont[:, None] + F("dtr")[:, None], 3.0, 20.0)
    dtr = dtr + noise(0.3)[:, None]
    gdd5 = np.maximum(t_air - 5.0, 0.0).sum(1) * DAYS_PER_MONTH

    # --- ground surface temperature, permafrost -------------------------------
    insulation = 0.3 + 0.25 * (1.0 - np.exp(-p_ann / 400.0))  # snow cover keeps the ground warmer in winter
    t_ground = t_air + 1.0 - insulation[:, None] * np.minimum(t_air, 0.0)
    t_ground_mean = t_ground.mean(1)
    pzi = _sigmoid(-(t_ground_mean + 1.0) / 0.8)

    # --- soil ---------------------------------------------------------------
    log_ar = np.log(aridity)
    organic = _sigmoid(2.0 * log_ar) * _sigmoid((5.0 - t_ann) / 4.0)  # cold and wet: organic-rich topsoil
    depth = np.arange(len(SOIL_DEPTHS), dtype=float)[None, :]
    tex_noise = noise(0.2, (n, 3))
    logits = np.stack(
        [
            0.6 + 0.9 * F("sand")[:, None] + 0.8 * np.tanh(-log_ar)[:, None] - 0.15 * depth,
            0.1 + 0.7 * F("silt")[:, None] + 0.3 * organic[:, None] + 0.0 * depth,
            -0.2 + 0.8 * F("clay")[:, None] + 0.5 * np.tanh((t_ann - 15.0) / 8.0)[:, None] + 0.25 * depth,
        ],
        axis=-1,
    )  # (n, depth, texture)
    logits = logits + tex_noise[:, None, :] + noise(0.08, (n, 3, 3))
    texture = 100.0 * _softmax(logits)
    sand, silt, clay = texture[..., 0], texture[..., 1], texture[..., 2]
    org_d = organic[:, None] * np.exp(-depth)
    ph = np.clip(
        8.2 - 3.0 * _sigmoid(2.5 * np.log(aridity / 0.8))[:, None] + 0.4 * F("ph")[:, None] + 0.2 * depth
        - 0.5 * org_d + noise(0.15)[:, None],
        3.5,
        9.5,
    )
    bulk = np.clip(
        1.25 + 0.0025 * (sand - 40.0) + 0.08 * depth - 0.35 * org_d + 0.06 * F("bd")[:, None] + noise(0.03)[:, None],
        0.4,
        1.85,
    )
    cec = np.maximum(2.0 + 0.45 * clay + 25.0 * org_d + 2.0 * F("cec")[:, None], 1.0) * np.exp(noise(0.1))[:, None]
    cfvo = np.clip(3.0 + 25.0 * _sigmoid(slope / 8.0 - 1.5)[:, None] + 4.0 * depth + 4.0 * F("cfvo")[:, None]
                   + noise(2.0)[:, None], 0.0, 70.0)
    nitrogen = (0.4 + 2.5 * organic + 0.5 * _sigmoid(F("nitro")))[:, None] * np.exp(-0.7 * depth)
    nitrogen = (nitrogen + 0.015 * clay * np.exp(-0.3 * depth)) * np.exp(noise(0.1))[:, None]

    # --- land cover, vegetation --------------------------------------------
    gauss = lambda x, s: np.exp(-0.5 * (x / s) ** 2)  # noqa: E731
    lc_logits = np.stack(
        [
            1.5 * np.tanh(np.log(aridity / 0.5)) + 1.5 * np.tanh((gdd5 - 700.0) / 500.0) + 0.7 * F("lc_forest"),
            0.3 + 0.8 * gauss(np.log(aridity / 0.4), 0.6) + 0.6 * F("lc_grass"),
            -0.8 + 1.2 * F("lc_crop") + 0.8 * gauss(t_ann - 12.0, 7.0) + 0.5 * gauss(np.log(aridity / 0.8), 0.5)
            - 0.08 * slope,
            -0.3 + 1.0 * gauss(np.log(aridity / 0.2), 0.5) + 0.8 * gauss(gdd5 - 400.0, 300.0) + 0.5 * F("lc_shrub"),
            -1.0 + 2.5 * _sigmoid(-3.0 * np.log(aridity / 0.08)) + 2.0 * _sigmoid(-(gdd5 - 150.0) / 60.0)
            + 0.5 * F("lc_bare"),
        ],
        axis=-1,
    )
    cover = _softmax(lc_logits + noise(0.25, (n, len(LAND_COVERS))))
    npp_t = 3000.0 / (1.0 + np.exp(1.315 - 0.119 * t_ann))  # Miami model, g dry matter m-2 yr-1
    npp_p = 3000.0 * (1.0 - np.exp(-0.000664 * p_ann))
    npp = 0.47 * np.minimum(npp_t, npp_p) * (1.0 - 0.8 * cover[:, 4]) * np.exp(0.1 * F("npp") + noise(0.1))
    npp = np.maximum(npp, 30.0)
    ndvi = np.clip(0.05 + 0.85 * (1.0 - np.exp(-npp / 450.0)) * (1.0 - 0.7 * cover[:, 4]), 0.0, 0.95)
    lai = 0.2 + 6.5 * cover[:, 0] * (1.0 - np.exp(-npp / 600.0)) + 2.5 * (
        cover[:, 1] + cover[:, 2] + 0.6 * cover[:, 3]
    ) * (1.0 - np.exp(-npp / 400.0))

    # --- bedrock -------------------------------------------------------------
    rock = 1.1 * F("bedrock") + 0.06 * slope
    shallow = rock > 1.8
    rock_depth = 0.3 + 2.0 * _sigmoid(2.5 * (1.8 - rock) + 1.0)
    levels = np.clip(np.searchsorted(np.asarray(ZISOI), rock_depth, side="right"), 5, 19)
    nbedrock = np.where(shallow, levels, N_LAYERS)
    bedrock_depth = np.asarray(ZISOI)[nbedrock - 1]

    bio = bioclim(t_air, dtr, precip)
    columns = {name: bio[:, i] for i, name in enumerate(BIOCLIM)}
    columns.update(pet=pet, aridity=aridity, gdd5=gdd5, pzi=pzi, elevation=elev, slope=slope, twi=twi,
                   bedrock_depth=bedrock_depth)
    soil = dict(sand=sand, silt=silt, clay=clay, ph=ph, bulk_density=bulk, cec=cec, cfvo=cfvo, nitrogen=nitrogen)
    for prop in SOIL_PROPERTIES:
        for j, d in enumerate(SOIL_DEPTHS):
            columns[f"{prop}_{d}"] = soil[prop][:, j]
    for j, lc in enumerate(LAND_COVERS):
        columns[f"lc_{lc}"] = cover[:, j]
    columns.update(npp=npp, ndvi=ndvi, lai=lai, abs_lat=alat)
    covariates = np.stack([columns[name] for name in COVARIATES], axis=1)

    return dict(
        covariates=covariates,
        t_air=t_air,
        dtr=dtr,
        t_ground=t_ground,
        precip=precip,
        moist=moist,
        aridity=aridity,
        twi=twi,
        t_ann=t_ann,
        hemi=hemi,
        peak=peak[:, 0],
        damping=(1.5 + 1.5 * _sigmoid(F("damp"))) * (0.4 + 0.6 * _sigmoid(t_ground_mean / 1.5)),
        nitrogen_top=nitrogen[:, 0],
        cover=cover,
        npp=npp,
        sand=sand,
        nbedrock=nbedrock,
    )


# ---------------------------------------------------------------------------
# monthly forcing consistent with the environment
# ---------------------------------------------------------------------------

_FORCING_CHUNK = 8192


def _sand_profile(sand: np.ndarray) -> np.ndarray:
    """CELLSAND (n, layer): the three depth intervals interpolated linearly between their
    middles (0.15, 0.65, 1.5 m) at the layer nodes, constant above and below."""
    z = np.asarray(ZSOI)
    weights = np.stack([np.interp(z, _SOIL_MID, np.eye(3)[k]) for k in range(3)], axis=1)  # (layer, 3)
    return np.clip(sand @ weights.T, 0.0, 100.0)


def _forcing_arrays(env: dict, lo: int, hi: int) -> dict[str, np.ndarray]:
    """Forcing variables (file names) of points lo:hi of ``env``."""
    sl = slice(lo, hi)
    n = hi - lo
    z = np.asarray(ZSOI)[None, None, :]
    m = np.arange(N_MONTHS, dtype=float)[None, :, None]
    ground = env["t_ground"][sl]

    # soil temperature: every harmonic of the ground-surface series damped by
    # exp(-z sqrt(k) / d) and delayed by z sqrt(k) / d (the heat equation's
    # periodic solution), on top of the annual mean and a geothermal gradient
    mean = ground.mean(1)
    spectrum = np.fft.rfft(ground - mean[:, None], axis=1)  # (n, 7)
    k = np.arange(spectrum.shape[1], dtype=float)
    d = env["damping"][sl]
    scale = np.sqrt(k)[None, :, None] / d[:, None, None] * np.asarray(ZSOI)[None, None, :]  # (n, 7, layer)
    wave = np.fft.irfft(spectrum[:, :, None] * np.exp(-(1.0 + 1.0j) * scale), n=N_MONTHS, axis=1)
    tsoi = T_FREEZE + mean[:, None, None] + _GEOTHERMAL * z + wave
    frozen = tsoi <= T_FREEZE

    # water scalar: the monthly moisture index at the surface, its seasonal swing fading with depth
    surface = np.clip(1.3 * env["moist"][sl] ** 0.8 - 0.1, 0.0, 1.0)
    w_bar = surface.mean(1)
    w = w_bar[:, None, None] + (surface - w_bar[:, None])[:, :, None] * np.exp(-z / 1.0)
    floor = 0.05 + 0.15 * np.clip(env["aridity"][sl], 0.0, 1.0)
    w = np.maximum(w, floor[:, None, None] * (1.0 - np.exp(-z / 0.3)))
    w = np.where(frozen, np.maximum(0.2 * w, 0.05), w)
    w = np.clip(w, 0.0, 1.0)
    wettest = np.argmax(w, axis=1)[:, None, :]  # every layer decomposes in some month
    np.put_along_axis(w, wettest, np.maximum(np.take_along_axis(w, wettest, axis=1), 0.05), axis=1)

    # oxygen: wet soils and wet terrain (high TWI) limit it at depth
    wetness = np.clip(w.mean(axis=1, keepdims=True) - 0.5 + 0.04 * (env["twi"][sl] - 9.0)[:, None, None], 0.0, None)
    o = np.broadcast_to(np.clip(1.0 - 1.6 * wetness * (1.0 - np.exp(-z / 0.8)), 0.2, 1.0), (n, N_MONTHS, N_LAYERS))

    # nitrogen limitation: from temperature and topsoil nitrogen, easing with depth and outside the growing season
    fpi0 = 0.15 + 0.55 * _sigmoid(0.12 * (env["t_ann"][sl] - 8.0) + 0.8 * (env["nitrogen_top"][sl] - 1.5))
    phase = 2.0 * np.pi * (m - env["peak"][sl][:, None, None]) / N_MONTHS
    growing = np.clip(env["hemi"][sl][:, None, None] * np.cos(phase), 0.0, None)
    fpi0 = fpi0[:, None, None]
    fpi = np.clip(fpi0 + (1.0 - fpi0) * 0.85 * (1.0 - np.exp(-z / 0.6)) - 0.1 * growing * np.exp(-z / 0.3), 0.05, 1.0)

    alt = active_layer_depth(tsoi)
    altmax = np.maximum.accumulate(alt, axis=1)
    altmax_lastyear = np.repeat(alt.max(axis=1, keepdims=True), N_MONTHS, axis=1)

    # carbon input: the annual NPP, split by land cover, spread over the growing season
    t_air = env["t_air"][sl]
    growth = _sigmoid((t_air - 3.0) / 2.5) * (0.15 + 0.85 * np.minimum(1.0, 2.0 * env["moist"][sl]))
    weights = (growth + 0.01) / (growth + 0.01).sum(1, keepdims=True)
    cover = env["cover"][sl]
    cwd = 0.02 + 0.33 * cover[:, 0] + 0.05 * cover[:, 3]
    metabolic = 0.25 + 0.2 * (cover[:, 1] + cover[:, 2])
    lignin = 0.12 + 0.13 * cover[:, 0]
    cellulose = 1.0 - metabolic - lignin
    annual = np.stack([cwd, (1 - cwd) * metabolic, (1 - cwd) * cellulose, (1 - cwd) * lignin], axis=1)
    monthly = (env["npp"][sl, None] * annual)[:, :, None] * weights[:, None, :]

    return dict(
        TSOI=tsoi,
        W_SCALAR=w,
        O_SCALAR=np.ascontiguousarray(o),
        FPI_vr=fpi,
        ALTMAX=altmax,
        ALTMAX_LASTYEAR=altmax_lastyear,
        nbedrock=np.repeat(env["nbedrock"][sl, None], N_MONTHS, axis=1),
        CWD_INPUT=monthly[:, 0],
        LITR1_INPUT=monthly[:, 1],
        LITR2_INPUT=monthly[:, 2],
        LITR3_INPUT=monthly[:, 3],
        CELLSAND=_sand_profile(env["sand"][sl]),
    )


def _forcing(env: dict, labels) -> Forcing:
    n = env["covariates"].shape[0]
    parts = [_forcing_arrays(env, lo, min(lo + _FORCING_CHUNK, n)) for lo in range(0, n, _FORCING_CHUNK)]
    values = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    return Forcing.from_variables(values, site_labels=labels)


# ---------------------------------------------------------------------------
# hidden maps: covariates -> true parameters
# ---------------------------------------------------------------------------

_RHO_RANGE = (0.12, 0.25)
"""Range of COMPAS's rho = p_death_soc tau_decom tau_enz_prod / (tau_enz_decay tau_mic_death) in the world."""

# parameter -> (u_lo, u_hi, ((covariate, sign), ...)): u rises with the covariate for
# sign +1 and falls for sign -1.  Each parameter also gets one seed-chosen covariate
# through a sine, with a small weight.
_HIDDEN: dict[str, dict[str, tuple[float, float, tuple[tuple[str, int], ...]]]] = {
    "clm5": {
        "bio": (0.15, 0.85, (("bio1", +1), ("aridity", +1), ("ph_0_30", +1))),
        "cryo": (0.15, 0.85, (("pzi", +1), ("bio7", +1))),
        "q10": (0.15, 0.85, (("bio1", -1), ("bio4", +1))),
        "efolding": (0.45, 0.9, (("bulk_density_30_100", -1), ("clay_30_100", +1), ("lc_forest", +1))),
        "tau_cwd": (0.15, 0.85, (("bio1", -1), ("bio12", -1))),
        "tau_l1": (0.15, 0.85, (("bio1", -1), ("lc_grass", -1))),
        "tau_l2_l3": (0.15, 0.85, (("lc_forest", +1), ("bio12", -1))),
        "tau_s1": (0.15, 0.85, (("clay_0_30", +1), ("bio1", -1))),
        "tau_s2": (0.1, 0.6, (("clay_0_30", +1), ("cec_0_30", +1), ("ph_0_30", -1))),
        "tau_s3": (0.1, 0.6, (("clay_30_100", +1), ("bio1", -1), ("pzi", +1))),
        "f_l1_s1": (0.15, 0.85, (("npp", +1), ("lc_crop", -1))),
        "f_l2_s1": (0.15, 0.85, (("lc_forest", -1), ("sand_0_30", -1))),
        "f_l3_s2": (0.15, 0.85, (("lc_forest", +1), ("nitrogen_0_30", +1))),
        "f_s1_s2": (0.15, 0.85, (("sand_0_30", -1), ("clay_0_30", +1))),
        "f_s1_s3": (0.15, 0.85, (("clay_30_100", +1), ("bio1", -1))),
        "f_s2_s1": (0.15, 0.85, (("sand_30_100", +1), ("ph_30_100", +1))),
        "f_s2_s3": (0.15, 0.85, (("clay_100_200", +1), ("cec_100_200", +1))),
        "f_s3_s1": (0.15, 0.85, (("ph_30_100", +1), ("bio12", +1))),
        "f_cwd_l2": (0.15, 0.85, (("lc_forest", -1), ("bio1", +1))),
        "w_scaling": (0.3, 0.9, (("aridity", -1), ("bio15", +1))),
        "beta": (0.15, 0.85, (("lc_shrub", +1), ("aridity", -1), ("lc_crop", -1))),
    },
    "compas": {
        "bio": (0.15, 0.85, (("bio1", +1), ("aridity", +1), ("ph_0_30", +1))),
        "cryo": (0.15, 0.85, (("pzi", +1), ("bio7", +1))),
        "q10": (0.1, 0.55, (("bio1", +1), ("bio4", -1))),
        "w_scaling": (0.4, 0.9, (("aridity", -1), ("bio1", -1), ("bio15", +1))),
        "tau_cwd": (0.15, 0.85, (("bio1", -1), ("bio12", -1))),
        "tau_l1": (0.15, 0.85, (("bio1", -1), ("lc_grass", -1))),
        "tau_l2_l3": (0.15, 0.85, (("lc_forest", +1), ("bio12", -1))),
        "tau_assim": (0.15, 0.85, (("bio1", -1), ("ph_0_30", -1))),
        "tau_mic_death": (0.15, 0.85, (("bio1", -1), ("nitrogen_0_30", +1))),
        "tau_enz_prod": (0.15, 0.85, (("nitrogen_0_30", -1), ("ph_0_30", +1))),
        # tau_enz_decay is tied to four others through rho (see _RHO_RANGE): this row maps rho
        "tau_enz_decay": _RHO_RANGE + ((("bio1", -1), ("clay_0_30", +1)),),
        "tau_decom": (0.15, 0.85, (("clay_0_30", +1), ("cec_0_30", +1))),
        "km_assim": (0.15, 0.85, (("clay_0_30", +1), ("bulk_density_0_30", +1))),
        "km_decom": (0.1, 0.6, (("bio1", -1), ("clay_30_100", +1), ("cec_30_100", +1))),
        "f_cwd_l2": (0.15, 0.85, (("lc_forest", -1), ("bio1", +1))),
        "p_l1_doc": (0.15, 0.85, (("bio12", +1), ("sand_0_30", +1))),
        "p_l2_doc": (0.15, 0.85, (("bio12", +1), ("lc_grass", +1))),
        "p_l3_soc": (0.15, 0.85, (("clay_0_30", +1), ("cec_0_30", +1))),
        "cue_l1": (0.15, 0.85, (("bio1", -1), ("nitrogen_0_30", +1))),
        "cue_l2_l3": (0.15, 0.85, (("bio1", -1), ("ph_0_30", +1))),
        "cue_doc": (0.15, 0.85, (("bio1", -1), ("nitrogen_0_30", +1), ("ph_0_30", +1))),
        "p_death_soc": (0.15, 0.85, (("clay_0_30", +1), ("cec_0_30", +1))),
        "beta": (0.15, 0.85, (("lc_shrub", +1), ("aridity", -1), ("lc_crop", -1))),
    },
}
_HIDDEN_GAIN = 1.3  # root-sum-square of the weights: the sigmoid's argument has a spread of about 1
_TRANSFORMS = ("identity", "tanh", "sin")


def _model_key(model) -> str:
    from ._registry import model_name

    return model_name(model)


def _model_instance(key: str):
    from ._registry import model

    return model(key)


def _standardise(covariates: np.ndarray) -> np.ndarray:
    x = np.array(covariates, dtype=float, copy=True)
    for j, (name, _, _, offset) in enumerate(_TABLE):
        centre, scale = _SCALING[name]
        if offset is not None:
            x[..., j] = np.log(np.maximum(x[..., j], 0.0) + offset)
        x[..., j] = (x[..., j] - centre) / scale
    return x


def hidden_map(model: str, *, seed: int = 0) -> list[dict]:
    """The terms of the hidden map of each parameter of ``model`` ('clm5' or 'compas').

    One dict per parameter (in the model's order) with ``name``, ``u_range``
    (lo, hi), ``intercept`` and ``terms``: a list of (covariate, transform,
    weight, phase) where transform is 'identity', 'tanh' or 'sin' and the
    phase is used by 'sin' only.  See :func:`hidden_parameters`.
    """
    key = _model_key(model)
    seed = _check_seed(seed)
    names = _model_instance(key).param_names
    spec = _HIDDEN[key]
    out = []
    for name in names:
        lo, hi, named = spec[name]
        rng = _rng(seed, "hidden", key, name)
        terms = []
        for cov, sign in named:
            transform = _TRANSFORMS[int(rng.integers(0, 2))]  # monotone: identity or tanh
            terms.append([cov, transform, float(sign * rng.uniform(0.6, 1.0)), 0.0])
        used = {cov for cov, _ in named}
        free = [c for c in COVARIATES if c not in used]
        extra = free[int(rng.integers(0, len(free)))]
        terms.append([extra, "sin", float(rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.4)),
                      float(rng.uniform(0.0, 2.0 * np.pi))])
        norm = np.sqrt(sum(t[2] ** 2 for t in terms))
        for t in terms:
            t[2] *= _HIDDEN_GAIN / norm
        out.append(dict(name=name, u_range=(lo, hi), intercept=float(rng.uniform(-0.3, 0.3)),
                        terms=[tuple(t) for t in terms]))
    return out


def hidden_parameters(model, covariates, *, seed: int = 0) -> np.ndarray:
    """The true scaled parameters u of ``model`` from covariates: the world's hidden map.

    Parameters
    ----------
    model:
        ``"clm5"`` or ``"compas"`` (or a :class:`soiljax.CLM5` / :class:`soiljax.COMPAS`).
    covariates:
        (..., 60) in the order of :data:`COVARIATES`, in :data:`COVARIATE_UNITS`.
    seed:
        Seed of the map's weights (:func:`synthetic_world` uses its own seed).

    Returns
    -------
    numpy.ndarray
        (..., n_params) in (0, 1): ``u_k = lo_k + (hi_k - lo_k) sigmoid(a_k +
        sum_j w_kj s_kj(x'_j))`` with x' the standardised covariates
        (:func:`standardised_covariates`) and s in {identity, tanh, sin}; the
        terms are those of :func:`hidden_map`.  Smooth in every covariate.
    """
    key = _model_key(model)
    x = np.asarray(covariates, dtype=float)
    if x.shape[-1:] != (len(COVARIATES),):
        raise ValueError(
            f"covariates must have shape (..., {len(COVARIATES)}) in the order of soiljax.world.COVARIATES; "
            f"got {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x.reshape(-1, x.shape[-1])))[0]
        raise ValueError(
            f"covariates contain NaN or inf (row {bad[0]}, covariate {COVARIATES[bad[1]]!r}); "
            "hidden parameters exist on land only: drop ocean cells (the grid's NaN) first"
        )
    xs = _standardise(x)
    index = {c: j for j, c in enumerate(COVARIATES)}
    out = []
    for p in hidden_map(key, seed=seed):
        arg = np.full(x.shape[:-1], p["intercept"])
        for cov, transform, weight, phase in p["terms"]:
            v = xs[..., index[cov]]
            if transform == "tanh":
                v = np.tanh(v)
            elif transform == "sin":
                v = np.sin(v + phase)
            arg = arg + weight * v
        lo, hi = p["u_range"]
        out.append(lo + (hi - lo) * _sigmoid(arg))
    u = np.stack(out, axis=-1)
    if key == "compas":
        u = _tie_enzyme_decay(u)
    return u


def _tie_enzyme_decay(u: np.ndarray) -> np.ndarray:
    """Replace COMPAS's tau_enz_decay column (which holds rho on entry) by the u that gives
    that rho with the other four parameters, softly kept inside (0.05, 0.95)."""
    from ._params import COMPAS_SPACE

    ix = {n: i for i, n in enumerate(COMPAS_SPACE.names)}
    lo, hi = COMPAS_SPACE.lo, COMPAS_SPACE.hi

    def phys(name):
        k = ix[name]
        return lo[k] + u[..., k] * (hi[k] - lo[k])

    rho = u[..., ix["tau_enz_decay"]]
    tau = phys("p_death_soc") * phys("tau_decom") * phys("tau_enz_prod") / (rho * phys("tau_mic_death"))
    k = ix["tau_enz_decay"]
    raw = (np.log10(tau) - lo[k]) / (hi[k] - lo[k])
    out = u.copy()
    out[..., k] = 0.5 + 0.45 * np.tanh((raw - 0.5) / 0.45)
    return out


def standardised_covariates(covariates) -> np.ndarray:
    """Covariates as the hidden maps see them: log-transformed where the table says so,
    then centred and scaled by fixed constants (:data:`COVARIATE_STANDARDISATION`)."""
    x = np.asarray(covariates, dtype=float)
    if x.shape[-1:] != (len(COVARIATES),):
        raise ValueError(f"covariates must have shape (..., {len(COVARIATES)}); got {x.shape}")
    return _standardise(x)


COVARIATE_STANDARDISATION: dict[str, tuple[float | None, float, float]] = {
    row[0]: (row[3],) + _SCALING[row[0]] for row in _TABLE
}
"""covariate -> (log offset or None, centre, scale) used by the hidden maps."""


# ---------------------------------------------------------------------------
# the world
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class World:
    """A synthetic world: grid, land cells, sites, forcing, hidden truth and observations.

    See the module docstring for what every field holds.  Build one with
    :func:`synthetic_world`; save and load with :func:`write_world` and
    :func:`read_world`.
    """

    grid: xr.Dataset
    cells: xr.Dataset
    cell_forcing: Forcing
    sites: xr.Dataset
    site_forcing: Forcing
    u_true: dict[str, np.ndarray]
    cell_u_true: dict[str, np.ndarray]
    observations: dict[str, Observations]
    valid: dict[str, np.ndarray]

    @property
    def models(self) -> tuple[str, ...]:
        """The models of the truth (keys of :attr:`u_true`)."""
        return tuple(self.u_true)

    @property
    def n_sites(self) -> int:
        return int(self.sites.sizes["site"])

    @property
    def n_cells(self) -> int:
        return int(self.cells.sizes["cell"])

    @property
    def seed(self) -> int:
        return int(self.grid.attrs["seed"])

    @property
    def resolution(self) -> float:
        return float(self.grid.attrs["resolution"])

    def param_names(self, model: str) -> tuple[str, ...]:
        """Parameter names of ``model`` ('clm5' or 'compas'), the columns of its u arrays."""
        return tuple(_model_instance(_model_key(model)).param_names)

    def covariate_matrix(self, where: str = "sites") -> np.ndarray:
        """(n, 60) float array of covariates (columns in the order of :data:`COVARIATES`) of
        the sites (``where="sites"``) or of the land cells (``where="cells"``)."""
        if where == "sites":
            return np.asarray(self.sites["covariates"].values, dtype=float)
        if where == "cells":
            return np.asarray(self.cells["covariates"].values, dtype=float)
        raise ValueError(f"where must be 'sites' or 'cells', got {where!r}")

    def __repr__(self) -> str:
        fractions = ", ".join(f"{m} {self.valid[m].mean():.0%}" for m in self.valid)
        return (
            f"World(seed={self.seed}, resolution={self.resolution:g} deg, grid {self.grid.sizes['lat']} x "
            f"{self.grid.sizes['lon']}, {self.n_cells} land cells, {self.n_sites} sites, "
            f"{len(COVARIATES)} covariates, models {list(self.models)}; valid sites: {fractions or '-'})"
        )


def _check_resolution(resolution) -> float:
    try:
        res = float(resolution)
    except (TypeError, ValueError):
        raise ValueError(f"resolution must be a number of degrees, got {resolution!r}") from None
    if not np.isfinite(res) or res <= 0 or res > 30:
        raise ValueError(
            f"resolution must be a number of degrees in (0, 30] (e.g. 10 for tests, 1 for maps), got {resolution!r}"
        )
    rows = 180.0 / res
    if abs(rows - round(rows)) > 1e-9 * rows:
        raise ValueError(
            f"resolution {res:g} does not divide 180 degrees into whole rows; use one that does, "
            "e.g. 15, 10, 5, 2, 1, 0.5 or 0.25"
        )
    return res


def _grid_axes(res: float) -> tuple[np.ndarray, np.ndarray]:
    n_lat = int(round(180.0 / res))
    lat = -90.0 + res * (np.arange(n_lat) + 0.5)
    lon = -180.0 + res * (np.arange(2 * n_lat) + 0.5)
    return lat, lon


def _covariate_attrs() -> dict:
    return {"long_name": "environmental covariates (units in the attribute units_<name>)"} | {
        f"units_{c}": COVARIATE_UNITS[c] for c in COVARIATES
    }


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
    from .synthetic import synthetic_observations

    if isinstance(n_sites, bool) or not isinstance(n_sites, (int, np.integer)):
        raise ValueError(f"n_sites must be an integer >= 1, got {n_sites!r}")
    n_sites = int(n_sites)
    if n_sites < 1:
        raise ValueError(f"n_sites must be at least 1, got {n_sites}")
    res = _check_resolution(resolution)
    seed = _check_seed(seed)
    if isinstance(models, str):
        models = (models,)
    keys = []
    for m in models:
        key = _model_key(m)
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
    threshold = _land_threshold(seed)
    lat, lon = _grid_axes(res)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    field = _field(seed, "land", _unit_vectors(la.ravel(), lo.ravel())).reshape(la.shape)
    land = (field > threshold) & (la >= LAT_RANGE[0]) & (la <= LAT_RANGE[1])
    if not land.any():
        raise ValueError(f"the {res:g}-degree grid has no land cell for seed {seed}; use a finer resolution")
    i_lat, i_lon = np.nonzero(land)
    n_cells = i_lat.size
    cell_index = np.full(land.shape, -1, dtype=np.int64)
    cell_index[i_lat, i_lon] = np.arange(n_cells)
    stage("cell climate and covariates")
    cell_env = _environment(lat[i_lat], lon[i_lon], seed, threshold)
    cell_cov = cell_env["covariates"]
    band = np.sin(np.deg2rad(lat[i_lat] + res / 2)) - np.sin(np.deg2rad(lat[i_lat] - res / 2))
    area = np.deg2rad(res) * 6371.0**2 * band  # km2

    # --- sites ----------------------------------------------------------------
    stage("sites")
    rng = _rng(seed, "sites")
    weight = area * np.exp(0.7 * _field(seed, "sampling", _unit_vectors(lat[i_lat], lon[i_lon])))
    site_cell = rng.choice(n_cells, size=n_sites, p=weight / weight.sum())
    site_lat = lat[i_lat][site_cell] + res * (rng.random(n_sites) - 0.5)
    site_lon = lon[i_lon][site_cell] + res * (rng.random(n_sites) - 0.5)
    site_env = _environment(site_lat, site_lon, seed, threshold, local=_rng(seed, "local", n_sites))
    width = max(6, len(str(n_sites - 1)))
    site_id = np.array([f"w{seed}_{i:0{width}d}" for i in range(n_sites)])

    stage("forcing")
    cell_forcing = _forcing(cell_env, [f"cell {i}" for i in range(n_cells)])
    site_forcing = _forcing(site_env, site_id)

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
            "covariates": (("cell", "covariate"), cell_cov, _covariate_attrs()),
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
            "covariates": (("site", "covariate"), site_env["covariates"], _covariate_attrs()),
            **climate(site_env, "site"),
        },
        coords={"site": site_id, "covariate": cov_coord, "month": month},
        attrs=attrs,
    )

    # --- truth and observations ---------------------------------------------------
    u_true, cell_u, observations, valid = {}, {}, {}, {}
    for key in keys:
        stage(f"{key} truth and observations (steady states)")
        model = _model_instance(key)
        u_true[key] = hidden_parameters(key, site_env["covariates"], seed=seed)
        cell_u[key] = hidden_parameters(key, cell_cov, seed=seed)
        obs, truth = synthetic_observations(
            model,
            u_true[key],
            site_forcing,
            noise=noise,
            n_obs=(lo_n, hi_n),
            seed=int(_rng(seed, "observations", key).integers(0, 2**31 - 1)),
            site_id=site_id,
            progress=progress,
        )
        observations[key] = obs
        valid[key] = np.asarray(truth["valid"].values, dtype=bool)
    stage.close()
    return World(grid, cells, cell_forcing, sites, site_forcing, u_true, cell_u, observations, valid)


# ---------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------

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
    from .io import _write, write_forcing, write_observations

    if not isinstance(world, World):
        raise TypeError(f"write_world needs a World (from synthetic_world or read_world), got {type(world).__name__}")
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{str(out)!r} is a file; write_world needs a directory (it writes several files)")
    out.mkdir(parents=True, exist_ok=True)
    attrs = dict(world.grid.attrs)
    _write(world.grid, out / "grid.nc")
    _write(world.cells, out / "cells.nc")
    cells, sites = world.cells, world.sites
    write_forcing(world.cell_forcing, out / "cell_forcing.nc", lat=cells["lat"].values, lon=cells["lon"].values,
                  site_id=cells["cell"].values,
                  attrs=attrs | {"title": "soiljax synthetic world: forcing of the land cells"})
    _write(sites, out / "sites.nc")
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
        _write(truth, out / f"truth_{key}.nc")


def read_world(directory) -> World:
    """Read a world written by :func:`write_world`."""
    from .io import FileFormatError, _open, read_forcing, read_observations

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
    grid = _open(path / "grid.nc", "world grid", FileFormatError)
    grid["land"] = grid["land"].astype(bool)
    keys = [k for k in str(grid.attrs.get("models", "")).split(",") if k]
    missing = [f"{kind}_{k}.nc" for k in keys for kind in ("obs", "truth") if not (path / f"{kind}_{k}.nc").exists()]
    if missing:
        raise FileNotFoundError(
            f"world directory {str(path)!r} lacks {', '.join(missing)} (grid.nc lists the models {keys})"
        )
    cells = _open(path / "cells.nc", "world cells", FileFormatError)
    sites = _open(path / "sites.nc", "world sites", FileFormatError)
    cell_forcing, _ = read_forcing(path / "cell_forcing.nc")
    site_forcing, _ = read_forcing(path / "site_forcing.nc")
    u_true, cell_u, observations, valid = {}, {}, {}, {}
    for key in keys:
        obs, _ = read_observations(path / f"obs_{key}.nc", min_layers=0, check_units=False)
        truth = _open(path / f"truth_{key}.nc", f"world truth of {key}", FileFormatError)
        names = list(_model_instance(_model_key(key)).param_names)
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


__all__ = [
    "BIOCLIM",
    "COVARIATES",
    "COVARIATE_DESCRIPTIONS",
    "COVARIATE_STANDARDISATION",
    "COVARIATE_UNITS",
    "LAND_COVERS",
    "MODELS",
    "SOIL_DEPTHS",
    "SOIL_PROPERTIES",
    "World",
    "bioclim",
    "hidden_map",
    "hidden_parameters",
    "read_world",
    "standardised_covariates",
    "synthetic_world",
    "write_world",
]
