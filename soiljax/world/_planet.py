"""The planet of a world: its grid, land and sea, smooth fields on the sphere and the climate.

:func:`environment` gives everything about a set of points (lat, lon): the
monthly climate, the 60 covariates (in the order of
:data:`~soiljax.world.COVARIATES`) and the hidden quantities the forcing needs.
It is built from smooth random fields on the sphere (:func:`field`), the same
for one seed at every resolution; :func:`bioclim` computes WorldClim's
bioclimatic variables from the monthly climate.  The "Grid and land",
"Climate" and "Covariates" sections of :mod:`soiljax.world` describe the
formulas.
"""

from __future__ import annotations

import numpy as np

from .._climate import N_MONTHS, bedrock_depth_of_level, bedrock_level
from .._grid import N_LAYERS
from ._catalogue import BIOCLIM, COVARIATES, LAND_COVERS, SOIL_DEPTHS, SOIL_PROPERTIES
from ._common import purpose_rng, sigmoid

DAYS_PER_MONTH = 365.25 / 12.0
LAND_FRACTION = 0.29
"""Share of the globe's area that is land (as on Earth)."""
LAT_RANGE = (-56.0, 75.0)
"""Latitudes (of cell centres, degrees) that may hold land."""

# ---------------------------------------------------------------------------
# the grid
# ---------------------------------------------------------------------------


def check_resolution(resolution) -> float:
    """``resolution`` in degrees as a float; a ValueError unless it is in (0, 30] and divides 180."""
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


def grid_axes(res: float) -> tuple[np.ndarray, np.ndarray]:
    """Latitudes and longitudes (degrees) of the cell centres of the ``res``-degree grid."""
    n_lat = int(round(180.0 / res))
    lat = -90.0 + res * (np.arange(n_lat) + 0.5)
    lon = -180.0 + res * (np.arange(2 * n_lat) + 0.5)
    return lat, lon



# ---------------------------------------------------------------------------
# smooth random fields on the sphere, land
# ---------------------------------------------------------------------------


def unit_vectors(lat, lon) -> np.ndarray:
    """Points (lat, lon) in degrees as unit vectors (..., 3) on the sphere."""
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


def field(seed: int, name: str, xyz: np.ndarray) -> np.ndarray:
    """A smooth random field of about unit variance at the points ``xyz`` (unit vectors).

    A sum of 24 plane waves ``cos(k v . x + phase)`` with random directions v,
    wavenumbers k in the field's range (amplitude ~ 1/k) and phases; the same
    (seed, name) always gives the same field, evaluated anywhere.
    """
    k_lo, k_hi = _FIELD_WAVENUMBERS.get(name, (3.0, 8.0))
    rng = purpose_rng(seed, "field", name)
    v = rng.standard_normal((_N_WAVES, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    k = rng.uniform(k_lo, k_hi, _N_WAVES)
    phase = rng.uniform(0.0, 2.0 * np.pi, _N_WAVES)
    amp = 1.0 / k
    amp *= np.sqrt(2.0 / np.sum(amp**2))
    return np.cos(xyz @ (v * k[:, None]).T + phase) @ amp


def land_threshold(seed: int) -> float:
    """Level of the land field above which a point is land: LAND_FRACTION of the globe's
    area within LAT_RANGE, measured on a fixed 1-degree reference grid (so that the
    continents are the same at every resolution)."""
    lat = np.arange(-89.5, 90.0, 1.0)
    lon = np.arange(-179.5, 180.0, 1.0)
    band = lat[(lat >= LAT_RANGE[0]) & (lat <= LAT_RANGE[1])]
    la, lo = np.meshgrid(band, lon, indexing="ij")
    f = field(seed, "land", unit_vectors(la.ravel(), lo.ravel()))
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


def environment(lat, lon, seed: int, threshold: float, local: np.random.Generator | None = None) -> dict:
    """Everything about the points (lat, lon): monthly climate, covariates and the
    hidden quantities the forcing needs.  ``threshold`` is the seed's
    :func:`land_threshold`; ``local`` (sites only) adds small point-scale
    perturbations to the smooth fields."""
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    n = lat.size
    xyz = unit_vectors(lat, lon)

    def F(name):
        return field(seed, name, xyz)

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
    elev = 50.0 + 400.0 * cont + 900.0 * sigmoid(1.5 * f_elev - 0.5) + 2800.0 * ridge * sigmoid(1.5 * f_elev + 0.5)
    elev = np.maximum(elev + noise(1.0) * (60.0 + 0.05 * elev), 0.0)
    slope = (0.3 + 2.0 * sigmoid(2.0 * F("rough")) + 14.0 * ridge + 0.002 * elev) * np.exp(noise(0.25))
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
    med = sigmoid((alat - 30.0) / 2.0) * sigmoid((42.0 - alat) / 2.0) * (1.0 - cont)  # winter rains
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
    pzi = sigmoid(-(t_ground_mean + 1.0) / 0.8)

    # --- soil ---------------------------------------------------------------
    log_ar = np.log(aridity)
    organic = sigmoid(2.0 * log_ar) * sigmoid((5.0 - t_ann) / 4.0)  # cold and wet: organic-rich topsoil
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
        8.2 - 3.0 * sigmoid(2.5 * np.log(aridity / 0.8))[:, None] + 0.4 * F("ph")[:, None] + 0.2 * depth
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
    cfvo = np.clip(3.0 + 25.0 * sigmoid(slope / 8.0 - 1.5)[:, None] + 4.0 * depth + 4.0 * F("cfvo")[:, None]
                   + noise(2.0)[:, None], 0.0, 70.0)
    nitrogen = (0.4 + 2.5 * organic + 0.5 * sigmoid(F("nitro")))[:, None] * np.exp(-0.7 * depth)
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
            -1.0 + 2.5 * sigmoid(-3.0 * np.log(aridity / 0.08)) + 2.0 * sigmoid(-(gdd5 - 150.0) / 60.0)
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
    rock_depth = 0.3 + 2.0 * sigmoid(2.5 * (1.8 - rock) + 1.0)
    nbedrock = np.where(shallow, bedrock_level(rock_depth, 5, 19), N_LAYERS)
    bedrock_depth = bedrock_depth_of_level(nbedrock)

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
        damping=(1.5 + 1.5 * sigmoid(F("damp"))) * (0.4 + 0.6 * sigmoid(t_ground_mean / 1.5)),
        nitrogen_top=nitrogen[:, 0],
        cover=cover,
        npp=npp,
        sand=sand,
        nbedrock=nbedrock,
    )
