"""Batched (and optionally sharded) steady states over many sites.

The models are written for one site.  :func:`batched_steady_state` is the edge
where batching happens: ``jax.vmap`` over sites, ``jax.jit`` once per model
configuration, host-side chunking for progress and memory, and -- when a
``jax.sharding.Mesh`` with a ``"site"`` axis is given -- sites spread over
devices with ``NamedSharding(mesh, P("site"))``.  The site count is padded to a
multiple of the chunk (and device) count, so every chunk reuses one compiled
program; padded sites are dropped before returning.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._forcing import Forcing
from ._models import AbstractSoilModel, SteadyState


DEFAULT_CPU_BATCH = 512
"""Sites per device and call on CPU: measured fastest between 250 and 1000
(benchmarks/README.md); 2000 sites per call was 2.5x slower (cache)."""


@eqx.filter_jit
def _vmapped_steady_state(model: AbstractSoilModel, u, forcing: Forcing) -> SteadyState:
    return jax.vmap(model.steady_state)(u, forcing)


def site_mesh(devices=None) -> Mesh:
    """A one-axis mesh named ``"site"`` over ``devices`` (default: all devices)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.array(devices), ("site",))


def _pad_sites(tree, n_pad: int):
    if n_pad == 0:
        return tree
    # repeat the last site: a valid forcing, so padding never triggers errors
    return jax.tree_util.tree_map(lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], n_pad, axis=0)]), tree)


def _broadcast_u(model: AbstractSoilModel, u, n_sites: int):
    u = jnp.asarray(u, dtype=float)
    if u.ndim == 1:
        u = jnp.broadcast_to(u, (n_sites, u.shape[0]))
    if u.ndim != 2 or u.shape[1] != model.n_params:
        raise ValueError(
            f"u must have shape ({model.n_params},) or (n_site, {model.n_params}) for "
            f"{type(model).__name__}; got {tuple(u.shape)}"
        )
    if u.shape[0] != n_sites:
        raise ValueError(f"u has {u.shape[0]} sites but the forcing has {n_sites}")
    return u


def batched_steady_state(
    model: AbstractSoilModel,
    u,
    forcing: Forcing,
    *,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
    progress: bool = False,
) -> SteadyState:
    """Steady states of many sites.

    ``forcing`` has one leading site axis; ``u`` is (site, param) or one
    (param,) vector for all sites.  ``batch_size`` splits the sites into chunks
    computed one after another (progress bar with ``progress=True``).  The
    default is :data:`DEFAULT_CPU_BATCH` sites per device on CPU, where chunks
    that stay in the core's cache run 3x faster than one big batch, and all
    sites at once on accelerators.  ``mesh``
    (see :func:`site_mesh`) spreads each chunk's sites over the mesh's devices.
    Results are returned on the host as one :class:`SteadyState` with a
    leading site axis.
    """
    if len(forcing.batch_shape) != 1:
        raise ValueError(
            f"batched_steady_state expects a forcing with one leading site axis, got batch shape {forcing.batch_shape}"
        )
    n = forcing.batch_shape[0]
    u = _broadcast_u(model, u, n)
    n_dev = 1 if mesh is None else mesh.devices.size
    if batch_size is None:
        on_cpu = (mesh.devices.flat[0] if mesh is not None else jax.devices()[0]).platform == "cpu"
        batch_size = DEFAULT_CPU_BATCH * n_dev if on_cpu else n
    chunk = max(1, min(int(batch_size), n))
    chunk = -(-chunk // n_dev) * n_dev
    n_chunks = -(-n // chunk)
    total = n_chunks * chunk
    u_p = _pad_sites(u, total - n)
    f_p = _pad_sites(forcing, total - n)

    sharding = None if mesh is None else NamedSharding(mesh, P("site"))
    starts = range(0, total, chunk)
    if progress and n_chunks > 1:
        from tqdm.auto import tqdm

        starts = tqdm(starts, total=n_chunks, desc=f"{type(model).__name__} steady states", unit="batch")
    parts = []
    for s in starts:
        uc, fc = jax.tree_util.tree_map(lambda a: a[s : s + chunk], (u_p, f_p))
        if sharding is not None:
            uc, fc = jax.device_put((uc, fc), sharding)
        out = _vmapped_steady_state(model, uc, fc)
        parts.append(jax.tree_util.tree_map(np.asarray, out))
    out = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs)[:n], *parts)
    return out
