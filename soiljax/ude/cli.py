"""``soiljax ude``: run one of the paper's six UDE cases.

Wired into the main ``soiljax`` command through :func:`add_parser` and :func:`run`; also
runnable on its own as ``python -m soiljax.ude.cli --case 1 --out DIR``.
"""

from __future__ import annotations

import argparse
import sys

from ._options import ADJOINT_NAMES, NOISE_FAMILIES

DESCRIPTION = (
    "Train the SOC universal differential equation on one of the paper's six cases "
    "and write DIR/metrics.json, DIR/profiles.nc, the trained estimate DIR/estimate.eqx "
    "and the figures (profile.png, residuals.png, heatmap.png)."
)


def _configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--case", type=int, required=True, choices=range(1, 7), metavar="{1..6}",
                   help="1-3: t = 0 profile with 0/7/35%% noise; 4-6: t = 50 yr profile "
                        "with 0/7/35%% noise")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--grid-search", action="store_true",
                   help="select (H1, H2, activation, lr) from the paper's 16-point grid "
                        "by validation loss before the final training")
    p.add_argument("--noise-aware", action="store_true",
                   help="fit a learned multiplicative noise likelihood (with a smoothness "
                        "prior on an estimated initial profile) and add 95%% intervals from a "
                        "perturbed ensemble (for the noisy cases 2, 3, 5 and 6)")
    p.add_argument("--noise-family", default="normal", choices=NOISE_FAMILIES,
                   help="likelihood of the noise-aware loss (default: normal)")
    ar1 = p.add_mutually_exclusive_group()
    ar1.add_argument("--ar1", dest="ar1", action="store_true", default=None,
                     help="AR-1 correlated noise over depth in the noise-aware likelihood "
                          "(default: on for case 6, whose data carry it)")
    ar1.add_argument("--no-ar1", dest="ar1", action="store_false")
    p.add_argument("--smooth-initial", type=float, default=None, metavar="LAMBDA",
                   help="beyond the paper, cases 1-3: add LAMBDA x the mean squared second "
                        "difference of the estimated log initial profile to the loss, a "
                        "smoothness prior that stops it copying the noise of the t = 0 "
                        "observation (default: 10 with --noise-aware, else 0 as in the paper)")
    p.add_argument("--smooth-profiles", type=float, default=None, metavar="LAMBDA",
                   help="beyond the paper: add LAMBDA x the mean squared second difference "
                        "over depth of the log modelled profiles (all sample times) to the "
                        "loss, a prior against turning driver noise into jagged profiles "
                        "(default 0; 10 with --noise-aware fixes case 6)")
    p.add_argument("--ensemble", default="perturbed", choices=["perturbed", "deep"],
                   help="intervals from refits of perturbed data warm-started at the fit "
                        "(default) or from fully independent fits (deep ensemble; --members "
                        "times the cost of the fit)")
    p.add_argument("--members", type=int, default=8,
                   help="ensemble members for the intervals with --noise-aware (default 8)")
    p.add_argument("--adam-iters", type=int, default=None,
                   help="override the case's Adam iterations")
    p.add_argument("--bfgs-iters", type=int, default=None,
                   help="override the case's L-BFGS iterations")
    p.add_argument("--grid-iters", type=int, default=100,
                   help="Adam iterations per grid-search trial (default 100)")
    p.add_argument("--adjoint", default="recursive", choices=sorted(ADJOINT_NAMES),
                   help="diffrax adjoint for the gradients (default: recursive)")
    p.add_argument("--seed", type=int, default=0, help="network initialisation seed")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``ude`` subcommand to an argparse ``subparsers`` object."""
    p = subparsers.add_parser("ude", help="SOC universal differential equation cases",
                              description=DESCRIPTION)
    _configure(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the case described by parsed ``args``; returns a process exit code."""
    import soiljax  # noqa: F401  (enables float64)

    from ._cases import run_case

    for name in ("members", "adam_iters", "bfgs_iters", "grid_iters"):
        value = getattr(args, name)
        if value is not None and value < 0:
            print(f"soiljax ude: --{name.replace('_', '-')} must be >= 0, got {value}",
                  file=sys.stderr)
            return 2
    if args.noise_aware and args.members == 1:
        print("soiljax ude: --members must be 0 (no intervals) or at least 2",
              file=sys.stderr)
        return 2
    try:
        run_case(
            args.case,
            args.out,
            grid_search_on=args.grid_search,
            noise_aware=args.noise_aware,
            noise_family=args.noise_family,
            ar1=args.ar1,
            members=args.members,
            adam_iters=args.adam_iters,
            bfgs_iters=args.bfgs_iters,
            grid_iters=args.grid_iters,
            adjoint=args.adjoint,
            seed=args.seed,
            progress=not args.quiet,
            figures=not args.no_figures,
            smooth_initial=args.smooth_initial,
            smooth_profiles=args.smooth_profiles,
            ensemble=args.ensemble,
        )
    except (ValueError, RuntimeError, OSError) as err:
        print(f"soiljax ude: {err}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    parser = _configure(argparse.ArgumentParser(prog="soiljax ude", description=DESCRIPTION))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
