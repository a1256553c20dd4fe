"""Global prediction maps (soiljax.learning._maps, _figures): values, grid placement, the file contract,
model comparison, latitude profiles, figures and errors.

One tiny 15-degree world (71 land cells) and untrained CLM5 learners: every prediction reuses the
same compiled steady-state and component programs (one shape), so the module runs in about 30 s.
"""

import dataclasses

import numpy as np
import pytest

import soiljax
from soiljax import learning as lrn
from soiljax import world as W
from soiljax.learning import _maps as M

RES = 15.0


@pytest.fixture(scope="module")
def world():
    return W.synthetic_world(40, resolution=RES, seed=3, models=())


@pytest.fixture(scope="module")
def learner(world):
    return lrn.init_learner(world.covariate_matrix("cells"), model_name="clm5", covariate_names=W.COVARIATES,
                            hidden=(8,), seed=1)


@pytest.fixture(scope="module")
def cells(world, learner):
    return lrn.predict_cells(learner, world.cells, world.cell_forcing, cells=world.cells)


@pytest.fixture(scope="module")
def maps(cells, world):
    return lrn.to_grid(cells, world.grid)


@pytest.fixture(scope="module")
def maps_b(world):
    other = lrn.init_learner(world.covariate_matrix("cells"), model_name="clm5", covariate_names=W.COVARIATES,
                             hidden=(8,), seed=7)
    return lrn.predict_maps(other, world, progress=False)


def test_predict_cells_equals_direct_computation(cells, world, learner):
    model = soiljax.CLM5()
    x = world.covariate_matrix("cells")
    u = np.asarray(learner.predict_u(x))
    np.testing.assert_array_equal(cells["u"].values, u)
    np.testing.assert_allclose(cells["theta"].values, np.asarray(model.space.to_physical(u)), rtol=1e-14)
    assert list(cells["param"].values) == list(model.param_names)
    # the same shape as inside predict_cells: the compiled programs are reused
    steady = soiljax.batched_steady_state(model, u, world.cell_forcing)
    comp = soiljax.system_components(model, u, world.cell_forcing, steady)
    valid = np.asarray(steady.valid).astype(bool)
    assert cells["valid"].dtype == bool and np.array_equal(cells["valid"].values, valid)
    for i in (0, 7, 33, world.n_cells - 1):
        assert valid[i]  # CLM5 at an untrained learner's u: every cell is valid
        np.testing.assert_allclose(cells["soc"].values[i], steady.soc[i], rtol=1e-12)
        for key, depth in (("soc_stock_0_30", 0.3), ("soc_stock_0_100", 1.0)):
            np.testing.assert_allclose(cells[key].values[i], soiljax.soc_stock(steady.soc[i], depth), rtol=1e-12)
        for key in soiljax.COMPONENT_UNITS:
            np.testing.assert_allclose(cells[key].values[i], np.asarray(comp[key])[i], rtol=1e-12, err_msg=key)
    for key in lrn.MAP_VARIABLES:
        assert cells[key].dims == ("cell",)
        assert cells[key].attrs["units"] == M.MAP_UNITS[key]
    assert cells["soc_stock_0_100"].attrs["units"] == "kgC m-2" and cells["soc"].attrs["units"] == "gC m-3"
    assert cells.attrs["model"] == "clm5" and cells.attrs["n_invalid"] == 0 and cells.attrs["n_cells"] == world.n_cells
    np.testing.assert_array_equal(cells["lat"].values, world.cells["lat"].values)
    assert "u_sd" not in cells  # a single network has no ensemble spread


def test_invalid_and_missing_cells_are_nan(world, learner, monkeypatch):
    real = M.batched_steady_state
    flip = np.zeros(world.n_cells, dtype=bool)
    flip[[2, 11]] = True

    def some_invalid(model, u, forcing, **kw):
        out = real(model, u, forcing, **kw)
        return dataclasses.replace(out, valid=np.asarray(out.valid) & ~flip[: len(out.valid)])

    monkeypatch.setattr(M, "batched_steady_state", some_invalid)
    x = world.cells["covariates"].copy()
    x.values[5, 3] = np.nan  # one cell without covariates
    ds = lrn.predict_cells(learner, x, world.cell_forcing)
    bad = np.zeros(world.n_cells, dtype=bool)
    bad[[2, 5, 11]] = True
    assert np.array_equal(~ds["valid"].values, bad)
    for key in (*lrn.MAP_VARIABLES, "soc"):
        v = ds[key].values
        assert np.all(np.isnan(v[bad])), key  # NaN, not zeros
        assert np.all(np.isfinite(v[~bad])), key
    assert np.all(np.isfinite(ds["u"].values[[2, 11]])) and np.all(np.isnan(ds["u"].values[5]))
    assert ds.attrs["n_invalid"] == 3 and ds.attrs["n_valid"] == world.n_cells - 3
    assert ds.attrs["n_missing_covariates"] == 1


