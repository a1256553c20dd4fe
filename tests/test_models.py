"""Properties of the CLM5 and COMPAS implementations beyond the reference outputs."""

import dataclasses
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import soiljax
from soiljax import _linear
from soiljax._grid import DZ

VALID_CLM5 = (0, 1)  # (site, vector) of the reference with a valid CLM5 solve


def _valid_case(reference, ref_forcing, model, key):
    """First reference (site, vector) that is valid for ``model``."""
    for s in range(48):
        for k in range(4):
            u = jnp.asarray(reference[key][s, k])
            if model.steady_state(u, ref_forcing.site(s)).valid:
                return u, ref_forcing.site(s)
    raise AssertionError("no valid case")


@pytest.fixture(scope="module", params=["clm5", "compas"])
def case(request, reference, ref_forcing):
    if request.param == "clm5":
        model = soiljax.CLM5()
        u, f = _valid_case(reference, ref_forcing, model, "u_clm5")
    else:
        model = soiljax.COMPAS()
        u, f = _valid_case(reference, ref_forcing, model, "u_compas")
    return model, u, f


def _stock_1m(model, u, f):
    return soiljax.soc_stock(model.steady_state(u, f).soc, 1.0)


def test_structured_solve_equals_dense(case):
    model, u, f = case
    ops = model.linear_operators(u, f)
    dense = np.asarray(ops.system.dense())
    x = np.asarray(_linear.solve(ops.system, ops.inputs)).ravel()
    x_dense = np.linalg.solve(dense, np.asarray(ops.inputs).ravel())
    np.testing.assert_allclose(x, x_dense, rtol=1e-9, atol=1e-12 * np.abs(x_dense).max())
    fac = _linear.factorise(ops.system)
    rhs = np.random.default_rng(0).normal(size=ops.inputs.shape)
    z = np.asarray(_linear.solve_transpose_factored(fac, jnp.asarray(rhs))).ravel()
    np.testing.assert_allclose(dense.T @ z, rhs.ravel(), rtol=1e-8, atol=1e-10)
    # exact 1-norm condition number
    rc = float(_linear.rcond(fac))
    rc_dense = 1.0 / (np.linalg.norm(dense, 1) * np.linalg.norm(np.linalg.inv(dense), 1))
    assert rc == pytest.approx(rc_dense, rel=1e-6)


def test_gradient_wrt_u_matches_finite_differences(case):
    model, u, f = case
    fn = jax.jit(lambda uu: _stock_1m(model, uu, f))
    g = jax.grad(fn)(u)
    assert np.all(np.isfinite(g))
    h = 1e-6
    for i in range(model.n_params):
        fd = (fn(u.at[i].add(h)) - fn(u.at[i].add(-h))) / (2 * h)
        # central differences: truncation ~h^2, round-off ~eps |f| / h ~ 1e-10 |f|
        tol = 1e-5 * abs(float(fd)) + 1e-7 * abs(float(fn(u)))
        assert abs(float(g[i]) - float(fd)) <= tol, (model.param_names[i], float(g[i]), float(fd))


def test_quotient_derivative_survives_a_tiny_denominator():
    # d/da [a^2 s / (a s)] = 1; the default rule needs (a s)^2, which underflows to 0 for s = 1e-170
    from soiljax._models import _quotient, _safe_div

    s = 1e-170
    g = jax.grad(lambda a: _quotient(a * a * s, a * s))(3.0)
    assert float(g) == pytest.approx(1.0, rel=1e-12)
    assert not np.isfinite(float(jax.grad(lambda a: (a * a * s) / (a * s))(3.0)))
    q, ok = _safe_div(jnp.array([1.0, 2.0]), jnp.array([0.0, 4.0]))
    assert list(np.asarray(ok)) == [False, True] and list(np.asarray(q)) == [0.0, 0.5]
    assert np.all(np.isfinite(jax.grad(lambda d: _safe_div(1.0, d)[0])(0.0)))


def test_compas_gradient_is_finite_where_deep_litter_underflows():
    # a synthetic site whose litter below ~1 m is ~1e-170 gC m-3: the default derivative of the
    # microbial steady state divided by that litter and gave NaN (about 4% of prior draws)
    model = soiljax.COMPAS()
    forcing, _ = soiljax.synthetic_sites(64, seed=0)
    f = forcing[6]
    u = jnp.asarray([0.882, 0.434, 0.072, 0.665, 0.941, 0.083, 0.823, 0.414, 0.466, 0.571, 0.505, 0.785,
                     0.148, 0.468, 0.197, 0.317, 0.989, 0.219, 0.662, 0.613, 0.053, 0.152, 0.062])
    steady = model.steady_state(u, f)
    assert bool(steady.valid) and float(jnp.min(steady.state[:4])) < 1e-150
    fn = jax.jit(lambda uu: jnp.sum(jnp.log(model.steady_state(uu, f).soc[:8])))
    g = np.asarray(jax.grad(fn)(u))
    assert np.all(np.isfinite(g))
    h = 1e-6
    for i in range(model.n_params):
        fd = (fn(u.at[i].add(h)) - fn(u.at[i].add(-h))) / (2 * h)
        assert abs(g[i] - float(fd)) <= 1e-5 * abs(float(fd)) + 1e-6, (model.param_names[i], g[i], float(fd))


