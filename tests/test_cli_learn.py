"""`soiljax learn` and `soiljax predict`: every option acts or is refused with a one-line reason."""

import numpy as np
import pytest
import xarray as xr

import soiljax as sj
from soiljax.cli import main

from cli_errors import cli_error as _error


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("world") / "w"
    assert main(["world", "--n-sites", "30", "--resolution", "30", "--seed", "3", "--models", "clm5",
                 "--out", str(out), "--no-progress"]) == 0
    return out


# The option checks run first: the files named here do not exist, so an error about an
# option shows that it was caught before anything was read, imported or compiled.
_NO_FILES = ["--model", "clm5", "--covariates", "/nonexistent/sites.nc", "--out", "/nonexistent/n.eqx"]
_TWO = _NO_FILES + ["--posterior", "/nonexistent/post.nc"]
_E2E = _NO_FILES + ["--approach", "end-to-end", "--forcing", "/nonexistent/f.nc", "--obs", "/nonexistent/o.nc"]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (_TWO + ["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (_E2E + ["--epochs", "-3"], "--epochs must be at least 1, got -3"),
        (_TWO + ["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (_E2E + ["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (_TWO + ["--hidden", "0"], "--hidden widths must be at least 1, got 0"),
        (_E2E + ["--hidden", "8", "-2"], "--hidden widths must be at least 1, got 8 -2"),
        (_TWO + ["--dropout", "1.5"], "--dropout must be a rate in [0, 1), got 1.5"),
        (_TWO + ["--dropout", "-0.1"], "--dropout must be a rate in [0, 1), got -0.1"),
        (_E2E + ["--dropout", "nan"], "--dropout must be a rate in [0, 1), got nan"),
        (_TWO + ["--learning-rate", "-1"], "--learning-rate must be a positive number, got -1"),
        (_TWO + ["--learning-rate", "0"], "--learning-rate must be a positive number, got 0"),
        (_E2E + ["--learning-rate", "inf"], "--learning-rate must be a positive number, got inf"),
        (_TWO + ["--learning-rate", "nan"], "--learning-rate must be a positive number, got nan"),
        (_TWO + ["--patience", "-1"], "--patience must be at least 1"),
        (_E2E + ["--patience", "0"], "--patience must be at least 1"),
        (_TWO + ["--ensemble", "0"], "--ensemble must be at least 1, got 0"),
        # options of the other approach are refused, not ignored
        (_E2E + ["--loss", "proda"], "--loss applies to --approach two-stage"),
        (_E2E + ["--proda-filter"], "--proda-filter applies to --approach two-stage"),
        (_E2E + ["--ensemble", "3"], "--ensemble applies to --approach two-stage"),
        (_TWO + ["--prior-weight", "1"], "--prior-weight applies to --approach end-to-end"),
        (_TWO + ["--bedrock", "closed"], "--bedrock applies to --approach end-to-end"),
        (_TWO + ["--forcing", "/nonexistent/f.nc"], "--forcing applies to --approach end-to-end"),
        (_TWO + ["--obs", "/nonexistent/o.nc"], "--obs applies to --approach end-to-end"),
        # the prior of end-to-end: a weight needs the posterior, the posterior needs a weight
        (_E2E + ["--prior-weight", "1"], "--prior-weight needs --posterior"),
        (_E2E + ["--posterior", "/nonexistent/p.nc"], "--posterior with --approach end-to-end"),
        (_E2E + ["--posterior", "/nonexistent/p.nc", "--prior-weight", "-1"],
         "--prior-weight must be a finite number > 0, got -1"),
        (_E2E + ["--posterior", "/nonexistent/p.nc", "--prior-weight", "nan"],
         "--prior-weight must be a finite number > 0, got nan"),
        (_E2E + ["--posterior", "/nonexistent/p.nc", "--prior-weight", "0"],
         "--prior-weight must be a finite number > 0, got 0"),
    ],
)
def test_learn_refuses_bad_options_before_reading_anything(argv, expected, capsys):
    err = _error(["learn", *argv], capsys)
    assert expected in err
    assert "nonexistent" not in err


def _posterior(world_dir, path, *, param=True, dims=("site", "param"), accepted=True):
    from soiljax import world as W

    w = W.read_world(world_dir)
    u = w.u_true["clm5"] if dims == ("site", "param") else w.u_true["clm5"].T
    ds = xr.Dataset({"u_mean": (dims, u)}, coords={"site": w.sites["site"].values})
    if param:
        ds = ds.assign_coords(param=list(sj.CLM5().param_names))
    if accepted:
        ds["accepted"] = ("site", np.ones(w.n_sites, bool))
    ds.to_netcdf(path)
    return path


def test_learn_refuses_posteriors_it_cannot_read_by_name(world_dir, tmp_path, capsys):
    base = ["learn", "--model", "clm5", "--world", str(world_dir), "--hidden", "4", "--epochs", "1",
            "--out", str(tmp_path / "n.eqx"), "--no-progress"]
    post = _posterior(world_dir, tmp_path / "noparam.nc", param=False)
    err = _error(base + ["--posterior", str(post)], capsys)
    assert "no 'param' coordinate" in err and "noparam.nc" in err
    post = _posterior(world_dir, tmp_path / "transposed.nc", dims=("param", "site"))
    err = _error(base + ["--posterior", str(post)], capsys)
    assert "'u_mean'" in err and "('site', 'param')" in err
    post = _posterior(world_dir, tmp_path / "noaccepted.nc", accepted=False)
    err = _error(base + ["--posterior", str(post), "--proda-filter"], capsys)
    assert "'accepted'" in err
    assert not (tmp_path / "n.eqx").exists()
    # the same posterior with its names is learned from, and --epochs acts
    post = _posterior(world_dir, tmp_path / "good.nc")
    assert main(base + ["--posterior", str(post), "--epochs", "2", "--patience", "5", "--batch-size", "4"]) == 0
    from soiljax import learning as L

    md = L.load_learner(tmp_path / "n.eqx").metadata
    assert md["epochs"] == 2 and md["epochs_run"] == 2 and md["batch_size"] == 4 and md["patience"] == 5


def _net(path, world_dir, model="clm5", seed=1):
    from soiljax import learning as L
    from soiljax import world as W

    w = W.read_world(world_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    L.save_learner(path, L.init_learner(w.covariate_matrix("sites"), model_name=model,
                                        covariate_names=W.COVARIATES, hidden=(4,), seed=seed))
    return path


def test_predict_names_networks_of_one_model_uniquely(world_dir, tmp_path, capsys):
    import json

    from soiljax import learning as L

    a = _net(tmp_path / "dA" / "net.eqx", world_dir, seed=1)
    b = _net(tmp_path / "dB" / "net.eqx", world_dir, seed=2)
    out = tmp_path / "maps"
    assert main(["predict", "--net", str(a), str(b), "--world", str(world_dir), "--out", str(out),
                 "--no-figures", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert {p.name for p in out.glob("maps_*.nc")} == {"maps_dA_net.nc", "maps_dB_net.nc"}
    ma, mb = L.read_maps(out / "maps_dA_net.nc"), L.read_maps(out / "maps_dB_net.nc")
    assert not np.allclose(ma["soc_stock_0_100"].values, mb["soc_stock_0_100"].values, equal_nan=True)
    cmp = json.loads((out / "comparison.json").read_text())  # the two maps are still compared
    assert cmp["models"] == ["dA_net", "dB_net"] and "dA_net vs dB_net" in text


def test_predict_refuses_the_same_network_twice(world_dir, tmp_path, capsys, monkeypatch):
    a = _net(tmp_path / "net.eqx", world_dir)
    monkeypatch.chdir(tmp_path)
    for argv in ([str(a), str(a)], [str(a), "net.eqx"], ["net.eqx", "./net.eqx"]):
        err = _error(["predict", "--net", *argv, "--world", str(world_dir), "--out", str(tmp_path / "m")], capsys)
        assert "net.eqx" in err and "twice" in err
    assert not (tmp_path / "m").exists()
