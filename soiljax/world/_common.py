"""What the world's modules share: its seed rules and a smooth step.

Every random number of a world comes from :func:`purpose_rng`: a numpy
generator seeded from the world seed and stable hashes of what it is for, so
that adding a purpose (or more sites) never changes another one's numbers.
"""

from __future__ import annotations

import zlib

import numpy as np


def check_seed(seed) -> int:
    """``seed`` as an int; a ValueError unless it is a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def purpose_rng(seed: int, *keys) -> np.random.Generator:
    """A generator for one purpose: the world seed plus stable hashes of ``keys``."""
    entropy = [int(seed)] + [zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def sigmoid(x):
    """The logistic function 1 / (1 + exp(-x)), written with tanh (no overflow)."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x)))
