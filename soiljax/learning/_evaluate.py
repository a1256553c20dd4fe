"""Held-out evaluation of a learner: predicted profiles against observations."""

from __future__ import annotations

import numpy as np

from .._batch import batched_steady_state
from .._diagnostics import soc_stock
from .._observe import score_sites
from ._learner import Learner, model_name_of


def pearson(a, b) -> float:
    """Pearson correlation of two 1-D arrays over their jointly finite entries (NaN if undefined)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 2:
        return float("nan")
    a, b = a[ok], b[ok]
    if np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")  # a constant column (centring it leaves round-off, not a correlation)
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def evaluate(model, learner: Learner, x, forcing, obs, *, u_true=None, batch_size: int | None = None) -> dict:
    """Score a learner's predicted parameters against observed profiles (e.g. on test sites).

    The learner predicts ``u`` from ``x`` (ensemble mean, clipped, PRODA's
    rule), the model is solved to steady state at every site
    (:func:`soiljax.batched_steady_state`, in batches of ``batch_size``), the
    SOC is interpolated to the observed depths and scored
    (:func:`soiljax._observe.score_sites`: pchip, then NSE).

    Returns a dict with per-site arrays

    ``u`` (site, param)
        predicted scaled parameters;
    ``valid`` (site,)
        steady state valid;
    ``nse`` (site,)
        Nash-Sutcliffe efficiency of the predicted profile against the
        observations over the usable layers (NaN where invalid);
    ``stock_1m`` (site,)
        predicted SOC stock to 1 m in kgC m-2 (:func:`soiljax.soc_stock`; NaN where invalid);
    ``pred`` (site, obs)
        predicted SOC at the observed depths (NaN where padded or invalid);

    and summaries: ``n_sites``, ``valid_fraction``, ``median_nse`` and
    ``mean_nse`` (over valid sites), and when ``u_true`` (site, param) is
    given, ``u_corr`` (dict parameter -> Pearson r between predicted and true
    u over valid sites; NaN for a parameter that is constant), ``u_rmse``
    (dict parameter -> RMSE) and ``median_u_corr``.
    """
    name = model_name_of(model)
    if name != learner.model_name:
        raise ValueError(f"the learner predicts {learner.model_name} parameters but the model is {name}")
    if tuple(learner.param_names) != tuple(model.param_names):
        raise ValueError("evaluate needs a learner that predicts all of the model's parameters, in the model's order")
    u = np.asarray(learner.predict_u(x))
    n = u.shape[0]
    if tuple(forcing.batch_shape) != (n,) or tuple(obs.batch_shape) != (n,):
        raise ValueError(
            f"x has {n} sites but the forcing has batch shape {forcing.batch_shape} and the observations "
            f"{obs.batch_shape}; give one forcing site and one profile per row of x"
        )
    return evaluate_u(model, u, forcing, obs, u_true=u_true, batch_size=batch_size)


def evaluate_u(model, u, forcing, obs, *, u_true=None, batch_size: int | None = None) -> dict:
    """:func:`evaluate` for given parameters ``u`` (site, param) instead of a learner's: the
    same dict, e.g. for the reference rows of a comparison (the true parameters, the
    model's defaults at every site: pass ``np.broadcast_to(model.default_u(), shape)``).
    ``forcing`` and ``obs`` hold one site per row of ``u``."""
    u = np.asarray(u)
    n = u.shape[0]
    if tuple(forcing.batch_shape) != (n,) or tuple(obs.batch_shape) != (n,):
        raise ValueError(
            f"u has {n} sites but the forcing has batch shape {forcing.batch_shape} and the observations "
            f"{obs.batch_shape}; give one forcing site and one profile per row of u"
        )
    steady = batched_steady_state(model, u, forcing, batch_size=batch_size)
    valid = np.asarray(steady.valid).astype(bool)
    pred, score = score_sites(steady.soc, obs.depth, obs.soc, obs.mask, batch_size=batch_size)
    pred = np.where(valid[:, None], pred, np.nan)
    score = np.where(valid, score, np.nan)
    stock = np.where(valid, np.asarray(soc_stock(steady.soc, 1.0)), np.nan)
    out = {
        "u": u,
        "valid": valid,
        "nse": score,
        "stock_1m": stock,
        "pred": pred,
        "n_sites": n,
        "valid_fraction": float(valid.mean()) if n else float("nan"),
        "median_nse": float(np.median(score[valid])) if valid.any() else float("nan"),
        "mean_nse": float(np.mean(score[valid])) if valid.any() else float("nan"),
    }
    if u_true is not None:
        ut = np.asarray(u_true, dtype=float)
        if ut.shape != u.shape:
            raise ValueError(f"u_true must have shape {u.shape} (site, param), got {ut.shape}")
        names = model.param_names  # the learner's too (checked by evaluate)
        out["u_corr"] = {p: pearson(u[valid, i], ut[valid, i]) for i, p in enumerate(names)}
        out["u_rmse"] = {p: float(np.sqrt(np.mean((u[valid, i] - ut[valid, i]) ** 2))) for i, p in enumerate(names)}
        r = np.array(list(out["u_corr"].values()))
        out["median_u_corr"] = float(np.nanmedian(r)) if np.isfinite(r).any() else float("nan")
    return out


__all__ = ["evaluate", "evaluate_u", "pearson"]
