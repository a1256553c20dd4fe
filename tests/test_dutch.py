"""The Dutch Soil Map profiles (dutchsoils package) and the approximate Netherlands forcing."""

import importlib.util

import numpy as np
import pytest
from scipy.interpolate import PchipInterpolator

import soiljax as sj
from soiljax import dutch
from soiljax.synthetic import ALT_FULL_COLUMN

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("dutchsoils") is None, reason='needs dutchsoils (pip install "soiljax[dutch]")'
)


@pytest.fixture(scope="module")
def profiles():
    return dutch.dutch_profiles()


@pytest.fixture(scope="module")
def nl(profiles):
    return dutch.netherlands_forcing(profiles[1])


def test_profiles_are_plausible(profiles):
    obs, meta = profiles
    n = obs.n_sites
    assert n > 250 and meta.sizes["site"] == n
    assert len(np.unique(meta.site.values)) == n
    assert meta.attrs["n_profiles_total"] == n + meta.attrs["n_profiles_dropped"]
    m = np.asarray(obs.mask)
    usable = np.asarray(obs.n_usable)
    assert usable.min() >= 2 and np.array_equal(usable, meta.n_horizons.values)
    soc = np.asarray(obs.soc)[m]
    assert soc.min() > 100.0 and soc.max() < 300_000.0  # gC m-3: realistic, peat up to ~200,000
    depth = np.asarray(obs.depth)
    assert np.nanmin(depth) > 0 and np.nanmax(depth) <= 1.2
    assert np.all(meta.max_depth.values <= 1.2) and np.all(np.nanmax(depth, axis=1) < meta.max_depth.values)
    sd = np.asarray(obs.soc_sd)[m]
    assert np.all(np.isfinite(sd)) and np.all(sd >= 0)
    assert np.all((meta.sand.values >= 0) & (meta.sand.values <= 100))


def test_soc_conversion_of_one_horizon():
    # DESIGN.md: 5 % organic matter at 1.4 g cm-3
    np.testing.assert_allclose(dutch.om_to_soc(5.0, 1.4), 5.0 / 1.724 * 10 * 1.4 * 1000)


def test_min_layers_drops_profiles():
    obs3, meta3 = dutch.dutch_profiles(min_layers=4)
    assert np.asarray(obs3.n_usable).min() >= 4
    assert meta3.attrs["n_profiles_dropped"] > 10


@pytest.mark.parametrize(
    "code, group",
    [
        ("hVb", "peat"), ("AVk", "peat"), ("kVc", "peat"), ("vWp", "peaty"), ("zWz", "peaty"),
        ("cHn21g", "podzol"), ("Y21", "podzol"), ("zgY30", "podzol"), ("zEZ23", "sand"), ("pZg21", "sand"),
        ("Sn13A", "sand"), ("Zn30A", "sand"), ("BLd5", "loam"), ("Ln5", "loam"), ("Mn25A", "clay"),
        ("KRn1", "clay"), ("Rn47Cp", "clay"), ("MOo02", "clay"), ("KX", "clay"), ("x", "other"),
    ],
)  # fmt: skip
def test_soil_group_rule(code, group):
    assert dutch.soil_group(code) == group


def test_soil_groups_agree_with_the_dutch_names(profiles):
    obs, meta = profiles
    groups = meta.soil_group.values
    names = np.char.lower(meta.soil_name.values.astype(str))
    assert set(groups) <= set(dutch.SOIL_GROUPS)
    assert "veen" in " ".join(names[groups == "peat"]) and all("veen" in s for s in names[groups == "peat"])
    assert all("moerige" in s for s in names[groups == "peaty"])
    assert all("podzol" in s for s in names[groups == "podzol"])
    assert not any("podzol" in s or "moerige" in s for s in names[groups == "clay"])
    counts = {g: int((groups == g).sum()) for g in dutch.SOIL_GROUPS}
    assert counts["peat"] >= 20 and counts["peaty"] >= 10 and counts["clay"] >= 50 and counts["sand"] >= 50
    assert counts["podzol"] >= 20 and counts["loam"] >= 5 and counts["other"] == 0


