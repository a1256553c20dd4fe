"""The ``soiljax demo`` workflow: synthetic sites -> both models -> netCDF files and figures.

Everything here is one import away for a notebook user::

    from soiljax._demo import run_demo
    summary = run_demo("demo_out", n_sites=300, seed=0)
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import xarray as xr

from ._models import CLM5
from ._registry import model as soil_model
from ._simulate import simulate_to_file
from .io import write_forcing
from .synthetic import ZONES, synthetic_sites

def run_demo(
    out_dir="soiljax_demo",
    *,
    n_sites: int = 250,
    seed: int = 0,
    bedrock: str = "proda",
    progress: bool = False,
    figures: bool = True,
    calibrate_sites: int = 12,
    learn_sites: int = 60,
    log=print,
) -> dict:
    """Generate ``n_sites`` synthetic sites, run CLM5 and COMPAS at their default
    parameters, write ``forcing.nc``, ``clm5.nc``, ``compas.nc`` and PNG figures
    to ``out_dir``, then calibrate CLM5 on ``calibrate_sites`` synthetic
    profiles (:func:`calibration_step`; 0 skips it), run PRODA's whole chain
    on a synthetic world with ``learn_sites`` profile sites (:func:`learning_step`;
    0 skips it) and return a summary dict (also printed through ``log``).
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    forcing, info = synthetic_sites(n_sites, seed=seed)
    write_forcing(forcing, out / "forcing.nc", sites=info)
    results: dict[str, xr.Dataset] = {}
    for key in ("clm5", "compas"):
        model = soil_model(key, bedrock=bedrock)
        results[key] = simulate_to_file(
            model,
            np.asarray(model.default_u()),
            forcing,
            out / f"{key}.nc",
            sites=info,
            batch_size=max(n_sites, 1),
            progress=progress,
            resume=False,
            attrs={"parameters": "model defaults", "forcing_file": "forcing.nc"},
        )
    files = [out / "forcing.nc", out / "clm5.nc", out / "compas.nc"]
    if figures:
        from . import _plots

        files += _plots.demo_figures(results["clm5"], results["compas"], out)
    summary = summarise(results["clm5"], results["compas"])
    if calibrate_sites > 0:
        summary["calibration"], cal_files = calibration_step(
            forcing, results["clm5"], out, n_sites=calibrate_sites, seed=seed, bedrock=bedrock,
            progress=progress, figures=figures)
        files += cal_files
    if learn_sites > 0:
        summary["learning"], learn_files = learning_step(out, n_sites=learn_sites, seed=seed, progress=progress,
                                                         figures=figures)
        files += learn_files
    summary["seconds"] = time.perf_counter() - t0
    summary["files"] = [str(f) for f in files]
    if log is not None:
        log(format_summary(summary))
    return summary


