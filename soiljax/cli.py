"""The ``soiljax`` command line: parse, load, call the library, write.

Subcommands::

    soiljax simulate --model {clm5,compas} --forcing F.nc [--params P.nc]
                     [--bedrock {proda,closed}] [--workers N | --scheduler ADDRESS | --scheduler-file FILE]
                     --out OUT.nc
    soiljax synthetic --n-sites N [--seed S] [--zones ...] --out F.nc
    soiljax calibrate --model {clm5,compas} --forcing F.nc --obs OBS.nc --out POST.nc
                      [--method {auto,hmc,nuts,proda}] [--chains 3] [--warmup N] [--samples N]
                      [--extend N] [--batch N] [--likelihood ...] [--bedrock {proda,closed}]
                      [--workers N | --scheduler ADDRESS | --scheduler-file FILE]
    soiljax world --n-sites N [--resolution DEG] [--seed S] --out DIR
    soiljax learn --model {clm5,compas} (--world DIR | --covariates SITES.nc ...)
                  [--approach {two-stage,end-to-end}] [--posterior POST.nc] --out NET.eqx
    soiljax predict --net NET.eqx [NET2.eqx] --world DIR --out DIR
                    [--workers N | --scheduler ADDRESS | --scheduler-file FILE]
    soiljax demo [--out DIR] [--n-sites N] [--seed S]
    soiljax ude ...            (when soiljax.ude.cli is available)

User errors (a missing or malformed file, a missing variable, a wrong unit,
bad options) print one line to stderr and exit with status 2; there is no
traceback.  ``--workers N`` computes batches on a local Dask cluster of N
pinned worker processes, ``--scheduler``/``--scheduler-file`` on any Dask
cluster (:mod:`soiljax._dask`).  Each subcommand is a thin wrapper around a library function:
:func:`soiljax.simulate_to_file`, :func:`soiljax.synthetic.synthetic_sites`,
:func:`soiljax.calibration.calibrate`, :func:`soiljax.world.synthetic_world`,
:func:`soiljax.learning.train_two_stage` / :func:`~soiljax.learning.train_end_to_end` (on the sites
that :func:`~soiljax.learning.two_stage_data` / :func:`~soiljax.learning.end_to_end_data` pair by label),
:func:`soiljax.learning.predict_maps`, ``soiljax._demo.run_demo``.
Option defaults are the library's (:mod:`soiljax._options`, which imports no
JAX, so that options are checked before JAX starts).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

from ._options import MODELS

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem the user can fix (reported without a traceback)."""


def _add_progress(p) -> None:
    """--progress / --no-progress (default: a progress bar when stderr is a terminal)."""
    prog = p.add_mutually_exclusive_group()
    prog.add_argument("--progress", dest="progress", action="store_true", default=None,
                      help="always show progress bars")
    prog.add_argument("--no-progress", dest="progress", action="store_false",
                      help="never show progress bars (default: shown on a terminal)")


def _progress(args) -> bool:
    return args.progress if args.progress is not None else sys.stderr.isatty()


def _add_plausibility(p) -> None:
    p.add_argument("--allow-implausible", action="store_true",
                   help="accept inputs that fail the plausibility checks (annual carbon input per site far outside "
                        "what ecosystems produce, observation depths below the model grid), e.g. for experiments")


def _plausibility(args) -> dict:
    """Keyword arguments of the file readers for the plausibility checks."""
    return {"check_plausible": not getattr(args, "allow_implausible", False)}


def _check_output_file(path) -> None:
    """Refuse an output path that cannot be written, before any work."""
    from ._parts import check_output_path

    check_output_path(path)


def _add_cluster(p, workers_help: str) -> None:
    """--workers / --scheduler / --scheduler-file: where the batches are computed (soiljax/_dask.py)."""
    g = p.add_argument_group("parallel and distributed runs (Dask)")
    g.add_argument("--workers", type=int, default=1, help=workers_help)
    where = g.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="compute the batches on the Dask cluster of this scheduler (tcp://HOST:PORT), e.g. one "
                            "started with dask-jobqueue on Slurm (see README); finished batches come back here")
    where.add_argument("--scheduler-file", metavar="FILE",
                       help="as --scheduler, with the address read from the file a scheduler writes "
                            "(dask scheduler --scheduler-file FILE)")


def _check_cluster(args) -> None:
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    if args.workers > 1 and (args.scheduler or args.scheduler_file):
        raise UserError("--workers starts local worker processes; with --scheduler or --scheduler-file the cluster's "
                        "own workers compute the batches: drop --workers")


@contextlib.contextmanager
def _dask_client(args):
    """The Dask client of ``--workers N`` (a local cluster), ``--scheduler``/``--scheduler-file``; None for
    one process.  Prints the dashboard's address when there is one."""
    from ._dask import ClusterError, cluster

    with contextlib.ExitStack() as stack:
        try:
            client = stack.enter_context(cluster(workers=args.workers, scheduler=args.scheduler,
                                                 scheduler_file=args.scheduler_file,
                                                 echo=lambda line: print(line, file=sys.stderr)))
        except ClusterError as exc:
            raise UserError(str(exc)) from None
        yield client


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
    p.add_argument("--model", required=True, choices=MODELS, help="model to run")
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
    _add_cluster(p, "batches computed at a time, each by a Dask worker process pinned to its share of the CPU cores "
                    "(default 1: in this process)")
    _add_plausibility(p)
    _add_progress(p)
    p.set_defaults(func=_run_simulate)


