"""Synthetic sites: plausible monthly CLM5-style forcing for any number of sites.

:func:`synthetic_sites` draws sites from five documented climate zones and
returns a validated :class:`~soiljax.Forcing` (leading ``site`` axis) together
with an :class:`xarray.Dataset` of per-site metadata (``lat``, ``lon``,
``zone``, ``base_climate``).  The same ``(n, seed, zones)`` always gives the same
sites.  Zones are assigned first, then every per-site quantity is drawn for
all sites at once with vectorised numpy, so 100,000 sites take a few seconds.

Zones
-----
``tropical``
    |lat| < 15 deg.  Mean surface soil temperature 297-302 K with a 0.5-3 K
    annual wave; wet (W_SCALAR 0.75-0.95 on average, weak dry season);
    oxygen limited at depth; annual input 900-1500 gC m-2 yr-1 spread evenly
    over the year, 15-35 % of it coarse woody debris.
``temperate``
    35 < |lat| < 55 deg.  Mean 279-290 K, 6-12 K wave (winter surface frost is
    possible); moderately wet with a summer dip; input 350-800 gC m-2 yr-1
    peaking in summer, 10-35 % CWD.
``arid``
    15 < |lat| < 35 deg.  Mean 288-299 K, 6-14 K wave; W_SCALAR 0.1-0.35 on
    average and exactly 0 near the surface in the dry months (every layer is
    wet in at least one month); sandy; input 50-250 gC m-2 yr-1, 0-10 % CWD.
``boreal``
    55-72 deg N, permafrost.  The temperature wave (12-22 K, damping depth
    1.5-3 m) is centred below freezing so that the active layer reaches
    0.4-1.8 m: ALTMAX_LASTYEAR <= 2 m, the CLM5 cryoturbation branch.  Water
    is reduced in frozen layers (floor 0.05); input 100-350 gC m-2 yr-1 in a
    short summer, 10-30 % CWD.
``shallow_bedrock``
    nbedrock in {5, 6, 8, 10, 12, 15} (bedrock at 0.29-2.3 m) on the climate of
    one of the four zones above (``base_climate``), latitude from that zone.

:func:`synthetic_observations` turns a model's steady state on such sites
into noisy observed SOC profiles (with the truth) for testing calibrations.

Physics of every variable
-------------------------
The formulas this module shares with :mod:`soiljax.world` and
:mod:`soiljax.dutch` (the temperature wave, the water, oxygen and nitrogen
scalars, the active layer, inputs, bedrock and sand) are written once in
``soiljax/_climate.py``; the random draws are made here.

- TSOI (K): ``T(z, m) = T_mean + g z + A exp(-z/d) cos(2 pi (m - m_peak)/12 - z/d)``
  plus 0.2 K noise that fades with depth: the annual wave damped and lagged
  with depth (d = damping depth, g = 0.015-0.03 K m-1 geothermal gradient).
  The surface peak is in July in the northern hemisphere, January in the
  southern one.
- W_SCALAR: a zone mean, a seasonal wave that fades with depth, reduced to
  10-30 % where TSOI < 273.15 K (frozen water), clipped to [0, 1].
- O_SCALAR: 1 near the surface, falling with depth at wet sites, >= 0.2
  (CTSM's minimum oxygen scalar).
- FPI_vr: a zone surface value rising towards 1 with depth, lower in the
  growing season near the surface, in [0.05, 1].
- ALTMAX: CTSM's active-layer rule on the TSOI profile of each month -- the
  deepest thawed node, interpolated linearly to 0 degC between that node and
  the frozen one below it; 49.556 m (the bottom of level 25) when layer 20 is
  thawed, 0 when nothing thaws -- then the running maximum within the
  calendar year.  ALTMAX_LASTYEAR is the annual maximum in every month.
- Inputs (gC m-2 month-1): annual total from the zone range, split into CWD
  (zone fraction), metabolic (25-45 % of the rest), lignin (12-25 %) and
  cellulose (the remainder), spread over the months with the zone's
  seasonality.
- CELLSAND (%): a zone sand content with a small depth trend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from ._climate import ALT_FULL_COLUMN as ALT_FULL_COLUMN  # 49.556 m, bottom of level 25
from ._climate import N_MONTHS as N_MONTHS
from ._climate import T_FREEZE as T_FREEZE
from ._climate import (
    active_layer,
    annual_wave,
    bedrock_depth_of_level,
    carbon_inputs,
    growing_season,
    layer_sand,
    monthly,
    nitrogen_limitation,
    oxygen_scalar,
    seasonal_weights,
    water_scalar,
    wet_soil_anoxia,
)
from ._climate import active_layer_depth as active_layer_depth
from ._forcing import Forcing
from ._grid import N_LAYERS, ZSOI
from ._observations import Observations, validate_observation_arrays
from ._options import ZONES as ZONES  # names of the climate zones, in the order of the zone_id codes
from ._stages import Stages

CLIMATES: tuple[str, ...] = ZONES[:4]
"""Zones with their own climate; shallow-bedrock sites borrow one of these."""

SHALLOW_BEDROCK_LEVELS = np.array([5, 6, 8, 10, 12, 15])

# Per-climate ranges (low, high) of the site-level draws, index = climate id.
_RANGES: dict[str, np.ndarray] = {
    #                 tropical      temperate     arid          boreal
    "amplitude": np.array([[0.5, 3.0], [6.0, 12.0], [6.0, 14.0], [12.0, 22.0]]),  # K
    "t_mean": np.array([[297.0, 302.0], [279.0, 290.0], [288.0, 299.0], [0.0, 0.0]]),  # K (boreal: from ALT)
    "damping": np.array([[1.5, 4.0], [1.5, 4.0], [1.5, 4.0], [1.5, 3.0]]),  # m
    "alt_target": np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.4, 1.8]]),  # m (boreal only)
    "wet_mean": np.array([[0.75, 0.95], [0.5, 0.8], [0.1, 0.35], [0.6, 0.9]]),
    "wet_season": np.array([[0.0, 0.1], [0.1, 0.25], [0.2, 0.4], [0.05, 0.15]]),
    "fpi_surface": np.array([[0.5, 0.8], [0.3, 0.6], [0.3, 0.7], [0.15, 0.4]]),
    "input_total": np.array([[900.0, 1500.0], [350.0, 800.0], [50.0, 250.0], [100.0, 350.0]]),  # gC m-2 yr-1
    "input_seasonality": np.array([[0.0, 0.3], [0.6, 0.9], [0.5, 0.9], [1.2, 1.8]]),
    "cwd_fraction": np.array([[0.15, 0.35], [0.10, 0.35], [0.0, 0.10], [0.10, 0.30]]),
    "sand": np.array([[10.0, 60.0], [15.0, 75.0], [50.0, 90.0], [10.0, 80.0]]),
}
# |latitude| band of each climate (boreal sites are northern)
_LAT_BANDS = np.array([[0.0, 15.0], [35.0, 55.0], [15.0, 35.0], [55.0, 72.0]])


def _zone_counts(n: int, zones) -> dict[str, int]:
    """Number of sites per zone (largest-remainder rounding of the weights)."""
    if zones is None:
        weights = {z: 1.0 for z in ZONES}
    elif isinstance(zones, str):
        weights = {zones: 1.0}
    elif isinstance(zones, Mapping):
        weights = {str(k): float(v) for k, v in zones.items()}
    elif isinstance(zones, Sequence):
        weights = {}
        for z in zones:
            weights[str(z)] = weights.get(str(z), 0.0) + 1.0
    else:
        raise TypeError(f"zones must be None, a zone name, a list of names or a dict name -> weight, got {zones!r}")
    unknown = [z for z in weights if z not in ZONES]
    if unknown:
        raise ValueError(f"unknown zone(s) {', '.join(map(repr, unknown))}; the zones are {', '.join(ZONES)}")
    if not weights or any(w < 0 or not np.isfinite(w) for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"zone weights must be non-negative with a positive sum, got {weights}")
    names = [z for z in ZONES if z in weights]  # canonical order keeps results independent of dict order
    w = np.array([weights[z] for z in names])
    exact = n * w / w.sum()
    counts = np.floor(exact).astype(int)
    rest = n - counts.sum()
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:rest]] += 1
    return dict(zip(names, counts.tolist()))


def _uniform(rng: np.random.Generator, ranges: np.ndarray, climate: np.ndarray) -> np.ndarray:
    lo, hi = ranges[climate, 0], ranges[climate, 1]
    return lo + rng.random(climate.shape) * (hi - lo)


def _noise(rng: np.random.Generator, n: int, sd: float) -> np.ndarray:
    """Gaussian noise of shape (site, month, layer) (drawn in float32: 2x faster, plenty for noise)."""
    out = rng.standard_normal((n, N_MONTHS, N_LAYERS), dtype=np.float32).astype(np.float64)
    out *= sd
    return out


def synthetic_sites(n: int, seed: int = 0, zones=None, *, progress: bool = False) -> tuple[Forcing, xr.Dataset]:
    """Generate ``n`` synthetic sites.

    Parameters
    ----------
    n:
        Number of sites (>= 1).
    seed:
        Seed of numpy's default generator: the same (n, seed, zones) always
        gives the same sites.
    zones:
        ``None`` for equal shares of all five :data:`ZONES`; a zone name; a
        list of names (equal shares, repeats count double); or a dict
        name -> weight.  Site counts per zone use largest-remainder rounding
        and sites are shuffled, so e.g. ``synthetic_sites(5)`` has one site of
        each zone.
    progress:
        Show the generation's stages on stderr (a tqdm bar; off by default).

    Returns
    -------
    (forcing, info):
        ``forcing`` is a validated :class:`~soiljax.Forcing` with a leading
        axis of ``n`` sites.  ``info`` is an :class:`xarray.Dataset` on the
        ``site`` dimension with ``lat``, ``lon`` (degrees), ``zone`` and
        ``base_climate`` (the climate a shallow-bedrock site borrows; the
        zone itself otherwise) and a ``site`` coordinate of string ids.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    counts = _zone_counts(n, zones)
    stage = Stages(f"synthetic sites ({n})", 8, progress)
    stage("site draws")
    zone = np.concatenate([np.full(c, ZONES.index(z)) for z, c in counts.items()])
    zone = zone[rng.permutation(n)]
    bedrock_site = zone == ZONES.index("shallow_bedrock")
    climate = np.where(bedrock_site, rng.integers(0, len(CLIMATES), n), zone)

    # --- site-level draws ----------------------------------------------------
    r = {name: _uniform(rng, ranges, climate) for name, ranges in _RANGES.items()}
    north = np.where(climate == CLIMATES.index("boreal"), True, rng.random(n) < 0.7)
    abs_lat = _uniform(rng, _LAT_BANDS, climate)
    lat = np.where(north, abs_lat, -abs_lat)
    lon = rng.uniform(-180.0, 180.0, n)
    peak = 6.0 + rng.uniform(-0.5, 0.5, n) + np.where(north, 0.0, 6.0)  # month index of the surface maximum
    gradient = rng.uniform(0.015, 0.03, n)  # K m-1
    amp, d = r["amplitude"], r["damping"]
    boreal = climate == CLIMATES.index("boreal")
    t_mean = np.where(boreal, T_FREEZE - amp * np.exp(-r["alt_target"] / d), r["t_mean"])
    nbedrock = np.where(bedrock_site, rng.choice(SHALLOW_BEDROCK_LEVELS, n), N_LAYERS)

    # --- temperature: damped, lagged annual wave ----------------------------
    stage("soil temperature")
    z = np.asarray(ZSOI)[None, None, :]  # (1, 1, layer)
    m = np.arange(N_MONTHS, dtype=float)[None, :, None]  # (1, month, 1)
    s = lambda x: np.asarray(x)[:, None, None]  # noqa: E731  per-site -> broadcastable
    tsoi = _noise(rng, n, 0.2) * np.exp(-z / 0.5)
    tsoi += s(t_mean) + s(gradient) * z
    tsoi += annual_wave(amp, d, peak)

    # --- water scalar ---------------------------------------------------------
    stage("water scalar")
    # wettest season: tropical/temperate/boreal in winter-spring (cool), arid in the short rainy season
    wet_peak = s(peak) + 6.0 + s(rng.uniform(-1.5, 1.5, n))
    season = np.cos(2.0 * np.pi * (m - wet_peak) / N_MONTHS) * np.exp(-z / 1.0)
    w = _noise(rng, n, 0.02)
    w += s(r["wet_mean"]) + s(r["wet_season"]) * (1.5 * season)
    deep_floor = np.where(climate == CLIMATES.index("arid"), 0.05, 0.2)  # subsoil keeps some moisture
    liquid = rng.uniform(0.1, 0.3, n)  # share of the water still liquid in frozen layers
    w = water_scalar(w, tsoi, subsoil_floor=deep_floor, liquid=liquid)

    # --- oxygen and nitrogen scalars ------------------------------------------
    stage("oxygen and nitrogen scalars")
    o = oxygen_scalar(wet_soil_anoxia(w), n)
    fpi0 = s(r["fpi_surface"])
    fpi = nitrogen_limitation(fpi0, (1.0 - fpi0) * 0.85, 0.6, 0.1, growing_season(peak), noise=_noise(rng, n, 0.02))

    # --- active layer --------------------------------------------------------
    stage("active layer")
    altmax, altmax_lastyear = active_layer(tsoi)

    # --- carbon inputs -------------------------------------------------------
    stage("carbon inputs")
    weights = seasonal_weights(r["input_seasonality"], peak)
    total = r["input_total"]
    metabolic = rng.uniform(0.25, 0.45, n)
    lignin = rng.uniform(0.12, 0.25, n)
    inputs = carbon_inputs(
        total, weights, cwd=r["cwd_fraction"], metabolic=metabolic, cellulose=1.0 - metabolic - lignin, lignin=lignin
    )

    # --- sand -----------------------------------------------------------------
    stage("sand")
    sand = r["sand"][:, None] + rng.uniform(-10.0, 10.0, n)[:, None] * (np.asarray(ZSOI)[None, :] / 8.0)
    sand = layer_sand(sand + rng.normal(0.0, 1.5, (n, N_LAYERS)))

    site_id = np.array([f"syn{seed}_{i:06d}" for i in range(n)])
    stage("forcing checks")
    forcing = Forcing(
        tsoi=tsoi,
        w_scalar=w,
        o_scalar=o,
        fpi_vr=fpi,
        altmax=altmax,
        altmax_lastyear=altmax_lastyear,
        nbedrock=monthly(nbedrock),
        cwd_input=inputs["CWD_INPUT"],
        litr1_input=inputs["LITR1_INPUT"],
        litr2_input=inputs["LITR2_INPUT"],
        litr3_input=inputs["LITR3_INPUT"],
        cellsand=sand,
        site_labels=site_id,
    )
    info = xr.Dataset(
        {
            "lat": ("site", lat, {"units": "degrees_north", "long_name": "latitude"}),
            "lon": ("site", lon, {"units": "degrees_east", "long_name": "longitude"}),
            "zone": ("site", np.array(ZONES)[zone].astype(str), {"long_name": "synthetic climate zone"}),
            "base_climate": (
                "site",
                np.array(CLIMATES)[climate].astype(str),
                {"long_name": "climate the site's forcing was drawn from"},
            ),
            "annual_input": ("site", total, {"units": "gC m-2 yr-1", "long_name": "total annual carbon input"}),
        },
        coords={"site": site_id},
        attrs={"title": "soiljax synthetic sites", "seed": int(seed), "zones": ", ".join(f"{k}={v}" for k, v in counts.items())},
    )
    stage.close()
    return forcing, info


