"""Two-stage learning (PRODA's second stage): covariates -> posterior-mean parameters.

Stage one (:func:`soiljax.calibration.calibrate`) gives every observed
profile a posterior; stage two fits a network from the sites' covariates to
the posterior means ``u`` so that it can predict parameters anywhere the
covariates are known.
"""

from __future__ import annotations

import dataclasses
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._options import LEARNING_RATE, TWO_STAGE_BATCH_SIZE, TWO_STAGE_EPOCHS, TWO_STAGE_PATIENCE
from ._common import Progress, batch_plan, check_epochs, guarded_update, make_optimizer, provenance, whole_number
from ._learner import Learner, check_covariates, check_split, init_learner, metadata_json, model_name_of, split_indices
from ._losses import get_loss
from ._network import PRODA_DROPOUT, PRODA_HIDDEN


def _check_targets(u_target, n: int, what: str = "u_target") -> np.ndarray:
    u = np.asarray(u_target, dtype=float)
    if u.ndim == 1:
        u = u[:, None]
    if u.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (site, param), got shape {u.shape}")
    if u.shape[0] != n:
        raise ValueError(f"x has {n} sites (rows) but {what} has {u.shape[0]}; give one row of targets per site")
    bad = ~np.isfinite(u)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(
            f"{what} has NaN or infinite values at {rows.size} site(s) (first row {rows[0]}, e.g. a site without a "
            "posterior); drop those sites from x and the targets"
        )
    if np.any(u < 0) or np.any(u > 1):
        raise ValueError(
            f"{what} must be scaled parameters in [0, 1] (found {u.min():.3g}..{u.max():.3g}); convert physical "
            "values with model.space.to_u(theta)"
        )
    return u


def _check_weight(weight, n: int, n_out: int):
    if weight is None:
        return None
    w = np.asarray(weight, dtype=float)
    if w.shape not in ((n,), (n, n_out)):
        raise ValueError(f"weight must have shape ({n},) (one per site) or ({n}, {n_out}), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weight must be finite and non-negative")
    return w


