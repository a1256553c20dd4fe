"""Figures of prediction maps: maps per model, latitude profiles (paper Figure 2c), CLM5 vs COMPAS (Figure 4).

Each function takes map datasets from :func:`soiljax.learning.predict_maps` (or
:func:`read_maps`), returns a :class:`matplotlib.figure.Figure` and, when
``path`` is given, saves it there (PNG, or any format matplotlib knows from the
suffix).  Figures are built without pyplot (as in :mod:`soiljax._plots`), so
they render with the Agg backend on headless machines and never change the
backend of a notebook.  matplotlib is imported on the first call, so that
``import soiljax.learning`` stays light.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from ._maps import MAP_UNITS, MAP_VARIABLES, STOCK_DEPTHS, MapsError, check_maps, compare_models, latitude_profile

_OCEAN = "#e6eef5"
_MODEL_COLOURS = {"clm5": "tab:red", "compas": "tab:blue"}
_CMAPS = {"soc_stock_0_30": "YlOrBr", "soc_stock_0_100": "YlOrBr", "plant_input": "YlGn"}
_LABELS = {
    "soc_stock_0_30": "SOC 0-0.3 m",
    "soc_stock_0_100": "SOC 0-1 m",
    "cte": "carbon transfer efficiency",
    "k_bulk": "baseline decomposition",
    "xi_system": "environmental modifier",
    "v_system": "vertical transport",
    "b_system": "input allocation",
    "plant_input": "plant carbon input",
}
DEFAULT_MAP_VARIABLES = MAP_VARIABLES
"""Rows of :func:`maps_figure` by default: the two stocks and the six components."""


def _label(name: str) -> str:
    return name.upper()


def _colour(name: str, i: int) -> str:
    return _MODEL_COLOURS.get(name.lower(), f"C{i}")


def _save(fig, path, dpi: int = 120) -> None:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)


def _check_models(maps_by_model) -> dict:
    if not isinstance(maps_by_model, dict) or not maps_by_model:
        raise MapsError("maps_by_model must be a non-empty dict {model name: map dataset}, e.g. {'clm5': maps}")
    for name, ds in maps_by_model.items():
        check_maps(ds, what=f"maps of {name!r}")
    return maps_by_model


def _edges(centres: np.ndarray) -> np.ndarray:
    c = np.asarray(centres, dtype=float)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks within [lo, hi] (at least the two ends when none fall inside)."""
    ticks = [m * 10.0**e for e in range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
             for m in (1, 2, 5) if lo <= m * 10.0**e <= hi]
    if len(ticks) > 6:
        ticks = [t for t in ticks if str(f"{t:g}")[0] in "15"]
    return ticks if len(ticks) >= 2 else [float(f"{lo:.2g}"), float(f"{hi:.2g}")]


def _row_norm(values: list[np.ndarray], log: bool):
    from matplotlib.colors import LogNorm, Normalize

    v = np.concatenate([np.asarray(a, float).ravel() for a in values])
    v = v[np.isfinite(v)]
    if log:
        v = v[v > 0]
    if v.size == 0:
        return (LogNorm(1.0, 10.0) if log else Normalize(0.0, 1.0)), False
    lo, hi = np.percentile(v, [2, 98])
    if not hi > lo:
        lo, hi = (lo / 1.1, hi * 1.1) if log else (lo - 0.5 * max(abs(lo), 1e-12), hi + 0.5 * max(abs(hi), 1e-12))
    return (LogNorm(lo, hi) if log else Normalize(lo, hi)), True


