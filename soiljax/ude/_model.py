"""The SOC advection-diffusion-reaction model and its universal-differential-equation form.

Physics (paper eq. 1 / eq. 4)::

    dC/dt = D d2C/dz2 - v dC/dz + P(pH, C, CEC, clay, z, t) - R(pH, C, CEC, clay, z, t)

on depth ``z`` in [0, 1] m, time ``t`` in years, with zero-gradient (Neumann) boundaries
``dC/dz = 0`` at ``z = 0`` and ``z = 1`` (paper eq. 6).

Method of lines
---------------
``Nz`` uniform nodes ``z_i = i * dz`` (``dz = 1 / (Nz - 1)``, nodes on both boundaries).
Both derivatives use second-order central differences.  The Neumann condition is imposed
with mirrored ghost nodes, ``C_{-1} = C_1`` and ``C_{Nz} = C_{Nz-2}``, which makes the
one-sided boundary stencils second order as well.

Mass budget.  With trapezoid weights (half weight on the two boundary nodes) the discrete
diffusion operator conserves mass exactly: the Neumann condition closes the *diffusive*
flux.  The boundary condition does not close the *advective* flux ``v C``: as in the
continuous problem, ``d/dt int C dz = -v (C(1) - C(0))``.  Discretely the trapezoid mass
changes at exactly ``-(v/2) (C_{N-1} + C_{N-2} - C_0 - C_1)``; ``tests/test_ude.py`` checks
both identities.  With the default ``v = 1 mm/yr`` this boundary exchange is small
(about 1e-3 of the profile mass per year).

Physical coefficients (the paper does not state them)
------------------------------------------------------
* ``D = 5e-4 m2 yr-1``: a bioturbation / diffusive-mixing coefficient in the middle of
  the range reported for mineral soils (1e-4 to 1e-3 m2 yr-1).
* ``v = 1e-3 m yr-1`` (1 mm per year downward): a typical effective advection rate of
  SOC by leaching and burial.
With these values the largest eigenvalue of the discrete operator is about
``4 D / dz^2 = 1.7 yr-1``, far inside Tsit5's stability region for the step sizes the
driver oscillations impose, so an explicit solver is right.  Both may be made trainable
(``train_physics=True``); ``D`` is stored as its logarithm so it stays positive.

Reactions are pluggable (the equinox abstract/final pattern):

* :class:`ReferenceReactions` - the documented truth used to generate the synthetic data,
* :class:`NoReactions` - the paper's own data-generation variant (``P = R = 0``),
* :class:`NeuralReactions` - the two networks ``NN_P`` and ``NN_R`` of the UDE.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, PRNGKeyArray

# ---------------------------------------------------------------------------------------
# Grid and documented constants
# ---------------------------------------------------------------------------------------
NZ = 30
"""Number of depth nodes (paper: Nz = 30)."""
DEPTH = 1.0
"""Depth of the profile in m."""
T_END = 50.0
"""Simulated horizon in years."""
DIFFUSIVITY = 5e-4
"""Default diffusion coefficient D in m2 yr-1 (see module docstring)."""
VELOCITY = 1e-3
"""Default downward advection velocity v in m yr-1 (see module docstring)."""
FAIL_PENALTY = 1e6
"""Loss returned by a failed solve (the paper's safe-solve penalty)."""


def depth_grid(nz: int = NZ, depth: float = DEPTH) -> Float[Array, " nz"]:
    """Uniform node positions ``z_i = i * depth / (nz - 1)``, boundaries included."""
    if nz < 3:
        raise ValueError(f"the depth grid needs at least 3 nodes, got nz={nz}")
    return jnp.linspace(0.0, depth, nz)


def transport(
    c: Float[Array, " nz"], diffusivity, velocity, dz
) -> Float[Array, " nz"]:
    """``D C_zz - v C_z`` by central differences with mirrored ghost nodes (Neumann)."""
    padded = jnp.concatenate([c[1:2], c, c[-2:-1]])
    upper = padded[2:]
    lower = padded[:-2]
    c_zz = (upper - 2.0 * c + lower) / dz**2
    c_z = (upper - lower) / (2.0 * dz)
    return diffusivity * c_zz - velocity * c_z


def trapezoid_mass(c: Float[Array, "... nz"], dz) -> Float[Array, "..."]:
    """Profile mass ``int C dz`` by the trapezoid rule, the quantity the operator conserves."""
    return dz * (jnp.sum(c, axis=-1) - 0.5 * (c[..., 0] + c[..., -1]))


# ---------------------------------------------------------------------------------------
# Drivers (paper eqs. 8-11)
# ---------------------------------------------------------------------------------------
def initial_profile(z, c0: float = 1.2, k_decay: float = 0.02, scale: float = 100.0):
    """Paper eq. 8: ``C(z, 0) = C0 exp(-k_decay * L * z)`` (C0 = 1.2, k = 0.02, L = 100)."""
    return c0 * jnp.exp(-k_decay * scale * z)


def ph_field(z, t):
    """Paper eq. 9: ``pH = 6.5 - 0.5 z + 0.10 sin(2 pi t / 1.0)`` (annual cycle)."""
    return 6.5 - 0.5 * z + 0.10 * jnp.sin(2.0 * jnp.pi * t / 1.0)


def cec_field(z, t):
    """Paper eq. 10: ``CEC = 0.5 + 0.1 sin(2 pi z) + 0.05 cos(2 pi t / 5.0)``."""
    return 0.5 + 0.1 * jnp.sin(2.0 * jnp.pi * z) + 0.05 * jnp.cos(2.0 * jnp.pi * t / 5.0)


def clay_field(z, t):
    """Paper eq. 11: ``Clay = 25.0 + 5.0 cos(2 pi z) + 0.5 sin(2 pi t / 10.0)`` (%)."""
    return 25.0 + 5.0 * jnp.cos(2.0 * jnp.pi * z) + 0.5 * jnp.sin(2.0 * jnp.pi * t / 10.0)


class Drivers(eqx.Module):
    """Soil drivers pH, CEC and clay at the grid nodes, as functions of time.

    The clean drivers are the analytic paper eqs. 9-11.  Measurement noise enters as a
    multiplicative factor per depth node (``1 + eta * eps_i``, paper eq. 13) that is fixed
    in time: a measured property profile carries one error per sample depth.  Keeping the
    error constant in time also keeps the vector field smooth in ``t``; noise re-drawn at
    every time sample would put a kink in the right-hand side at every sample and force the
    adaptive solver to stop at each of them.
    """

    z: Float[Array, " nz"]
    ph_factor: Float[Array, " nz"]
    cec_factor: Float[Array, " nz"]
    clay_factor: Float[Array, " nz"]

    @classmethod
    def clean(cls, z: Float[Array, " nz"]) -> "Drivers":
        one = jnp.ones_like(z)
        return cls(z=z, ph_factor=one, cec_factor=one, clay_factor=one)

    def __call__(self, t) -> tuple[Array, Array, Array]:
        return (
            ph_field(self.z, t) * self.ph_factor,
            cec_field(self.z, t) * self.cec_factor,
            clay_field(self.z, t) * self.clay_factor,
        )


# ---------------------------------------------------------------------------------------
# Reaction terms
# ---------------------------------------------------------------------------------------
class AbstractReactions(eqx.Module):
    """Production ``P`` and respiration ``R`` at every node (units of C per year)."""

    @abc.abstractmethod
    def __call__(self, c, z, t, ph, cec, clay) -> tuple[Array, Array]:
        raise NotImplementedError


class NoReactions(AbstractReactions):
    """``P = R = 0``: the paper's data-generation variant (transport only)."""

    def __call__(self, c, z, t, ph, cec, clay):
        zero = jnp.zeros_like(c)
        return zero, zero


class ReferenceReactions(AbstractReactions):
    """The documented truth: what the networks must recover.

    * production (root and litter inputs) decays exponentially with depth and is scaled
      by clay, which protects fresh inputs on mineral surfaces::

          P = p0 * exp(-z / z_p) * clay / 25

    * respiration is first order in C with a rate that rises with pH (microbial activity
      is higher in less acidic soil) and falls with CEC (organo-mineral protection)::

          R = k0 * exp(a_ph * (pH - 6.5)) / (1 + b_cec * CEC) * C

    Defaults ``p0 = 0.02 yr-1``, ``z_p = 0.3 m``, ``k0 = 0.045 yr-1``, ``a_ph = 0.5``,
    ``b_cec = 1.0`` give a surface turnover time of about 30 years, so over 50 years the
    profile moves a long way from the initial exponential towards the input-respiration
    balance and the networks have something real to learn.  The pH term carries the
    annual cycle of eq. 9 into the dynamics.
    """

    p0: float = 0.02
    z_p: float = 0.3
    k0: float = 0.045
    a_ph: float = 0.5
    b_cec: float = 1.0

    def __call__(self, c, z, t, ph, cec, clay):
        production = self.p0 * jnp.exp(-z / self.z_p) * clay / 25.0
        rate = self.k0 * jnp.exp(self.a_ph * (ph - 6.5)) / (1.0 + self.b_cec * cec)
        return production, rate * c


# Fixed affine scaling of the network inputs (pH, C, CEC, clay, z, t) to order one.
# Centre and half-range of each input over the paper's drivers; fixed (not learned) so
# the networks see the same scaling whatever data they are trained on.
INPUT_CENTRE = np.array([6.25, 0.6, 0.5, 25.0, 0.5, 25.0])
INPUT_SCALE = np.array([0.5, 0.6, 0.15, 5.0, 0.5, 25.0])

ACTIVATIONS: dict[str, Callable] = {"tanh": jnp.tanh, "gelu": jax.nn.gelu}


class RateNet(eqx.Module):
    """A two-hidden-layer perceptron ``R^6 -> R_+`` for one rate (``NN_P`` or ``NN_R``).

    ``out_scale * softplus(.)`` keeps the rate non-negative (biological plausibility,
    paper section 2.2) and smooth, which an adaptive ODE solver needs; ``out_scale`` sets
    the order of magnitude of the rates (C per year) at initialisation.
    """

    layers: tuple[eqx.nn.Linear, eqx.nn.Linear, eqx.nn.Linear]
    activation: Callable = eqx.field(static=True)
    out_scale: float = eqx.field(static=True)

    def __init__(self, key, h1: int, h2: int, activation: str = "tanh", out_scale=0.05):
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}"
            )
        k1, k2, k3 = jax.random.split(key, 3)
        self.layers = (
            eqx.nn.Linear(6, h1, key=k1),
            eqx.nn.Linear(h1, h2, key=k2),
            eqx.nn.Linear(h2, 1, key=k3),
        )
        self.activation = ACTIVATIONS[activation]
        self.out_scale = out_scale

    def __call__(self, x: Float[Array, "6"]) -> Float[Array, ""]:
        x = (x - INPUT_CENTRE) / INPUT_SCALE
        x = self.activation(self.layers[0](x))
        x = self.activation(self.layers[1](x))
        return self.out_scale * jax.nn.softplus(self.layers[2](x)[0])


