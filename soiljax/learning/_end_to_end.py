"""End-to-end differentiable parameter learning (beyond PRODA).

PRODA learns in two stages: calibrate every profile, then regress the
posterior means on covariates.  Here the network is trained directly on the
observed profiles: for a mini-batch of sites,

    covariates --scaler--> x --ParamNet--> u --steady state--> SOC per layer
               --pchip observation operator--> SOC at observed depths
               --misfit against the observations--> loss,

and the gradient flows back through the steady-state solver (implicit
gradients of the structured linear solve) into the network's weights.  No
per-site calibration is needed, sites with few observations borrow strength
from similar sites through the shared network, and the posterior means of a
calibration can still be used as a regulariser.
"""

from __future__ import annotations

import dataclasses
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._models import AbstractSoilModel
from .._observe import observe
from ..calibration._likelihood import AbstractLikelihood, LogNormal
from .._options import END_TO_END_BATCH_SIZE, END_TO_END_EPOCHS, END_TO_END_PATIENCE, LEARNING_RATE
from ._common import Progress, batch_plan, check_epochs, guarded_update, make_optimizer, provenance
from ._learner import Learner, check_covariates, check_split, init_learner, metadata_json, model_name_of, split_indices
from ._network import PRODA_DROPOUT, PRODA_HIDDEN, ParamNet

DEFAULT_SIGMA = 0.1
"""Default relative error of the observations (log-normal sigma): the recovery experiment's 10% noise."""

INVALID_PENALTY = 10.0
"""Loss of a site whose steady state is invalid, in misfit units (see :func:`site_misfit`).

With the default log-normal misfit (sigma 0.1) it equals a profile off by a
factor of about 1.6 at every layer.  It carries no gradient (an invalid
steady state has none); it makes validation losses, and hence early
stopping, prefer networks that predict valid parameters."""


def default_likelihood(sigma: float = DEFAULT_SIGMA) -> AbstractLikelihood:
    """The default misfit's likelihood: :class:`~soiljax.calibration.LogNormal` with ``sigma``.

    It uses the observations' ``soc_sd / soc`` as the relative error where
    they carry one, ``sigma`` elsewhere.
    """
    return LogNormal(sigma=float(sigma))


def site_misfit(model: AbstractSoilModel, likelihood: AbstractLikelihood, u, forcing, obs):
    """Misfit of one site's steady state at parameters ``u`` to its observed profile.

    ``misfit = (log L(obs | obs) - log L(obs | model(u))) / n_usable``: the
    likelihood's shortfall from a perfect fit, per usable observed layer, so
    0 is a perfect fit and the constants of the likelihood cancel.  With the
    default :class:`~soiljax.calibration.LogNormal` likelihood it is the mean
    over usable layers of ``(log pred - log obs)^2 / (2 s^2)`` with ``s`` the
    relative error (``soc_sd / soc`` or ``sigma = 0.1``).  Any calibration
    likelihood works (e.g. PRODA's costs).

    Returns ``(misfit, ok)``: ``ok`` is False where the steady state is
    invalid or the misfit is not finite; there the misfit is 0 and, because
    invalid steady states return finite zeros with zero gradients and the
    prediction is replaced before the likelihood sees it, so is its gradient.
    """
    mask = obs.mask
    steady = model.steady_state(u, forcing)
    pred = observe(steady.soc, obs.depth, mask, fill=None)  # padded entries replaced just below
    y = jnp.where(mask, obs.soc, 1.0)
    valid = steady.valid
    pred = jnp.where(valid & mask, pred, y)  # invalid profile: a finite stand-in, never seen by the loss
    ll = likelihood(pred, obs.soc, obs.soc_sd, obs.depth, mask)
    ll_best = jax.lax.stop_gradient(likelihood(y, obs.soc, obs.soc_sd, obs.depth, mask))
    m = (ll_best - ll) / jnp.maximum(jnp.sum(mask), 1)
    ok = valid & jnp.isfinite(m)
    return jnp.where(ok, m, 0.0), ok


def _site_terms(net: ParamNet, model, likelihood, invalid_penalty, xs, forcing, obs, keys):
    """Per-site u, misfit, validity and loss for a batch (keys None: inference)."""
    if keys is None:
        u = jax.vmap(net)(xs)
    else:
        u = jax.vmap(lambda xi, ki: net(xi, key=ki, inference=False))(xs, keys)
    misfit, ok = jax.vmap(lambda ui, fi, oi: site_misfit(model, likelihood, ui, fi, oi))(u, forcing, obs)
    loss = jnp.where(ok, misfit, invalid_penalty)
    return u, misfit, ok, loss


