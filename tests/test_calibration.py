"""Site-level calibration: observation operator, log densities, samplers, batching, resume, NumPyro.

Everything runs in float64 (conftest).  The fast tests take about three
minutes on one CPU core, mostly compilation; tests that compile several
calibrations, and the NumPyro comparison, are marked ``slow``.
"""

from __future__ import annotations

import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from scipy.interpolate import PchipInterpolator

import soiljax
from soiljax import calibration as cal
from soiljax._grid import ZSOI
from soiljax._observations import Observations
from soiljax._parts import PartsMismatchError, parts_dir
from soiljax._observe import observe
from soiljax._pchip import pchip_interpolate
from soiljax.calibration import _run

# --------------------------------------------------------------------------
# shared data
# --------------------------------------------------------------------------


def _truth_u(model):
    """Default parameters pulled inside the prior (CLM5's efolding default lies outside [0, 1])."""
    return np.clip(model.default_u(), 0.05, 0.95)


@pytest.fixture(scope="module")
def temperate():
    forcing, _ = soiljax.synthetic_sites(6, seed=3, zones=["temperate"])
    return forcing


@pytest.fixture(scope="module")
def clm5_data(temperate):
    model = soiljax.CLM5()
    obs, truth = soiljax.synthetic_observations(model, _truth_u(model), temperate, seed=4)
    assert truth.valid.values.all()
    return model, temperate, obs, truth


@pytest.fixture(scope="module")
def compas_data(temperate):
    model = soiljax.COMPAS()
    obs, truth = soiljax.synthetic_observations(model, _truth_u(model), temperate, seed=5)
    keep = np.flatnonzero(truth.valid.values)[:4]  # COMPAS is invalid at some sites even at its defaults
    assert keep.size >= 3
    return model, temperate[keep], obs[keep], truth.isel(site=keep)


@pytest.fixture(scope="module")
def boreal():
    forcing, _ = soiljax.synthetic_sites(3, seed=0, zones=["boreal"])
    return forcing


def _no_nan(ds: xr.Dataset, names):
    for name in names:
        values = np.asarray(ds[name].values, dtype=float)
        assert not np.isnan(values).any(), f"NaN in {name}: {values}"


# --------------------------------------------------------------------------
# 1. pchip
# --------------------------------------------------------------------------

_X = np.asarray(ZSOI)
_XQ = np.concatenate([np.linspace(-0.5, 9.5, 157), _X, [0.0, 0.01, 8.03, 12.0]])  # inside, at and beyond the nodes


