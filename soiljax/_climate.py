"""Synthetic climate -> forcing: the formulas shared by every synthetic forcing.

Three generators make a monthly CLM5-style forcing from a made-up climate:
:mod:`soiljax.synthetic` (climate zones), :mod:`soiljax.world` (a planet of
land cells and sites) and :mod:`soiljax.dutch` (one Dutch climate for the
normal soil profiles).  Each draws or sets its own climate; this module turns
that climate into the forcing variables, every formula written once.

Shapes: a per-layer variable is (site, month, layer), a monthly one
(site, month); a per-site value (site,) or a scalar broadcasts against them
(:func:`per_site`).  Months are 0 = January ... 11 = December.  Nothing here
is random: a generator that wants noise draws it with its own generator and
passes the array in, so its seeds keep giving the same numbers.

Variables
---------
TSOI
    :func:`annual_wave` (one harmonic, analytic) and :func:`soil_temperature`
    (every harmonic of a monthly ground-surface series): the periodic solution
    of the heat equation, damped by ``exp(-z sqrt(k) / d)`` and delayed by
    ``z sqrt(k) / d`` for harmonic k and damping depth d.
W_SCALAR
    :func:`water_scalar`: a subsoil floor, frozen layers keep their liquid
    fraction (at least 0.05), clipped to [0, 1], and every layer reaches
    0.05 in its wettest month (:func:`ensure_wettest_month`; a layer that
    never decomposes makes CLM5 singular).
O_SCALAR
    :func:`oxygen_scalar` of an anoxia, e.g. :func:`wet_soil_anoxia` (wet soils
    lose oxygen at depth); at least 0.2, CTSM's minimum oxygen scalar.
FPI_vr
    :func:`nitrogen_limitation`: a surface value rising with depth, lower near
    the surface in the growing season (:func:`growing_season`); in [0.05, 1].
ALTMAX, ALTMAX_LASTYEAR
    :func:`active_layer`: CTSM's active-layer rule
    (:func:`active_layer_depth`) on the TSOI of each month, its running
    maximum within the calendar year and the annual maximum.
nbedrock
    :func:`bedrock_level` of a bedrock depth, :func:`monthly` over the year;
    :func:`bedrock_depth_of_level` back to metres.
inputs
    :func:`carbon_inputs`: an annual total split into CWD, metabolic,
    cellulose and lignin litter and spread over the months by weights
    (e.g. :func:`seasonal_weights`).
CELLSAND
    :func:`layer_sand`, after :func:`at_layer_nodes` where the sand is given
    at a few depths.
"""

from __future__ import annotations

import numpy as np

from ._grid import N_LAYERS, ZISOI, ZISOI_ALL, ZSOI

N_MONTHS = 12
T_FREEZE = 273.15
"""K: water freezes at and below this soil temperature."""
ALT_FULL_COLUMN = float(ZISOI_ALL[-1])
"""m: the active-layer depth when the whole column thaws (49.556 m, bottom of level 25)."""
O_SCALAR_MIN = 0.2
"""CTSM's minimum oxygen scalar."""
FPI_MIN = 0.05
"""Lowest nitrogen-limitation scalar of the synthetic forcings."""
W_WETTEST_MIN = 0.05
"""Every layer's water scalar reaches at least this in its wettest month."""

Z = np.asarray(ZSOI)[None, None, :]
"""Layer node depths (m), shape (1, 1, layer)."""
MONTHS = np.arange(N_MONTHS, dtype=float)[None, :, None]
"""Month index 0-11, shape (1, month, 1)."""


def per_site(x) -> np.ndarray:
    """A per-site value (site,) or a scalar as (site, 1, 1) or (1, 1): it broadcasts over months and layers."""
    return np.asarray(x)[..., None, None]


def monthly(x) -> np.ndarray:
    """A per-site value (site,) repeated over the months: (site, month)."""
    return np.repeat(np.asarray(x)[:, None], N_MONTHS, axis=1)


# ---------------------------------------------------------------------------
# soil temperature
# ---------------------------------------------------------------------------


def annual_wave(amplitude, damping, peak) -> np.ndarray:
    """The annual temperature wave at the layer nodes (K about the mean), (site, month, layer).

    ``A exp(-z/d) cos(2 pi (m - m_peak)/12 - z/d)``: a surface wave of
    amplitude ``A`` (K) peaking in month ``m_peak`` (0-11, may be fractional),
    damped and delayed with depth z by the damping depth ``d`` (m).  Arguments
    are per site (site,) or scalars.
    """
    phase = 2.0 * np.pi * (MONTHS - per_site(peak)) / N_MONTHS  # (site, month, 1)
    lag = Z / per_site(damping)  # (site, 1, layer)
    damp = per_site(amplitude) * np.exp(-lag)
    # cos(phase - lag) expanded, so that only (site, month) and (site, layer) arrays see cos/sin
    return np.cos(phase) * (damp * np.cos(lag)) + np.sin(phase) * (damp * np.sin(lag))


