"""Transient runs of the full models with diffrax (spin-up, perturbation experiments).

The models' steady states are exact solutions of dX/dt = 0; this module
integrates dX/dt itself so that a user can watch a profile approach its steady
state or respond to a perturbation.  Time is in years outside (the model
equations are in days).  The systems are stiff (metabolic litter turns over in
weeks, passive SOC in centuries), so the default solver is the implicit
``diffrax.Kvaerno5`` with a PID step-size controller.
"""

import diffrax
import equinox as eqx
import jax.numpy as jnp

from ._forcing import Forcing
from ._models import AbstractSoilModel
from ._physics import DAYS_PER_YEAR


def vector_field(model: AbstractSoilModel):
    """A diffrax vector field ``f(t, y, args)`` with t in years and ``args = (u, forcing)``."""

    def f(t, y, args):
        u, forcing = args
        return DAYS_PER_YEAR * model.tendency(u, forcing, y)

    return f


@eqx.filter_jit
def transient(
    model: AbstractSoilModel,
    u,
    forcing: Forcing,
    y0,
    t1: float,
    *,
    saveat=None,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = 1e-8,
    atol: float = 1e-8,
    dt0: float = 1e-3,
    max_steps: int = 100_000,
    throw: bool = True,
) -> diffrax.Solution:
    """Integrate one site from state ``y0`` (pool, layer; gC m-3) over ``t1`` years.

    ``saveat`` is a ``diffrax.SaveAt`` (default: the final state only).  Use
    ``jnp.linspace`` times in ``diffrax.SaveAt(ts=...)`` to record a spin-up.
    With ``throw=False`` a failed solve is reported in ``solution.result``
    instead of raising (needed under ``vmap``).
    """
    solver = diffrax.Kvaerno5() if solver is None else solver
    saveat = diffrax.SaveAt(t1=True) if saveat is None else saveat
    return diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field(model)),
        solver,
        t0=0.0,
        t1=t1,
        dt0=dt0,
        y0=jnp.asarray(y0, dtype=float),
        args=(jnp.asarray(u, dtype=float), forcing),
        saveat=saveat,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
        throw=throw,
    )
