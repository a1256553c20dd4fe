"""Quality of ``method="auto"`` against long NUTS reference runs, on the recovery recipe's profiles.

For one model, ``--profiles`` synthetic profiles of the recovery recipe
(:func:`soiljax.calibration.recovery_profiles`: all climate zones, true
``u ~ U(0.1, 0.9)``, 4-8 depths, 10% log-normal noise) are calibrated twice:

* the reference: NUTS with ``--reference-chains`` chains of
  ``--reference-samples`` draws (default 4 x 1,000), the model's default warmup;
* ``method="auto"`` with its defaults (the amortised flow trained on these
  sites, PSIS, NUTS for the profiles that fail).

Only profiles whose reference converged (every R-hat < 1.01) are compared
(:func:`soiljax.calibration.posterior_agreement`): posterior means within 0.25
reference sd, sds within a factor 1.33, the modelled SOC's 5/50/95% quantiles
within 5% of the reference profile's maximum, the 90% intervals' coverage of
the truth for the parameters the reference identifies; and the share of
profiles that fell back to NUTS, with why.  Targets: :data:`QUALITY_TARGETS`.

Both posterior files, the synthetic inputs and ``result.json`` (the figures
printed) are written to ``--out`` (both runs resume when interrupted);
``tests/test_kept_quality_runs.py`` scores the kept files again.

Run:  python benchmarks/calibration_quality.py --model clm5 --profiles 200 --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import soiljax
from soiljax import calibration as cal


def provenance() -> dict:
    """Where and when the figures were measured: the machine (architecture, cores) and the date."""
    return {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d")}


def auto_figures(folder: Path) -> dict:
    """What the auto run alone tells: its fall-backs (share and reasons) and its k-hat quantiles."""
    auto = cal.read_posterior(folder / "auto.nc")
    reasons = auto["fallback_reason"].values
    return {
        "fallback_share": float(np.mean(auto["method_used"].values == "nuts")),
        "fallback_reasons": {r: int(np.sum(reasons == r)) for r in sorted(set(reasons)) if r},
        "pareto_k_quantiles": [float(q) for q in np.quantile(auto["pareto_k"].values, [0.1, 0.5, 0.9])],
    }


def score(model, folder: Path) -> dict:
    """The figures of a kept run: agreement of auto with the reference, and auto's fall-backs."""
    auto = cal.read_posterior(folder / "auto.nc")
    reference = cal.read_posterior(folder / "reference.nc")
    _, _, u_true = cal.read_recovery_inputs(folder / "inputs", model)
    agreement = cal.posterior_agreement(auto, reference, u_true)
    return {
        "agreement": agreement,
        "targets_met": cal.meets_quality_targets(agreement),
        **auto_figures(folder),
        "reference_converged_share": agreement["profiles_compared"] / agreement["profiles"],
    }


def floor(model, folder: Path) -> dict:
    """Agreement of the second reference run with the first: the criteria's Monte Carlo noise floor."""
    reference = cal.read_posterior(folder / "reference.nc")
    second = cal.read_posterior(folder / "reference_seed1.nc")
    _, _, u_true = cal.read_recovery_inputs(folder / "inputs", model)
    agreement = cal.posterior_agreement(second, reference, u_true)
    return {"agreement": agreement, "targets_met": cal.meets_quality_targets(agreement)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["clm5", "compas"], required=True)
    parser.add_argument("--profiles", type=int, default=200, help="synthetic profiles (default 200)")
    parser.add_argument("--reference-chains", type=int, default=4)
    parser.add_argument("--reference-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=2, help="seed of the synthetic profiles (default 2)")
    parser.add_argument("--batch", type=int, default=32, help="profiles per batch of the reference run (default 32)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs and result.json")
    parser.add_argument("--amortizer", type=Path, default=None,
                        help="use this trained flow (a run's POST.nc.amortizer) instead of training one; "
                             "auto_seconds then leaves the training out")
    parser.add_argument("--only", choices=["reference", "auto", "floor", "score"], default=None,
                        help="run only this step; the figures are scored once both runs are there")
    args = parser.parse_args(argv)
    model = soiljax.model(args.model)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if (out / "inputs" / "u_true.nc").is_file():
        forcing, obs, u_true = cal.read_recovery_inputs(out / "inputs", model)
    else:
        forcing, obs, u_true = cal.recovery_profiles(model, args.profiles, seed=args.seed)
        cal.write_recovery_inputs(out / "inputs", model, forcing, obs, u_true,
                                  attrs={"recipe": "recovery_profiles", "seed": args.seed, "noise": 0.1})
    n = forcing.batch_shape[0]
    kept = out / "result.json"
    result = json.loads(kept.read_text()) if kept.is_file() else {}
    result.update({"model": args.model, "profiles": n, "seed": args.seed,
                   "reference": f"NUTS {args.reference_chains} chains x {args.reference_samples} draws"})

    def keep() -> None:
        kept.write_text(json.dumps(result, indent=1) + "\n")

    if args.only in (None, "reference"):
        print(f"{args.model}: reference NUTS, {n} profiles x {args.reference_chains} chains x "
              f"{args.reference_samples} draws", file=sys.stderr)
        t = time.perf_counter()
        cal.calibrate(model, forcing, obs, method="nuts", chains=args.reference_chains,
                      samples=args.reference_samples, batch_size=args.batch, out=out / "reference.nc")
        result["reference_seconds"] = time.perf_counter() - t
        keep()
    if args.only in (None, "auto"):
        print(f"{args.model}: auto, {n} profiles", file=sys.stderr)
        if args.amortizer is None:
            (out / "auto.nc.amortizer").unlink(missing_ok=True)  # timed from scratch: the flow's training too
        t = time.perf_counter()
        cal.calibrate(model, forcing, obs, method="auto", out=out / "auto.nc", resume=False,
                      amortizer=None if args.amortizer is None else cal.load_amortizer(args.amortizer))
        result["auto_seconds"] = time.perf_counter() - t
        result["auto_timing"] = "with training" if args.amortizer is None else "trained flow given: no training"
        result.update(auto_figures(out))  # kept now: the reference may take hours more
        result.update(provenance())
        keep()
    if args.only == "floor":
        print(f"{args.model}: second reference (seed 1) for the noise floor, {n} profiles", file=sys.stderr)
        t = time.perf_counter()
        cal.calibrate(model, forcing, obs, method="nuts", chains=args.reference_chains,
                      samples=args.reference_samples, batch_size=args.batch, seed=1,
                      out=out / "reference_seed1.nc")
        result["floor_seconds"] = time.perf_counter() - t
        keep()
    if (out / "reference_seed1.nc").is_file() and (out / "reference.nc").is_file():
        result["noise_floor"] = floor(model, out)
        keep()
    if not ((out / "reference.nc").is_file() and (out / "auto.nc").is_file()):
        print(f"{out} lacks reference.nc or auto.nc: run the missing step (--only), then --only score",
              file=sys.stderr)
        return 0
    result.update({**provenance(), **score(model, out)})
    keep()
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
