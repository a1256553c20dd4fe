"""The covariate catalogue of the world: names, units, descriptions, standardisation.

:data:`COVARIATES` lists the 60 covariates in the order of every covariate
axis (the "Covariates" section of :mod:`soiljax.world` says how each is made);
:data:`COVARIATE_STANDARDISATION` holds the fixed log offsets, centres and
scales through which the hidden parameter maps see them.
"""

from __future__ import annotations

SOIL_DEPTHS = ("0_30", "30_100", "100_200")
"""Depth intervals (cm) of the soil covariates."""
SOIL_PROPERTIES = ("sand", "silt", "clay", "ph", "bulk_density", "cec", "cfvo", "nitrogen")
"""Soil properties given at each of :data:`SOIL_DEPTHS`."""
LAND_COVERS = ("forest", "grass", "crop", "shrub", "bare")
"""Land-cover classes (``lc_<class>`` covariates, fractions summing to 1)."""
BIOCLIM = tuple(f"bio{i}" for i in range(1, 20))
"""WorldClim's 19 bioclimatic variables, in order."""

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

COVARIATE_STANDARDISATION: dict[str, tuple[float | None, float, float]] = {
    row[0]: (row[3],) + _SCALING[row[0]] for row in _TABLE
}
"""covariate -> (log offset or None, centre, scale) used by the hidden maps."""


def covariate_attrs() -> dict:
    """Attributes of a ``covariates`` variable: a long name and the units of each covariate."""
    return {"long_name": "environmental covariates (units in the attribute units_<name>)"} | {
        f"units_{c}": COVARIATE_UNITS[c] for c in COVARIATES
    }
