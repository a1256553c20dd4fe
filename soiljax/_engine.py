"""The site-batch engine: one way to run a per-site computation over many sites.

The models are written for one site.  Every path that runs one over many
sites (steady states, simulations to file, calibration, maps, recovery,
evaluation) goes through this module, so batching is decided in one place:

- :func:`plan` splits ``n`` sites into batches of one common size (the sites
  spread evenly over them, a multiple of the device count);
- :func:`take` cuts one batch out of per-site arrays and pads it to that size
  by repeating its last site (a valid input, so padding never raises errors),
  so that every batch reuses one compiled program;
- :func:`map_sites` runs a batched function over all sites in memory, batch
  after batch, optionally spread over the devices of a mesh, and returns host
  arrays without the padding;
- :func:`run_batches` runs a batch job whose result is a dataset: in this
  process or on a Dask cluster (:mod:`soiljax._dask`), each finished batch
  written to a part file at once when there is an output file, so that an
  interrupted run resumes (:mod:`soiljax._parts`);
- :func:`fingerprint` hashes everything a run's result is computed from, so
  that a resumed run never mixes the parts of different inputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

DEFAULT_CPU_BATCH = 512
"""Sites per device and call on CPU: measured fastest between 250 and 1000
(benchmarks/README.md); 2000 sites per call was 2.5x slower (cache)."""


# --------------------------------------------------------------------------
# batches: sizes, bounds and padding
# --------------------------------------------------------------------------


def plan(n: int, batch_size: int, n_devices: int = 1) -> int:
    """The batch size actually used for ``n`` sites asked to run ``batch_size`` at a time.

    Every batch is padded to the same size (one compiled program), so the
    number of batches, ``ceil(n / batch_size)``, is kept and the sites are
    spread evenly over them: 481 sites in batches of 32 run as 16 batches of
    31 (15 padding copies) rather than 15 of 32 and one of 1 padded to 32.
    The size is rounded up to a multiple of ``n_devices``.
    """
    batch_size = max(1, min(int(batch_size), n))
    n_batches = -(-n // batch_size)
    size = -(-n // n_batches)
    return -(-size // n_devices) * n_devices


def bounds(n: int, size: int) -> list[tuple[int, int, int]]:
    """``(index, lo, hi)`` of every batch of ``size`` sites of ``n``."""
    return [(i, lo, min(lo + size, n)) for i, lo in enumerate(range(0, n, size))]


def padded_index(lo: int, hi: int, size: int) -> np.ndarray:
    """Site indices ``lo..hi-1``, then ``hi-1`` repeated up to ``size`` entries."""
    return pad_indices(np.arange(lo, hi), size)


def pad_indices(idx, size: int) -> np.ndarray:
    """Site indices ``idx`` (not empty), then the last repeated up to ``size`` entries."""
    idx = np.asarray(idx)
    if idx.size < size:
        idx = np.concatenate([idx, np.full(size - idx.size, idx[-1])])
    return idx


def take(tree, lo: int, hi: int, size: int | None = None):
    """Rows ``lo:hi`` of every array of ``tree`` (leading site axis), padded to ``size`` rows
    by repeating row ``hi - 1``.  Arrays without a leading site axis are not in ``tree``."""
    import jax

    if size is None or size == hi - lo:
        return jax.tree_util.tree_map(lambda a: a[lo:hi], tree)
    idx = padded_index(lo, hi, size)
    return jax.tree_util.tree_map(lambda a: a[idx], tree)


def batch_size_for(n: int, batch_size: int | None = None, mesh=None) -> int:
    """Sites per batch for ``n`` sites asked to run ``batch_size`` at a time (default
    :func:`default_batch_size`): at most ``n``, a multiple of the mesh's device count."""
    size = default_batch_size(n, mesh) if batch_size is None else batch_size
    size = max(1, min(int(size), n))
    n_dev = 1 if mesh is None else mesh.devices.size
    return -(-size // n_dev) * n_dev


def default_batch_size(n: int, mesh=None) -> int:
    """:data:`DEFAULT_CPU_BATCH` sites per device on CPU (chunks that stay in the
    cache run 3x faster than one big batch); all sites at once on accelerators."""
    import jax

    device = mesh.devices.flat[0] if mesh is not None else jax.devices()[0]
    n_dev = 1 if mesh is None else mesh.devices.size
    return DEFAULT_CPU_BATCH * n_dev if device.platform == "cpu" else max(n, 1)


# --------------------------------------------------------------------------
# in memory: a batched function over all sites
# --------------------------------------------------------------------------


def map_sites(
    fn: Callable,
    *args,
    batch_size: int | None = None,
    mesh=None,
    progress: bool | Callable = False,
    desc: str = "batches",
):
    """``fn(*batch)`` for every batch of sites; the results concatenated on the host.

    ``args`` are pytrees whose arrays all have the same leading site axis;
    ``fn`` takes one batch of each (leading axis the batch size, padded) and
    returns a pytree of arrays with the same leading axis, typically a jitted
    ``jax.vmap`` of a one-site function.  The sites are cut into batches of
    ``batch_size`` (default :func:`default_batch_size`; rounded up to a
    multiple of the mesh's device count), every batch padded to that size so
    that ``fn`` compiles once; ``mesh`` (a ``jax.sharding.Mesh`` with a
    ``"site"`` axis, see :func:`soiljax.site_mesh`) spreads each batch over its
    devices.  ``progress=True`` shows a bar over batches (when there are
    several); a callable is called with ``(iterable, total=)`` and must yield
    the same items.  Returns the outputs as numpy arrays with the padding
    dropped.
    """
    import jax

    n = _n_sites(args)
    size = batch_size_for(n, batch_size, mesh)
    batches = bounds(n, size)
    sharding = None
    if mesh is not None:
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        sharding = NamedSharding(mesh, P("site"))
    iterator: Iterable = batches
    if progress is True and len(batches) > 1:
        from tqdm.auto import tqdm

        iterator = tqdm(batches, total=len(batches), desc=desc, unit="batch")
    elif callable(progress):
        iterator = progress(batches, total=len(batches))
    pieces = []
    for _, lo, hi in iterator:
        batch = take(args, lo, hi, size)
        if sharding is not None:
            batch = jax.device_put(batch, sharding)
        out = fn(*batch)
        pieces.append(jax.tree_util.tree_map(lambda a, m=hi - lo: np.asarray(a)[:m], out))
    # writable host arrays, one batch or many (np.asarray of a device array is a read-only view)
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *pieces)


