"""The synthetic site generator: determinism, zones, physical consistency, valid steady states."""

import jax
import numpy as np
import pytest

import soiljax as sj
from soiljax.synthetic import ALT_FULL_COLUMN, ZONES, active_layer_depth, synthetic_sites


@pytest.fixture(scope="module")
def sites():
    return synthetic_sites(200, seed=11)


def _leaves(forcing):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(forcing)]


def test_deterministic_by_seed():
    f1, i1 = synthetic_sites(30, seed=5)
    f2, i2 = synthetic_sites(30, seed=5)
    f3, _ = synthetic_sites(30, seed=6)
    assert all(np.array_equal(a, b) for a, b in zip(_leaves(f1), _leaves(f2)))
    assert i1.identical(i2)
    assert not np.array_equal(np.asarray(f1.tsoi), np.asarray(f3.tsoi))


def test_zone_counts_and_metadata(sites):
    forcing, info = sites
    assert forcing.batch_shape == (200,)
    assert set(info.zone.values) == set(ZONES)
    counts = {z: int((info.zone.values == z).sum()) for z in ZONES}
    assert counts == {z: 40 for z in ZONES}
    assert set(info.data_vars) >= {"lat", "lon", "zone", "base_climate"}
    lat, zone = info.lat.values, info.zone.values
    assert np.all(np.abs(lat[zone == "tropical"]) < 15)
    assert np.all(lat[zone == "boreal"] > 55)
    assert np.all((np.abs(lat[zone == "arid"]) > 15) & (np.abs(lat[zone == "arid"]) < 35))
    # five sites: one per zone
    _, small = synthetic_sites(5, seed=0)
    assert sorted(small.zone.values) == sorted(ZONES)
    _, only = synthetic_sites(7, seed=0, zones=["boreal"])
    assert set(only.zone.values) == {"boreal"}
    with pytest.raises(ValueError, match="unknown zone.*'polar'"):
        synthetic_sites(3, zones=["polar"])


def test_physical_consistency(sites):
    forcing, info = sites
    zone = info.zone.values
    tsoi = np.asarray(forcing.tsoi)
    # annual wave damped with depth: amplitude at 8 m much smaller than at the surface
    amp = tsoi.max(axis=1) - tsoi.min(axis=1)
    assert np.all(amp[:, -1] < 0.2 * amp[:, 0] + 0.5)
    # and lagged: the phase of the annual harmonic falls behind by z / d (d = 1.5-4 m)
    big = amp[:, 0] > 10
    harmonic = (tsoi[big] * np.exp(-2j * np.pi * np.arange(12) / 12)[None, :, None]).sum(axis=1)
    j = 13
    lag = np.mod(np.angle(harmonic[:, 0]) - np.angle(harmonic[:, j]), 2 * np.pi)
    z = sj.ZSOI[j]
    assert big.sum() > 50
    assert np.all((lag > z / 4.0 - 0.15) & (lag < z / 1.5 + 0.15))
    assert np.all(np.asarray(forcing.o_scalar) >= 0.2)
    alt_ly = np.asarray(forcing.altmax_lastyear)
    boreal = zone == "boreal"
    assert np.all((alt_ly[boreal] > 0) & (alt_ly[boreal] <= 2.0))  # cryoturbation branch
    warm = np.isin(zone, ["tropical", "temperate", "arid"])
    np.testing.assert_array_equal(alt_ly[warm], ALT_FULL_COLUMN)
    nb = np.asarray(forcing.nbedrock)[:, 0]
    assert np.all(nb[zone == "shallow_bedrock"] < 20)
    assert np.all(nb[zone != "shallow_bedrock"] == 20)
    total = np.asarray(forcing.annual_input).sum(-1)
    assert np.all((total >= 50) & (total <= 1500))
    assert np.median(total[zone == "tropical"]) > np.median(total[zone == "temperate"]) > np.median(total[zone == "arid"])
    # every layer has a month with some water (else CLM5 would be singular)
    assert np.all(np.asarray(forcing.w_scalar).max(axis=1) > 0)


def test_active_layer_depth_rule():
    t = np.full((1, 20), 260.0)
    assert active_layer_depth(t)[0] == 0.0
    t[0, :5] = 275.0  # layers 1-5 thawed, 6 frozen: 0 degC between nodes 5 and 6
    t[0, 5] = 271.15
    z = sj.ZSOI
    expected = z[4] + (z[5] - z[4]) * (275.0 - 273.15) / (275.0 - 271.15)
    np.testing.assert_allclose(active_layer_depth(t)[0], expected)
    t[0, 10:12] = 274.0  # a deeper thawed band: the deepest one counts
    assert z[11] < active_layer_depth(t)[0] < z[12]
    assert active_layer_depth(np.full((1, 20), 280.0))[0] == ALT_FULL_COLUMN


def test_validates_as_forcing(sites):
    forcing, _ = sites
    rebuilt = sj.Forcing.from_variables({k: np.asarray(v) for k, v in forcing.variables().items()})
    assert rebuilt.batch_shape == (200,)


def test_mostly_valid_steady_states(sites):
    forcing, info = sites
    zone = info.zone.values
    fractions = {}
    for model in (sj.CLM5(), sj.COMPAS()):
        ss = sj.batched_steady_state(model, np.asarray(model.default_u()), forcing, batch_size=10)
        valid = np.asarray(ss.valid)
        fractions[type(model).__name__] = {z: valid[zone == z].mean() for z in ZONES}
        assert valid.mean() > 0.6, fractions
        assert np.all(np.isfinite(np.asarray(ss.soc)))
    assert min(fractions["CLM5"].values()) > 0.95, fractions
    for z in ("tropical", "arid"):
        assert fractions["COMPAS"][z] > 0.9, fractions


def test_many_sites_in_one_call():
    # generation is vectorised over sites (about 1.5 s for these 20,000 on the CI machine); its speed
    # is measured by benchmarks/steady_state.py ("forcing generated/s"), not asserted here
    forcing, info = synthetic_sites(20_000, seed=1)
    assert forcing.batch_shape == (20_000,) and info.sizes["site"] == 20_000
    for leaf in jax.tree_util.tree_leaves(forcing):
        assert np.isfinite(np.asarray(leaf)).all()
    assert set(info["zone"].values) == set(ZONES)
