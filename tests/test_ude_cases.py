"""End-to-end tests of the UDE cases and the ``soiljax ude`` command.

These are small end-to-end runs (a few iterations) that check the output contract.  The
targets of the issue (R2 against the clean truth) need full training: the full-size run
of the six cases is ``benchmarks/ude_cases.py``, kept in benchmarks/results/ude_cases/ and
scored again by ``tests/test_kept_ude_cases.py``.
"""

import argparse
import json

import equinox as eqx
import numpy as np
import pytest
import xarray as xr

import soiljax  # noqa: F401
from soiljax.ude import CASES, build_problem, load_estimate, make_synthetic, predict
from soiljax.ude.cli import add_parser, main


def _check_kept_estimate(out, case):
    """``estimate.eqx`` loads back and predicts the profiles the run wrote."""
    assert (out / "estimate.eqx").stat().st_size > 1000
    est = load_estimate(out)
    # cases 1-3 estimate the initial profile, cases 4-6 know it
    assert (est.log_c0 is None) == (case >= 4) and (case >= 4 or est.log_c0.shape == (30,))
    cfg = CASES[case]
    ys, ok = eqx.filter_jit(predict)(est, build_problem(cfg, make_synthetic(cfg.noise)))
    assert bool(ok)
    with xr.open_dataset(out / "profiles.nc") as ds:
        k = 0 if case <= 3 else -1
        np.testing.assert_allclose(np.asarray(ys)[k], ds["c_pred"].values, rtol=1e-12, atol=0)
        np.testing.assert_allclose(np.asarray(ys), ds["field_pred"].values, rtol=1e-12, atol=0)
    return est


def test_cli_contract_files_and_keys(tmp_path):
    out = tmp_path / "c4"
    rc = main(["--case", "4", "--out", str(out), "--adam-iters", "3", "--bfgs-iters", "0",
               "--quiet"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("mse_clean", "r2_clean", "mse_noisy", "r2_noisy"):
        assert np.isfinite(metrics[key])
    ds = xr.open_dataset(out / "profiles.nc")
    for name in ("c_clean", "c_obs", "c_pred"):
        assert ds[name].dims == ("z",) and ds[name].size == 30
    # the metrics can be recomputed from the profiles
    resid = ds["c_pred"].values - ds["c_clean"].values
    np.testing.assert_allclose(np.mean(resid**2), metrics["mse_clean"], rtol=1e-12)
    ds.close()
    for fig in ("profile.png", "residuals.png", "heatmap.png"):
        assert (out / fig).stat().st_size > 1000
    est = _check_kept_estimate(out, 4)
    assert eqx.tree_equal(load_estimate(out / "estimate.eqx"), est)
    # the skeleton comes from metrics.json: other network sizes are refused, not misread
    metrics["hyperparameters"]["h2"] = 32
    (out / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ValueError, match="does not match case 4"):
        load_estimate(out)
    (out / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match="metrics.json is missing"):
        load_estimate(out)


@pytest.mark.slow  # compiles the noise-aware loss, its training and the ensemble refits: ~100 s
@pytest.mark.parametrize("ensemble", ["perturbed", "deep"])
def test_noise_aware_intervals_from_either_ensemble(tmp_path, ensemble):
    out = tmp_path / ensemble
    rc = main(["--case", "3", "--out", str(out), "--noise-aware", "--members", "2", "--ensemble", ensemble,
               "--adam-iters", "3", "--bfgs-iters", "0", "--no-figures", "--quiet"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ensemble"] == ensemble and metrics["ensemble_members"] == 2
    assert metrics["weights"]["smooth"] == 10.0  # the initial-profile prior is on with --noise-aware
    assert 0.0 <= metrics["coverage95_clean"] <= 1.0 and metrics["interval_halfwidth_mean"] > 0
    assert metrics["interval_factor"] == pytest.approx(12.7062047, rel=1e-6)  # Student-t, 1 dof
    _check_kept_estimate(out, 3)  # the centre of the noise-aware fit, not an ensemble member


def test_cli_parser_wiring_and_errors(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="soiljax")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["ude", "--case", "6", "--noise-aware", "--out", "x"])
    assert args.case == 6 and args.noise_aware and args.func is not None
    with pytest.raises(SystemExit):
        parser.parse_args(["ude", "--case", "7", "--out", "x"])
    rc = main(["--case", "1", "--out", str(tmp_path), "--members", "-1", "--quiet"])
    assert rc == 2
    assert "--members must be >= 0" in capsys.readouterr().err
    rc = main(["--case", "2", "--out", str(tmp_path), "--smooth-initial", "-1", "--quiet"])
    assert rc == 1
    assert "smooth_initial must be a finite number >= 0" in capsys.readouterr().err
    assert parser.parse_args(["ude", "--case", "2", "--out", "x", "--smooth-initial", "10"]).smooth_initial == 10.0


def test_interval_factor_is_student_t():
    from soiljax.ude import interval_factor

    assert interval_factor(5) == pytest.approx(2.7764451, rel=1e-6)
    assert interval_factor(10_000) == pytest.approx(1.959964, rel=1e-3)
    assert interval_factor(8, level=0.9) == pytest.approx(1.8945786, rel=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        interval_factor(1)
