"""Tests of the SOC universal differential equation (soiljax.ude).

Fast by construction: short horizons and small networks.  The full-size cases are run by
``benchmarks/ude_cases.py``; ``test_kept_ude_cases.py`` scores its kept run again.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import soiljax  # noqa: F401  (float64)
from soiljax.ude import (
    Drivers,
    Estimate,
    LossWeights,
    NoiseModel,
    NoReactions,
    NoisyEstimate,
    Problem,
    ReferenceReactions,
    SOCModel,
    SolveOptions,
    ar1_noise,
    depth_grid,
    initial_estimate,
    initial_profile,
    initial_roughness,
    profile_roughness,
    make_synthetic,
    make_ude,
    multiplicative,
    noise_aware_loss,
    plain_loss,
    solve,
    train,
    transport,
    trapezoid_mass,
    white_noise,
)
from soiljax.ude._model import FAIL_PENALTY


def test_float64_enabled():
    assert jnp.zeros(()).dtype == jnp.float64


# --------------------------------------------------------------------------------------
# The discretised operator
# --------------------------------------------------------------------------------------
def _random_profile(nz, seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(1.0 + rng.random(nz))


def test_diffusion_conserves_trapezoid_mass():
    z = depth_grid(30)
    dz = z[1] - z[0]
    c = _random_profile(30)
    rate = transport(c, 5e-4, 0.0, dz)
    # the mass rate is zero to round-off while the profile itself changes
    assert float(jnp.max(jnp.abs(rate))) > 1e-3
    assert abs(float(trapezoid_mass(rate, dz))) < 1e-14


def test_advection_mass_budget_is_the_boundary_flux():
    """Neumann boundaries close the diffusive flux only; v C leaves exactly as derived."""
    z = depth_grid(30)
    dz = z[1] - z[0]
    c = _random_profile(30, seed=1)
    v = 1e-3
    rate = transport(c, 5e-4, v, dz)
    expected = -0.5 * v * (c[-1] + c[-2] - c[0] - c[1])
    np.testing.assert_allclose(float(trapezoid_mass(rate, dz)), float(expected),
                               rtol=1e-10, atol=1e-16)


def test_mass_conserved_through_a_solve():
    z = depth_grid(30)
    dz = z[1] - z[0]
    model = SOCModel(NoReactions(), diffusivity=1e-2, velocity=0.0)
    c0 = initial_profile(z)
    ts = jnp.linspace(0.0, 20.0, 5)
    ys, ok = solve(model, Drivers.clean(z), c0, ts, rtol=1e-10, atol=1e-12)
    assert bool(ok)
    mass = trapezoid_mass(ys, dz)
    assert float(jnp.max(jnp.abs(ys[-1] - c0))) > 1e-2  # the profile did change
    np.testing.assert_allclose(np.asarray(mass), float(mass[0]), rtol=1e-9)


def test_cosine_mode_converges_at_second_order():
    """cos(pi z) exp(-D pi^2 t) solves the Neumann diffusion problem exactly."""
    diffusivity, t1 = 1e-2, 10.0
    errors = []
    for nz in (11, 21, 41):
        z = depth_grid(nz)
        model = SOCModel(NoReactions(), diffusivity=diffusivity, velocity=0.0)
        c0 = jnp.cos(jnp.pi * z)
        ys, ok = solve(model, Drivers.clean(z), c0, jnp.array([0.0, t1]),
                       rtol=1e-12, atol=1e-12, max_steps=20000)
        assert bool(ok)
        exact = jnp.cos(jnp.pi * z) * jnp.exp(-diffusivity * jnp.pi**2 * t1)
        errors.append(float(jnp.max(jnp.abs(ys[-1] - exact))))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(orders > 1.9) and np.all(orders < 2.1), (errors, orders)


# --------------------------------------------------------------------------------------
# Data and noise
# --------------------------------------------------------------------------------------
def test_paper_drivers_and_initial_profile():
    z = depth_grid()
    np.testing.assert_allclose(np.asarray(initial_profile(z)),
                               1.2 * np.exp(-2.0 * np.asarray(z)))
    ph, cec, clay = Drivers.clean(z)(0.25)
    np.testing.assert_allclose(np.asarray(ph), 6.5 - 0.5 * np.asarray(z) + 0.1)
    np.testing.assert_allclose(np.asarray(cec[0]), 0.5 + 0.05 * np.cos(np.pi / 10))
    np.testing.assert_allclose(np.asarray(clay[0]), 30.0 + 0.5 * np.sin(np.pi / 20))


def test_white_noise_moments():
    eps = np.asarray(white_noise(jax.random.key(1), (200_000,)))
    se = 1 / np.sqrt(eps.size)
    assert abs(eps.mean()) < 5 * se
    assert abs(eps.var() - 1.0) < 5 * np.sqrt(2) * se


@pytest.mark.parametrize("rho", [0.5, 0.9, -0.3])
def test_ar1_noise_mean_variance_correlation(rho):
    eps = np.asarray(ar1_noise(jax.random.key(2), (20_000, 30), rho))
    n = eps.shape[0]
    # every depth has mean 0 and variance 1 (stationary from the first node on)
    assert np.all(np.abs(eps.mean(axis=0)) < 5 / np.sqrt(n))
    assert np.all(np.abs(eps.var(axis=0) - 1.0) < 5 * np.sqrt(2 / n))
    for lag in (1, 2):
        corr = np.mean(eps[:, lag:] * eps[:, :-lag])
        assert abs(corr - rho**lag) < 0.02


def test_ar1_rejects_invalid_rho():
    with pytest.raises(ValueError, match="between -1 and 1"):
        ar1_noise(jax.random.key(0), (3, 4), 1.0)


def test_multiplicative_noise_mean_and_spread():
    x = jnp.linspace(0.1, 2.0, 10)
    eps = white_noise(jax.random.key(3), (50_000, 10))
    obs = np.asarray(multiplicative(x, eps, 0.35))
    n = obs.shape[0]
    x = np.asarray(x)
    assert np.all(np.abs(obs.mean(axis=0) - x) < 5 * 0.35 * x / np.sqrt(n))
    np.testing.assert_allclose(obs.std(axis=0), 0.35 * x, rtol=0.02)


def test_synthetic_data_reproducible_and_noisy():
    from soiljax.ude import NoiseSpec

    spec = NoiseSpec(0.07, 0.5, 0.07, 0.0, seed=5)
    a = make_synthetic(spec, n_times=6, t_end=5.0)
    b = make_synthetic(spec, n_times=6, t_end=5.0)
    np.testing.assert_array_equal(np.asarray(a.c_obs), np.asarray(b.c_obs))
    rel = np.asarray(a.c_obs / a.c_clean - 1.0)
    assert 0.03 < rel.std() < 0.12
    assert not np.allclose(np.asarray(a.drivers.clay_factor), 1.0)
    clean = make_synthetic(NoiseSpec(), n_times=6, t_end=5.0)
    np.testing.assert_array_equal(np.asarray(clean.c_obs), np.asarray(clean.c_clean))


def test_reference_truth_changes_the_profile_and_zero_variant():
    a = make_synthetic(n_times=11, t_end=50.0)
    b = make_synthetic(n_times=11, t_end=50.0, reactions="none")
    # the reactions move the profile a long way from transport alone
    assert float(jnp.max(jnp.abs(a.c_clean[-1] - b.c_clean[-1]))) > 0.2
    # transport only: diffusion flattens the profile, the surface value falls steadily
    assert bool(jnp.all(jnp.diff(b.c_clean[:, 0]) < 0))
    with pytest.raises(ValueError, match="reference"):
        make_synthetic(reactions="magic")


# --------------------------------------------------------------------------------------
# Networks, losses and gradients (short horizon: 5 years)
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def short_problem():
    data = make_synthetic(n_times=6, t_end=5.0)
    problem = Problem(data.ts, data.c_obs, data.drivers, initial_profile(data.z), focus=-1)
    return data, problem


def test_networks_are_non_negative():
    model = make_ude(jax.random.key(0), 16, 8, "gelu")
    z = depth_grid()
    c = -jnp.ones_like(z) * 5.0  # even for absurd inputs
    p, r = model.reactions(c, z, 3.0, *Drivers.clean(z)(3.0))
    assert p.shape == r.shape == z.shape
    assert bool(jnp.all(p >= 0)) and bool(jnp.all(r >= 0))


def test_unknown_activation_is_explained():
    with pytest.raises(ValueError, match="choose one of"):
        make_ude(jax.random.key(0), 8, 8, "relu6")


def test_loss_gradient_matches_finite_differences(short_problem):
    _, problem = short_problem
    # trainable physics, so that every direction finite differences probe is one the
    # gradient also sees (frozen D and v carry a stop_gradient)
    est = initial_estimate(jax.random.key(1), problem, 8, 8, "tanh", train_physics=True)
    tight = SolveOptions(1e-10, 1e-10)
    weights = LossWeights(1.0, 1.0, 1e-4)
    params, static = eqx.partition(est, eqx.is_inexact_array)

    def f(p):
        return plain_loss(eqx.combine(p, static), problem, weights, tight)

    grads = eqx.filter_jit(jax.grad(f))(params)
    flat_p, unravel = jax.flatten_util.ravel_pytree(params)
    flat_g, _ = jax.flatten_util.ravel_pytree(grads)
    direction = jax.random.normal(jax.random.key(7), flat_p.shape)
    direction = direction / jnp.linalg.norm(direction)
    h = 1e-5
    fj = eqx.filter_jit(f)
    fd = (fj(unravel(flat_p + h * direction)) - fj(unravel(flat_p - h * direction))) / (2 * h)
    ad = jnp.dot(flat_g, direction)
    assert abs(float(ad)) > 1e-8
    np.testing.assert_allclose(float(ad), float(fd), rtol=1e-4)


@pytest.mark.slow  # compiles the loss gradient with trainable physics: ~15 s
def test_physics_coefficients_are_optionally_trainable(short_problem):
    _, problem = short_problem
    weights = LossWeights()
    for trainable in (False, True):
        est = initial_estimate(jax.random.key(1), problem, 8, 8, train_physics=trainable)
        g = eqx.filter_grad(lambda e: plain_loss(e, problem, weights))(est)
        g_d = float(g.model.log_diffusivity)
        assert (g_d != 0.0) == trainable


def test_failed_solve_gives_finite_penalty_and_gradient(short_problem):
    _, problem = short_problem
    est = initial_estimate(jax.random.key(1), problem, 8, 8)
    starved = SolveOptions(1e-5, 1e-5, max_steps=2)  # cannot reach t = 5 in 2 steps
    loss, grads = eqx.filter_value_and_grad(
        lambda e: plain_loss(e, problem, LossWeights(), starved)
    )(est)
    assert float(loss) == FAIL_PENALTY
    leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)


def test_blow_up_gives_finite_penalty_and_gradient(short_problem):
    """A vector field that explodes (huge production) also fails safely."""
    _, problem = short_problem
    est = initial_estimate(jax.random.key(1), problem, 8, 8)
    bias = est.model.reactions.production.layers[2].bias
    est = eqx.tree_at(lambda e: e.model.reactions.production.layers[2].bias, est,
                      bias + 800.0)  # production of ~40 per year: fine
    est = eqx.tree_at(lambda e: e.model.log_diffusivity, est, jnp.log(1e3))  # very stiff
    opts = SolveOptions(1e-5, 1e-5, max_steps=64)
    loss, grads = eqx.filter_value_and_grad(
        lambda e: plain_loss(e, problem, LossWeights(), opts)
    )(est)
    assert float(loss) == FAIL_PENALTY
    leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)


@pytest.mark.slow  # compiles the loss gradient once per adjoint: ~25 s
def test_adjoints_agree(short_problem):
    _, problem = short_problem
    est = initial_estimate(jax.random.key(2), problem, 8, 8)
    weights = LossWeights()
    grads = {}
    for name in ("recursive", "direct", "backsolve"):
        opts = SolveOptions(1e-9, 1e-9, adjoint=name)
        g = eqx.filter_grad(lambda e: plain_loss(e, problem, weights, opts))(est)
        grads[name] = jax.flatten_util.ravel_pytree(eqx.filter(g, eqx.is_inexact_array))[0]
    ref = grads["recursive"]
    for name in ("direct", "backsolve"):
        err = float(jnp.linalg.norm(grads[name] - ref) / jnp.linalg.norm(ref))
        assert err < 1e-4, (name, err)


@pytest.mark.slow  # compiles Adam's and BFGS's training steps: ~35 s
def test_short_training_lowers_the_loss(short_problem):
    data, problem = short_problem
    # learn from the reference truth over 5 years
    est = initial_estimate(jax.random.key(3), problem, 8, 8)
    objective = eqx.Partial(plain_loss, problem=problem, weights=LossWeights(1, 1, 1e-6))
    res = train(est, objective, lr=5e-3, adam_iters=30, bfgs_iters=5, progress=False)
    assert res.best_loss < 0.5 * res.history[0]
    assert np.all(np.isfinite(res.history))


def test_initial_state_estimated_when_unknown(short_problem):
    data, _ = short_problem
    problem = Problem(data.ts, data.c_obs, data.drivers, None, focus=0)
    est = initial_estimate(jax.random.key(0), problem, 8, 8)
    assert isinstance(est, Estimate) and est.log_c0 is not None
    np.testing.assert_allclose(np.asarray(est.initial_state(problem)),
                               np.asarray(data.c_obs[0]))


def test_initial_roughness_prior(short_problem):
    data, known = short_problem
    problem = Problem(data.ts, data.c_obs, data.drivers, None, focus=0)
    est = initial_estimate(jax.random.key(0), problem, 8, 8)
    # exponential in depth (the eq.-8 profile): no roughness; a known initial profile: none either
    smooth = eqx.tree_at(lambda e: e.log_c0, est, jnp.log(initial_profile(data.z)))
    assert float(initial_roughness(smooth)) == pytest.approx(0.0, abs=1e-20)
    assert float(initial_roughness(initial_estimate(jax.random.key(0), known, 8, 8))) == 0.0
    # a zig-zag of +-a in log C has second differences of +-4a
    a = 0.05
    zigzag = eqx.tree_at(lambda e: e.log_c0, est, smooth.log_c0 + a * (-1.0) ** np.arange(data.z.size))
    assert float(initial_roughness(zigzag)) == pytest.approx((4 * a) ** 2, rel=1e-9)
    # it enters both losses with its weight, and its gradient smooths the profile
    # (in the likelihood, rescaled by 1 / (2 sigma^2 mean(C^2)) to keep the plain loss's balance)
    for loss in (plain_loss, noise_aware_loss):
        model = zigzag if loss is plain_loss else NoisyEstimate(zigzag, NoiseModel("normal", sigma=0.1))
        scale = 1.0 if loss is plain_loss else 2.0 * 0.1**2 * float(jnp.mean(problem.c_obs**2))
        base = loss(model, problem, LossWeights(1.0, 1.0, 1e-4))
        weighted = loss(model, problem, LossWeights(1.0, 1.0, 1e-4, smooth=10.0))
        assert float(weighted - base) == pytest.approx(10.0 * (4 * a) ** 2 / scale, rel=1e-6)
    g = jax.grad(lambda c: initial_roughness(eqx.tree_at(lambda e: e.log_c0, est, c)))(zigzag.log_c0)
    step = zigzag.log_c0 - 0.01 * g
    assert float(initial_roughness(eqx.tree_at(lambda e: e.log_c0, est, step))) < float(initial_roughness(zigzag))


def test_profile_roughness_prior(short_problem):
    from soiljax.ude import TUNING, predict

    data, problem = short_problem
    exp_profiles = jnp.stack([initial_profile(data.z) * (1.0 + 0.1 * k) for k in range(3)])
    assert float(profile_roughness(exp_profiles)) == pytest.approx(0.0, abs=1e-20)
    a = 0.05
    zigzag = exp_profiles * jnp.exp(a * (-1.0) ** jnp.arange(data.z.size))
    assert float(profile_roughness(zigzag)) == pytest.approx((4 * a) ** 2, rel=1e-9)
    est = initial_estimate(jax.random.key(1), problem, 8, 8)
    ys, _ = predict(est, problem, TUNING)  # the losses' tolerances
    base = plain_loss(est, problem, LossWeights(1.0, 1.0, 1e-4))
    weighted = plain_loss(est, problem, LossWeights(1.0, 1.0, 1e-4, smooth_profiles=3.0))
    expected = 3.0 * float(profile_roughness(ys))
    assert expected > 0 and float(weighted - base) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("family,ar1", [("student_t", True), ("lognormal", False)])
def test_noise_aware_loss_finite_with_gradients(short_problem, family, ar1):
    _, problem = short_problem
    est = initial_estimate(jax.random.key(0), problem, 8, 8)
    nest = NoisyEstimate(est, NoiseModel(family, ar1, sigma=0.1, rho=0.3 if ar1 else 0.0))
    loss, g = eqx.filter_value_and_grad(
        lambda n: noise_aware_loss(n, problem, LossWeights())
    )(nest)
    assert np.isfinite(float(loss))
    assert float(g.noise.log_sigma) != 0.0
    if ar1:
        assert float(g.noise.rho_raw) != 0.0


def test_normal_noise_nll_matches_scipy():
    from scipy import stats

    model = NoiseModel("normal", ar1=False, sigma=0.2)
    obs = jnp.array([1.0, 0.5, 0.2])
    pred = jnp.array([0.9, 0.55, 0.25])
    expected = -np.sum(stats.norm.logpdf(np.asarray(obs), np.asarray(pred),
                                         0.2 * np.asarray(pred)))
    np.testing.assert_allclose(float(model.nll(obs, pred)), expected, rtol=1e-6)


def test_ar1_nll_matches_multivariate_normal():
    from scipy import stats

    rho, sigma = 0.6, 0.1
    model = NoiseModel("normal", ar1=True, sigma=sigma, rho=rho)
    pred = jnp.linspace(1.0, 0.2, 6)
    obs = pred * (1 + sigma * jnp.array([0.3, -0.5, 1.2, 0.1, -0.9, 0.4]))
    idx = np.arange(6)
    corr = rho ** np.abs(idx[:, None] - idx[None, :])
    scale = sigma * np.asarray(pred)
    cov = corr * np.outer(scale, scale)
    expected = -stats.multivariate_normal(np.asarray(pred), cov).logpdf(np.asarray(obs))
    np.testing.assert_allclose(float(model.nll(obs, pred)), expected, rtol=1e-6)


def test_reference_reactions_are_documented_form():
    react = ReferenceReactions()
    z = depth_grid()
    c = initial_profile(z)
    ph, cec, clay = Drivers.clean(z)(0.0)
    p, r = react(c, z, 0.0, ph, cec, clay)
    np.testing.assert_allclose(np.asarray(p), np.asarray(0.02 * jnp.exp(-z / 0.3) * clay / 25))
    k = 0.045 * jnp.exp(0.5 * (ph - 6.5)) / (1 + cec)
    np.testing.assert_allclose(np.asarray(r), np.asarray(k * c))
