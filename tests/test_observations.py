"""Observed SOC profiles: validation, mask under jit/vmap, observation files, synthetic observations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from scipy.interpolate import PchipInterpolator

import soiljax as sj
from soiljax.io import ObservationFileError, observations_dataset, read_observations, write_observations

NAN = np.nan


def _ragged():
    depth = np.array(
        [
            [0.05, 0.2, 0.6, 1.0],
            [0.1, 0.3, 0.7, NAN],  # padded
            [0.05, 0.15, 0.4, 0.9],  # a zero layer: dropped
        ]
    )
    soc = np.array(
        [
            [20000.0, 9000.0, 3000.0, 1500.0],
            [30000.0, 12000.0, 2500.0, NAN],
            [15000.0, 0.0, 4000.0, 2000.0],
        ]
    )
    return depth, soc


# ---------------------------------------------------------------------------
# the pytree
# ---------------------------------------------------------------------------


def test_from_arrays_mask_and_indexing():
    depth, soc = _ragged()
    obs = sj.Observations.from_arrays(depth, soc, site_id=["a", "b", "c"])
    assert obs.batch_shape == (3,) and obs.n_sites == 3 and obs.n_obs == 4
    np.testing.assert_array_equal(np.asarray(obs.n_usable), [4, 3, 3])
    np.testing.assert_array_equal(np.asarray(obs.mask[2]), [True, False, True, True])
    assert np.all(np.isnan(np.asarray(obs.soc_sd)))  # not given: all NaN
    one = obs.site(1)
    assert one.batch_shape == () and one.n_sites == 1
    np.testing.assert_array_equal(np.asarray(one.depth), np.asarray(obs.depth[1]))
    sub = obs[np.array([0, 2])]
    assert sub.batch_shape == (2,)
    np.testing.assert_array_equal(np.asarray(sub.soc), np.asarray(obs.soc)[[0, 2]])


def test_mask_under_jit_and_vmap():
    depth, soc = _ragged()
    obs = sj.Observations.from_arrays(depth, soc)
    eager = np.asarray(obs.mask)
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda o: o.mask)(obs)), eager)
    np.testing.assert_array_equal(np.asarray(jax.vmap(lambda o: o.mask)(obs)), eager)
    np.testing.assert_array_equal(np.asarray(jax.vmap(lambda o: o.n_usable)(obs)), eager.sum(1))

    # a masked misfit: finite, with a finite gradient, through jit and vmap
    def misfit(scale, o):
        r = jnp.where(o.mask, (scale * 10000.0 - o.soc) / 1000.0, 0.0)
        return jnp.sum(r**2)

    value = jax.jit(jax.vmap(misfit, in_axes=(None, 0)))(1.0, obs)
    grad = jax.grad(lambda s: jax.vmap(misfit, in_axes=(None, 0))(s, obs).sum())(1.0)
    loop = [misfit(1.0, obs.site(i)) for i in range(3)]
    np.testing.assert_allclose(np.asarray(value), np.asarray(loop), rtol=1e-14)
    assert np.all(np.isfinite(np.asarray(value))) and np.isfinite(grad)


def test_constructor_accepts_tracers():
    depth, soc = _ragged()
    n = jax.jit(lambda d, s: sj.Observations(d, s).n_usable)(depth, soc)
    np.testing.assert_array_equal(np.asarray(n), [4, 3, 3])


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------

GOOD_D = [0.05, 0.3, 0.8]
GOOD_S = [20000.0, 8000.0, 2000.0]


@pytest.mark.parametrize(
    "depth, soc, soc_sd, kwargs, words",
    [
        ([-0.05, 0.3, 0.8], GOOD_S, None, {}, ["depth", "-0.05", "positive downwards"]),
        ([0.05, 0.8, 0.3], GOOD_S, None, {}, ["not strictly increasing", "sort"]),
        ([0.05, 0.3, 0.3], GOOD_S, None, {}, ["not strictly increasing", "merge"]),
        (GOOD_D, [20000.0, NAN, NAN], None, {}, ["1 usable layer", "min_layers=2", "drop the site"]),
        (GOOD_D, [20000.0, 8000.0, 0.0], None, {"min_layers": 3}, ["2 usable layer", "min_layers=3"]),
        ([5.0, 30.0, 80.0], GOOD_S, None, {}, ["looks like cm", "convert to m"]),
        (GOOD_D, [4.5, 2.0, 0.5], None, {}, ["percent", "kgC m-3", "1.724", "bulk density", "gC m-3"]),
        (GOOD_D, [20000.0, -5.0, 2000.0], None, {}, ["soc of layer 2", ">= 0 gC m-3"]),
        (GOOD_D, [20000.0, np.inf, 2000.0], None, {}, ["soc of layer 2", "finite"]),
        ([0.05, NAN, 0.8], GOOD_S, None, {}, ["layer 2", "no depth"]),
        (GOOD_D, [2e7, 8000.0, 2000.0], None, {}, ["more carbon than", "units"]),
        (GOOD_D, GOOD_S, [100.0, -1.0, 10.0], {}, ["soc_sd of layer 2", ">= 0"]),
        (GOOD_D, GOOD_S, [100.0, NAN, 10.0], {}, ["soc_sd is NaN at usable layer 2", "NaN for all"]),
    ],
)
def test_validation_errors(depth, soc, soc_sd, kwargs, words):
    d = np.array([GOOD_D, depth])
    s = np.array([GOOD_S, soc])
    sd = None if soc_sd is None else np.array([[1.0, 1.0, 1.0], soc_sd])
    with pytest.raises(sj.ObservationError) as info:
        sj.Observations.from_arrays(d, s, sd, site_id=["ok", "P17"], **kwargs)
    msg = str(info.value)
    assert msg.startswith("site P17"), msg
    for w in words:
        assert w in msg, (w, msg)


def test_error_names_index_without_labels_and_counts_sites():
    d = np.array([GOOD_D, GOOD_D, GOOD_D])
    s = np.array([GOOD_S, [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    with pytest.raises(sj.ObservationError, match=r"^site 1 \(and 1 more site\(s\)\)"):
        sj.Observations.from_arrays(d, s)
    with pytest.raises(sj.ObservationError, match=r"^site \(0, 1\)"):  # (1, 2, obs): a 2-D batch
        sj.Observations.from_arrays(d[None, :2], s[None, :2])
    with pytest.raises(sj.ObservationError, match="^the site"):
        sj.Observations.from_arrays(np.array(GOOD_D), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(sj.ObservationError, match="same shape"):
        sj.Observations.from_arrays(np.zeros((2, 3)), np.zeros((2, 4)))


def test_unit_checks_can_be_switched_off_and_all_nan_sd_is_allowed():
    d = np.array([[0.05, 0.3, 0.8], [0.05, 0.3, 0.8]])
    s = np.array([[50.0, 20.0, 10.0], GOOD_S])
    obs = sj.Observations.from_arrays(d, s, check_units=False)
    assert obs.n_sites == 2
    sd = np.array([[NAN, NAN, NAN], [10.0, 10.0, 10.0]])  # site 0: unknown sd
    sj.Observations.from_arrays(d, np.array([GOOD_S, GOOD_S]), sd)


# ---------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------


def test_write_read_round_trip(tmp_path):
    depth, soc = _ragged()
    sd = np.where(np.isfinite(soc), 0.2 * soc, NAN)
    obs = sj.Observations.from_arrays(depth, soc, sd)
    path = write_observations(
        obs, tmp_path / "obs.nc", site_id=["x1", "x2", "x3"], lat=[52.0, 52.1, 51.5], lon=[5.1, 5.2, 4.0],
        attrs={"source": "test"},
    )
    back, sites = sj.read_observations(path)
    for name in ("depth", "soc", "soc_sd"):
        np.testing.assert_array_equal(np.asarray(getattr(back, name)), np.asarray(getattr(obs, name)))
    assert list(sites.site.values) == ["x1", "x2", "x3"]
    np.testing.assert_allclose(sites.lat.values, [52.0, 52.1, 51.5])
    assert sites.attrs["source"] == "test"
    assert "soc" not in sites.variables and "depth" not in sites.variables
    ds = xr.open_dataset(path)
    assert ds["depth"].attrs["units"] == "m" and ds["soc"].attrs["units"] == "gC m-3"
    assert ds["soc"].dims == ("site", "obs")
    ds.close()


def test_round_trip_without_sd_and_with_site_metadata(tmp_path):
    depth, soc = _ragged()
    obs = sj.Observations.from_arrays(depth, soc)
    meta = xr.Dataset({"group": ("site", np.array(["peat", "sand", "clay"]))}, coords={"site": [10, 20, 30]})
    ds = observations_dataset(obs, sites=meta)
    assert "soc_sd" not in ds  # nothing known: not written
    write_observations(obs, tmp_path / "o.nc", sites=meta)
    back, sites = read_observations(tmp_path / "o.nc")
    assert np.all(np.isnan(np.asarray(back.soc_sd)))
    assert list(sites.group.values) == ["peat", "sand", "clay"] and list(sites.site.values) == [10, 20, 30]


def _file(tmp_path, depth_units="m", soc_units="gC m-3", depth=None, soc=None):
    d, s = _ragged()
    d = d if depth is None else depth
    s = s if soc is None else soc
    ds = xr.Dataset(
        {
            "depth": (("site", "obs"), d, {"units": depth_units}),
            "soc": (("site", "obs"), s, {"units": soc_units}),
        },
        coords={"site": ["a", "b", "c"]},
    )
    path = tmp_path / "in.nc"
    ds.to_netcdf(path)
    return path


def test_reading_converts_cm_and_kg(tmp_path):
    d, s = _ragged()
    obs, _ = read_observations(_file(tmp_path, depth_units="cm", depth=d * 100.0))
    np.testing.assert_allclose(np.asarray(obs.depth), d, rtol=1e-15)
    obs, _ = read_observations(_file(tmp_path, soc_units="kg C m-3", soc=s / 1000.0))
    np.testing.assert_allclose(np.asarray(obs.soc), s, rtol=1e-15)
    for unit in ("g C m-3", "gC/m3", "gC m^-3"):
        obs, _ = read_observations(_file(tmp_path, soc_units=unit))
        np.testing.assert_array_equal(np.asarray(obs.soc), s)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"soc_units": "%"}, ["'soc'", "1.724", "density", "gC m-3"]),
        ({"soc_units": "percent"}, ["'soc'", "1.724"]),
        ({"soc_units": "g/kg"}, ["'soc'", "bulk density"]),
        ({"soc_units": "kgC m-2"}, ["'soc'", "stock per area", "thickness"]),
        ({"soc_units": "bananas"}, ["'soc'", "cannot interpret", "gC m-3"]),
        ({"depth_units": "kg"}, ["'depth'", "'m'"]),
    ],
)
def test_reading_rejects_units(tmp_path, kwargs, words):
    path = _file(tmp_path, **kwargs)
    with pytest.raises(ObservationFileError) as info:
        read_observations(path)
    msg = str(info.value)
    assert str(path) in msg
    for w in words:
        assert w in msg, (w, msg)
    assert isinstance(info.value, sj.ObservationError) and isinstance(info.value, sj.io.FileFormatError)


# every units attribute the observation reader accepts, with its true factor written out by hand:
# (variable, units, factor from that unit to OBSERVATION_UNITS: m for depth, gC m-3 for soc and soc_sd)
ACCEPTED_OBS_UNITS = [
    ("depth", "m", 1.0),
    ("depth", "metres", 1.0),
    ("depth", "cm", 0.01),
    ("depth", "centimeters", 0.01),
    ("depth", "mm", 0.001),
    ("depth", "dm", 0.1),
    ("depth", "ft", 0.3048),
    ("depth", "inch", 0.0254),
    ("soc", "gC m-3", 1.0),
    ("soc", "g C m-3", 1.0),
    ("soc", "gC/m3", 1.0),
    ("soc", "gC m^-3", 1.0),
    ("soc", "gC/m**3", 1.0),
    ("soc", "g m-3", 1.0),  # the variable says it is carbon (CF style)
    ("soc", "kgC m-3", 1e3),
    ("soc", "kg C m-3", 1e3),
    ("soc", "kgC/m3", 1e3),
    ("soc", "kg m-3", 1e3),
    ("soc", "g cm-3", 1e6),  # grams per cubic centimetre, not gC m-3
    ("soc", "gC cm-3", 1e6),
    ("soc", "mg cm-3", 1e3),
    ("soc", "mgC cm-3", 1e3),
    ("soc", "MgC m-3", 1e6),  # megagrams: case matters
    ("soc", "mgC m-3", 1e-3),  # milligrams
    ("soc", "kg dm-3", 1e6),
    ("soc", "g L-1", 1e3),
    ("soc", "tC m-3", 1e6),
    ("soc_sd", "gC m-3", 1.0),
    ("soc_sd", "kgC m-3", 1e3),
    ("soc_sd", "g cm-3", 1e6),
]


@pytest.mark.parametrize("name, unit, factor", ACCEPTED_OBS_UNITS)
def test_units_are_read_with_their_true_factor(tmp_path, name, unit, factor):
    d, s = _ragged()
    sd = np.where(np.isfinite(s), 0.1 * s, NAN)
    true = {"depth": d, "soc": s, "soc_sd": sd}
    units = {"depth": "m", "soc": "gC m-3", "soc_sd": "gC m-3"}
    units[name] = unit
    data = {k: (("site", "obs"), v / factor if k == name else v, {"units": units[k]}) for k, v in true.items()}
    path = tmp_path / "units.nc"
    xr.Dataset(data, coords={"site": ["a", "b", "c"]}).to_netcdf(path)
    obs, _ = read_observations(path)
    np.testing.assert_allclose(np.asarray(getattr(obs, name)), true[name], rtol=1e-13, atol=0)


# every units attribute refused, with words its message must hold
REFUSED_OBS_UNITS = [
    ("soc", "%", ["content per soil mass", "1.724"]),
    ("soc", "percent", ["content per soil mass"]),
    ("soc", "g/kg", ["content per soil mass", "bulk density"]),
    ("soc", "gC kg-1", ["content per soil mass"]),
    ("soc", "g kg-1", ["content per soil mass"]),
    ("soc", "mg g-1", ["content per soil mass"]),
    ("soc", "g/100g", ["content per soil mass"]),
    ("soc", "permille", ["content per soil mass"]),
    ("soc", "1", ["content per soil mass"]),
    ("soc", "kgC m-2", ["stock per area", "thickness"]),
    ("soc", "gC m-2", ["stock per area"]),
    ("soc", "tC/ha", ["stock per area"]),
    ("soc", "MgC ha-1", ["stock per area"]),
    ("soc", "furlongs", ["not a stock density", "gC m-3"]),
    ("soc", "gC m-3 yr-1", ["not a stock density"]),
    ("soc", "gc m-3", ["cannot interpret"]),  # case matters
    ("soc", "bananas", ["cannot interpret"]),
    ("soc_sd", "%", ["content per soil mass"]),
    ("depth", "kg", ["not a length", "'m'"]),
    ("depth", "degC", ["not a length"]),
    ("depth", "1", ["not a length"]),
    ("depth", "bananas", ["cannot interpret"]),
]


@pytest.mark.parametrize("name, unit, words", REFUSED_OBS_UNITS)
def test_units_that_are_refused(tmp_path, name, unit, words):
    d, s = _ragged()
    data = {"depth": d, "soc": s, "soc_sd": np.where(np.isfinite(s), 0.1 * s, NAN)}
    ds = xr.Dataset({k: (("site", "obs"), v, {"units": unit if k == name else "m" if k == "depth" else "gC m-3"})
                     for k, v in data.items()}, coords={"site": ["a", "b", "c"]})
    path = tmp_path / "units.nc"
    ds.to_netcdf(path)
    with pytest.raises(ObservationFileError) as info:
        read_observations(path)
    msg = str(info.value)
    assert "units.nc" in msg and f"'{name}'" in msg and repr(unit) in msg and "\n" not in msg, msg
    for w in words:
        assert w in msg, (w, msg)


def test_a_profile_in_cm_among_profiles_in_m_is_refused(tmp_path):
    d, s = _ragged()
    d[1, :3] = [5.0, 15.0, 18.0]  # site b: centimetres, read as metres below the model's 8.6 m grid
    path = _file(tmp_path, depth=d)
    with pytest.raises(ObservationFileError) as info:
        read_observations(path)
    msg = str(info.value)
    assert "in.nc" in msg and "site b" in msg and "18" in msg and "8.6" in msg and "cm" in msg, msg
    assert "check_plausible=False" in msg and "more site" not in msg
    obs, _ = read_observations(path, check_plausible=False)
    np.testing.assert_array_equal(np.asarray(obs.depth)[1, :3], [5.0, 15.0, 18.0])


def test_duplicate_and_missing_sites_are_refused(tmp_path):
    d, s = _ragged()
    ds = xr.Dataset({"depth": (("site", "obs"), d), "soc": (("site", "obs"), s)}, coords={"site": ["P1", "P2", "P1"]})
    ds.to_netcdf(tmp_path / "dup.nc")
    with pytest.raises(ObservationFileError) as info:
        read_observations(tmp_path / "dup.nc")
    msg = str(info.value)
    assert "dup.nc" in msg and "site label P1 appears 2 times" in msg and "np.str_" not in msg, msg
    ds.isel(site=slice(0, 0)).to_netcdf(tmp_path / "none.nc", engine=sj.io.netcdf_engine())
    with pytest.raises(ObservationFileError, match=r"none\.nc.*0 sites"):
        read_observations(tmp_path / "none.nc")


def test_unlabelled_file_has_positional_labels(tmp_path):
    """An observation file without site labels pairs with the forcing in order: its labels are 0..n-1."""
    d, s = _ragged()
    xr.Dataset({"depth": (("site", "obs"), d), "soc": (("site", "obs"), s)}).to_netcdf(tmp_path / "nolabels.nc")
    obs, sites = read_observations(tmp_path / "nolabels.nc")
    assert obs.batch_shape == (3,)
    np.testing.assert_array_equal(sites["site"].values, [0, 1, 2])
    from soiljax._sites import is_positional

    assert is_positional(sites["site"].values)


def test_reading_reports_bad_profiles_missing_variables_and_files(tmp_path):
    d, s = _ragged()
    d[1, :3] = d[1, :3][::-1]
    path = _file(tmp_path, depth=d)
    with pytest.raises(ObservationFileError, match=r"in\.nc.*site b.*not strictly increasing"):
        read_observations(path)
    xr.Dataset({"soc": (("site", "obs"), s)}).to_netcdf(tmp_path / "nodepth.nc")
    with pytest.raises(ObservationFileError, match="'depth' is missing"):
        read_observations(tmp_path / "nodepth.nc")
    with pytest.raises(ObservationFileError, match="does not exist"):
        read_observations(tmp_path / "nope.nc")
    xr.Dataset({"depth": (("site", "layer"), d), "soc": (("site", "layer"), s)}).to_netcdf(tmp_path / "dims.nc")
    with pytest.raises(ObservationFileError, match="'obs'"):
        read_observations(tmp_path / "dims.nc")


def test_shared_depths_and_single_site_files(tmp_path):
    depths = np.array([0.05, 0.3, 0.8])
    soc = np.array([GOOD_S, [10000.0, 5000.0, NAN]])
    xr.Dataset({"depth": ("obs", depths, {"units": "m"}), "soc": (("site", "obs"), soc)}).to_netcdf(tmp_path / "a.nc")
    obs, sites = read_observations(tmp_path / "a.nc")
    assert obs.batch_shape == (2,)
    np.testing.assert_array_equal(np.asarray(obs.depth), np.broadcast_to(depths, (2, 3)))
    xr.Dataset({"depth": ("obs", depths), "soc": ("obs", np.array(GOOD_S))}).to_netcdf(tmp_path / "b.nc")
    obs, sites = read_observations(tmp_path / "b.nc")
    assert obs.batch_shape == (1,) and sites.sizes["site"] == 1


# ---------------------------------------------------------------------------
# synthetic observations
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def truth():
    forcing, info = sj.synthetic_sites(60, seed=4)
    model = sj.CLM5()
    steady = sj.batched_steady_state(model, model.default_u(), forcing)
    return forcing, info, model, steady


def test_noise_free_observations_are_the_pchip_of_the_model(truth):
    forcing, info, model, steady = truth
    obs, tr = sj.synthetic_observations(model, model.default_u(), forcing, noise=0.0, seed=1, site_id=info.site.values)
    soc = np.asarray(steady.soc)
    valid = np.asarray(steady.valid)
    assert np.array_equal(tr.valid.values, valid) and valid.all()
    for i in range(obs.n_sites):
        m = np.asarray(obs.mask[i])
        d = np.asarray(obs.depth[i])[m]
        expect = PchipInterpolator(np.asarray(sj.ZSOI), soc[i], extrapolate=True)(d)
        # the JAX pchip of soiljax._pchip: the same interpolant, to round-off
        np.testing.assert_allclose(np.asarray(obs.soc[i])[m], expect, rtol=1e-12)
        np.testing.assert_allclose(tr.soc_true.values[i][m], expect, rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(obs.soc_sd)[np.asarray(obs.mask)], 0.0)
    assert list(tr.param.values) == list(model.param_names)
    np.testing.assert_array_equal(tr.u_true.values, np.broadcast_to(model.default_u(), (60, model.n_params)))
    assert list(tr.site.values) == list(info.site.values)


def test_depths_sorted_within_bedrock_and_deep_enough(truth):
    forcing, info, model, steady = truth
    obs, tr = sj.synthetic_observations(model, model.default_u(), forcing, n_obs=(3, 7), max_depth=1.5, seed=2)
    d = np.asarray(obs.depth)
    n = np.asarray(obs.n_usable)
    assert d.shape == (60, 7) and n.min() >= 3 and n.max() <= 7 and len(set(n)) > 2
    bottom = np.minimum(1.5, sj.ZISOI[np.asarray(forcing.nbedrock)[:, 0] - 1])
    np.testing.assert_allclose(tr.bedrock_depth.values, sj.ZISOI[np.asarray(forcing.nbedrock)[:, 0] - 1])
    assert (info.zone.values == "shallow_bedrock").sum() >= 10 and (bottom < 1.5).any()
    for i in range(60):
        di = d[i][np.isfinite(d[i])]
        assert len(di) == n[i]  # padding only after the usable layers
        assert np.all(np.isnan(d[i][n[i]:]))
        assert np.all(np.diff(di) > 0)
        assert di[0] >= min(0.02, bottom[i] / 2) and di[-1] <= bottom[i]
        if bottom[i] > 0.5:
            assert di[-1] > 0.5
    # a valid Observations: passes the validation (PRODA's two layers, gC m-3)
    sj.Observations.from_arrays(d, np.asarray(obs.soc), np.asarray(obs.soc_sd), check_units=False)


def test_deterministic_by_seed(truth):
    forcing, info, model, steady = truth
    a, ta = sj.synthetic_observations(model, model.default_u(), forcing, seed=7)
    b, tb = sj.synthetic_observations(model, model.default_u(), forcing, seed=7)
    c, _ = sj.synthetic_observations(model, model.default_u(), forcing, seed=8)
    for name in ("depth", "soc", "soc_sd"):
        np.testing.assert_array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)))
    assert ta.identical(tb)
    assert not np.array_equal(np.asarray(a.depth), np.asarray(c.depth), equal_nan=True)


def test_noise_statistics(truth):
    forcing, info, model, steady = truth
    noise = 0.1
    obs, tr = sj.synthetic_observations(model, model.default_u(), forcing, noise=noise, n_obs=(8, 12), seed=3)
    m = np.asarray(obs.mask)
    log_ratio = np.log(np.asarray(obs.soc)[m] / tr.soc_true.values[m])
    n = log_ratio.size
    assert n >= 400
    # standard errors of the mean and of the sd of n normal draws; 5 of them cannot flake at a fixed seed
    assert abs(log_ratio.mean()) < 5 * noise / np.sqrt(n)
    assert abs(log_ratio.std(ddof=1) - noise) < 5 * noise / np.sqrt(2 * (n - 1))
    np.testing.assert_allclose(np.asarray(obs.soc_sd)[m], noise * tr.soc_true.values[m], rtol=1e-15)
    assert tr.attrs["noise"] == noise and tr.attrs["seed"] == 3


def test_invalid_truth_gives_nan_sites():
    forcing, _ = sj.synthetic_sites(10, seed=0)
    # no decomposition at all in one layer (W_SCALAR = 0 all year) makes CLM5's system singular
    w = np.asarray(forcing.w_scalar).copy()
    w[[2, 7], :, 10] = 0.0
    forcing = sj.Forcing.from_variables({**forcing.variables(), "W_SCALAR": w})
    model = sj.CLM5()
    steady = sj.batched_steady_state(model, model.default_u(), forcing)
    bad = ~np.asarray(steady.valid)
    assert bad[[2, 7]].all() and bad.sum() == 2
    obs, tr = sj.synthetic_observations(model, model.default_u(), forcing, seed=0)
    np.testing.assert_array_equal(tr.valid.values, ~bad)
    assert np.all(np.isnan(np.asarray(obs.soc)[bad])) and np.all(np.isnan(np.asarray(obs.depth)[bad]))
    assert np.all(np.asarray(obs.n_usable)[bad] == 0) and np.all(np.asarray(obs.n_usable)[~bad] >= 4)
    good = sj.Observations.from_arrays(np.asarray(obs.depth)[~bad], np.asarray(obs.soc)[~bad], check_units=False)
    assert good.n_sites == 8


def test_argument_checks(truth):
    forcing, info, model, steady = truth
    u = model.default_u()
    with pytest.raises(ValueError, match="n_obs"):
        sj.synthetic_observations(model, u, forcing, n_obs=(5, 3))
    with pytest.raises(ValueError, match="noise"):
        sj.synthetic_observations(model, u, forcing, noise=-0.1)
