"""The observation operator and the score (soiljax._observe): known answers, NaN padding,
many sites on the site-batch engine, and agreement with the formulas they replaced."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.interpolate import PchipInterpolator

import soiljax
from soiljax import calibration as cal
from soiljax._grid import ZSOI
from soiljax._observe import TINY, nse, nse_sites, observe, observe_sites, safe_depth, score_sites
from soiljax._pchip import pchip_interpolate

Z = np.asarray(ZSOI)


def _profiles(n=9, n_obs=6, seed=0):
    """``n`` smooth positive SOC profiles (site, layer) and ragged NaN-padded observations of them."""
    rng = np.random.default_rng(seed)
    soc = 2e4 * np.exp(-Z[None, :] / rng.uniform(0.2, 1.5, (n, 1))) * (1.0 + 0.1 * rng.standard_normal((n, Z.size)))
    count = rng.integers(1, n_obs + 1, n)
    depth = np.sort(rng.uniform(0.01, 2.0, (n, n_obs)), axis=1)
    mask = np.arange(n_obs)[None, :] < count[:, None]
    depth = np.where(mask, depth, np.nan)
    obs = np.where(mask, 1.5e4 * np.exp(-depth) * rng.lognormal(0.0, 0.2, (n, n_obs)), np.nan)
    return soc, depth, obs, mask


# --------------------------------------------------------------------------
# the operator
# --------------------------------------------------------------------------


def test_observe_is_scipys_pchip_and_nan_where_padded():
    soc, depth, _, mask = _profiles()
    for i in range(soc.shape[0]):
        got = np.asarray(observe(jnp.asarray(soc[i]), jnp.asarray(depth[i])))
        m = mask[i]
        expect = PchipInterpolator(Z, soc[i], extrapolate=True)(depth[i][m])
        np.testing.assert_allclose(got[m], expect, rtol=1e-12)
        assert np.isnan(got[~m]).all()
        # an explicit mask: padded entries may then hold any depth, finite or not
        other = np.where(m, depth[i], 0.3)
        np.testing.assert_array_equal(np.asarray(observe(soc[i], other, m)), got)


def test_observe_fill_none_keeps_the_first_nodes_value():
    soc, depth, _, mask = _profiles()
    got = np.asarray(observe(soc[0], depth[0], mask[0], fill=None))
    first = float(pchip_interpolate(jnp.asarray(Z), jnp.asarray(soc[0]), jnp.asarray(Z[0])))
    np.testing.assert_array_equal(got[~mask[0]], first)
    np.testing.assert_array_equal(got[mask[0]], np.asarray(observe(soc[0], depth[0]))[mask[0]])
    np.testing.assert_array_equal(np.asarray(safe_depth(depth[0], mask[0]))[~mask[0]], Z[0])


def test_observe_and_nse_gradients_are_finite_with_padding():
    soc, depth, obs, mask = _profiles()
    i = int(np.argmax(~mask.all(axis=1)))  # a padded profile
    assert not mask[i].all()
    g = jax.grad(lambda s: nse(observe(s, depth[i], mask[i]), obs[i], mask[i]))(jnp.asarray(soc[i]))
    assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).max() > 0


# --------------------------------------------------------------------------
# the score
# --------------------------------------------------------------------------


def test_nse_known_answers():
    soc = jnp.array([4.0, 2.0, 3.0, 1.0])
    mask = jnp.ones(4, bool)
    assert float(nse(soc, soc, mask)) == 1.0
    assert float(nse(jnp.full(4, 2.5), soc, mask)) == 0.0  # the mean's skill
    pred = jnp.array([3.0, 2.0, 3.0, 2.0])  # squared errors 1 + 0 + 0 + 1 over a variance sum of 5
    assert float(nse(pred, soc, mask)) == pytest.approx(1.0 - 2.0 / 5.0, rel=1e-15)


def test_nse_ignores_padding_in_value_and_gradient():
    soc = jnp.array([4.0, 2.0, 3.0, 1.0, jnp.nan, jnp.nan])
    pred = jnp.array([3.0, 2.0, 3.0, 2.0, jnp.nan, jnp.inf])
    mask = jnp.array([True, True, True, True, False, False])
    assert float(nse(pred, soc, mask)) == pytest.approx(0.6, rel=1e-15)
    g = np.asarray(jax.grad(nse)(pred, soc, mask))
    assert np.isfinite(g).all() and (g[4:] == 0.0).all()


def test_nse_degenerate_profiles():
    mask = jnp.array([True, True, False])
    flat = jnp.array([5.0, 5.0, jnp.nan])
    assert float(nse(flat, flat, mask)) == 1.0  # zero variance, matched exactly
    off = jnp.array([5.0, 6.0, 0.0])
    assert float(nse(off, flat, mask)) == 1.0 - 1.0 / TINY  # zero variance, missed: hugely negative
    assert float(nse(off, flat, jnp.zeros(3, bool))) == 1.0  # no usable layer


# --------------------------------------------------------------------------
# many sites, on the site-batch engine
# --------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [None, 2, 4])
def test_many_sites_equal_one_profile_at_a_time(batch_size):
    soc, depth, obs, mask = _profiles(n=9)
    one = np.stack([np.asarray(observe(soc[i], depth[i])) for i in range(9)])
    score = np.array([float(nse(one[i], obs[i], mask[i])) for i in range(9)])
    pred = observe_sites(soc, depth, batch_size=batch_size)
    np.testing.assert_allclose(pred, one, rtol=1e-14)  # op by op or compiled: round-off apart
    np.testing.assert_array_equal(observe_sites(soc, depth, mask, batch_size=batch_size), pred)
    pred_s, s = score_sites(soc, depth, obs, mask, batch_size=batch_size)
    np.testing.assert_array_equal(pred_s, pred)
    np.testing.assert_allclose(s, score, rtol=1e-13)
    np.testing.assert_array_equal(nse_sites(pred, obs, mask, batch_size=batch_size), s)
    # batching and padding change nothing, to the last bit
    np.testing.assert_array_equal(pred, observe_sites(soc, depth, batch_size=9))
    np.testing.assert_array_equal(s, score_sites(soc, depth, obs, mask, batch_size=9)[1])


# --------------------------------------------------------------------------
# agreement with the copies this module replaced
# --------------------------------------------------------------------------


def _old_nse(pred, soc, mask):
    """The NSE of calibration/_likelihood.py before this module."""
    n = jnp.maximum(jnp.sum(mask), 1)
    ymean = jnp.sum(jnp.where(mask, soc, 0.0)) / n
    num = jnp.sum(jnp.where(mask, (soc - pred) ** 2, 0.0))
    den = jnp.sum(jnp.where(mask, (soc - ymean) ** 2, 0.0))
    return 1.0 - num / jnp.maximum(den, 1e-30)


def _old_observe(soc, depth, mask):
    """pchip at ``where(mask, depth, ZSOI[0])``, as the likelihoods, summaries, recovery and evaluation did."""
    return pchip_interpolate(jnp.asarray(Z), soc, jnp.where(mask, depth, Z[0]))


def _same(a, b):
    """Equal to round-off: XLA may compile a fused program of the same formulas a last bit apart."""
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a, b, rtol=1e-14, atol=0)


def test_agrees_with_the_replaced_copies():
    soc, depth, obs, mask = _profiles(n=12, seed=3)
    soc_j, depth_j, obs_j, mask_j = (jnp.asarray(a) for a in (soc, depth, obs, mask))

    # learning/_evaluate.py: jitted observe + NSE with both arrays zeroed where padded
    @jax.jit
    def old_evaluate(soc, depth, obs, mask):
        pred = jax.vmap(_old_observe)(soc, depth, mask)
        score = jax.vmap(_old_nse)(jnp.where(mask, pred, 0.0), jnp.where(mask, obs, 0.0), mask)
        return jnp.where(mask, pred, jnp.nan), score

    pred_old, score_old = (np.asarray(a) for a in old_evaluate(soc_j, depth_j, obs_j, mask_j))
    pred, score = score_sites(soc, depth, obs, mask)
    _same(pred, pred_old)
    _same(score, score_old)

    # calibration/_recovery.py truth_nse: NSE of the prediction zeroed where padded (the observations NaN there)
    old = np.asarray(jax.jit(jax.vmap(_old_nse))(jnp.where(mask_j, jnp.nan_to_num(pred_old), 0.0), obs_j, mask_j))
    _same(score, old)

    # synthetic.py _observe_batch: NaN depths evaluated at 0.5 m, then NaN
    finite = np.isfinite(depth)
    vals = np.asarray(jax.jit(jax.vmap(lambda s, d: pchip_interpolate(jnp.asarray(Z), s, d)))(
        soc_j, jnp.asarray(np.where(finite, depth, 0.5))))
    _same(observe_sites(soc, depth), np.where(finite, vals, np.nan))

    # calibration/_likelihood.py predict: the first node's value where padded (fill=None), the same program
    fill_none = jax.jit(jax.vmap(lambda s, d, m: observe(s, d, m, fill=None)))(soc_j, depth_j, mask_j)
    old = jax.jit(jax.vmap(_old_observe))(soc_j, depth_j, mask_j)
    np.testing.assert_array_equal(np.asarray(fill_none), np.asarray(old))

    # ProdaCOMPAS: 5 (1 - NSE) of the prediction zeroed where padded
    lik = cal.ProdaCOMPAS()
    for i in range(4):
        p = _old_observe(soc_j[i], depth_j[i], mask_j[i])
        expect = -5.0 * (1.0 - _old_nse(jnp.where(mask_j[i], p, 0.0), obs_j[i], mask_j[i]))
        assert float(lik(p, obs_j[i], obs_j[i], depth_j[i], mask_j[i])) == float(expect)


def test_public_names_still_importable():
    assert cal.nse is nse
    assert soiljax.calibration.predict is not None


def test_summary_predictive_batches_agree():
    """The posterior summaries' predictive steady states do not depend on how the sites are batched."""
    from soiljax.calibration._summary import _predictive
    from soiljax.synthetic import synthetic_sites

    model = soiljax.CLM5()
    forcing, _ = synthetic_sites(5, seed=1)
    rng = np.random.default_rng(0)
    u = np.clip(np.asarray(model.default_u()) + rng.uniform(-0.1, 0.1, (5, 3, model.n_params)), 0.01, 0.99)
    soc_all, valid_all = _predictive(model, u, forcing, batch_size=5)
    soc_b, valid_b = _predictive(model, u, forcing, batch_size=2)
    np.testing.assert_array_equal(valid_b, valid_all)
    np.testing.assert_allclose(soc_b, soc_all, rtol=1e-13, atol=0)
