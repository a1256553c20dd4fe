"""Figures comparing CLM5 and COMPAS result datasets (matplotlib).

Each function takes result datasets as written by :func:`soiljax.simulate_to_file`
and returns a :class:`matplotlib.figure.Figure`; :func:`demo_figures` writes the
demo's PNGs.  Figures are built without pyplot, so they render with the Agg
backend on headless machines and never change the backend of a notebook.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from ._diagnostics import COMPONENT_UNITS

_ZONE_COLOURS = {
    "tropical": "tab:green",
    "temperate": "tab:blue",
    "arid": "tab:orange",
    "boreal": "tab:purple",
    "shallow_bedrock": "tab:brown",
}
_MODEL_STYLE = {"CLM5": dict(color="tab:red"), "COMPAS": dict(color="tab:blue")}


def _zone_order(zones: np.ndarray) -> list[str]:
    """Zones present, in the documented order first."""
    present = list(dict.fromkeys(zones))
    return [z for z in _ZONE_COLOURS if z in present] + [z for z in present if z not in _ZONE_COLOURS]


def _zones(ds: xr.Dataset) -> np.ndarray:
    if "zone" in ds.coords or "zone" in ds.variables:
        return ds["zone"].values.astype(str)
    return np.full(ds.sizes["site"], "all")


def example_sites(clm5: xr.Dataset, compas: xr.Dataset) -> list[int]:
    """One site index per zone, preferring sites valid in both models."""
    zones = _zones(clm5)
    both = clm5["valid"].values.astype(bool) & compas["valid"].values.astype(bool)
    picks = []
    for z in _zone_order(zones):
        idx = np.flatnonzero(zones == z)
        good = idx[both[idx]]
        picks.append(int(good[0] if good.size else idx[0]))
    return picks


def profiles_figure(clm5: xr.Dataset, compas: xr.Dataset, sites: list[int] | None = None):
    """SOC profiles (gC m-3 against depth) of both models at a few sites."""
    sites = example_sites(clm5, compas) if sites is None else list(sites)
    zones = _zones(clm5)
    fig = Figure(figsize=(3.0 * len(sites), 4.2))
    axes = fig.subplots(1, len(sites), sharey=True, squeeze=False)
    for ax, i in zip(axes[0], sites):
        for name, ds in (("CLM5", clm5), ("COMPAS", compas)):
            ok = bool(ds["valid"].values[i])
            ax.plot(
                ds["soc"].values[i],
                ds["z"].values,
                marker="o",
                ms=3,
                ls="-" if ok else ":",
                label=f"{name}{'' if ok else ' (invalid)'}",
                **_MODEL_STYLE[name],
            )
        ax.set_xscale("log")
        top = max(float(np.max(clm5["soc"].values[i])), float(np.max(compas["soc"].values[i])), 1e-9)
        ax.set_xlim(top * 1e-4, top * 2)  # deep layers hold negligible carbon
        ax.set_title(f"{zones[i]}\n{clm5['site'].values[i]!s}", fontsize=9)
        ax.set_xlabel("SOC (gC m$^{-3}$)")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("depth (m)")
    axes[0][0].invert_yaxis()
    fig.suptitle("Steady-state SOC profiles at default parameters")
    fig.tight_layout()
    return fig


def latitude_figure(clm5: xr.Dataset, compas: xr.Dataset, variable: str = "soc_stock_0_100"):
    """SOC stock against latitude for both models, coloured by zone; invalid sites hollow."""
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2, sharey=True)
    zones = _zones(clm5)
    for ax, (name, ds) in zip(axes, (("CLM5", clm5), ("COMPAS", compas))):
        lat = ds["lat"].values if "lat" in ds.coords else np.arange(ds.sizes["site"])
        y = ds[variable].values
        valid = ds["valid"].values.astype(bool)
        for z in _zone_order(zones):
            m = zones == z
            c = _ZONE_COLOURS.get(z, "k")
            ax.scatter(lat[m & valid], y[m & valid], s=10, color=c, label=z)
            ax.scatter(lat[m & ~valid], y[m & ~valid], s=10, facecolors="none", edgecolors=c, lw=0.6)
        ax.set_yscale("log")
        ax.set_xlabel("latitude (deg N)" if "lat" in ds.coords else "site")
        ax.set_title(f"{name} (hollow: invalid steady state)")
    axes[0].set_ylabel(f"{ds[variable].attrs.get('long_name', variable)} ({ds[variable].attrs.get('units', '')})")
    axes[1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _corr(x, y) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(x[ok], y[ok])[0, 1])


def components_figure(clm5: xr.Dataset, compas: xr.Dataset):
    """CLM5 against COMPAS for the six components and log10 SOC stock (sites valid in both)."""
    both = clm5["valid"].values.astype(bool) & compas["valid"].values.astype(bool)
    zones = _zones(clm5)
    keys = list(COMPONENT_UNITS) + ["log10_soc_stock_0_100"]
    fig = Figure(figsize=(14, 7))
    axes = fig.subplots(2, 4)
    for ax, key in zip(axes.flat, keys):
        if key.startswith("log10_"):
            base = key[len("log10_") :]
            x = np.log10(np.maximum(clm5[base].values, 1e-12))
            y = np.log10(np.maximum(compas[base].values, 1e-12))
            unit = "log10 kgC m-2"
        else:
            x, y = clm5[key].values, compas[key].values
            unit = COMPONENT_UNITS[key]
        for z in _zone_order(zones):
            m = both & (zones == z)
            ax.scatter(x[m], y[m], s=8, color=_ZONE_COLOURS.get(z, "k"), label=z)
        lo = np.nanmin(np.concatenate([x[both], y[both]])) if both.any() else 0.0
        hi = np.nanmax(np.concatenate([x[both], y[both]])) if both.any() else 1.0
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=0.8)
        ax.set_title(f"{key} ({unit})\nr = {_corr(x[both], y[both]):.2f}, n = {int(both.sum())}", fontsize=9)
        ax.set_xlabel("CLM5")
        ax.set_ylabel("COMPAS")
    axes.flat[-1].axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    axes.flat[-1].legend(handles, labels, loc="center", title="zone")
    fig.suptitle("CLM5 vs COMPAS: system-level components (sites valid in both models)")
    fig.tight_layout()
    return fig


def demo_figures(clm5: xr.Dataset, compas: xr.Dataset, out_dir) -> list[Path]:
    """Write the demo's three PNGs to ``out_dir``; returns their paths."""
    out = Path(out_dir)
    written = []
    for name, make in (
        ("profiles.png", profiles_figure),
        ("soc_stock_latitude.png", latitude_figure),
        ("components_scatter.png", components_figure),
    ):
        fig = make(clm5, compas)
        path = out / name
        fig.savefig(path, dpi=110)
        written.append(path)
    return written