def calibration_step(forcing, clm5: xr.Dataset, out: Path, *, n_sites: int = 12, seed: int = 0,
                     bedrock: str = "proda", progress: bool = False, figures: bool = True):
    """Calibrate CLM5 on synthetic observed profiles of some demo sites.

    Takes the first ``n_sites`` sites where CLM5 is valid at its defaults,
    perturbs the default parameters (+-0.15 in u) to make a known truth,
    observes 4-8 depths with 10% multiplicative noise, samples every
    profile's posterior with NUTS (3 chains, 200 + 200 iterations) and writes
    ``obs.nc``, ``posterior_clm5.nc`` and ``calibration_profiles.png``.
    Returns a summary (R-hat and NSE criteria, 90% interval coverage of the
    true u) and the written files.
    """
    import jax

    from . import io
    from ._batch import batched_steady_state
    from .calibration import NUTS, calibrate
    from .synthetic import synthetic_observations

    model = CLM5(bedrock=bedrock)
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(clm5["valid"].values.astype(bool))
    u_default = np.asarray(model.default_u())
    u_true = np.clip(u_default + rng.uniform(-0.15, 0.15, (len(candidates), model.n_params)), 0.02, 0.98)
    valid = np.asarray(batched_steady_state(model, u_true, forcing[candidates]).valid)
    pick = candidates[valid][:n_sites]
    f, u_true = forcing[pick], u_true[valid][: len(pick)]
    labels = clm5["site"].values[pick]
    obs, truth = synthetic_observations(model, u_true, f, seed=seed, site_id=labels)
    io.write_observations(obs, out / "obs.nc", site_id=labels)
    t0 = time.perf_counter()
    post = calibrate(model, f, obs, method=NUTS(), warmup=200, samples=200, batch_size=len(pick), seed=seed,
                     out=out / "posterior_clm5.nc", resume=False, progress=progress, site_id=labels)
    inside = (post["u_q05"].values <= u_true) & (u_true <= post["u_q95"].values)
    summary = {
        "n_profiles": int(len(pick)),
        "seconds": time.perf_counter() - t0,
        "accepted": int(post["accepted"].sum()),
        "median_nse": float(post["nse"].median()),
        "median_rhat_max": float(post["rhat_max"].median()),
        "coverage90": float(inside.mean()),
        "device": jax.devices()[0].platform,
    }
    files = [out / "obs.nc", out / "posterior_clm5.nc"]
    if figures:
        from . import _plots

        soc_true = np.asarray(batched_steady_state(model, u_true, f).soc)
        tr = xr.Dataset({"soc_true_layer": (("site", "layer"), soc_true)})
        fig = _plots.calibration_figure(post, sites=range(min(6, len(pick))), truth=tr)
        fig.savefig(out / "calibration_profiles.png", dpi=110)
        files.append(out / "calibration_profiles.png")
    return summary, files


def learning_step(out: Path, *, n_sites: int = 60, resolution: float = 10.0, seed: int = 0, progress: bool = False,
                  figures: bool = True, warmup: int = 100, samples: int = 100, epochs: int = 400):
    """PRODA's chain on a synthetic world: sites -> calibration -> learning -> maps -> figures.

    Builds a world of ``n_sites`` profile sites on a ``resolution``-degree
    grid (``out/world``, :func:`soiljax.world.synthetic_world`); for CLM5 and
    COMPAS calibrates every valid site's observed profile with NUTS (3
    chains, ``warmup`` + ``samples`` iterations and trees of at most 63
    steps: short, for a demo; COMPAS's chains do not converge at this depth),
    trains a two-stage network on the posterior means (hidden 64-64, MSE,
    early stopping), predicts the maps of every land cell, and writes
    ``posterior_world_<model>.nc``, ``net_<model>.eqx``,
    ``maps_<model>.nc``, ``comparison.json`` and the figures ``maps.png``,
    ``latitude.png``, ``comparison.png``.  Returns a summary (per model:
    sites, accepted profiles, the network's correlation with the hidden true
    parameters on the cells, the global stock; the CLM5-vs-COMPAS
    correlations) and the written files.
    """
    import json

    from . import learning as L
    from . import world as W
    from .calibration import NUTS, calibrate

    t0 = time.perf_counter()
    world = W.synthetic_world(n_sites, resolution=resolution, seed=seed)
    W.write_world(world, out / "world")
    files = [out / "world"]
    x = world.covariate_matrix("sites")
    summary: dict = {"n_sites": int(n_sites), "n_cells": int(world.n_cells), "models": {}}
    maps = {}
    for name in ("clm5", "compas"):
        model = soil_model(name)
        keep = np.flatnonzero(world.valid[name])
        labels = world.sites["site"].values[keep]
        post = calibrate(model, world.site_forcing[keep], world.observations[name][keep],
                         method=NUTS(max_num_doublings=6), extend=0,  # short chains by design: no extension
                         warmup=warmup, samples=samples, batch_size=len(keep), seed=seed, progress=progress,
                         out=out / f"posterior_world_{name}.nc", resume=False, site_id=labels)
        learner, hist = L.train_two_stage(x[keep], post["u_mean"].values, model_name=name,
                                          covariate_names=W.COVARIATES, hidden=(64, 64), epochs=epochs,
                                          patience=50, seed=seed, progress=False)
        L.save_learner(out / f"net_{name}.eqx", learner)
        maps[name] = L.predict_maps(learner, world, progress=progress)
        L.write_maps(maps[name], out / f"maps_{name}.nc")
        u_cells = np.asarray(learner.predict_u(world.covariate_matrix("cells")))
        r = [L.pearson(u_cells[:, j], world.cell_u_true[name][:, j]) for j in range(model.n_params)]
        summary["models"][name] = {
            "sites": int(len(keep)),
            "accepted": int(post["accepted"].sum()),
            "median_nse": float(post["nse"].median()),
            "median_r_u_cells": float(np.nanmedian(r)),
            "global_stock_PgC": L.global_stock(maps[name])["total_PgC"],
        }
        files += [out / f"posterior_world_{name}.nc", out / f"net_{name}.eqx", out / f"maps_{name}.nc"]
    cmp = L.compare_models(maps["clm5"], maps["compas"], names=("clm5", "compas"))
    (out / "comparison.json").write_text(json.dumps(cmp, indent=1))
    files.append(out / "comparison.json")
    summary["r_log_soc_0_100"] = cmp["variables"]["soc_stock_0_100"]["r"]
    summary["r_components"] = {v: c["r"] for v, c in cmp["variables"].items() if not v.startswith("soc_stock")}
    if figures:
        files += L.map_figures(maps, out)
    summary["seconds"] = time.perf_counter() - t0
    return summary, files


