"""The parameter-learning run kept under benchmarks/results/learning_250 agrees with its own figures.

``benchmarks/learning.py --out`` keeps, per model, the two learners (``.eqx``), the held-out
predictions (``heldout_<model>.nc``), the held-out sites' inputs (``heldout_<model>.inputs/``:
forcing, observations, covariates), the calibrations' posterior summaries (``posterior_<model>.nc``,
with their wall time in ``posterior_<model>.json``) and the figures it printed (``results.json``).
The checks:

- the figures come out again from the kept per-site predictions with the script's own scoring
  (``score``, ``paired_comparison``): a change of the metrics fails;
- the kept learners, the true u and the default u, solved anew on the kept held-out inputs, give
  the kept per-site predictions and so the same figures: a change of the models, the observation
  operator or the learners' prediction fails;
- the calibration figures (accepted share, median NSE) come out again from the kept posteriors.

The held-out inputs are read from the kept files rather than drawn again from the world's
recipe, as the kept recovery runs do (tests/test_kept_runs.py): on another CPU type the solves
behind the synthetic observations can differ in their last bits.
"""

import json

import numpy as np
import pytest
import xarray as xr
from benchmark_scripts import load_benchmark

import soiljax
from soiljax.calibration import proda_filter, read_posterior
from soiljax.io import read_forcing, read_observations
from soiljax.learning import evaluate, load_learner, pearson

from conftest import REPO

RUN = REPO / "benchmarks" / "results" / "learning_250"
MODELS = {"clm5": soiljax.CLM5, "compas": soiljax.COMPAS}
ROWS = ("true_u", "default_u", "two_stage", "end_to_end")
LEARNERS = ("two_stage", "end_to_end")
# shares of sites on either side of a threshold: when the per-site values are solved anew, on
# another CPU the last bits of a solve may differ and move one site across the threshold
THRESHOLD_SHARES = {"nse_gt_0", "stock_within_10pct", "stock_within_20pct"}


def _bench():
    return load_benchmark("learning")


def _saved() -> dict:
    return json.loads((RUN / "results.json").read_text())


def _heldout(name: str) -> xr.Dataset:
    with xr.open_dataset(RUN / f"heldout_{name}.nc") as ds:
        return ds.load()


def _inputs(name: str):
    folder = RUN / f"heldout_{name}.inputs"
    forcing, _ = read_forcing(folder / "forcing.nc")
    # synthetic COMPAS profiles can hold more carbon than the unit check expects of real soils
    obs, obs_ds = read_observations(folder / "obs.nc", check_units=False)
    with xr.open_dataset(folder / "covariates.nc") as ds:
        cov = ds.load()
    return forcing, obs, obs_ds, cov


def _correlate(ev: dict, u_true: np.ndarray, names) -> dict:
    """Add r(u) and RMSE(u) per parameter over the valid sites, as ``evaluate`` and the script do."""
    u, valid = ev["u"], ev["valid"]
    ev["u_corr"] = {p: pearson(u[valid, i], u_true[valid, i]) for i, p in enumerate(names)}
    ev["u_rmse"] = {p: float(np.sqrt(np.mean((u[valid, i] - u_true[valid, i]) ** 2))) for i, p in enumerate(names)}
    r = np.array(list(ev["u_corr"].values()))
    ev["median_u_corr"] = float(np.nanmedian(r)) if np.isfinite(r).any() else float("nan")
    return ev


def _kept_evals(ds: xr.Dataset, names) -> dict:
    """Per row, the dict ``score`` takes, rebuilt from the kept per-site predictions."""
    u_true = ds["u_true"].values
    evals = {}
    for key in ROWS:
        ev = {
            "u": ds[f"u_{key}"].values,
            "valid": ds[f"valid_{key}"].values.astype(bool),
            "nse": ds[f"nse_{key}"].values,
            "stock_1m": ds[f"stock_1m_{key}"].values,
        }
        evals[key] = ev if key == "default_u" else _correlate(ev, u_true, names)  # constant u: no r(u)
    return evals


def _same(value, saved, key, *, rel, n=None):
    """``value`` recomputed against ``saved`` from results.json (where non-finite numbers are null)."""
    if isinstance(value, dict):
        assert set(value) == set(saved), key
        for k, v in value.items():
            _same(v, saved[k], f"{key}.{k}", rel=rel, n=n)
    elif saved is None:
        assert not np.isfinite(value), (key, value)
    elif isinstance(value, (bool, np.bool_, int, np.integer)):
        assert value == saved, (key, value, saved)
    elif n is not None and key in THRESHOLD_SHARES:
        assert abs(value - saved) <= 1.5 / n, (key, value, saved)
    else:
        assert value == pytest.approx(saved, rel=rel, abs=1e-12), (key, value, saved)


def _check_rows(bench, evals, stock_true, saved_res, *, rel, n=None):
    for key, ev in evals.items():
        row = bench.score(ev, stock_true)
        saved_row = saved_res["rows"][key]
        assert set(row) <= set(saved_row), key
        for k, v in row.items():
            _same(v, saved_row[k], f"{key}.{k}", rel=rel, n=n)
    paired = bench.paired_comparison(evals["end_to_end"], evals["two_stage"])
    if n is None:
        _same(paired, saved_res["paired"], "paired", rel=rel)
    else:  # site by site, a solve's last bits may turn an exact tie or a near one
        for k in ("end_to_end_better", "two_stage_better"):
            assert abs(paired[k] - saved_res["paired"][k]) <= 1, k
    beats = evals["end_to_end"], evals["two_stage"]
    medians = [bench.score(ev, stock_true)["median_nse"] for ev in beats]
    if n is None or abs(medians[0] - medians[1]) > 1e-6:
        assert (medians[0] > medians[1]) == saved_res["end_to_end_beats_two_stage"]


def test_kept_run_is_the_recorded_recipe():
    saved = _saved()
    s = saved["settings"]
    # the command in benchmarks/results/README.md: both models, defaults, 250 sites, kept here
    assert s["models"] == list(MODELS) and s["n_sites"] == 250 and s["seed"] == 0
    assert s["two_stage_target"] == "posterior" and not s["e2e_only"] and s["e2e_init"] == "scratch"
    assert s["out"] == "benchmarks/results/learning_250"  # relative: no path of the machine it ran on
    assert set(saved["results"]) == set(MODELS)
    for name, res in saved["results"].items():
        ds = _heldout(name)
        forcing, obs, obs_ds, cov = _inputs(name)
        n = res["n_test"]
        assert ds.sizes["site"] == n == obs.batch_shape[0] == forcing.batch_shape[0] == cov.sizes["site"]
        site = ds["site"].values.astype(str)
        for other in (obs_ds["site"].values, cov["site"].values):
            np.testing.assert_array_equal(np.asarray(other).astype(str), site)
        for key in ("n_sites", "seed", "resolution", "noise"):
            assert cov.attrs[key] == s[key] == obs_ds.attrs[key], key
        assert cov.attrs["model"] == name
        # the observations the predictions were scored against are the kept ones
        k = min(ds.sizes["obs"], obs.soc.shape[1])
        mask = np.asarray(obs.mask)[:, :k]
        np.testing.assert_array_equal(np.where(mask, np.asarray(obs.soc)[:, :k], np.nan),
                                      np.where(mask, ds["obs_soc"].values[:, :k], np.nan))
        # the table's summary keys are the rows' figures
        for key in ROWS:
            assert saved[f"{name}_{key}_median_nse"] == res["rows"][key]["median_nse"]


@pytest.mark.parametrize("name", list(MODELS))
def test_figures_rescore_from_kept_predictions(name):
    bench = _bench()
    res = _saved()["results"][name]
    ds = _heldout(name)
    evals = _kept_evals(ds, list(ds["param"].values))
    _check_rows(bench, evals, ds["stock_1m_true"].values, res, rel=1e-12)


@pytest.mark.parametrize("name", list(MODELS))
def test_kept_learners_reproduce_the_heldout_predictions(name):
    bench = _bench()
    res = _saved()["results"][name]
    model = MODELS[name]()
    ds = _heldout(name)
    forcing, obs, _, cov = _inputs(name)
    x = cov["covariates"].values
    u_true = ds["u_true"].values
    np.testing.assert_array_equal(np.asarray(ds["param"].values), model.param_names)

    stock_true = np.asarray(soiljax.soc_stock(soiljax.batched_steady_state(model, u_true, forcing).soc, 1.0))
    np.testing.assert_allclose(stock_true, ds["stock_1m_true"].values, rtol=1e-6)

    evals = {
        "true_u": bench.reference_eval(model, u_true, forcing, obs, u_true),
        "default_u": bench.reference_eval(model, np.broadcast_to(np.asarray(model.default_u()), u_true.shape),
                                          forcing, obs, u_true, correlate=False),
    }
    for key in LEARNERS:
        learner = load_learner(RUN / f"{name}_{key}.eqx")
        assert learner.model_name == name and tuple(learner.covariate_names) == tuple(cov["covariate"].values)
        evals[key] = evaluate(model, learner, x, forcing, obs, u_true=u_true)
        np.testing.assert_allclose(evals[key]["pred"], ds[f"soc_pred_{key}"].values, rtol=1e-6, err_msg=key)
    for key, ev in evals.items():
        np.testing.assert_allclose(ev["u"], ds[f"u_{key}"].values, rtol=1e-9, atol=1e-12, err_msg=key)
        np.testing.assert_array_equal(ev["valid"], ds[f"valid_{key}"].values.astype(bool), err_msg=key)
        for v in ("nse", "stock_1m"):
            np.testing.assert_allclose(ev[v], ds[f"{v}_{key}"].values, rtol=1e-6, atol=1e-9, err_msg=f"{v}_{key}")
    _check_rows(bench, evals, stock_true, res, rel=1e-6, n=res["n_test"])


@pytest.mark.parametrize("name", list(MODELS))
def test_calibration_figures_come_from_the_kept_posteriors(name):
    # the two-stage learners were trained on these posterior means (train + validation sites)
    res = _saved()["results"][name]
    cal = res["calibration"]
    post = read_posterior(RUN / f"posterior_{name}.nc")
    assert post.attrs["model"] == name.upper() and post.attrs["method"] == "nuts"
    assert post.sizes["site"] == cal["profiles"] == res["n_train"] + res["n_val"]
    heldout = _heldout(name)["site"].values.astype(str)
    assert not set(post["site"].values.astype(str)) & set(heldout)  # the held-out sites were not calibrated
    accepted = post["accepted"].values
    np.testing.assert_array_equal(proda_filter(post["rhat_mean"].values, post["nse"].values), accepted)
    assert cal["accepted_fraction"] == pytest.approx(accepted.mean(), rel=1e-12)
    assert cal["rhat_mean_lt_1.05"] == pytest.approx(np.mean(post["rhat_mean"].values < 1.05), rel=1e-12)
    assert cal["median_nse"] == pytest.approx(np.nanmedian(post["nse"].values), rel=1e-12)
    usable = np.all(np.isfinite(post["u_mean"].values), axis=1)
    assert cal["finite_u_mean_fraction"] == pytest.approx(usable.mean(), rel=1e-12)
    wall = json.loads((RUN / f"posterior_{name}.json").read_text())["wall_s"]
    assert cal["wall_s"] == pytest.approx(wall) == res["rows"]["two_stage"]["calib_s"]
