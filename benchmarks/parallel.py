"""Parallel throughput on Dask against the worker pool it replaced, measured side by side.

Runs the same workloads with this tree and with a baseline revision of the
repository (default: the last commit before the site-batch engine, whose
``calibrate(workers=N)`` used a hand-written process pool), each in a fresh
Python process, one after the other, so that both see the same machine:

* ``simulate``: ``simulate_to_file`` of N synthetic sites (CLM5 steady states,
  stocks and components, written batch by batch), in one process and with
  ``workers=W`` (Dask; the baseline has no parallel simulate, so its row is
  the one-process run);
* ``calibrate``: NUTS on P synthetic CLM5 profiles (the recovery recipe: 4-8
  depths, 10% noise), with ``workers=W`` (Dask here, the process pool in the
  baseline) and in one process;
* ``steady_state``: ``batched_steady_state`` of N sites in this process.

Everything is included (process start, imports, compilation, files), as a
user would time a command.  The table gives sites (profiles) per second and
the ratio this tree / baseline; ``--json FILE`` writes the figures.  The
issue asks the Dask rows to be at least 0.9x the baseline's.

Run:  python benchmarks/parallel.py [--baseline REV] [--sites 20000] [--profiles 48] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "ff2d3b1"
"""The last commit with the hand-written worker pool (soiljax/_workers.py)."""

_WORKLOAD = r"""
import json, sys, tempfile, time
from pathlib import Path
start = time.perf_counter()
import numpy as np
import soiljax
from soiljax import calibration as cal
from soiljax import io

kind, n, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = Path(tempfile.mkdtemp()) / "out.nc"
model = soiljax.CLM5()
if kind == "steady_state":
    forcing, _ = soiljax.synthetic_sites(n, seed=1)
    t0 = time.perf_counter()
    soiljax.batched_steady_state(model, model.default_u(), forcing).soc.sum()
    seconds = time.perf_counter() - t0
elif kind == "simulate":
    forcing, sites = soiljax.synthetic_sites(n, seed=1)
    kw = {"workers": workers} if workers > 1 else {}
    t0 = time.perf_counter()
    io.simulate_to_file(model, model.default_u(), forcing, out, sites=sites, batch_size=4096, **kw)
    seconds = time.perf_counter() - t0
else:
    forcing, _ = soiljax.synthetic_sites(n, seed=2)
    rng = np.random.default_rng(3)
    u_true = np.clip(model.default_u() + rng.normal(0, 0.1, (n, model.n_params)), 0.05, 0.95)
    obs, _ = soiljax.synthetic_observations(model, u_true, forcing, seed=4)
    t0 = time.perf_counter()
    cal.calibrate(model, forcing, obs, method="nuts", warmup=200, samples=200, batch_size=max(1, n // 4),
                  out=out, progress=False, workers=workers)
    seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "total_seconds": time.perf_counter() - start}))
"""


def _export(rev: str, folder: Path) -> Path:
    """The package of revision ``rev`` extracted under ``folder`` (``git archive``)."""
    archive = folder / "tree.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), rev, "soiljax"],
                   check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    return folder


def _run(tree: Path, kind: str, n: int, workers: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.run([sys.executable, "-c", _WORKLOAD, kind, str(n), str(workers)], env=env,
                          capture_output=True, text=True, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        raise SystemExit(f"{kind} (workers={workers}) failed with {tree}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["total_seconds"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", default=BASELINE, help=f"revision to compare with (default {BASELINE})")
    ap.add_argument("--sites", type=int, default=20000, help="sites of the simulate and steady-state rows")
    ap.add_argument("--profiles", type=int, default=48, help="CLM5 profiles of the calibrate rows")
    ap.add_argument("--workers", type=int, default=2, help="worker processes of the parallel rows (default 2)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = ap.parse_args(argv)

    rows = [  # (name, kind, n, workers here, workers in the baseline)
        ("steady_state", "steady_state", args.sites, 1, 1),
        ("simulate_1", "simulate", args.sites, 1, 1),
        (f"simulate_{args.workers}", "simulate", args.sites, args.workers, 1),
        ("calibrate_1", "calibrate", args.profiles, 1, 1),
        (f"calibrate_{args.workers}", "calibrate", args.profiles, args.workers, args.workers),
    ]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = _export(args.baseline, Path(tmp))
        print(f"{'row':<14} {'n':>7} {'baseline s':>11} {'this tree s':>12} {'per s, base':>12} "
              f"{'per s, this':>12} {'ratio':>6}", flush=True)
        for name, kind, n, w_here, w_base in rows:
            t_base = _run(base, kind, n, w_base)
            t_here = _run(ROOT, kind, n, w_here)
            results[name] = {"n": n, "workers": w_here, "baseline_workers": w_base, "baseline_s": round(t_base, 2),
                             "this_s": round(t_here, 2), "ratio": round(t_base / t_here, 3)}
            print(f"{name:<14} {n:>7} {t_base:>11.1f} {t_here:>12.1f} {n / t_base:>12.1f} {n / t_here:>12.1f} "
                  f"{t_base / t_here:>6.2f}", flush=True)
    info = {"baseline": args.baseline, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "date": time.strftime("%Y-%m-%d"), "rows": results}
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
