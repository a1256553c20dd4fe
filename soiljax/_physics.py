"""Physics shared by CLM5 and COMPAS: environmental scalars, input allocation and
vertical transport (MODELS.md sections 3.2, 3.5 and 3.6).

All functions work on one site; batch them with ``jax.vmap``.  Rates are per
day inside the matrices (365 days per year), as in PRODA.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._forcing import Forcing
from ._grid import DZ, DZ_NODE_ALL, N_LAYERS, ZISOI_ALL, ZSOI, ZSOI_ALL, ZTOP

DAYS_PER_YEAR = 365.0
T_REF = 298.15  # K, reference temperature of the Q10 function
MIN_DIFFUSIVITY = 1e-30  # m2 day-1, CLM5's floor for "no mixing"
CRYO_MAX_DEPTH = 3.0  # m, depth at which cryoturbation has decayed to zero
BIO_MIN_ALT = 2.0  # m, active layers deeper than this use bioturbation


def temperature_scalar(q10, tsoi: Float[Array, "month layer"]) -> Float[Array, "month layer"]:
    """xi_T = q10^((T - 298.15) / 10).

    PRODA's frozen branch q10^-2.5 q10^((T - 273.15)/10) is the same function
    (it uses one Q10 on both sides of freezing), so one expression serves both.
    """
    return jnp.exp(jnp.log(q10) * (tsoi - T_REF) / 10.0)


def water_scalar(w_scaling, w_scalar: Float[Array, "month layer"]) -> Float[Array, "month layer"]:
    """xi_W = min(W_SCALAR * w_scaling, 1)."""
    return jnp.minimum(w_scalar * w_scaling, 1.0)


@jax.custom_vjp
def environment_means(q10, w_scaling, tsoi, w_scalar, o_scalar, fpi_vr):
    """Month means of xi_T xi_W xi_O and of xi_T xi_W xi_O xi_N per layer (CLM5's K).

    Same values as :func:`environment_means_autodiff`; the derivative is
    written out by hand because JAX's automatic one broadcast and reduced
    (month, layer) arrays in a pattern XLA's CPU backend ran unvectorised,
    which made the gradient of a steady state 3-4x the cost of the steady
    state.  Forcing cotangents are exact too (and dropped by XLA when unused).
    """
    return environment_means_autodiff(q10, w_scaling, tsoi, w_scalar, o_scalar, fpi_vr)


def environment_means_autodiff(q10, w_scaling, tsoi, w_scalar, o_scalar, fpi_vr):
    env = temperature_scalar(q10, tsoi) * water_scalar(w_scaling, w_scalar) * o_scalar
    return jnp.mean(env, axis=0), jnp.mean(env * fpi_vr, axis=0)


def _environment_means_fwd(q10, w_scaling, tsoi, w_scalar, o_scalar, fpi_vr):
    xi_t = temperature_scalar(q10, tsoi)
    w_raw = w_scalar * w_scaling
    xi_w = jnp.minimum(w_raw, 1.0)
    env = xi_t * xi_w * o_scalar
    n = tsoi.shape[0]
    means = (jnp.sum(env, axis=0) / n, jnp.sum(env * fpi_vr, axis=0) / n)
    # d env / d q10 = env (T - Tref) / (10 q10);  d env / d w = xi_t o W where W w < 1
    d_q10 = env * (tsoi - T_REF) / (10.0 * q10)
    wet = w_raw < 1.0
    d_w = jnp.where(wet, xi_t * o_scalar * w_scalar, 0.0)
    parts = (
        jnp.sum(d_q10, axis=0) / n,
        jnp.sum(d_q10 * fpi_vr, axis=0) / n,
        jnp.sum(d_w, axis=0) / n,
        jnp.sum(d_w * fpi_vr, axis=0) / n,
    )
    return means, (parts, q10, w_scaling, xi_t, xi_w, wet, env, o_scalar, fpi_vr)


def _environment_means_bwd(res, cot):
    (dq_s, dq_l, dw_s, dw_l), q10, w_scaling, xi_t, xi_w, wet, env, o_scalar, fpi_vr = res
    c_s, c_l = cot
    q10_bar = jnp.sum(c_s * dq_s + c_l * dq_l)
    w_bar = jnp.sum(c_s * dw_s + c_l * dw_l)
    n = env.shape[0]
    c_env = (c_s + c_l * fpi_vr) / n  # cotangent of each monthly env value
    tsoi_bar = c_env * env * jnp.log(q10) / 10.0
    w_scalar_bar = jnp.where(wet, c_env * xi_t * o_scalar * w_scaling, 0.0)
    o_bar = c_env * xi_t * xi_w
    fpi_bar = c_l * env / n
    return q10_bar, w_bar, tsoi_bar, w_scalar_bar, o_bar, fpi_bar


environment_means.defvjp(_environment_means_fwd, _environment_means_bwd)


def depth_scalar(efolding) -> Float[Array, " layer"]:
    """xi_D = exp(-z / efolding) at the 20 layer nodes (0 for efolding <= 0).

    The double ``where`` keeps the gradient finite at efolding = 0.
    """
    positive = efolding > 0
    safe = jnp.where(positive, efolding, 1.0)
    return jnp.where(positive, jnp.exp(-jnp.asarray(ZSOI) / safe), 0.0)


def turnover_rate(tau):
    """k = 1 / (365 tau) in day-1, with tau in years (tau <= 0 gives a huge rate)."""
    return 1.0 / (DAYS_PER_YEAR * jnp.maximum(tau, 1e-30))


def input_fraction(beta, forcing: Forcing) -> Float[Array, " layer"]:
    """Fraction of the column input that goes to each layer (sums to 1).

    Jackson et al. (1996) profile beta^(100 z) normalised over all 20 layers
    when ALTMAX_LASTYEAR > 0 in every month, otherwise everything to layer 1
    (PRODA's ``if altmax_lastyear_profile > 0`` on a 12-vector).
    """
    cum_top = jnp.exp(100.0 * jnp.asarray(ZTOP) * jnp.log(beta))
    cum_bot = jnp.exp(100.0 * jnp.asarray(ZISOI_ALL[:N_LAYERS]) * jnp.log(beta))
    prof = (cum_top - cum_bot) / DZ
    weights = DZ * prof
    f = weights / jnp.sum(weights)
    thawed = jnp.all(forcing.altmax_lastyear > 0)
    top_only = jnp.zeros(N_LAYERS).at[0].set(1.0)
    return jnp.where(thawed, f, top_only)


def litter_input(beta, forcing: Forcing) -> Float[Array, "4 layer"]:
    """Input to CWD, L1, L2, L3 per layer in gC m-3 day-1 (u = B I)."""
    f = input_fraction(beta, forcing)
    annual = forcing.annual_input  # (4,) gC m-2 yr-1
    return annual[:, None] * f[None, :] / (jnp.asarray(DZ)[None, :] * DAYS_PER_YEAR)


# ---------------------------------------------------------------------------
# vertical transport
# ---------------------------------------------------------------------------

_ZISOI21 = ZISOI_ALL[: N_LAYERS + 1]
_ZSOI22 = ZSOI_ALL[: N_LAYERS + 2]
_DZNODE22 = DZ_NODE_ALL[: N_LAYERS + 2]
# weight of node j+1 in the harmonic mean at interface j+1/2, j = 1..20
_W_INTERFACE = (_ZSOI22[1 : N_LAYERS + 1] - _ZISOI21[:N_LAYERS]) / _DZNODE22[1 : N_LAYERS + 1]


_INV_DZ = 1.0 / DZ
_INV_DZNODE = 1.0 / _DZNODE22[1 : N_LAYERS + 1]  # 1 / dz_node_{j+1}, j = 1..20


def _node_diffusivity(bio, cryo, alt, nbedrock) -> Float[Array, "*month node21"]:
    """Node diffusivities D_1..D_21 (m2 day-1); ``alt``/``nbedrock`` may carry a month axis."""
    alt = jnp.asarray(alt)[..., None]
    nbedrock = jnp.asarray(nbedrock)[..., None]
    j = jnp.arange(1, N_LAYERS + 2)
    zisoi = jnp.asarray(_ZISOI21)
    in_soil = j <= nbedrock + 1
    # cryoturbation: constant above the active-layer depth, then a linear decay
    # to zero at min(3 m, bottom of the layer below bedrock).
    one_hot = jnp.arange(1, N_LAYERS + 1) == jnp.clip(nbedrock, 1, N_LAYERS)
    z_bed = jnp.sum(jnp.where(one_hot, jnp.asarray(ZISOI_ALL[1 : N_LAYERS + 1]), 0.0), axis=-1, keepdims=True)
    span = jnp.minimum(CRYO_MAX_DEPTH, z_bed) - alt  # per month
    inv_span = 1.0 / jnp.where(span > 0, span, 1.0)
    decayed = jnp.where(span > 0, jnp.maximum(cryo * (1.0 - (zisoi - alt) * inv_span), 0.0), 0.0)
    d_cryo = jnp.where(zisoi < alt, cryo, decayed)
    is_cryo = (alt > 0) & (alt <= BIO_MIN_ALT)
    is_bio = alt > BIO_MIN_ALT
    d = jnp.where(in_soil & is_cryo, d_cryo, jnp.where(in_soil & is_bio, bio, 0.0))
    return jnp.maximum(d, MIN_DIFFUSIVITY)


def _patankar(pe):
    """Patankar's power-law weighting A(|Pe|) = max(0, (1 - 0.1 |Pe|)^5)."""
    return jnp.maximum(0.0, (1.0 - 0.1 * jnp.abs(pe)) ** 5)


def _monthly_transport(bio, cryo, alt, nbedrock, closed: bool):
    """Tridiagonal transport operator V per month as (lower, diag, upper).

    ``alt`` and ``nbedrock`` may carry a month axis; results then have shape
    (month, layer).  ``lower[j]`` multiplies x[j-1] in row j, ``upper[j]``
    multiplies x[j+1].  Follows CLM5's finite-volume scheme (Patankar 1980) as
    PRODA codes it: advection is zero, but like CLM5 every coefficient below
    1e-30 (diffusivity or advective velocity) is raised to 1e-30, which gives a
    1e-30 m day-1 downward advection and a Peclet weighting that only matters
    where there is no mixing (it sets the round-off-level carbon of frozen
    layers).  Written with one division per interface: this is the hot part of
    building the operators.
    """
    D = _node_diffusivity(bio, cryo, alt, nbedrock)  # (..., 21)
    w = jnp.asarray(_W_INTERFACE)
    d_lo, d_hi = D[..., :-1], D[..., 1:]
    # harmonic mean D_{j+1/2} = 1 / ((1 - w) / D_j + w / D_{j+1}), j = 1..20
    num = d_lo * d_hi
    den = (1.0 - w) * d_hi + w * d_lo
    inv_d_interface = den / num
    # conductance through interface j+1/2 and its Peclet number (advective 1e-30 over it)
    cond = jnp.asarray(_INV_DZNODE) / inv_d_interface  # d_up_j = d_dn_{j+1}
    pe = MIN_DIFFUSIVITY * inv_d_interface * jnp.asarray(_DZNODE22[1 : N_LAYERS + 1])
    flux = cond * _patankar(pe)  # d * A(Pe), shared by row j (up) and row j+1 (down)
    zeros = jnp.zeros_like(flux[..., :1])
    flux_dn = jnp.concatenate([zeros, flux[..., :-1]], axis=-1)
    flux_up = flux
    adv = MIN_DIFFUSIVITY
    if not closed:
        # PRODA: rows at or below the layer under bedrock reuse the downward
        # conductance upwards (Peclet weighting with zero advection, i.e. 1) and
        # drop advection there -- this leaks carbon through the bedrock interface.
        j = jnp.arange(1, N_LAYERS + 1)
        below = (j >= jnp.asarray(nbedrock)[..., None] + 1) & (j > 1)
        cond_dn = jnp.concatenate([zeros, cond[..., :-1]], axis=-1)
        flux_up = jnp.where(below, cond_dn, flux_up)
    inv_dz = jnp.asarray(_INV_DZ)
    a = -(flux_dn + adv) * inv_dz
    c = -flux_up * inv_dz
    # zero flux through the surface and through the base of layer 20
    first = jnp.arange(N_LAYERS) == 0
    last = jnp.arange(N_LAYERS) == N_LAYERS - 1
    a = jnp.where(first, 0.0, a)
    c = jnp.where(last, 0.0, c)
    return a, -a - c, c


class TransportBasis(NamedTuple):
    """Month-mean transport split by what drives it: V = bio V_bio + cryo V_cryo + V_floor.

    In every month a node mixes either by bioturbation (D = bio), by
    cryoturbation (D = cryo times a depth shape), or not at all (D raised to
    the 1e-30 floor), so each interface conductance is bio, cryo or a floor
    constant times a forcing-only factor.  The basis holds the (lower, upper)
    coefficients of each part (day-1 per m2 day-1 of diffusivity for the bio
    and cryo parts); it depends on the forcing only, so a jitted calibration
    loop computes it once.  Exact up to the 1e-30 floor's relative influence
    on mixed interfaces (below 1e-20).
    """

    lower: Float[Array, "3 layer"]  # rows: bio, cryo, floor
    upper: Float[Array, "3 layer"]


def transport_basis(forcing: Forcing, *, closed: bool) -> TransportBasis:
    """Forcing-only parts of the month-mean transport operator (see :class:`TransportBasis`)."""
    alt = jnp.maximum(forcing.altmax, forcing.altmax_lastyear)[..., None]  # (month, 1)
    nb = jnp.asarray(forcing.nbedrock)[..., None]
    # node shapes: cryo profile in cryo months, 1 in bio months (j <= nb + 1), else inactive
    shape_cryo = _node_diffusivity(0.0, 1.0, alt[..., 0], nb[..., 0])
    shape_bio = _node_diffusivity(1.0, 0.0, alt[..., 0], nb[..., 0])
    is_cryo = (alt > 0) & (alt <= BIO_MIN_ALT)
    is_bio = alt > BIO_MIN_ALT
    active = jnp.where(is_cryo, shape_cryo > MIN_DIFFUSIVITY, jnp.where(is_bio, shape_bio > MIN_DIFFUSIVITY, False))
    unit = jnp.where(active, jnp.where(is_cryo, shape_cryo, shape_bio), 1.0)  # (month, 21)
    w = jnp.asarray(_W_INTERFACE)
    both = active[..., :-1] & active[..., 1:]
    u_lo, u_hi = unit[..., :-1], unit[..., 1:]
    harmonic_unit = u_lo * u_hi / ((1.0 - w) * u_hi + w * u_lo)
    # an inactive node dominates the harmonic mean: D_int = 1e-30 / (sum of the weights of inactive nodes)
    inactive_weight = (1.0 - w) * ~active[..., :-1] + w * ~active[..., 1:]
    d_floor = MIN_DIFFUSIVITY / jnp.where(both, 1.0, inactive_weight)
    inv_dznode = jnp.asarray(_INV_DZNODE)
    cond_unit = jnp.where(both, harmonic_unit, 0.0) * inv_dznode  # per unit of bio or cryo
    cond_floor = jnp.where(both, 0.0, d_floor) * inv_dznode
    pe_floor = MIN_DIFFUSIVITY / jnp.where(both, 1.0, cond_floor)
    flux_floor = jnp.where(both, 0.0, cond_floor * _patankar(pe_floor))  # active: Pe < 1e-20, A = 1
    # fluxes through interface j+1/2 (month, 20) of each part; the bio and cryo
    # parts share cond_unit and differ only by which months they apply to
    zeros = jnp.zeros_like(cond_unit[..., :1])
    shift_dn = lambda x: jnp.concatenate([zeros, x[..., :-1]], axis=-1)  # noqa: E731
    inv_dz = jnp.asarray(_INV_DZ)
    not_first = jnp.arange(N_LAYERS) != 0
    not_last = jnp.arange(N_LAYERS) != N_LAYERS - 1
    up_unit, up_floor = cond_unit, flux_floor
    if not closed:
        # PRODA: rows at or below the layer under bedrock reuse the downward
        # conductance upwards, without Peclet weighting (no advection there)
        j = jnp.arange(1, N_LAYERS + 1)
        below = (j >= nb + 1) & (j > 1)
        up_unit = jnp.where(below, shift_dn(cond_unit), up_unit)
        up_floor = jnp.where(below, shift_dn(cond_floor), up_floor)
    a_unit = -shift_dn(cond_unit) * inv_dz * not_first
    a_floor = -(shift_dn(flux_floor) + MIN_DIFFUSIVITY) * inv_dz * not_first
    c_unit = -up_unit * inv_dz * not_last
    c_floor = -up_floor * inv_dz * not_last
    # Materialise the monthly arrays, then average with an unrolled sum: fused
    # into a reduction over the month axis XLA's CPU backend was 2-3x slower.
    a_unit, a_floor, c_unit, c_floor = jax.lax.optimization_barrier((a_unit, a_floor, c_unit, c_floor))
    n_months = a_unit.shape[-2]
    wb = is_bio[..., 0] / n_months
    wc = is_cryo[..., 0] / n_months
    lower = [0.0, 0.0, 0.0]
    upper = [0.0, 0.0, 0.0]
    for m in range(n_months):
        lower = [lower[0] + wb[m] * a_unit[m], lower[1] + wc[m] * a_unit[m], lower[2] + a_floor[m] / n_months]
        upper = [upper[0] + wb[m] * c_unit[m], upper[1] + wc[m] * c_unit[m], upper[2] + c_floor[m] / n_months]
    return TransportBasis(lower=jnp.stack(lower), upper=jnp.stack(upper))


def combine_transport(basis: TransportBasis, bio, cryo):
    """(lower, diag, upper) of V from a basis and diffusivities in m2 yr-1."""
    coef = jnp.stack([bio / DAYS_PER_YEAR, cryo / DAYS_PER_YEAR, jnp.ones_like(bio)])
    a = coef @ basis.lower
    c = coef @ basis.upper
    return a, -a - c, c


def transport_operator(bio, cryo, forcing: Forcing, *, closed: bool):
    """Month-mean vertical transport V (tridiagonal, day-1) for one site.

    ``bio`` and ``cryo`` are diffusivities in m2 yr-1.  Returns the arrays
    (lower, diag, upper), each of length 20, with V[j, j-1] = lower[j],
    V[j, j] = diag[j], V[j, j+1] = upper[j].  The model subtracts V:
    dX/dt = ... - V X.  Built from the forcing-only :func:`transport_basis`
    (cheap to differentiate, and hoisted out of loops that vary only the
    parameters); :func:`transport_operator_direct` evaluates the original
    month-by-month formulas instead.
    """
    return combine_transport(transport_basis(forcing, closed=closed), bio, cryo)


def transport_operator_direct(bio, cryo, forcing: Forcing, *, closed: bool):
    """V by the month-by-month formulas of the original code (reference for tests)."""
    alt = jnp.maximum(forcing.altmax, forcing.altmax_lastyear)
    a, _, c = _monthly_transport(bio / DAYS_PER_YEAR, cryo / DAYS_PER_YEAR, alt, forcing.nbedrock, closed)
    n_months = alt.shape[-1]
    a = sum(a[m] for m in range(n_months)) / n_months
    c = sum(c[m] for m in range(n_months)) / n_months
    return a, -a - c, c


def transport_dense(lower, diag, upper) -> Float[Array, "layer layer"]:
    """Dense 20 x 20 V from its three diagonals (for tests and baselines)."""
    return jnp.diag(diag) + jnp.diag(lower[1:], -1) + jnp.diag(upper[:-1], 1)


__all__ = [
    "DAYS_PER_YEAR",
    "temperature_scalar",
    "water_scalar",
    "depth_scalar",
    "turnover_rate",
    "input_fraction",
    "litter_input",
    "environment_means",
    "transport_basis",
    "combine_transport",
    "transport_operator",
    "transport_dense",
]