def _check_simulate(args) -> None:
    """Refuse bad options before anything is read or compiled."""
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    _check_cluster(args)
    _check_output_file(args.out)


def _run_simulate(args) -> int:
    _check_simulate(args)
    from . import io
    from ._registry import model as soil_model
    from ._simulate import simulate_to_file
    from ._sites import SitePairingError, pair_sites

    model = soil_model(args.model, bedrock=args.bedrock)
    forcing, sites = io.read_forcing(args.forcing, **_plausibility(args))
    n = forcing.batch_shape[0]
    if args.params:
        u, p_sites = io.read_params(args.params, model, check_bounds=not args.allow_outside_prior, with_sites=True)
        if u.shape[0] not in (1, n):
            raise UserError(
                f"parameter file {args.params!r} has {u.shape[0]} sites but forcing file {args.forcing!r} has {n}; "
                "give one parameter set per site, or one for all sites"
            )
        if u.shape[0] == 1:
            u = u[0]
        else:
            try:
                order = pair_sites(sites["site"].values, p_sites, what=f"forcing file {args.forcing!r}",
                                   other_what=f"parameter file {args.params!r}")
            except SitePairingError as exc:
                raise UserError(str(exc)) from None
            if order is not None:
                u = u[order]
        origin = args.params
    else:
        u = model.default_u()
        origin = "model defaults"
    progress = _progress(args)
    with _dask_client(args) as client:
        simulate_to_file(
            model,
            u,
            forcing,
            args.out,
            sites=sites,
            batch_size=args.batch_size,
            progress=progress,
            resume=not args.restart,
            attrs={"forcing_file": str(args.forcing), "parameters": origin},
            client=client,
        )
    print(f"wrote {args.out} ({n} sites, {type(model).__name__}, bedrock={args.bedrock})")
    return 0


# ---------------------------------------------------------------------------
# synthetic
# ---------------------------------------------------------------------------


def _add_synthetic(sub) -> None:
    from ._options import ZONES

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
    _add_progress(p)
    p.set_defaults(func=_run_synthetic)


def _run_synthetic(args) -> int:
    if args.n_sites < 1:
        raise UserError(f"--n-sites must be at least 1, got {args.n_sites}")
    _check_output_file(args.out)
    from .io import write_forcing
    from .synthetic import synthetic_sites

    forcing, info = synthetic_sites(args.n_sites, seed=args.seed, zones=args.zones, progress=_progress(args))
    write_forcing(forcing, args.out, sites=info)
    print(f"wrote {args.out} ({args.n_sites} synthetic sites, seed {args.seed})")
    return 0


# ---------------------------------------------------------------------------
# calibrate
# ---------------------------------------------------------------------------

