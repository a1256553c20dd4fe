"""Parameter learning on held-out sites: PRODA's two-stage route against end-to-end training.

For each model (CLM5, COMPAS), on one synthetic world (:mod:`soiljax.world`):
sites whose true steady state is valid, their 60 covariates, forcing and noisy
observed profiles (4-8 layers, 10% log-normal noise); one random 80/10/10
split into train / validation / held-out test sites, shared by both
approaches.

two-stage (PRODA)
    Calibrate every train + validation profile with NUTS
    (:func:`soiljax.calibration.calibrate`; time reported separately as
    ``calib s``), optionally keep only PRODA's accepted profiles (mean R-hat
    < 1.05 and NSE > 0, ``--proda-filter``), then regress the posterior-mean
    u on the covariates (:func:`soiljax.learning.train_two_stage`, MSE or
    PRODA's loss, early stopping on the validation sites).
    ``--two-stage-target truth`` trains on the hidden true u instead: an
    upper bound no real study has (labelled "truth targets" everywhere),
    useful when calibration is too expensive.
end-to-end
    Train the same network through the steady-state solver on the observed
    profiles (:func:`soiljax.learning.train_end_to_end`), optionally started
    from the two-stage learner (``--e2e-init two-stage``) and regularised
    towards the posterior means (``--prior-weight``).

Both are scored on the held-out test sites (:func:`soiljax.learning.evaluate`):
NSE of the predicted profile against the observations (an invalid steady
state counts as NSE = -inf, so medians are over all held-out sites), the
SOC stock to 1 m against the true stock (relative error; invalid counts as a
failure), Pearson r of predicted with true u per parameter, and training
time (compile included).  Two reference rows bound the figures: "true u"
(the truth's own profile against the noisy observations: the practical
ceiling of a learner's NSE; a site's noise can let a prediction beat it) and "default u" (the model's default parameters
everywhere).

Prints a table (stdout; with ``--json`` the table and progress go to stderr
and stdout holds one JSON object whose keys include ``two_stage_heldout_nse``,
``end_to_end_heldout_nse`` (median held-out NSE, CLM5) and
``end_to_end_train_s`` (CLM5 end-to-end training wall time in s, compilation
included), then per model and approach ``<model>_<approach>_<figure>``, and
everything under ``results``).

The verdict line per model also counts, site by site, on how many held-out
sites end-to-end beats two-stage, with a two-sided sign test: with a few dozen
test sites a difference of medians alone may be chance.

``--out DIR`` keeps the learners, the held-out predictions, the held-out
sites' inputs (``heldout_<model>.inputs/``: forcing, observations and
covariates, so that the kept learners can be scored again without drawing the
world again) and the posterior files; a rerun with the same ``--out`` resumes
an interrupted calibration and reuses a finished one made with the same settings on the same profiles (so
``--e2e-init two-stage`` or ``--prior-weight`` can be tried without
calibrating again; the table then marks the calibration time "reused").

    python benchmarks/learning.py --n-sites 250                            # both models, with calibration (~23 min, one core)
    python benchmarks/learning.py --n-sites 5000 --two-stage-target truth  # no calibration: two-stage's upper bound
    python benchmarks/learning.py --models clm5 --e2e-only --n-sites 5000  # the speed target
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

MODELS = ("clm5", "compas")


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("world and split")
    g.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    g.add_argument("--n-sites", type=int, default=250, help="sites of the world (before dropping invalid truths)")
    g.add_argument("--resolution", type=float, default=5.0, help="grid spacing of the world, degrees (divides 180)")
    g.add_argument("--noise", type=float, default=0.1, help="observation error (sd of log SOC)")
    g.add_argument("--split", type=float, nargs=3, default=[0.8, 0.1, 0.1], metavar=("TRAIN", "VAL", "TEST"))
    g.add_argument("--seed", type=int, default=0, help="seeds the world, the split, the networks and the sampler")
    g = p.add_argument_group("network (both approaches)")
    g.add_argument("--hidden", type=int, nargs="+", default=[256, 512, 512, 256], help="hidden widths (PRODA's)")
    g.add_argument("--dropout", type=float, default=0.2)
    g = p.add_argument_group("end-to-end")
    g.add_argument("--epochs", type=int, default=500, help="at most this many epochs (end-to-end)")
    g.add_argument("--patience", type=int, default=30, help="early stopping patience, epochs (end-to-end)")
    g.add_argument("--batch-size", type=int, default=32, help="sites per mini-batch (end-to-end; PRODA's 32)")
    g.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's learning rate (end-to-end)")
    g.add_argument("--e2e-init", choices=["scratch", "two-stage"], default="scratch",
                   help="start from a new network or from the two-stage learner")
    g.add_argument("--prior-weight", type=float, default=0.0,
                   help="weight of mean (u - posterior mean)^2 in the end-to-end loss (needs posterior targets)")
    g.add_argument("--e2e-only", action="store_true",
                   help="skip calibration and the two-stage learner (the speed target: --n-sites 5000)")
    g = p.add_argument_group("two-stage")
    g.add_argument("--two-stage-target", choices=["posterior", "truth"], default="posterior",
                   help="posterior means of a NUTS calibration (PRODA, default) or the hidden true u (upper bound)")
    g.add_argument("--proda-filter", action="store_true",
                   help="train only on PRODA's accepted profiles (mean R-hat < 1.05 and NSE > 0)")
    g.add_argument("--loss", choices=["mse", "proda"], default="mse", help="two-stage loss (proda: MSE x relative error)")
    g.add_argument("--ts-epochs", type=int, default=1000, help="at most this many epochs (two-stage; PRODA: 6000)")
    g.add_argument("--ts-patience", type=int, default=100, help="early stopping patience, epochs (two-stage)")
    g.add_argument("--ts-batch-size", type=int, default=32, help="mini-batch (two-stage; PRODA: 32)")
    g.add_argument("--ts-learning-rate", type=float, default=1e-3, help="Adam's learning rate (two-stage)")
    g = p.add_argument_group("calibration (two-stage with posterior targets)")
    g.add_argument("--chains", type=int, default=3)
    g.add_argument("--warmup", type=int, default=200)
    g.add_argument("--samples", type=int, default=200)
    g.add_argument("--calib-batch", type=int, default=128, help="profiles sampled together in one program")
    g.add_argument("--max-doublings", type=int, default=6,
                   help="NUTS tree depth cap of the two-stage calibration (default 6, as in the published table)")
    g = p.add_argument_group("output")
    g.add_argument("--json", action="store_true", help="print one JSON object to stdout (table and progress to stderr)")
    g.add_argument("--out", metavar="DIR",
                   help="write learners (.eqx), held-out predictions (heldout_<model>.nc) and inputs "
                        "(heldout_<model>.inputs/), posteriors and results.json "
                        "here; a rerun resumes an interrupted calibration and reuses a finished one with the same "
                        "settings (e.g. to try --e2e-init two-stage or --prior-weight without calibrating again)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    args.models = list(dict.fromkeys(args.models))
    if args.n_sites < 10:
        p.error(f"--n-sites must be at least 10 (a train, validation and test split is needed), got {args.n_sites}")
    if args.e2e_only and args.e2e_init == "two-stage":
        p.error("--e2e-init two-stage needs the two-stage learner; drop --e2e-only")
    if args.prior_weight < 0:
        p.error(f"--prior-weight must be >= 0, got {args.prior_weight}")
    if args.prior_weight > 0 and (args.e2e_only or args.two_stage_target != "posterior"):
        p.error("--prior-weight regularises towards the calibration's posterior means: it needs "
                "--two-stage-target posterior and no --e2e-only")
    if args.proda_filter and args.two_stage_target != "posterior":
        p.error("--proda-filter selects calibrated profiles: it needs --two-stage-target posterior")
    return args


# ---------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------

def _q(values, q):
    """Quantile that tolerates -inf (a failure): picks an actual value, no interpolation."""
    v = np.asarray(values, float)
    return float(np.quantile(v, q, method="lower")) if v.size else float("nan")


def _median(values):
    v = np.asarray(values, float)
    return float(np.median(v)) if v.size else float("nan")


def score(ev: dict, stock_true: np.ndarray) -> dict:
    """Summary of one :func:`evaluate` result on the held-out sites (invalid counts as failure)."""
    valid = ev["valid"]
    nse = np.where(valid, ev["nse"], -np.inf)
    rel = np.where(valid, (ev["stock_1m"] - stock_true) / stock_true, np.inf)
    err = np.abs(rel)
    out = {
        "n_test": int(valid.size),
        "valid_fraction": float(valid.mean()),
        "median_nse": _median(nse),
        "q10_nse": _q(nse, 0.1),
        "q90_nse": _q(nse, 0.9),
        "mean_nse_valid": float(np.mean(ev["nse"][valid])) if valid.any() else float("nan"),
        "nse_gt_0": float(np.mean(nse > 0)),
        "median_stock_rel_bias": _median(np.where(valid, rel, np.nan)[valid]) if valid.any() else float("nan"),
        "median_abs_stock_err": _median(err),
        "stock_within_10pct": float(np.mean(err <= 0.1)),
        "stock_within_20pct": float(np.mean(err <= 0.2)),
    }
    if "u_corr" in ev:
        out["median_u_corr"] = ev["median_u_corr"]
        out["u_corr"] = {k: float(v) for k, v in ev["u_corr"].items()}
        out["u_rmse"] = {k: float(v) for k, v in ev["u_rmse"].items()}
    return out


def reference_eval(model, u, forcing, obs, u_true, *, correlate: bool = True):
    """:func:`evaluate`'s dict for given u (no learner): steady state, NSE, stock, r(u) if ``correlate``."""
    import soiljax
    from soiljax._observe import score_sites
    from soiljax.learning import pearson

    steady = soiljax.batched_steady_state(model, u, forcing)
    valid = np.asarray(steady.valid).astype(bool)
    _, nse = score_sites(steady.soc, obs.depth, obs.soc, obs.mask)
    ev = {
        "u": np.asarray(u),
        "valid": valid,
        "nse": np.where(valid, np.asarray(nse), np.nan),
        "stock_1m": np.where(valid, np.asarray(soiljax.soc_stock(steady.soc, 1.0)), np.nan),
    }
    if not correlate:  # constant u (the defaults): no correlation to speak of
        return ev
    names = model.param_names
    ev["u_corr"] = {p: pearson(ev["u"][valid, i], u_true[valid, i]) for i, p in enumerate(names)}
    ev["u_rmse"] = {p: float(np.sqrt(np.mean((ev["u"][valid, i] - u_true[valid, i]) ** 2))) for i, p in enumerate(names)}
    r = np.array(list(ev["u_corr"].values()))
    ev["median_u_corr"] = float(np.nanmedian(r)) if np.isfinite(r).any() else float("nan")
    return ev


