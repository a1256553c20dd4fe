"""The synthetic world: determinism, shapes, bioclim definitions, forcing consistency, hidden maps, I/O."""

import jax
import numpy as np
import pytest

import soiljax as sj
from soiljax import world as W
from soiljax.synthetic import ALT_FULL_COLUMN

N_SITES = 40  # one site count everywhere: the compiled steady-state program is reused
RES = 10.0


@pytest.fixture(scope="module")
def world():
    return W.synthetic_world(N_SITES, resolution=RES, seed=3)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _same_world(a: W.World, b: W.World) -> bool:
    same = a.grid.identical(b.grid) and a.cells.identical(b.cells) and a.sites.identical(b.sites)
    for fa, fb in ((a.cell_forcing, b.cell_forcing), (a.site_forcing, b.site_forcing)):
        same &= all(np.array_equal(x, y) for x, y in zip(_leaves(fa), _leaves(fb)))
    same &= a.models == b.models
    for m in a.models:
        same &= np.array_equal(a.u_true[m], b.u_true[m]) and np.array_equal(a.cell_u_true[m], b.cell_u_true[m])
        same &= np.array_equal(a.valid[m], b.valid[m])
        same &= all(
            np.array_equal(x, y, equal_nan=True) for x, y in zip(_leaves(a.observations[m]), _leaves(b.observations[m]))
        )
    return bool(same)


def test_covariate_names_and_units():
    assert 50 <= len(W.COVARIATES) <= 70
    assert len(set(W.COVARIATES)) == len(W.COVARIATES)
    assert set(W.COVARIATE_UNITS) == set(W.COVARIATES) == set(W.COVARIATE_DESCRIPTIONS)
    assert W.COVARIATES[:19] == W.BIOCLIM
    for prop in ("sand", "silt", "clay", "ph", "bulk_density", "cec"):
        for depth in ("0_30", "30_100", "100_200"):
            assert f"{prop}_{depth}" in W.COVARIATES
    for name in ("elevation", "npp", "lc_forest", "lc_bare", "abs_lat"):
        assert name in W.COVARIATES
    assert W.COVARIATE_UNITS["bio1"] == "degC" and W.COVARIATE_UNITS["bio12"] == "mm"
    assert W.COVARIATE_UNITS["npp"] == "gC m-2 yr-1"


def test_deterministic_by_seed(world):
    again = W.synthetic_world(N_SITES, resolution=RES, seed=3)
    assert _same_world(world, again)
    a = W.synthetic_world(N_SITES, resolution=RES, seed=5, models=())
    b = W.synthetic_world(N_SITES, resolution=RES, seed=5, models=())
    assert _same_world(a, b) and a.models == ()
    assert not np.array_equal(a.covariate_matrix("cells")[:5], world.covariate_matrix("cells")[:5])
    assert not np.array_equal(a.sites.lat.values, world.sites.lat.values)
    # the continents do not depend on the resolution: about the same share of land at 5 degrees
    fine = W.synthetic_world(N_SITES, resolution=5.0, seed=3, models=())
    frac = fine.grid.land.values.mean()
    assert abs(frac - world.grid.land.values.mean()) < 0.05
    assert 0.2 < frac < 0.4  # ~30 % of the cells are land


