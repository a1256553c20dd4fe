"""The shared climate -> forcing formulas (soiljax/_climate.py) used by synthetic, world and dutch."""

import numpy as np

from soiljax import _climate as C
from soiljax import dutch, synthetic, world
from soiljax._grid import N_LAYERS, ZISOI, ZSOI


def test_the_generators_share_one_active_layer_rule():
    assert synthetic.active_layer_depth is C.active_layer_depth
    assert synthetic.ALT_FULL_COLUMN == C.ALT_FULL_COLUMN and synthetic.T_FREEZE == C.T_FREEZE
    assert synthetic.N_MONTHS == C.N_MONTHS == world.N_MONTHS == 12
    assert dutch.netherlands_forcing.__module__ == "soiljax.dutch"


def test_annual_wave_is_the_damped_lagged_cosine():
    amp, d, peak = np.array([3.0, 10.0]), np.array([1.5, 2.5]), np.array([6.2, 0.4])
    z = np.asarray(ZSOI)[None, None, :]
    m = np.arange(12.0)[None, :, None]
    s = lambda x: x[:, None, None]  # noqa: E731
    direct = s(amp) * np.exp(-z / s(d)) * np.cos(2 * np.pi * (m - s(peak)) / 12 - z / s(d))
    np.testing.assert_allclose(C.annual_wave(amp, d, peak), direct, rtol=0, atol=1e-12)
    # scalars broadcast like per-site values
    np.testing.assert_allclose(C.annual_wave(7.0, d, 6.0)[1], C.annual_wave(np.full(2, 7.0), d, np.full(2, 6.0))[1])


def test_soil_temperature_of_one_harmonic_is_the_annual_wave():
    amp, d, peak = np.array([5.0, 12.0]), np.array([2.0, 1.2]), np.array([6.5, 1.0])
    ground = 4.0 + amp[:, None] * np.cos(2 * np.pi * (np.arange(12.0)[None, :] - peak[:, None]) / 12)
    tsoi = C.soil_temperature(ground, d, 0.03)
    expected = C.T_FREEZE + 4.0 + 0.03 * np.asarray(ZSOI) + C.annual_wave(amp, d, peak)
    np.testing.assert_allclose(tsoi, expected, rtol=0, atol=1e-10)


def test_water_scalar_bounds_and_wettest_month():
    rng = np.random.default_rng(0)
    w = rng.uniform(-0.2, 1.2, (4, 12, N_LAYERS))
    w[0] = -0.1  # a dry site
    tsoi = np.full(w.shape, 280.0)
    tsoi[1] = 260.0  # a frozen site
    out = C.water_scalar(w, tsoi, subsoil_floor=np.zeros(4), liquid=0.2)
    assert out.shape == w.shape and out.min() >= 0.0 and out.max() <= 1.0
    assert np.all(out.max(axis=1) >= C.W_WETTEST_MIN)  # every layer wet in some month
    assert np.all(out[1] >= 0.05) and np.all(out[1] <= 0.2 * 1.2 + 1e-12)  # frozen: liquid share, at least 0.05


def test_oxygen_and_nitrogen_scalars_stay_in_their_ranges():
    w = np.full((3, 12, N_LAYERS), 1.0)
    o = C.oxygen_scalar(C.wet_soil_anoxia(w, wet_terrain=np.array([0.0, 0.5, 2.0])), 3)
    assert o.shape == (3, 12, N_LAYERS) and o.flags.c_contiguous
    assert o.min() >= C.O_SCALAR_MIN and o.max() <= 1.0
    assert np.all(np.diff(o, axis=-1) <= 0)  # wet soils lose oxygen with depth
    fpi = C.nitrogen_limitation(0.3, 0.7 * 0.85, 0.6, 0.1, C.growing_season(6.0))
    assert fpi.min() >= C.FPI_MIN and fpi.max() <= 1.0
    assert np.all(np.diff(fpi[0, 0]) >= 0)  # limitation eases with depth in winter


def test_active_layer_is_the_running_and_annual_maximum():
    tsoi = C.T_FREEZE - 5.0 + C.annual_wave(np.array([20.0]), np.array([2.0]), np.array([6.0]))
    altmax, last = C.active_layer(tsoi)
    alt = C.active_layer_depth(tsoi)
    np.testing.assert_array_equal(altmax, np.maximum.accumulate(alt, axis=1))
    np.testing.assert_array_equal(last, np.repeat(alt.max(1, keepdims=True), 12, axis=1))
    assert 0 < last[0, 0] < 8.0


def test_inputs_bedrock_and_sand():
    weights = C.seasonal_weights(np.array([0.0, 0.6, 3.0]), np.array([6.0, 8.0, 0.0]))
    np.testing.assert_allclose(weights.sum(1), 1.0)
    assert weights.min() > 0
    total = np.array([100.0, 600.0, 50.0])
    inputs = C.carbon_inputs(total, weights, cwd=np.full(3, 0.1), metabolic=np.full(3, 0.4),
                             cellulose=np.full(3, 0.4), lignin=np.full(3, 0.2))
    assert list(inputs) == ["CWD_INPUT", "LITR1_INPUT", "LITR2_INPUT", "LITR3_INPUT"]
    np.testing.assert_allclose(sum(v.sum(1) for v in inputs.values()), total)
    levels = C.bedrock_level(np.array([0.0, 0.5, 1.0, 50.0]))
    assert levels.min() >= 5 and levels.max() == N_LAYERS - 1
    depth = C.bedrock_depth_of_level(levels)
    np.testing.assert_array_equal(depth, np.asarray(ZISOI)[levels - 1])
    np.testing.assert_array_equal(C.monthly(levels), np.repeat(levels[:, None], 12, axis=1))
    sand = C.at_layer_nodes(np.array([[10.0, 20.0, 30.0]]), np.array([0.15, 0.65, 1.5]))
    assert sand[0, 0] == 10.0 and sand[0, -1] == 30.0 and np.all(np.diff(sand[0]) >= 0)
    assert C.layer_sand(np.array([-3.0, 50.0, 120.0])).tolist() == [0.0, 50.0, 100.0]