# ---------------------------------------------------------------------------
# one model
# ---------------------------------------------------------------------------

def run_model(name: str, world, args, log) -> dict:
    import soiljax
    from soiljax.calibration import NUTS, calibrate
    from soiljax.learning import evaluate, save_learner, split_indices, train_end_to_end, train_two_stage

    model = {"clm5": soiljax.CLM5, "compas": soiljax.COMPAS}[name]()
    progress = not args.no_progress
    obs_all = world.observations[name]
    keep = np.flatnonzero(world.valid[name] & (np.asarray(obs_all.n_usable) > 0))
    if keep.size < 10:
        raise SystemExit(f"{name}: only {keep.size} sites have a valid truth; use more --n-sites")
    x = world.covariate_matrix("sites")[keep]
    forcing, obs = world.site_forcing[keep], obs_all[keep]
    u_true = np.asarray(world.u_true[name])[keep]
    site_id = np.asarray(world.sites["site"].values)[keep]
    from soiljax.world import COVARIATES

    cov_names = tuple(COVARIATES)
    train, val, test = split_indices(keep.size, tuple(args.split), seed=args.seed)
    if test.size == 0:
        raise SystemExit("the split has no test sites: give --split with a positive test fraction")
    log(f"\n== {name}: {keep.size} sites with a valid truth (of {world.n_sites}); "
        f"train {train.size}, validation {val.size}, held-out test {test.size}")
    f_test, o_test, u_test = forcing[test], obs[test], u_true[test]
    if args.out:  # what the kept learners are scored on, so that a kept run can be scored again
        recipe = {"model": name, "n_sites": args.n_sites, "resolution": args.resolution, "seed": args.seed,
                  "noise": args.noise}
        _write_heldout_inputs(Path(args.out) / f"heldout_{name}.inputs", site_id[test], x[test], cov_names,
                              f_test, o_test, recipe)
    steady_true = soiljax.batched_steady_state(model, u_test, f_test)
    stock_true = np.asarray(soiljax.soc_stock(steady_true.soc, 1.0))

    rows, evals, extra = {}, {}, {}
    hidden = tuple(args.hidden)
    out = Path(args.out) if args.out else None

    # -- reference rows ---------------------------------------------------------
    ev = reference_eval(model, u_test, f_test, o_test, u_test)
    evals["true_u"] = ev
    rows["true_u"] = {"label": "true u (NSE ceiling)", **score(ev, stock_true)}
    u_def = np.broadcast_to(np.asarray(model.default_u()), u_test.shape)
    ev = reference_eval(model, u_def, f_test, o_test, u_test, correlate=False)
    evals["default_u"] = ev
    rows["default_u"] = {"label": "default u everywhere", **score(ev, stock_true)}

    # -- two-stage ----------------------------------------------------------------
    ts_learner, posterior = None, None
    if not args.e2e_only:
        tv = np.concatenate([train, val])  # sites of the calibration: train + validation
        if args.two_stage_target == "posterior":
            sampler = NUTS(max_num_doublings=args.max_doublings)
            post_path = None if out is None else out / f"posterior_{name}.nc"
            post, calib_s = _finished_posterior(post_path, sampler, args, obs[tv], site_id[tv])
            reused = post is not None
            if reused:
                log(f"{name}: reusing the finished calibration in {post_path} (same sampler settings and observations; "
                    f"its wall time {'unknown' if calib_s is None else f'{calib_s:.0f} s'})")
            else:
                log(f"{name}: calibrating {tv.size} train + validation profiles (NUTS, {args.chains} chains, "
                    f"warmup {args.warmup}, samples {args.samples}, batch {args.calib_batch})")
                t0 = time.perf_counter()
                post = calibrate(
                    model, forcing[tv], obs[tv], method=sampler, chains=args.chains, warmup=args.warmup,
                    samples=args.samples, batch_size=args.calib_batch, seed=args.seed, out=post_path,
                    resume=post_path is not None, progress=progress, site_id=site_id[tv],
                )
                calib_s = time.perf_counter() - t0
                if post_path is not None:
                    post_path.with_suffix(".json").write_text(json.dumps({"wall_s": calib_s, "profiles": int(tv.size)}))
            calib_s = float("nan") if calib_s is None else calib_s
            target = np.asarray(post["u_mean"].values, float)
            accepted = np.asarray(post["accepted"].values, bool)
            usable = np.all(np.isfinite(target), axis=1)
            extra["calibration"] = {
                "profiles": int(tv.size),
                "reused_from_file": reused,
                "wall_s": calib_s,
                "s_per_profile": calib_s / tv.size,
                "accepted_fraction": float(accepted.mean()),
                "rhat_mean_lt_1.05": float(np.mean(np.asarray(post["rhat_mean"].values) < 1.05)),
                "median_nse": float(np.nanmedian(post["nse"].values)),
                "finite_u_mean_fraction": float(usable.mean()),
                "median_u_corr_with_truth": float(np.nanmedian([
                    _pearson(target[usable, i], u_true[tv][usable, i]) for i in range(model.n_params)])),
            }
            log(f"{name}: calibration {calib_s:.0f} s ({calib_s / tv.size:.2f} s per profile{', reused' if reused else ''}), accepted "
                f"{accepted.mean():.0%}, median NSE {extra['calibration']['median_nse']:.3f}")
            use = usable & accepted if args.proda_filter else usable
            posterior = np.full((keep.size, model.n_params), np.nan)
            posterior[tv] = np.where(usable[:, None], target, np.nan)
        else:
            calib_s, reused = 0.0, False
            target = u_true[tv]
            use = np.ones(tv.size, bool)
        # the learner sees the used train + validation rows only; local split indices
        rows_used = tv[use]
        n_tr = int(np.isin(rows_used, train).sum())
        n_va = rows_used.size - n_tr
        if n_tr == 0 or n_va == 0:
            raise SystemExit(f"{name}: no {'training' if n_tr == 0 else 'validation'} site is left for the two-stage "
                             "learner (PRODA's filter rejected them all?); drop --proda-filter or use more --n-sites")
        split_local = (np.arange(n_tr), np.arange(n_tr, rows_used.size), np.array([], int))
        label = "two-stage" + (" (truth targets: upper bound)" if args.two_stage_target == "truth" else "")
        label += " +filter" if args.proda_filter else ""
        log(f"{name}: {label}: training on {n_tr} + {n_va} sites, loss {args.loss}")
        ts_learner, hist = train_two_stage(
            x[rows_used], target[use], model_name=name, covariate_names=cov_names, loss=args.loss, hidden=hidden,
            dropout=args.dropout, epochs=args.ts_epochs, batch_size=args.ts_batch_size,
            learning_rate=args.ts_learning_rate, patience=args.ts_patience, split=split_local, seed=args.seed,
            progress=progress, metadata={"benchmark": "learning", "target": args.two_stage_target},
        )
        ev = evaluate(model, ts_learner, x[test], f_test, o_test, u_true=u_test)
        evals["two_stage"] = ev
        rows["two_stage"] = {
            "label": label, **score(ev, stock_true), "train_s": hist["wall_s"], "calib_s": calib_s,
            "total_s": hist["wall_s"] + calib_s, "epochs": hist["epochs_run"], "best_epoch": hist["best_epoch"],
            "n_train": n_tr, "n_val": n_va, "target": args.two_stage_target, "loss": args.loss, "calib_reused": reused,
            "proda_filter": bool(args.proda_filter),
        }
        if out is not None:
            save_learner(out / f"{name}_two_stage.eqx", ts_learner)

    # -- end-to-end -----------------------------------------------------------------
    init = ts_learner if args.e2e_init == "two-stage" else None
    label = "end-to-end" + (" (init two-stage)" if init is not None else "")
    label += f" +prior {args.prior_weight:g}" if args.prior_weight > 0 else ""
    log(f"{name}: {label}: training on {train.size} + {val.size} sites, hidden {'-'.join(map(str, hidden))}, "
        f"batch {args.batch_size}, up to {args.epochs} epochs, patience {args.patience}")
    e2e, hist = train_end_to_end(
        model, x, forcing, obs, covariate_names=cov_names, split=(train, val, test),
        u_prior=posterior if args.prior_weight > 0 else None, prior_weight=args.prior_weight, hidden=hidden,
        dropout=args.dropout, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        patience=args.patience, seed=args.seed, init=init, progress=progress,
        metadata={"benchmark": "learning"},
    )
    ev = evaluate(model, e2e, x[test], f_test, o_test, u_true=u_test)
    evals["end_to_end"] = ev
    rows["end_to_end"] = {
        "label": label, **score(ev, stock_true), "train_s": hist["wall_s"], "total_s": hist["wall_s"],
        "epochs": hist["epochs_run"], "best_epoch": hist["best_epoch"], "stopped_early": hist["stopped_early"],
        "s_per_epoch": hist["wall_s"] / max(hist["epochs_run"], 1), "best_val_loss": hist["best_val_loss"],
        "initial_val_loss": hist["initial_val_loss"], "skipped_steps": hist["skipped_steps"],
        "invalid_train_last_epoch": int(hist["n_invalid_train"][-1]) if hist["epochs_run"] else 0,
        "n_train": int(train.size), "n_val": int(val.size), "init": args.e2e_init, "prior_weight": args.prior_weight,
    }
    if init is not None and ts_learner is not None:
        rows["end_to_end"]["total_s"] += rows["two_stage"]["total_s"]
    if out is not None:
        save_learner(out / f"{name}_end_to_end.eqx", e2e)
        _write_heldout(out / f"heldout_{name}.nc", model, site_id[test], u_test, stock_true, o_test, evals)

    res = {"n_sites_valid": int(keep.size), "n_train": int(train.size), "n_val": int(val.size),
           "n_test": int(test.size), "rows": rows, **extra}
    if "two_stage" in rows:
        res["end_to_end_beats_two_stage"] = bool(rows["end_to_end"]["median_nse"] > rows["two_stage"]["median_nse"])
        res["paired"] = paired_comparison(evals["end_to_end"], evals["two_stage"])
    return res


