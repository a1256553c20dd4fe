"""Calibrate CLM5 and COMPAS on the real Dutch Soil Map profiles.

Reads the normal soil profiles shipped by ``dutchsoils`` (``soiljax.dutch``),
builds the approximate Netherlands forcing of :func:`soiljax.dutch.netherlands_forcing`,
calibrates every profile with each model (NUTS, 3 chains, log-normal error
with the map's per-horizon spread as ``soc_sd``), and reports the NSE
distribution per soil group, the PRODA acceptance filter and the fitted vs
observed profiles of a few soil types (one figure per model).

    pip install -e ".[dutch]"
    python benchmarks/dutch.py --out dutch_out            # both models, all profiles
    python benchmarks/dutch.py --out dutch_out --n 60     # a quick look

Results: ``OUT/posterior_{clm5,compas}.nc``, ``OUT/profiles_{model}.png``,
``OUT/summary.json``; an interrupted run resumes (``soiljax.calibration``'s
part files).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="dutch_out")
    p.add_argument("--models", nargs="+", choices=["clm5", "compas"], default=["clm5", "compas"])
    p.add_argument("--n", type=int, default=None, help="only the first N profiles")
    p.add_argument("--warmup", type=int, default=None, help="default: the model's (calibration.DEFAULT_WARMUP)")
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--workers", type=int, default=1, help="worker processes, e.g. one per CPU core")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def group_table(post, groups) -> dict:
    """NSE quantiles and acceptance per soil group."""
    table = {}
    nse = post["nse"].values
    for g in ["all"] + sorted(set(groups)):
        sel = np.ones(len(groups), bool) if g == "all" else (groups == g)
        x = nse[sel]
        table[g] = {
            "n": int(sel.sum()),
            "nse_q10": float(np.quantile(x, 0.1)),
            "nse_median": float(np.median(x)),
            "nse_q90": float(np.quantile(x, 0.9)),
            "nse_gt_0": float(np.mean(x > 0)),
            "accepted": float(np.mean(post["accepted"].values[sel])),
            "rhat_mean_lt_1.05": float(np.mean(post["rhat_mean"].values[sel] < 1.05)),
        }
    return table


def example_sites(groups, nse, per_group=1) -> list[int]:
    """One profile per soil group (the median-NSE one), peat first."""
    order = ["peat", "peaty", "clay", "sand", "podzol", "loam"]
    picks = []
    for g in order:
        idx = np.flatnonzero(groups == g)
        if idx.size:
            finite = idx[np.isfinite(nse[idx])]
            idx = finite if finite.size else idx
            picks.append(int(idx[np.argsort(nse[idx])[len(idx) // 2]]))
    return picks[: 6 * per_group]


def main(argv=None):
    args = _args(argv)
    import soiljax
    from soiljax.calibration import NUTS, LogNormal, calibrate, calibration_figure
    from soiljax.dutch import dutch_profiles, netherlands_forcing

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    obs, meta = dutch_profiles()
    if args.n is not None:
        obs, meta = obs[: args.n], meta.isel(site=slice(0, args.n))
    forcing, _ = netherlands_forcing(meta)
    groups = meta["soil_group"].values.astype(str)
    labels = meta["site"].values
    summary = {"n_profiles": int(len(labels)), "groups": {g: int((groups == g).sum()) for g in sorted(set(groups))}}
    for name in args.models:
        model = soiljax.model(name)
        default_valid = np.asarray(soiljax.batched_steady_state(model, model.default_u(), forcing).valid)
        t0 = time.perf_counter()
        post = calibrate(model, forcing, obs, method=NUTS(), likelihood=LogNormal(), warmup=args.warmup,
                         samples=args.samples, batch_size=args.batch, seed=args.seed, out=out / f"posterior_{name}.nc",
                         site_id=labels, progress=True, workers=args.workers)
        wall = time.perf_counter() - t0
        post = post.assign_coords(soil_group=("site", groups))
        table = group_table(post, groups)
        summary[name] = {"wall_s": wall, "valid_at_defaults": float(default_valid.mean()),
                         "start_ok": float(post["start_ok"].mean()), "by_group": table}
        print(f"\n{name.upper()}: {len(labels)} profiles in {wall:.0f} s; valid at default parameters "
              f"{100 * default_valid.mean():.0f}%", file=sys.stderr)
        print(f"{'group':8s} {'n':>4s} {'NSE q10':>8s} {'median':>8s} {'q90':>8s} {'NSE>0':>6s} {'R-hat ok':>8s} {'accepted':>8s}")
        for g, row in table.items():
            print(f"{g:8s} {row['n']:4d} {row['nse_q10']:8.3f} {row['nse_median']:8.3f} {row['nse_q90']:8.3f} "
                  f"{row['nse_gt_0']:6.2f} {row['rhat_mean_lt_1.05']:8.2f} {row['accepted']:8.2f}")
        sites = example_sites(groups, post["nse"].values)
        fig = calibration_figure(post, sites=sites, max_depth=1.3)
        fig.savefig(out / f"profiles_{name}.png", dpi=110)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
