"""Synthetic SOC data sets: the clean truth and its noisy observations.

The truth is the semi-discrete model of :mod:`soiljax.ude._model` with the paper's drivers
(eqs. 9-11), the initial profile of eq. 8, and the documented
:class:`~soiljax.ude._model.ReferenceReactions` (or, as an option, the paper's zero
reactions), solved with tight tolerances (``rtol = atol = 1e-10``) and sampled once a year
from ``t = 0`` to ``t = 50`` (51 profiles of 30 nodes: the depth-time data set of eq. 12).

Observations apply paper eq. 13 with fixed seeds:

* drivers pH, CEC, clay: one multiplicative error per depth node, white or AR-1 over depth,
  fixed in time (see :class:`~soiljax.ude._model.Drivers`);
* SOC: an independent draw for every sampled profile, white or AR-1 over depth.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._model import (
    NZ,
    T_END,
    Drivers,
    NoReactions,
    ReferenceReactions,
    SOCModel,
    depth_grid,
    initial_profile,
    solve,
)
from ._noise import multiplicative, standard_noise


@dataclasses.dataclass(frozen=True)
class NoiseSpec:
    """Relative noise levels and depth correlations for drivers and SOC observations."""

    eta_drivers: float = 0.0
    rho_drivers: float = 0.0
    eta_soc: float = 0.0
    rho_soc: float = 0.0
    seed: int = 0

    def __post_init__(self):
        for name in ("eta_drivers", "eta_soc"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} is a relative noise level and must be >= 0")


class SyntheticData(eqx.Module):
    """A clean depth-time SOC field, its noisy observation and the drivers.

    Attributes
    ----------
    z: node depths (m).
    ts: sample times (yr), ``ts[0] = 0``.
    c_clean: clean truth ``C(t_k, z_i)``.
    c_obs: noisy observations of ``c_clean`` (equal to it without noise).
    drivers: the drivers the model sees (noisy when the drivers carry noise).
    drivers_clean: the noise-free drivers used to generate the truth.
    """

    z: Float[Array, " nz"]
    ts: Float[Array, " nt"]
    c_clean: Float[Array, "nt nz"]
    c_obs: Float[Array, "nt nz"]
    drivers: Drivers
    drivers_clean: Drivers


def clean_truth(
    nz: int = NZ,
    t_end: float = T_END,
    n_times: int = 51,
    reactions: str = "reference",
) -> tuple[Float[Array, " nz"], Float[Array, " nt"], Float[Array, "nt nz"]]:
    """``(z, ts, C)`` of the truth; ``reactions`` is ``"reference"`` or ``"none"``."""
    if reactions == "reference":
        react = ReferenceReactions()
    elif reactions == "none":
        react = NoReactions()
    else:
        raise ValueError(
            f"unknown truth reactions {reactions!r}; use 'reference' (documented P and R) "
            "or 'none' (the paper's zero-reaction variant)"
        )
    z = depth_grid(nz)
    ts = jnp.linspace(0.0, t_end, n_times)
    ys, ok = eqx.filter_jit(solve)(
        SOCModel(react), Drivers.clean(z), initial_profile(z), ts, rtol=1e-10, atol=1e-10,
        max_steps=100_000,
    )
    if not bool(ok):
        raise RuntimeError("the reference solve failed; this is a bug in soiljax.ude")
    return z, ts, ys


def make_synthetic(
    noise: NoiseSpec = NoiseSpec(),
    nz: int = NZ,
    t_end: float = T_END,
    n_times: int = 51,
    reactions: str = "reference",
) -> SyntheticData:
    """The truth plus its observation under ``noise`` (reproducible from ``noise.seed``)."""
    z, ts, c_clean = clean_truth(nz, t_end, n_times, reactions)
    k_ph, k_cec, k_clay, k_soc = jax.random.split(jax.random.key(noise.seed), 4)

    def factor(key):
        eps = standard_noise(key, (nz,), noise.rho_drivers)
        return multiplicative(jnp.ones(nz), eps, noise.eta_drivers)

    drivers = Drivers(z, factor(k_ph), factor(k_cec), factor(k_clay))
    eps = standard_noise(k_soc, c_clean.shape, noise.rho_soc)
    c_obs = multiplicative(c_clean, eps, noise.eta_soc)
    return SyntheticData(z, ts, c_clean, c_obs, drivers, Drivers.clean(z))
