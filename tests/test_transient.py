"""Transient runs with diffrax approach the analytic steady states."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import soiljax
from soiljax._transient import transient


def _valid(model, reference, ref_forcing, key):
    for s in range(48):
        for k in range(4):
            u = jnp.asarray(reference[key][s, k])
            ss = model.steady_state(u, ref_forcing.site(s))
            if bool(ss.valid):
                return u, ref_forcing.site(s), ss
    raise AssertionError


def test_clm5_spin_up_from_zero_reaches_steady_state(reference, ref_forcing):
    model = soiljax.CLM5()
    u, f, ss = _valid(model, reference, ref_forcing, "u_clm5")
    sol = transient(model, u, f, jnp.zeros_like(ss.state), 1e9, rtol=1e-10, atol=1e-8)
    err = jnp.abs(sol.ys[-1] - ss.state) / jnp.maximum(jnp.abs(ss.state), 1e-8 * jnp.abs(ss.state).max())
    assert float(err.max()) < 1e-6


@pytest.mark.slow  # a stiff integration over thousands of years: ~30 s
def test_compas_analytic_steady_state_equals_long_integration(reference, ref_forcing):
    """Start from half the analytic steady state and integrate 1e5 years.

    COMPAS's deep layers hold almost no microbes, so their SOC relaxes on time
    scales far beyond any integration (the analytic state is exact there, but
    unreachable).  We therefore compare every layer whose slowest local rate
    (the 4 x 4 soil-pool Jacobian at the steady state) gives more than 50
    e-foldings within the run, and require those layers to hold the top of the
    profile.
    """
    model = soiljax.COMPAS()
    u, f, ss = _valid(model, reference, ref_forcing, "u_compas")
    years = 1e5
    sol = transient(model, u, f, 0.5 * ss.state, years, rtol=1e-10, atol=1e-8)
    final = sol.ys[-1]

    jac = jax.jacfwd(lambda y: model.tendency(u, f, y))(ss.state)  # (8, 20, 8, 20) per day
    converged = []
    for j in range(20):
        block = np.asarray(jac[4:, j, 4:, j])
        slowest = np.min(np.abs(np.linalg.eigvals(block).real)) * 365.0
        converged.append(slowest * years > 50)
    converged = np.array(converged)
    assert converged[:4].all(), "the top layers should relax within the run"
    err = jnp.abs(final - ss.state) / jnp.maximum(jnp.abs(ss.state), 1e-10 * jnp.abs(ss.state).max())
    assert float(err[:, converged].max()) < 1e-6
    # litter relaxes everywhere
    assert float(err[:4].max()) < 1e-6


def test_transient_records_a_spin_up(reference, ref_forcing):
    model = soiljax.CLM5()
    u, f, ss = _valid(model, reference, ref_forcing, "u_clm5")
    ts = jnp.array([1.0, 10.0, 100.0, 1000.0])
    sol = transient(model, u, f, jnp.zeros_like(ss.state), 1000.0, saveat=diffrax.SaveAt(ts=ts))
    stocks = np.asarray(soiljax.soc_stock(model.observable(sol.ys), 0.3))
    assert np.all(np.diff(stocks) > 0)
    assert stocks[-1] < float(soiljax.soc_stock(ss.soc, 0.3)) * (1 + 1e-9)
