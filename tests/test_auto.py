"""``method="auto"``: importance sampling from an approximation (PSIS), the amortised flow that
proposes by default, and the fall-back to NUTS."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from soiljax import CLM5
from soiljax.calibration import (
    AUTO_REASONS,
    AmortizerError,
    Auto,
    ImportanceSampler,
    calibrate,
    flow_importance_sample,
    importance_sample,
    load_amortizer,
    recovery_profiles,
    save_amortizer,
    train_amortizer,
)

MU = jnp.array([0.5, -1.0, 1.5])
SD = jnp.array([0.3, 0.8, 0.5])


def _gaussian(mu=MU, sd=SD):
    return lambda z: -0.5 * jnp.sum(((z - mu) / sd) ** 2)


def _run(logdensity, settings, key=0, n_out=1000):
    z0 = MU + 0.3 * jnp.arange(settings.paths)[:, None] * jnp.ones(3)
    return jax.jit(lambda z, k: importance_sample(logdensity, z, k, settings, n_out))(z0, jax.random.PRNGKey(key))


def test_psis_on_a_gaussian_recovers_its_moments_with_a_small_k_hat():
    res = _run(_gaussian(), ImportanceSampler(approximation="laplace", draws=2000, adapt_rounds=1, adapt_draws=500))
    assert float(res.pareto_k) < 0.5 and float(res.ess) > 500
    np.testing.assert_allclose(res.z.mean(axis=0), MU, atol=0.1)
    np.testing.assert_allclose(res.z.std(axis=0), SD, rtol=0.15)


def test_a_planted_poor_approximation_has_a_large_k_hat():
    # normals 5 times too narrow, no adaptation, t tails off: the weights' tail is heavy
    poor = ImportanceSampler(approximation="laplace", draws=2000, adapt_rounds=0, scale=0.2, tail_df=0.0,
                             prior_weight=0.01)
    res = _run(_gaussian(), poor)
    assert float(res.pareto_k) > 0.7


def test_an_invalid_region_gives_finite_results_and_no_draws_there():
    inner = _gaussian()

    def logdensity(z):  # the model is invalid for z0 < 0.3, as PRODA's rule makes parts of the prior
        return jnp.where(z[0] < 0.3, -jnp.inf, inner(z))

    res = _run(logdensity, ImportanceSampler(approximation="laplace", draws=1000, adapt_rounds=1, adapt_draws=300))
    for leaf in jax.tree_util.tree_leaves(res):
        assert np.all(np.isfinite(leaf))
    assert np.all(res.z[:, 0] >= 0.3)
    assert 0 < float(res.n_valid) < 1000


def test_vmap_over_profiles_equals_separate_runs():
    settings = ImportanceSampler(approximation="laplace", draws=400, adapt_rounds=1, adapt_draws=200, maxiter=15)
    mus = jnp.stack([MU, MU + 1.0, MU - 0.5])
    z0 = mus[:, None, :] + 0.2 * jnp.arange(settings.paths)[None, :, None]
    keys = jax.random.split(jax.random.PRNGKey(3), 3)

    def one(mu, z, k):
        return importance_sample(_gaussian(mu), z, k, settings, 100)

    together = jax.jit(jax.vmap(one))(mus, z0, keys)
    for i in range(3):
        alone = jax.jit(one)(mus[i], z0[i], keys[i])
        for a, b in zip(jax.tree_util.tree_leaves(together), jax.tree_util.tree_leaves(alone)):
            np.testing.assert_allclose(np.asarray(a)[i], np.asarray(b), rtol=1e-9, atol=1e-9)


def _flow_run(flow, logdensity, settings, key=0, n_out=1000):
    return jax.jit(lambda k: flow_importance_sample(logdensity, flow, None, k, settings, n_out, 3))(
        jax.random.PRNGKey(key))


def test_flow_proposal_psis_recovers_a_gaussian_and_flags_a_planted_poor_flow():
    from flowjax.distributions import Normal

    good = _flow_run(Normal(MU, 1.3 * SD), _gaussian(), ImportanceSampler(draws=2000))
    assert float(good.pareto_k) < 0.5 and float(good.ess) > 300
    np.testing.assert_allclose(good.z.mean(axis=0), MU, atol=0.1)
    np.testing.assert_allclose(good.z.std(axis=0), SD, rtol=0.15)
    assert good.starts.shape == (3, 3) and good.variances.shape == (3, 3)
    # a flow 5 times too narrow, almost no prior in the mixture: the weights' tail is heavy
    poor = _flow_run(Normal(MU, 0.2 * SD), _gaussian(), ImportanceSampler(draws=2000, prior_weight=0.01))
    assert float(poor.pareto_k) > 0.7


def test_flow_proposal_in_an_invalid_region_gives_finite_results():
    from flowjax.distributions import Normal

    inner = _gaussian()
    res = _flow_run(Normal(MU, SD), lambda z: jnp.where(z[0] < 0.3, -jnp.inf, inner(z)), ImportanceSampler(draws=800))
    for leaf in jax.tree_util.tree_leaves(res):
        assert np.all(np.isfinite(leaf))
    assert np.all(res.z[:, 0] >= 0.3) and np.all(res.starts[:, 0] >= 0.3)
    assert 0 < float(res.n_valid) < 800


SMALL_FLOW = dict(simulations=4000, flow_layers=2, nn_width=16, max_epochs=3, progress=False)


@pytest.fixture(scope="module")
def small_run():
    model = CLM5()
    forcing, obs, _ = recovery_profiles(model, 3, seed=4)
    return model, forcing, obs, train_amortizer(model, forcing, obs, **SMALL_FLOW)


def test_an_amortizer_is_saved_read_back_and_knows_its_domain(small_run, tmp_path):
    from soiljax import COMPAS

    model, forcing, obs, amz = small_run
    info = dict(amz.info)
    assert info["simulations"] >= 4000 and 0 < info["valid_share"] <= 1 and info["epochs"] >= 1
    c, inside = amz.conditions(model, forcing, obs)
    assert inside.all() and np.all(np.isfinite(c))
    back = load_amortizer(save_amortizer(amz, tmp_path / "a.amortizer"))
    z = jnp.linspace(-2, 2, 21 * 4).reshape(4, 21)
    np.testing.assert_allclose(back.flow.log_prob(z, condition=jnp.asarray(c[0], jnp.float32)),
                               amz.flow.log_prob(z, condition=jnp.asarray(c[0], jnp.float32)), rtol=1e-6)
    assert back.digest() == amz.digest()
    # a site with a hundred times the litter input lies outside what the flow was trained on
    far = eqx_replace_inputs(forcing, 100.0)
    _, inside_far = amz.conditions(model, far, obs)
    assert not inside_far.any()
    with pytest.raises(AmortizerError, match="trained for clm5"):
        amz.conditions(COMPAS(), forcing, obs)
    (tmp_path / "bad.amortizer").write_text("not an amortizer")
    with pytest.raises(AmortizerError, match="not a soiljax amortizer"):
        load_amortizer(tmp_path / "bad.amortizer")


def test_a_float32_flow_proposes_in_float32_with_its_own_density(small_run):
    # a trained flow is float32; it must run in float32 even with 64-bit types on (1.8x faster on a CPU),
    # and the density it gives its draws must be the flow's density there, as float64 evaluates it
    from soiljax.calibration._amortized import _cast
    from soiljax.calibration._importance import _in_flow_precision

    model, forcing, obs, amz = small_run
    c, _ = amz.conditions(model, forcing, obs)
    cond = jnp.asarray(c[0], jnp.float32)

    def draw(key, cc):
        return _in_flow_precision(amz.flow, lambda k, c2: amz.flow.sample_and_log_prob(k, (500,), condition=c2),
                                  key, cc)

    z, logq = jax.jit(draw)(jax.random.key(0), cond)
    assert z.dtype == jnp.float32 and logq.dtype == jnp.float32
    flow64 = _cast(amz.flow, jnp.float64)
    exact = jax.vmap(lambda zz: flow64.log_prob(zz, condition=cond.astype(jnp.float64)))(z.astype(jnp.float64))
    assert exact.dtype == jnp.float64
    np.testing.assert_allclose(logq, exact, rtol=1e-4, atol=1e-3)
    # a flow in float64 (any distribution that is not float32) runs as it is
    z64, _ = jax.jit(lambda k: _in_flow_precision(flow64, lambda kk: flow64.sample_and_log_prob(
        kk, (10,), condition=cond.astype(jnp.float64)), k))(jax.random.key(0))
    assert z64.dtype == jnp.float64


def eqx_replace_inputs(forcing, factor):
    import equinox as eqx

    names = ("cwd_input", "litr1_input", "litr2_input", "litr3_input")
    return eqx.tree_at(lambda f: [getattr(f, n) for n in names], forcing,
                       [getattr(forcing, n) * factor for n in names])


@pytest.mark.slow
def test_auto_calibration_falls_back_where_it_must_and_resumes(small_run, tmp_path, monkeypatch):
    import soiljax.calibration._run as run

    model, forcing, obs, amz = small_run
    importance = ImportanceSampler(draws=400)
    common = dict(chains=2, samples=20, batch_size=2, progress=False, predictive_draws=10, amortizer=amz)

    # every profile fails a threshold no k-hat can pass: each is importance sampled once more with
    # retry_draws (only the failing sites of the batch), then all fall back to NUTS, started from the approximation
    real_flow_batch = run._flow_batch
    flow_calls = []

    def recording(model, likelihood, settings, flow, forcing, *args):
        flow_calls.append((settings.draws, forcing.batch_shape[0]))
        return real_flow_batch(model, likelihood, settings, flow, forcing, *args)

    monkeypatch.setattr(run, "_flow_batch", recording)
    strict = calibrate(model, forcing, obs, method=Auto(importance=importance, khat_threshold=-1.0,
                                                        fallback_warmup=20, retry_draws=800), **common)
    monkeypatch.setattr(run, "_flow_batch", real_flow_batch)
    n = strict.sizes["site"]
    assert n == 3 and flow_calls == [(400, 2), (800, 2), (400, 2), (800, 1)]  # batches of 2: the last has one site
    assert np.all(strict["model_evals"].values > 400 + 800)
    assert list(strict["method_used"].values) == ["nuts"] * n
    assert set(strict["fallback_reason"].values) <= {"pareto_k", "no_valid_start"}
    # R-hat is computed for profiles that fell back (inf where a short chain never moved), k-hat for all
    assert not strict["rhat_mean"].isnull().any() and not strict["pareto_k"].isnull().any()
    np.testing.assert_array_equal(strict["accepted"].values,
                                  (strict["rhat_mean"].values < 1.05) & (strict["nse"].values > 0))

    # every profile passes: importance sampled, R-hat does not apply, ESS is the importance ESS
    lenient = Auto(importance=importance, khat_threshold=np.inf, min_ess=0.0, fallback_warmup=20)
    full = calibrate(model, forcing, obs, method=lenient, **common)
    assert list(full["method_used"].values) == ["importance"] * n
    assert set(full["fallback_reason"].values) == {""} and "" in AUTO_REASONS
    assert full["accepted"].all() and full["rhat"].isnull().all()
    np.testing.assert_allclose(full["ess_min"].values, full["ess_is"].values)
    assert np.all(np.isfinite(full["u_mean"].values)) and full.attrs["method"] == "auto"

    # a site outside the amortizer's domain falls back, whatever its k-hat
    far = eqx_replace_inputs(forcing, 100.0)
    mixed = calibrate(model, far[:1], obs[:1], method=lenient, **{**common, "batch_size": 1})
    assert list(mixed["fallback_reason"].values) == ["outside_amortizer"]

    # interrupted after its first batch, the run resumes and gives what the uninterrupted run gave; without
    # amortizer= it trains one and keeps it next to the output, and the resumed run reads it back
    real = run._sample_auto
    calls = []

    def stop_after_one(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    out = tmp_path / "post.nc"
    own = Auto(importance=importance, khat_threshold=np.inf, min_ess=0.0, simulations=4000, max_epochs=2,
               min_profiles=1)  # 3 profiles: train a flow although so few would not repay it
    common.pop("amortizer")
    monkeypatch.setattr(run, "_sample_auto", stop_after_one)
    with pytest.raises(KeyboardInterrupt):
        calibrate(model, forcing, obs, method=own, out=out, **common)
    monkeypatch.setattr(run, "_sample_auto", real)
    kept = tmp_path / "post.nc.amortizer"
    assert kept.exists()
    monkeypatch.setattr(run, "train_amortizer", lambda *a, **k: pytest.fail("the kept amortizer was not reused"))
    resumed = calibrate(model, forcing, obs, method=own, out=out, **common)
    uninterrupted = calibrate(model, forcing, obs, method=own, amortizer=load_amortizer(kept), **common)
    for name in ("u_mean", "u_sd", "pareto_k", "ess_is"):
        np.testing.assert_allclose(resumed[name].values, uninterrupted[name].values, rtol=1e-12)
    assert list(resumed["method_used"].values) == ["importance"] * n


@pytest.mark.slow  # compiles NUTS for CLM5: ~1 minute
def test_the_default_method_on_few_profiles_is_nuts_without_a_flow(small_run, monkeypatch):
    import soiljax.calibration._run as run

    model, forcing, obs, _ = small_run
    assert forcing.batch_shape[0] < CLM5.default_auto_min_profiles
    monkeypatch.setattr(run, "train_amortizer", lambda *a, **k: pytest.fail("trained a flow for 3 profiles"))
    common = dict(chains=2, warmup=20, samples=20, batch_size=2, progress=False, predictive_draws=10)
    default = calibrate(model, forcing, obs, **common)
    nuts = calibrate(model, forcing, obs, method="nuts", **common)
    assert default.attrs["method"] == "auto" and nuts.attrs["method"] == "nuts"
    # every profile is sampled as method="nuts" samples it: the same draws
    for name in ("u_mean", "u_sd", "rhat", "ess", "nse", "accepted", "soc_q50", "model_evals"):
        np.testing.assert_array_equal(default[name].values, nuts[name].values)
    assert list(default["method_used"].values) == ["nuts"] * 3
    assert list(default["fallback_reason"].values) == ["few_profiles"] * 3 and "few_profiles" in AUTO_REASONS
    assert default["pareto_k"].isnull().all() and default["ess_is"].isnull().all()
    # with a trained flow given, or a lower threshold, the same few profiles are importance sampled
    assert not run._auto_skips_flow(Auto(), model, 3, amortizer=small_run[3])
    assert not run._auto_skips_flow(Auto(min_profiles=3), model, 3, amortizer=None)
    assert run._auto_skips_flow(Auto(min_profiles=4), model, 3, amortizer=None)
    assert not run._auto_skips_flow(Auto(importance=ImportanceSampler(approximation="laplace")), model, 3, None)
    with pytest.raises(ValueError, match="min_profiles"):
        Auto(min_profiles=-1)
    # a flow that is trained learns from the model's number of prior simulations unless Auto names one
    seen = {}

    def capture(model, forcing, obs, **kw):
        seen.update(kw)
        raise KeyboardInterrupt  # stop before the flow is trained

    monkeypatch.setattr(run, "train_amortizer", capture)
    for auto, expected in ((Auto(min_profiles=1), CLM5.default_auto_simulations),
                           (Auto(min_profiles=1, simulations=5000), 5000)):
        with pytest.raises(KeyboardInterrupt):
            calibrate(model, forcing, obs, method=auto, progress=False)
        assert seen["simulations"] == expected