def calibration_figure(post: xr.Dataset, sites=None, truth: xr.Dataset | None = None, max_depth: float = 2.0,
                       ncols: int = 3):
    """Observed vs fitted profiles of calibrated sites.

    Per site: the observations (points), the posterior median of the modelled
    SOC per layer with its 90% band, and the true profile when ``truth``
    (a dataset with ``soc_true_layer`` (site, layer)) is given.
    """
    sites = list(range(min(6, post.sizes["site"]))) if sites is None else list(sites)
    nrows = -(-len(sites) // ncols)
    fig = Figure(figsize=(3.2 * ncols, 3.4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    z = post["z"].values
    shown = z <= max_depth
    for ax, i in zip(axes, sites):
        p = post.isel(site=i)
        ax.fill_betweenx(z[shown], p["soc_q05"].values[shown] / 1e3, p["soc_q95"].values[shown] / 1e3,
                         color="tab:blue", alpha=0.25, label="90% band")
        ax.plot(p["soc_q50"].values[shown] / 1e3, z[shown], color="tab:blue", label="posterior median")
        if truth is not None and "soc_true_layer" in truth:
            ax.plot(truth["soc_true_layer"].values[i][shown] / 1e3, z[shown], "k--", lw=1, label="truth")
        ax.plot(p["soc_obs"].values / 1e3, p["obs_depth"].values, "o", color="tab:red", ms=4, label="observed")
        label = p["site"].values.item()
        extra = f" {p['soil_group'].values.item()}" if "soil_group" in p.coords else ""
        ax.set_title(f"{label}{extra}: NSE {float(p['nse']):.2f}", fontsize=9)
        ax.set_ylim(max_depth, 0)
        ax.set_xlabel("SOC (kgC m-3)")
        ax.set_ylabel("depth (m)")
    for ax in axes[len(sites):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    return fig