def maps_figure(maps_by_model: dict, path=None, variables=DEFAULT_MAP_VARIABLES, *, log_variables=tuple(STOCK_DEPTHS)):
    """Maps of ``variables`` (rows) for each model (columns), land only.

    One colour scale per row, shared by the models (2-98 % range of both),
    logarithmic for ``log_variables`` (the SOC stocks by default).  Ocean is
    pale blue, land cells without a value (invalid steady state) are dark
    grey.  Returns the Figure (saved to ``path`` if given).
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    maps_by_model = _check_models(maps_by_model)
    variables = tuple(variables)
    for v in variables:
        for name, ds in maps_by_model.items():
            if v not in ds.data_vars or ds[v].dims != ("lat", "lon"):
                raise MapsError(f"maps of {name!r} have no map {v!r} over (lat, lon)")
    models = list(maps_by_model)
    first = maps_by_model[models[0]]
    lat, lon = np.asarray(first["lat"].values), np.asarray(first["lon"].values)
    land_rows = np.flatnonzero(np.asarray(first["land"].values).any(axis=1)) if "land" in first else np.arange(lat.size)
    res = float(np.median(np.diff(lat))) if lat.size > 1 else 1.0
    y_lo = max(-90.0, float(lat[land_rows.min()]) - res) if land_rows.size else -90.0
    y_hi = min(90.0, float(lat[land_rows.max()]) + res) if land_rows.size else 90.0
    aspect_h = (y_hi - y_lo) / 360.0
    height = (4.6 * aspect_h + 0.55) * len(variables) + 0.4
    fig = Figure(figsize=(4.6 * len(models) + 1.2, height), layout="constrained")
    axes = fig.subplots(len(variables), len(models), squeeze=False, sharex=True, sharey=True)
    lat_e, lon_e = _edges(lat), _edges(lon)
    invalid_cmap = ListedColormap(["0.35"])
    for r, var in enumerate(variables):
        log = var in log_variables
        norm, ok = _row_norm([ds[var].values for ds in maps_by_model.values()], log)
        mesh = None
        for c, name in enumerate(models):
            ds = maps_by_model[name]
            ax = axes[r, c]
            data = np.asarray(ds[var].transpose("lat", "lon").values, dtype=float)
            if log:
                data = np.where(data > 0, data, np.nan)
            mesh = ax.pcolormesh(lon_e, lat_e, np.ma.masked_invalid(data), norm=norm, cmap=_CMAPS.get(var, "viridis"),
                                 shading="flat", rasterized=True)
            if "land" in ds:
                land = np.asarray(ds["land"].values, dtype=bool)
                bad = land & ~np.isfinite(np.asarray(ds[var].values, dtype=float))
                if bad.any():
                    ax.pcolormesh(lon_e, lat_e, np.ma.masked_where(~bad, np.ones(bad.shape)), cmap=invalid_cmap,
                                  shading="flat", rasterized=True)
            ax.set_facecolor(_OCEAN)
            ax.set_xlim(-180, 180)
            ax.set_ylim(y_lo, y_hi)
            ax.set_aspect("equal")
            ax.set_xticks([-120, -60, 0, 60, 120])
            ax.set_yticks([t for t in (-60, -30, 0, 30, 60) if y_lo <= t <= y_hi])
            ax.tick_params(labelsize=7)
            if r == 0:
                n_inv = ds.attrs.get("n_invalid")
                extra = f"\n({n_inv} invalid cells, grey)" if n_inv else ""
                ax.set_title(f"{_label(name)}{extra}", fontsize=10)
            if c == 0:
                ax.set_ylabel("lat", fontsize=8)
            if r == len(variables) - 1:
                ax.set_xlabel("lon", fontsize=8)
        if mesh is not None:
            cb = fig.colorbar(mesh, ax=list(axes[r]), shrink=0.9, pad=0.01)
            cb.set_label(f"{_LABELS.get(var, var)}\n({MAP_UNITS.get(var, first[var].attrs.get('units', ''))})",
                         fontsize=8)
            if log:
                ticks = _log_ticks(norm.vmin, norm.vmax)
                cb.set_ticks(ticks, labels=[f"{t:g}" for t in ticks])
                cb.minorticks_off()
            cb.ax.tick_params(labelsize=7)
    _save(fig, path)
    return fig


def latitude_figure(maps_by_model: dict, path=None, variables=("soc_stock_0_30", "soc_stock_0_100"), *,
                    band: float | None = None):
    """Zonal mean SOC stock against latitude for every model, with the interquartile band (paper Figure 2c).

    One panel per variable; latitude on the vertical axis (as beside a map).
    ``band`` groups latitudes (degrees; default: the grid rows), see
    :func:`latitude_profile`.  Returns the Figure (saved to ``path`` if given).
    """
    from matplotlib.figure import Figure

    maps_by_model = _check_models(maps_by_model)
    fig = Figure(figsize=(3.6 * len(variables) + 0.6, 4.6), layout="constrained")
    axes = fig.subplots(1, len(variables), sharey=True, squeeze=False)[0]
    for ax, var in zip(axes, variables):
        for i, (name, ds) in enumerate(maps_by_model.items()):
            prof = latitude_profile(ds, var, band=band)
            lat = prof["lat"].values
            col = _colour(name, i)
            has = prof["n"].values > 0
            mean = np.where(has, prof.sel(stat="mean").values, np.nan)
            ax.fill_betweenx(lat, prof.sel(stat="q25").values, prof.sel(stat="q75").values, where=has, color=col,
                             alpha=0.2, lw=0, label=f"{_label(name)} interquartile range")
            ax.plot(mean, lat, color=col, lw=1.5, label=f"{_label(name)} zonal mean")
        ax.set_xlabel(f"{_LABELS.get(var, var)} ({MAP_UNITS.get(var, '')})")
        ax.set_xlim(left=0)
        ax.axhline(0, color="0.7", lw=0.6)
        ax.set_title(_LABELS.get(var, var), fontsize=10)
    axes[0].set_ylabel("latitude (deg N)")
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle("SOC stock by latitude (valid land cells)", fontsize=11)
    _save(fig, path)
    return fig


def _names_of(maps_a: xr.Dataset, maps_b: xr.Dataset) -> tuple[str, str]:
    a, b = str(maps_a.attrs.get("model", "a")), str(maps_b.attrs.get("model", "b"))
    return (a, b) if a != b else (f"{a} (a)", f"{b} (b)")


def comparison_figure(maps_a: xr.Dataset, maps_b: xr.Dataset, path=None, *, names=None):
    """Scatter of model A against model B over the cells valid in both (paper Figure 4).

    Panels: log10 SOC stock 0-0.3 m and 0-1 m, then the six components (log10
    for k_bulk and v_system where :func:`compare_models` uses it), each with
    the 1:1 line and Pearson r (unweighted and cos-latitude weighted) in the
    title.  Many cells are drawn as a hexagonal density (log counts).
    ``names`` label the two models (default: the datasets' ``model``
    attributes).  Returns ``(fig, correlations)`` with ``correlations`` from
    :func:`compare_models` (saved to ``path`` if given).
    """
    from matplotlib.figure import Figure

    names = _names_of(maps_a, maps_b) if names is None else tuple(names)
    cmp = compare_models(maps_a, maps_b, names=names)
    a_name, b_name = cmp["models"]
    va = np.asarray(maps_a["valid"].values, dtype=bool).ravel() if "valid" in maps_a else None
    vb = np.asarray(maps_b["valid"].values, dtype=bool).ravel() if "valid" in maps_b else None
    fig = Figure(figsize=(15, 7.6), layout="constrained")
    axes = fig.subplots(2, 4).ravel()
    for ax, var in zip(axes, MAP_VARIABLES):
        c = cmp["variables"][var]
        a = np.asarray(maps_a[var].values, dtype=float).ravel()
        b = np.asarray(maps_b[var].values, dtype=float).ravel()
        use = np.isfinite(a) & np.isfinite(b)
        if va is not None:
            use &= va & vb
        if c["transform"] == "log10":
            use &= (a > 0) & (b > 0)
            x, y = np.log10(a[use]), np.log10(b[use])
            unit = f"log10 {MAP_UNITS[var]}"
        else:
            x, y = a[use], b[use]
            unit = MAP_UNITS[var]
        if x.size:
            lo = float(min(x.min(), y.min()))
            hi = float(max(x.max(), y.max()))
            if hi <= lo:
                lo, hi = lo - 0.5, hi + 0.5
            if x.size > 3000:
                ax.hexbin(x, y, gridsize=60, bins="log", mincnt=1, cmap="viridis", extent=(lo, hi, lo, hi))
            else:
                ax.scatter(x, y, s=6, alpha=0.5, color="tab:purple", lw=0, rasterized=True)
            ax.plot([lo, hi], [lo, hi], color="0.4", lw=0.8, ls="--", label="1:1")
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
        ax.set_title(f"{_LABELS.get(var, var)}\nr = {c['r']:.2f} (area-weighted {c['r_area_weighted']:.2f}), "
                     f"n = {c['n']}", fontsize=9)
        ax.set_xlabel(f"{_label(a_name)} ({unit})", fontsize=8)
        ax.set_ylabel(f"{_label(b_name)} ({unit})", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{_label(a_name)} vs {_label(b_name)}: {cmp['n_cells']} cells valid in both", fontsize=11)
    _save(fig, path)
    return fig, cmp


def map_figures(maps_by_model: dict, out_dir, *, names=None) -> list[Path]:
    """Write ``maps.png``, ``latitude.png`` and (with two models) ``comparison.png`` to ``out_dir``."""
    out = Path(out_dir)
    written = [out / "maps.png", out / "latitude.png"]
    maps_figure(maps_by_model, written[0])
    latitude_figure(maps_by_model, written[1])
    if len(maps_by_model) == 2:
        names = tuple(str(k) for k in maps_by_model) if names is None else tuple(names)
        comparison_figure(*maps_by_model.values(), out / "comparison.png", names=names)
        written.append(out / "comparison.png")
    return written


__all__ = ["comparison_figure", "latitude_figure", "map_figures", "maps_figure"]