def _pchip_cases():
    rng = np.random.default_rng(0)
    n = _X.size
    return {
        "random_positive": rng.lognormal(8.0, 1.0, n),
        "random_sign_changing": rng.normal(0.0, 1.0, n),
        "oscillating": np.sin(3.0 * _X) + 0.1 * rng.normal(size=n),
        "flat": np.full(n, 2.5),
        "flat_then_rising": np.concatenate([np.full(n // 2, 1.0), np.linspace(1.0, 4.0, n - n // 2) ** 2]),
        "monotone_decreasing": 1e4 * np.exp(-_X),
        "nearly_flat": 2.5 + 1e-3 * rng.normal(size=n),
    }


@pytest.mark.parametrize("case", list(_pchip_cases()))
def test_pchip_equals_scipy(case):
    y = _pchip_cases()[case]
    ref = PchipInterpolator(_X, y, extrapolate=True)(_XQ)
    got = np.asarray(pchip_interpolate(jnp.asarray(_X), jnp.asarray(y), jnp.asarray(_XQ)))
    scale = np.abs(y).max()
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * scale)
    # the observation operator is pchip on the model grid; also on a non-uniform random grid
    np.testing.assert_allclose(np.asarray(observe(jnp.asarray(y), jnp.asarray(_XQ))), ref, rtol=1e-12,
                               atol=1e-12 * scale)
    x = np.sort(np.random.default_rng(1).uniform(0.0, 5.0, 9))
    yx = y[: x.size]
    xq = np.linspace(-1.0, 6.0, 71)
    np.testing.assert_allclose(np.asarray(pchip_interpolate(jnp.asarray(x), jnp.asarray(yx), jnp.asarray(xq))),
                               PchipInterpolator(x, yx, extrapolate=True)(xq), rtol=1e-12,
                               atol=1e-12 * np.abs(yx).max())


@pytest.mark.parametrize("scale", [1e-160, 1e-300])
def test_pchip_is_scale_free_down_to_underflowing_data(scale):
    # pchip is homogeneous of degree 1 in y, so its Jacobian does not depend on y's scale.  Deep SOC
    # below a shallow bedrock reaches ~1e-160 gC m-3: products of secants underflow there, and the
    # textbook derivative of the harmonic mean overflows; neither may change the value or gradient.
    y = _pchip_cases()["monotone_decreasing"] * (1.0 + 0.1 * np.sin(5.0 * _X))
    x, xq = jnp.asarray(_X), jnp.asarray(_XQ)

    def interp(yy):
        return pchip_interpolate(x, yy, xq)

    np.testing.assert_allclose(np.asarray(interp(jnp.asarray(y * scale))),
                               PchipInterpolator(_X, y * scale, extrapolate=True)(_XQ), rtol=1e-12, atol=0)
    jac = np.asarray(jax.jacfwd(interp)(jnp.asarray(y)))
    for transform in (jax.jacfwd, jax.jacrev):
        small = np.asarray(transform(interp)(jnp.asarray(y * scale)))
        np.testing.assert_allclose(small, jac, rtol=1e-10, atol=1e-12 * np.abs(jac).max())


@pytest.mark.parametrize("case", list(_pchip_cases()))
def test_pchip_gradient_matches_finite_differences(case):
    y = _pchip_cases()[case]
    w = np.random.default_rng(2).normal(size=_XQ.size)

    def f(yy):
        return jnp.sum(jnp.asarray(w) * pchip_interpolate(jnp.asarray(_X), yy, jnp.asarray(_XQ)))

    g = np.asarray(jax.grad(f)(jnp.asarray(y)))
    assert np.isfinite(g).all()
    if case == "flat_then_rising":
        return  # a kink where the flat part meets the rising one (the slope limiter switches): finite is all
    # pchip is piecewise smooth in y; a step of 1e-6 of the data's scale stays inside one piece for
    # these data, so the central difference is exact to O(h^2) plus rounding ~ 1e-16 |f| / h.
    h = 1e-6 * max(np.abs(y).max(), 1.0)
    eye = np.eye(y.size)
    fd = np.array([(f(jnp.asarray(y + h * e)) - f(jnp.asarray(y - h * e))) / (2 * h) for e in eye])
    check = np.ones(y.size, bool)
    if case == "flat":
        # Exactly flat data are a non-differentiable point of pchip: every node value has a partial
        # derivative, but the end slopes' shape limiter makes them inconsistent with any chain rule
        # through the secants (node 2 moves only the second secant, which leaves the end slope at 0
        # from either side, yet node 1 needs that secant's coefficient).  The interior nodes are
        # unaffected; at the three nodes of each end stencil only finiteness is checked.
        check[[0, 1, 2, -3, -2, -1]] = False
    np.testing.assert_allclose(g[check], fd[check], rtol=1e-6, atol=1e-6 * np.abs(fd).max())


# --------------------------------------------------------------------------
# 2. the transform u = sigmoid(z)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("model", [soiljax.CLM5(), soiljax.COMPAS()], ids=["CLM5", "COMPAS"])
def test_u_from_z_log_jacobian(model):
    space = model.space
    rng = np.random.default_rng(3)
    # jacfwd differentiates sigmoid as s (1 - s), which loses ~eps / (1 - s) relative accuracy for
    # large |z| (5e-8 at |z| = 20), while log_sigmoid is accurate: tolerance 1e-12 for moderate z,
    # 1e-7 for z up to 20, and an exact closed form checked to 1e-12 in both cases.
    for z, rtol in ((rng.normal(0.0, 2.0, model.n_params), 1e-12), (rng.uniform(-20.0, 20.0, model.n_params), 1e-7)):
        u, log_jac = space.u_from_z(jnp.asarray(z))
        jac = np.asarray(jax.jacfwd(lambda zz: space.u_from_z(zz)[0])(jnp.asarray(z)))
        assert np.array_equal(jac, np.diag(np.diag(jac)))  # diagonal
        np.testing.assert_allclose(float(log_jac), np.log(np.abs(np.linalg.det(jac))), rtol=rtol)
        exact = np.sum(-np.abs(z) - 2.0 * np.log1p(np.exp(-np.abs(z))))  # log(s (1 - s)), stable
        np.testing.assert_allclose(float(log_jac), exact, rtol=1e-12)
        u = np.asarray(u)
        assert np.all((u > 0.0) & (u < 1.0))
        np.testing.assert_allclose(np.asarray(space.z_from_u(jnp.asarray(u))), z, rtol=1e-6, atol=1e-9)
    # batched: log_jac summed over the last axis only
    zb = jnp.asarray(rng.normal(size=(4, model.n_params)))
    _, lj = space.u_from_z(zb)
    assert lj.shape == (4,)


# --------------------------------------------------------------------------
# 3. log densities
# --------------------------------------------------------------------------

_LIKELIHOODS = {
    "LogNormal": cal.LogNormal(),
    "Gaussian": cal.Gaussian(),
    "ProdaCLM5": cal.ProdaCLM5(),
    "ProdaCOMPAS": cal.ProdaCOMPAS(),
}
_FD_STEP = 1e-4
_PAD = 3


@eqx.filter_jit
def _evaluate(model, likelihoods, forcing, obs, z):
    """``log_density`` and its gradient for every likelihood at z (site, point, param), all sites and
    points in one compiled program; plus the steady state (soc, valid) at each site's first point."""

    def site(f, o, zs):
        vg = tuple(jax.vmap(jax.value_and_grad(cal.log_density(model, lik, f, o)))(zs) for lik in likelihoods)
        steady = model.steady_state(model.space.u_from_z(zs[0])[0], f)
        return vg, steady.soc, steady.valid

    return jax.vmap(site)(forcing, obs, z)


def _pad(obs: Observations, where: str) -> Observations:
    """The same profiles with _PAD extra NaN entries at the end or in the middle of the obs axis."""
    arrays = [np.asarray(a) for a in (obs.depth, obs.soc, obs.soc_sd)]
    nan = np.full(arrays[0].shape[:-1] + (_PAD,), np.nan)
    if where == "end":
        arrays = [np.concatenate([a, nan], axis=-1) for a in arrays]
    else:
        arrays = [np.concatenate([a[..., :1], nan[..., :1], a[..., 1:3], nan[..., 1:], a[..., 3:]], axis=-1)
                  for a in arrays]
    return Observations(*arrays)


def _concat(*trees):
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate([jnp.asarray(x) for x in a]), *trees)


def _z_near_truth(model, u_true, seed):
    z = np.asarray(model.space.z_from_u(jnp.asarray(u_true)))
    return z + 0.05 * np.random.default_rng(seed).normal(size=z.shape)


def _boreal_obs(n):
    """A plausible observed profile (gC m-3) at the boreal sites, where COMPAS's defaults are invalid."""
    depth = np.tile(np.array([0.05, 0.2, 0.45, 0.8, 1.3]), (n, 1))
    return Observations(depth, 2.0e4 * np.exp(-depth / 0.5))


@pytest.fixture(scope="module")
def evaluated(clm5_data, compas_data, boreal):
    """Per model: two valid sites, each padded with NaN at the end and in the middle (rows 0-3), and for
    COMPAS one boreal site at its default parameters (row 4, invalid).  Points per row: z near the
    truth, then z +- h e_k (central differences)."""
    out = {}
    for name, (model, forcing, obs, truth) in (("CLM5", clm5_data), ("COMPAS", compas_data)):
        rows = [0, 0, 1, 1]
        f = forcing[np.array(rows)]
        o = _concat(_pad(obs[0:1], "end"), _pad(obs[0:1], "middle"), _pad(obs[1:2], "end"), _pad(obs[1:2], "middle"))
        centre = np.stack([_z_near_truth(model, truth.u_true.values[r], seed=r) for r in rows])
        if name == "COMPAS":
            f = _concat(f, boreal[0:1])
            bo = _boreal_obs(1)
            widen = ((0, 0), (0, o.n_obs - bo.n_obs))
            o = _concat(o, Observations(*(np.pad(np.asarray(a), widen, constant_values=np.nan)
                                          for a in (bo.depth, bo.soc, bo.soc_sd))))
            centre = np.concatenate([centre, np.asarray(model.space.z_from_u(jnp.asarray(model.default_u())))[None]])
        d = model.n_params
        steps = _FD_STEP * np.eye(d)
        z = np.concatenate([centre[:, None], centre[:, None] + steps, centre[:, None] - steps], axis=1)
        vg, soc, valid = _evaluate(model, tuple(_LIKELIHOODS.values()), f, o, jnp.asarray(z))
        out[name] = dict(
            model=model, forcing=f, obs=o, z=z, soc=np.asarray(soc), valid=np.asarray(valid),
            values={k: np.asarray(v[0]) for k, v in zip(_LIKELIHOODS, vg)},
            grads={k: np.asarray(v[1]) for k, v in zip(_LIKELIHOODS, vg)},
            unpadded=[obs[0], obs[1]],
        )
    return out


def _numpy_log_likelihoods(pred, y, sd, depth):
    """The four likelihoods written out in numpy from their definitions (MODELS.md 5 for PRODA's)."""
    given = np.isfinite(sd) & (sd > 0)
    rel = np.where(given, sd / y, 0.1)
    half_log_2pi = 0.5 * np.log(2 * np.pi)
    lognormal = np.sum(-0.5 * ((np.log(y) - np.log(pred)) / rel) ** 2 - np.log(rel) - half_log_2pi - np.log(y))
    s = rel * y
    gaussian = np.sum(-0.5 * ((y - pred) / s) ** 2 - np.log(s) - half_log_2pi)

    def ranks(a):  # 1 for the largest; ties: the earlier layer gets the smaller rank
        order = np.argsort(-a, kind="stable")
        r = np.empty(a.size)
        r[order] = np.arange(1, a.size + 1)
        return r

    r = 0.5 * (ranks(np.abs(y - y.mean())) + ranks(np.abs(depth - depth.mean())))
    w = np.maximum(10.0 * np.exp(-(r - 1.0)), 1.0)
    j_clm5 = np.sum(w * (pred - y) ** 2 / (2.0 * (0.6 * y) ** 2))
    nse = 1.0 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    return {"LogNormal": lognormal, "Gaussian": gaussian, "ProdaCLM5": -j_clm5, "ProdaCOMPAS": -5.0 * (1.0 - nse)}


@pytest.mark.parametrize("model_name", ["CLM5", "COMPAS"])
def test_log_density_values_match_numpy_and_ignore_padding(evaluated, model_name):
    """Values at z near the truth: finite, equal to the likelihoods computed in numpy (scipy's pchip of
    the steady state at the usable layers, PRODA's rank weights and NSE) plus log|du/dz|, whether the
    profile is padded with NaN at its end or in its middle."""
    e = evaluated[model_name]
    model = e["model"]
    for row in range(4):
        assert bool(e["valid"][row])
        ob = e["unpadded"][row // 2]
        mask = np.asarray(ob.mask)
        y, sd, depth = (np.asarray(a)[mask] for a in (ob.soc, ob.soc_sd, ob.depth))
        pred = PchipInterpolator(np.asarray(ZSOI), e["soc"][row], extrapolate=True)(depth)
        expected = _numpy_log_likelihoods(pred, y, sd, depth)
        log_jac = float(model.space.u_from_z(jnp.asarray(e["z"][row, 0]))[1])
        for name in _LIKELIHOODS:
            got = e["values"][name][row, 0]
            assert np.isfinite(got), (name, row)
            np.testing.assert_allclose(got, expected[name] + log_jac, rtol=1e-10, err_msg=f"{name} row {row}")


_GRADIENT_CASES = [(m, lik) for m in ("CLM5", "COMPAS") for lik in _LIKELIHOODS]


@pytest.mark.parametrize(("model_name", "name"), _GRADIENT_CASES)
def test_log_density_gradient_matches_finite_differences(evaluated, model_name, name):
    """Gradients of padded profiles: NaN-free, equal to central differences and to each other."""
    e = evaluated[model_name]
    d = e["model"].n_params
    v, g = e["values"][name][:4], e["grads"][name][:4]
    assert not np.isnan(g).any() and np.isfinite(g[:, 0]).all()
    # Central differences in z with h = 1e-4: the truncation error is O(h^2) times the third
    # derivative, ~1e-8 of the gradient's scale, and the rounding error ~1e-13 |f| / h ~ 1e-9 (the
    # steady-state solve is accurate to ~1e-13 relative), both far below the 1e-5 tolerance; h is
    # small enough that no branch of pchip or of the model switches inside the stencil.  The
    # error is measured against the gradient's norm, since single components can be ~0.
    fd = (v[:, 1 : d + 1] - v[:, d + 1 :]) / (2 * _FD_STEP)
    err = np.linalg.norm(g[:, 0] - fd, axis=1) / np.linalg.norm(fd, axis=1)
    assert np.all(err < 1e-5), (name, err)
    # padding at the end or in the middle: the same gradient
    np.testing.assert_allclose(g[1, 0], g[0, 0], rtol=1e-10, atol=1e-10 * np.abs(g[0, 0]).max())
    np.testing.assert_allclose(g[3, 0], g[2, 0], rtol=1e-10, atol=1e-10 * np.abs(g[2, 0]).max())


def test_proda_layer_weights_by_hand():
    y = np.array([4000.0, 3000.0, 1000.0, 500.0, np.nan])
    d = np.array([0.05, 0.2, 0.6, 1.0, np.nan])
    w = np.asarray(cal.proda_layer_weights(jnp.asarray(y), jnp.asarray(d), jnp.asarray(np.isfinite(y))))
    # |y - 2125| = 1875, 875, 1125, 1625: ranks 1, 4, 3, 2; |z - 0.4625| = .4125, .2625, .1375, .5375: 2, 3, 4, 1
    r = 0.5 * (np.array([1, 4, 3, 2]) + np.array([2, 3, 4, 1]))
    np.testing.assert_allclose(w[:4], np.maximum(10.0 * np.exp(-(r - 1.0)), 1.0), rtol=1e-14)
    assert w[4] == 0.0


# --------------------------------------------------------------------------
# 4. invalid proposals
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(_LIKELIHOODS))
def test_invalid_steady_state_gives_minus_inf_and_finite_gradient(evaluated, name):
    """COMPAS at a boreal site at its default parameters is invalid: -inf and a finite gradient, also
    at the neighbouring points."""
    e = evaluated["COMPAS"]
    assert not bool(e["valid"][4])
    assert np.all(e["values"][name][4] == -np.inf)
    assert np.isfinite(e["grads"][name][4]).all()


@pytest.mark.slow  # compiles a COMPAS HMC and a NUTS step: ~30 s
@pytest.mark.parametrize("sampler", [cal.HMC(num_integration_steps=8, initial_step_size=3.0),
                                     cal.NUTS(initial_step_size=3.0)], ids=["HMC", "NUTS"])
def test_step_into_invalid_region_is_rejected(compas_data, sampler):
    """From a valid state, huge steps land where the steady state is invalid (or u hits 0 or 1):
    the proposal is rejected and the state stays as it was, NaN-free."""
    model, forcing, obs, truth = compas_data
    ld = cal.log_density(model, cal.LogNormal(), forcing[0], obs[0])
    z0 = jnp.asarray(_z_near_truth(model, truth.u_true.values[0], seed=0))
    carry = sampler.init(None, z0, ld)
    assert np.isfinite(float(carry[0].logdensity))
    sampling = (False, False, False, False)  # (adapting, slow window, window end, last warmup iteration)
    step = jax.jit(lambda k, c: sampler.step(k, c, sampling, ld))
    rejected = 0
    for i in range(10):
        new, rec = step(jax.random.PRNGKey(i), carry)
        for leaf in jax.tree_util.tree_leaves(new):
            assert not np.isnan(np.asarray(leaf, dtype=float)).any()
        assert np.isfinite(np.asarray(rec.position)).all() and np.isfinite(float(rec.logdensity))
        assert 0.0 <= float(rec.acceptance) <= 1.0
        rejected += bool(np.array_equal(np.asarray(rec.position), np.asarray(z0)))
    assert rejected >= 8  # steps of 3 in 23 dimensions almost never stay valid


@pytest.mark.slow  # a few compiled calibrations: ~1-2 minutes
def test_calibrate_with_mostly_invalid_prior_has_no_nan(boreal, compas_data):
    """Boreal sites, where most of COMPAS's prior is invalid, next to temperate ones."""
    model, forcing_t, obs_t, _ = compas_data
    forcing = _concat(boreal[:2], forcing_t[:2])
    obs = _concat(_boreal_obs(2), Observations(np.asarray(obs_t.depth[:2, :5]), np.asarray(obs_t.soc[:2, :5])))
    for method in ("hmc", "nuts"):
        ds = cal.calibrate(model, forcing, obs, method=method, warmup=30, samples=20, chains=2, progress=False,
                           predictive_draws=10)
        _no_nan(ds, ["u_mean", "u_sd", "u_q05", "u_q95", "theta_mean", "rhat", "rhat_mean", "rhat_gr",
                     "rhat_gr_mean", "ess", "nse", "acceptance_rate", "step_size", "model_evals"])
        u = ds.u_mean.values
        assert np.all((u > 0) & (u < 1))
        assert np.all(np.isfinite(ds.rhat.values) | (ds.rhat.values == np.inf))
        assert np.all(np.isfinite(ds.nse.values) | (ds.nse.values == -np.inf))
        assert np.all((ds.acceptance_rate.values >= 0) & (ds.acceptance_rate.values <= 1))
        # COMPAS extends the chains of profiles failing the R-hat rule (20 draws rarely pass)
        assert ds.attrs["extend"] == cal.DEFAULT_EXTEND["COMPAS"]
        assert np.all((ds.thinning.values >= 1) & (ds.thinning.values <= 1 + cal.DEFAULT_EXTEND["COMPAS"]))
        if method == "nuts":
            assert ds.attrs["max_doublings"] == cal.DEFAULT_DOUBLINGS["COMPAS"]


def test_nuts_tree_depth_defaults_per_model():
    assert cal.NUTS().max_num_doublings is None
    assert cal.NUTS().for_model(soiljax.CLM5()).max_num_doublings == 6
    assert cal.NUTS().for_model(soiljax.COMPAS()).max_num_doublings == 10
    assert cal.NUTS(max_num_doublings=4).for_model(soiljax.COMPAS()).max_num_doublings == 4


def test_warmup_and_extension_defaults_per_model(clm5_data, compas_data, monkeypatch):
    class Stop(Exception):
        pass

    seen = []

    def capture(self, lo, hi, bar):  # record the batch's settings instead of sampling
        seen.append((type(self.model).__name__, self.warmup, self.extend))
        raise Stop

    monkeypatch.setattr(_run._BatchJob, "__call__", capture)
    for model, forcing, obs, _ in (clm5_data, compas_data):
        with pytest.raises(Stop):
            cal.calibrate(model, forcing[:1], obs[:1], progress=False)
    model, forcing, obs, _ = clm5_data
    with pytest.raises(Stop):
        cal.calibrate(model, forcing[:1], obs[:1], warmup=7, extend=2, progress=False)
    model_c, forcing_c, obs_c, _ = compas_data
    with pytest.raises(Stop):
        cal.calibrate(model_c, forcing_c[:1], obs_c[:1], method="proda", progress=False)
    assert seen == [("CLM5", 400, 0), ("COMPAS", 800, 3), ("CLM5", 7, 2), ("COMPAS", 800, 0)]
    assert cal.DEFAULT_EXTEND == {"CLM5": 0, "COMPAS": 3}
    for bad, match in (({"extend": -1}, "whole number >= 0"), ({"extend": 1.5}, "whole number >= 0"),
                       ({"extend": 1, "method": "proda"}, "applies to HMC/NUTS")):
        with pytest.raises(ValueError, match=match):
            cal.calibrate(model, forcing[:1], obs[:1], progress=False, **bad)


# --------------------------------------------------------------------------
# 5. the sampler on a known Gaussian posterior
# --------------------------------------------------------------------------


class GaussianTarget(eqx.Module):
    """A correlated 5-d Gaussian with a per-site mean (data)."""

    precision: jax.Array

    def __call__(self, mean):
        def logdensity(z):
            r = z - mean
            return -0.5 * r @ self.precision @ r

        return logdensity


def _gaussian_problem(n_site=3, d=5):
    rng = np.random.default_rng(11)
    sd = np.array([0.5, 1.0, 2.0, 0.3, 1.5])[:d]
    corr = 0.6 ** np.abs(np.subtract.outer(np.arange(d), np.arange(d)))  # AR(1) correlations
    cov = corr * np.outer(sd, sd)
    means = rng.normal(0.0, 3.0, (n_site, d))
    return cov, means


class TrapTarget(eqx.Module):
    """N(0, 1) plus a narrow local mode at z = 12 whose log density is 40 lower
    (with a wall of near-zero density between them): a chain started in the
    trap cannot leave it within a short run."""

    def __call__(self, data):
        del data

        def logdensity(z):
            main = -0.5 * jnp.sum(z**2)
            trap = -40.0 - 0.5 * jnp.sum(((z - 12.0) / 0.1) ** 2)
            return jnp.logaddexp(main, trap)

        return logdensity


@pytest.mark.parametrize("rescue", [None, ()], ids=["rescue", "no-rescue"])
def test_rescue_restarts_a_chain_stuck_in_a_poor_mode(rescue):
    n_site, chains, d = 2, 3, 2
    z0 = np.zeros((n_site, chains, d))
    z0[0, 2] = 12.0  # site 0: chain 2 starts in the trap
    keys = jax.random.split(jax.random.PRNGKey(3), n_site * chains).reshape(n_site, chains, 2)
    z, stats = _run.sample_gradient(TrapTarget(), cal.NUTS(), jnp.zeros(n_site), jnp.asarray(z0), keys,
                                    warmup=200, samples=100, rescue=rescue)
    trapped = np.abs(z[..., 0] - 12.0).max(axis=2) < 1.0  # (site, chain): every draw in the trap
    if rescue is None:  # default rescue points (100 for a 200-iteration warmup)
        np.testing.assert_array_equal(stats["rescued"], [[0, 0, 1], [0, 0, 0]])
        assert not trapped.any()
        assert cal.rhat_and_ess(z)[0].max() < 1.1
    else:
        assert stats["rescued"].sum() == 0
        np.testing.assert_array_equal(trapped, [[False, False, True], [False, False, False]])
    with pytest.raises(ValueError, match="multiples of chunk"):
        _run.sample_gradient(TrapTarget(), cal.NUTS(), jnp.zeros(n_site), jnp.asarray(z0), keys,
                             warmup=200, samples=100, rescue=(75,))


def test_extension_continues_only_the_failing_sites_and_thins_their_chains():
    # site 0: chain 2 stays in the trap (no rescue), so R-hat fails however long it runs;
    # site 1: all chains in the main mode, R-hat passes after the first 100 draws
    n_site, chains, d, samples, rounds = 2, 3, 2, 100, 2
    z0 = np.zeros((n_site, chains, d))
    z0[0, 2] = 12.0
    keys = jax.random.split(jax.random.PRNGKey(3), n_site * chains).reshape(n_site, chains, 2)
    kw = dict(warmup=200, rescue=())
    data = jnp.zeros(n_site)
    grown = []
    z, stats = _run.sample_gradient(TrapTarget(), cal.NUTS(), data, jnp.asarray(z0), keys, samples=samples,
                                    extend=rounds, bar=lambda k, more=0: grown.append(more), **kw)
    plain, plain_stats = _run.sample_gradient(TrapTarget(), cal.NUTS(), data, jnp.asarray(z0), keys,
                                              samples=samples, **kw)
    assert z.shape == plain.shape == (n_site, chains, samples, d)
    np.testing.assert_array_equal(stats["thinning"], [rounds + 1, 1])
    np.testing.assert_array_equal(plain_stats["thinning"], [1, 1])
    assert sum(grown) == rounds * samples  # each round announced its iterations to the progress bar
    # the passing site is untouched; the failing one's draws are its longer chains, thinned
    np.testing.assert_array_equal(z[1], plain[1])
    np.testing.assert_array_equal(stats["n_steps"][1], plain_stats["n_steps"][1])
    assert (stats["n_steps"][0] > plain_stats["n_steps"][0]).all()
    longer, _ = _run.sample_gradient(TrapTarget(), cal.NUTS(), data, jnp.asarray(z0), keys,
                                     samples=(rounds + 1) * samples, **kw)
    np.testing.assert_allclose(z[0], longer[0, :, :: rounds + 1], rtol=0, atol=1e-8)
    np.testing.assert_allclose(z[0, :, :1], plain[0, :, :1], rtol=0, atol=1e-8)  # same start of the chains
    assert cal.rhat_and_ess(z[:1])[0].mean() > 1.05  # the trapped chain is still reported, not hidden
    # a threshold that every site fails extends both sites, together in one extension round
    z_all, stats_all = _run.sample_gradient(TrapTarget(), cal.NUTS(), data, jnp.asarray(z0), keys, samples=samples,
                                            extend=1, rhat_threshold=0.0, **kw)
    np.testing.assert_array_equal(stats_all["thinning"], [2, 2])
    np.testing.assert_allclose(z_all, longer[:, :, : 2 * samples : 2], rtol=0, atol=1e-8)
    # sites outside ``extendable`` (a batch's padding) are never extended
    z_pad, stats_pad = _run.sample_gradient(TrapTarget(), cal.NUTS(), data, jnp.asarray(z0), keys, samples=samples,
                                            extend=1, rhat_threshold=0.0, extendable=np.array([False, True]), **kw)
    np.testing.assert_array_equal(stats_pad["thinning"], [1, 2])
    np.testing.assert_array_equal(z_pad[0], plain[0])


def test_extension_subset_sizes():
    assert [_run._subset_size(k, 1) for k in (1, 2, 3, 4, 5, 17)] == [1, 2, 4, 4, 8, 32]
    assert [_run._subset_size(k, 2) for k in (1, 2, 3)] == [2, 2, 4]
    assert _run._subset_size(5, 3) == 9


def test_hmc_step_size_jitter_is_checked():
    assert cal.HMC().step_size_jitter == 0.5 and cal.HMC(step_size_jitter=0.0).step_size_jitter == 0.0
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="step_size_jitter"):
            cal.HMC(step_size_jitter=bad)


