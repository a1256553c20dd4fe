"""The trained object of both learning approaches: scaler + network(s) + names + metadata."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._options import MODELS
from .._registry import model as _model
from .._registry import model_class as _model_class
from .._registry import model_name as _model_name
from ._network import PRODA_DROPOUT, PRODA_HIDDEN, U_EPS, ParamNet, make_ensemble, member, n_members
from ._scaling import MinMaxScaler

MODEL_NAMES = MODELS
"""Values of :attr:`Learner.model_name` (the model names, :data:`soiljax.MODELS`)."""

PREDICT_CHUNK = 65536
"""Rows per call when :meth:`Learner.predict_u` predicts concrete (host) arrays."""


def model_name_of(model) -> str:
    """``"clm5"`` or ``"compas"`` for a model instance, class or name (:func:`soiljax._registry.model_name`)."""
    return _model_name(model)


def model_space(model_name: str):
    """The parameter space of a model given by name, class or instance."""
    return _model_class(model_name).space


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (np.ndarray, jax.Array)):
        return np.asarray(o).tolist()
    raise TypeError(f"metadata value {o!r} of type {type(o).__name__} is not JSON-serialisable")


def metadata_json(metadata) -> str:
    """``metadata`` as a compact JSON string (numpy scalars and arrays become numbers and lists)."""
    try:
        return json.dumps(dict(metadata or {}), default=_json_default, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"learner metadata must be JSON-serialisable (numbers, strings, lists, dicts): {e}") from None


def _is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def covariate_matrix(x, names=None, *, what: str = "x") -> np.ndarray | jax.Array:
    """Covariates as a 2-D array (site, covariate).

    ``x`` is an array (site, covariate), or a mapping / :class:`xarray.Dataset`
    of 1-D variables, stacked in the order of ``names`` (required then).
    """
    if isinstance(x, Mapping) or hasattr(x, "data_vars"):
        if names is None:
            raise ValueError(f"{what} is a mapping of covariates: give covariate_names to fix their order")
        missing = [n for n in names if n not in x]
        if missing:
            raise ValueError(f"{what} lacks covariate(s) {', '.join(map(repr, missing))} that the learner was trained on")
        return np.stack([np.asarray(x[n], dtype=float).reshape(-1) for n in names], axis=-1)
    if _is_tracer(x):
        return x
    return np.asarray(x, dtype=float)


def check_covariates(x, names=None, *, what: str = "x") -> np.ndarray:
    """A finite 2-D float array of covariates, or a clear error (shape, NaN with row and column)."""
    x = covariate_matrix(x, names, what=what)
    if x.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (site, covariate), got shape {tuple(x.shape)}")
    if names is not None and len(names) != x.shape[1]:
        raise ValueError(f"{what} has {x.shape[1]} columns but {len(names)} covariate names were given")
    bad = ~np.isfinite(x)
    if bad.any():
        col = int(np.argmax(bad.any(axis=0)))
        label = f"{names[col]!r} (column {col})" if names is not None else f"column {col}"
        raise ValueError(
            f"{what} has {int(bad.any(axis=1).sum())} site(s) with NaN or infinite covariates, first in {label} "
            f"at row {int(np.argmax(bad[:, col]))}; drop those sites or fill the gaps before training"
        )
    return x


class Learner(eqx.Module):
    """A trained parameter learner: what gets saved and used for prediction.

    Fields:

    ``scaler``
        :class:`MinMaxScaler` fitted on the training sites' covariates.
    ``nets``
        the network(s): a :class:`ParamNet` whose array leaves have a leading
        member axis (an ensemble of ``n_members``; one member for a single
        network).  :meth:`member` returns one as a plain ParamNet.
    ``model_name``
        ``"clm5"`` or ``"compas"``: whose parameters the outputs are.
    ``covariate_names``, ``param_names``
        column names of the inputs and outputs (static tuples).
    ``metadata_json``
        free-form metadata (how it was trained) as a JSON string, so that the
        Learner stays hashable; read it as the dict :attr:`metadata`.

    The module is a pytree: ``eqx.filter_jit``, ``eqx.filter_grad`` and
    equinox serialisation (:func:`save_learner`) work on it directly.
    """

    scaler: MinMaxScaler
    nets: ParamNet
    model_name: str = eqx.field(static=True)
    covariate_names: tuple[str, ...] = eqx.field(static=True)
    param_names: tuple[str, ...] = eqx.field(static=True)
    metadata_json: str = eqx.field(static=True, default="{}")

    def __check_init__(self):
        if self.model_name not in MODEL_NAMES:
            raise ValueError(f"model_name must be one of {MODEL_NAMES}, got {self.model_name!r}")
        if len(self.covariate_names) != self.nets.n_in:
            raise ValueError(f"{len(self.covariate_names)} covariate names for a network with {self.nets.n_in} inputs")
        if len(self.param_names) != self.nets.n_out:
            raise ValueError(f"{len(self.param_names)} parameter names for a network with {self.nets.n_out} outputs")
        if self.scaler.lo.shape[-1] != self.nets.n_in:
            raise ValueError(f"the scaler has {self.scaler.lo.shape[-1]} features, the network {self.nets.n_in} inputs")

    # -- description --------------------------------------------------------
    @property
    def metadata(self) -> dict:
        return json.loads(self.metadata_json)

    @property
    def n_members(self) -> int:
        return n_members(self.nets)

    @property
    def n_in(self) -> int:
        return self.nets.n_in

    @property
    def n_out(self) -> int:
        return self.nets.n_out

    @property
    def hidden(self) -> tuple[int, ...]:
        return self.nets.hidden

    @property
    def dropout(self) -> float:
        return self.nets.dropout

    def member(self, i: int = 0) -> ParamNet:
        """Member ``i`` of the ensemble as a plain :class:`ParamNet` (maps scaled covariates)."""
        return member(self.nets, i)

    def with_metadata(self, **updates) -> "Learner":
        """A copy with ``updates`` merged into the metadata."""
        md = self.metadata
        md.update(updates)
        return dataclasses.replace(self, metadata_json=metadata_json(md))

    def make_model(self):
        """A model instance of the learner's kind (options such as ``bedrock`` from the metadata)."""
        options = self.metadata.get("model_options", {})
        return _model(self.model_name, **options)

    def __repr__(self) -> str:
        return (
            f"Learner(model={self.model_name}, n_in={self.n_in}, n_out={self.n_out}, hidden={self.hidden}, "
            f"dropout={self.dropout}, members={self.n_members}, method={self.metadata.get('method', '?')})"
        )

    # -- prediction -----------------------------------------------------------
    def _prepare(self, x, allow_nan: bool):
        x = covariate_matrix(x, self.covariate_names)
        single = x.ndim == 1
        if single:
            x = x[None, :]
        if x.ndim != 2 or x.shape[-1] != self.n_in:
            raise ValueError(
                f"x must have shape (n, {self.n_in}) (covariates {', '.join(self.covariate_names[:5])}"
                f"{', ...' if self.n_in > 5 else ''}), got {tuple(x.shape)}"
            )
        if not _is_tracer(x) and not allow_nan:
            bad = ~np.isfinite(np.asarray(x))
            if bad.any():
                col = int(np.argmax(bad.any(axis=0)))
                raise ValueError(
                    f"x has {int(bad.any(axis=1).sum())} row(s) with NaN or infinite covariates, first in "
                    f"{self.covariate_names[col]!r}; drop them, or pass allow_nan=True to get NaN predictions there"
                )
        return x, single

    def predict_u_members(self, x, *, allow_nan: bool = False, chunk: int = PREDICT_CHUNK):
        """Every member's prediction: array (members, n, n_params), in the clip range [1e-6, 1].

        ``x`` (n, n_in) raw (unscaled) covariates in the order of
        :attr:`covariate_names` (or a mapping / Dataset of named covariates; a
        1-D vector is one site and drops the ``n`` axis).  Works on traced
        values too (then in one piece); concrete inputs are predicted in chunks
        of ``chunk`` rows (constant shape: one compilation).  Rows with NaN
        raise unless ``allow_nan=True`` (they then give NaN).
        """
        x, single = self._prepare(x, allow_nan)
        if _is_tracer(x) or x.shape[0] <= chunk:
            out = _predict_members(self.scaler, self.nets, jnp.asarray(x))
        else:
            n = x.shape[0]
            total = -(-n // chunk) * chunk
            xp = np.concatenate([x, np.repeat(x[-1:], total - n, axis=0)])
            parts = [
                _predict_members(self.scaler, self.nets, jnp.asarray(xp[s : s + chunk])) for s in range(0, total, chunk)
            ]
            out = jnp.concatenate(parts, axis=1)[:, :n]
        return out[:, 0] if single else out

    def predict_u(self, x, *, allow_nan: bool = False, chunk: int = PREDICT_CHUNK):
        """Scaled parameters (n, n_params): the ensemble mean, clipped to [1e-6, 1].

        PRODA clips predicted u to (0, 1] before using them.  Arguments as
        :meth:`predict_u_members`.  Map to physical units with
        ``model.space.to_physical(u)``.
        """
        members = self.predict_u_members(x, allow_nan=allow_nan, chunk=chunk)
        return jnp.clip(jnp.mean(members, axis=0), U_EPS, 1.0)


@eqx.filter_jit
def _predict_members(scaler: MinMaxScaler, nets: ParamNet, x):
    xs = scaler.transform(x)
    u = eqx.filter_vmap(lambda net: jax.vmap(net)(xs))(nets)
    return jnp.clip(u, U_EPS, 1.0)


def _names(names, n: int, prefix: str, what: str) -> tuple[str, ...]:
    if names is None:
        return tuple(f"{prefix}{i}" for i in range(n))
    names = tuple(str(s) for s in names)
    if len(names) != n:
        raise ValueError(f"{len(names)} {what} names were given for {n} columns")
    if len(set(names)) != n:
        raise ValueError(f"{what} names must be unique, got duplicates in {names}")
    return names


def param_names_for(model_name: str, param_names, n_out: int) -> tuple[str, ...]:
    """Parameter names: given, or the model's own when there are as many outputs as parameters."""
    space = model_space(model_name)
    if param_names is None:
        if n_out != space.size:
            raise ValueError(
                f"{space.model} has {space.size} parameters but the targets have {n_out} columns; "
                "give param_names for a subset of parameters, or targets for all of them"
            )
        return space.names
    names = _names(param_names, n_out, "p", "parameter")
    unknown = [n for n in names if n not in space.names]
    if unknown:
        raise ValueError(f"{space.model} has no parameter(s) {', '.join(map(repr, unknown))}; its parameters are {', '.join(space.names)}")
    return names


def init_learner(
    x,
    *,
    model_name: str,
    covariate_names=None,
    param_names=None,
    n_out: int | None = None,
    hidden=PRODA_HIDDEN,
    dropout: float = PRODA_DROPOUT,
    ensemble: int = 1,
    seed: int = 0,
    metadata=None,
) -> Learner:
    """An untrained :class:`Learner`: the scaler fitted on ``x`` and freshly initialised network(s).

    ``x`` (n, n_in) are the covariates to fit the scaler on: pass the training
    rows only.  ``n_out`` defaults to the number of ``param_names`` or to the
    model's parameter count.  The same arguments and seed always give the same
    weights (``jax.random.PRNGKey(seed)``).
    """
    model_name = model_name_of(model_name)
    x = check_covariates(x, covariate_names)
    cov = _names(covariate_names, x.shape[1], "x", "covariate")
    if n_out is None:
        n_out = len(param_names) if param_names is not None else model_space(model_name).size
    params = param_names_for(model_name, param_names, int(n_out))
    scaler = MinMaxScaler.fit(x, cov)
    key = jax.random.PRNGKey(seed)
    nets = make_ensemble(ensemble, x.shape[1], len(params), hidden=hidden, dropout=dropout, key=key)
    return Learner(scaler=scaler, nets=nets, model_name=model_name, covariate_names=cov, param_names=params,
                   metadata_json=metadata_json(metadata))


def split_indices(n: int, fractions=(0.8, 0.1, 0.1), *, seed: int = 0):
    """A random train / validation / test split of ``n`` items.

    Returns three sorted, disjoint int arrays that together cover ``range(n)``.
    Sizes are the fractions of ``n`` rounded by largest remainder; a set with a
    positive fraction gets at least one item when ``n`` allows.  ``fractions``
    are three non-negative numbers summing to 1 (a zero test fraction gives an
    empty test set).
    """
    n = int(n)
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or np.any(~np.isfinite(f)) or np.any(f < 0) or abs(f.sum() - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers (train, val, test) summing to 1, got {fractions!r}")
    if n < 1:
        raise ValueError(f"cannot split {n} items")
    raw = f * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    for i in range(3):  # every set with a positive fraction gets at least one item
        if f[i] > 0 and counts[i] == 0:
            j = int(np.argmax(counts))
            if counts[j] > 1:
                counts[j] -= 1
                counts[i] += 1
    perm = np.random.default_rng(seed).permutation(n)
    a, b = counts[0], counts[0] + counts[1]
    return np.sort(perm[:a]), np.sort(perm[a:b]), np.sort(perm[b:])


def check_split(split, n: int):
    """``split`` (train, val, test) as int arrays: in range, disjoint, train and val non-empty."""
    if split is None:
        return split_indices(n)
    try:
        train, val, test = (np.asarray(s, dtype=int).reshape(-1) for s in split)
    except (TypeError, ValueError):
        raise ValueError("split must be three integer index arrays (train, val, test)") from None
    for name, s in (("train", train), ("val", val), ("test", test)):
        if s.size and (s.min() < 0 or s.max() >= n):
            raise ValueError(f"split's {name} indices must lie in [0, {n}), got {s.min()}..{s.max()}")
        if len(np.unique(s)) != s.size:
            raise ValueError(f"split's {name} indices contain duplicates")
    if np.intersect1d(train, val).size or np.intersect1d(train, test).size or np.intersect1d(val, test).size:
        raise ValueError("split's train, val and test indices must be disjoint")
    if train.size == 0:
        raise ValueError("the training set of the split is empty")
    if val.size == 0:
        raise ValueError("early stopping needs a validation set: the split's val indices are empty")
    return train, val, test


__all__ = [
    "Learner",
    "MODEL_NAMES",
    "init_learner",
    "split_indices",
    "check_covariates",
    "model_name_of",
]
