"""The command line, run in-process (plus one check of the installed entry point)."""

import shutil
import subprocess

import numpy as np
import pytest
import xarray as xr

import soiljax as sj
from soiljax import io
from soiljax.cli import main
from soiljax.synthetic import synthetic_sites

from cli_errors import cli_error as _error

N = 10


@pytest.fixture(scope="module")
def forcing_file(tmp_path_factory):
    forcing, info = synthetic_sites(N, seed=4)
    path = tmp_path_factory.mktemp("cli") / "forcing.nc"
    io.write_forcing(forcing, path, sites=info)
    return path


def test_simulate_round_trip_matches_library(forcing_file, tmp_path, capsys):
    out = tmp_path / "compas.nc"
    rc = main(["simulate", "--model", "compas", "--forcing", str(forcing_file), "--out", str(out), "--no-progress"])
    assert rc == 0
    assert f"wrote {out}" in capsys.readouterr().out
    ds = io.read_results(out)
    forcing, _ = io.read_forcing(forcing_file)
    model = sj.COMPAS()
    steady = sj.batched_steady_state(model, np.asarray(model.default_u()), forcing)
    np.testing.assert_allclose(ds["state"].values, np.asarray(steady.state), rtol=1e-12, atol=0)
    np.testing.assert_array_equal(ds["valid"].values, np.asarray(steady.valid))
    np.testing.assert_allclose(ds["u"].values[0], np.asarray(model.default_u()))
    assert ds.attrs["model"] == "COMPAS" and ds.attrs["parameters"] == "model defaults"


def test_simulate_with_params_file(forcing_file, tmp_path):
    rng = np.random.default_rng(1)
    u = rng.uniform(0.2, 0.8, size=(N, sj.CLM5_SPACE.size))
    params = io.write_params(u, "clm5", tmp_path / "p.nc")
    out = tmp_path / "clm5.nc"
    argv = ["simulate", "--model", "clm5", "--forcing", str(forcing_file), "--params", str(params)]
    assert main(argv + ["--bedrock", "closed", "--out", str(out)]) == 0
    ds = io.read_results(out)
    forcing, _ = io.read_forcing(forcing_file)
    steady = sj.batched_steady_state(sj.CLM5(bedrock="closed"), u, forcing)
    np.testing.assert_allclose(ds["soc"].values, np.asarray(steady.soc), rtol=1e-12, atol=0)
    np.testing.assert_allclose(ds["u"].values, u)
    assert ds.attrs["bedrock"] == "closed"
    # one parameter set broadcasts to every site
    one = io.write_params(u[3], "clm5", tmp_path / "one.nc")
    out1 = tmp_path / "one_out.nc"
    assert main(["simulate", "--model", "clm5", "--forcing", str(forcing_file), "--params", str(one), "--out", str(out1)]) == 0
    np.testing.assert_allclose(io.read_results(out1)["u"].values, np.broadcast_to(u[3], (N, u.shape[1])))


def test_user_errors_exit_2_with_one_line(forcing_file, tmp_path, capsys):
    out = str(tmp_path / "o.nc")
    err = _error(["simulate", "--model", "clm5", "--forcing", str(tmp_path / "missing.nc"), "--out", out], capsys)
    assert "missing.nc" in err and "does not exist" in err

    ds = xr.open_dataset(forcing_file).load()
    ds["CWD_INPUT"].attrs["units"] = "gC m-2 s-1"
    bad = tmp_path / "bad_units.nc"
    ds.to_netcdf(bad)
    err = _error(["simulate", "--model", "clm5", "--forcing", str(bad), "--out", out], capsys)
    assert "bad_units.nc" in err and "CWD_INPUT" in err and "per second" in err

    bad = tmp_path / "no_var.nc"
    ds.drop_vars("FPI_vr").to_netcdf(bad)
    err = _error(["simulate", "--model", "compas", "--forcing", str(bad), "--out", out], capsys)
    assert "'FPI_vr' is missing" in err

    params = io.write_params(np.full((3, sj.CLM5_SPACE.size), 0.5), "clm5", tmp_path / "p3.nc")
    err = _error(["simulate", "--model", "clm5", "--forcing", str(forcing_file), "--params", str(params), "--out", out], capsys)
    assert "3 sites" in err and f"{N}" in err

    err = _error(["simulate", "--model", "compas", "--forcing", str(forcing_file), "--params", str(params), "--out", out], capsys)
    assert "for COMPAS" in err

    assert not (tmp_path / "o.nc").exists()


