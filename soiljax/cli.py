"""The ``soiljax`` command line: parse, load, call the library, write.

Subcommands::

    soiljax simulate --model {clm5,compas} --forcing F.nc [--params P.nc]
                     [--bedrock {proda,closed}] --out OUT.nc
    soiljax synthetic --n-sites N [--seed S] [--zones ...] --out F.nc
    soiljax calibrate --model {clm5,compas} --forcing F.nc --obs OBS.nc --out POST.nc
                      [--method {hmc,nuts,proda}] [--chains 3] [--warmup N] [--samples N]
                      [--batch N] [--likelihood ...] [--bedrock {proda,closed}]
    soiljax demo [--out DIR] [--n-sites N] [--seed S]
    soiljax ude ...            (when soiljax.ude.cli is available)

User errors (a missing or malformed file, a missing variable, a wrong unit,
bad options) print one line to stderr and exit with status 2; there is no
traceback.  Each subcommand is a thin wrapper around a library function:
:func:`soiljax.io.simulate_to_file`, :func:`soiljax.synthetic.synthetic_sites`,
:func:`soiljax.calibration.calibrate`, ``soiljax._demo.run_demo``.
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
# calibrate
# ---------------------------------------------------------------------------

_LIKELIHOODS = ("default", "lognormal", "gaussian", "proda")


def _add_calibrate(sub) -> None:
    p = sub.add_parser(
        "calibrate",
        help="site-level Bayesian calibration of CLM5 or COMPAS against observed SOC profiles",
        description=(
            "Sample the posterior of every observed profile's parameters (uniform priors in u, "
            "MODELS.md) with BlackJAX, all profiles and chains at once, and write posterior summaries, "
            "R-hat, ESS, NSE and PRODA's acceptance filter to a netCDF file. Sites of the forcing and "
            "observation files are paired in order. Finished batches are kept in POST.nc.parts/; "
            "rerunning the same command resumes."
        ),
    )
    p.add_argument("--model", required=True, choices=["clm5", "compas"], help="model to calibrate")
    p.add_argument("--forcing", required=True, metavar="F.nc", help="forcing file (site, month, layer)")
    p.add_argument("--obs", required=True, metavar="OBS.nc", help="observation file: depth (m), soc (gC m-3) on (site, obs)")
    p.add_argument("--out", required=True, metavar="POST.nc", help="posterior file to write")
    p.add_argument("--method", choices=["hmc", "nuts", "proda"], default="nuts",
                   help="sampler: NUTS (default), fixed-length HMC, or PRODA's random walk + adaptive Metropolis")
    p.add_argument("--chains", type=int, default=3, help="chains per profile (default 3)")
    p.add_argument("--warmup", type=int, default=400, help="adaptation iterations per chain (default 400)")
    p.add_argument("--samples", type=int, default=500,
                   help="draws kept per chain (default 500; for --method proda the kept draws are thinned to this)")
    p.add_argument("--batch", type=int, default=128, help="profiles sampled together and saved per part file (default 128)")
    p.add_argument("--likelihood", choices=_LIKELIHOODS, default="default",
                   help="'lognormal' (multiplicative error; default for nuts/hmc), 'gaussian', or 'proda' "
                        "(PRODA's cost of the model; default for --method proda)")
    p.add_argument("--sigma", type=float, default=0.1,
                   help="relative error of the lognormal/gaussian likelihood where the file has no soc_sd (default 0.1)")
    p.add_argument("--max-doublings", type=int, default=6, help="NUTS tree depth cap (default 6: <= 63 steps)")
    p.add_argument("--steps", type=int, default=12, help="leapfrog steps per HMC iteration (default 12)")
    p.add_argument("--keep-draws", type=int, default=0, metavar="N", help="also store N thinned draws per chain")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--bedrock", choices=["proda", "closed"], default="proda",
                   help="transport boundary at bedrock: 'proda' (as the original code) or 'closed' (mass conserving)")
    p.add_argument("--restart", action="store_true",
                   help="discard part files of an earlier interrupted run instead of resuming it")
    prog = p.add_mutually_exclusive_group()
    prog.add_argument("--progress", dest="progress", action="store_true", default=None,
                      help="always show the progress bar")
    prog.add_argument("--no-progress", dest="progress", action="store_false",
                      help="never show the progress bar (default: shown on a terminal)")
    p.set_defaults(func=_run_calibrate)


def _run_calibrate(args) -> int:
    from . import calibration as cal
    from . import io

    for flag in ("chains", "samples", "batch"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.chains < 2:
        raise UserError("--chains must be at least 2: R-hat compares chains (PRODA uses 3)")
    if args.warmup < 0:
        raise UserError(f"--warmup must be >= 0, got {args.warmup}")
    if not args.sigma > 0:
        raise UserError(f"--sigma must be positive, got {args.sigma}")
    model = _models()[args.model](bedrock=args.bedrock)
    forcing, sites = io.read_forcing(args.forcing)
    obs, obs_sites = io.read_observations(args.obs)
    n_f, n_o = forcing.batch_shape[0], obs.batch_shape[0]
    if n_f != n_o:
        raise UserError(
            f"forcing file {args.forcing!r} has {n_f} sites but observation file {args.obs!r} has {n_o}; "
            "give one forcing site per observed profile, in the same order"
        )
    labels_f, labels_o = sites["site"].values, obs_sites["site"].values if "site" in obs_sites.coords else None
    if labels_o is not None and len(labels_o) == n_f and not all(str(a) == str(b) for a, b in zip(labels_f, labels_o)):
        raise UserError(
            f"the site labels of {args.forcing!r} and {args.obs!r} differ (first: {labels_f[0]!r} vs {labels_o[0]!r}); "
            "the files must list the same sites in the same order"
        )
    sampler = {"nuts": lambda: cal.NUTS(max_num_doublings=args.max_doublings),
               "hmc": lambda: cal.HMC(num_integration_steps=args.steps),
               "proda": lambda: cal.ProdaMetropolis()}[args.method]()
    likelihood = {"default": None, "lognormal": cal.LogNormal(sigma=args.sigma), "gaussian": cal.Gaussian(rel_sigma=args.sigma),
                  "proda": cal.proda_likelihood(model)}[args.likelihood]
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    from ._parts import PartsMismatchError

    try:
        ds = cal.calibrate(
            model, forcing, obs, method=sampler, likelihood=likelihood, chains=args.chains, warmup=args.warmup,
            samples=args.samples, batch_size=args.batch, seed=args.seed, out=args.out, resume=not args.restart,
            progress=progress, keep_draws=args.keep_draws, site_id=labels_f,
            attrs={"forcing_file": str(args.forcing), "obs_file": str(args.obs)},
        )
    except PartsMismatchError as exc:
        raise UserError(str(exc)) from exc
    n_acc = int(ds["accepted"].sum())
    print(
        f"wrote {args.out} ({n_f} profiles, {type(model).__name__}, {args.method}): "
        f"{n_acc} accepted by PRODA's filter (mean R-hat < 1.05 and NSE > 0), "
        f"median NSE {float(ds['nse'].median()):.3f}, median max R-hat {float(ds['rhat_max'].median()):.3f}"
    )
    return 0


# ---------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="synthetic sites through both models: netCDF results and figures",
        description="Generate synthetic sites, run CLM5 and COMPAS at their default parameters, write "
        "DIR/forcing.nc, DIR/clm5.nc, DIR/compas.nc and PNG figures, calibrate CLM5 on synthetic observed "
        "profiles of some of the sites (DIR/obs.nc, DIR/posterior_clm5.nc, DIR/calibration_profiles.png), "
        "and print a summary.",
    )
    p.add_argument("--out", default="soiljax_demo", metavar="DIR", help="output folder (default ./soiljax_demo)")
    p.add_argument("--n-sites", type=int, default=250, help="number of synthetic sites (default 250)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--bedrock", choices=["proda", "closed"], default="proda", help="bedrock boundary (default proda)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--calibrate-sites", type=int, default=12, metavar="N",
                   help="calibrate CLM5 on N synthetic observed profiles (default 12; 0 skips the step)")
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from ._demo import run_demo

    if args.n_sites < 1:
        raise UserError(f"--n-sites must be at least 1, got {args.n_sites}")
    if args.calibrate_sites < 0:
        raise UserError(f"--calibrate-sites must be >= 0, got {args.calibrate_sites}")
    run_demo(args.out, n_sites=args.n_sites, seed=args.seed, bedrock=args.bedrock, figures=not args.no_figures,
             calibrate_sites=args.calibrate_sites, progress=sys.stderr.isatty())
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
    _add_calibrate(sub)
    _add_demo(sub)
    _add_ude(sub)
    return parser


def _user_error_types() -> tuple[type[BaseException], ...]:
    from ._forcing import ForcingError
    from ._observations import ObservationError
    from .io import FileFormatError

    return (UserError, FileFormatError, ForcingError, ObservationError, FileNotFoundError, PermissionError, IsADirectoryError)


_CACHED_COMMANDS = ("calibrate", "demo")
"""Commands that keep JAX's compiled programs on disk between runs: the ones
whose compile time dominates short runs (NUTS takes ~30 s to compile) and whose
programs were checked with the cache on.  Tests switch it off
(``SOILJAX_CACHE_DIR=""``) to stay hermetic."""


def _enable_compilation_cache() -> None:
    """Keep compiled programs between runs (the samplers take ~30 s to compile).

    The cache lives in $SOILJAX_CACHE_DIR or ~/.cache/soiljax/xla; set
    SOILJAX_CACHE_DIR to an empty string to switch it off.  The setting is
    global to the process (it stays on for later compilations).
    """
    import os
    from pathlib import Path

    folder = os.environ.get("SOILJAX_CACHE_DIR", str(Path.home() / ".cache" / "soiljax" / "xla"))
    if not folder:
        return
    try:
        import jax

        Path(folder).mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", folder)
    except (OSError, AttributeError):  # read-only home or an old JAX: run without a cache
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits with 2 on bad options
    if getattr(args, "command", None) in _CACHED_COMMANDS:
        _enable_compilation_cache()
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