_LIKELIHOODS = ("default", "lognormal", "gaussian", "proda")
_MAX_DOUBLINGS = 20
"""Largest NUTS tree-depth cap the command line takes: 2**20 - 1 leapfrog steps per
iteration already means the step size has collapsed, and deeper trees only spend memory."""


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
    p.add_argument("--model", required=True, choices=MODELS, help="model to calibrate")
    p.add_argument("--forcing", required=True, metavar="F.nc", help="forcing file (site, month, layer)")
    p.add_argument("--obs", required=True, metavar="OBS.nc", help="observation file: depth (m), soc (gC m-3) on (site, obs)")
    p.add_argument("--out", required=True, metavar="POST.nc", help="posterior file to write")
    p.add_argument("--method", choices=["auto", "hmc", "nuts", "proda"], default="auto",
                   help="sampler: auto (default: importance sampling from an amortised neural posterior trained on "
                        "these sites, PSIS k-hat and ESS per profile, NUTS for the profiles that fail them; with "
                        "fewer profiles than repay the flow's training (200 for CLM5, 32 for COMPAS) and no "
                        "--amortizer, NUTS for all), NUTS, fixed-length HMC, or PRODA's random walk + adaptive "
                        "Metropolis")
    p.add_argument("--amortizer", default=None, metavar="FILE",
                   help="--method auto: the trained flow to propose from; a FILE that exists is reused (profiles "
                        "outside its training domain fall back to NUTS), one that does not is trained on these "
                        "sites and saved there (default: trained, and kept as POST.nc.amortizer for a resume)")
    p.add_argument("--approximation", choices=["npe", "laplace", "pathfinder"], default=None,
                   help="--method auto: the approximate posterior that importance sampling corrects: npe "
                        "(default: the amortised flow), laplace or pathfinder (per profile, from L-BFGS paths)")
    p.add_argument("--chains", type=int, default=3, help="chains per profile (default 3)")
    p.add_argument("--warmup", type=int, default=None,
                   help="adaptation iterations per chain (default: 400 for CLM5, 800 for COMPAS; 200 for the "
                        "fall-back of --method auto, which starts from the flow's draws)")
    p.add_argument("--samples", type=int, default=500,
                   help="draws kept per chain (default 500; for --method proda the kept draws are thinned to this)")
    p.add_argument("--extend", type=int, default=None, metavar="N",
                   help="nuts/hmc: a profile whose mean R-hat is still >= 1.05 continues its chains for up to N more "
                        "rounds of --samples iterations, its draws thinned back to --samples (default: 0 for CLM5, "
                        "3 for COMPAS; 0 turns it off)")
    p.add_argument("--batch", type=int, default=128,
                   help="profiles sampled together, at most, and saved per part file; the profiles are spread evenly "
                        "over ceil(profiles / N) batches (default 128; on a CPU, 32 ran CLM5's NUTS fastest per "
                        "core, see benchmarks/README.md)")
    _add_cluster(p, "batches computed at a time, each by a Dask worker process pinned to its share of the CPU "
                    "cores (default 1: in this process; on a CPU machine give one per core)")
    p.add_argument("--likelihood", choices=_LIKELIHOODS, default="default",
                   help="'lognormal' (multiplicative error; default for nuts/hmc), 'gaussian', or 'proda' "
                        "(PRODA's cost of the model; default for --method proda)")
    p.add_argument("--sigma", type=float, default=None,
                   help="relative error of the lognormal/gaussian likelihood where the file has no soc_sd "
                        "(default 0.1; not for PRODA's cost)")
    p.add_argument("--max-doublings", type=int, default=None,
                   help="--method nuts: tree depth cap, at most 2**N - 1 leapfrog steps per iteration, 1 <= N <= "
                        f"{_MAX_DOUBLINGS} (default: 6 for CLM5, 10 for COMPAS)")
    p.add_argument("--steps", type=int, default=None, help="--method hmc: leapfrog steps per iteration (default 12)")
    p.add_argument("--keep-draws", type=int, default=0, metavar="N",
                   help="also store N thinned draws per chain (at most --samples)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--bedrock", choices=["proda", "closed"], default="proda",
                   help="transport boundary at bedrock: 'proda' (as the original code) or 'closed' (mass conserving)")
    p.add_argument("--restart", action="store_true",
                   help="discard part files of an earlier interrupted run instead of resuming it")
    _add_plausibility(p)
    _add_progress(p)
    p.set_defaults(func=_run_calibrate)


