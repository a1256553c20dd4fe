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
Built from the same climate as the covariates, with the climate -> forcing
formulas that :mod:`soiljax.synthetic` and :mod:`soiljax.dutch` use too
(``soiljax/_climate.py``):

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

Modules
-------
One module per concept (all re-exported here):

- ``_planet``: grid, land and sea, smooth fields on the sphere, monthly
  climate, :func:`bioclim`, the covariates of a set of points;
- ``_catalogue``: the covariate catalogue (:data:`COVARIATES`, units,
  descriptions, standardisation);
- ``_forcing``: the forcing of cells and sites;
- ``_hidden``: the hidden parameter maps (:func:`hidden_map`,
  :func:`hidden_parameters`, :func:`standardised_covariates`) and the models
  they are for;
- ``_container``: the :class:`World`; ``_generate``: :func:`synthetic_world`;
- ``_files``: :func:`write_world`, :func:`read_world`;
- ``_common``: what they share (seed rules, a sigmoid).
"""

from __future__ import annotations

from .._climate import N_MONTHS
from ._catalogue import (
    BIOCLIM,
    COVARIATE_DESCRIPTIONS,
    COVARIATE_STANDARDISATION,
    COVARIATE_UNITS,
    COVARIATES,
    LAND_COVERS,
    SOIL_DEPTHS,
    SOIL_PROPERTIES,
)
from ._container import World
from ._files import WORLD_FILES, read_world, write_world
from ._generate import synthetic_world
from ._hidden import MODELS, hidden_map, hidden_parameters, standardised_covariates
from ._hidden import model_instance as _model_instance  # the name this package had before it was split
from ._planet import DAYS_PER_MONTH, LAND_FRACTION, LAT_RANGE, bioclim

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