def summarise(clm5: xr.Dataset, compas: xr.Dataset) -> dict:
    """Valid fractions (overall and per zone) and median 0-1 m stocks of both models."""
    summary: dict = {"n_sites": int(clm5.sizes["site"])}
    for name, ds in (("CLM5", clm5), ("COMPAS", compas)):
        valid = ds["valid"].values.astype(bool)
        stock = ds["soc_stock_0_100"].values
        entry = {
            "valid_fraction": float(valid.mean()),
            "median_stock_0_100": float(np.median(stock[valid])) if valid.any() else float("nan"),
        }
        if "zone" in ds.coords:
            zone = ds["zone"].values.astype(str)
            entry["valid_by_zone"] = {z: float(valid[zone == z].mean()) for z in ZONES if np.any(zone == z)}
        summary[name] = entry
    return summary


def format_summary(summary: dict) -> str:
    lines = [f"soiljax demo: {summary['n_sites']} synthetic sites"]
    for name in ("CLM5", "COMPAS"):
        s = summary[name]
        lines.append(
            f"  {name:6s}: {100 * s['valid_fraction']:5.1f}% valid, median SOC stock 0-1 m "
            f"{s['median_stock_0_100']:.1f} kgC m-2 (valid sites)"
        )
        if "valid_by_zone" in s:
            lines.append("          valid by zone: " + ", ".join(f"{z} {100 * v:.0f}%" for z, v in s["valid_by_zone"].items()))
    if "calibration" in summary:
        c = summary["calibration"]
        lines.append(
            f"  calibration: CLM5 on {c['n_profiles']} synthetic profiles (NUTS, 3 chains) in {c['seconds']:.0f} s: "
            f"{c['accepted']} accepted by PRODA's filter, median NSE {c['median_nse']:.3f}, "
            f"median max R-hat {c['median_rhat_max']:.3f}, 90% intervals cover {100 * c['coverage90']:.0f}% of true u"
        )
    if "learning" in summary:
        c = summary["learning"]
        lines.append(f"  learning: world of {c['n_sites']} sites and {c['n_cells']} land cells, calibrated, two-stage "
                     f"networks, maps in {c['seconds']:.0f} s")
        for name, m in c["models"].items():
            lines.append(
                f"    {name:6s}: {m['accepted']}/{m['sites']} profiles accepted (median NSE {m['median_nse']:.2f}); "
                f"network vs hidden u on the cells: median r {m['median_r_u_cells']:.2f}; "
                f"global SOC 0-1 m {m['global_stock_PgC']:.0f} Pg C (valid cells)"
            )
        comps = ", ".join(f"{k} {v:.2f}" for k, v in c["r_components"].items())
        lines.append(f"    CLM5 vs COMPAS maps: r(log SOC 0-1 m) = {c['r_log_soc_0_100']:.2f}; components: {comps}")
    if "seconds" in summary:
        lines.append(f"  done in {summary['seconds']:.1f} s")
    if summary.get("files"):
        lines.append("  wrote: " + ", ".join(summary["files"]))
    return "\n".join(lines)
