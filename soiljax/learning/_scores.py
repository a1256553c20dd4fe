"""Summaries of held-out evaluations, and the site-by-site comparison of two.

:func:`evaluation_summary` turns one result of :func:`evaluate` (or
:func:`evaluate_u`) into the figures of a comparison table; an invalid
steady state counts as a failure (NSE = -inf, stock error = inf), so medians
and shares are over all held-out sites.  :func:`paired_comparison` counts on
how many sites one evaluation beats another, with a sign test.  Plain NumPy.
"""

from __future__ import annotations

import numpy as np


def _quantile(values, q: float) -> float:
    """Quantile that tolerates -inf (a failure): picks an actual value, no interpolation."""
    v = np.asarray(values, float)
    return float(np.quantile(v, q, method="lower")) if v.size else float("nan")


def _median(values) -> float:
    v = np.asarray(values, float)
    return float(np.median(v)) if v.size else float("nan")


def evaluation_summary(ev: dict, stock_true) -> dict:
    """The figures of one evaluation on held-out sites, invalid steady states counted as failures.

    ``ev`` needs ``valid``, ``nse`` and ``stock_1m`` (site,), as :func:`evaluate` returns
    them; ``stock_true`` (site,) is the true SOC stock to 1 m.  Returns ``n_test``,
    ``valid_fraction``, ``median_nse``, ``q10_nse``, ``q90_nse`` (-inf for a failure;
    quantiles pick an actual site's value), ``mean_nse_valid`` (over valid sites),
    ``nse_gt_0``, ``median_stock_rel_bias`` (over valid sites), ``median_abs_stock_err``
    (relative), ``stock_within_10pct``, ``stock_within_20pct``, and with ``u_corr`` in
    ``ev`` (``u_true`` given) also ``median_u_corr``, ``u_corr`` and ``u_rmse``.
    """
    valid = np.asarray(ev["valid"], bool)
    stock_true = np.asarray(stock_true, float)
    nse = np.where(valid, ev["nse"], -np.inf)
    rel = np.where(valid, (ev["stock_1m"] - stock_true) / stock_true, np.inf)
    err = np.abs(rel)
    out = {
        "n_test": int(valid.size),
        "valid_fraction": float(valid.mean()),
        "median_nse": _median(nse),
        "q10_nse": _quantile(nse, 0.1),
        "q90_nse": _quantile(nse, 0.9),
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


def paired_comparison(ev_a: dict, ev_b: dict, *, names: tuple[str, str] = ("a", "b")) -> dict:
    """Site by site, how often evaluation ``a``'s NSE beats ``b``'s on the same sites (an invalid
    steady state counts as -inf), with a two-sided sign test (ties dropped): with a few dozen
    sites a difference of medians alone can be chance.

    Returns ``sites``, ``<a>_better``, ``<b>_better``, ``<a>_better_fraction`` (of all sites)
    and ``sign_test_p``, where ``<a>``, ``<b>`` are ``names``.
    """
    from scipy.stats import binomtest

    a_name, b_name = names
    a = np.where(ev_a["valid"], ev_a["nse"], -np.inf)
    b = np.where(ev_b["valid"], ev_b["nse"], -np.inf)
    wins, losses = int(np.sum(a > b)), int(np.sum(a < b))
    n = wins + losses
    return {
        "sites": int(a.size),
        f"{a_name}_better": wins,
        f"{b_name}_better": losses,
        f"{a_name}_better_fraction": wins / a.size if a.size else float("nan"),
        "sign_test_p": float(binomtest(wins, n).pvalue) if n else float("nan"),
    }


__all__ = ["evaluation_summary", "paired_comparison"]
