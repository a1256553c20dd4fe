"""The CLM5 "20SL_8.5m" vertical grid shared by CLM5 and COMPAS.

Twenty soil layers carry carbon; five bedrock layers below them exist only so
that the transport stencil has neighbours (CLM5 uses 25 levels for hydrology
and heat).  All depths are in metres.
"""

from __future__ import annotations

import numpy as np

N_LAYERS = 20
"""Number of carbon-carrying soil layers."""

N_LEVELS = 25
"""Soil plus bedrock levels of the CLM5 grid."""


def _thickness() -> np.ndarray:
    j = np.arange(1, N_LEVELS + 1, dtype=np.float64)
    dz = np.empty(N_LEVELS)
    dz[:4] = 0.02 * j[:4]
    dz[4:13] = 0.08 + 0.04 * (j[4:13] - 4)
    dz[13:20] = 0.44 + 0.10 * (j[13:20] - 13)
    dz[20:] = dz[19] + ((j[20:] - 20) * 25.0) ** 1.5 / 100.0
    return dz


DZ_ALL = _thickness()
"""Thickness of all 25 levels [m]."""

ZISOI_ALL = np.cumsum(DZ_ALL)
"""Bottom interface depth of each of the 25 levels [m]."""

ZSOI_ALL = np.concatenate([[0.0], ZISOI_ALL[:-1]]) + DZ_ALL / 2.0
"""Node (centre) depth of each of the 25 levels [m]."""

DZ_NODE_ALL = np.diff(np.concatenate([[0.0], ZSOI_ALL]))
"""Distance between node j and node j-1 (node 0 at the surface) [m]."""

DZ = DZ_ALL[:N_LAYERS]
"""Thickness of the 20 carbon layers [m]."""

ZISOI = ZISOI_ALL[:N_LAYERS]
"""Bottom interfaces of the 20 carbon layers [m] (0.02 ... 8.60)."""

ZSOI = ZSOI_ALL[:N_LAYERS]
"""Node depths of the 20 carbon layers [m] (0.01 ... 8.03)."""

ZTOP = ZISOI - DZ
"""Top interfaces of the 20 carbon layers [m]."""


def layer_fraction_above(depth: float) -> np.ndarray:
    """Fraction of each of the 20 layers that lies above ``depth`` (metres).

    Used for stocks to a depth: full layers above ``depth`` plus the part of
    the layer that contains it.
    """
    if not np.isfinite(depth) or depth < 0:
        raise ValueError(f"depth must be a finite non-negative number of metres, got {depth!r}")
    return np.clip((depth - ZTOP) / DZ, 0.0, 1.0)