def paired_comparison(ev_a: dict, ev_b: dict) -> dict:
    """Site by site on the held-out sites: how often a's NSE beats b's (invalid = -inf), and a two-sided
    sign test (ties dropped): with few test sites a difference of medians alone can be chance."""
    from scipy.stats import binomtest

    a = np.where(ev_a["valid"], ev_a["nse"], -np.inf)
    b = np.where(ev_b["valid"], ev_b["nse"], -np.inf)
    wins, losses = int(np.sum(a > b)), int(np.sum(a < b))
    n = wins + losses
    return {
        "sites": int(a.size),
        "end_to_end_better": wins,
        "two_stage_better": losses,
        "end_to_end_better_fraction": wins / a.size if a.size else float("nan"),
        "sign_test_p": float(binomtest(wins, n).pvalue) if n else float("nan"),
    }


def _finished_posterior(path, sampler, args, obs, site_id):
    """(posterior, wall s) of a finished calibration at ``path`` made with these settings and
    observations, or (None, None).  The wall time comes from the JSON file written next to it
    (None when that is missing)."""
    import xarray as xr

    if path is None or not path.exists():
        return None, None
    with xr.open_dataset(path) as ds:
        post = ds.load()
    a = post.attrs
    same = (
        str(a.get("method")) == "nuts" and str(a.get("sampler")) == repr(sampler)
        and all(int(a.get(k, -1)) == v for k, v in
                (("chains", args.chains), ("warmup", args.warmup), ("samples", args.samples), ("seed", args.seed)))
        and post.sizes.get("site") == len(site_id) and np.array_equal(post["site"].values.astype(str), site_id.astype(str))
    )
    if same:  # the same observed profiles (a world of another size or resolution has other sites under the same ids)
        mask = np.asarray(obs.mask)
        soc = np.where(mask, np.asarray(obs.soc), np.nan)
        k = min(soc.shape[1], post["soc_obs"].shape[1])
        same = np.allclose(post["soc_obs"].values[:, :k], soc[:, :k], rtol=1e-12, equal_nan=True)
    if not same:
        raise SystemExit(f"{path} holds a calibration of other profiles or with other settings; delete it or use "
                         "another --out")
    meta = path.with_suffix(".json")
    wall = json.loads(meta.read_text()).get("wall_s") if meta.exists() else None
    return post, wall


