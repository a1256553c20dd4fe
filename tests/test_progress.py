"""Progress display: slow steps say what they are doing (compiling, summarising, the stages of
`world` and `synthetic`) instead of showing nothing or sitting at 100%."""

import numpy as np
import pytest
import xarray as xr

import soiljax as sj
from soiljax.cli import main


def _now(err: str) -> str:
    """What a tqdm bar shows now: the text after its last redraw."""
    return err.replace("\n", "\r").rstrip("\r").split("\r")[-1]


def test_synthetic_sites_reports_its_stages(capsys):
    quiet, info = sj.synthetic_sites(7, seed=2)
    assert capsys.readouterr().err == ""  # the library is quiet by default
    loud, info2 = sj.synthetic_sites(7, seed=2, progress=True)
    err = capsys.readouterr().err
    assert "synthetic sites" in err and "soil temperature" in err and "carbon inputs" in err
    for name, value in quiet.variables().items():  # progress changes nothing else
        np.testing.assert_array_equal(np.asarray(value), np.asarray(loud.variables()[name]))
    xr.testing.assert_identical(info, info2)


def test_synthetic_command_progress(tmp_path, capsys):
    out = tmp_path / "s.nc"
    assert main(["synthetic", "--n-sites", "4", "--out", str(out), "--progress"]) == 0
    assert "synthetic sites" in capsys.readouterr().err
    assert main(["synthetic", "--n-sites", "4", "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


def test_world_reports_its_stages(tmp_path, capsys):
    from soiljax import world as W

    w = W.synthetic_world(5, resolution=30, seed=1, models=(), progress=True)
    err = capsys.readouterr().err
    for stage in ("land cells", "cell climate and covariates", "sites", "forcing"):
        assert stage in err, err
    assert w.n_sites == 5
    W.synthetic_world(5, resolution=30, seed=1, models=())
    assert capsys.readouterr().err == ""
    out = tmp_path / "w"
    assert main(["world", "--n-sites", "30", "--resolution", "30", "--seed", "3", "--models", "clm5",
                 "--out", str(out), "--progress"]) == 0
    err = capsys.readouterr().err
    assert "clm5 truth and observations (steady states)" in err and "5/5" in err, err
    assert main(["world", "--n-sites", "30", "--resolution", "30", "--seed", "3", "--models", "clm5",
                 "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def two_sites():
    model = sj.CLM5()
    forcing, _ = sj.synthetic_sites(2, seed=4, zones=["temperate"])
    obs, _ = sj.synthetic_observations(model, model.default_u(), forcing, seed=4)
    return model, forcing, obs


def test_calibrate_bar_says_compiling_then_summarising(two_sites, monkeypatch, capsys):
    from soiljax.calibration import _run

    model, forcing, obs = two_sites
    seen = {}

    def fake_sample(model, likelihood, sampler, forcing, obs, keys, *, warmup, samples, bar, **kw):
        seen["before first chunk"] = _now(capsys.readouterr().err)
        bar(warmup)
        seen["sampling"] = _now(capsys.readouterr().err)
        bar(samples)
        n = forcing.batch_shape[0]
        return _run._BatchDraws(u=np.full((n, 2, samples, model.n_params), 0.5), acceptance=np.ones((n, 2)),
                                divergences=np.zeros((n, 2), int), step_size=np.ones((n, 2)),
                                start_ok=np.ones(n, bool), n_evals=np.ones(n, int), rescued=np.zeros((n, 2), int))

    def fake_summarize(*args, **kw):
        seen["summarising"] = _now(capsys.readouterr().err)
        return xr.Dataset(attrs={"fake": 1})

    monkeypatch.setattr(_run, "_sample_gradient", fake_sample)
    monkeypatch.setattr(_run, "summarize", fake_summarize)
    _run.calibrate(model, forcing, obs, method="hmc", warmup=6, samples=4, chains=2, extend=0, progress=True)
    assert "compiling" in seen["before first chunk"]
    assert "compiling" not in seen["sampling"] and "summarising" not in seen["sampling"]
    assert "summarising" in seen["summarising"] and "10/10" in seen["summarising"]


def test_calibrate_bar_of_dask_workers_says_compiling_then_summarising(two_sites, tmp_path, monkeypatch, capsys):
    import contextlib

    from soiljax import _dask
    from soiljax.calibration import _run

    model, forcing, obs = two_sites
    seen = {}

    @contextlib.contextmanager
    def fake_cluster(**kw):  # no processes: the run goes to the fake below
        yield object()

    def fake_run(client, job, batches, on_result, report, batch_done=None):  # progress reports only
        seen["before any report"] = _now(capsys.readouterr().err)
        report(10)
        seen["sampling"] = _now(capsys.readouterr().err)
        report(10)  # both batches sampled: the workers summarise
        seen["all sampled"] = _now(capsys.readouterr().err)
        raise _Stop

    monkeypatch.setattr(_dask, "cluster", fake_cluster)
    monkeypatch.setattr(_dask, "run_on_cluster", fake_run)
    with pytest.raises(_Stop):
        _run.calibrate(model, forcing, obs, method="hmc", warmup=6, samples=4, chains=2, extend=0, progress=True,
                       batch_size=1, workers=2, out=tmp_path / "p.nc")
    assert "compiling" in seen["before any report"]
    assert "compiling" not in seen["sampling"] and "summarising" not in seen["sampling"]
    assert "summarising" in seen["all sampled"] and "20/20" in seen["all sampled"]