def _n_sites(args) -> int:
    import jax

    sizes = {np.shape(a)[0] for a in jax.tree_util.tree_leaves(args) if np.ndim(a) > 0}
    if len(sizes) != 1:
        raise ValueError(f"every per-site array needs the same leading site axis; got lengths {sorted(sizes)}")
    n = sizes.pop()
    if n < 1:
        raise ValueError("no sites: the per-site arrays have length 0")
    return n


# --------------------------------------------------------------------------
# batch jobs whose results are datasets: in this process, or on Dask
# --------------------------------------------------------------------------


def fingerprint(*items, arrays: Iterable = (), sites=None, attrs: Mapping | None = None) -> str:
    """One hash of everything a run's result is computed from.

    ``items`` are hashed by their ``repr`` (models, likelihoods, samplers,
    settings as sorted tuples); ``arrays`` by their bytes; ``sites`` are the
    per-site labels (an array), or an :class:`xarray.Dataset` whose variables
    along ``site`` (labels, lat, lon, ...) count with their names and types,
    or None; ``attrs`` are the attributes the result carries.  Used for the part files of :func:`run_batches` and the
    finished file's :data:`soiljax._parts.FINGERPRINT_ATTR`.
    """
    h = hashlib.sha256()
    for item in items:
        h.update(repr(item).encode())
    for a in arrays:
        h.update(np.ascontiguousarray(np.asarray(a)).tobytes())
    if sites is None:
        h.update(b"no sites")
    elif hasattr(sites, "data_vars"):  # a dataset: its variables along ``site``, with their names and types
        for key in sorted(map(str, sites.variables)):
            if sites[key].dims != ("site",):
                continue
            values = np.asarray(sites[key].values)
            h.update(key.encode())
            h.update(str(values.dtype).encode())
            h.update(values.astype(str).tobytes() if values.dtype.kind in "OUSM" else np.ascontiguousarray(values).tobytes())
    else:
        h.update(np.asarray(sites).astype(str).tobytes())
    h.update(repr(sorted((str(k), str(v)) for k, v in (attrs or {}).items())).encode())
    return h.hexdigest()