def _prior_term(u, u_prior, has_prior):
    if u_prior is None:
        return jnp.zeros((), u.dtype)
    up = jnp.where(has_prior[:, None], u_prior, 0.0)
    per_site = jnp.mean((u - up) ** 2, axis=-1)
    return jnp.mean(jnp.where(has_prior, per_site, 0.0))


def end_to_end_loss(
    net: ParamNet,
    model: AbstractSoilModel,
    x_scaled,
    forcing,
    obs,
    *,
    likelihood: AbstractLikelihood | None = None,
    u_prior=None,
    prior_weight: float = 0.0,
    invalid_penalty: float = INVALID_PENALTY,
    key=None,
):
    """The end-to-end loss of a batch of sites and its parts; differentiable in ``net``.

    ``loss = mean over sites of (misfit if valid else invalid_penalty)
    + prior_weight * mean over sites of mean over parameters (u - u_prior)^2``

    with the misfit of :func:`site_misfit` (default likelihood
    :func:`default_likelihood`).  ``x_scaled`` (site, n_in) are covariates
    already scaled with the learner's scaler; ``forcing`` and ``obs`` have the
    same leading site axis.  ``u_prior`` (site, param) may hold NaN rows for
    sites without a prior.  ``key`` None evaluates the network without dropout;
    with a key, dropout is active (training mode).

    Returns ``(loss, aux)``, aux a dict of per-site ``u``, ``misfit``,
    ``valid`` and the scalar ``prior``.  Use ``jax.grad(lambda n: end_to_end_loss(n, ...)[0])``
    or ``eqx.filter_grad`` for its gradient.
    """
    likelihood = default_likelihood() if likelihood is None else likelihood
    xs = jnp.asarray(x_scaled)
    keys = None if key is None else jax.random.split(key, xs.shape[0])
    u, misfit, ok, loss = _site_terms(net, model, likelihood, invalid_penalty, xs, forcing, obs, keys)
    if u_prior is not None:
        u_prior = jnp.asarray(u_prior, dtype=u.dtype)
        has = jnp.all(jnp.isfinite(u_prior), axis=-1)
        prior = _prior_term(u, jnp.where(has[:, None], u_prior, 0.0), has)
    else:
        prior = jnp.zeros((), u.dtype)
    total = jnp.mean(loss) + prior_weight * prior
    return total, {"u": u, "misfit": misfit, "valid": ok, "prior": prior}


def _model_options(model) -> dict:
    return {f.name: getattr(model, f.name) for f in dataclasses.fields(model)}


def _check_sites(model, x, forcing, obs, u_prior):
    if not isinstance(model, AbstractSoilModel):
        raise TypeError(f"model must be a soiljax model (CLM5 or COMPAS), got {type(model).__name__}")
    n = x.shape[0]
    if tuple(forcing.batch_shape) != (n,):
        raise ValueError(f"x has {n} sites but the forcing has batch shape {forcing.batch_shape}; give one forcing site per row of x")
    if tuple(obs.batch_shape) != (n,):
        raise ValueError(f"x has {n} sites but the observations have batch shape {obs.batch_shape}; give one profile per row of x")
    n_use = np.asarray(obs.n_usable)
    empty = np.flatnonzero(n_use == 0)
    if empty.size:
        raise ValueError(
            f"{empty.size} site(s) have no usable observed layer (first: site {empty[0]}), e.g. synthetic sites "
            "whose true steady state was invalid; drop them from x, forcing and obs (keep = obs.n_usable > 0)"
        )
    if u_prior is None:
        return None
    up = np.asarray(u_prior, dtype=float)
    if up.shape != (n, model.n_params):
        raise ValueError(f"u_prior must have shape ({n}, {model.n_params}) (site, param of {type(model).__name__}), got {up.shape}")
    finite = np.isfinite(up)
    partial = finite.any(axis=1) & ~finite.all(axis=1)
    if partial.any():
        raise ValueError(f"u_prior row {int(np.argmax(partial))} is partly NaN; use a whole NaN row for a site without a prior")
    if np.any(up[finite] < 0) or np.any(up[finite] > 1):
        raise ValueError("u_prior must hold scaled parameters in [0, 1] (posterior means of u)")
    return up