def _pearson(a, b):
    from soiljax.learning import pearson

    return pearson(a, b)


def _write_heldout_inputs(folder, site_id, x, cov_names, forcing, obs, attrs):
    """The held-out test sites' inputs in ``folder``: ``forcing.nc``, the noisy observations ``obs.nc``
    (:func:`soiljax.io.read_forcing`, :func:`soiljax.io.read_observations` with ``check_units=False``)
    and the learners' covariates ``covariates.nc`` (variable ``covariates`` (site, covariate));
    ``attrs`` (the world's recipe) go on each file."""
    import xarray as xr

    from soiljax.io import write_forcing, write_observations

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_forcing(forcing, folder / "forcing.nc", site_id=site_id, attrs=attrs)
    write_observations(obs, folder / "obs.nc", site_id=site_id, attrs=attrs)
    ds = xr.Dataset(
        {"covariates": (("site", "covariate"), np.asarray(x, float))},
        coords={"site": np.asarray(site_id), "covariate": list(cov_names)},
        attrs={"description": "covariates of the held-out test sites of benchmarks/learning.py", **attrs},
    )
    ds.to_netcdf(folder / "covariates.nc")


def _write_heldout(path, model, site_id, u_true, stock_true, obs, evals):
    import xarray as xr

    ds = xr.Dataset(
        {
            "u_true": (("site", "param"), u_true),
            "stock_1m_true": ("site", stock_true, {"units": "kgC m-2"}),
            "obs_depth": (("site", "obs"), np.asarray(obs.depth), {"units": "m"}),
            "obs_soc": (("site", "obs"), np.asarray(obs.soc), {"units": "gC m-3"}),
        },
        coords={"site": site_id, "param": list(model.param_names)},
        attrs={"description": "held-out test sites of benchmarks/learning.py: truth, observations and predictions"},
    )
    for key, ev in evals.items():
        ds[f"u_{key}"] = (("site", "param"), np.asarray(ev["u"]))
        ds[f"nse_{key}"] = ("site", np.asarray(ev["nse"]))
        ds[f"stock_1m_{key}"] = ("site", np.asarray(ev["stock_1m"]), {"units": "kgC m-2"})
        ds[f"valid_{key}"] = ("site", np.asarray(ev["valid"]).astype(np.int8))
        if "pred" in ev:
            ds[f"soc_pred_{key}"] = (("site", "obs"), np.asarray(ev["pred"]), {"units": "gC m-3"})
    ds.to_netcdf(path)