def _check_calibrate(args) -> None:
    """Refuse bad or inapplicable options before anything is read or compiled."""
    _check_cluster(args)
    for flag in ("chains", "samples", "batch"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.chains < 2:
        raise UserError("--chains must be at least 2: R-hat compares chains (PRODA uses 3)")
    from ._options import MIN_SAMPLES

    if args.samples < MIN_SAMPLES:
        raise UserError(f"--samples must be at least {MIN_SAMPLES}, got {args.samples}: split R-hat and ESS need "
                        "two draws per half chain")
    if args.warmup is not None and args.warmup < 0:
        raise UserError(f"--warmup must be >= 0, got {args.warmup}")
    if args.warmup is not None and args.method == "proda":
        raise UserError("--warmup applies to --method nuts/hmc; PRODA's sampler runs its own fixed random walk "
                        "and adaptive phases")
    if args.extend is not None and args.extend < 0:
        raise UserError(f"--extend must be >= 0 (0 turns extension off), got {args.extend}")
    if args.extend and args.method == "proda":
        raise UserError("--extend applies to --method nuts/hmc; PRODA's sampler runs a fixed number of steps")
    if args.steps is not None and args.method != "hmc":
        raise UserError(f"--steps applies to --method hmc only (it sets HMC's fixed trajectory length); "
                        f"--method {args.method} does not use it")
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be at least 1 leapfrog step per iteration, got {args.steps}")
    if (args.amortizer is not None or args.approximation is not None) and args.method != "auto":
        raise UserError(f"--amortizer and --approximation apply to --method auto only; --method {args.method} "
                        "does not use them")
    if args.amortizer is not None and args.approximation not in (None, "npe"):
        raise UserError(f"--amortizer is the flow of --approximation npe; --approximation {args.approximation} "
                        "fits its approximation per profile and uses none")
    if args.max_doublings is not None and args.method not in ("nuts", "auto"):
        raise UserError(f"--max-doublings applies to --method nuts and auto (its fall-back) only; "
                        f"--method {args.method} does not use it")
    if args.max_doublings is not None and not 1 <= args.max_doublings <= _MAX_DOUBLINGS:
        raise UserError(f"--max-doublings must be between 1 and {_MAX_DOUBLINGS} (at most 2**N - 1 leapfrog steps "
                        f"per iteration), got {args.max_doublings}")
    if args.keep_draws < 0:
        raise UserError(f"--keep-draws must be >= 0 (0 keeps no draws), got {args.keep_draws}")
    if args.keep_draws > args.samples:
        raise UserError(f"--keep-draws {args.keep_draws} is more than the {args.samples} draws per chain "
                        "(--samples); keep at most that many")
    likelihood = _likelihood_name(args)
    if args.sigma is not None:
        if likelihood == "proda":
            raise UserError("--sigma applies to the lognormal and gaussian likelihoods; PRODA's cost "
                            "(--likelihood proda, the default of --method proda) has no error parameter: add "
                            "--likelihood lognormal or gaussian, or drop --sigma")
        if not (args.sigma > 0 and args.sigma < float("inf")):
            raise UserError(f"--sigma must be a positive relative error (e.g. 0.1), got {args.sigma}")
    _check_output_file(args.out)


def _likelihood_name(args) -> str:
    """The likelihood a calibration uses: --likelihood, or the method's default."""
    if args.likelihood != "default":
        return args.likelihood
    return "proda" if args.method == "proda" else "lognormal"


def _run_calibrate(args) -> int:
    _check_calibrate(args)
    from . import calibration as cal
    from . import io
    from ._parts import PartsMismatchError
    from ._registry import model as soil_model
    from ._sites import SitePairingError, pair_sites

    model = soil_model(args.model, bedrock=args.bedrock)
    forcing, sites = io.read_forcing(args.forcing, **_plausibility(args))
    obs, obs_sites = io.read_observations(args.obs, **_plausibility(args))
    n_f, n_o = forcing.batch_shape[0], obs.batch_shape[0]
    if n_f != n_o:
        raise UserError(
            f"forcing file {args.forcing!r} has {n_f} sites but observation file {args.obs!r} has {n_o}; "
            "give one forcing site per observed profile"
        )
    labels_f = sites["site"].values
    labels_o = obs_sites["site"].values if "site" in obs_sites.coords else None
    try:
        order = pair_sites(labels_f, labels_o, what=f"forcing file {args.forcing!r}",
                           other_what=f"observation file {args.obs!r}")
    except SitePairingError as exc:
        raise UserError(str(exc)) from None
    if order is not None:
        obs = obs[order]
    # options left out keep the library's defaults
    steps = {} if args.steps is None else {"num_integration_steps": args.steps}
    sampler = {"nuts": lambda: cal.NUTS(max_num_doublings=args.max_doublings),
               "hmc": lambda: cal.HMC(**steps),
               "proda": lambda: cal.ProdaMetropolis(),
               "auto": lambda: cal.Auto(fallback=cal.NUTS(max_num_doublings=args.max_doublings),
                                        importance=cal.ImportanceSampler(approximation=args.approximation or "npe")),
               }[args.method]()
    sigma = {} if args.sigma is None else {"sigma": args.sigma}
    likelihood = {"lognormal": lambda: cal.LogNormal(**sigma),
                  "gaussian": lambda: cal.Gaussian(**{f"rel_{k}": v for k, v in sigma.items()}),
                  "proda": lambda: cal.proda_likelihood(model)}[_likelihood_name(args)]()
    progress = _progress(args)
    try:
        with _dask_client(args) as client:
            ds = cal.calibrate(
                model, forcing, obs, method=sampler, likelihood=likelihood, chains=args.chains, warmup=args.warmup,
                samples=args.samples, extend=args.extend, batch_size=args.batch, seed=args.seed, out=args.out,
                resume=not args.restart, progress=progress, keep_draws=args.keep_draws, site_id=labels_f,
                client=client, attrs={"forcing_file": str(args.forcing), "obs_file": str(args.obs)},
                amortizer=args.amortizer,
            )
    except PartsMismatchError as exc:
        raise UserError(str(exc)) from exc
    n_acc = int(ds["accepted"].sum())
    n_gr = int(cal.proda_filter(ds["rhat_gr_mean"].values, ds["nse"].values).sum())
    print(
        f"wrote {args.out} ({n_f} profiles, {type(model).__name__}, {args.method}): "
        + (f"{n_acc} accepted (importance sampled with k-hat < 0.7, or PRODA's filter after a fall-back to NUTS)"
           if "method_used" in ds else
           f"{n_acc} accepted by PRODA's filter (mean R-hat < 1.05 and NSE > 0; {n_gr} with PRODA's "
           f"Gelman-Rubin R-hat)")
        + f", median NSE {float(ds['nse'].median()):.3f}, "
        f"median max R-hat {float(ds['rhat_max'].median()):.3f}"
        + (f"; {int((ds['thinning'] > 1).sum())} extended for R-hat" if "thinning" in ds else "")
    )
    if "method_used" in ds and (ds["fallback_reason"] == "few_profiles").all():
        print(f"auto: {n_f} profiles are too few to repay training a flow (model default "
              f"{type(model).default_auto_min_profiles}; give --amortizer FILE to use a trained one): all were "
              "sampled by NUTS, as --method nuts samples them")
    elif "method_used" in ds:  # method auto: how many profiles importance sampling served
        n_is = int((ds["method_used"] == "importance").sum())
        print(f"auto: {n_is} of {n_f} profiles importance sampled (accepted: k-hat < 0.7), {n_f - n_is} fell back "
              f"to NUTS (PRODA's filter applies to them); median k-hat {float(ds['pareto_k'].median()):.2f}")
    return 0


# ---------------------------------------------------------------------------
# world, learn, predict: PRODA's second stage
# ---------------------------------------------------------------------------


def _add_world(sub) -> None:
    p = sub.add_parser(
        "world",
        help="write a synthetic world: grid covariates and forcing, profile sites, hidden true parameters",
        description="Generate the synthetic world of soiljax.world (a lat/lon grid of land cells with 60 "
        "covariates and a consistent monthly forcing, profile sites with noisy observed SOC profiles "
        "from hidden smooth covariate -> parameter maps) and write it to a folder of netCDF files.",
    )
    p.add_argument("--n-sites", type=int, default=1000, help="profile sites (default 1000)")
    p.add_argument("--resolution", type=float, default=5.0, help="grid spacing in degrees, dividing 180 (default 5)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                   help="models whose hidden parameters and observations to generate (default both)")
    p.add_argument("--noise", type=float, default=0.1, help="multiplicative observation error (default 0.1)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the world to")
    _add_progress(p)
    p.set_defaults(func=_run_world)


def _run_world(args) -> int:
    from . import world as W

    if args.n_sites < 1:
        raise UserError(f"--n-sites must be at least 1, got {args.n_sites}")
    try:
        w = W.synthetic_world(args.n_sites, resolution=args.resolution, seed=args.seed, models=tuple(args.models),
                              noise=args.noise, progress=_progress(args))
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    W.write_world(w, args.out)
    valid = ", ".join(f"{m} {int(w.valid[m].sum())} valid" for m in args.models)
    print(f"wrote {args.out} ({w.n_sites} sites, {w.n_cells} land cells at {args.resolution:g} deg; {valid})")
    return 0


def _add_learn(sub) -> None:
    from . import _options as O

    p = sub.add_parser(
        "learn",
        help="learn a network from site covariates to model parameters (two-stage or end-to-end)",
        description="PRODA's second stage. 'two-stage' regresses the posterior means u_mean of a calibration "
        "(soiljax calibrate) on the sites' covariates; 'end-to-end' trains the network through the model's "
        "steady state against the observed profiles directly. Sites are matched by their labels. "
        "With --world DIR the covariates, forcing and observations come from a soiljax world folder.",
    )
    p.add_argument("--model", required=True, choices=MODELS, help="model whose parameters to learn")
    p.add_argument("--approach", choices=["two-stage", "end-to-end"], default="two-stage",
                   help="two-stage (PRODA, needs --posterior) or end-to-end (needs forcing and observations)")
    p.add_argument("--world", metavar="DIR", help="world folder (soiljax world): sites.nc, site_forcing.nc, obs_<model>.nc")
    p.add_argument("--covariates", metavar="SITES.nc", help="file with covariates (site, covariate) and site labels")
    p.add_argument("--posterior", metavar="POST.nc", help="posterior file of soiljax calibrate (two-stage targets, "
                   "and the prior of end-to-end with --prior-weight)")
    p.add_argument("--forcing", metavar="F.nc", help="forcing file of the observed sites (end-to-end)")
    p.add_argument("--obs", metavar="OBS.nc", help="observation file (end-to-end)")
    p.add_argument("--out", required=True, metavar="NET.eqx", help="learner file to write")
    p.add_argument("--loss", choices=list(O.TWO_STAGE_LOSSES), default=None,
                   help=f"two-stage loss (default {O.TWO_STAGE_LOSSES[0]}; proda: MSE x MRE)")
    p.add_argument("--proda-filter", action="store_true",
                   help="two-stage: train only on profiles accepted by PRODA's filter (mean R-hat < 1.05, NSE > 0)")
    p.add_argument("--hidden", type=int, nargs="+", default=list(O.PRODA_HIDDEN), help="hidden widths (PRODA's default)")
    p.add_argument("--dropout", type=float, default=O.PRODA_DROPOUT, help=f"dropout rate (default {O.PRODA_DROPOUT:g})")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"maximum epochs (default {O.TWO_STAGE_EPOCHS} two-stage, {O.END_TO_END_EPOCHS} end-to-end)")
    p.add_argument("--patience", type=int, default=None,
                   help=f"early-stopping patience (default {O.TWO_STAGE_PATIENCE} / {O.END_TO_END_PATIENCE})")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"sites per mini-batch (default {O.TWO_STAGE_BATCH_SIZE} / {O.END_TO_END_BATCH_SIZE})")
    p.add_argument("--learning-rate", type=float, default=O.LEARNING_RATE,
                   help=f"Adam learning rate (default {O.LEARNING_RATE:g})")
    p.add_argument("--ensemble", type=int, default=None, help="two-stage: bootstrap ensemble members (default 1)")
    p.add_argument("--prior-weight", type=float, default=None,
                   help="end-to-end: weight (> 0) of mean (u - u_mean)^2 towards the posterior (needs --posterior)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, weights and shuffles (default 0)")
    p.add_argument("--bedrock", choices=["proda", "closed"], default=None,
                   help="bedrock boundary (end-to-end; default proda)")
    _add_plausibility(p)
    _add_progress(p)
    p.set_defaults(func=_run_learn)


