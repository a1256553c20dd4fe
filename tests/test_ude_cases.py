"""End-to-end tests of the UDE cases and the ``soiljax ude`` command.

The smoke test (a few iterations, checks the output contract) is fast; the targets of
the issue (R2 against the clean truth) need full training and are marked slow.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

import soiljax  # noqa: F401
from soiljax.ude.cli import add_parser, main


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


_RUN_CASE = (
    "import json, sys\n"
    "from soiljax.ude import run_case\n"
    "m = run_case(int(sys.argv[1]), sys.argv[2], progress=False, figures=False, **json.loads(sys.argv[3]))\n"
    "print(json.dumps({k: m[k] for k in ('r2_clean', 'coverage95_clean') if k in m}))\n"
)


def _run_case_in_fresh_process(case: int, out, **options) -> dict:
    """Full training of one case in its own Python process.

    At the end of the whole suite, in a process that had already compiled
    hundreds of other programs, XLA crashed (segmentation fault) while
    compiling case 1's training step; a fresh process keeps these long runs
    independent of what ran before them.
    """
    res = subprocess.run([sys.executable, "-c", _RUN_CASE, str(case), str(out), json.dumps(options)],
                         capture_output=True, text=True, timeout=3000)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


# Cases 1 and 4 meet their targets with the paper's plain loss.  With 7% noise the plain loss
# follows the noise of the heavily weighted focus profile (R2 0.984 and 0.989, see
# benchmarks/UDE_RESULTS.md); the noise-aware fit (learned-noise likelihood, and in case 2 the
# smoothness prior on the estimated initial profile) meets the 0.999 target.  Cases 3 and 6
# (35% noise): the noise-aware targets, R2 >= 0.95 against the clean truth (the plain
# loss: 0.61 and -0.06) and 95% intervals covering the clean profile at 85-100% of the depths.
TARGET_RUNS = {
    1: {},
    4: {},
    2: {"noise_aware": True, "members": 0},
    5: {"noise_aware": True, "members": 0},
    3: {"noise_aware": True, "members": 5},
    6: {"noise_aware": True, "members": 5, "smooth_profiles": 10.0},  # its drivers carry 35% noise
}
LONGEST_FIRST = (6, 5, 3, 2, 1, 4)  # measured: ~9, 9, 6, 3, 1.5, 1.5 minutes on one core


@pytest.fixture(scope="module")
def case_runs(request, tmp_path_factory):
    """The full training runs of the selected slow tests, started together, one per CPU core.

    Each run is its own process; running them side by side halves the wall time
    of this module on the 2-core CI machine.  Maps case -> future of its metrics.
    """
    from concurrent.futures import ThreadPoolExecutor

    selected = {item.callspec.params["case"] for item in request.session.items
                if item.module is request.module and item.get_closest_marker("slow")
                and hasattr(item, "callspec")}
    selected = [case for case in LONGEST_FIRST if case in selected]
    root = tmp_path_factory.mktemp("ude_cases")
    pool = ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1)))
    futures = {case: pool.submit(_run_case_in_fresh_process, case, root / f"case{case}", **TARGET_RUNS[case])
               for case in selected}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.slow
@pytest.mark.parametrize("case,target", [(1, 0.9999), (4, 0.9999), (2, 0.999), (5, 0.999)])
def test_case_meets_target(case_runs, case, target):
    metrics = case_runs[case].result()
    assert metrics["r2_clean"] >= target, metrics


@pytest.mark.slow
@pytest.mark.parametrize("case", [3, 6])
def test_noise_aware_fixes_the_35_percent_cases(case_runs, case):
    metrics = case_runs[case].result()
    assert metrics["r2_clean"] >= 0.95, metrics
    assert 0.85 <= metrics["coverage95_clean"] <= 1.0, metrics