def test_batches_are_evened_out():
    even = _run.even_batch_size
    # the number of batches is kept; the sites are spread over them evenly
    assert even(481, 32) == 31 and -(-481 // even(481, 32)) == 16  # not 15 of 32 and one site padded to 32
    assert even(481, 27) == 27
    assert even(1000, 250) == 250 and even(300, 250) == 150 and even(5, 2) == 2 and even(5, 4) == 3
    assert even(3, 10) == 3 and even(7, 1) == 1
    # a multiple of the devices, never fewer sites per batch than asked for fit
    assert even(481, 32, 2) == 32 and even(300, 250, 4) == 152
    for n in range(1, 60):
        for b in range(1, 70):
            size = even(n, b)
            assert size <= max(1, min(b, n)) and -(-n // size) == -(-n // min(b, n))
            assert -(-n // size) * size - n < -(-n // size)  # fewer padding copies than batches


@pytest.mark.parametrize("sampler", [cal.HMC(), cal.NUTS()], ids=["HMC", "NUTS"])
def test_sampler_recovers_gaussian(sampler):
    cov, means = _gaussian_problem()
    n_site, d = means.shape
    chains, samples = 4, 1000
    target = GaussianTarget(jnp.asarray(np.linalg.inv(cov)))
    keys = jax.random.split(jax.random.PRNGKey(7), n_site * chains).reshape(n_site, chains, 2)
    z0 = jnp.asarray(means[:, None, :] + np.random.default_rng(8).uniform(-2, 2, (n_site, chains, d)))
    z, stats = _run.sample_gradient(target, sampler, jnp.asarray(means), z0, keys, warmup=500, samples=samples)
    assert z.shape == (n_site, chains, samples, d)
    assert np.isfinite(z).all()
    rhat, ess = cal.rhat_and_ess(z)
    assert rhat.max() < 1.05, rhat
    flat = z.reshape(n_site, chains * samples, d)
    mean, sdev = flat.mean(axis=1), flat.std(axis=1, ddof=1)
    mcse = sdev / np.sqrt(ess)
    assert np.all(np.abs(mean - means) < 4.0 * mcse), (mean - means) / mcse
    # variances: the MCSE of the mean of (z - mu)^2, from that quantity's own ESS
    sq = (z - means[:, None, None, :]) ** 2
    _, ess_sq = cal.rhat_and_ess(sq)
    var_true = np.diag(cov)
    var_hat = sq.reshape(n_site, -1, d).mean(axis=1)
    se_var = sq.reshape(n_site, -1, d).std(axis=1, ddof=1) / np.sqrt(ess_sq)
    assert np.all(np.abs(var_hat - var_true) < 4.0 * se_var), (var_hat - var_true) / se_var
    assert np.all(np.abs(var_hat / var_true - 1.0) < 0.25)
    # correlations as well (the diagonal mass matrix must not bias them)
    # (standard error of a correlation ~ (1 - rho^2) / sqrt(ESS) < 0.02 here)
    corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    for s in range(n_site):
        np.testing.assert_allclose(np.corrcoef(flat[s].T), corr, atol=0.08)
    assert 0.5 < stats["acceptance"].mean() <= 1.0
    assert stats["divergences"].sum() == 0


# --------------------------------------------------------------------------
# 6. batching does not change a profile's chains
# --------------------------------------------------------------------------


@pytest.mark.slow  # two compiled calibrations: ~1-2 minutes
def test_vmap_over_profiles_equals_separate_runs(clm5_data):
    model, forcing, obs, _ = clm5_data
    kw = dict(method="hmc", warmup=30, samples=20, chains=2, progress=False, predictive_draws=5, keep_draws=20)
    alone = cal.calibrate(model, forcing[:3], obs[:3], batch_size=1, **kw)
    # batches of 2: two profiles vmapped together, then the third with a padding site
    padded = cal.calibrate(model, forcing[:3], obs[:3], batch_size=2, **kw)
    np.testing.assert_allclose(padded.draws_u.values, alone.draws_u.values, rtol=0, atol=1e-8)
    np.testing.assert_allclose(padded.u_mean.values, alone.u_mean.values, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(padded.site.values, alone.site.values)


# --------------------------------------------------------------------------
# 7. resume after an interruption
# --------------------------------------------------------------------------


class _Interrupt(RuntimeError):
    pass


def _interrupted_run(monkeypatch, path, *args, fail_at=2, **kw):
    """Run calibrate with ``summarize`` raising on its ``fail_at``-th call."""
    calls = {"n": 0}
    real = _run.summarize

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise _Interrupt("simulated interruption")
        return real(*a, **k)

    monkeypatch.setattr(_run, "summarize", flaky)
    with pytest.raises(_Interrupt):
        cal.calibrate(*args, out=path, **kw)
    monkeypatch.setattr(_run, "summarize", real)


@pytest.mark.slow  # a few compiled calibrations: ~1-2 minutes
def test_resume_after_interruption(clm5_data, tmp_path, monkeypatch, capsys):
    model, forcing, obs, _ = clm5_data
    args = (model, forcing[:3], obs[:3])
    kw = dict(method="hmc", warmup=20, samples=10, chains=2, progress=False, predictive_draws=5, batch_size=1)
    path = tmp_path / "posterior.nc"
    _interrupted_run(monkeypatch, path, *args, **kw)
    parts = parts_dir(path)
    assert sorted(p.name for p in parts.glob("part_*.nc")) == ["part_000000.nc"]
    assert not path.exists()
    resumed = cal.calibrate(*args, out=path, **(kw | dict(progress=True)))
    assert path.exists() and not parts.exists()
    bar = capsys.readouterr().err  # the bar counts only the two batches left: 2 x (20 + 10) iterations
    assert "60/60" in bar and "resumed: 1 of 3 batches already done" in bar
    straight = cal.calibrate(*args, out=tmp_path / "straight.nc", **kw)
    from_file = cal.read_posterior(path)
    for name in ("u_mean", "rhat", "nse", "ess", "soc_fit"):
        np.testing.assert_array_equal(resumed[name].values, straight[name].values)
        np.testing.assert_array_equal(from_file[name].values, straight[name].values)

    # the parts of an interrupted run belong to its inputs: another seed is refused ...
    other = tmp_path / "other.nc"
    _interrupted_run(monkeypatch, other, *args, seed=0, **kw)
    with pytest.raises(PartsMismatchError, match="resume=False"):
        cal.calibrate(*args, out=other, seed=1, **kw)
    # ... unless the run starts over
    fresh = cal.calibrate(*args, out=other, seed=1, resume=False, **kw)
    assert np.isfinite(fresh.u_mean.values).all() and not parts_dir(other).exists()
    assert not np.array_equal(fresh.u_mean.values, straight.u_mean.values)


@pytest.mark.slow  # a local Dask cluster: two worker processes each import JAX and compile: ~1-2 minutes
def test_dask_workers_give_the_same_posterior(clm5_data, tmp_path, capsys):
    model, forcing, obs, _ = clm5_data
    args = (model, forcing[:3], obs[:3])
    kw = dict(method="hmc", warmup=20, samples=10, chains=2, predictive_draws=5, batch_size=1, keep_draws=10)
    serial = cal.calibrate(*args, out=tmp_path / "serial.nc", progress=False, **kw)
    capsys.readouterr()
    parallel = cal.calibrate(*args, out=tmp_path / "parallel.nc", workers=2, progress=True, **kw)
    assert "90/90" in capsys.readouterr().err  # the workers' progress reaches this process's bar
    assert not parts_dir(tmp_path / "parallel.nc").exists()
    for name in ("draws_u", "u_mean", "rhat", "nse", "soc_fit"):
        np.testing.assert_array_equal(parallel[name].values, serial[name].values)
    np.testing.assert_array_equal(parallel.site.values, serial.site.values)


def test_worker_options_are_checked(clm5_data, tmp_path):
    model, forcing, obs, _ = clm5_data
    with pytest.raises(ValueError, match="whole number"):
        cal.calibrate(model, forcing[:2], obs[:2], workers=0, out=tmp_path / "x.nc", progress=False)
    with pytest.raises(ValueError, match="not both"):
        cal.calibrate(model, forcing[:2], obs[:2], workers=2, mesh=soiljax.site_mesh(), progress=False)


# --------------------------------------------------------------------------
# 8. PRODA's sampler
# --------------------------------------------------------------------------


@pytest.mark.slow  # compiles PRODA's sampler for its annealing schedule: ~30 s
def test_proda_method_runs(clm5_data):
    model, forcing, obs, _ = clm5_data
    # a short run: 600 adaptive steps, fewer than one 1000-step chunk of _run._sample_proda
    sampler = cal.ProdaMetropolis(num_random_walk=300, num_adaptive=600, adapt_start=200, adapt_every=100)
    ds = cal.calibrate(model, forcing[:2], obs[:2], method=sampler, chains=3, samples=50, progress=False,
                       keep_draws=50, predictive_draws=10)
    draws = ds.draws_u.values
    assert draws.shape[:2] == (2, 3) and draws.shape[-1] == model.n_params
    assert np.all((draws > 0) & (draws < 1))
    acc = ds.acceptance_rate.values
    assert np.all((acc >= 0) & (acc <= 1))
    _no_nan(ds, ["u_mean", "u_sd", "rhat", "nse", "acceptance_rate", "theta_mean"])
    assert ds.attrs["method"] == "proda"


# --------------------------------------------------------------------------
# 9. NumPyro: the same posterior, sampled independently
# --------------------------------------------------------------------------


def _numpyro_potential(model_fn):
    from numpyro.infer.util import potential_energy

    return jax.jit(jax.value_and_grad(lambda z: potential_energy(model_fn, (), {}, {"u": z})))


def test_numpyro_potential_equals_log_density(evaluated):
    """NumPyro's potential energy at z (its own sigmoid transform and log-Jacobian) is minus the sum of
    the profiles' log_density at z, and its gradient minus the sum of theirs."""
    e = evaluated["CLM5"]
    model = e["model"]
    m = cal.numpyro_model(model, cal.LogNormal(), e["forcing"], e["obs"])
    pe, g = _numpyro_potential(m)(jnp.asarray(e["z"][:, 0]))
    np.testing.assert_allclose(-float(pe), e["values"]["LogNormal"][:, 0].sum(), rtol=1e-12)
    np.testing.assert_allclose(-np.asarray(g), e["grads"]["LogNormal"][:, 0], rtol=1e-9,
                               atol=1e-9 * np.abs(g).max())
    # in u, NumPyro's log joint is the log likelihood alone (uniform prior, no Jacobian)
    from numpyro.infer.util import log_density as np_log_density

    u, log_jac = model.space.u_from_z(jnp.asarray(e["z"][:, 0]))
    lj = jax.jit(lambda uu: np_log_density(m, (), {}, {"u": uu})[0])(u)
    np.testing.assert_allclose(float(lj), -float(pe) - float(jnp.sum(log_jac)), rtol=1e-10)


def test_numpyro_invalid_site_gives_infinite_potential(evaluated):
    e = evaluated["COMPAS"]
    m = cal.numpyro_model(e["model"], cal.LogNormal(), e["forcing"], e["obs"])
    pe, g = _numpyro_potential(m)(jnp.asarray(e["z"][:, 0]))  # the boreal site is invalid
    assert float(pe) == np.inf
    assert np.isfinite(np.asarray(g)).all()


@pytest.mark.slow
def test_numpyro_agrees_with_calibrate():
    import time

    # NumPyro samples all sites as one joint model (21 parameters per site), so its cost grows with
    # the number of sites (5 sites: ~5 minutes of the CI machine); 3 sites give 63 (site, param)
    # pairs to compare, of which at most 3 may differ by 4 standard errors or more
    n = 3
    forcing, _ = soiljax.synthetic_sites(n, seed=1, zones=["temperate"])
    model = soiljax.CLM5()
    obs, truth = soiljax.synthetic_observations(model, _truth_u(model), forcing, seed=1)
    assert truth.valid.values.all()
    lik = cal.LogNormal()
    warmup, samples, chains = 300, 400, 3
    t0 = time.perf_counter()
    u_np = cal.sample_numpyro(model, lik, forcing, obs, num_warmup=warmup, num_samples=samples, num_chains=chains,
                              seed=0)
    t_np = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = cal.calibrate(model, forcing, obs, method="nuts", likelihood=lik, warmup=warmup, samples=samples,
                       chains=chains, batch_size=n, keep_draws=samples, progress=False)
    t_cal = time.perf_counter() - t0
    u_cal = ds.draws_u.values
    assert u_np.shape == u_cal.shape == (n, chains, samples, model.n_params)

    def mean_and_se(u):
        _, ess = cal.rhat_and_ess(u)
        flat = u.reshape(n, -1, u.shape[-1])
        return flat.mean(axis=1), flat.std(axis=1, ddof=1) / np.sqrt(np.maximum(ess, 1.0))

    ma, sa = mean_and_se(u_np)
    mb, sb = mean_and_se(u_cal)
    z = np.abs(ma - mb) / np.sqrt(sa**2 + sb**2)
    frac = np.mean(z < 4.0)
    print(f"\nNumPyro {t_np:.0f} s, calibrate(nuts) {t_cal:.0f} s; |dmean|/se < 4 for {frac:.1%} of "
          f"{z.size} (site, param) pairs; median {np.median(z):.2f}, max {z.max():.2f}")
    assert frac >= 0.95


# --------------------------------------------------------------------------
# recovery statistics
# --------------------------------------------------------------------------


def test_gelman_rubin_matches_its_definition_and_flags_disagreeing_chains():
    rng = np.random.default_rng(3)
    u = rng.normal(size=(2, 3, 400, 2))
    u[1, 2, :, 1] += 1.0  # one chain of site 1 sits apart in parameter 1
    r = cal.gelman_rubin(u)
    # the textbook formula, one (site, param) at a time
    for s in range(2):
        for p in range(2):
            x = u[s, :, :, p]
            n = x.shape[1]
            w = np.mean([np.var(c, ddof=1) for c in x])
            b = n * np.var(x.mean(axis=1), ddof=1)
            assert r[s, p] == pytest.approx(np.sqrt(((n - 1) / n * w + b / n) / w), rel=1e-12)
    assert np.all(r[0] < 1.02) and r[1, 0] < 1.02 and r[1, 1] > 1.05
    # whole chains and no ranks: more lenient than the rank-normalised split R-hat on a drifting chain
    drift = rng.normal(size=(1, 3, 400, 1)) + np.linspace(0, 3.0, 400)[None, None, :, None]
    assert cal.gelman_rubin(drift)[0, 0] < 1.05 < cal.rhat_and_ess(drift)[0][0, 0]
    stuck = u.copy()
    stuck[0, 1, :, 0] = 0.3
    assert np.isinf(cal.gelman_rubin(stuck)[0, 0])
    with pytest.raises(ValueError, match="2 chains"):
        cal.gelman_rubin(u[:, :1])


def test_recovery_statistics_and_stock_information_limit():
    from scipy.stats import norm

    from soiljax.calibration._recovery import PRIOR_SD_U, expected_within, recovery_statistics

    z95 = norm.ppf(0.95)
    # site 0: stock 10 +- 1 (sd), site 1: 10 +- 0 (a point posterior), site 2: 20 +- 4
    mean = np.array([10.0, 10.0, 20.0])
    sd = np.array([1.0, 0.0, 4.0])
    u_mean = np.full((3, 2), 0.5)
    u_sd = np.array([[0.01, 0.9 * PRIOR_SD_U], [0.01, 0.9 * PRIOR_SD_U], [0.01, 0.9 * PRIOR_SD_U]])
    post = xr.Dataset({
        "stock_1m_mean": ("site", mean), "stock_1m_q05": ("site", mean - z95 * sd),
        "stock_1m_q95": ("site", mean + z95 * sd),
        "u_sd": (("site", "param"), u_sd), "u_q05": (("site", "param"), u_mean - 0.1),
        "u_q95": (("site", "param"), u_mean + 0.1),
        "rhat_mean": ("site", [1.0, 1.1, 1.0]), "rhat_max": ("site", [1.0, 1.2, 1.04]),
        "rhat_gr_mean": ("site", [1.0, 1.04, 1.0]),
        "nse": ("site", [0.95, 0.5, 0.92]), "nse_at_mean": ("site", [0.9, 0.4, 0.95]),
        "accepted": ("site", [True, False, True]), "ess_min": ("site", [100.0, 10.0, 50.0]),
        "model_evals": ("site", [1e5, 1e5, 1e5]), "divergences": ("site", [0, 3, 0]),
    })
    p = expected_within(post, 0.1)
    np.testing.assert_allclose(p, [norm.cdf(1) - norm.cdf(-1), 1.0, norm.cdf(0.5) - norm.cdf(-0.5)], rtol=1e-9)
    u_true = np.array([[0.55, 0.5], [0.7, 0.5], [0.5, 0.5]])  # site 1's identified parameter is missed
    stats = recovery_statistics(post, u_true, stock_true=np.array([10.5, 12.0, 20.0]),
                                nse_truth=np.array([0.97, 0.3, 0.8]))
    assert stats["rhat_mean_lt_1.05"] == pytest.approx(2 / 3)
    assert stats["rhat_max_lt_1.05"] == pytest.approx(2 / 3)
    assert stats["rhat_gr_mean_lt_1.05"] == pytest.approx(1.0)
    assert stats["identifiable_fraction"] == pytest.approx(0.5)
    assert stats["coverage90_identifiable"] == pytest.approx(2 / 3)
    assert stats["identifiable_pairs"] == 3
    # site 1 fails PRODA's filter: its narrow, missed interval does not count among the accepted
    assert stats["coverage90_identifiable_accepted"] == 1.0
    assert stats["identifiable_pairs_accepted"] == 2
    assert stats["stock_within_10pct"] == pytest.approx(2 / 3)
    assert stats["stock_within_10pct_expected"] == pytest.approx(p.mean())
    assert stats["nse_truth_gt_0.9"] == pytest.approx(1 / 3)
    assert stats["nse_gt_0.9_where_truth_gt_0.9"] == 1.0
