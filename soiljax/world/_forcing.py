"""The world's forcing: a :class:`soiljax.Forcing` consistent with the climate of its points.

:func:`environment_forcing` turns an :func:`~soiljax.world._planet.environment`
(cells or sites) into the monthly forcing with the shared climate -> forcing
formulas of :mod:`soiljax._climate`; what is the world's own (the water
scalar of the moisture index, the nitrogen limitation of temperature and
topsoil nitrogen, the inputs spread by the growing season) is here.  The
"Forcing" section of :mod:`soiljax.world` describes it.
"""

from __future__ import annotations

import numpy as np

from .._climate import (
    Z,
    active_layer,
    at_layer_nodes,
    carbon_inputs,
    growing_season,
    layer_sand,
    monthly,
    nitrogen_limitation,
    oxygen_scalar,
    soil_temperature,
    water_scalar,
    wet_soil_anoxia,
)
from .._forcing import Forcing
from ._common import sigmoid

_SOIL_MID = np.array([0.15, 0.65, 1.5])  # m, middle of each soil depth interval of the covariates
_GEOTHERMAL = 0.02  # K m-1
_FORCING_CHUNK = 8192  # points per batch of arrays (bounds the memory of a large world)


def _forcing_arrays(env: dict, lo: int, hi: int) -> dict[str, np.ndarray]:
    """Forcing variables (file names) of points lo:hi of ``env``."""
    sl = slice(lo, hi)
    n = hi - lo

    # soil temperature: the ground-surface series propagated down (heat equation)
    tsoi = soil_temperature(env["t_ground"][sl], env["damping"][sl], _GEOTHERMAL)

    # water scalar: the monthly moisture index at the surface, its seasonal swing fading with depth
    surface = np.clip(1.3 * env["moist"][sl] ** 0.8 - 0.1, 0.0, 1.0)
    w_bar = surface.mean(1)
    w = w_bar[:, None, None] + (surface - w_bar[:, None])[:, :, None] * np.exp(-Z / 1.0)
    floor = 0.05 + 0.15 * np.clip(env["aridity"][sl], 0.0, 1.0)
    w = water_scalar(w, tsoi, subsoil_floor=floor, liquid=0.2)

    # oxygen: wet soils and wet terrain (high TWI) limit it at depth
    o = oxygen_scalar(wet_soil_anoxia(w, wet_terrain=0.04 * (env["twi"][sl] - 9.0)), n)

    # nitrogen limitation: from temperature and topsoil nitrogen, easing with depth and outside the growing season
    fpi0 = 0.15 + 0.55 * sigmoid(0.12 * (env["t_ann"][sl] - 8.0) + 0.8 * (env["nitrogen_top"][sl] - 1.5))
    fpi0 = fpi0[:, None, None]
    growing = growing_season(env["peak"][sl], hemisphere=env["hemi"][sl])
    fpi = nitrogen_limitation(fpi0, (1.0 - fpi0) * 0.85, 0.6, 0.1, growing)

    altmax, altmax_lastyear = active_layer(tsoi)

    # carbon input: the annual NPP, split by land cover, spread over the growing season
    t_air = env["t_air"][sl]
    growth = sigmoid((t_air - 3.0) / 2.5) * (0.15 + 0.85 * np.minimum(1.0, 2.0 * env["moist"][sl]))
    weights = (growth + 0.01) / (growth + 0.01).sum(1, keepdims=True)
    cover = env["cover"][sl]
    metabolic = 0.25 + 0.2 * (cover[:, 1] + cover[:, 2])
    lignin = 0.12 + 0.13 * cover[:, 0]
    inputs = carbon_inputs(
        env["npp"][sl],
        weights,
        cwd=0.02 + 0.33 * cover[:, 0] + 0.05 * cover[:, 3],
        metabolic=metabolic,
        cellulose=1.0 - metabolic - lignin,
        lignin=lignin,
    )

    return dict(
        TSOI=tsoi,
        W_SCALAR=w,
        O_SCALAR=o,
        FPI_vr=fpi,
        ALTMAX=altmax,
        ALTMAX_LASTYEAR=altmax_lastyear,
        nbedrock=monthly(env["nbedrock"][sl]),
        **inputs,
        # CELLSAND: the three depth intervals interpolated linearly between their middles
        CELLSAND=layer_sand(at_layer_nodes(env["sand"][sl], _SOIL_MID)),
    )


def environment_forcing(env: dict, labels) -> Forcing:
    """The :class:`soiljax.Forcing` (leading axis = point) of an environment, with site labels ``labels``."""
    n = env["covariates"].shape[0]
    parts = [_forcing_arrays(env, lo, min(lo + _FORCING_CHUNK, n)) for lo in range(0, n, _FORCING_CHUNK)]
    values = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    return Forcing.from_variables(values, site_labels=labels)