def train_two_stage(
    x,
    u_target,
    *,
    model_name,
    covariate_names=None,
    param_names=None,
    loss="mse",
    hidden=PRODA_HIDDEN,
    dropout: float = PRODA_DROPOUT,
    epochs: int = TWO_STAGE_EPOCHS,
    batch_size: int = TWO_STAGE_BATCH_SIZE,
    learning_rate=LEARNING_RATE,
    patience: int | None = TWO_STAGE_PATIENCE,
    split=None,
    seed: int = 0,
    ensemble: int = 1,
    progress: bool = True,
    weight=None,
    metadata=None,
) -> tuple[Learner, dict]:
    """Fit a network from covariates to posterior-mean parameters (PRODA's stage two).

    Parameters
    ----------
    x:
        Covariates (site, covariate), raw units; no NaN (drop or fill first).
    u_target:
        Targets (site, param): posterior means of the scaled parameters, in
        [0, 1] (e.g. ``post["u_mean"]`` of :func:`soiljax.calibration.calibrate`).
    model_name:
        ``"clm5"`` or ``"compas"`` (or a model instance): whose parameters.
    covariate_names, param_names:
        Column names; default ``x0, x1, ...`` and the model's parameter names
        (``param_names`` is required when the targets are a subset).
    loss:
        ``"mse"`` (mean squared error) or ``"proda"`` (MSE x mean relative
        absolute error, PRODA's loss), or a callable ``f(pred, target, weight)``.
    hidden, dropout:
        Architecture (PRODA: 256-512-512-256, dropout 0.2).
    epochs, patience:
        At most ``epochs`` passes over the training set; training stops when the
        validation loss has not improved for ``patience`` epochs (``None``: run
        all epochs).  The parameters of the best validation epoch are returned
        (PRODA trains up to 6000 epochs and keeps the best; the default, shared
        with ``soiljax learn``, is up to 1000 epochs with patience 100).
    batch_size, learning_rate:
        Mini-batch size (PRODA: 32) and Adam's learning rate (a float or an
        optax schedule).  Every epoch reshuffles the training set and drops
        the remainder that does not fill a batch, so all steps share one
        compiled program.
    split:
        ``(train, val, test)`` index arrays, or None for a random 80/10/10
        split with ``seed`` (:func:`split_indices`).  The scaler is fitted on
        the training rows only; the test rows are not touched (evaluate on them).
    seed:
        Seeds the split, the initial weights, bootstrap resamples, shuffles and dropout.
    ensemble:
        Number of members.  With more than one, each member is trained on its
        own bootstrap resample of the training set (same size, with
        replacement) and its own initial weights; all members train together
        in one vmapped program and each keeps its own best-validation epoch.
        Predictions are the ensemble mean (:meth:`Learner.predict_u`).
    progress:
        A tqdm bar over epochs with the train and validation losses.
    weight:
        Optional non-negative weights, (site,) or (site, param), e.g. inverse
        posterior variances.
    metadata:
        Extra JSON-serialisable entries stored in the learner's metadata.

    Returns
    -------
    (learner, history):
        The :class:`Learner` (best-validation parameters) and a dict:
        ``train_loss`` and ``val_loss`` (epochs_run,) (mean over members; the
        training loss is the mean over the epoch's mini-batches with dropout on,
        the validation loss is computed without dropout after the epoch),
        ``member_train_loss``/``member_val_loss`` (members, epochs_run),
        ``best_epoch`` (0-based index into those arrays; an int for one
        member, an array per member for an ensemble), ``best_val_loss``,
        ``epochs_run``, ``stopped_early``, ``skipped_steps`` (steps dropped for
        non-finite gradients), ``split`` (dict of ``train``/``val``/``test``
        indices), ``bootstrap`` ((members, n_train) site indices, or None) and
        ``wall_s``.
    """
    t0 = time.perf_counter()
    model_name = model_name_of(model_name)
    x = check_covariates(x, covariate_names)
    n = x.shape[0]
    u = _check_targets(u_target, n)
    w = _check_weight(weight, n, u.shape[1])
    loss_fn = get_loss(loss)
    epochs, patience = check_epochs(epochs, patience)
    ensemble = whole_number(ensemble, "ensemble", 1, " (bootstrap members)")
    train, val, test = check_split(split if split is not None else split_indices(n, seed=seed), n)

    learner = init_learner(
        x[train], model_name=model_name, covariate_names=covariate_names, param_names=param_names,
        n_out=u.shape[1], hidden=hidden, dropout=dropout, ensemble=ensemble, seed=seed,
    )
    rng = np.random.default_rng(seed)
    if ensemble == 1:
        samples = train[None, :]
        bootstrap = None
    else:
        bootstrap = train[rng.integers(0, train.size, (ensemble, train.size))]
        samples = bootstrap
    B, nb = batch_plan(train.size, batch_size)
    optimizer = make_optimizer(learning_rate)

    xs = learner.scaler.transform(jnp.asarray(x))
    y = jnp.asarray(u, dtype=xs.dtype)
    wj = None if w is None else jnp.asarray(w, dtype=xs.dtype)
    val_j = jnp.asarray(val)
    params, static = eqx.partition(learner.nets, eqx.is_inexact_array)

    data = (xs, y, wj, val_j)  # passed as arguments, not closed over: no large constants in the program

    def batch_loss(p, idx, key, data):
        xs, y, wj, _ = data
        net = eqx.combine(p, static)
        keys = jax.random.split(key, idx.shape[0])
        pred = jax.vmap(lambda xi, ki: net(xi, key=ki, inference=False))(xs[idx], keys)
        return loss_fn(pred, y[idx], None if wj is None else wj[idx])

    def member_epoch(p, state, best_p, best_v, key, order, data):
        xs, y, wj, val_j = data

        def step(carry, inp):
            p, state = carry
            idx, k = inp
            value, grads = jax.value_and_grad(batch_loss)(p, idx, k, data)
            p, state, ok = guarded_update(optimizer, grads, state, p, value)
            return (p, state), (value, ok)

        (p, state), (values, oks) = jax.lax.scan(step, (p, state), (order, jax.random.split(key, nb)))
        net = eqx.combine(p, static)
        v = loss_fn(jax.vmap(net)(xs[val_j]), y[val_j], None if wj is None else wj[val_j])
        improved = v < best_v
        best_p = jax.tree_util.tree_map(lambda a, b: jnp.where(improved, a, b), p, best_p)
        best_v = jnp.where(improved, v, best_v)
        train_loss = jnp.sum(jnp.where(oks, values, 0.0)) / jnp.maximum(jnp.sum(oks), 1)
        return p, state, best_p, best_v, train_loss, v, improved, nb - jnp.sum(oks)

    run_epoch = eqx.filter_jit(jax.vmap(member_epoch, in_axes=(0, 0, 0, 0, 0, 0, None)))

    state = jax.vmap(optimizer.init)(params)
    best_p = params
    best_v = jnp.full((ensemble,), jnp.inf, dtype=xs.dtype)
    epoch_rng = np.random.default_rng([seed, 1])  # shuffles and dropout keys, drawn on the host
    since = np.zeros(ensemble, int)
    best_epoch = np.full(ensemble, -1)
    tl, vl, skipped = [], [], 0
    bar = Progress(epochs, progress, f"two-stage {model_name}")
    stopped = False
    try:
        for epoch in range(epochs):
            order = np.stack([epoch_rng.permutation(s)[: nb * B].reshape(nb, B) for s in samples])
            keys = epoch_rng.integers(0, 2**32, (ensemble, 2), dtype=np.uint32)
            params, state, best_p, best_v, t_l, v_l, improved, n_skip = run_epoch(
                params, state, best_p, best_v, keys, order, data
            )
            t_l, v_l, improved = np.asarray(t_l), np.asarray(v_l), np.asarray(improved)
            skipped += int(np.sum(n_skip))
            tl.append(t_l)
            vl.append(v_l)
            best_epoch = np.where(improved, epoch, best_epoch)
            since = np.where(improved, 0, since + 1)
            bar.update(train=float(t_l.mean()), val=float(v_l.mean()), best=float(np.asarray(best_v).mean()))
            if np.all(since >= patience):
                stopped = epoch < epochs - 1
                break
    finally:
        bar.close()

    nets = eqx.combine(best_p, static)
    member_t = np.asarray(tl).T if tl else np.zeros((ensemble, 0))
    member_v = np.asarray(vl).T if vl else np.zeros((ensemble, 0))
    history = {
        "train_loss": member_t.mean(axis=0),
        "val_loss": member_v.mean(axis=0),
        "member_train_loss": member_t,
        "member_val_loss": member_v,
        "best_epoch": int(best_epoch[0]) if ensemble == 1 else best_epoch,
        "best_val_loss": float(np.asarray(best_v)[0]) if ensemble == 1 else np.asarray(best_v),
        "epochs_run": len(tl),
        "stopped_early": stopped,
        "skipped_steps": skipped,
        "split": {"train": train, "val": val, "test": test},
        "bootstrap": bootstrap,
        "wall_s": time.perf_counter() - t0,
    }
    md = {
        "method": "two_stage",
        "loss": loss if isinstance(loss, str) else getattr(loss, "__name__", "custom"),
        "epochs": epochs,
        "epochs_run": len(tl),
        "best_epoch": best_epoch.tolist(),
        "best_val_loss": np.asarray(best_v).tolist(),
        "batch_size": B,
        "learning_rate": learning_rate if isinstance(learning_rate, (int, float)) else "schedule",
        "patience": patience,
        "seed": seed,
        "ensemble": ensemble,
        "bootstrap": ensemble > 1,
        "n_train": int(train.size),
        "n_val": int(val.size),
        "n_test": int(test.size),
        "weighted": w is not None,
        "wall_s": history["wall_s"],
        **provenance(),
        **(metadata or {}),
    }
    learner = dataclasses.replace(learner, nets=nets, metadata_json=metadata_json(md))
    return learner, history


__all__ = ["train_two_stage"]
