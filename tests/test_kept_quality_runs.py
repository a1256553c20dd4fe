"""The quality runs of ``method="auto"`` kept under benchmarks/results/calibration_quality/ agree with
their own figures.

Each folder holds the long NUTS reference (``reference.nc``), the ``auto``
posterior (``auto.nc``), the synthetic profiles (``inputs/``) and the figures
``benchmarks/calibration_quality.py`` printed (``result.json``).  A run whose
reference is not finished yet has no ``reference.nc`` and no agreement
figures; its fall-back figures are checked alone.  Where a folder also
holds a second reference run with another seed (``reference_seed1.nc``), its
agreement with the first (the criteria's noise floor) is scored again too.  Scoring the
two posterior files again fails when the criteria drift from what the run
used, or when the files no longer match each other.
"""

import json

import numpy as np
import pytest

import soiljax
from soiljax import calibration as cal

from conftest import REPO

RUNS = sorted(p.parent for p in (REPO / "benchmarks" / "results" / "calibration_quality").glob("*/result.json"))


def test_a_quality_run_is_kept():
    assert RUNS, "benchmarks/results/calibration_quality/ holds no run"


@pytest.mark.parametrize("folder", RUNS, ids=[p.name for p in RUNS])
def test_kept_quality_run_reproduces_its_figures(folder):
    saved = json.loads((folder / "result.json").read_text())
    model = soiljax.model(saved["model"])
    auto = cal.read_posterior(folder / "auto.nc")
    _, _, u_true = cal.read_recovery_inputs(folder / "inputs", model)
    assert auto.sizes["site"] == len(u_true) == saved["profiles"]
    assert np.mean(auto["method_used"].values == "nuts") == pytest.approx(saved["fallback_share"])
    reasons = auto["fallback_reason"].values
    assert saved["fallback_reasons"] == {r: int(np.sum(reasons == r)) for r in sorted(set(reasons)) if r}
    # what the file says of each profile is consistent: fell back exactly where a reason is given
    np.testing.assert_array_equal(auto["method_used"].values == "nuts", reasons != "")
    if not (folder / "reference.nc").is_file():  # the reference is still running: nothing to compare yet
        assert "agreement" not in saved
        return
    reference = cal.read_posterior(folder / "reference.nc")
    assert reference.sizes["site"] == len(u_true)
    agreement = cal.posterior_agreement(auto, reference, u_true)
    for key, value in agreement.items():
        assert value == pytest.approx(saved["agreement"][key], rel=1e-9, nan_ok=True), key
    assert cal.meets_quality_targets(agreement) == saved["targets_met"]
    if (folder / "reference_seed1.nc").is_file():  # the noise floor: a second reference against the first
        second = cal.read_posterior(folder / "reference_seed1.nc")
        floor = cal.posterior_agreement(second, reference, u_true)
        for key, value in floor.items():
            assert value == pytest.approx(saved["noise_floor"]["agreement"][key], rel=1e-9, nan_ok=True), key


def test_posterior_agreement_counts_only_converged_references():
    # a toy pair of datasets: two profiles, one whose reference did not converge
    import xarray as xr

    ref = xr.Dataset({
        "rhat": (("site", "param"), [[1.001, 1.002], [1.2, 1.0]]),
        "u_mean": (("site", "param"), [[0.5, 0.5], [0.5, 0.5]]),
        "u_sd": (("site", "param"), [[0.1, 0.2], [0.1, 0.1]]),
        "soc_q05": (("site", "layer"), [[1.0, 2.0], [1.0, 1.0]]),
        "soc_q50": (("site", "layer"), [[2.0, 4.0], [1.0, 1.0]]),
        "soc_q95": (("site", "layer"), [[3.0, 6.0], [1.0, 1.0]]),
    })
    post = ref.copy(deep=True)
    post["u_mean"][0, 0] = 0.53  # 0.3 sd off: outside 0.25 sd
    post["u_sd"][0, 1] = 0.25  # a factor 1.25: inside 1.33
    post["soc_q95"][0, 1] = 6.2  # 3% of the maximum 6
    got = cal.posterior_agreement(post, ref)
    assert got["profiles_compared"] == 1
    assert got["mean_within_0.25_sd"] == 0.5 and got["sd_within_1.33"] == 1.0
    assert got["soc_quantiles_within_5pct"] == 1.0 and got["soc_q95_within_5pct"] == 1.0
    post["soc_q05"][0, 0] = 1.2  # 10% of the maximum 2
    got = cal.posterior_agreement(post, ref)
    assert got["soc_quantiles_within_5pct"] == got["soc_q05_within_5pct"] == 0.0 and got["soc_q50_within_5pct"] == 1.0
    assert cal.meets_quality_targets({"mean_within_0.25_sd": 0.95, "coverage90_identifiable": 0.99}) == {
        "mean_within_0.25_sd": True, "coverage90_identifiable": False}