def _learn_defaults(approach: str) -> dict:
    """The library's defaults of the options left out (:mod:`soiljax._options`, importable without JAX)."""
    from . import _options as O

    if approach == "two-stage":
        return dict(epochs=O.TWO_STAGE_EPOCHS, patience=O.TWO_STAGE_PATIENCE, batch_size=O.TWO_STAGE_BATCH_SIZE,
                    loss=O.TWO_STAGE_LOSSES[0], ensemble=1)
    return dict(epochs=O.END_TO_END_EPOCHS, patience=O.END_TO_END_PATIENCE, batch_size=O.END_TO_END_BATCH_SIZE,
                prior_weight=0.0, bedrock="proda")


_LEARN_ONLY = {  # option -> why it applies to one approach only
    "loss": ("two-stage", "end-to-end fits the observed profiles"),
    "proda_filter": ("two-stage", "end-to-end uses every profile with usable layers"),
    "ensemble": ("two-stage", "end-to-end trains one network"),
    "prior_weight": ("end-to-end", "two-stage fits the posterior means themselves"),
    "bedrock": ("end-to-end", "two-stage fits posterior means; their bedrock was the calibration's"),
    "forcing": ("end-to-end", "two-stage learns from --posterior, not from the profiles"),
    "obs": ("end-to-end", "two-stage learns from --posterior, not from the profiles"),
    "allow_implausible": ("end-to-end", "two-stage reads no forcing or observations"),
}