def run_batches(
    job: Callable,
    n: int,
    batch_size: int,
    *,
    out=None,
    fingerprint: str | None = None,
    write: Callable | None = None,
    required: str | None = None,
    resume: bool = True,
    progress: Callable | None = None,
    batch_done: Callable[[int], object] | None = None,
    kept: Callable[[int], None] | None = None,
    client=None,
    finalize: Callable | None = None,
    manifest: Mapping | None = None,
    desc: str = "batches",
):
    """Run ``job(lo, hi, report)`` for every batch of ``batch_size`` sites of ``n``; one dataset.

    ``job`` computes the dataset of sites ``lo:hi`` (it pads them itself with
    :func:`take`); ``report(k, more=0)`` is its progress callback: ``k``
    units of work done, ``more`` units added to its total.  In this process
    the calls go to ``progress``; on a Dask cluster (``client``, a
    ``distributed.Client``) they travel from the workers to ``progress``
    too, and ``batch_done(i)`` is called as each batch arrives.

    Without ``out`` the batches are computed here and concatenated along
    ``site``.  With ``out`` every finished batch is written at once to a
    part file by ``write(ds, path)`` (:func:`soiljax._parts.run_in_parts`:
    the output is checked and locked first, ``required`` names a variable
    every complete part holds, a rerun with the same ``fingerprint`` resumes,
    ``kept(k)`` is told how many parts an earlier run left); ``finalize``
    post-processes the merged dataset.  With ``client`` the missing batches
    are tasks on the cluster, written here as they arrive, so a batch whose
    worker dies is recomputed on another worker and each batch is written
    once.
    """
    report = progress or (lambda k, more=0: None)
    batches = bounds(n, batch_size)
    if out is None:
        import xarray as xr

        if client is not None:
            from ._dask import run_on_cluster

            results: dict[int, object] = {}
            run_on_cluster(client, job, batches, lambda i, ds: results.__setitem__(i, ds), report, batch_done)
            pieces = [results[i] for i, _, _ in batches]
        else:
            pieces = [job(lo, hi, report) for _, lo, hi in batches]
        if len(pieces) == 1:
            return pieces[0]
        ds = xr.concat(pieces, dim="site", data_vars="minimal", coords="minimal", compat="override", join="override")
        ds.attrs = dict(pieces[0].attrs)
        return ds
    from ._parts import run_in_parts

    parallel = None
    if client is not None:
        from ._dask import run_on_cluster

        def parallel(tasks, part_write):
            paths = {i: Path(p) for i, _, _, p in tasks}
            run_on_cluster(client, job, [(i, lo, hi) for i, lo, hi, _ in tasks],
                           lambda i, ds: part_write(ds, paths[i]), report, batch_done)

    return run_in_parts(out, n=n, batch_size=batch_size, fingerprint=fingerprint, compute=lambda lo, hi: job(lo, hi, report),
                        write=write, required=required, resume=resume, progress=False if batch_done is None else
                        _counting(batch_done), desc=desc, finalize=finalize, manifest=manifest, parallel=parallel,
                        kept=kept)


def _counting(batch_done: Callable[[int], object]) -> Callable:
    """A ``progress`` for :func:`soiljax._parts.run_in_parts` that calls ``batch_done(i)`` after each batch."""

    def iterate(todo, total=None):
        for i in todo:
            yield i
            batch_done(i)

    return iterate


class BatchBar:
    """Progress over batches for :func:`run_batches` (``batch_done`` and ``kept``).

    ``progress=True`` shows a tqdm bar; a callable is used as the wrapper of
    the batches left (``progress(iterable, total=...)``, advanced as each batch
    finishes); False shows nothing.  The bar is made once :meth:`kept` says how
    many batches an earlier run left, so its total is the work of this run.
    """

    def __init__(self, progress: bool | Callable, n_batches: int, desc: str = "batches"):
        self.progress = progress
        self.n_batches = n_batches
        self.desc = desc
        self._items = None
        self._bar = None

    def kept(self, k: int) -> None:
        todo = range(self.n_batches - k)
        if self.progress is True:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=len(todo), desc=self.desc, unit="batch", disable=len(todo) <= 1)
        elif callable(self.progress):
            self._items = iter(self.progress(todo, total=len(todo)))
            next(self._items, None)  # the first batch starts

    def done(self, index: int) -> None:
        if self._bar is not None:
            self._bar.update(1)
        elif self._items is not None:
            next(self._items, None)

    def echo(self, line: str) -> None:
        """Print ``line`` (the Dask dashboard's address) when progress is shown."""
        if self.progress:
            import sys

            print(line, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._items is not None:
            for _ in self._items:  # let a wrapper see the end
                pass
