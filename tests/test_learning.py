"""Parameter learning (soiljax.learning): network, losses, scaler, split, two-stage and
end-to-end training, serialisation.

The data are a small synthetic world made here (until soiljax.world exists):
covariates from forcing summaries plus noise columns, a hidden smooth map from
covariates to five CLM5 parameters in [0.3, 0.7] (the others at 0.5) and
noisy observed profiles of the resulting steady states.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import soiljax
from soiljax import learning as lrn
from soiljax.learning._common import guarded_update

LEARNED = ("q10", "efolding", "tau_s2", "tau_s3", "beta")


def make_world(n: int, seed: int = 0, n_noise: int = 3):
    """Covariates, true u, forcing and covariate names of ``n`` synthetic CLM5 sites."""
    model = soiljax.CLM5()
    forcing, _ = soiljax.synthetic_sites(n, seed=seed)
    rng = np.random.default_rng(seed + 100)
    tsoi = np.asarray(forcing.tsoi)[:, :, :5].mean(axis=(1, 2))
    wet = np.asarray(forcing.w_scalar)[:, :, :5].mean(axis=(1, 2))
    inp = np.asarray(forcing.annual_input).sum(-1)
    sand = np.asarray(forcing.cellsand)[:, :5].mean(-1)
    base = np.stack([tsoi, wet, np.log(inp), sand], axis=1)
    x = np.concatenate([base, rng.normal(size=(n, n_noise))], axis=1)
    z = (base - base.mean(0)) / base.std(0)
    a = np.random.default_rng(7).normal(size=(base.shape[1], len(LEARNED)))
    u = np.full((n, model.n_params), 0.5)
    for k, name in enumerate(LEARNED):
        u[:, model.space.index(name)] = 0.3 + 0.4 / (1.0 + np.exp(-(z @ a[:, k]) / 1.5))
    names = ("tsoi", "wetness", "log_input", "sand") + tuple(f"noise{i}" for i in range(n_noise))
    return x, u, forcing, names


@pytest.fixture(scope="module")
def world():
    x, u, forcing, names = make_world(64)
    return x, u, forcing, names


@pytest.fixture(scope="module")
def world_obs(world):
    x, u, forcing, names = world
    obs, truth = soiljax.synthetic_observations(soiljax.CLM5(), u, forcing, noise=0.05, seed=1)
    assert truth.valid.values.all()
    return obs


# ---------------------------------------------------------------------------
# network
# ---------------------------------------------------------------------------


def test_network_shapes_and_bounds():
    net = lrn.ParamNet(60, 21, key=jax.random.PRNGKey(0))
    shapes = [layer.weight.shape for layer in net.layers]
    assert shapes == [(256, 60), (512, 256), (512, 512), (256, 512), (21, 256)]  # PRODA's architecture
    assert net.dropout == 0.2 and net.layers[0].weight.dtype == jnp.float64

    net = lrn.ParamNet(5, 3, hidden=(8, 8), dropout=0.5, key=jax.random.PRNGKey(1))
    x = jax.random.uniform(jax.random.PRNGKey(2), (10, 5))
    u = jax.vmap(net)(x)
    assert net(x[0]).shape == (3,) and u.shape == (10, 3)
    assert np.all((u > 0) & (u < 1))
    # saturated outputs stay strictly inside (0, 1)
    for b in (-1e3, 1e3):
        sat = eqx.tree_at(lambda n: n.layers[-1].bias, net, jnp.full(3, b))
        sat = eqx.tree_at(lambda n: n.layers[-1].weight, sat, jnp.zeros((3, 8)))
        v = np.asarray(jax.vmap(sat)(x * 1e6))
        assert np.all((v > 0) & (v < 1)) and np.all(np.isfinite(v))
    with pytest.raises(ValueError, match="one sample"):
        net(x)

    # dropout only when inference=False and a key is given
    k = jax.random.PRNGKey(3)
    det = net(x[0])
    np.testing.assert_array_equal(net(x[0], key=k), det)  # inference=True by default
    np.testing.assert_array_equal(net(x[0], inference=False), det)  # no key: no dropout
    dropped = [net(x[0], key=jax.random.PRNGKey(i), inference=False) for i in range(5)]
    assert any(not np.allclose(d, det) for d in dropped)
    no_drop = lrn.ParamNet(5, 3, hidden=(8, 8), dropout=0.0, key=jax.random.PRNGKey(1))
    np.testing.assert_array_equal(no_drop(x[0], key=k, inference=False), no_drop(x[0]))
    # same key, same weights
    again = lrn.ParamNet(5, 3, hidden=(8, 8), dropout=0.5, key=jax.random.PRNGKey(1))
    np.testing.assert_array_equal(again.layers[0].weight, net.layers[0].weight)


# ---------------------------------------------------------------------------
# losses, scaler, split
# ---------------------------------------------------------------------------


def test_losses_against_numpy():
    rng = np.random.default_rng(0)
    pred = rng.uniform(0.05, 0.95, (30, 4))
    target = rng.uniform(0.05, 0.95, (30, 4))
    w = rng.uniform(0.0, 2.0, 30)
    mse = np.mean((pred - target) ** 2)
    mre = np.mean(np.abs(pred - target) / np.abs(target))
    np.testing.assert_allclose(lrn.mse_loss(pred, target), mse, rtol=1e-12)
    np.testing.assert_allclose(lrn.proda_loss(pred, target), mse * mre, rtol=1e-12)
    W = np.repeat(w[:, None], 4, axis=1)
    wmse = np.sum(W * (pred - target) ** 2) / W.sum()
    wmre = np.sum(W * np.abs(pred - target) / np.abs(target)) / W.sum()
    np.testing.assert_allclose(lrn.mse_loss(pred, target, w), wmse, rtol=1e-12)
    np.testing.assert_allclose(lrn.proda_loss(pred, target, w), wmse * wmre, rtol=1e-12)
    assert float(lrn.proda_loss(target, target)) == 0.0
    assert np.isfinite(float(lrn.proda_loss(pred, np.zeros_like(pred))))  # |target| floored
    with pytest.raises(ValueError, match="must match"):
        lrn.mse_loss(pred, target[:, :3])
    with pytest.raises(ValueError, match="weight"):
        lrn.mse_loss(pred, target, np.ones(7))


def test_pearson_skips_non_finite_and_is_nan_when_undefined():
    from soiljax.learning import pearson

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert pearson(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1], rel=1e-12)
    a2, b2 = a.copy(), b.copy()
    a2[3], b2[7] = np.nan, np.inf
    keep = np.ones(50, bool)
    keep[[3, 7]] = False
    assert pearson(a2, b2) == pytest.approx(np.corrcoef(a[keep], b[keep])[0, 1], rel=1e-12)
    # a constant column has no correlation (centring 0.1 leaves round-off that used to give ~1e-16)
    assert np.isnan(pearson(np.full(50, 0.1), b)) and np.isnan(pearson(a, np.full(50, 0.7)))
    assert np.isnan(pearson([1.0, np.nan], [2.0, 3.0]))


def test_scaler_fit_transform_inverse():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 4)) * [1.0, 10.0, 0.1, 1.0] + [0.0, 100.0, -3.0, 0.0]
    x[:, 3] = 2.5  # constant column
    train = np.arange(30)
    s = lrn.MinMaxScaler.fit(x[train])
    np.testing.assert_allclose(s.lo, x[train].min(0))
    np.testing.assert_allclose(s.hi, x[train].max(0))
    t = np.asarray(s.transform(x[train]))
    assert np.all(np.isfinite(t))
    np.testing.assert_allclose(t[:, :3].min(0), 0.0, atol=1e-15)
    np.testing.assert_allclose(t[:, :3].max(0), 1.0, atol=1e-15)
    np.testing.assert_array_equal(t[:, 3], 0.5)  # constant column: 0.5, no division by zero
    # the held-out rows did not shape the scaler: they may fall outside [0, 1]
    full = lrn.MinMaxScaler.fit(x)
    assert not np.allclose(full.lo[:3], s.lo[:3]) or not np.allclose(full.hi[:3], s.hi[:3])
    back = np.asarray(s.inverse_transform(s.transform(x)))
    np.testing.assert_allclose(back, x, rtol=1e-12, atol=1e-12)
    # NaN are ignored when fitting; an all-NaN column is an error naming it
    xn = x.copy()
    xn[0, 0] = np.nan
    np.testing.assert_allclose(lrn.MinMaxScaler.fit(xn).lo[0], np.nanmin(xn[:, 0]))
    xn[:, 1] = np.nan
    with pytest.raises(ValueError, match="'b'"):
        lrn.MinMaxScaler.fit(xn, names=["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="4 covariates"):
        s.transform(x[:, :3])


def test_split_indices():
    train, val, test = lrn.split_indices(103, seed=4)
    assert (train.size, val.size, test.size) == (83, 10, 10)  # largest remainder: 82.4, 10.3, 10.3
    allidx = np.concatenate([train, val, test])
    assert np.array_equal(np.sort(allidx), np.arange(103))  # disjoint and covering
    again = lrn.split_indices(103, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    assert not np.array_equal(train, lrn.split_indices(103, seed=5)[0])
    tr, va, te = lrn.split_indices(5, (0.6, 0.2, 0.2))
    assert tr.size >= 1 and va.size >= 1 and te.size >= 1
    assert lrn.split_indices(10, (0.9, 0.1, 0.0))[2].size == 0
    with pytest.raises(ValueError, match="sum"):
        lrn.split_indices(10, (0.5, 0.2, 0.2))


# ---------------------------------------------------------------------------
# two-stage
# ---------------------------------------------------------------------------


def test_two_stage_lowers_val_loss_and_keeps_best_epoch(world):
    x, u, _, names = world
    learner, h = lrn.train_two_stage(
        x, u, model_name="clm5", covariate_names=names, hidden=(16, 16), dropout=0.0,
        epochs=300, patience=4, batch_size=16, learning_rate=2e-2, seed=1, progress=False,
    )
    val = h["split"]["val"]
    v = h["val_loss"]
    assert h["epochs_run"] == v.size and h["train_loss"].size == v.size
    assert h["best_epoch"] == int(np.argmin(v))
    assert v.min() < v[0]
    assert h["stopped_early"] and h["epochs_run"] == h["best_epoch"] + 1 + 4  # stopped after `patience` worse epochs
    assert v[-1] > v.min()
    # the returned parameters are the best epoch's, not the last ones
    got = lrn.mse_loss(learner.predict_u(x[val]), u[val])
    np.testing.assert_allclose(got, v[h["best_epoch"]], rtol=1e-10)
    np.testing.assert_allclose(got, h["best_val_loss"], rtol=1e-10)
    # scaler fitted on the training rows only
    np.testing.assert_allclose(learner.scaler.lo, x[h["split"]["train"]].min(0))
    assert learner.covariate_names == names and learner.param_names == soiljax.CLM5().param_names
    md = learner.metadata
    assert md["method"] == "two_stage" and md["loss"] == "mse" and md["n_train"] == h["split"]["train"].size


def test_two_stage_proda_loss_and_errors(world):
    x, u, _, names = world
    schedule = optax.cosine_decay_schedule(1e-2, 20)
    learner, h = lrn.train_two_stage(
        x, u, model_name="clm5", loss="proda", hidden=(8,), dropout=0.1, epochs=3, learning_rate=schedule,
        progress=False,
    )
    assert np.all(np.isfinite(h["train_loss"])) and learner.metadata["loss"] == "proda"
    assert learner.metadata["learning_rate"] == "schedule"
    assert learner.covariate_names[0] == "x0"
    with pytest.raises(ValueError, match="x has 64 sites .* u_target has 63"):
        lrn.train_two_stage(x, u[:-1], model_name="clm5")
    xn = x.copy()
    xn[5, 2] = np.nan
    with pytest.raises(ValueError, match="'log_input'"):
        lrn.train_two_stage(xn, u, model_name="clm5", covariate_names=names)
    with pytest.raises(ValueError, match="unknown loss 'mae'"):
        lrn.train_two_stage(x, u, model_name="clm5", loss="mae")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lrn.train_two_stage(x, u * 3.0, model_name="clm5")
    with pytest.raises(ValueError, match="21 parameters"):
        lrn.train_two_stage(x, u[:, :4], model_name="clm5")
    with pytest.raises(ValueError, match="unknown model"):
        lrn.train_two_stage(x, u, model_name="century")


def test_bootstrap_ensemble(world):
    x, u, _, names = world
    learner, h = lrn.train_two_stage(
        x, u, model_name="clm5", covariate_names=names, hidden=(8,), dropout=0.0, epochs=4, ensemble=3,
        progress=False,
    )
    assert learner.n_members == 3
    members = np.asarray(learner.predict_u_members(x[:7]))
    assert members.shape == (3, 7, 21)
    assert not np.allclose(members[0], members[1]) and not np.allclose(members[1], members[2])
    np.testing.assert_allclose(learner.predict_u(x[:7]), members.mean(0), rtol=1e-12)
    boot = h["bootstrap"]
    train = h["split"]["train"]
    assert boot.shape == (3, train.size) and np.isin(boot, train).all()
    assert len(np.unique(boot[0])) < train.size  # drawn with replacement
    assert h["member_val_loss"].shape == (3, h["epochs_run"]) and len(h["best_epoch"]) == 3
    single = learner.member(1)
    np.testing.assert_allclose(jax.vmap(single)(learner.scaler.transform(x[:7])), members[1], rtol=1e-12)


# ---------------------------------------------------------------------------
# save / load
# ---------------------------------------------------------------------------


def test_save_load_round_trip(world, tmp_path):
    x, u, _, names = world
    learner = lrn.init_learner(x, model_name="clm5", covariate_names=names, hidden=(8, 4), dropout=0.3, ensemble=2,
                               seed=3, metadata={"note": "test", "n": np.int64(4)})
    path = lrn.save_learner(tmp_path / "learner.eqx", learner)
    header = lrn.read_header(path)
    assert header["architecture"] == {"n_in": 7, "n_out": 21, "hidden": [8, 4], "dropout": 0.3, "ensemble": 2,
                                      "dtype": "float64"}
    back = lrn.load_learner(path)
    assert back.covariate_names == learner.covariate_names and back.param_names == learner.param_names
    assert back.model_name == "clm5" and back.metadata == {"note": "test", "n": 4}
    np.testing.assert_array_equal(back.predict_u_members(x), learner.predict_u_members(x))
    np.testing.assert_array_equal(back.scaler.lo, learner.scaler.lo)
    # covariates by name, NaN rows
    np.testing.assert_allclose(back.predict_u(x, chunk=5), back.predict_u(x), rtol=1e-12)  # host chunks, padded
    by_name = {n: x[:, i] for i, n in enumerate(names)}
    np.testing.assert_array_equal(back.predict_u(by_name), learner.predict_u(x))
    xn = x.copy()
    xn[2, 1] = np.nan
    with pytest.raises(ValueError, match="allow_nan"):
        back.predict_u(xn)
    assert np.isnan(np.asarray(back.predict_u(xn, allow_nan=True))[2]).all()

    raw = path.read_bytes()
    bad = tmp_path / "bad.eqx"
    bad.write_bytes(raw[:-20])
    with pytest.raises(lrn.LearnerFileError, match="truncated"):
        lrn.load_learner(bad)
    flipped = bytearray(raw)
    flipped[-50] ^= 0xFF
    bad.write_bytes(bytes(flipped))
    with pytest.raises(lrn.LearnerFileError, match="corrupt"):
        lrn.load_learner(bad)
    bad.write_bytes(b"\x89HDF\r\n" + raw)
    with pytest.raises(lrn.LearnerFileError, match="not a soiljax learner file"):
        lrn.load_learner(bad)
    bad.write_bytes(raw.replace(b'"version": 1', b'"version": 99', 1))
    with pytest.raises(lrn.LearnerFileError, match="upgrade soiljax"):
        lrn.load_learner(bad)
    with pytest.raises(FileNotFoundError):
        lrn.load_learner(tmp_path / "missing.eqx")


# ---------------------------------------------------------------------------
# end-to-end
# ---------------------------------------------------------------------------


def _e2e_value(net, model, xs, forcing, obs, u_prior, prior_weight):
    return lrn.end_to_end_loss(net, model, xs, forcing, obs, u_prior=u_prior, prior_weight=prior_weight)


# one compiled program shared by the gradient tests (same shapes)
_value_and_grad = eqx.filter_jit(eqx.filter_value_and_grad(_e2e_value, has_aux=True))


@pytest.fixture(scope="module")
def small_batch(world, world_obs):
    x, u, forcing, names = world
    idx = np.arange(4)
    scaler = lrn.MinMaxScaler.fit(x)
    return scaler.transform(x[idx]), forcing[idx], world_obs[idx], u[idx]


def test_end_to_end_gradient_matches_finite_difference(small_batch):
    xs, forcing, obs, u_prior = small_batch
    model = soiljax.CLM5()
    net = lrn.ParamNet(xs.shape[1], model.n_params, hidden=(8,), dropout=0.0, key=jax.random.PRNGKey(0))
    pw = jnp.asarray(0.5)
    (value, aux), grads = _value_and_grad(net, model, xs, forcing, obs, u_prior, pw)
    assert np.isfinite(float(value)) and bool(np.all(aux["valid"]))
    g = grads.layers[0].weight
    assert np.all(np.isfinite(g)) and np.any(g != 0)
    direction = jax.random.normal(jax.random.PRNGKey(5), g.shape)
    direction = direction / jnp.linalg.norm(direction)
    analytic = float(jnp.sum(g * direction))
    eps = 1e-5

    def at(t):
        moved = eqx.tree_at(lambda n: n.layers[0].weight, net, net.layers[0].weight + t * direction)
        return float(_value_and_grad(moved, model, xs, forcing, obs, u_prior, pw)[0][0])

    numeric = (at(eps) - at(-eps)) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-9)


def test_end_to_end_invalid_sites_stay_finite(small_batch):
    xs, forcing, obs, u_prior = small_batch
    model = soiljax.CLM5()
    net = lrn.ParamNet(xs.shape[1], model.n_params, hidden=(8,), dropout=0.0, key=jax.random.PRNGKey(0))
    # hidden unit 0 copies covariate 0; the efolding logit is 100 - 200 x0: efolding -> 0 m
    # (a singular system, invalid) where x0 > 0.5, efolding -> 1 m where x0 < 0.5
    w0 = jnp.zeros((8, xs.shape[1])).at[0, 0].set(1.0)
    net = eqx.tree_at(lambda n: (n.layers[0].weight, n.layers[0].bias), net, (w0, jnp.zeros(8)))
    i = model.space.index("efolding")
    w1 = jnp.zeros((model.n_params, 8)).at[i, 0].set(-200.0)
    net = eqx.tree_at(lambda n: (n.layers[1].weight, n.layers[1].bias), net,
                      (w1, jnp.zeros(model.n_params).at[i].set(100.0)))
    xs = xs.at[:, 0].set(jnp.array([0.1, 0.9, 0.2, 0.8]))
    (value, aux), grads = _value_and_grad(net, model, xs, forcing, obs, u_prior, jnp.asarray(0.5))
    assert list(np.asarray(aux["valid"])) == [True, False, True, False]
    assert np.isfinite(float(value))
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(grads))
    # the invalid sites add the constant penalty, no misfit
    expected = (float(aux["misfit"][0]) + float(aux["misfit"][2]) + 2 * lrn.INVALID_PENALTY) / 4
    np.testing.assert_allclose(float(value), expected + 0.5 * float(aux["prior"]), rtol=1e-12)


def test_guarded_update_skips_non_finite_gradients():
    opt = optax.adam(0.1)
    params = {"w": jnp.ones(3)}
    state = opt.init(params)
    bad = {"w": jnp.array([1.0, jnp.nan, 0.0])}
    p, s, ok = guarded_update(opt, bad, state, params, jnp.asarray(1.0))
    assert not bool(ok)
    np.testing.assert_array_equal(p["w"], params["w"])
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(s), jax.tree_util.tree_leaves(state)))
    p, s, ok = guarded_update(opt, {"w": jnp.ones(3)}, state, params, jnp.asarray(jnp.inf))
    assert not bool(ok) and np.array_equal(p["w"], params["w"])
    p, s, ok = guarded_update(opt, {"w": jnp.ones(3)}, state, params, jnp.asarray(1.0))
    assert bool(ok) and np.all(np.asarray(p["w"]) < 1.0)


def test_end_to_end_input_errors(world, world_obs):
    x, u, forcing, names = world
    model = soiljax.CLM5()
    with pytest.raises(ValueError, match="observations have batch shape"):
        lrn.train_end_to_end(model, x, forcing, world_obs[:10])
    with pytest.raises(ValueError, match="u_prior must have shape"):
        lrn.train_end_to_end(model, x, forcing, world_obs, u_prior=u[:, :3])
    with pytest.raises(ValueError, match="needs u_prior"):
        lrn.train_end_to_end(model, x, forcing, world_obs, prior_weight=1.0, epochs=0)
    two = lrn.init_learner(x, model_name="compas", hidden=(4,))
    with pytest.raises(ValueError, match="trained for compas"):
        lrn.train_end_to_end(model, x, forcing, world_obs, init=two)


@pytest.mark.slow
def test_end_to_end_run_lowers_held_out_error(world, world_obs):
    x, u, forcing, names = world
    obs = world_obs
    model = soiljax.CLM5()
    split = lrn.split_indices(x.shape[0], (0.625, 0.125, 0.25), seed=0)
    train, val, test = split
    start = lrn.init_learner(x[train], model_name="clm5", covariate_names=names, hidden=(16, 16), dropout=0.0, seed=2)
    learner, h = lrn.train_end_to_end(
        model, x, forcing, obs, covariate_names=names, init=start, epochs=25, batch_size=20,
        learning_rate=1e-2, patience=10, split=split, progress=False,
    )
    assert h["best_val_loss"] < h["initial_val_loss"]
    assert np.all(np.isfinite(h["train_loss"])) and h["skipped_steps"] == 0
    before = lrn.evaluate(model, start, x[test], forcing[test], obs[test], u_true=u[test])
    after = lrn.evaluate(model, learner, x[test], forcing[test], obs[test], u_true=u[test])
    assert after["valid"].all()
    assert after["median_nse"] > before["median_nse"]
    assert after["stock_1m"].shape == (test.size,) and np.all(after["stock_1m"] > 0)
    assert set(after["u_corr"]) == set(model.param_names)
    assert learner.metadata["method"] == "end_to_end" and learner.metadata["model_options"]["bedrock"] == "proda"
    assert learner.make_model() == model


_BAD_SETTINGS = [
    (dict(hidden=(0,)), "hidden layer widths"),
    (dict(hidden=(8, 2.5)), "hidden layer widths"),
    (dict(dropout=1.5), "dropout must be a rate in"),
    (dict(dropout=float("nan")), "dropout must be a rate in"),
    (dict(learning_rate=-1.0), "learning_rate must be a positive number"),
    (dict(learning_rate=np.float64("nan")), "learning_rate must be a positive number"),
    (dict(patience=-1), "patience must be"),
    (dict(patience=0), "patience must be"),
    (dict(patience=2.5), "patience must be"),
    (dict(epochs=-1), "epochs must be"),
    (dict(epochs=2.5), "epochs must be"),
    (dict(batch_size=0), "batch_size must be"),
    (dict(batch_size=np.float64(2.5)), "batch_size must be"),
]


@pytest.mark.parametrize("approach", ["two_stage", "end_to_end"])
@pytest.mark.parametrize("kw, match", _BAD_SETTINGS + [(dict(ensemble=0), "ensemble"), (dict(ensemble=1.5), "ensemble")])
def test_training_refuses_bad_settings_before_compiling(world, world_obs, monkeypatch, approach, kw, match):
    x, u, forcing, names = world
    if approach == "end_to_end" and "ensemble" in kw:
        pytest.skip("two-stage only")

    def compiled(*args, **kwargs):
        raise AssertionError("compiled before the settings were checked")

    monkeypatch.setattr(eqx, "filter_jit", compiled)
    settings = dict(hidden=(4,), epochs=2, batch_size=8, patience=2, progress=False) | kw
    with pytest.raises(ValueError, match=match) as exc:
        if approach == "two_stage":
            lrn.train_two_stage(x, u, model_name="clm5", covariate_names=names, **settings)
        else:
            lrn.train_end_to_end(soiljax.CLM5(), x, forcing, world_obs, covariate_names=names, **settings)
    assert "np." not in str(exc.value)  # plain values in the message
    with pytest.raises(AssertionError, match="compiled"):  # good settings reach the compiler
        lrn.train_two_stage(x, u, model_name="clm5", covariate_names=names, hidden=(4,), progress=False)


@pytest.mark.slow  # compiles an end-to-end training through the solver (~17 s) for a progress label
def test_training_bar_says_compiling_before_the_first_epoch(world, world_obs, capsys):
    x, u, forcing, names = world
    lrn.train_two_stage(x, u, model_name="clm5", hidden=(4,), epochs=2, patience=None, progress=True)
    err = capsys.readouterr().err
    assert "compiling" in err.split("1/2")[0] and "train=" in err  # then the losses
    lrn.train_end_to_end(soiljax.CLM5(), x[:12], forcing[:12], world_obs[:12], hidden=(4,), epochs=1, batch_size=8,
                         progress=True)
    err = capsys.readouterr().err
    assert "compiling" in err.split("1/1")[0] and "train=" in err
