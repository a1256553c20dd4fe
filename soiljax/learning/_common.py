"""Pieces shared by the two training loops: optimiser, guarded update, early stopping, progress, provenance."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import optax


def make_optimizer(learning_rate, *, clip_norm: float | None = None) -> optax.GradientTransformation:
    """Adam with ``learning_rate`` (a float or an optax schedule), optionally after global-norm clipping."""
    if not callable(learning_rate):
        lr = float(learning_rate)
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"learning_rate must be a positive number or an optax schedule, got {lr:g}")
    adam = optax.adam(learning_rate)
    return adam if clip_norm is None else optax.chain(optax.clip_by_global_norm(float(clip_norm)), adam)


def all_finite(tree) -> jax.Array:
    """True when every inexact array leaf of ``tree`` is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def guarded_update(optimizer, grads, opt_state, params, loss):
    """One optimiser step, skipped when the loss or any gradient is not finite.

    Returns ``(params, opt_state, ok)``: the updated parameters and state where
    ``ok``, else the unchanged ones, so a bad mini-batch can never put NaN into
    the network or the optimiser's moments.
    """
    ok = jnp.isfinite(loss) & all_finite(grads)
    safe_grads = jax.tree_util.tree_map(lambda g: jnp.where(ok, g, 0.0), grads)
    updates, new_state = optimizer.update(safe_grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    pick = lambda new, old: jnp.where(ok, new, old)  # noqa: E731
    params = jax.tree_util.tree_map(pick, new_params, params)
    opt_state = jax.tree_util.tree_map(pick, new_state, opt_state)
    return params, opt_state, ok


def whole_number(value, name: str, minimum: int, hint: str = "") -> int:
    """``value`` as an int, or a ValueError unless it is a whole number >= ``minimum`` (2.5 is not truncated)."""
    try:
        ok = not isinstance(value, bool) and int(value) == value and int(value) >= minimum
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a whole number >= {minimum}{hint}, got {value}")
    return int(value)


def batch_plan(n_train: int, batch_size: int) -> tuple[int, int]:
    """(batch size, batches per epoch): constant shapes, the remainder of a shuffle dropped.

    A training set smaller than ``batch_size`` is one batch of all of it.
    """
    batch_size = whole_number(batch_size, "batch_size", 1)
    b = min(batch_size, n_train)
    return b, n_train // b


def check_epochs(epochs, patience):
    epochs = whole_number(epochs, "epochs", 0)
    if patience is None:  # no early stopping
        return epochs, max(epochs, 1)
    patience = whole_number(patience, "patience", 1, " (epochs without a better validation loss; None: no early stopping)")
    return epochs, patience


class Progress:
    """tqdm over epochs showing the latest losses, or nothing when ``enabled`` is False."""

    def __init__(self, epochs: int, enabled: bool, desc: str):
        self.bar = None
        if enabled and epochs > 0:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=epochs, desc=desc, unit="epoch")
            self.bar.set_postfix_str("compiling")  # the first epoch compiles the training step

    def update(self, **values):
        if self.bar is not None:
            self.bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in values.items()})
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def provenance() -> dict:
    """What a learner's metadata records about the run: soiljax version, time (UTC), float64 on or off."""
    import datetime

    try:
        from importlib.metadata import version

        v = version("soiljax")
    except Exception:  # pragma: no cover
        v = "unknown"
    return {
        "soiljax_version": v,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "float64": bool(jax.config.jax_enable_x64),
    }