class NeuralReactions(AbstractReactions):
    """The UDE's unknown terms: ``P = NN_P(pH, C, CEC, clay, z, t)``, ``R = NN_R(...)``."""

    production: RateNet
    respiration: RateNet

    def __init__(self, key, h1: int = 32, h2: int = 16, activation: str = "tanh"):
        kp, kr = jax.random.split(key)
        self.production = RateNet(kp, h1, h2, activation)
        self.respiration = RateNet(kr, h1, h2, activation)

    def __call__(self, c, z, t, ph, cec, clay):
        x = jnp.stack([ph, c, cec, clay, z, jnp.broadcast_to(t, c.shape)], axis=-1)
        return jax.vmap(self.production)(x), jax.vmap(self.respiration)(x)


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------
class SOCModel(eqx.Module):
    """Semi-discrete advection-diffusion-reaction model: a diffrax vector field.

    ``model(t, c, drivers)`` returns ``dC/dt`` at the ``Nz`` nodes.  With
    :class:`NeuralReactions` this is the universal differential equation of the paper.
    """

    reactions: AbstractReactions
    log_diffusivity: Float[Array, ""]
    velocity: Float[Array, ""]
    train_physics: bool = eqx.field(static=True)

    def __init__(
        self,
        reactions: AbstractReactions,
        diffusivity: float = DIFFUSIVITY,
        velocity: float = VELOCITY,
        train_physics: bool = False,
    ):
        if diffusivity <= 0:
            raise ValueError(f"diffusivity must be positive (m2/yr), got {diffusivity}")
        self.reactions = reactions
        self.log_diffusivity = jnp.log(jnp.asarray(diffusivity, dtype=float))
        self.velocity = jnp.asarray(velocity, dtype=float)
        self.train_physics = train_physics

    @property
    def coefficients(self) -> tuple[Array, Array]:
        """``(D, v)``; gradients are stopped unless ``train_physics`` is set."""
        log_d, v = self.log_diffusivity, self.velocity
        if not self.train_physics:
            log_d, v = jax.lax.stop_gradient(log_d), jax.lax.stop_gradient(v)
        return jnp.exp(log_d), v

    def __call__(self, t, c, drivers: Drivers):
        z = drivers.z
        dz = z[1] - z[0]
        diffusivity, velocity = self.coefficients
        ph, cec, clay = drivers(t)
        production, respiration = self.reactions(c, z, t, ph, cec, clay)
        return transport(c, diffusivity, velocity, dz) + production - respiration