def soil_temperature(ground, damping, geothermal: float) -> np.ndarray:
    """TSOI (K), (site, month, layer), from the monthly ground-surface temperature (site, month) in degC.

    Every harmonic k of the surface series is damped by ``exp(-z sqrt(k) / d)``
    and delayed by ``z sqrt(k) / d`` (the heat equation's periodic solution;
    ``d`` the per-site damping depth in m), on top of the annual mean and a
    geothermal gradient (K m-1).
    """
    mean = ground.mean(1)
    spectrum = np.fft.rfft(ground - mean[:, None], axis=1)  # (site, 7)
    k = np.arange(spectrum.shape[1], dtype=float)
    scale = np.sqrt(k)[None, :, None] / damping[:, None, None] * Z  # (site, 7, layer)
    wave = np.fft.irfft(spectrum[:, :, None] * np.exp(-(1.0 + 1.0j) * scale), n=N_MONTHS, axis=1)
    return T_FREEZE + mean[:, None, None] + geothermal * Z + wave


# ---------------------------------------------------------------------------
# active layer
# ---------------------------------------------------------------------------


def active_layer_depth(tsoi: np.ndarray) -> np.ndarray:
    """Active-layer depth (m) of each month from TSOI (..., month, layer) in K.

    CTSM's rule with the deepest thaw: the deepest thawed node whose lower
    neighbour is frozen, interpolated linearly to 0 degC between the two
    nodes; 49.556 m (bottom of level 25) when layer 20 is thawed; 0 when no
    layer thaws.
    """
    tsoi = np.asarray(tsoi, dtype=float)
    thawed = tsoi > T_FREEZE
    edge = thawed[..., :-1] & ~thawed[..., 1:]  # thawed node j above frozen node j+1
    has_edge = edge.any(-1)
    # deepest edge: last True along the layer axis
    j = edge.shape[-1] - 1 - np.argmax(edge[..., ::-1], axis=-1)
    t_up = np.take_along_axis(tsoi, j[..., None], -1)[..., 0]
    t_dn = np.take_along_axis(tsoi, j[..., None] + 1, -1)[..., 0]
    z = np.asarray(ZSOI)
    frac = (t_up - T_FREEZE) / np.where(t_up > t_dn, t_up - t_dn, 1.0)
    alt = z[j] + (z[j + 1] - z[j]) * np.clip(frac, 0.0, 1.0)
    alt = np.where(has_edge, alt, 0.0)
    return np.where(thawed[..., -1], ALT_FULL_COLUMN, alt)


