"""Calibration at scale: ``method="auto"`` against NUTS, side by side in one run.

For each model, synthetic profiles of the recovery recipe
(:func:`soiljax.calibration.recovery_profiles`: all climate zones, true
``u ~ U(0.1, 0.9)``, 4-8 depths, 10% log-normal noise) are calibrated

* with ``method="auto"`` (importance sampling from an approximation, PSIS
  k-hat per profile, NUTS for the profiles that fail it), all of them;
* with ``method="nuts"``, the first ``--nuts`` of them (the baseline).

Times include everything a user waits for: compilation, sampling, summaries
and the posterior file.  The table gives profiles per second of each method,
their ratio, the share of profiles that fell back to NUTS and why, the
distribution of k-hat, and, on the profiles both methods ran, the agreement of
``auto`` with NUTS where NUTS converged (every R-hat < 1.05): posterior means
within 0.25 NUTS sd, sd within a factor 1.33, the modelled SOC's 5/50/95%
quantiles within 5% of the profile's maximum.  (The issue's quality test
compares with long NUTS references, 4 chains x 1,000 draws; this run's NUTS
is the default 3 x 500, so the agreement figures are indicative.)

``--json`` prints one JSON object (keys ``clm5_profiles_per_s``,
``compas_profiles_per_s``, ``clm5_speedup_vs_nuts``,
``compas_speedup_vs_nuts``, ``fallback_share_clm5``,
``fallback_share_compas`` and more); ``--out DIR`` keeps the posterior files.

Run:  python benchmarks/calibration_scale.py [--clm5 10000] [--compas 10000] [--nuts 200] [--json] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import soiljax
from soiljax import calibration as cal


RHAT_COMPARED = 1.05
"""Profiles whose NUTS run has every R-hat below this are compared (3 chains x 500 draws rarely reach 1.01)."""


def _agreement(auto, nuts) -> dict:
    """Agreement of ``auto`` with NUTS on the profiles both ran, where NUTS converged."""
    return cal.posterior_agreement(auto.isel(site=slice(0, nuts.sizes["site"])), nuts, rhat_reference=RHAT_COMPARED)


def run_model(name: str, n: int, n_nuts: int, out: Path, seed: int) -> dict:
    model = soiljax.model(name)
    forcing, obs, _ = cal.recovery_profiles(model, n, seed=seed)
    n = forcing.batch_shape[0]
    n_nuts = min(n_nuts, n)
    row = {"model": name, "profiles": n}
    (out / f"{name}_auto.nc.amortizer").unlink(missing_ok=True)  # timed from scratch: the flow's training too
    t = time.perf_counter()
    auto = cal.calibrate(model, forcing, obs, method="auto", out=out / f"{name}_auto.nc", resume=False)
    row["auto_seconds"] = time.perf_counter() - t
    row["auto_profiles_per_s"] = n / row["auto_seconds"]
    used = auto["method_used"].values
    row["fallback_share"] = float(np.mean(used == "nuts"))
    reasons = auto["fallback_reason"].values
    row["fallback_reasons"] = {r: int(np.sum(reasons == r)) for r in sorted(set(reasons)) if r}
    row["pareto_k_quantiles"] = [float(q) for q in np.quantile(auto["pareto_k"].values, [0.1, 0.5, 0.9])]
    row["auto_accepted"] = float(auto["accepted"].mean())
    flow_file = out / f"{name}_auto.nc.amortizer"
    if flow_file.is_file():  # absent where the run was too small to train a flow (Auto's min_profiles)
        flow_info = dict(cal.load_amortizer(flow_file).info)
        row["flow_training_seconds"] = flow_info["simulate_s"] + flow_info["fit_s"]  # part of auto_seconds
        row["flow_epochs"] = flow_info["epochs"]
    if n_nuts:
        t = time.perf_counter()
        nuts = cal.calibrate(model, forcing[:n_nuts], obs[:n_nuts], method="nuts", out=out / f"{name}_nuts.nc",
                             resume=False)
        row["nuts_profiles"] = n_nuts
        row["nuts_seconds"] = time.perf_counter() - t
        row["nuts_profiles_per_s"] = n_nuts / row["nuts_seconds"]
        row["speedup_vs_nuts"] = row["auto_profiles_per_s"] / row["nuts_profiles_per_s"]
        row["agreement_with_nuts"] = _agreement(auto, nuts)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clm5", type=int, default=10_000, help="CLM5 profiles for auto (default 10000)")
    parser.add_argument("--compas", type=int, default=10_000, help="COMPAS profiles for auto (default 10000)")
    parser.add_argument("--nuts", type=int, default=200, help="profiles also run with NUTS (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="keep the posterior files in this folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="calibration_scale_"))
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name, n in (("clm5", args.clm5), ("compas", args.compas)):
        if n > 0:
            print(f"{name}: {n} profiles with auto, {min(n, args.nuts)} with NUTS", file=sys.stderr)
            rows[name] = run_model(name, n, args.nuts, out, args.seed)
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, JAX backend "
                   f"{__import__('jax').default_backend()}",
        "date": time.strftime("%Y-%m-%d"),
    }
    for name in ("clm5", "compas"):
        r = rows.get(name, {})
        summary[f"{name}_profiles_per_s"] = r.get("auto_profiles_per_s")
        summary[f"{name}_speedup_vs_nuts"] = r.get("speedup_vs_nuts")
        summary[f"fallback_share_{name}"] = r.get("fallback_share")
    summary["runs"] = rows
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    print(f"{'model':8} {'profiles':>8} {'auto /s':>9} {'nuts /s':>9} {'speed-up':>9} {'fell back':>9}  k-hat 10/50/90%")
    for name, r in rows.items():
        print(f"{name:8} {r['profiles']:8d} {r['auto_profiles_per_s']:9.3f} {r.get('nuts_profiles_per_s', float('nan')):9.3f} "
              f"{r.get('speedup_vs_nuts', float('nan')):9.2f} {100 * r['fallback_share']:8.1f}%  "
              + " / ".join(f"{k:.2f}" for k in r["pareto_k_quantiles"]))
        print(f"         fell back because: {r['fallback_reasons'] or 'none'}; agreement with NUTS: "
              f"{r.get('agreement_with_nuts')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