def make_ude(
    key: PRNGKeyArray,
    h1: int = 32,
    h2: int = 16,
    activation: str = "tanh",
    diffusivity: float = DIFFUSIVITY,
    velocity: float = VELOCITY,
    train_physics: bool = False,
) -> SOCModel:
    """A freshly initialised UDE: transport with the documented ``D``, ``v`` plus ``NN_P``, ``NN_R``."""
    return SOCModel(
        NeuralReactions(key, h1, h2, activation), diffusivity, velocity, train_physics
    )


# ---------------------------------------------------------------------------------------
# Solving
# ---------------------------------------------------------------------------------------
ADJOINTS: dict[str, Callable[[], diffrax.AbstractAdjoint]] = {
    "recursive": diffrax.RecursiveCheckpointAdjoint,
    "direct": diffrax.DirectAdjoint,
    "backsolve": diffrax.BacksolveAdjoint,
}
"""Reverse-mode adjoints selectable by name.

* ``recursive`` (default): exact gradient of the numerical solution, checkpointed.
* ``direct``: differentiates the unrolled bounded loop; more memory, also exact.
* ``backsolve``: the continuous adjoint (solves the adjoint ODE backwards); approximate,
  closest to the paper's ``InterpolatingAdjoint``.
"""


def get_adjoint(name: str | diffrax.AbstractAdjoint) -> diffrax.AbstractAdjoint:
    if isinstance(name, diffrax.AbstractAdjoint):
        return name
    try:
        return ADJOINTS[name]()
    except KeyError:
        raise ValueError(
            f"unknown adjoint {name!r}; choose one of {sorted(ADJOINTS)} "
            "or pass a diffrax.AbstractAdjoint instance"
        ) from None