def test_gradient_wrt_forcing_matches_finite_differences(case):
    model, u, f = case
    fn = eqx.filter_jit(lambda ff: _stock_1m(model, u, ff))
    grads = eqx.filter_grad(fn)(f)
    rng = np.random.default_rng(1)
    for name in ("tsoi", "w_scalar", "o_scalar", "fpi_vr", "litr1_input", "cwd_input"):
        x = getattr(f, name)
        direction = jnp.asarray(rng.normal(size=x.shape))
        if name in ("w_scalar", "o_scalar", "fpi_vr"):
            direction = direction * 0.01 * x  # stay inside [0, 1] and off the min(., 1) kink
        g = float(jnp.sum(getattr(grads, name) * direction))
        h = 1e-4 if name == "tsoi" else 1e-3
        plus = eqx.tree_at(lambda ff: getattr(ff, name), f, x + h * direction)
        minus = eqx.tree_at(lambda ff: getattr(ff, name), f, x - h * direction)
        fd = (fn(plus) - fn(minus)) / (2 * h)
        assert g == pytest.approx(float(fd), rel=1e-5, abs=1e-9 * abs(float(fn(f)))), name


def test_vmap_equals_python_loop(reference, ref_forcing):
    for model, key in ((soiljax.CLM5(), "u_clm5"), (soiljax.COMPAS(), "u_compas")):
        sites = np.arange(0, 48, 5)
        u = jnp.asarray(reference[key][sites, 2])
        f = ref_forcing[sites]
        # both compiled (eager dispatch took ~50 s here); test_jit_equals_eager checks jit against eager
        batched = jax.jit(jax.vmap(model.steady_state))(u, f)
        single = jax.jit(model.steady_state)
        for i, s in enumerate(sites):
            one = single(u[i], ref_forcing.site(s))
            np.testing.assert_allclose(batched.state[i], one.state, rtol=1e-12, atol=0)
            assert bool(batched.valid[i]) == bool(one.valid)


def test_jit_equals_eager(case):
    model, u, f = case
    eager = model.steady_state(u, f)
    jitted = jax.jit(model.steady_state)(u, f)
    np.testing.assert_allclose(jitted.state, eager.state, rtol=1e-12, atol=0)
    assert bool(jitted.valid) == bool(eager.valid)


def test_invalid_profile_does_not_poison_a_batch(reference, ref_forcing):
    """A singular CLM5 solve (efolding -> 0) gives finite zeros and zero gradient,
    and leaves the values and gradients of the other sites untouched."""
    model = soiljax.CLM5()
    sites = np.array([0, 1, 2, 3])
    u = jnp.asarray(reference["u_clm5"][sites, 0])
    u = u.at[2, soiljax.CLM5_SPACE.index("efolding")].set(0.0)
    f = ref_forcing[sites]

    def loss(uu):
        ss = jax.vmap(model.steady_state)(uu, f)
        return jnp.sum(soiljax.soc_stock(ss.soc, 1.0)), ss

    (val, ss), g = jax.jit(jax.value_and_grad(loss, has_aux=True))(u)  # compiled: eager took ~45 s
    assert np.isfinite(val) and np.all(np.isfinite(g))
    assert not bool(ss.valid[2]) and bool(ss.valid[np.array([0, 1, 3])].all())
    np.testing.assert_array_equal(g[2], 0.0)
    alone = jax.jit(jax.grad(lambda uu: jnp.sum(soiljax.soc_stock(model.steady_state(uu, f.site(0)).soc, 1.0))))(u[0])
    np.testing.assert_allclose(g[0], alone, rtol=1e-12)