def test_to_grid_places_cells(maps, cells, world):
    i_lat, i_lon = world.cells["i_lat"].values, world.cells["i_lon"].values
    land = world.grid["land"].values
    assert maps.sizes["lat"] == world.grid.sizes["lat"] and maps.sizes["lon"] == world.grid.sizes["lon"]
    for key in lrn.MAP_VARIABLES:
        assert maps[key].dims == ("lat", "lon")
        assert maps[key].attrs["units"] == M.MAP_UNITS[key]
        np.testing.assert_array_equal(maps[key].values[i_lat, i_lon], cells[key].values)
        assert np.all(np.isnan(maps[key].values[~land]))
    assert maps["u"].dims == ("param", "lat", "lon") and maps["theta"].dims == ("param", "lat", "lon")
    assert list(maps["param"].values) == list(soiljax.CLM5().param_names)
    np.testing.assert_array_equal(maps["u"].values[:, i_lat, i_lon], cells["u"].values.T)
    np.testing.assert_array_equal(maps["theta"].sel(param="q10").values[i_lat, i_lon],
                                  cells["theta"].sel(param="q10").values)
    assert maps["soc"].dims == ("layer", "lat", "lon")
    assert maps["valid"].dtype == bool and not maps["valid"].values[~land].any()
    assert np.array_equal(maps["land"].values, land)
    c = 17
    assert float(maps["cte"].isel(lat=i_lat[c], lon=i_lon[c])) == float(cells["cte"][c])
    assert float(maps["lat"][i_lat[c]]) == float(world.cells["lat"][c])
    assert maps.attrs["model"] == "clm5" and "learner_metadata" in maps.attrs and maps.attrs["world_resolution"] == RES
    with pytest.raises(M.MapsError, match="land cells"):
        lrn.to_grid(cells.isel(cell=slice(0, 10)), world.grid)


def test_predict_maps_from_world_directory(maps, world, learner, tmp_path):
    W.write_world(world, tmp_path / "w")
    again = lrn.predict_maps(learner, tmp_path / "w", progress=False)
    for key in lrn.MAP_VARIABLES:
        np.testing.assert_allclose(again[key].values, maps[key].values, rtol=1e-12, equal_nan=True)


def test_covariates_selected_by_name(world, learner):
    names = list(reversed(W.COVARIATES))
    rev = lrn.init_learner(world.covariate_matrix("cells")[:, ::-1], model_name="clm5", covariate_names=names,
                           hidden=(8,), seed=1)
    x = M._covariates_for(rev, world.cells)
    np.testing.assert_array_equal(x, world.covariate_matrix("cells")[:, ::-1])
    bad = lrn.init_learner(world.covariate_matrix("cells")[:, :3], model_name="clm5",
                           covariate_names=["bio1", "soil_carbon_guess", "night_lights"], hidden=(8,))
    with pytest.raises(M.MapsError, match="soil_carbon_guess, night_lights"):
        lrn.predict_maps(bad, world, progress=False)
    with pytest.raises(M.MapsError, match="learner predicts clm5"):
        lrn.predict_cells(learner, world.cells, world.cell_forcing, model=soiljax.COMPAS())
    with pytest.raises(M.MapsError, match="forcing"):
        lrn.predict_cells(learner, world.cells["covariates"][:5], world.cell_forcing)