def _check_learn_options(args) -> None:
    """Refuse learn options that are out of range or do not apply to the approach,
    then fill in the approach's defaults; runs before any file is read or JAX imported."""
    import math

    for flag, (approach, why) in _LEARN_ONLY.items():
        value = getattr(args, flag)
        if args.approach != approach and value not in (None, False):
            raise UserError(f"--{flag.replace('_', '-')} applies to --approach {approach} ({why}); "
                            f"drop it or use --approach {approach}")
    for flag in ("epochs", "batch_size", "ensemble"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    if args.patience is not None and args.patience < 1:
        raise UserError("--patience must be at least 1 (epochs without a better validation loss before "
                        f"training stops; give --epochs for a fixed count), got {args.patience}")
    if any(h < 1 for h in args.hidden):
        raise UserError(f"--hidden widths must be at least 1, got {' '.join(map(str, args.hidden))}")
    if not 0.0 <= args.dropout < 1.0:  # NaN fails too
        raise UserError(f"--dropout must be a rate in [0, 1), got {args.dropout:g}")
    if not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        raise UserError(f"--learning-rate must be a positive number, got {args.learning_rate:g}")
    if args.prior_weight is not None and not (math.isfinite(args.prior_weight) and args.prior_weight > 0):
        raise UserError(f"--prior-weight must be a finite number > 0, got {args.prior_weight:g} "
                        "(leave it out for no regularisation)")
    if args.prior_weight is not None and not args.posterior:
        raise UserError("--prior-weight needs --posterior POST.nc (the posterior means to regularise towards)")
    if args.approach == "end-to-end" and args.posterior and args.prior_weight is None:
        raise UserError("--posterior with --approach end-to-end is the prior of --prior-weight W; "
                        "give --prior-weight or drop --posterior")
    if not (args.world or args.covariates):
        raise UserError("give the site covariates with --covariates SITES.nc (or a world folder with --world DIR)")
    if args.approach == "two-stage" and not args.posterior:
        raise UserError("two-stage learning needs the calibration's posterior: --posterior POST.nc "
                        "(soiljax calibrate), or use --approach end-to-end")
    if args.approach == "end-to-end" and not args.world and not (args.forcing and args.obs):
        raise UserError("end-to-end learning needs the observed sites' --forcing F.nc and --obs OBS.nc "
                        "(or --world DIR)")
    _check_output_file(args.out)
    for flag, default in _learn_defaults(args.approach).items():
        if getattr(args, flag) is None:
            setattr(args, flag, default)


def _run_learn(args) -> int:
    _check_learn_options(args)
    from . import io
    from . import learning as L
    from .io.posteriors import read_posterior
    from ._registry import model as soil_model

    if args.world:
        folder = Path(args.world)
        cov_path = args.covariates or folder / "sites.nc"
        forcing_path = args.forcing or folder / "site_forcing.nc"
        obs_path = args.obs or folder / f"obs_{args.model}.nc"
    else:
        cov_path, forcing_path, obs_path = args.covariates, args.forcing, args.obs
    x, names, sites = io.read_covariates(cov_path)
    post = read_posterior(args.posterior) if args.posterior else None
    post_source = f"posterior file {args.posterior!r}"
    model = soil_model(args.model, bedrock=args.bedrock or "proda")  # two-stage: only its parameter names
    progress = _progress(args)
    meta = {"covariate_file": str(cov_path), "approach": args.approach}
    net = dict(covariate_names=names, hidden=tuple(args.hidden), dropout=args.dropout, epochs=args.epochs,
               batch_size=args.batch_size, learning_rate=args.learning_rate, patience=args.patience, seed=args.seed,
               progress=progress)
    if args.approach == "end-to-end":
        forcing, f_sites = io.read_forcing(forcing_path, **_plausibility(args))
        # sites without usable layers are dropped by end_to_end_data
        obs, _ = io.read_observations(obs_path, min_layers=0, **_plausibility(args))
    try:  # the library's input checks (e.g. targets outside [0, 1]) run before anything is compiled
        if args.approach == "two-stage":
            x_fit, u_fit = L.two_stage_data(x, sites, post, model, proda_filter=args.proda_filter,
                                            source=post_source)
            learner, hist = L.train_two_stage(x_fit, u_fit, model_name=args.model, loss=args.loss,
                                              ensemble=args.ensemble, **net,
                                              metadata={**meta, "posterior_file": str(args.posterior)})
        else:
            x_fit, forcing, obs, u_prior = L.end_to_end_data(
                x, sites, forcing, f_sites, obs, post=post, model=model,
                forcing_source=f"forcing file {str(forcing_path)!r}", obs_source=f"observation file {str(obs_path)!r}",
                post_source=post_source)
            learner, hist = L.train_end_to_end(model, x_fit, forcing, obs, u_prior=u_prior,
                                               prior_weight=args.prior_weight, **net,
                                               metadata={**meta, "forcing_file": str(forcing_path),
                                                         "obs_file": str(obs_path)})
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    L.save_learner(args.out, learner)
    best = hist.get("best_epoch")
    print(f"wrote {args.out} ({args.model}, {args.approach}, {len(x_fit)} sites, best epoch {best}, "
          f"{hist.get('wall_s', float('nan')):.0f} s)")
    return 0


def _add_predict(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="global maps from learned networks: parameters, SOC stocks and system-level components per grid cell",
        description="Apply one or two learned networks (soiljax learn) to every land cell of a world folder: "
        "predicted parameters, steady states, SOC stocks 0-0.3 m and 0-1 m (kgC m-2) and the six system-level "
        "components on the (lat, lon) grid, one maps_<model>.nc per network (networks of one model are named by "
        "their files: dA/net.eqx dB/net.eqx write maps_dA_net.nc, maps_dB_net.nc), figures (maps, latitude "
        "profiles and, with a CLM5 and a COMPAS network, their comparison with correlations in comparison.json).",
    )
    p.add_argument("--net", required=True, nargs="+", metavar="NET.eqx", help="learner file(s) of soiljax learn")
    p.add_argument("--world", required=True, metavar="DIR",
                   help="world folder with grid.nc, cells.nc (covariates) and cell_forcing.nc (soiljax world)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for maps_<model>.nc and figures")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    _add_cluster(p, "batches of cells solved at a time, each by a Dask worker process pinned to its share of the CPU "
                    "cores (default 1: in this process)")
    _add_progress(p)
    p.set_defaults(func=_run_predict)


def _file_names(paths) -> list[str]:
    """Distinct names of distinct files: their stems, with as many parent folders as it takes
    (``dA/net.eqx dB/net.eqx`` -> ``dA_net``, ``dB_net``).  The same file twice is refused."""
    first = {}
    for i, path in enumerate(paths):
        j = first.setdefault(Path(path).resolve(), i)
        if j != i:
            same = paths[j]
            also = "" if same == path else f" (also as {path!r})"
            raise UserError(f"--net names the file {same!r} twice{also}; give each network once")
    parts = [Path(path).resolve().with_suffix("").parts for path in paths]
    for k in range(1, max(map(len, parts)) + 1):
        names = ["_".join(q[-k:]) for q in parts]
        if len(set(names)) == len(names):
            return names
    return [f"{name}_{i + 1}" for i, name in enumerate(names)]  # e.g. a.eqx beside a file named a


def _run_predict(args) -> int:
    import json

    by_file = _file_names(args.net)  # before loading anything
    _check_cluster(args)
    from . import learning as L

    learners = [L.load_learner(path) for path in args.net]
    names = [lr.model_name for lr in learners]
    if len(set(names)) != len(names):  # e.g. two CLM5 networks: name them by file
        names = by_file
    progress = _progress(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    maps = {}
    try:
        with _dask_client(args) as client:
            for name, learner in zip(names, learners):
                maps[name] = L.predict_maps(learner, args.world, progress=progress, client=client)
                L.write_maps(maps[name], out / f"maps_{name}.nc")
                stock = L.global_stock(maps[name])
                print(f"wrote {out / f'maps_{name}.nc'}: SOC 0-1 m {stock['total_PgC']:.0f} Pg C over "
                      f"{100 * stock['valid_area_fraction']:.0f}% of the land area (valid cells)")
    except L.MapsError as exc:
        raise UserError(str(exc)) from exc
    if len(maps) == 2:
        cmp = L.compare_models(*maps.values(), names=tuple(maps))
        (out / "comparison.json").write_text(json.dumps(cmp, indent=1))
        print(L.format_comparison(cmp))
    if not args.no_figures:
        files = L.map_figures(maps, out)
        print("figures: " + ", ".join(str(f) for f in files))
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
        "run PRODA's chain on a synthetic world (DIR/world, posteriors, networks, maps_<model>.nc, maps.png, "
        "latitude.png, comparison.png) and print a summary.",
    )
    p.add_argument("--out", default="soiljax_demo", metavar="DIR", help="output folder (default ./soiljax_demo)")
    p.add_argument("--n-sites", type=int, default=250, help="number of synthetic sites (default 250)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--bedrock", choices=["proda", "closed"], default="proda", help="bedrock boundary (default proda)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--calibrate-sites", type=int, default=12, metavar="N",
                   help="calibrate CLM5 on N synthetic observed profiles (default 12; 0 skips the step)")
    p.add_argument("--learn-sites", type=int, default=60, metavar="N",
                   help="PRODA's chain on a synthetic world of N profile sites: calibration of both models, "
                        "two-stage networks, global maps and figures (default 60; 0 skips the step)")
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from ._demo import run_demo

    if args.n_sites < 1:
        raise UserError(f"--n-sites must be at least 1, got {args.n_sites}")
    if args.calibrate_sites < 0:
        raise UserError(f"--calibrate-sites must be >= 0, got {args.calibrate_sites}")
    if args.learn_sites < 0:
        raise UserError(f"--learn-sites must be >= 0, got {args.learn_sites}")
    run_demo(args.out, n_sites=args.n_sites, seed=args.seed, bedrock=args.bedrock, figures=not args.no_figures,
             calibrate_sites=args.calibrate_sites, learn_sites=args.learn_sites, progress=sys.stderr.isatty())
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
    _add_world(sub)
    _add_learn(sub)
    _add_predict(sub)
    _add_demo(sub)
    _add_ude(sub)
    return parser


def _user_error_types() -> tuple[type[BaseException], ...]:
    from ._forcing import ForcingError
    from ._observations import ObservationError
    from .calibration import AmortizerError
    from .io import FileFormatError
    from .learning import LearnerFileError

    return (UserError, FileFormatError, ForcingError, ObservationError, LearnerFileError, AmortizerError,
            FileNotFoundError, PermissionError, IsADirectoryError)


_CACHED_COMMANDS = ("calibrate", "demo")
"""Commands that keep JAX's compiled programs on disk between runs: the ones
whose compile time dominates short runs (NUTS takes ~30 s to compile) and whose
programs were checked with the cache on.  Tests switch it off
(``SOILJAX_CACHE_DIR=""``) to stay hermetic."""


def _enable_compilation_cache() -> None:
    """Keep compiled programs between runs (the samplers take ~30 s to compile).

    The cache lives in $SOILJAX_CACHE_DIR or ~/.cache/soiljax/xla; set
    SOILJAX_CACHE_DIR to an empty string to switch it off.  The setting is
    global to the process (it stays on for later compilations).  JAX is not
    imported here: it reads JAX_COMPILATION_CACHE_DIR when it is imported.
    """
    import os
    from pathlib import Path

    folder = os.environ.get("SOILJAX_CACHE_DIR", str(Path.home() / ".cache" / "soiljax" / "xla"))
    if not folder:
        return
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only home: run without a cache
        return
    if "jax" in sys.modules:
        try:
            sys.modules["jax"].config.update("jax_compilation_cache_dir", folder)
        except AttributeError:  # an old JAX: run without a cache
            pass
    else:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = folder


def _report(args, exc: BaseException) -> int:
    """Print a user error as one line on stderr; the exit status for it."""
    message = " ".join(str(exc).split())
    print(f"soiljax {args.command}: error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits with 2 on bad options
    if getattr(args, "command", None) in _CACHED_COMMANDS:
        _enable_compilation_cache()
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USER_ERROR
    with _one_line_warnings(args.command), _terminate_as_interrupt() as terminated:
        try:
            return int(args.func(args) or 0)
        except UserError as exc:  # before the other error types, whose modules import JAX
            return _report(args, exc)
        except Exception as exc:
            if isinstance(exc, _user_error_types()):
                return _report(args, exc)
            raise
        except KeyboardInterrupt as exc:
            # a run in parts says how many batches it kept and that a rerun resumes
            detail = " ".join(str(exc).split())
            how = "terminated" if terminated else "interrupted"
            print(f"soiljax {args.command}: {how}" + (f": {detail}" if detail else ""), file=sys.stderr)
            return 128 + 15 if terminated else 130


@contextlib.contextmanager
def _one_line_warnings(command: str):
    """Show soiljax's own warnings (implausible inputs, a stale lock taken over) as
    one line each, ``soiljax CMD: warning: ...``; other warnings keep Python's format."""
    import warnings

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if getattr(category, "__module__", "").startswith("soiljax"):
            print(f"soiljax {command}: warning: {' '.join(str(message).split())}", file=file or sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


@contextlib.contextmanager
def _terminate_as_interrupt():
    """Turn SIGTERM (``kill``, a batch scheduler's time limit) into KeyboardInterrupt, so that
    a run releases its output lock, stops its workers and says where its finished batches are.
    Yields a list that is non-empty once the signal has arrived."""
    import signal
    import threading

    from . import _stop

    terminated: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield terminated
        return

    def handler(signum, frame):
        terminated.append(signum)
        _stop.request()  # read between batches, in case the exception below lands where Python ignores it
        raise KeyboardInterrupt

    _stop.clear()
    before = signal.signal(signal.SIGTERM, handler)
    try:
        yield terminated
    finally:
        signal.signal(signal.SIGTERM, before)
        _stop.clear()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
