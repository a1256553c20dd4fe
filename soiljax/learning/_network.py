"""PRODA's parameter network: covariates -> scaled parameters u in (0, 1)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._options import PRODA_DROPOUT, PRODA_HIDDEN  # shared with the command line (no JAX there)
from ._common import whole_number

U_EPS = 1e-6
"""The network's outputs lie in [U_EPS, 1 - U_EPS]: strictly inside (0, 1) in float32 and float64."""


class ParamNet(eqx.Module):
    """A fully connected network from covariates to scaled model parameters.

    ``ParamNet(n_in, n_out, hidden=(256, 512, 512, 256), dropout=0.2, key=key)``
    is PRODA's architecture: Linear + ReLU (+ dropout) for each hidden width,
    then a Linear output layer and a sigmoid, squeezed to
    ``U_EPS + (1 - 2 U_EPS) sigmoid(z)`` so that every output lies strictly in
    (0, 1) even where the sigmoid saturates.

    The network maps ONE sample: ``net(x)`` with ``x`` of shape (n_in,) gives
    ``u`` of shape (n_out,); use ``jax.vmap(net)(x)`` for a batch.  Dropout is
    applied only when ``inference=False`` *and* a ``key`` is given (training);
    the default call (``inference=True``) is deterministic.  Weights take
    JAX's default float type: float64 once soiljax is imported (unless
    ``SOILJAX_ENABLE_X64=0``), or pass ``dtype``.
    """

    layers: tuple[eqx.nn.Linear, ...]
    n_in: int = eqx.field(static=True)
    n_out: int = eqx.field(static=True)
    hidden: tuple[int, ...] = eqx.field(static=True)
    dropout: float = eqx.field(static=True)

    def __init__(self, n_in: int, n_out: int, *, hidden=PRODA_HIDDEN, dropout: float = PRODA_DROPOUT, key, dtype=None):
        n_in, n_out = int(n_in), int(n_out)
        if n_in < 1 or n_out < 1:
            raise ValueError(f"ParamNet needs at least one input and one output, got n_in={n_in}, n_out={n_out}")
        hidden = tuple(whole_number(h, "hidden layer widths", 1) for h in hidden)
        dropout = float(dropout)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a rate in [0, 1), got {dropout}")
        widths = (n_in, *hidden, n_out)
        self.layers = _init_layers(widths, key, dtype)
        self.n_in = n_in
        self.n_out = n_out
        self.hidden = hidden
        self.dropout = dropout

    def logits(self, x: Float[Array, " n_in"], *, key=None, inference: bool = True) -> Float[Array, " n_out"]:
        """The output layer's values before the sigmoid (same arguments as ``__call__``)."""
        x = jnp.asarray(x)
        if x.shape != (self.n_in,):
            raise ValueError(
                f"ParamNet maps one sample of shape ({self.n_in},), got {tuple(x.shape)}; "
                "use jax.vmap(net)(x) for a batch of shape (n, n_in)"
            )
        drop = (not inference) and key is not None and self.dropout > 0.0
        keys = jax.random.split(key, len(self.layers)) if drop else [None] * len(self.layers)
        for layer, k in zip(self.layers[:-1], keys[:-1]):
            x = jax.nn.relu(layer(x))
            if drop:
                keep = jax.random.bernoulli(k, 1.0 - self.dropout, x.shape)
                x = jnp.where(keep, x / (1.0 - self.dropout), 0.0)
        return self.layers[-1](x)

    def __call__(self, x: Float[Array, " n_in"], *, key=None, inference: bool = True) -> Float[Array, " n_out"]:
        """Scaled parameters u in (0, 1) for one sample of scaled covariates ``x`` (n_in,)."""
        z = self.logits(x, key=key, inference=inference)
        return U_EPS + (1.0 - 2.0 * U_EPS) * jax.nn.sigmoid(z)


def _key_seed(key) -> np.ndarray | None:
    """The bits of a concrete PRNG key as a numpy seed, or None for a traced key."""
    if isinstance(key, jax.core.Tracer):
        return None
    if jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key, dtype=np.uint32).ravel()


def _init_layers(widths, key, dtype):
    """Linear layers initialised like ``eqx.nn.Linear``: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    With a concrete key the numbers are drawn by numpy from a generator seeded
    with the key's bits: the same key gives the same weights, and no XLA
    program has to be compiled to initialise a network (that compilation took
    seconds per layer shape).  A traced key (inside jit or vmap) uses
    ``jax.random`` through ``eqx.nn.Linear`` itself.
    """
    pairs = list(zip(widths[:-1], widths[1:]))
    seed = _key_seed(key)
    if seed is None:
        keys = jax.random.split(key, len(pairs))
        return tuple(eqx.nn.Linear(a, b, dtype=dtype, key=k) for (a, b), k in zip(pairs, keys))
    rng = np.random.default_rng(seed)
    dtype = jnp.dtype(dtype) if dtype is not None else jnp.zeros(()).dtype
    layers = []
    for a, b in pairs:
        lim = 1.0 / np.sqrt(a)
        shell = eqx.filter_eval_shape(lambda: eqx.nn.Linear(a, b, dtype=dtype, key=jax.random.PRNGKey(0)))
        w = jnp.asarray(rng.uniform(-lim, lim, (b, a)), dtype=dtype)
        bias = jnp.asarray(rng.uniform(-lim, lim, (b,)), dtype=dtype)
        layers.append(eqx.tree_at(lambda l: (l.weight, l.bias), shell, (w, bias)))  # noqa: E741
    return tuple(layers)


def make_ensemble(
    n_members: int, n_in: int, n_out: int, *, hidden=PRODA_HIDDEN, dropout=PRODA_DROPOUT, key, dtype=None
):
    """``n_members`` independently initialised :class:`ParamNet` stacked on a leading axis.

    The result is one ParamNet whose array leaves have a leading member axis;
    call it with ``eqx.filter_vmap(lambda net: net(x))(nets)`` or index a
    member with :func:`member`.
    """
    n_members = int(n_members)
    if n_members < 1:
        raise ValueError(f"an ensemble needs at least one member, got {n_members}")
    make = lambda k: ParamNet(n_in, n_out, hidden=hidden, dropout=dropout, key=k, dtype=dtype)  # noqa: E731
    seed = _key_seed(key)
    if seed is None:
        return eqx.filter_vmap(make)(jax.random.split(key, n_members))
    seeds = np.random.default_rng(seed).integers(0, 2**32, (n_members, 2), dtype=np.uint32)
    return stack([make(jnp.asarray(s)) for s in seeds])


def n_members(nets: ParamNet) -> int:
    """Number of members of a stacked ensemble (see :func:`make_ensemble`)."""
    return int(nets.layers[0].weight.shape[0])


def member(nets: ParamNet, i: int) -> ParamNet:
    """Member ``i`` of a stacked ensemble, as a plain single :class:`ParamNet`."""
    m = n_members(nets)
    if not -m <= i < m:
        raise IndexError(f"member {i} out of range for an ensemble of {m}")
    arrays, static = eqx.partition(nets, eqx.is_array)
    return eqx.combine(jax.tree_util.tree_map(lambda a: a[i], arrays), static)


def stack(nets: list[ParamNet]) -> ParamNet:
    """Stack single networks of one architecture into an ensemble (leading member axis)."""
    arrays = [eqx.partition(n, eqx.is_array) for n in nets]
    static = arrays[0][1]
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[a for a, _ in arrays])
    return eqx.combine(stacked, static)


__all__ = ["ParamNet", "PRODA_HIDDEN", "PRODA_DROPOUT", "U_EPS", "make_ensemble", "member", "n_members", "stack"]
