"""Stocks to a depth and the six system-level components of Tao et al. (eqs. 10-14).

The paper defines the components loosely for a linear model; the definitions
below apply unchanged to CLM5 and to COMPAS, so the two can be compared:

``cte`` (1)
    Flux-weighted carbon transfer efficiency, eq. 10: sum_ij a_ij F_j / sum_j F_j
    with F_j the carbon decomposed from donor pool j (all layers, dz-weighted).
    Because sum_i a_ij = 1 - (respired fraction of j), this equals
    1 - total respiration / total decomposition flux, which also holds for
    COMPAS's nonlinear fluxes.
``k_bulk`` (yr-1)
    Stock-weighted baseline decomposition rate, eq. 11: sum k_i x_i / sum x_i over
    all pools and layers, where the baseline rate k_i is the decomposition flux
    divided by the environmental scalar (COMPAS: the effective Michaelis-Menten
    rates of DOC and SOC at the steady state).
``xi_system`` (1)
    Environmental modifier xi_T xi_W xi_D weighted by the SOC stock of each
    layer, eq. 13.
``v_system`` (yr-1)
    Vertical transport rate, eq. 12: the rate at which mixing removes carbon from
    a layer (the diagonal of V) weighted by the SOC stock of each layer.
``b_system`` (1)
    Input allocation index, eq. 14: (mean_z (1 - Y_z)^(1 / D_z))^5 with Y_z the
    cumulative input fraction above the bottom D_z (cm) of layer z, over the
    layers with Y_z < 1.  For the Jackson profile this recovers beta^5, the
    fraction of input placed below 5 cm; 0 when all input goes to layer 1.
``plant_input`` (gC m-2 yr-1)
    Annual plant carbon input to the litter pools.
"""

import equinox as eqx
import jax
import jax.numpy as jnp

from ._forcing import Forcing
from ._grid import DZ, ZISOI, layer_fraction_above
from ._models import AbstractSoilModel, SteadyState
from ._physics import DAYS_PER_YEAR, input_fraction

COMPONENT_UNITS = {
    "cte": "1",
    "k_bulk": "yr-1",
    "xi_system": "1",
    "v_system": "yr-1",
    "b_system": "1",
    "plant_input": "gC m-2 yr-1",
}
"""Units of the six system-level components (the keys are the variable names)."""

COMPONENT_LONG_NAMES = {
    "cte": "flux-weighted carbon transfer efficiency",
    "k_bulk": "stock-weighted baseline decomposition rate",
    "xi_system": "SOC-weighted environmental modifier",
    "v_system": "SOC-weighted vertical transport rate",
    "b_system": "input allocation index",
    "plant_input": "annual plant carbon input",
}
"""Long names of the six components, for file attributes and figure labels."""


def soc_stock(soc, depth: float):
    """Stock from the surface to ``depth`` (m) in kgC m-2 from per-layer densities in gC m-3.

    Full layers above ``depth`` plus the fraction of the layer containing it.
    ``soc`` may have leading axes; the last axis is the 20 layers.
    """
    w = jnp.asarray(DZ * layer_fraction_above(depth))
    return jnp.sum(jnp.asarray(soc) * w, axis=-1) / 1000.0


def _weighted_mean(values, weights):
    total = jnp.sum(weights)
    safe = jnp.where(total > 0, total, 1.0)
    return jnp.where(total > 0, jnp.sum(values * weights) / safe, 0.0)


def _components_one(model: AbstractSoilModel, u, forcing: Forcing, steady: SteadyState) -> dict:
    dz = jnp.asarray(DZ)
    x = steady.state
    ops = model.operators(u, forcing)
    decomposed = ops.decomposition(x)
    respired = ops.respiration(x)
    flux_total = jnp.sum(decomposed * dz)
    cte = 1.0 - jnp.sum(respired * dz) / jnp.where(flux_total > 0, flux_total, 1.0)
    cte = jnp.where(flux_total > 0, cte, 0.0)

    scalar = ops.baseline_scalar()
    ok = (scalar > 0) & (x > 0)
    baseline = jnp.where(ok, decomposed / jnp.where(ok, scalar * x, 1.0), 0.0) * DAYS_PER_YEAR
    k_bulk = _weighted_mean(baseline, x * dz)

    soc_layer_stock = steady.soc * dz
    xi_system = _weighted_mean(ops.environmental, soc_layer_stock)
    v_system = _weighted_mean(ops.linear.system.diag * DAYS_PER_YEAR, soc_layer_stock)

    frac = input_fraction(ops.theta["beta"], forcing)
    remaining = 1.0 - jnp.cumsum(frac)
    use = remaining > 1e-12
    per_cm = jnp.exp(jnp.log(jnp.where(use, remaining, 1.0)) / (100.0 * jnp.asarray(ZISOI)))
    n_use = jnp.sum(use)
    b_system = jnp.where(n_use > 0, (jnp.sum(jnp.where(use, per_cm, 0.0)) / jnp.maximum(n_use, 1)) ** 5, 0.0)

    return {
        "cte": cte,
        "k_bulk": k_bulk,
        "xi_system": xi_system,
        "v_system": v_system,
        "b_system": b_system,
        "plant_input": jnp.sum(forcing.annual_input),
    }


def system_components(model: AbstractSoilModel, u, forcing: Forcing, steady: SteadyState) -> dict:
    """The six system-level components (see the module docstring) per site.

    Works for one site or a 1-D batch (``forcing`` with a leading site axis,
    ``u`` of shape (site, param) or (param,)).  Returns a dict of arrays keyed
    as :data:`COMPONENT_UNITS`.
    """
    u = jnp.asarray(u)
    if forcing.batch_shape == ():
        return _components_one(model, u, forcing, steady)
    if len(forcing.batch_shape) != 1:
        raise ValueError(f"system_components expects one site or a 1-D batch, got batch shape {forcing.batch_shape}")
    if u.ndim == 1:
        u = jnp.broadcast_to(u, forcing.batch_shape + u.shape)
    return _components_batched(model, u, forcing, steady)


@eqx.filter_jit
def _components_batched(model, u, forcing, steady):
    return jax.vmap(lambda uu, ff, ss: _components_one(model, uu, ff, ss))(u, forcing, steady)