def test_bad_options_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--model", "century", "--forcing", "f.nc", "--out", "o.nc"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main([]) == 2


def test_synthetic_command(tmp_path):
    out = tmp_path / "syn.nc"
    assert main(["synthetic", "--n-sites", "7", "--seed", "3", "--zones", "boreal", "arid", "--out", str(out)]) == 0
    forcing, meta = io.read_forcing(out)
    assert forcing.batch_shape == (7,)
    assert set(meta["zone"].values) == {"boreal", "arid"}


@pytest.mark.slow
def test_demo_writes_its_files(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n-sites", str(N), "--seed", "4", "--learn-sites", "16"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"forcing.nc", "clm5.nc", "compas.nc", "profiles.png", "soc_stock_latitude.png", "components_scatter.png",
            "obs.nc", "posterior_clm5.nc", "calibration_profiles.png",
            "world", "posterior_world_clm5.nc", "posterior_world_compas.nc", "net_clm5.eqx", "net_compas.eqx",
            "maps_clm5.nc", "maps_compas.nc", "comparison.json", "maps.png", "latitude.png", "comparison.png"} <= names
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    text = capsys.readouterr().out
    assert "CLM5" in text and "COMPAS" in text and "valid" in text and "median SOC stock" in text
    clm5 = io.read_results(out / "clm5.nc")
    assert clm5.sizes["site"] == N and "zone" in clm5.coords
    assert "calibration: CLM5 on" in text
    post = xr.open_dataset(out / "posterior_clm5.nc")
    assert 0 < post.sizes["site"] <= 12 and np.isfinite(post["u_mean"].values).all()
    assert "learning: world of 16 sites" in text and "CLM5 vs COMPAS maps" in text
    from soiljax import learning as L

    maps = L.read_maps(out / "maps_compas.nc")
    assert np.isfinite(maps["soc_stock_0_100"].values).any()


@pytest.fixture(scope="module")
def obs_files(tmp_path_factory):
    """Forcing and observation files of 4 temperate sites observed from CLM5 at its defaults."""
    from soiljax.synthetic import synthetic_observations

    model = sj.CLM5()
    forcing, info = synthetic_sites(4, seed=7, zones=["temperate"])
    obs, _ = synthetic_observations(model, model.default_u(), forcing, seed=7)
    folder = tmp_path_factory.mktemp("cal")
    io.write_forcing(forcing, folder / "f.nc", sites=info)
    io.write_observations(obs, folder / "o.nc", site_id=info["site"].values)
    return folder / "f.nc", folder / "o.nc"