def test_peat_holds_much_more_carbon_than_sand(profiles):
    obs, meta = profiles
    soc = np.asarray(obs.soc)
    profile_mean = np.nanmean(np.where(np.asarray(obs.mask), soc, np.nan), axis=1)
    g = meta.soil_group.values
    peat = np.median(profile_mean[g == "peat"])
    sand = np.median(profile_mean[np.isin(g, ["sand", "podzol"])])
    assert peat > 40_000 and peat > 4 * sand
    # and the sandy subsoils are the poorest: deep sand layers below 10,000 gC m-3
    deep = np.asarray(obs.depth) > 0.7
    assert np.nanmedian(np.where(deep, soc, np.nan)[np.isin(g, ["sand", "podzol"])]) < 10_000
    sand_pct = meta.sand.values
    assert np.median(sand_pct[g == "peat"]) < 30 < np.median(sand_pct[g == "podzol"])


def test_netherlands_forcing_is_valid_and_as_documented(profiles, nl):
    obs, meta = profiles
    forcing, info = nl
    n = obs.n_sites
    assert forcing.batch_shape == (n,)
    sj.Forcing.from_variables(forcing.variables())  # re-validates every site
    t = np.asarray(forcing.tsoi) - 273.15
    assert 10.5 < t[:, :, 0].mean() < 11.5 and t.min() > 0.5  # never freezes
    assert 3.0 < t[:, 0, 0].mean() < 5.5 and 16.0 < t[:, 6, 0].mean() < 19.0  # January / July at the surface
    np.testing.assert_array_equal(np.asarray(forcing.altmax), ALT_FULL_COLUMN)
    np.testing.assert_array_equal(np.asarray(forcing.altmax_lastyear), ALT_FULL_COLUMN)
    np.testing.assert_array_equal(np.asarray(forcing.nbedrock), 20)
    np.testing.assert_allclose(np.asarray(forcing.annual_input).sum(-1), 600.0)
    assert np.all(np.asarray(forcing.annual_input)[:, 0] < 0.05 * 600)  # little CWD
    o = np.asarray(forcing.o_scalar).mean(axis=1)  # (site, layer)
    g = meta.soil_group.values
    assert np.asarray(forcing.o_scalar).min() >= 0.2 and np.allclose(o[g == "peat", -1], 0.2, atol=0.01)
    assert o[g == "peat", 8].mean() < o[g == "podzol", 8].mean()  # ~0.5 m: waterlogged peat
    w = np.asarray(forcing.w_scalar)
    assert w[:, 6, 0].mean() < w[:, 0, 0].mean()  # drier summer surface
    top = np.asarray(sj.ZSOI) < 0.3  # peat often lies on sand deeper down
    sand = np.asarray(forcing.cellsand)[:, top]
    assert sand[g == "peat"].mean() < 30 < sand[g == "podzol"].mean()
    assert list(info.site.values) == list(meta.site.values)


def test_clm5_defaults_give_valid_steady_states(profiles, nl):
    obs, meta = profiles
    forcing, _ = nl
    model = sj.CLM5()
    steady = sj.batched_steady_state(model, model.default_u(), forcing)
    valid = np.asarray(steady.valid)
    soc = np.asarray(steady.soc)
    assert valid.mean() > 0.9 and np.all(np.isfinite(soc))
    # how far the default parameters are from the observations (for calibration), printed with -s
    z = np.asarray(sj.ZSOI)
    d, o = np.asarray(obs.depth), np.asarray(obs.soc)
    rows = np.arange(obs.n_sites)
    for target in (0.1, 0.5):
        j = np.nanargmin(np.abs(d - target), axis=1)
        near = (np.abs(d[rows, j] - target) < 0.1) & valid
        modelled = np.array([PchipInterpolator(z, soc[i])(d[i, j[i]]) for i in rows[near]])
        print(
            f"\nCLM5 defaults at ~{target} m ({near.sum()} profiles): median modelled {np.median(modelled):.0f}, "
            f"observed {np.median(o[rows, j][near]):.0f} gC m-3"
        )
        assert np.all(modelled > 0)


def test_missing_dutchsoils_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "dutchsoils" else real(name, *a))
    with pytest.raises(ImportError, match=r'pip install "soiljax\[dutch\]"'):
        dutch.dutch_profiles()


def test_profiles_round_trip_through_an_observation_file(profiles, tmp_path):
    obs, meta = profiles
    sj.write_observations(obs, tmp_path / "nl.nc", sites=meta)
    back, sites = sj.read_observations(tmp_path / "nl.nc")
    np.testing.assert_array_equal(np.asarray(back.soc), np.asarray(obs.soc))
    np.testing.assert_array_equal(np.asarray(back.soc_sd), np.asarray(obs.soc_sd))
    assert list(sites.soil_group.values) == list(meta.soil_group.values)
    assert list(sites.site.values) == list(meta.site.values)