@pytest.mark.parametrize("model_cls", [soiljax.CLM5, soiljax.COMPAS])
def test_closed_bedrock_conserves_mass(model_cls, reference, ref_forcing):
    """At steady state, input = respiration with bedrock="closed" (to 1e-10);
    PRODA's rule leaks carbon through bedrock at a shallow-bedrock site."""
    key = "u_clm5" if model_cls is soiljax.CLM5 else "u_compas"
    closed = model_cls(bedrock="closed")
    shallow = np.flatnonzero(reference["nbedrock"][:, 0] < 20)
    assert len(shallow) > 0
    for s, k in [(s, k) for s in shallow for k in range(4)]:
        f = ref_forcing.site(s)
        u = jnp.asarray(reference[key][s, k])
        ss = closed.steady_state(u, f)
        if not bool(ss.valid):
            continue
        dz = jnp.asarray(DZ)
        inp = float(jnp.sum(closed.linear_operators(u, f).inputs * dz))
        resp = float(jnp.sum(closed.respiration(u, f, ss.state) * dz))
        assert resp == pytest.approx(inp, rel=1e-10)
        leaky = model_cls(bedrock="proda")
        ss_p = leaky.steady_state(u, f)
        resp_p = float(jnp.sum(leaky.respiration(u, f, ss_p.state) * dz))
        if model_cls is soiljax.CLM5:
            assert resp_p < inp * (1 - 1e-6)  # SOC pools reach bedrock and leak
        else:
            assert resp_p <= inp * (1 + 1e-12)  # only fast litter is transported
        return
    pytest.fail("no valid vector at the shallow-bedrock site")


def test_tendency_vanishes_at_steady_state(case):
    model, u, f = case
    ss = model.steady_state(u, f)
    tend = model.tendency(u, f, ss.state)
    scale = jnp.abs(model.decomposition(u, f, ss.state)).max()
    assert float(jnp.abs(tend).max() / scale) < 1e-10


def test_components_are_consistent(case):
    model, u, f = case
    ss = model.steady_state(u, f)
    comp = soiljax.system_components(model, u, f, ss)
    assert set(comp) == set(soiljax.COMPONENT_UNITS)
    assert 0 < float(comp["cte"]) < 1
    assert float(comp["k_bulk"]) > 0 and float(comp["v_system"]) > 0
    assert 0 < float(comp["xi_system"]) <= 1.0 + 1e-12
    beta = float(model.space.to_physical(u)[model.space.index("beta")])
    assert float(comp["b_system"]) == pytest.approx(beta**5, rel=2e-2)
    assert float(comp["plant_input"]) == pytest.approx(float(f.annual_input.sum()))


def test_clm5_default_parameters_and_sand_rule(reference, ref_forcing):
    model = soiljax.CLM5(sand_dependent_transfers=True)
    u = model.default_u()
    assert u[soiljax.CLM5_SPACE.index("efolding")] == pytest.approx(10.0)  # outside the prior
    ss = model.steady_state(u, ref_forcing.site(0))
    assert bool(ss.valid) and float(soiljax.soc_stock(ss.soc, 1.0)) > 0
    ops = model.linear_operators(u, ref_forcing.site(0))
    sand = np.asarray(ref_forcing.site(0).cellsand)
    t = 0.85 - 0.0068 * (100 - sand)
    np.testing.assert_allclose(ops.system.transfers[(5, 4)], 1 - t - 0.004)


def test_parameter_space_transforms():
    space = soiljax.COMPAS_SPACE
    u = jnp.linspace(0.05, 0.95, space.size)
    np.testing.assert_allclose(space.to_u(space.to_physical(u)), u, rtol=1e-12)
    i = space.index("tau_enz_decay")
    assert float(space.to_physical(u)[i]) == pytest.approx(10 ** (3 * float(u[i]) - 3))
    z = space.z_from_u(u)
    u2, log_jac = space.u_from_z(z)
    np.testing.assert_allclose(u2, u, rtol=1e-12)
    jac = jax.jacfwd(lambda zz: space.u_from_z(zz)[0])(z)
    assert float(log_jac) == pytest.approx(float(jnp.linalg.slogdet(jac)[1]), rel=1e-12)
    with pytest.raises(KeyError, match="no parameter 'foo'"):
        space.index("foo")
    with pytest.raises(ValueError, match="expects 23 parameters"):
        space.to_physical(jnp.ones(21))


@pytest.mark.parametrize("closed", [False, True])
def test_transport_basis_equals_monthly_formulas(reference, ref_forcing, closed):
    """V = bio V_bio + cryo V_cryo + V_floor reproduces the month-by-month formulas."""
    from soiljax._physics import transport_operator, transport_operator_direct

    for s in range(48):
        th = soiljax.CLM5_SPACE.as_dict(soiljax.CLM5_SPACE.to_physical(reference["u_clm5"][s, 1]))
        fast = transport_operator(th["bio"], th["cryo"], ref_forcing.site(s), closed=closed)
        direct = transport_operator_direct(th["bio"], th["cryo"], ref_forcing.site(s), closed=closed)
        for x, y in zip(fast, direct):
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------
# the model registry, per-model defaults and the operators shared by all methods
# ---------------------------------------------------------------------------


