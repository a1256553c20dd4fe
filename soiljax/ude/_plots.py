"""The paper's three figures for one case, written as PNG files.

* ``profile.png`` - true (clean) vs predicted profile at the evaluated time, with the
  observations and, for noise-aware runs, the 95% predictive interval;
* ``residuals.png`` - prediction minus clean truth (and observation minus clean truth)
  against depth;
* ``heatmap.png`` - the depth-time field as [true | predicted | residual].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save_figures(out, data, ys, k, lower=None, upper=None, title="") -> list[Path]:
    """Write the three figures into ``out``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out = Path(out)
    z = np.asarray(data.z)
    ts = np.asarray(data.ts)
    clean = np.asarray(data.c_clean)
    obs = np.asarray(data.c_obs)
    ys = np.asarray(ys)
    t_k = float(ts[k])
    paths = []

    fig, ax = plt.subplots(figsize=(4.5, 5))
    if lower is not None:
        ax.fill_betweenx(z, lower[k], upper[k], color="C1", alpha=0.25,
                         label="95% interval")
    ax.plot(obs[k], z, "k.", ms=5, label="observed")
    ax.plot(clean[k], z, "C0-", lw=2, label="true (clean)")
    ax.plot(ys[k], z, "C1--", lw=2, label="UDE")
    ax.invert_yaxis()
    ax.set_xlabel("SOC concentration C")
    ax.set_ylabel("depth z (m)")
    ax.set_title(f"{title}: profile at t = {t_k:g} yr")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    paths.append(out / "profile.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 5))
    ax.axvline(0.0, color="0.6", lw=1)
    ax.plot(obs[k] - clean[k], z, "k.", ms=5, label="observed - true")
    ax.plot(ys[k] - clean[k], z, "C3o-", ms=3, label="UDE - true")
    ax.invert_yaxis()
    ax.set_xlabel("residual")
    ax.set_ylabel("depth z (m)")
    ax.set_title(f"{title}: residuals at t = {t_k:g} yr")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    paths.append(out / "residuals.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharey=True)
    extent = (ts[0], ts[-1], z[-1], z[0])
    vmin, vmax = clean.min(), clean.max()
    resid = ys - clean
    rmax = float(np.max(np.abs(resid))) or 1.0
    panels = [(clean, "true", "viridis", vmin, vmax),
              (ys, "predicted", "viridis", vmin, vmax),
              (resid, "residual (pred - true)", "RdBu_r", -rmax, rmax)]
    for ax, (field, name, cmap, lo, hi) in zip(axes, panels):
        im = ax.imshow(field.T, aspect="auto", extent=extent, cmap=cmap, vmin=lo, vmax=hi)
        ax.set_title(name)
        ax.set_xlabel("time (yr)")
        fig.colorbar(im, ax=ax, shrink=0.85)
    axes[0].set_ylabel("depth z (m)")
    fig.suptitle(f"{title}: SOC over depth and time")
    fig.tight_layout()
    paths.append(out / "heatmap.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths
