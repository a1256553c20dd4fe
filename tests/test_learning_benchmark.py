"""Smoke tests of benchmarks/learning.py (two-stage vs end-to-end on held-out sites)."""

import json

import numpy as np
import pytest
from benchmark_scripts import load_benchmark


def _bench():
    return load_benchmark("learning")


def test_arguments_are_checked():
    bench = _bench()
    with pytest.raises(SystemExit):
        bench._args(["--prior-weight", "1", "--two-stage-target", "truth"])
    with pytest.raises(SystemExit):
        bench._args(["--e2e-only", "--e2e-init", "two-stage"])
    with pytest.raises(SystemExit):
        bench._args(["--proda-filter", "--two-stage-target", "truth"])
    args = bench._args([])
    assert args.models == ["clm5", "compas"] and args.hidden == [256, 512, 512, 256]
    assert args.two_stage_target == "posterior"  # the honest route is the default


def test_score_counts_invalid_sites_as_failures():
    bench = _bench()
    ev = {
        "valid": np.array([True, True, True, False]),
        "nse": np.array([0.9, 0.5, 0.7, np.nan]),
        "stock_1m": np.array([10.0, 12.0, 5.0, np.nan]),
    }
    s = bench.score(ev, np.array([10.0, 10.0, 10.0, 10.0]))
    assert s["valid_fraction"] == 0.75
    assert s["median_nse"] == pytest.approx(0.6)  # median of (-inf, 0.5, 0.7, 0.9)
    assert s["q10_nse"] == -np.inf
    assert s["stock_within_10pct"] == 0.25 and s["stock_within_20pct"] == 0.5
    assert s["median_abs_stock_err"] == pytest.approx(0.35)  # median of (0, 0.2, 0.5, inf)
    assert bench._clean({"a": -np.inf, "b": np.float64(1.5), "c": [np.nan]}) == {"a": None, "b": 1.5, "c": [None]}


@pytest.mark.slow
def test_json_output_holds_the_contract_keys(capsys, tmp_path):
    bench = _bench()
    res = bench.main([
        "--models", "clm5", "--n-sites", "40", "--resolution", "10", "--hidden", "8", "8", "--epochs", "2",
        "--ts-epochs", "2", "--two-stage-target", "truth", "--json", "--no-progress", "--out", str(tmp_path),
    ])
    out = capsys.readouterr().out
    data = json.loads(out)  # stdout is exactly one JSON object
    for key in ("two_stage_heldout_nse", "end_to_end_heldout_nse", "end_to_end_train_s"):
        assert key in data
    assert data["end_to_end_train_s"] > 0
    assert data["two_stage_heldout_nse"] == res["two_stage_heldout_nse"]
    rows = data["results"]["clm5"]["rows"]
    assert set(rows) == {"two_stage", "end_to_end", "true_u", "default_u"}
    assert "truth targets" in rows["two_stage"]["label"]
    assert rows["true_u"]["median_u_corr"] == pytest.approx(1.0)
    for name in ("clm5_two_stage.eqx", "clm5_end_to_end.eqx", "heldout_clm5.nc", "results.json",
                 "heldout_clm5.inputs/forcing.nc", "heldout_clm5.inputs/obs.nc", "heldout_clm5.inputs/covariates.nc"):
        assert (tmp_path / name).exists()