def test_ensemble_spread(world):
    ens = lrn.init_learner(world.covariate_matrix("cells"), model_name="clm5", covariate_names=W.COVARIATES,
                           hidden=(8,), ensemble=3, seed=2)
    ds = lrn.predict_cells(ens, world.cells, world.cell_forcing)
    members = np.asarray(ens.predict_u_members(world.covariate_matrix("cells")))
    np.testing.assert_allclose(ds["u_sd"].values, members.std(axis=0, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(ds["u"].values, np.asarray(ens.predict_u(world.covariate_matrix("cells"))))
    assert ds.attrs["learner_members"] == 3


def test_write_read_round_trip(maps, tmp_path):
    path = tmp_path / "out" / "maps_clm5.nc"
    lrn.write_maps(maps, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["maps_clm5.nc"]  # no temporary file left
    back = lrn.read_maps(path)
    for key in (*lrn.MAP_VARIABLES, "u", "theta", "soc"):
        assert back[key].dims == maps[key].dims
        np.testing.assert_array_equal(back[key].values, maps[key].values)
        assert back[key].attrs.get("units") == maps[key].attrs.get("units")
    assert back["valid"].dtype == bool and np.array_equal(back["valid"].values, maps["valid"].values)
    assert list(back["param"].values) == list(maps["param"].values)
    assert back.attrs["model"] == "clm5" and back.attrs["n_invalid"] == maps.attrs["n_invalid"]
    broken = tmp_path / "broken.nc"
    maps.drop_vars("b_system").to_netcdf(broken)
    with pytest.raises(M.MapsError, match="b_system"):
        lrn.read_maps(broken)
    with pytest.raises(M.MapsError, match="cte"):
        lrn.write_maps(maps.drop_vars("cte"), tmp_path / "x.nc")


def test_compare_models(maps, maps_b):
    same = lrn.compare_models(maps, maps)
    assert same["n_cells"] == int(maps["valid"].sum())
    for key, c in same["variables"].items():
        assert c["r"] == pytest.approx(1.0, abs=1e-12), key
        assert c["r_area_weighted"] == pytest.approx(1.0, abs=1e-12), key
    assert same["variables"]["soc_stock_0_100"]["transform"] == "log10"
    assert same["variables"]["k_bulk"]["transform"] == "log10" and same["variables"]["cte"]["transform"] == "none"

    # one model invalid in a few cells: those are left out
    b = maps_b.copy(deep=True)
    land = np.argwhere(b["land"].values)
    for i, j in land[:4]:
        b["valid"].values[i, j] = False
        for key in lrn.MAP_VARIABLES:
            b[key].values[i, j] = np.nan
    cmp = lrn.compare_models(maps, b, names=("clm5", "other"))
    both = maps["valid"].values & b["valid"].values
    assert cmp["n_cells"] == int(both.sum()) == int(maps["land"].sum()) - 4
    assert cmp["models"] == ("clm5", "other")
    lat = np.broadcast_to(maps["lat"].values[:, None], both.shape)[both]
    w = np.cos(np.deg2rad(lat))
    for key in ("soc_stock_0_30", "soc_stock_0_100", "cte", "k_bulk", "b_system"):
        x, y = maps[key].values[both], b[key].values[both]
        if cmp["variables"][key]["transform"] == "log10":
            x, y = np.log10(x), np.log10(y)
        assert cmp["variables"][key]["n"] == both.sum()
        assert cmp["variables"][key]["r"] == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12), key
        cov = np.cov(x, y, aweights=w)
        r_w = cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])
        assert cmp["variables"][key]["r_area_weighted"] == pytest.approx(r_w, abs=1e-12), key
    assert "soc_stock_0_100" in lrn.format_comparison(cmp)


def test_latitude_profile(maps):
    prof = lrn.latitude_profile(maps, "soc_stock_0_100")
    assert prof.dims == ("lat", "stat") and list(prof["stat"].values) == ["mean", "q25", "median", "q75"]
    stock = maps["soc_stock_0_100"].values
    for i in range(maps.sizes["lat"]):
        row = stock[i][np.isfinite(stock[i])]
        assert int(prof["n"][i]) == row.size
        if row.size:
            assert float(prof.sel(stat="mean")[i]) == pytest.approx(row.mean(), rel=1e-12)
            assert float(prof.sel(stat="median")[i]) == pytest.approx(np.median(row), rel=1e-12)
        else:
            assert np.isnan(prof.sel(stat="mean")[i])
    wide = lrn.latitude_profile(maps, "soc_stock_0_100", band=45.0)
    assert wide.sizes["lat"] == 4 and int(wide["n"].sum()) == int(np.isfinite(stock).sum())
    assert prof.attrs["units"] == "kgC m-2"


def test_figures_write_png(maps, maps_b, tmp_path):
    by_model = {"clm5": maps, "other": maps_b}
    fig = lrn.maps_figure(by_model, tmp_path / "maps.png", variables=("soc_stock_0_100", "cte", "k_bulk"))
    assert len(fig.axes) >= 6
    lrn.latitude_figure(by_model, tmp_path / "latitude.png")
    fig, cmp = lrn.comparison_figure(maps, maps_b, tmp_path / "comparison.png", names=("clm5", "other"))
    assert cmp == lrn.compare_models(maps, maps_b, names=("clm5", "other"))
    assert "r = " in fig.axes[0].get_title()
    for name in ("maps.png", "latitude.png", "comparison.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


@pytest.mark.slow
def test_compas_maps_invalid_cells_are_nan(world):
    learner = lrn.init_learner(world.covariate_matrix("cells"), model_name="compas", covariate_names=W.COVARIATES,
                               hidden=(8,), seed=1)
    maps = lrn.predict_maps(learner, world, progress=False)
    valid, land = maps["valid"].values, maps["land"].values
    assert maps.attrs["model"] == "compas" and maps.attrs["n_invalid"] == int((land & ~valid).sum()) > 0
    for key in lrn.MAP_VARIABLES:
        assert np.all(np.isnan(maps[key].values[land & ~valid])) and np.all(np.isfinite(maps[key].values[valid]))
    assert np.all(np.isnan(maps["soc"].values[:, land & ~valid]))
    assert np.array_equal(land, world.grid["land"].values)