def test_grid_cells_and_sites(world):
    grid, cells, sites = world.grid, world.cells, world.sites
    assert dict(grid.sizes) == {"lat": 18, "lon": 36}
    np.testing.assert_allclose(grid.lat.values, np.arange(-85, 90, 10))
    np.testing.assert_allclose(grid.lon.values, np.arange(-175, 180, 10))
    assert grid.attrs["seed"] == 3 and grid.attrs["resolution"] == RES
    land = grid.land.values
    assert land.dtype == bool and land.sum() == world.n_cells
    assert np.all(np.abs(grid.lat.values[np.nonzero(land)[0]]) <= 76)
    # the cell index: -1 over the ocean, cells' (i_lat, i_lon) point back to it
    cell = grid.cell.values
    assert np.all(cell[~land] == -1)
    np.testing.assert_array_equal(cell[cells.i_lat.values, cells.i_lon.values], np.arange(world.n_cells))
    np.testing.assert_array_equal(cells.lat.values, grid.lat.values[cells.i_lat.values])
    np.testing.assert_array_equal(cells.lon.values, grid.lon.values[cells.i_lon.values])
    # every covariate is a (lat, lon) map: NaN over the ocean, the cells' values on land
    cov = world.covariate_matrix("cells")
    assert cov.shape == (world.n_cells, len(W.COVARIATES)) and np.all(np.isfinite(cov))
    for j, name in enumerate(W.COVARIATES):
        v = grid[name].values
        assert np.all(np.isnan(v[~land])), name
        np.testing.assert_array_equal(v[cells.i_lat.values, cells.i_lon.values], cov[:, j])
    assert list(cells.covariate.values) == list(W.COVARIATES)
    # sites: string ids, inside their cell
    assert sites.sizes["site"] == N_SITES and world.covariate_matrix().shape == (N_SITES, len(W.COVARIATES))
    assert sites.site.values.dtype.kind == "U" and len(set(sites.site.values)) == N_SITES
    c = sites.cell.values
    assert np.all(np.abs(sites.lat.values - cells.lat.values[c]) <= RES / 2)
    assert np.all(np.abs(sites.lon.values - cells.lon.values[c]) <= RES / 2)
    # ... and their covariates are close to the cell's (relative to the spread over all cells)
    xs = W.standardised_covariates(world.covariate_matrix())
    xc = W.standardised_covariates(cov)
    spread = xc.std(0)
    rel = np.abs(xs - xc[c]) / np.where(spread > 0, spread, 1.0)
    assert np.median(rel) < 0.25
    # ... but differ between sites of one cell
    counts = np.bincount(c)
    if counts.max() > 1:
        i, j = np.flatnonzero(c == counts.argmax())[:2]
        assert not np.array_equal(xs[i], xs[j])
    with pytest.raises(ValueError, match="'sites' or 'cells'"):
        world.covariate_matrix("grid")


