"""netCDF forcing, parameter and result files: round trips and every bad-file case."""

import jax
import numpy as np
import pytest
import xarray as xr

import soiljax as sj
from soiljax import io
from soiljax.synthetic import synthetic_sites

N = 10
BATCH = 10  # one compiled shape shared by the tests of this package


@pytest.fixture(scope="module")
def sites():
    return synthetic_sites(N, seed=4)


@pytest.fixture()
def forcing_file(sites, tmp_path):
    forcing, info = sites
    return io.write_forcing(forcing, tmp_path / "forcing.nc", sites=info)


def _same_forcing(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _rewrite(path, edit):
    ds = xr.open_dataset(path).load()
    ds = edit(ds)
    out = path.with_name("edited.nc")
    ds.to_netcdf(out)
    return out


# --- forcing ----------------------------------------------------------------


def test_forcing_round_trip(sites, forcing_file):
    forcing, info = sites
    back, meta = io.read_forcing(forcing_file)
    _same_forcing(forcing, back)
    np.testing.assert_array_equal(meta["site"].values, info["site"].values)
    np.testing.assert_allclose(meta["lat"].values, info["lat"].values)
    np.testing.assert_array_equal(meta["zone"].values, info["zone"].values)
    ds = xr.open_dataset(forcing_file)
    for name, unit in sj.FORCING_UNITS.items():
        assert ds[name].attrs["units"] == unit
        assert ds[name].dims == ("site",) + sj.FORCING_VARIABLES[name]
    assert ds.sizes == {"site": N, "month": 12, "layer": 20}


def test_forcing_other_dim_order_is_transposed(sites, forcing_file):
    path = _rewrite(forcing_file, lambda ds: ds.transpose("layer", "month", "site"))
    back, _ = io.read_forcing(path)
    _same_forcing(sites[0], back)


def test_forcing_without_site_dim_is_one_site(sites, forcing_file):
    path = _rewrite(forcing_file, lambda ds: ds.isel(site=3).drop_vars(["site", "lat", "lon", "zone", "base_climate"]))
    back, meta = io.read_forcing(path)
    assert back.batch_shape == (1,)
    np.testing.assert_array_equal(np.asarray(back.tsoi[0]), np.asarray(sites[0].tsoi[3]))


def test_units_spelled_differently_are_accepted(sites, forcing_file):
    def edit(ds):
        ds["TSOI"].attrs["units"] = "kelvin"
        ds["CWD_INPUT"].attrs["units"] = "g C/m^2/month"
        ds["LITR1_INPUT"].attrs["units"] = "gC m-2 mon-1"
        ds["LITR2_INPUT"].attrs["units"] = "gC per m2 per month"
        ds["W_SCALAR"].attrs["units"] = "unitless"
        del ds["ALTMAX"].attrs["units"]  # no units attribute: taken as metres
        return ds

    # every spelling above means the file's own unit: the values must come back unchanged (factor 1)
    back, _ = io.read_forcing(_rewrite(forcing_file, edit))
    _same_forcing(sites[0], back)
    # a spelling of another mass or area is not read with factor 1: it is converted with its factor
    back, _ = io.read_forcing(_rewrite(forcing_file, lambda ds: ds.assign(
        CWD_INPUT=(ds.CWD_INPUT / 1000).assign_attrs(units="kgC m-2 month-1"))))
    np.testing.assert_allclose(np.asarray(back.cwd_input), np.asarray(sites[0].cwd_input), rtol=1e-14)


@pytest.mark.parametrize(
    ("edit", "patterns"),
    [
        (lambda ds: ds.drop_vars("W_SCALAR"), ["edited.nc", "'W_SCALAR' is missing"]),
        (lambda ds: ds.rename({"TSOI": "tsoi"}), ["'TSOI' is missing", "case sensitive"]),
        (
            lambda ds: ds.assign(TSOI=(ds.TSOI - 273.15).assign_attrs(units="degC")),
            ["'TSOI'", "Celsius", "add 273.15"],
        ),
        (
            lambda ds: ds.assign(CWD_INPUT=(ds.CWD_INPUT / (86400 * 30)).assign_attrs(units="gC m-2 s-1")),
            ["'CWD_INPUT'", "per second", "86400"],
        ),
        (
            lambda ds: ds.assign(LITR2_INPUT=(ds.LITR2_INPUT * 12).assign_attrs(units="gC m-2 yr-1")),
            ["'LITR2_INPUT'", "per year"],
        ),
        (
            lambda ds: ds.assign(LITR3_INPUT=(ds.LITR3_INPUT / 1000).assign_attrs(units="kgC m-2 d-1")),
            ["'LITR3_INPUT'", "multiply by 1000", "per day"],
        ),
        (lambda ds: ds.assign(W_SCALAR=(ds.W_SCALAR * 100).assign_attrs(units="%")), ["'W_SCALAR'", "divide by 100"]),
        (lambda ds: ds.assign(ALTMAX=ds.ALTMAX.assign_attrs(units="furlong")), ["'ALTMAX'", "metres"]),
        (lambda ds: ds.assign(CWD_INPUT=ds.CWD_INPUT.assign_attrs(units="bananas")), ["'CWD_INPUT'", "cannot interpret"]),
        (
            lambda ds: ds.rename({"layer": "levsoi"}),
            ["'TSOI' has dimensions", "levsoi", "rename the CLM level dimension"],
        ),
        (
            lambda ds: xr.concat(
                [ds, ds.isel(layer=slice(0, 5)).assign_coords(layer=np.arange(21, 26))],
                "layer",
                data_vars="minimal",
                coords="minimal",
                compat="override",
            ),
            ["'TSOI' has 25 entries along 'layer'", "first 20"],
        ),
        (lambda ds: ds.isel(month=slice(0, 11)), ["has 11 entries along 'month'", "expected 12"]),
    ],
)
def test_bad_forcing_files(forcing_file, edit, patterns):
    path = _rewrite(forcing_file, edit)
    with pytest.raises(io.ForcingFileError) as err:
        io.read_forcing(path)
    for p in patterns:
        assert p in str(err.value), str(err.value)


# --- units: every spelling the forcing reader accepts, with its true factor written out by hand -----------
# (variable, units attribute, factor from that unit to the unit of FORCING_UNITS)
ACCEPTED_FORCING_UNITS = [
    ("CWD_INPUT", "gC m-2 month-1", 1.0),
    ("CWD_INPUT", "g C m-2 month-1", 1.0),
    ("CWD_INPUT", "gC/m2/month", 1.0),
    ("CWD_INPUT", "g C/m^2/month", 1.0),
    ("CWD_INPUT", "gC m^-2 month^-1", 1.0),
    ("CWD_INPUT", "g C/m**2/month", 1.0),
    ("CWD_INPUT", "gC m-2 mon-1", 1.0),
    ("CWD_INPUT", "gC per m2 per month", 1.0),
    ("CWD_INPUT", "g m-2 month-1", 1.0),  # the variable says it is carbon (CF style)
    ("CWD_INPUT", "g carbon m-2 month-1", 1.0),
    ("LITR1_INPUT", "kgC m-2 month-1", 1e3),
    ("LITR1_INPUT", "kg C m-2 month-1", 1e3),
    ("LITR1_INPUT", "kg m-2 month-1", 1e3),
    ("LITR2_INPUT", "mgC m-2 month-1", 1e-3),  # milligrams
    ("LITR2_INPUT", "MgC m-2 month-1", 1e6),  # megagrams: case matters
    ("LITR2_INPUT", "MgC ha-1 month-1", 100.0),
    ("LITR3_INPUT", "tC/ha/month", 100.0),
    ("LITR3_INPUT", "t C ha-1 month-1", 100.0),
    ("LITR3_INPUT", "gC cm-2 month-1", 1e4),
    ("LITR3_INPUT", "kgC km-2 month-1", 1e-3),
    ("TSOI", "K", 1.0),
    ("TSOI", "kelvin", 1.0),
    ("TSOI", "degK", 1.0),
    ("TSOI", "deg_K", 1.0),
    ("W_SCALAR", "1", 1.0),
    ("W_SCALAR", "", 1.0),
    ("O_SCALAR", "-", 1.0),
    ("O_SCALAR", "dimensionless", 1.0),
    ("FPI_vr", "unitless", 1.0),
    ("FPI_vr", "fraction", 1.0),
    ("FPI_vr", "0-1", 1.0),
    ("ALTMAX", "m", 1.0),
    ("ALTMAX", "metre", 1.0),
    ("ALTMAX_LASTYEAR", "meters", 1.0),
    ("nbedrock", "1", 1.0),
    ("nbedrock", "index", 1.0),
    ("nbedrock", "count", 1.0),
    ("CELLSAND", "%", 1.0),
    ("CELLSAND", "percent", 1.0),
    ("CELLSAND", "pct", 1.0),
]


@pytest.mark.parametrize(("name", "unit", "factor"), ACCEPTED_FORCING_UNITS)
def test_forcing_units_are_read_with_their_true_factor(sites, forcing_file, name, unit, factor):
    forcing, _ = sites
    path = _rewrite(forcing_file, lambda ds: ds.assign({name: (ds[name] / factor).assign_attrs(units=unit)}))
    back, _ = io.read_forcing(path)
    got = np.asarray(back.variables()[name])
    np.testing.assert_allclose(got, np.asarray(forcing.variables()[name]), rtol=1e-13, atol=0)


# (variable, units attribute, words the refusal must contain)
REFUSED_FORCING_UNITS = [
    ("CWD_INPUT", "gC m-2 s-1", ["per second", "86400"]),
    ("CWD_INPUT", "g C/m^2/s", ["per second"]),
    ("CWD_INPUT", "gC m-2 d-1", ["per day"]),
    ("CWD_INPUT", "gC m-2 day-1", ["per day"]),
    ("CWD_INPUT", "gC m-2 h-1", ["per hour"]),
    ("CWD_INPUT", "gC m-2 yr-1", ["per year"]),
    ("CWD_INPUT", "kgC m-2 s-1", ["per second", "multiply by 1000"]),
    ("CWD_INPUT", "gC m-2", ["no time unit"]),
    ("CWD_INPUT", "gC m-3 month-1", ["gC m-2 month-1"]),
    ("CWD_INPUT", "gN m-2 month-1", ["cannot interpret"]),
    ("CWD_INPUT", "gc m-2 month-1", ["cannot interpret"]),  # case matters: 'gc' is no unit
    ("CWD_INPUT", "bananas", ["cannot interpret"]),
    ("TSOI", "degC", ["Celsius", "add 273.15"]),
    ("TSOI", "C", ["Celsius"]),
    ("TSOI", "degF", ["kelvin"]),
    ("TSOI", "m", ["kelvin"]),
    ("W_SCALAR", "%", ["percent", "divide by 100"]),
    ("O_SCALAR", "K", ["dimensionless"]),
    ("ALTMAX", "cm", ["centimetres", "divide by 100"]),
    ("ALTMAX", "mm", ["metres", "0.001"]),
    ("ALTMAX", "furlong", ["metres"]),
    ("ALTMAX_LASTYEAR", "kg", ["metres"]),
    ("nbedrock", "m", ["layer index"]),
    ("CELLSAND", "1", ["fraction", "multiply by 100"]),
    ("CELLSAND", "kg", ["percent sand"]),
]


@pytest.mark.parametrize(("name", "unit", "words"), REFUSED_FORCING_UNITS)
def test_forcing_units_that_are_refused(forcing_file, name, unit, words):
    path = _rewrite(forcing_file, lambda ds: ds.assign({name: ds[name].assign_attrs(units=unit)}))
    with pytest.raises(io.ForcingFileError) as err:
        io.read_forcing(path)
    msg = str(err.value)
    assert "edited.nc" in msg and f"'{name}'" in msg and repr(unit) in msg, msg
    for w in words:
        assert w in msg, (w, msg)
    assert "\n" not in msg


# --- plausibility, duplicate and missing sites ---------------------------------------------------------------


def _scale_inputs(ds, factor):
    names = ("CWD_INPUT", "LITR1_INPUT", "LITR2_INPUT", "LITR3_INPUT")
    return ds.assign({n: (ds[n] * factor).assign_attrs(ds[n].attrs) for n in names})


def test_annual_totals_in_every_month_are_refused(sites, forcing_file):
    forcing, info = sites
    annual = np.asarray(forcing.annual_input).sum(-1)
    too_big = info["site"].values[annual * 12 > io.ANNUAL_INPUT_MAX]
    assert 1 < len(too_big) < N  # the check must name the sites above the bound, not all
    path = _rewrite(forcing_file, lambda ds: _scale_inputs(ds, 12.0))
    with pytest.raises(io.ForcingFileError) as err:
        io.read_forcing(path)
    msg = str(err.value)
    assert "edited.nc" in msg and f"site {too_big[0]} (and {len(too_big) - 1} more site(s))" in msg, msg
    assert "annual totals" in msg and "check_plausible=False" in msg and "np." not in msg
    back, _ = io.read_forcing(path, check_plausible=False)  # the way round it for genuine data
    np.testing.assert_allclose(np.asarray(back.cwd_input), 12 * np.asarray(forcing.cwd_input), rtol=1e-14)


def test_per_second_inputs_without_units_are_refused(sites, forcing_file):
    forcing, info = sites

    def edit(ds):
        ds = _scale_inputs(ds, 1.0 / (86400 * 30))
        for n in ("CWD_INPUT", "LITR1_INPUT", "LITR2_INPUT", "LITR3_INPUT"):
            del ds[n].attrs["units"]
        return ds

    with pytest.raises(io.ForcingFileError) as err:
        io.read_forcing(_rewrite(forcing_file, edit))
    msg = str(err.value)
    assert f"site {info['site'].values[0]} (and {N - 1} more site(s))" in msg, msg
    assert "per second" in msg and "check_plausible=False" in msg


def test_high_but_possible_input_warns_and_zero_input_is_accepted(sites, forcing_file):
    forcing, info = sites
    annual = np.asarray(forcing.annual_input).sum(-1)

    def edit(ds):
        scale = np.ones(N)
        scale[2] = 4000.0 / annual[2]  # above the most productive ecosystems, below the error bound
        scale[5] = 0.0  # bare ground: no input at all
        return _scale_inputs(ds, xr.DataArray(scale, dims="site"))

    path = _rewrite(forcing_file, edit)
    with pytest.warns(io.PlausibilityWarning) as record:
        back, _ = io.read_forcing(path)
    assert len(record) == 1
    msg = str(record[0].message)
    assert "edited.nc" in msg and f"site {info['site'].values[2]}" in msg and "4000" in msg and "more site" not in msg
    np.testing.assert_allclose(float(np.asarray(back.annual_input)[2].sum()), 4000.0, rtol=1e-12)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        io.read_forcing(path, check_plausible=False)  # silenced: no warning


def test_duplicate_site_labels_are_refused(forcing_file, tmp_path):
    def edit(ds):
        labels = ds["site"].values.copy()
        labels[5] = labels[3]
        return ds.assign_coords(site=labels)

    path = _rewrite(forcing_file, edit)
    with pytest.raises(io.ForcingFileError) as err:
        io.read_forcing(path)
    msg = str(err.value)
    assert "edited.nc" in msg and "'site'" in msg and "syn4_000003" in msg and "np.str_" not in msg, msg
    # parameter files too
    ds = io.params_dataset(np.full((3, sj.CLM5_SPACE.size), 0.5), "clm5", site_id=["a", "b", "c"])
    ds.assign_coords(site=["a", "b", "a"]).to_netcdf(tmp_path / "p.nc")  # soiljax itself never writes this
    with pytest.raises(io.ParamsFileError, match=r"p\.nc.*site label a appears 2 times"):
        io.read_params(tmp_path / "p.nc", "clm5")


def test_writers_refuse_duplicate_labels_naming_one(sites):
    forcing, _ = sites
    labels = np.array([f"s{i}" for i in range(N)])
    labels[7] = labels[2]
    with pytest.raises(ValueError, match=r"^site_id labels must be unique; s2 appears 2 times$"):
        io.forcing_dataset(forcing, site_id=labels)


def test_files_without_sites_are_refused(sites, forcing_file, tmp_path):
    path = tmp_path / "empty.nc"
    xr.open_dataset(forcing_file).load().isel(site=slice(0, 0)).to_netcdf(path, engine=io.netcdf_engine())
    with pytest.raises(io.ForcingFileError, match=r"empty\.nc.*0 sites"):
        io.read_forcing(path)
    ds = io.params_dataset(np.full((3, sj.CLM5_SPACE.size), 0.5), "clm5").isel(site=slice(0, 0))
    ds.to_netcdf(tmp_path / "p0.nc", engine=io.netcdf_engine())
    with pytest.raises(io.ParamsFileError, match=r"p0\.nc.*0 sites"):
        io.read_params(tmp_path / "p0.nc", "clm5")


def test_nan_names_file_variable_and_site(sites, forcing_file):
    label = str(sites[1]["site"].values[6])

    def edit(ds):
        tsoi = ds.TSOI.values.copy()
        tsoi[6, 2, 4] = np.nan
        return ds.assign(TSOI=(ds.TSOI.dims, tsoi, ds.TSOI.attrs))

    with pytest.raises(sj.ForcingError) as err:  # also a ForcingError
        io.read_forcing(_rewrite(forcing_file, edit))
    msg = str(err.value)
    assert "edited.nc" in msg and "TSOI" in msg and label in msg and "NaN" in msg


def test_out_of_range_values_name_the_site(sites, forcing_file):
    label = str(sites[1]["site"].values[2])

    def edit(ds):
        nb = ds.nbedrock.values.copy()
        nb[2] = 25
        return ds.assign(nbedrock=(ds.nbedrock.dims, nb, ds.nbedrock.attrs))

    with pytest.raises(io.ForcingFileError, match=f"{label}.*nbedrock.*1..20"):
        io.read_forcing(_rewrite(forcing_file, edit))


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(io.ForcingFileError, match="does not exist; check the path"):
        io.read_forcing(tmp_path / "nowhere.nc")
    junk = tmp_path / "junk.nc"
    junk.write_text("this is not netCDF")
    with pytest.raises(io.ForcingFileError, match="could not be read as netCDF"):
        io.read_forcing(junk)
    with pytest.raises(io.ParamsFileError, match="is a directory"):
        io.read_params(tmp_path, "clm5")


# --- parameters ----------------------------------------------------------------


def test_params_round_trip_and_reorder(tmp_path):
    rng = np.random.default_rng(0)
    u = rng.uniform(size=(4, sj.COMPAS_SPACE.size))
    path = io.write_params(u, sj.COMPAS(), tmp_path / "p.nc")
    np.testing.assert_array_equal(io.read_params(path, sj.COMPAS()), u)
    # a file with the parameters in another order is reordered by name
    ds = xr.open_dataset(path).load()
    perm = rng.permutation(sj.COMPAS_SPACE.size)
    ds.isel(param=perm).to_netcdf(tmp_path / "shuffled.nc")
    np.testing.assert_array_equal(io.read_params(tmp_path / "shuffled.nc", "compas"), u)
    # physical values are stored for readers
    np.testing.assert_allclose(ds["theta"].values, np.asarray(sj.COMPAS_SPACE.to_physical(u)))
    # one vector -> one site
    one = io.read_params(io.write_params(u[0], "compas", tmp_path / "one.nc"), sj.COMPAS())
    assert one.shape == (1, sj.COMPAS_SPACE.size)


def _params_file(tmp_path, edit):
    u = np.full((3, sj.CLM5_SPACE.size), 0.5)
    ds = io.params_dataset(u, "clm5")
    ds = edit(ds)
    path = tmp_path / "bad_params.nc"
    ds.to_netcdf(path)
    return path


@pytest.mark.parametrize(
    ("edit", "patterns"),
    [
        (lambda ds: ds.assign_coords(param=[*ds.param.values[:-1], "gamma"]), ["unknown parameter(s) gamma", "missing parameter(s) beta"]),
        (lambda ds: ds.isel(param=slice(0, 20)), ["missing parameter(s) beta", "needs exactly"]),
        (lambda ds: ds.assign(u=ds.u.where(ds.param != "q10", 1.7)), ["'q10'", "1.7", "outside [0, 1]", "3 value(s)"]),
        (lambda ds: ds.assign(u=ds.u.where(ds.param != "bio", np.nan)), ["'bio'", "finite"]),
        (lambda ds: ds.drop_vars(["u"]), ["variable 'u' is missing"]),
        (lambda ds: ds.assign_coords(param=[*ds.param.values[:-1], "bio"]), ["bio appear more than once"]),
    ],
)
def test_bad_params_files(tmp_path, edit, patterns):
    path = _params_file(tmp_path, edit)
    with pytest.raises(io.ParamsFileError) as err:
        io.read_params(path, sj.CLM5())
    msg = str(err.value)
    assert "bad_params.nc" in msg
    for p in patterns:
        assert p in msg, msg


def test_params_of_the_other_model(tmp_path):
    path = io.write_params(np.full(sj.COMPAS_SPACE.size, 0.5), "compas", tmp_path / "p.nc")
    with pytest.raises(io.ParamsFileError, match="holds COMPAS parameters"):
        io.read_params(path, sj.CLM5())


def test_params_outside_prior_allowed_on_request(tmp_path):
    u = np.asarray(sj.CLM5().default_u())  # efolding = 10 m lies outside the prior (u = 10)
    path = io.write_params(u, "clm5", tmp_path / "p.nc")
    with pytest.raises(io.ParamsFileError, match="'efolding'.*outside"):
        io.read_params(path, "clm5")
    np.testing.assert_allclose(io.read_params(path, "clm5", check_bounds=False)[0], u)


# --- results ------------------------------------------------------------------


@pytest.fixture(scope="module")
def clm5_direct(sites):
    forcing, _ = sites
    model = sj.CLM5()
    u = np.asarray(model.default_u())
    steady = sj.batched_steady_state(model, u, forcing)
    comps = sj.system_components(model, np.broadcast_to(u, (N, model.n_params)), forcing, steady)
    return model, u, steady, comps


def test_results_file_matches_the_library(sites, clm5_direct, tmp_path):
    forcing, info = sites
    model, u, steady, comps = clm5_direct
    out = tmp_path / "r.nc"
    io.simulate_to_file(model, u, forcing, out, sites=info, batch_size=BATCH)
    ds = io.read_results(out)
    assert not io.parts_dir(out).exists()
    assert ds.sizes == {"site": N, "pool": 7, "layer": 20, "param": 21}
    assert list(ds["pool"].values) == list(model.pool_names)
    np.testing.assert_allclose(ds["z"].values, sj.ZSOI)
    np.testing.assert_allclose(ds["state"].values, np.asarray(steady.state), rtol=1e-12, atol=0)
    np.testing.assert_allclose(ds["soc"].values, np.asarray(steady.soc), rtol=1e-12, atol=0)
    np.testing.assert_array_equal(ds["valid"].values, np.asarray(steady.valid))
    for depth, name in ((0.3, "soc_stock_0_30"), (1.0, "soc_stock_0_100"), (2.0, "soc_stock_0_200")):
        np.testing.assert_allclose(ds[name].values, np.asarray(sj.soc_stock(steady.soc, depth)), rtol=1e-12)
        assert ds[name].attrs["units"] == "kgC m-2"
    for key, unit in sj.COMPONENT_UNITS.items():
        np.testing.assert_allclose(ds[key].values, np.asarray(comps[key]), rtol=1e-10)
        assert ds[key].attrs["units"] == unit
    for name in ds.data_vars:
        assert "units" in ds[name].attrs, name
    assert ds.attrs["model"] == "CLM5" and ds.attrs["bedrock"] == "proda"
    assert ds.attrs["soiljax_version"] == sj.__version__
    np.testing.assert_array_equal(ds["zone"].values, info["zone"].values)
    np.testing.assert_array_equal(ds["site"].values, info["site"].values)


def test_incremental_write_resumes_after_a_failure(sites, clm5_direct, tmp_path, monkeypatch):
    forcing, info = sites
    model, u, steady, _ = clm5_direct
    out = tmp_path / "r.nc"
    import soiljax._batch as batch

    real = batch.batched_steady_state
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("node lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(batch, "batched_steady_state", flaky)
    with pytest.raises(RuntimeError, match="node lost"):
        io.simulate_to_file(model, u, forcing, out, sites=info, batch_size=BATCH // 2)
    assert not out.exists()
    assert sorted(p.name for p in io.parts_dir(out).glob("part_*.nc")) == ["part_000000.nc"]
    # a different run must not silently reuse these parts
    with pytest.raises(io.FileFormatError, match="other inputs"):
        io.simulate_to_file(model, np.asarray(model.default_u()) * 0.99, forcing, out, batch_size=BATCH // 2)
    calls.clear()
    ds = io.simulate_to_file(model, u, forcing, out, sites=info, batch_size=BATCH // 2)
    assert len(calls) == 1  # only the missing batch was computed
    np.testing.assert_allclose(ds["soc"].values, np.asarray(steady.soc), rtol=1e-12)
    np.testing.assert_array_equal(io.read_results(out)["site"].values, info["site"].values)
    assert not io.parts_dir(out).exists()


def test_results_dataset_in_memory(sites, clm5_direct):
    forcing, _ = sites
    model, u, steady, comps = clm5_direct
    ds = io.results_dataset(model, u, forcing, steady)
    np.testing.assert_array_equal(ds["site"].values, np.arange(N))
    np.testing.assert_allclose(ds["cte"].values, np.asarray(comps["cte"]), rtol=1e-10)
    with pytest.raises(ValueError, match="shape"):
        io.results_dataset(model, np.zeros(5), forcing, steady)
