"""The ``soiljax`` command line: parse, load, call the library, write.

Subcommands::

    soiljax simulate --model {clm5,compas} --forcing F.nc [--params P.nc]
                     [--bedrock {proda,closed}] --out OUT.nc
    soiljax synthetic --n-sites N [--seed S] [--zones ...] --out F.nc
    soiljax demo [--out DIR] [--n-sites N] [--seed S]
    soiljax ude ...            (when soiljax.ude.cli is available)

User errors (a missing or malformed file, a missing variable, a wrong unit,
bad options) print one line to stderr and exit with status 2; there is no
traceback.  Each subcommand is a thin wrapper around a library function:
:func:`soiljax.io.simulate_to_file`, :func:`soiljax.synthetic.synthetic_sites`,
``soiljax._demo.run_demo``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem the user can fix (reported without a traceback)."""


def _models():
    from ._models import CLM5, COMPAS

    return {"clm5": CLM5, "compas": COMPAS}


# ---------------------------------------------------------------------------
# simulate
# ---------------------------------------------------------------------------


def _add_simulate(sub) -> None:
    p = sub.add_parser(
        "simulate",
        help="steady states of CLM5 or COMPAS for every site of a forcing file",
        description=(
            "Compute the steady state of every site of a forcing file and write states, SOC, validity, "
            "stocks and the system-level components to a netCDF file. Without --params the model's "
            "default parameters are used; a parameter file with one site applies to all sites."
        ),
    )
    p.add_argument("--model", required=True, choices=["clm5", "compas"], help="model to run")
    p.add_argument("--forcing", required=True, metavar="F.nc", help="forcing file (site, month, layer)")
    p.add_argument("--params", metavar="P.nc", help="parameter file: u (site, param) with parameter names")
    p.add_argument("--bedrock", choices=["proda", "closed"], default="proda",
                   help="transport boundary at bedrock: 'proda' (as the original code) or 'closed' (mass conserving)")
    p.add_argument("--out", required=True, metavar="OUT.nc", help="result file to write")
    p.add_argument("--batch-size", type=int, default=4096,
                   help="sites per batch; each batch is saved as soon as it is done (default 4096)")
    p.add_argument("--restart", action="store_true",
                   help="discard part files of an earlier interrupted run instead of resuming it")
    p.add_argument("--allow-outside-prior", action="store_true",
                   help="accept parameter values outside [0, 1] (e.g. CLM5's default efolding)")
    prog = p.add_mutually_exclusive_group()
    prog.add_argument("--progress", dest="progress", action="store_true", default=None,
                      help="always show a progress bar over batches")
    prog.add_argument("--no-progress", dest="progress", action="store_false",
                      help="never show a progress bar (default: shown on a terminal)")
    p.set_defaults(func=_run_simulate)


def _run_simulate(args) -> int:
    from . import io

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    model = _models()[args.model](bedrock=args.bedrock)
    forcing, sites = io.read_forcing(args.forcing)
    n = forcing.batch_shape[0]
    if args.params:
        u = io.read_params(args.params, model, check_bounds=not args.allow_outside_prior)
        if u.shape[0] not in (1, n):
            raise UserError(
                f"parameter file {args.params!r} has {u.shape[0]} sites but forcing file {args.forcing!r} has {n}; "
                "give one parameter set per site, or one for all sites"
            )
        u = u[0] if u.shape[0] == 1 else u
        origin = args.params
    else:
        u = model.default_u()
        origin = "model defaults"
    progress = args.progress
    if progress is None:
        progress = sys.stderr.isatty()
    io.simulate_to_file(
        model,
        u,
        forcing,
        args.out,
        sites=sites,
        batch_size=args.batch_size,
        progress=progress,
        resume=not args.restart,
        attrs={"forcing_file": str(args.forcing), "parameters": origin},
    )
    print(f"wrote {args.out} ({n} sites, {type(model).__name__}, bedrock={args.bedrock})")
    return 0


# ---------------------------------------------------------------------------
# synthetic
# ---------------------------------------------------------------------------


def _add_synthetic(sub) -> None:
    from .synthetic import ZONES

    p = sub.add_parser(
        "synthetic",
        help="write a forcing file of synthetic sites",
        description="Generate synthetic sites from documented climate zones (see soiljax.synthetic) "
        "and write them as a forcing file.",
    )
    p.add_argument("--n-sites", type=int, required=True, help="number of sites")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--zones", nargs="+", choices=list(ZONES), help="zones to draw from (default: all, equal shares)")
    p.add_argument("--out", required=True, metavar="F.nc", help="forcing file to write")
    p.set_defaults(func=_run_synthetic)


def _run_synthetic(args) -> int:
    from .io import write_forcing
    from .synthetic import synthetic_sites

    if args.n_sites < 1:
        raise UserError(f"--n-sites must be at least 1, got {args.n_sites}")
    forcing, info = synthetic_sites(args.n_sites, seed=args.seed, zones=args.zones)
    write_forcing(forcing, args.out, sites=info)
    print(f"wrote {args.out} ({args.n_sites} synthetic sites, seed {args.seed})")
    return 0


# ---------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="synthetic sites through both models: netCDF results and figures",
        description="Generate synthetic sites, run CLM5 and COMPAS at their default parameters, write "
        "DIR/forcing.nc, DIR/clm5.nc, DIR/compas.nc and PNG figures, and print a summary.",
    )
    p.add_argument("--out", default="soiljax_demo", metavar="DIR", help="output folder (default ./soiljax_demo)")
    p.add_argument("--n-sites", type=int, default=250, help="number of synthetic sites (default 250)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--bedrock", choices=["proda", "closed"], default="proda", help="bedrock boundary (default proda)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from ._demo import run_demo

    if args.n_sites < 1:
        raise UserError(f"--n-sites must be at least 1, got {args.n_sites}")
    run_demo(args.out, n_sites=args.n_sites, seed=args.seed, bedrock=args.bedrock, figures=not args.no_figures)
    return 0


# ---------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------


def _add_ude(sub) -> None:
    """``soiljax ude ...`` when the UDE package provides its command line."""
    try:
        from .ude import cli as ude_cli
    except ImportError:
        return
    if not (hasattr(ude_cli, "add_parser") and hasattr(ude_cli, "run")):
        return
    p = ude_cli.add_parser(sub)
    if p is None:
        p = sub.choices.get("ude")
    if p is not None:
        p.set_defaults(func=ude_cli.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soiljax",
        description="JAX-accelerated, differentiable soil organic carbon models (CLM5, COMPAS).",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"soiljax {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_simulate(sub)
    _add_synthetic(sub)
    _add_demo(sub)
    _add_ude(sub)
    return parser


def _user_error_types() -> tuple[type[BaseException], ...]:
    from ._forcing import ForcingError
    from .io import FileFormatError

    return (UserError, FileFormatError, ForcingError, FileNotFoundError, PermissionError, IsADirectoryError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits with 2 on bad options
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USER_ERROR
    try:
        return int(args.func(args) or 0)
    except _user_error_types() as exc:
        message = " ".join(str(exc).split())
        print(f"soiljax {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"soiljax {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