@pytest.mark.slow  # compiles NUTS and its extension round for the command: ~45 s
def test_calibrate_command_writes_the_posterior(obs_files, tmp_path, capsys):
    f, o = obs_files
    out = tmp_path / "post.nc"
    argv = ["calibrate", "--model", "clm5", "--forcing", str(f), "--obs", str(o), "--out", str(out),
            "--method", "nuts", "--warmup", "30", "--samples", "20", "--batch", "2", "--keep-draws", "5",
            "--extend", "1", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "accepted by PRODA's filter" in printed and "with PRODA's Gelman-Rubin R-hat" in printed
    post = xr.open_dataset(out)
    # profiles failing the R-hat rule after 20 draws ran 20 more, thinned back to 20
    assert set(np.unique(post["thinning"].values)) <= {1, 2} and post.attrs["extend"] == 1
    n_ext = int((post["thinning"].values > 1).sum())
    assert f"{n_ext} extended for R-hat" in printed
    for name in ("u_mean", "u_sd", "u_q05", "u_q50", "u_q95", "rhat", "rhat_gr", "ess"):
        assert post[name].dims == ("site", "param")
    for name in ("nse", "accepted"):
        assert post[name].dims == ("site",)
    for name in ("soc_q05", "soc_q50", "soc_q95"):
        assert post[name].dims == ("site", "layer") and post[name].attrs["units"] == "gC m-3"
    assert list(post["param"].values) == list(sj.CLM5_SPACE.names)
    assert post["draws_u"].shape == (4, 3, 5, sj.CLM5_SPACE.size)
    assert post.attrs["method"] == "nuts" and post.attrs["model"] == "CLM5"
    assert not (tmp_path / "post.nc.parts").exists()

    # the default method, auto, samples 4 profiles by NUTS (too few to train a flow for): the same posterior
    default_out = tmp_path / "post_default.nc"
    assert main([a if a != str(out) else str(default_out) for a in argv if a not in ("--method", "nuts")]) == 0
    assert "too few to repay training a flow" in capsys.readouterr().out
    default = xr.open_dataset(default_out)
    assert default.attrs["method"] == "auto" and set(default["fallback_reason"].values) == {"few_profiles"}
    np.testing.assert_array_equal(default["u_mean"].values, post["u_mean"].values)


def test_calibrate_command_user_errors(obs_files, forcing_file, tmp_path, capsys):
    f, o = obs_files
    base = ["calibrate", "--model", "clm5", "--out", str(tmp_path / "p.nc")]
    # forcing of 10 sites, observations of 4
    assert main(base + ["--forcing", str(forcing_file), "--obs", str(o)]) == 2
    assert "has 10 sites but observation file" in capsys.readouterr().err
    assert main(base + ["--forcing", str(f), "--obs", str(o), "--chains", "1"]) == 2
    assert "at least 2" in capsys.readouterr().err
    assert main(base + ["--forcing", str(f), "--obs", str(o), "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
    assert main(base + ["--forcing", str(f), "--obs", str(o), "--extend", "-1"]) == 2
    assert "--extend must be >= 0" in capsys.readouterr().err
    assert main(base + ["--forcing", str(f), "--obs", str(o), "--method", "proda", "--extend", "2"]) == 2
    assert "--extend applies to --method nuts/hmc" in capsys.readouterr().err
    bad = tmp_path / "pct.nc"
    ds = xr.open_dataset(o).load()
    ds["soc"].attrs["units"] = "%"
    ds.to_netcdf(bad)
    assert main(base + ["--forcing", str(f), "--obs", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "soc" in err


@pytest.mark.skipif(shutil.which("soiljax") is None, reason="entry point not installed (pip install -e .)")
def test_installed_entry_point(forcing_file, tmp_path):
    res = subprocess.run(["soiljax", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "simulate" in res.stdout and "demo" in res.stdout
    res = subprocess.run(
        ["soiljax", "simulate", "--model", "clm5", "--forcing", str(tmp_path / "nope.nc"), "--out", str(tmp_path / "o.nc")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    assert "does not exist" in res.stderr and "Traceback" not in res.stderr


def test_ude_subcommand_is_dispatched(monkeypatch, capsys):
    import sys
    import types

    import soiljax.ude

    fake = types.ModuleType("soiljax.ude.cli")

    def add_parser(subparsers):
        p = subparsers.add_parser("ude", help="universal differential equation")
        p.add_argument("--epochs", type=int, default=1)
        return p

    def run(args):
        print(f"ude ran with {args.epochs} epochs")
        return 0

    fake.add_parser, fake.run = add_parser, run
    monkeypatch.setitem(sys.modules, "soiljax.ude.cli", fake)
    monkeypatch.setattr(soiljax.ude, "cli", fake, raising=False)
    assert main(["ude", "--epochs", "3"]) == 0
    assert "ude ran with 3 epochs" in capsys.readouterr().out


# --------------------------------------------------------------------------
# world and learn (PRODA's second stage)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("world") / "w"
    assert main(["world", "--n-sites", "30", "--resolution", "15", "--seed", "3", "--out", str(out)]) == 0
    return out


def test_world_command_writes_a_readable_world(world_dir, capsys):
    from soiljax import world as W

    w = W.read_world(world_dir)
    assert w.n_sites == 30 and set(w.models) == {"clm5", "compas"}
    again = W.synthetic_world(30, resolution=15.0, seed=3)
    np.testing.assert_array_equal(w.covariate_matrix("sites"), again.covariate_matrix("sites"))
    np.testing.assert_array_equal(w.u_true["clm5"], again.u_true["clm5"])


def test_learn_command_two_stage_and_end_to_end(world_dir, tmp_path, capsys):
    from soiljax import learning as L
    from soiljax import world as W

    w = W.read_world(world_dir)
    # a stand-in posterior file (the truth as posterior means) exercises the file plumbing;
    # calibration itself is tested in test_calibration.py
    labels = w.sites["site"].values
    post = xr.Dataset({"u_mean": (("site", "param"), w.u_true["clm5"]),
                       "accepted": ("site", np.ones(w.n_sites, bool))},
                      coords={"site": labels[::-1], "param": list(sj.CLM5().param_names)})
    post["u_mean"].values[:] = w.u_true["clm5"][::-1]  # listed in another order: matched by label
    post.to_netcdf(tmp_path / "post.nc")
    net = tmp_path / "two.eqx"
    assert main(["learn", "--model", "clm5", "--world", str(world_dir), "--posterior", str(tmp_path / "post.nc"),
                 "--hidden", "8", "--epochs", "30", "--out", str(net), "--no-progress"]) == 0
    learner = L.load_learner(net)
    assert learner.covariate_names == W.COVARIATES and learner.metadata["approach"] == "two-stage"
    u = np.asarray(learner.predict_u(w.covariate_matrix("sites")))
    assert u.shape == (30, 21) and np.all((u > 0) & (u <= 1))
    e2e = tmp_path / "e2e.eqx"
    assert main(["learn", "--model", "clm5", "--approach", "end-to-end", "--world", str(world_dir),
                 "--hidden", "8", "--epochs", "3", "--batch-size", "8", "--out", str(e2e), "--no-progress"]) == 0
    assert L.load_learner(e2e).metadata["approach"] == "end-to-end"
    assert "wrote" in capsys.readouterr().out


def test_learn_command_user_errors(world_dir, tmp_path, capsys):
    err = _error(["learn", "--model", "clm5", "--world", str(world_dir), "--out", str(tmp_path / "n.eqx")], capsys)
    assert "--posterior" in err
    err = _error(["learn", "--model", "clm5", "--out", str(tmp_path / "n.eqx")], capsys)
    assert "--covariates" in err
    xr.Dataset({"u_mean": (("site", "param"), np.full((2, 21), 0.5))},
               coords={"site": ["nowhere", "else"], "param": list(sj.CLM5().param_names)}).to_netcdf(tmp_path / "p.nc")
    err = _error(["learn", "--model", "clm5", "--world", str(world_dir), "--posterior", str(tmp_path / "p.nc"),
                  "--out", str(tmp_path / "n.eqx")], capsys)
    assert "not in the covariate file" in err
    err = _error(["learn", "--model", "compas", "--world", str(world_dir), "--posterior", str(tmp_path / "p.nc"),
                  "--out", str(tmp_path / "n.eqx")], capsys)
    assert "not those of compas" in err


def test_predict_command_writes_maps_comparison_and_figures(world_dir, tmp_path, capsys):
    import json

    from soiljax import learning as L
    from soiljax import world as W

    w = W.read_world(world_dir)
    x = w.covariate_matrix("sites")
    nets = []
    for name in ("clm5", "compas"):
        nets.append(tmp_path / f"{name}.eqx")
        L.save_learner(nets[-1], L.init_learner(x, model_name=name, covariate_names=W.COVARIATES, hidden=(8,), seed=1))
    out = tmp_path / "maps"
    assert main(["predict", "--net", *map(str, nets), "--world", str(world_dir), "--out", str(out),
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "Pg C" in text and "clm5 vs compas" in text
    for name in ("clm5", "compas"):
        maps = L.read_maps(out / f"maps_{name}.nc")
        assert set(L.MAP_VARIABLES) <= set(maps.data_vars)
        assert maps["soc_stock_0_100"].dims == ("lat", "lon") and maps["soc_stock_0_100"].attrs["units"] == "kgC m-2"
        land = w.grid["land"].values
        assert np.isnan(maps["soc_stock_0_100"].values[~land]).all()
    cmp = json.loads((out / "comparison.json").read_text())
    assert set(cmp["variables"]) == set(L.MAP_VARIABLES)
    assert {p.name for p in out.glob("*.png")} == {"maps.png", "latitude.png", "comparison.png"}
    err = _error(["predict", "--net", str(tmp_path / "missing.eqx"), "--world", str(world_dir),
                  "--out", str(out)], capsys)
    assert "missing.eqx" in err
