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

from ._models import CLM5, COMPAS
from .io import simulate_to_file, write_forcing
from .synthetic import ZONES, synthetic_sites

def run_demo(
    out_dir="soiljax_demo",
    *,
    n_sites: int = 250,
    seed: int = 0,
    bedrock: str = "proda",
    progress: bool = False,
    figures: bool = True,
    log=print,
) -> dict:
    """Generate ``n_sites`` synthetic sites, run CLM5 and COMPAS at their default
    parameters, write ``forcing.nc``, ``clm5.nc``, ``compas.nc`` and PNG figures
    to ``out_dir`` and return a summary dict (also printed through ``log``).
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    forcing, info = synthetic_sites(n_sites, seed=seed)
    write_forcing(forcing, out / "forcing.nc", sites=info)
    results: dict[str, xr.Dataset] = {}
    for key, model in (("clm5", CLM5(bedrock=bedrock)), ("compas", COMPAS(bedrock=bedrock))):
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
    summary["seconds"] = time.perf_counter() - t0
    summary["files"] = [str(f) for f in files]
    if log is not None:
        log(format_summary(summary))
    return summary


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
    if "seconds" in summary:
        lines.append(f"  done in {summary['seconds']:.1f} s")
    if summary.get("files"):
        lines.append("  wrote: " + ", ".join(summary["files"]))
    return "\n".join(lines)
