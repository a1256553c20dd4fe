"""Smoke test of benchmarks/recovery.py: its saved profiles and --resume."""

import json

import numpy as np
import pytest
import xarray as xr
from benchmark_scripts import load_benchmark


def _bench():
    return load_benchmark("recovery")


@pytest.mark.slow  # two calibrations of 3 CLM5 profiles, compile included: about a minute
def test_resume_reads_the_saved_profiles(tmp_path, capsys):
    bench = _bench()
    out = tmp_path / "post.nc"
    argv = ["--model", "clm5", "--n-sites", "3", "--warmup", "20", "--samples", "10", "--batch", "2",
            "--out", str(out), "--json", str(tmp_path / "a.json")]
    first = bench.main(argv)
    inputs = out.parent / "post.nc.inputs"
    assert sorted(p.name for p in inputs.iterdir()) == ["forcing.nc", "obs.nc", "u_true.nc"]
    with xr.open_dataset(inputs / "u_true.nc") as ds:
        assert ds.attrs["model"] == "clm5" and int(ds.attrs["seed"]) == 0
    # a resumed run reads the profiles from there (they could differ in their last
    # bits if drawn again on another CPU) and reads the finished run back
    again = bench.main(argv + ["--resume"])
    assert "reading the profiles saved in" in capsys.readouterr().err
    assert again["batches_resumed"] == 2
    for key in ("rhat_mean_lt_1.05", "nse_gt_0.9", "stock_within_10pct", "model_evals_per_ess_median"):
        if key in first:
            np.testing.assert_equal(again[key], first[key])
    assert json.loads((tmp_path / "a.json").read_text())["batches_resumed"] == 2
    # the saved profiles belong to their recipe
    with pytest.raises(SystemExit, match="holds the profiles of"):
        bench.main(argv[:3] + ["4"] + argv[4:] + ["--resume"])