def _check_init(init: Learner, model, x, covariate_names):
    name = model_name_of(model)
    if not isinstance(init, Learner):
        raise TypeError(f"init must be a Learner (e.g. from train_two_stage), got {type(init).__name__}")
    if init.model_name != name:
        raise ValueError(f"init was trained for {init.model_name} but the model is {name}")
    if tuple(init.param_names) != tuple(model.param_names):
        raise ValueError(
            "init must predict all of the model's parameters in the model's order to start an end-to-end run; "
            f"it predicts {init.param_names}"
        )
    if init.n_in != x.shape[1]:
        raise ValueError(f"init takes {init.n_in} covariates but x has {x.shape[1]} columns")
    if covariate_names is not None and tuple(covariate_names) != tuple(init.covariate_names):
        raise ValueError("covariate_names differ from those init was trained with; give the columns in init's order")


def train_end_to_end(
    model: AbstractSoilModel,
    x,
    forcing,
    obs,
    *,
    covariate_names=None,
    u_prior=None,
    prior_weight: float = 0.0,
    likelihood: AbstractLikelihood | None = None,
    invalid_penalty: float = INVALID_PENALTY,
    hidden=PRODA_HIDDEN,
    dropout: float = PRODA_DROPOUT,
    epochs: int = END_TO_END_EPOCHS,
    batch_size: int = END_TO_END_BATCH_SIZE,
    learning_rate=LEARNING_RATE,
    patience: int | None = END_TO_END_PATIENCE,
    clip_norm: float | None = None,
    split=None,
    seed: int = 0,
    init: Learner | None = None,
    progress: bool = True,
    metadata=None,
) -> tuple[Learner, dict]:
    """Train a parameter network on observed profiles through the steady-state solver.

    Parameters
    ----------
    model:
        The soil model (``CLM5(...)`` or ``COMPAS(...)``); its options (e.g.
        ``bedrock``) are stored in the learner's metadata.
    x:
        Covariates (site, covariate), raw units, no NaN.
    forcing, obs:
        :class:`~soiljax.Forcing` and :class:`~soiljax.Observations` with the
        same leading site axis as ``x``; every site needs a usable layer.
    u_prior, prior_weight:
        Optional posterior means (site, param) of a calibration (NaN rows: no
        prior for that site) and the weight of ``mean (u - u_prior)^2`` in the
        loss: a regulariser towards the two-stage targets.
    likelihood:
        A calibration likelihood defining the misfit (:func:`site_misfit`);
        default :class:`~soiljax.calibration.LogNormal` with sigma 0.1, i.e.
        ``mean over layers of (log pred - log obs)^2 / (2 * 0.1^2)``.
    invalid_penalty:
        Loss of a site whose steady state is invalid (:data:`INVALID_PENALTY`);
        invalid sites add no gradient.  Their number per epoch is in the history.
    hidden, dropout:
        Architecture of a new network (ignored with ``init``).
    epochs, batch_size, learning_rate, patience, clip_norm:
        Up to ``epochs`` passes over the training sites in mini-batches of
        ``batch_size`` sites (reshuffled every epoch, remainder dropped: one
        compiled program); Adam with ``learning_rate`` (float or optax
        schedule), optional global-norm gradient clipping; stop after
        ``patience`` epochs without a better validation loss and return the
        best epoch's network.  A step whose loss or gradient is not finite is
        skipped (counted in ``skipped_steps``), so the network never gets NaN.
        Defaults (shared with ``soiljax learn``, :mod:`soiljax._options`): up to
        500 epochs, 32 sites per mini-batch, learning rate 1e-3, patience 30,
        the settings of the benchmark runs in benchmarks/README.md.
    split:
        ``(train, val, test)`` site indices or None (random 80/10/10 with ``seed``).
    seed:
        Seeds the split, initial weights, shuffles and dropout.
    init:
        Start from a :class:`Learner` (e.g. two-stage, predicting all of the
        model's parameters): its scaler and member 0's network are used.
        Without it, the scaler is fitted on the training rows and a new network
        is initialised.

    Returns
    -------
    (learner, history):
        The learner (best validation epoch; one network) and a dict with
        ``train_loss`` (per epoch: mean mini-batch loss with dropout, prior term
        included), ``val_loss`` (per epoch: mean over validation sites of the
        misfit or the invalid penalty, without dropout and without the prior
        term; the early-stopping criterion), ``val_misfit`` (mean over the valid
        validation sites), ``n_invalid_train`` (site evaluations with invalid
        steady states in the epoch's mini-batches), ``n_invalid_val``,
        ``initial_val_loss`` (the starting network's), ``best_epoch`` (0-based;
        -1 when no epoch beat the starting network, which is then returned),
        ``best_val_loss``,
        ``epochs_run``, ``stopped_early``, ``skipped_steps``, ``split`` and
        ``wall_s``.
    """
    t0 = time.perf_counter()
    name = model_name_of(model)
    x = check_covariates(x, covariate_names)
    n = x.shape[0]
    up = _check_sites(model, x, forcing, obs, u_prior)
    epochs, patience = check_epochs(epochs, patience)
    likelihood = default_likelihood() if likelihood is None else likelihood
    if not isinstance(likelihood, AbstractLikelihood):
        raise TypeError(f"likelihood must be a soiljax.calibration likelihood (e.g. LogNormal()), got {type(likelihood).__name__}")
    train, val, test = check_split(split if split is not None else split_indices(n, seed=seed), n)
    pw = float(prior_weight)
    if pw < 0 or not np.isfinite(pw):
        raise ValueError(f"prior_weight must be a finite number >= 0, got {prior_weight}")
    if pw > 0 and up is None:
        raise ValueError("prior_weight > 0 needs u_prior (posterior means per site)")

    if init is not None:
        _check_init(init, model, x, covariate_names)
        learner = dataclasses.replace(init, nets=init.nets if init.n_members == 1 else _first(init))
    else:
        learner = init_learner(
            x[train], model_name=name, covariate_names=covariate_names, n_out=model.n_params,
            hidden=hidden, dropout=dropout, ensemble=1, seed=seed,
        )
    net0 = learner.member(0)
    params, static = eqx.partition(net0, eqx.is_inexact_array)
    optimizer = make_optimizer(learning_rate, clip_norm=clip_norm)
    B, nb = batch_plan(train.size, batch_size)
    # validation in chunks of the batch size (padded with a mask): constant shapes
    n_chunks = -(-val.size // B)
    val_idx = np.concatenate([val, np.repeat(val[:1], n_chunks * B - val.size)]).reshape(n_chunks, B)
    val_mask = (np.arange(n_chunks * B) < val.size).reshape(n_chunks, B)

    xs = learner.scaler.transform(jnp.asarray(x))
    has_prior = None if up is None else jnp.asarray(np.isfinite(up).all(axis=1))
    up_j = None if up is None else jnp.asarray(np.where(np.isfinite(up), up, 0.0), dtype=xs.dtype)
    data = dict(xs=xs, forcing=forcing, obs=obs, u_prior=up_j, has_prior=has_prior,
                val_idx=jnp.asarray(val_idx), val_mask=jnp.asarray(val_mask))  # arguments, not constants
    penalty = float(invalid_penalty)

    def batch_loss(p, idx, key, data):
        net = eqx.combine(p, static)
        keys = jax.random.split(key, idx.shape[0])
        u, _, ok, loss = _site_terms(
            net, model, likelihood, penalty, data["xs"][idx], data["forcing"][idx], data["obs"][idx], keys
        )
        total = jnp.mean(loss)
        if data["u_prior"] is not None:
            total = total + pw * _prior_term(u, data["u_prior"][idx], data["has_prior"][idx])
        return total, jnp.sum(~ok)

    def val_terms(p, data):
        xs, forcing, obs = data["xs"], data["forcing"], data["obs"]
        val_idx, val_mask = data["val_idx"], data["val_mask"]
        net = eqx.combine(p, static)

        def chunk(args):
            idx, m = args
            _, misfit, ok, loss = _site_terms(net, model, likelihood, penalty, xs[idx], forcing[idx], obs[idx], None)
            return (
                jnp.sum(jnp.where(m, loss, 0.0)),
                jnp.sum(jnp.where(m & ok, misfit, 0.0)),
                jnp.sum(m & ok),
                jnp.sum(m & ~ok),
            )

        s_loss, s_mis, n_ok, n_bad = jax.tree_util.tree_map(jnp.sum, jax.lax.map(chunk, (val_idx, val_mask)))
        return s_loss / jnp.sum(val_mask), s_mis / jnp.maximum(n_ok, 1), n_bad

    @eqx.filter_jit
    def run_epoch(p, state, key, order, data):
        def step(carry, inp):
            p, state = carry
            idx, k = inp
            (value, n_bad), grads = jax.value_and_grad(batch_loss, has_aux=True)(p, idx, k, data)
            p, state, ok = guarded_update(optimizer, grads, state, p, value)
            return (p, state), (value, ok, n_bad)

        (p, state), (values, oks, n_bad) = jax.lax.scan(step, (p, state), (order, jax.random.split(key, nb)))
        train_loss = jnp.sum(jnp.where(oks, values, 0.0)) / jnp.maximum(jnp.sum(oks), 1)
        return p, state, (train_loss, jnp.sum(n_bad), nb - jnp.sum(oks))

    validate = eqx.filter_jit(val_terms)
    bar = Progress(epochs, progress, f"end-to-end {name}")  # says 'compiling' while validate and the epoch compile
    try:
        v0, _, _ = validate(params, data)
    except BaseException:
        bar.close()
        raise
    state = optimizer.init(params)
    best_p, best_v = params, float(v0)
    epoch_rng = np.random.default_rng([seed, 2])  # shuffles and dropout keys, drawn on the host
    hist = {k: [] for k in ("train_loss", "val_loss", "val_misfit", "n_invalid_train", "n_invalid_val")}
    best_epoch, since, skipped, stopped = -1, 0, 0, False
    try:
        for epoch in range(epochs):
            order = epoch_rng.permutation(train)[: nb * B].reshape(nb, B)
            key = epoch_rng.integers(0, 2**32, 2, dtype=np.uint32)
            params, state, (t_l, n_bad, n_skip) = run_epoch(params, state, key, order, data)
            v_l, v_m, v_bad = validate(params, data)
            improved = bool(v_l < best_v)  # NaN never improves
            for k, val_ in zip(hist, (float(t_l), float(v_l), float(v_m), int(n_bad), int(v_bad))):
                hist[k].append(val_)
            skipped += int(n_skip)
            if improved:
                best_p, best_v, best_epoch, since = params, float(v_l), epoch, 0
            else:
                since += 1
            bar.update(train=float(t_l), val=float(v_l), invalid=int(n_bad))
            if since >= patience:
                stopped = epoch < epochs - 1
                break
    finally:
        bar.close()

    net = eqx.combine(best_p, static)
    nets = _stack_one(net)
    history = {k: np.asarray(v) for k, v in hist.items()}
    history.update(
        initial_val_loss=float(v0),
        best_epoch=best_epoch,
        best_val_loss=float(best_v),
        epochs_run=len(hist["train_loss"]),
        stopped_early=stopped,
        skipped_steps=skipped,
        split={"train": train, "val": val, "test": test},
        wall_s=time.perf_counter() - t0,
    )
    md = {
        "method": "end_to_end",
        "model_options": _model_options(model),
        "likelihood": repr(likelihood),
        "invalid_penalty": penalty,
        "prior_weight": pw,
        "epochs": epochs,
        "epochs_run": history["epochs_run"],
        "best_epoch": best_epoch,
        "best_val_loss": float(best_v),
        "initial_val_loss": float(v0),
        "batch_size": B,
        "learning_rate": learning_rate if isinstance(learning_rate, (int, float)) else "schedule",
        "patience": patience,
        "seed": seed,
        "n_train": int(train.size),
        "n_val": int(val.size),
        "n_test": int(test.size),
        "init": None if init is None else init.metadata.get("method", "learner"),
        "wall_s": history["wall_s"],
        **provenance(),
        **(metadata or {}),
    }
    learner = dataclasses.replace(learner, nets=nets, metadata_json=metadata_json(md))
    return learner, history


def _stack_one(net: ParamNet) -> ParamNet:
    arrays, static = eqx.partition(net, eqx.is_array)
    return eqx.combine(jax.tree_util.tree_map(lambda a: a[None], arrays), static)


def _first(learner: Learner) -> ParamNet:
    return _stack_one(learner.member(0))


__all__ = [
    "train_end_to_end",
    "end_to_end_loss",
    "site_misfit",
    "default_likelihood",
    "INVALID_PENALTY",
    "DEFAULT_SIGMA",
]