# ---------------------------------------------------------------------------
# table, JSON
# ---------------------------------------------------------------------------

def table(results: dict) -> str:
    head = ("model", "approach", "med NSE", "q10 NSE", "valid", "med |stock err|", "within 10%", "within 20%",
            "med r(u)", "train s", "calib s", "epochs (best)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = ("two_stage", "end_to_end", "true_u", "default_u")
    for name, res in results.items():
        for key in order:
            r = res["rows"].get(key)
            if r is None:
                continue
            cells = [
                name.upper(), r["label"], f"{r['median_nse']:.3f}", f"{r['q10_nse']:.3f}", f"{r['valid_fraction']:.0%}",
                f"{100 * r['median_abs_stock_err']:.1f}%", f"{r['stock_within_10pct']:.0%}",
                f"{r['stock_within_20pct']:.0%}", f"{r['median_u_corr']:.2f}" if "median_u_corr" in r else "-",
                f"{r['train_s']:.0f}" if "train_s" in r else "-",
                _calib_cell(r),
                f"{r['epochs']} ({r['best_epoch']})" if "epochs" in r else "-",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _calib_cell(r) -> str:
    s = r.get("calib_s")
    if not s and not r.get("calib_reused"):
        return "-"
    text = f"{s:.0f}" if s is not None and np.isfinite(s) else "?"
    return text + (" (reused)" if r.get("calib_reused") else "")


def corr_table(results: dict) -> str:
    lines = []
    for name, res in results.items():
        keys = [k for k in ("two_stage", "end_to_end") if k in res["rows"]]
        params = list(res["rows"][keys[0]]["u_corr"])
        lines.append(f"\n{name.upper()}: correlation of predicted with true u on the held-out sites")
        lines.append(f"{'parameter':16s}" + "".join(f"{k:>12s}" for k in keys))
        for p in params:
            lines.append(f"{p:16s}" + "".join(f"{res['rows'][k]['u_corr'][p]:12.2f}" for k in keys))
    return "\n".join(lines)


def _clean(o):
    """JSON-safe: NaN and infinities become null, numpy scalars plain numbers."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def summary(results: dict, args, world_s: float, wall_s: float) -> dict:
    def pick(model, row, key):
        return results.get(model, {}).get("rows", {}).get(row, {}).get(key)

    out = {
        "two_stage_heldout_nse": pick("clm5", "two_stage", "median_nse"),
        "end_to_end_heldout_nse": pick("clm5", "end_to_end", "median_nse"),
        "end_to_end_train_s": pick("clm5", "end_to_end", "train_s"),
    }
    for name, res in results.items():
        for key, r in res["rows"].items():
            for k in ("median_nse", "q10_nse", "median_abs_stock_err", "stock_within_10pct", "stock_within_20pct",
                      "median_u_corr", "valid_fraction", "train_s", "calib_s", "epochs", "best_epoch"):
                if k in r:
                    out[f"{name}_{key}_{k}"] = r[k]
        if "end_to_end_beats_two_stage" in res:
            out[f"{name}_end_to_end_beats_two_stage"] = res["end_to_end_beats_two_stage"]
            out[f"{name}_end_to_end_better_site_fraction"] = res["paired"]["end_to_end_better_fraction"]
            out[f"{name}_sign_test_p"] = res["paired"]["sign_test_p"]
        if "calibration" in res:
            out[f"{name}_calibration_s"] = res["calibration"]["wall_s"]
            out[f"{name}_calibration_accepted_fraction"] = res["calibration"]["accepted_fraction"]
    import jax

    out.update({
        "settings": {k: v for k, v in vars(args).items() if k not in ("json",)},
        "platform": jax.devices()[0].platform,
        "devices": len(jax.devices()),
        "world_s": world_s,
        "wall_s": wall_s,
        "results": results,
    })
    return _clean(out)


def main(argv=None):
    args = _args(argv)
    stream = sys.stderr if args.json else sys.stdout

    def log(*a):
        print(*a, file=stream, flush=True)

    t_all = time.perf_counter()
    import jax

    import soiljax  # noqa: F401  (float64)
    from soiljax.world import synthetic_world

    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    log(f"world: {args.n_sites} sites, {args.resolution:g} degrees, seed {args.seed}, models {', '.join(args.models)}; "
        f"{len(jax.devices())} {jax.devices()[0].platform} device(s)")
    t0 = time.perf_counter()
    world = synthetic_world(args.n_sites, resolution=args.resolution, seed=args.seed, models=tuple(args.models),
                            noise=args.noise)
    world_s = time.perf_counter() - t0
    log(f"{world!r} ({world_s:.0f} s)")
    results = {}
    for name in args.models:
        results[name] = run_model(name, world, args, log)
    wall = time.perf_counter() - t_all
    log("\nHeld-out test sites (NSE of the predicted profile vs the noisy observations; invalid = -inf; stock error "
        "vs the true stock to 1 m; r(u): Pearson r of predicted vs true u, median over parameters; train s includes "
        "compilation)\n")
    log(table(results))
    log(corr_table(results))
    for name, res in results.items():
        if "end_to_end_beats_two_stage" in res:
            a, b = res["rows"]["end_to_end"]["median_nse"], res["rows"]["two_stage"]["median_nse"]
            verdict = "beats" if res["end_to_end_beats_two_stage"] else "does NOT beat"
            pc = res["paired"]
            log(f"{name.upper()}: end-to-end {verdict} two-stage on held-out median NSE ({a:.3f} vs {b:.3f}); "
                f"site by site it is better on {pc['end_to_end_better']} of {pc['sites']} held-out sites, worse on "
                f"{pc['two_stage_better']} (sign test p = {pc['sign_test_p']:.2g})")
    log(f"\nwall time {wall:.0f} s (world {world_s:.0f} s)")
    res = summary(results, args, world_s, wall)
    if args.out:
        with open(Path(args.out) / "results.json", "w") as fh:
            json.dump(res, fh, indent=1)
    if args.json:
        print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
