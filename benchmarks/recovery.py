"""Parameter recovery: PRODA's validation recipe on synthetic profiles, and calibration speed.

For each model: draw synthetic sites (all five zones of ``soiljax.synthetic``)
and true parameters ``u_true`` ~ U(0.1, 0.9)^d, redrawing a site's
parameters until its steady state is valid; observe 4-8 depths per profile
with 10% multiplicative (log-normal) noise; calibrate every profile; and
compare with the truth:

- convergence: mean R-hat < 1.05 (PRODA's criterion, with the rank-normalised
  split R-hat), the same with PRODA's own Gelman-Rubin R-hat, and max
  R-hat < 1.05;
- fit: NSE of the posterior-mean profile > 0.9, next to the same figure for
  the *true* profile against the noisy observations (the ceiling a fit can
  reach at this noise and depth design), and the fit's NSE > 0.9 among the
  profiles whose truth reaches 0.9;
- coverage: the 90% credible interval [u_q05, u_q95] contains u_true, among
  *identifiable* (profile, parameter) pairs: those whose posterior sd of u is
  below half the prior sd (1/sqrt(12)), i.e. the data shrank the prior's
  variance at least four-fold.  Pairs not identified this way mostly sit
  at their prior and would cover trivially;
- stocks: the posterior-mean SOC stock to 1 m within 10% of the true stock,
  next to the fraction an exact sampler would reach on average given the
  posterior widths (``stock_within_10pct_expected``: the information the
  observations hold about the stock limits this criterion, not the sampler);
- cost: model (gradient) evaluations per effective sample (smallest bulk ESS
  over the parameters), and wall time (compilation included);
- extension: the share of profiles whose chains were extended because their
  mean R-hat was still >= 1.05 after sampling (``--extend``, default the
  model's), and how many of those then passed.

``--method proda`` runs PRODA's sampler instead (use ``--n-sites`` small: it
spends 210,000 model evaluations per chain).  Prints a table; ``--json``
writes the figures; ``--out`` keeps the posterior file, and the synthetic
profiles in ``POST.nc.inputs/``.

    python benchmarks/recovery.py --model clm5 --n-sites 1000
    python benchmarks/recovery.py --model compas --n-sites 500
    python benchmarks/recovery.py --model clm5 --n-sites 40 --method proda
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["clm5", "compas"], default="clm5")
    p.add_argument("--n-sites", type=int, default=500)
    p.add_argument("--method", choices=["nuts", "hmc", "proda"], default="nuts")
    p.add_argument("--chains", type=int, default=3)
    p.add_argument("--warmup", type=int, default=None, help="default: the model's (calibration.DEFAULT_WARMUP)")
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--extend", type=int, default=None, metavar="N",
                   help="extension rounds for profiles failing the R-hat rule (default: the model's, "
                        "calibration.DEFAULT_EXTEND)")
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--max-doublings", type=int, default=None, help="NUTS tree depth cap (default: the model's)")
    p.add_argument("--steps", type=int, default=12, help="HMC leapfrog steps")
    p.add_argument("--mass-matrix", choices=["diagonal", "dense"], default="diagonal",
                   help="mass matrix adapted by NUTS/HMC during warmup (default diagonal)")
    p.add_argument("--proda-steps", type=int, nargs=2, default=[20_000, 50_000], metavar=("RW", "AM"),
                   help="PRODA's random-walk and adaptive steps (default 20000 50000)")
    p.add_argument("--noise", type=float, default=0.1)
    p.add_argument("--devices", type=int, default=1,
                   help="spread each batch over this many (host CPU) devices; set before JAX starts")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes, one batch each at a time, each pinned to its share of the cores")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--out", metavar="POST.nc", help="also write the posterior file")
    p.add_argument("--resume", action="store_true",
                   help="with --out: keep the finished batches of an interrupted run with the same settings and "
                        "compute only the rest, on the profiles saved in POST.nc.inputs/ (the wall time then covers "
                        "this invocation only)")
    p.add_argument("--keep-draws", type=int, default=0, metavar="N",
                   help="store N thinned draws per chain in the posterior file (with --out)")
    return p.parse_args(argv)


def _inputs(args, model):
    """The synthetic profiles: (forcing, obs, u_true, number of profiles).

    With ``--out POST.nc`` they are also saved in ``POST.nc.inputs/`` (forcing,
    observations, true parameters) and read back from there, and ``--resume``
    reads them from there instead of drawing them again: the model solves
    behind the observations may differ in their last bits on another CPU,
    which would make the finished batches' fingerprint no longer match.
    """
    from pathlib import Path

    from soiljax.calibration import read_recovery_inputs, recovery_profiles, write_recovery_inputs

    recipe = {"model": args.model, "n_sites": args.n_sites, "seed": args.seed, "noise": args.noise}
    folder = Path(args.out + ".inputs") if args.out else None
    if args.resume and folder is not None and (folder / "u_true.nc").exists():
        import xarray as xr

        with xr.open_dataset(folder / "u_true.nc") as ds:
            saved = {k: ds.attrs.get(k) for k in recipe}
        if {k: str(v) for k, v in saved.items()} != {k: str(v) for k, v in recipe.items()}:
            raise SystemExit(f"{folder} holds the profiles of {saved}, not of {recipe}: use another --out, or drop "
                             "--resume to draw the profiles anew")
        print(f"resuming: reading the profiles saved in {folder}", file=sys.stderr)
    else:
        forcing, obs, u_true = recovery_profiles(model, args.n_sites, seed=args.seed, noise=args.noise)
        if folder is None:
            return forcing, obs, u_true, len(u_true)
        write_recovery_inputs(folder, model, forcing, obs, u_true, attrs=recipe)
    # read back even what was just written, so that a resumed run sees the very same arrays
    forcing, obs, u_true = read_recovery_inputs(folder, model)
    return forcing, obs, u_true, len(u_true)


def main(argv=None):
    args = _args(argv)
    if args.resume and not args.out:
        raise SystemExit("--resume needs --out POST.nc: the finished batches are kept as part files next to it")
    if args.devices > 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_force_host_platform_device_count={args.devices}").strip()
    import jax

    import soiljax
    from soiljax.calibration import HMC, NUTS, ProdaMetropolis, calibrate
    from soiljax.calibration import score_recovery

    model = soiljax.model(args.model)
    forcing, obs, u_true, n_valid = _inputs(args, model)
    dense = args.mass_matrix == "dense"
    sampler = {
        "nuts": NUTS(max_num_doublings=args.max_doublings, dense_mass=dense),
        "hmc": HMC(num_integration_steps=args.steps, dense_mass=dense),
        "proda": ProdaMetropolis(num_random_walk=args.proda_steps[0], num_adaptive=args.proda_steps[1]),
    }[args.method]
    mesh = soiljax.site_mesh() if len(jax.devices()) > 1 else None
    print(f"{args.model}: {n_valid} profiles with valid truths (of {args.n_sites}); {args.method}, "
          f"{args.chains} chains, warmup {args.warmup or 'default'}, samples {args.samples}, batch {args.batch}, "
          f"{len(jax.devices())} device(s) [{jax.devices()[0].platform}]", file=sys.stderr)
    t0 = time.perf_counter()
    out = args.out
    resumed = 0
    if args.resume:
        from soiljax.io import parts_dir

        resumed = len(list(parts_dir(out).glob("part_*.nc"))) if parts_dir(out).exists() else 0
        if os.path.exists(out) and not resumed:
            resumed = -(-n_valid // args.batch)  # a finished run: calibrate reads it back
            print(f"resuming: {out} is a finished run; reading it back", file=sys.stderr)
        elif resumed:
            print(f"resuming: {resumed} finished batch(es) in {parts_dir(out)} are kept", file=sys.stderr)
    if args.workers > 1 and out is None:  # the workers hand their batches over as part files
        scratch = tempfile.TemporaryDirectory()
        out = os.path.join(scratch.name, "posterior.nc")
    post = calibrate(model, forcing, obs, method=sampler, chains=args.chains, warmup=args.warmup,
                     samples=args.samples, extend=None if args.method == "proda" else args.extend,
                     batch_size=args.batch, seed=args.seed, out=out, keep_draws=args.keep_draws,
                     resume=args.resume, progress=True, mesh=mesh, workers=args.workers)
    wall = time.perf_counter() - t0
    res = score_recovery(model, post, forcing, obs, u_true)
    depth = post.attrs.get("max_doublings")  # numpy integers once read back from a file
    res.update({"model": args.model, "method": args.method, "wall_s": wall, "chains": args.chains,
                "warmup": int(post.attrs["warmup"]), "samples": args.samples, "batch": args.batch,
                "devices": len(jax.devices()), "workers": args.workers, "platform": jax.devices()[0].platform,
                "max_doublings": None if depth is None else int(depth), "mass_matrix": args.mass_matrix,
                "draws_per_chain": int(post.attrs.get("samples", args.samples)),
                "extend": int(post.attrs.get("extend", 0)), "batches_resumed": resumed})
    if "thinning" in post:
        thinning = post["thinning"].values
        res["extended_profiles"] = float(np.mean(thinning > 1))
        res["extended_profiles_rhat_mean_lt_1.05"] = (
            float(np.mean(post["rhat_mean"].values[thinning > 1] < 1.05)) if (thinning > 1).any() else float("nan"))
    targets = {
        "rhat_mean_lt_1.05": ">= 0.95", "rhat_max_lt_1.05": "(>= 0.95)",
        "rhat_gr_mean_lt_1.05": "(PRODA's R-hat)", "nse_gt_0.9": ">= 0.95",
        "nse_truth_gt_0.9": "(ceiling)",
        "coverage90_identifiable": "(all profiles)", "coverage90_identifiable_accepted": "0.80-0.98",
        "stock_within_10pct": ">= 0.90",
        "stock_within_10pct_expected": "(limit)", "nse_gt_0.9_where_truth_gt_0.9": "(reachable)",
    }
    print(f"\n{'quantity':32s} {'value':>12s}  target")
    for key, val in res.items():
        if isinstance(val, float):
            print(f"{key:32s} {val:12.4g}  {targets.get(key, '')}")
        else:
            print(f"{key:32s} {val!s:>12s}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)
    return res


if __name__ == "__main__":
    main()