def active_layer(tsoi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ALTMAX and ALTMAX_LASTYEAR (site, month) in m from TSOI (site, month, layer).

    ALTMAX is the running maximum of :func:`active_layer_depth` within the
    calendar year; ALTMAX_LASTYEAR is its annual maximum in every month.
    """
    alt = active_layer_depth(tsoi)
    altmax = np.maximum.accumulate(alt, axis=1)
    altmax_lastyear = np.repeat(alt.max(axis=1, keepdims=True), N_MONTHS, axis=1)
    return altmax, altmax_lastyear


# ---------------------------------------------------------------------------
# water, oxygen and nitrogen scalars
# ---------------------------------------------------------------------------


def ensure_wettest_month(w: np.ndarray) -> np.ndarray:
    """Raise each layer's wettest month to at least :data:`W_WETTEST_MIN` (in place; returns ``w``).

    A layer that never decomposes makes CLM5's steady state singular.
    """
    wettest = np.argmax(w, axis=1)[:, None, :]
    w_max = np.take_along_axis(w, wettest, axis=1)
    np.put_along_axis(w, wettest, np.maximum(w_max, W_WETTEST_MIN), axis=1)
    return w


def water_scalar(w: np.ndarray, tsoi: np.ndarray, *, subsoil_floor, liquid) -> np.ndarray:
    """W_SCALAR (site, month, layer) from a moisture field ``w`` of that shape.

    The subsoil keeps some moisture (``subsoil_floor (1 - exp(-z / 0.3))``,
    per site); where TSOI <= 273.15 K only the ``liquid`` fraction of the
    water counts (per site or a scalar; at least 0.05); clipped to [0, 1]; then
    :func:`ensure_wettest_month`.
    """
    w = np.maximum(w, per_site(subsoil_floor) * (1.0 - np.exp(-Z / 0.3)))
    w = np.where(tsoi <= T_FREEZE, np.maximum(w * per_site(liquid), 0.05), w)
    return ensure_wettest_month(np.clip(w, 0.0, 1.0))


def wet_soil_anoxia(w: np.ndarray, wet_terrain=None) -> np.ndarray:
    """How much wet soil lowers the oxygen scalar, (site, 1, layer): for :func:`oxygen_scalar`.

    ``1.6 wetness (1 - exp(-z / 0.8))``: nothing at the surface, more at depth,
    with ``wetness = max(mean W_SCALAR over the year - 0.5 + wet_terrain, 0)``;
    ``wet_terrain`` (per site, optional) adds the wetness of the terrain.
    """
    excess = w.mean(axis=1, keepdims=True) - 0.5
    if wet_terrain is not None:
        excess = excess + per_site(wet_terrain)
    wetness = np.clip(excess, 0.0, None)
    return 1.6 * wetness * (1.0 - np.exp(-Z / 0.8))


def oxygen_scalar(anoxia, n: int) -> np.ndarray:
    """O_SCALAR (n, month, layer): ``1 - anoxia`` clipped to [:data:`O_SCALAR_MIN`, 1]."""
    o = np.clip(1.0 - anoxia, O_SCALAR_MIN, 1.0)
    return np.ascontiguousarray(np.broadcast_to(o, (n, N_MONTHS, N_LAYERS)))


def growing_season(peak, hemisphere=None) -> np.ndarray:
    """The growing season's weight, ``max(cos(2 pi (m - peak) / 12), 0)``, (site, month, 1).

    ``peak`` is the month of its maximum (per site or a scalar); an optional
    ``hemisphere`` (per site, +1 north ... -1 south) multiplies the wave
    first, so that it fades towards the equator.
    """
    wave = np.cos(2.0 * np.pi * (MONTHS - per_site(peak)) / N_MONTHS)
    if hemisphere is not None:
        wave = per_site(hemisphere) * wave
    return np.clip(wave, 0.0, None)


def nitrogen_limitation(surface, rise, efolding: float, dip: float, growing, noise=None) -> np.ndarray:
    """FPI_vr (site, month, layer): nitrogen limitation easing with depth, stronger in the growing season.

    ``surface + rise (1 - exp(-z / efolding)) - dip growing exp(-z / 0.3)``
    (``surface`` and ``rise`` per site as (site, 1, 1) or scalars, ``growing``
    from :func:`growing_season`), plus ``noise`` (site, month, layer) if given,
    clipped to [:data:`FPI_MIN`, 1].
    """
    fpi = surface + rise * (1.0 - np.exp(-Z / efolding)) - dip * growing * np.exp(-Z / 0.3)
    if noise is not None:
        fpi = fpi + noise
    return np.clip(fpi, FPI_MIN, 1.0)


# ---------------------------------------------------------------------------
# carbon inputs, bedrock, sand
# ---------------------------------------------------------------------------


def seasonal_weights(seasonality, peak) -> np.ndarray:
    """Shares of the annual input per month (site, month) from a cosine wave.

    ``max(1 + seasonality cos(2 pi (m - peak) / 12), 0.02)``, normalised to sum
    to 1 over the year; ``seasonality`` and ``peak`` (month) per site or scalars.
    """
    m = np.arange(N_MONTHS, dtype=float)[None, :]
    weights = np.maximum(
        1.0 + np.asarray(seasonality)[..., None] * np.cos(2.0 * np.pi * (m - np.asarray(peak)[..., None]) / N_MONTHS),
        0.02,
    )
    weights /= weights.sum(axis=1, keepdims=True)
    return weights


def carbon_inputs(total, weights, *, cwd, metabolic, cellulose, lignin) -> dict[str, np.ndarray]:
    """Monthly carbon inputs (gC m-2 month-1) by pool: CWD_INPUT and LITR1-3_INPUT (site, month).

    ``total`` (site,) gC m-2 yr-1 is split into CWD (fraction ``cwd``) and
    litter; the litter into metabolic (LITR1), cellulose (LITR2) and lignin
    (LITR3) by the given fractions (per site); each part is spread over the
    months by ``weights`` (site, month), summing to 1 over the year.
    """
    annual = np.stack([cwd, (1 - cwd) * metabolic, (1 - cwd) * cellulose, (1 - cwd) * lignin], axis=1)
    per_month = (total[:, None] * annual)[:, :, None] * weights[:, None, :]  # (site, pool, month)
    names = ("CWD_INPUT", "LITR1_INPUT", "LITR2_INPUT", "LITR3_INPUT")
    return {name: per_month[:, k] for k, name in enumerate(names)}


def bedrock_level(depth, shallowest: int = 5, deepest: int = N_LAYERS - 1) -> np.ndarray:
    """nbedrock for a bedrock at ``depth`` (m): the soil layers whose bottom lies above it,
    kept within [``shallowest``, ``deepest``]."""
    return np.clip(np.searchsorted(np.asarray(ZISOI), depth, side="right"), shallowest, deepest)


def bedrock_depth_of_level(nbedrock) -> np.ndarray:
    """Depth (m) of the bedrock below ``nbedrock`` soil layers: the bottom of the last soil layer above it."""
    return np.asarray(ZISOI)[np.clip(nbedrock, 1, N_LAYERS) - 1]


def at_layer_nodes(values, depths) -> np.ndarray:
    """(site, layer): ``values`` (site, k) given at ``depths`` (k,) in m, interpolated linearly
    to the layer nodes, constant above the first and below the last depth."""
    z = np.asarray(ZSOI)
    eye = np.eye(len(depths))
    weights = np.stack([np.interp(z, depths, eye[k]) for k in range(len(depths))], axis=1)  # (layer, k)
    return values @ weights.T


def layer_sand(sand) -> np.ndarray:
    """CELLSAND (%): sand content on the layers, clipped to [0, 100]."""
    return np.clip(sand, 0.0, 100.0)