def _bioclim_loops(t, r, p):
    """dismo::biovars, written out month by month (independent of soiljax.world.bioclim)."""
    t, r, p = (list(map(float, a)) for a in (t, r, p))
    tmax = [a + b / 2 for a, b in zip(t, r)]
    tmin = [a - b / 2 for a, b in zip(t, r)]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    sd = lambda xs: (sum((x - mean(xs)) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5  # noqa: E731
    tq = [mean([t[(i + k) % 12] for k in range(3)]) for i in range(12)]
    pq = [sum(p[(i + k) % 12] for k in range(3)) for i in range(12)]
    wet, dry = pq.index(max(pq)), pq.index(min(pq))
    warm, cold = tq.index(max(tq)), tq.index(min(tq))
    b2 = mean(r)
    b7 = max(tmax) - min(tmin)
    p1 = [x + 1 for x in p]
    return [
        mean(t), b2, 100 * b2 / b7, 100 * sd(t), max(tmax), min(tmin), b7,
        tq[wet], tq[dry], tq[warm], tq[cold],
        sum(p), max(p), min(p), 100 * sd(p1) / mean(p1),
        pq[wet], pq[dry], pq[warm], pq[cold],
    ]  # fmt: skip


def test_bioclim_definitions(world):
    # hand-made monthly series: a northern continental and a southern monsoon climate
    months = np.arange(12)
    t = np.stack([-10 + 20 * np.cos(2 * np.pi * (months - 6.5) / 12), 24 + 3 * np.cos(2 * np.pi * months / 12)])
    r = np.stack([8 + 4 * np.sin(2 * np.pi * months / 12), np.full(12, 10.0)])
    p = np.stack([30 + 40 * (months == 7), 300 * np.exp(-0.5 * ((months - 1) / 1.5) ** 2)])
    got = W.bioclim(t, r, p)
    assert got.shape == (2, 19)
    for i in range(2):
        np.testing.assert_allclose(got[i], _bioclim_loops(t[i], r[i], p[i]), rtol=1e-12, atol=1e-12)
    # the north's warmest quarter is June-August, its wettest holds August: bio8 = bio10
    assert got[0, 7] == got[0, 9] and got[0, 17] == got[0, 15]
    # the world's bio covariates are these definitions applied to its monthly climate
    cells = world.cells
    cov = world.covariate_matrix("cells")
    for i in np.linspace(0, world.n_cells - 1, 6).astype(int):
        expected = _bioclim_loops(cells.tmean.values[i], cells.dtr.values[i], cells.prec.values[i])
        np.testing.assert_allclose(cov[i, :19], expected, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match=r"\(\.\.\., 12\)"):
        W.bioclim(t[:, :11], r, p)


@pytest.mark.parametrize("where", ["cells", "sites"])
def test_forcing_consistent_with_covariates(world, where):
    forcing = world.cell_forcing if where == "cells" else world.site_forcing
    cov = world.covariate_matrix(where)
    n = cov.shape[0]
    assert forcing.batch_shape == (n,)
    col = {name: cov[:, j] for j, name in enumerate(W.COVARIATES)}
    tsoi = np.asarray(forcing.tsoi)
    surface_mean = tsoi[:, :, 0].mean(1) - 273.15
    assert np.corrcoef(surface_mean, col["bio1"])[0, 1] > 0.97
    # the ground is at least the air's mean plus 1 K (snow keeps it warmer in winter)
    assert np.all(surface_mean > col["bio1"] + 0.9)
    # the annual wave is damped with depth
    amp = tsoi.max(1) - tsoi.min(1)
    assert np.all(amp[:, -1] < 0.2 * amp[:, 0] + 0.1)
    # NPP is the annual carbon input
    np.testing.assert_allclose(np.asarray(forcing.annual_input).sum(-1), col["npp"], rtol=1e-12)
    # CELLSAND from the sand covariates; nbedrock from the bedrock depth
    sand = np.asarray(forcing.cellsand)
    np.testing.assert_allclose(sand[:, 0], col["sand_0_30"], rtol=1e-12)
    np.testing.assert_allclose(sand[:, -1], col["sand_100_200"], rtol=1e-12)
    nb = np.asarray(forcing.nbedrock)
    assert np.all(nb == nb[:, :1])
    np.testing.assert_allclose(np.asarray(sj.ZISOI)[nb[:, 0] - 1], col["bedrock_depth"])
    # permafrost where the ground is cold: the cryoturbation branch (ALT <= 2 m); deep thaw where warm
    alt = np.asarray(forcing.altmax_lastyear)[:, 0]
    assert np.all(alt > 0)
    warm = col["bio1"] > 8
    assert warm.any() and np.all(alt[warm] == ALT_FULL_COLUMN)
    frozen = col["pzi"] > 0.9
    if where == "cells":
        assert frozen.sum() >= 3
        assert (nb[:, 0] < 20).any()
    assert np.all(alt[frozen] <= 2.0)
    # drier places have lower water scalars
    w = np.asarray(forcing.w_scalar)
    assert np.corrcoef(w[:, :, :5].mean((1, 2)), np.log(col["aridity"]))[0, 1] > 0.5


def test_hidden_parameters(world):
    for model in ("clm5", "compas"):
        names = world.param_names(model)
        assert len(names) == (21 if model == "clm5" else 23)
        u = world.u_true[model]
        assert u.shape == (N_SITES, len(names)) and world.cell_u_true[model].shape == (world.n_cells, len(names))
        assert np.all((u > 0.05) & (u < 0.95))
        # the truth is the documented map of the covariates
        np.testing.assert_array_equal(u, W.hidden_parameters(model, world.covariate_matrix(), seed=world.seed))
        np.testing.assert_array_equal(
            world.cell_u_true[model], W.hidden_parameters(model, world.covariate_matrix("cells"), seed=world.seed)
        )
        # smooth: a small change of the covariates moves u a little, proportionally
        x = world.covariate_matrix("cells")
        step = 1e-4 * x.std(0)
        u0 = W.hidden_parameters(model, x)
        d1 = np.abs(W.hidden_parameters(model, x + step) - u0).max()
        d2 = np.abs(W.hidden_parameters(model, x + 2 * step) - u0).max()
        assert 0 < d1 < 1e-3 and d2 == pytest.approx(2 * d1, rel=0.05)
        # other seeds, other maps; one (..., 60) vector works too
        assert not np.allclose(W.hidden_parameters(model, x, seed=1), u0)
        np.testing.assert_array_equal(W.hidden_parameters(model, x[0]), u0[0])
    # physically meaningful dependencies (CLM5): Q10 falls with temperature, turnover of litter too
    cells = world.covariate_matrix("cells")
    u = world.cell_u_true["clm5"]
    bio1 = cells[:, W.COVARIATES.index("bio1")]
    assert np.corrcoef(u[:, world.param_names("clm5").index("q10")], bio1)[0, 1] < -0.3
    assert np.corrcoef(u[:, world.param_names("clm5").index("tau_cwd")], bio1)[0, 1] < -0.3
    terms = W.hidden_map("clm5")[2]
    assert terms["name"] == "q10" and terms["terms"][0][0] == "bio1"
    with pytest.raises(ValueError, match="unknown model"):
        W.hidden_parameters("century", cells)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 60\)"):
        W.hidden_parameters("clm5", cells[:, :10])
    bad = cells.copy()
    bad[2, 5] = np.nan
    with pytest.raises(ValueError, match="NaN.*row 2.*bio6.*ocean"):
        W.hidden_parameters("clm5", bad)


def test_valid_fractions(world):
    valid = {m: list(world.valid[m]) for m in world.models}
    for seed in (0, 1):
        other = W.synthetic_world(N_SITES, resolution=RES, seed=seed)
        for m in other.models:
            valid[m] += list(other.valid[m])
    for m, v in valid.items():
        assert np.mean(v) >= 0.85, (m, np.mean(v))
    # the flags are those of the steady state of the truth
    for m in world.models:
        ss = sj.batched_steady_state(W._model_instance(m), world.u_true[m], world.site_forcing)
        np.testing.assert_array_equal(np.asarray(ss.valid), world.valid[m])


def test_observations(world):
    for m in world.models:
        obs, valid = world.observations[m], world.valid[m]
        assert obs.batch_shape == (N_SITES,) and obs.n_obs == 8
        n = np.asarray(obs.n_usable)
        assert np.all((n[valid] >= 4) & (n[valid] <= 8))
        assert np.all(n[~valid] == 0)
        depth, soc = np.asarray(obs.depth), np.asarray(obs.soc)
        for i in range(N_SITES):
            k = n[i]
            assert np.all(np.isnan(depth[i, k:])) and np.all(np.isnan(soc[i, k:]))  # NaN padding at the end
            if k:
                assert np.all(np.diff(depth[i, :k]) > 0) and np.all(soc[i, :k] > 0)
        if (n < 8).any():
            assert np.isnan(depth).any()


def test_round_trip(world, tmp_path):
    W.write_world(world, tmp_path / "w")
    names = {p.name for p in (tmp_path / "w").iterdir()}
    assert names == {"grid.nc", "cells.nc", "cell_forcing.nc", "sites.nc", "site_forcing.nc",
                     "obs_clm5.nc", "obs_compas.nc", "truth_clm5.nc", "truth_compas.nc"}
    back = W.read_world(tmp_path / "w")
    assert _same_world(world, back)
    assert back.seed == 3 and back.resolution == RES and back.models == ("clm5", "compas")
    # the forcing files are ordinary forcing files
    forcing, info = sj.read_forcing(tmp_path / "w" / "site_forcing.nc")
    assert list(info.site.values) == list(world.sites.site.values)
    (tmp_path / "w" / "cells.nc").unlink()
    with pytest.raises(FileNotFoundError, match="cells.nc missing"):
        W.read_world(tmp_path / "w")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        W.read_world(tmp_path / "nowhere")


def test_argument_errors():
    with pytest.raises(ValueError, match="does not divide 180"):
        W.synthetic_world(10, resolution=7)
    with pytest.raises(ValueError, match=r"\(0, 30\]"):
        W.synthetic_world(10, resolution=0)
    with pytest.raises(ValueError, match="at least 1"):
        W.synthetic_world(0)
    with pytest.raises(ValueError, match="non-negative integer"):
        W.synthetic_world(10, seed=-1)
    with pytest.raises(ValueError, match="unknown model 'century'"):
        W.synthetic_world(10, models=("century",))
    with pytest.raises(ValueError, match="n_obs"):
        W.synthetic_world(10, n_obs=(5, 3))
    with pytest.raises(ValueError, match="noise"):
        W.synthetic_world(10, noise=-0.1)