# ---------------------------------------------------------------------------
# synthetic observations
# ---------------------------------------------------------------------------

PRODA_MIN_DEPTH = 0.5
"""m.  PRODA keeps profiles that reach deeper than 50 cm; synthetic profiles do where the soil does."""


def bedrock_depth(forcing: Forcing) -> np.ndarray:
    """Depth (m) of the bedrock of each site: the bottom of the last soil layer above it.

    ``ZISOI[nbedrock - 1]`` with the shallowest nbedrock over the months.
    """
    return bedrock_depth_of_level(np.asarray(forcing.nbedrock).min(axis=-1))


def synthetic_observations(
    model,
    u,
    forcing: Forcing,
    *,
    n_obs: tuple[int, int] = (4, 8),
    noise: float = 0.1,
    max_depth: float = 1.5,
    seed: int = 0,
    site_id=None,
    progress: bool = False,
) -> tuple[Observations, xr.Dataset]:
    """Observed SOC profiles drawn from a model's steady state, for testing calibrations.

    Parameters
    ----------
    model, u, forcing:
        The truth: ``soiljax.batched_steady_state(model, u, forcing)`` with
        ``u`` (param,) for all sites or (site, param) and a forcing with one
        leading site axis.
    n_obs:
        Each site gets a random number of layers in ``[n_obs[0], n_obs[1]]``
        (inclusive); the ``obs`` axis has length ``n_obs[1]``, NaN-padded.
    noise:
        Multiplicative log-normal error: ``soc = soc_true * exp(noise * e)``
        with ``e ~ N(0, 1)`` independent per layer.  The standard deviation
        of ``log(soc / soc_true)`` is ``noise``; the noise is median-unbiased
        (the median of ``soc`` is ``soc_true``; its mean is
        ``soc_true * exp(noise**2 / 2)``).  ``noise=0`` gives the exact model
        values.  ``soc_sd`` is set to ``noise * soc_true`` (the standard
        deviation to first order in ``noise``).
    max_depth:
        Deepest observation (m).  Depths are drawn uniformly in
        ``[0.02, min(max_depth, bedrock)]`` where bedrock is the bottom of
        the last soil layer above it (:func:`bedrock_depth`); they are
        sorted and distinct.  When that range reaches below 0.5 m, one of the
        depths is drawn in ``[0.5, min(max_depth, bedrock)]`` so that every
        profile is deeper than 50 cm, as PRODA requires.
    seed:
        Seed of numpy's default generator: the same inputs and seed always
        give the same observations.
    site_id:
        Site labels (default ``0 .. n-1``; pass the ``site`` of
        :func:`synthetic_sites`'s info to keep its labels).
    progress:
        A progress bar over the steady states' batches (with more than one batch).

    Returns
    -------
    (obs, truth):
        :class:`~soiljax.Observations` (site, obs) and an
        :class:`xarray.Dataset` on ``site`` with ``soc_true`` (site, obs) in
        gC m-3 (the model's SOC at the observed depths), ``u_true``
        (site, param) with the model's parameter names as the ``param``
        coordinate, ``valid`` (site) from the steady state and
        ``bedrock_depth`` (site).  The model is interpolated to the depths
        by pchip over the layer nodes :data:`soiljax.ZSOI` with
        extrapolation (the observation operator of MODELS.md section 5, the
        same interpolant as :class:`scipy.interpolate.PchipInterpolator`
        with ``extrapolate=True``), vectorised over sites.  Sites whose steady state is invalid
        get all-NaN observations and ``valid = False``: drop them
        (``obs[truth.valid.values]``) before calibrating.
    """
    from ._batch import batched_steady_state
    from ._observe import observe_sites

    lo_n, hi_n = (int(k) for k in n_obs)
    if not 1 <= lo_n <= hi_n:
        raise ValueError(f"n_obs must be (low, high) with 1 <= low <= high, got {n_obs!r}")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    if not max_depth > 0.02:
        raise ValueError(f"max_depth must be deeper than 0.02 m, got {max_depth!r}")
    if len(forcing.batch_shape) != 1:
        raise ValueError(
            f"synthetic_observations expects a forcing with one leading site axis, got {forcing.batch_shape}"
        )
    n = forcing.batch_shape[0]
    labels = np.arange(n) if site_id is None else np.asarray(site_id)
    if labels.shape != (n,):
        raise ValueError(f"site_id must have one label per site ({n}), got shape {labels.shape}")
    u = np.asarray(u, dtype=float)
    u_true = np.broadcast_to(u, (n, u.shape[-1])).copy() if u.ndim == 1 else u
    steady = batched_steady_state(model, u_true, forcing, progress=progress)
    soc_layers = np.asarray(steady.soc)
    valid = np.asarray(steady.valid).astype(bool)

    rng = np.random.default_rng(seed)
    bottom = np.minimum(float(max_depth), bedrock_depth(forcing))  # (site,)
    top = np.minimum(0.02, 0.5 * bottom)
    count = rng.integers(lo_n, hi_n + 1, n)
    draw = rng.random((n, hi_n))
    deep = bottom > PRODA_MIN_DEPTH
    first_lo = np.where(deep, PRODA_MIN_DEPTH, top)
    depth = top[:, None] + draw * (bottom - top)[:, None]
    depth[:, 0] = first_lo + draw[:, 0] * (bottom - first_lo)  # the deep one (when the soil is deep)
    depth[np.arange(hi_n)[None, :] >= count[:, None]] = np.nan
    depth = np.sort(depth, axis=1)  # NaN padding last
    # continuous draws are distinct with probability 1; redraw a site in the rare case of a tie
    for i in np.flatnonzero(np.any(np.diff(depth, axis=1) <= 0, axis=1)):
        k = count[i]
        while np.any(np.diff(depth[i, :k]) <= 0):
            d = top[i] + rng.random(k) * (bottom[i] - top[i])
            d[0] = first_lo[i] + rng.random() * (bottom[i] - first_lo[i])
            depth[i, :k] = np.sort(d)
    e = rng.standard_normal((n, hi_n))

    soc_true = np.where(valid[:, None], observe_sites(soc_layers, depth), np.nan)  # NaN where padded too
    depth_obs = np.where(valid[:, None], depth, np.nan)
    soc = soc_true * np.exp(noise * e)
    soc_sd = noise * soc_true

    if valid.any():  # the valid sites must be usable profiles (a model bug otherwise)
        validate_observation_arrays(
            depth_obs[valid], soc[valid], soc_sd[valid], labels[valid], min_layers=1, check_units=False
        )
    obs = Observations(depth_obs, soc, soc_sd)
    names = tuple(getattr(model, "param_names", None) or model.space.names)
    truth = xr.Dataset(
        {
            "soc_true": (
                ("site", "obs"),
                soc_true,
                {"units": "gC m-3", "long_name": "model SOC at the observed depths"},
            ),
            "u_true": (("site", "param"), u_true, {"units": "1", "long_name": "scaled parameters of the truth"}),
            "valid": ("site", valid, {"long_name": "steady state of the truth is valid"}),
            "bedrock_depth": (
                "site",
                bedrock_depth(forcing),
                {"units": "m", "long_name": "bottom of the last soil layer above bedrock"},
            ),
        },
        coords={"site": labels, "param": ("param", np.array(names), {"long_name": "parameter name"})},
        attrs={
            "title": "soiljax synthetic observations",
            "model": type(model).__name__,
            "seed": int(seed),
            "noise": float(noise),
            "noise_model": "soc = soc_true * exp(noise * N(0, 1)); soc_sd = noise * soc_true",
            "n_obs": f"{lo_n}-{hi_n}",
            "max_depth": float(max_depth),
        },
    )
    return obs, truth


__all__ = ["ZONES", "CLIMATES", "synthetic_sites", "active_layer_depth", "bedrock_depth", "synthetic_observations"]