def test_registry_turns_names_into_models():
    from soiljax._registry import model_class, model_name
    from soiljax.learning._learner import model_name_of

    assert soiljax.MODELS == ("clm5", "compas")
    assert (soiljax.CLM5.name, soiljax.COMPAS.name) == soiljax.MODELS
    m = soiljax.model("CLM5")
    assert type(m) is soiljax.CLM5 and m.bedrock == "proda"
    c = soiljax.model("compas", bedrock="closed", proda_enzyme_quirk=True)
    assert type(c) is soiljax.COMPAS and c.bedrock == "closed" and c.proda_enzyme_quirk
    assert soiljax.model(c) is c  # an instance passes through
    assert soiljax.model(soiljax.CLM5, bedrock="closed") == soiljax.CLM5(bedrock="closed")
    for given in ("Compas", soiljax.COMPAS, c):
        assert model_name(given) == "compas" and model_class(given) is soiljax.COMPAS
    assert model_name_of(soiljax.CLM5()) == "clm5"
    with pytest.raises(ValueError, match="unknown model 'century'; the models are clm5, compas"):
        soiljax.model("century")
    with pytest.raises(ValueError, match="unknown model"):
        model_name(object())
    with pytest.raises(TypeError, match="not to the instance"):
        soiljax.model(c, bedrock="proda")


def test_model_names_are_importable_without_jax():
    script = "import sys\nfrom soiljax._options import MODELS\nimport soiljax\nprint(MODELS == soiljax.MODELS, 'jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False"]


def test_calibration_defaults_belong_to_the_model_class():
    from soiljax import calibration as cal

    assert (soiljax.CLM5.default_warmup, soiljax.CLM5.default_max_doublings, soiljax.CLM5.default_extend) == (400, 6, 0)
    assert (soiljax.COMPAS.default_warmup, soiljax.COMPAS.default_max_doublings, soiljax.COMPAS.default_extend) == (
        800, 10, 3)
    assert cal.DEFAULT_WARMUP == {"CLM5": 400, "COMPAS": 800}
    assert cal.DEFAULT_DOUBLINGS == {"CLM5": 6, "COMPAS": 10}
    assert cal.DEFAULT_EXTEND == {"CLM5": 0, "COMPAS": 3}
    with pytest.raises(TypeError):
        cal.DEFAULT_WARMUP["CLM5"] = 1  # read-only: change the class variable instead
    assert cal.NUTS().for_model(soiljax.COMPAS()).max_num_doublings == 10
    assert cal.NUTS(max_num_doublings=4).for_model(soiljax.COMPAS()).max_num_doublings == 4


def test_models_are_final_and_the_interface_has_no_fields():
    assert dataclasses.fields(soiljax.AbstractSoilModel) == ()
    for cls in (soiljax.CLM5, soiljax.COMPAS):
        assert [f.name for f in dataclasses.fields(cls)][0] == "bedrock"
        with pytest.raises(TypeError, match=f"{cls.__name__} is final"):

            class Sub(cls):
                pass
    with pytest.raises(ValueError, match="bedrock must be one of"):
        soiljax.CLM5(bedrock="open")


def test_methods_read_one_operators_object(case):
    model, u, f = case
    ops = model.operators(u, f)
    ss = model.steady_state(u, f)
    x = ss.state
    np.testing.assert_array_equal(ops.steady_state().state, x)
    np.testing.assert_array_equal(ops.decomposition(x), model.decomposition(u, f, x))
    np.testing.assert_array_equal(ops.respiration(x), model.respiration(u, f, x))
    np.testing.assert_array_equal(ops.tendency(x), model.tendency(u, f, x))
    np.testing.assert_array_equal(ops.environmental, model.environmental_scalar(u, f))
    np.testing.assert_array_equal(ops.baseline_scalar(), model.baseline_scalar(u, f))
    np.testing.assert_array_equal(ops.linear.system.k, model.linear_operators(u, f).system.k)
    if isinstance(model, soiljax.COMPAS):
        # one uptake: DOC leaves by uptake, of which (1 - CUE) is respired
        doc, mic = x[4], x[5]
        np.testing.assert_array_equal(model.decomposition(u, f, x)[4], ops.soil.uptake(doc, mic))
        np.testing.assert_allclose(model.respiration(u, f, x)[4],
                                   (1.0 - ops.theta["cue_doc"]) * ops.soil.uptake(doc, mic), rtol=1e-15)