def solve(
    model: SOCModel,
    drivers: Drivers,
    c0: Float[Array, " nz"],
    ts: Float[Array, " nt"],
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    adjoint: str | diffrax.AbstractAdjoint = "recursive",
    max_steps: int = 4096,
) -> tuple[Float[Array, "nt nz"], Bool[Array, ""]]:
    """Integrate from ``ts[0]`` and return the profiles at ``ts`` and a success flag.

    Tsit5 with a PID step-size controller (``pcoeff=0.3, icoeff=0.4``, the gains diffrax
    recommends for non-stiff problems).  ``throw=False``: a failed solve (step limit
    reached, non-finite state) does not raise; the flag is False and the returned profiles
    are replaced by ``c0`` so that nothing downstream (loss, gradients) sees ``inf`` or
    ``NaN``.  Callers turn the flag into a finite penalty (the double-``where`` pattern).
    """
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(model),
        diffrax.Tsit5(),
        t0=ts[0],
        t1=ts[-1],
        dt0=0.05,
        y0=c0,
        args=drivers,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(
            rtol=rtol, atol=atol, pcoeff=0.3, icoeff=0.4
        ),
        adjoint=get_adjoint(adjoint),
        max_steps=max_steps,
        throw=False,
    )
    ok = diffrax.is_successful(sol.result) & jnp.all(jnp.isfinite(sol.ys))
    ys = jnp.where(ok, sol.ys, jnp.broadcast_to(c0, sol.ys.shape))
    return ys, ok


def solve_steps(model, drivers, c0, t1, *, rtol=1e-5, atol=1e-5) -> int:
    """Number of accepted steps of one forward solve (for benchmarks and reports)."""
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(model),
        diffrax.Tsit5(),
        t0=0.0,
        t1=t1,
        dt0=0.05,
        y0=c0,
        args=drivers,
        stepsize_controller=diffrax.PIDController(
            rtol=rtol, atol=atol, pcoeff=0.3, icoeff=0.4
        ),
        max_steps=100_000,
    )
    return int(sol.stats["num_accepted_steps"])
