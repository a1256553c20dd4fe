"""Dask: the parallel and distributed backend of the site-batch engine (:mod:`soiljax._engine`).

A run's batches are Dask tasks.  :func:`cluster` gives a ``distributed.Client``:

- on one machine (``workers=N``, no scheduler): an embedded
  ``LocalCluster`` of N single-threaded worker processes, each pinned to its
  share of the CPU cores *before* JAX starts in it.  XLA's CPU backend runs a
  vmapped sampler's small kernels on one core, and splitting one batch over
  several host devices scales poorly (a vmapped ``while_loop``, every NUTS
  trajectory, makes all devices agree on when to stop after every leapfrog
  step); independent processes need no such agreement, so N workers on N
  cores run at nearly N times the throughput.  XLA's thread pools take the
  affinity (and their size) they are created with, so the pinning happens in
  the worker's preload (:func:`dask_setup`), before any task imports JAX;
- on a cluster (``scheduler=ADDRESS`` or ``scheduler_file=FILE``, for example
  one started by ``dask-jobqueue`` on Slurm): a client of that scheduler.

:func:`run_on_cluster` submits one task per batch and hands each result to
the caller as it arrives (the caller writes it to its part file at once).
A worker that dies mid-batch (killed, out of memory) has its batch
recomputed on another worker by the scheduler; each batch's result arrives
once, so nothing is lost or counted twice.  Progress reported by a job on a
worker reaches the caller's progress bar through Dask's event log.

This module imports neither JAX nor Dask at import time: worker processes
import it in their preload.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence

from . import _stop


class WorkerError(RuntimeError):
    """Batches could not be computed on the Dask cluster; the batches finished before are kept."""


class ClusterError(RuntimeError):
    """The Dask cluster could not be started or reached."""


_CORES_ENV = "SOILJAX_WORKER_CORES"
"""Environment variable of a local worker: JSON ``{worker name: [cores]}``, read by :func:`dask_setup`."""


def core_groups(workers: int) -> list[list[int] | None]:
    """The CPU cores of each worker: the cores this process may use, dealt out
    in turn (``None``, no pinning, where the platform cannot say or there are
    fewer cores than workers)."""
    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return [None] * workers
    if len(cores) < workers:
        return [None] * workers
    return [cores[k::workers] for k in range(workers)]


def dask_setup(worker) -> None:
    """Preload of a local worker process: pin it to its cores before JAX is imported."""
    groups = json.loads(os.environ.get(_CORES_ENV, "{}"))
    cores = groups.get(str(worker.name))
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)


def _distributed():
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - a dependency of soiljax
        raise ClusterError("parallel runs need Dask: pip install 'dask[distributed]'") from exc
    return distributed


@contextlib.contextmanager
def cluster(
    *,
    workers: int = 1,
    scheduler: str | None = None,
    scheduler_file=None,
    client=None,
    echo: Callable[[str], object] | None = None,
    timeout: str = "20s",
) -> Iterator[object | None]:
    """A ``distributed.Client`` for a run, or ``None`` to compute in this process.

    ``client`` is used as it is (and left open); ``scheduler`` (an address such
    as ``tcp://10.0.0.5:8786``) or ``scheduler_file`` (the JSON file a
    scheduler writes with ``--scheduler-file``) connect to a running cluster;
    otherwise ``workers`` > 1 starts a local cluster of that many pinned,
    single-threaded worker processes, listening on 127.0.0.1 only, closed at
    the end.  ``echo`` is told the dashboard's address when there is one;
    ``timeout`` is how long to try to reach a scheduler.
    """
    if client is not None:
        yield client
        return
    if scheduler is not None and scheduler_file is not None:
        raise ClusterError("give either a scheduler address or a scheduler file, not both")
    if scheduler is None and scheduler_file is None and workers <= 1:
        yield None
        return
    distributed = _distributed()
    with contextlib.ExitStack() as stack:
        if scheduler is not None or scheduler_file is not None:
            where = scheduler if scheduler is not None else f"the scheduler file {str(scheduler_file)!r}"
            if scheduler_file is not None and not os.path.exists(scheduler_file):
                raise ClusterError(f"there is no scheduler file {str(scheduler_file)!r}; start a scheduler with "
                                   "'dask scheduler --scheduler-file FILE' (or dask-jobqueue) and pass that FILE")
            try:
                client = distributed.Client(scheduler, scheduler_file=None if scheduler_file is None else
                                            str(scheduler_file), timeout=timeout, set_as_default=False)
            except (OSError, TimeoutError, ValueError) as exc:
                raise ClusterError(f"could not reach the Dask scheduler at {where}: {exc}; is it running, and is "
                                   "the address right (tcp://HOST:PORT)?") from exc
            stack.callback(client.close)
        else:
            client = stack.enter_context(_local_client(distributed, int(workers)))
        _show_dashboard(client, echo)
        yield client


@contextlib.contextmanager
def _local_client(distributed, workers: int):
    import logging

    groups = core_groups(workers)
    env = {_CORES_ENV: json.dumps({str(k): g for k, g in enumerate(groups) if g is not None})}
    for name in ("JAX_ENABLE_X64", "JAX_COMPILATION_CACHE_DIR", "JAX_PLATFORMS"):
        if name in os.environ:
            env[name] = os.environ[name]
    try:
        local = distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0", memory_limit=0, preload=["soiljax._dask"], env=env,
            silence_logs=logging.ERROR,
        )
    except Exception as exc:  # noqa: BLE001 - any failure to start says what to do
        raise ClusterError(f"could not start {workers} local Dask workers: {exc}; try fewer --workers") from exc
    try:
        client = distributed.Client(local, set_as_default=False)
        try:
            yield client
        finally:
            client.close()
    finally:
        local.close()


def _show_dashboard(client, echo) -> None:
    if echo is None:
        return
    try:
        has_dashboard = "dashboard" in client.scheduler_info().get("services", {})
    except Exception:  # noqa: BLE001 - the dashboard is a convenience
        has_dashboard = False
    if has_dashboard:
        echo(f"Dask dashboard: {client.dashboard_link}")


def _jax_settings() -> dict:
    """This process's JAX settings that a worker must share (none if JAX is not in use here)."""
    if "jax" not in sys.modules:
        return {}
    import jax

    settings = {"jax_enable_x64": bool(jax.config.jax_enable_x64)}
    cache = getattr(jax.config, "jax_compilation_cache_dir", None)
    if cache:
        settings["jax_compilation_cache_dir"] = cache
    return settings


def _run_batch(job, index: int, lo: int, hi: int, topic: str, settings: dict):
    """Task body on a worker: one batch of ``job``, its progress sent to ``topic``."""
    if settings:
        import jax

        for name, value in settings.items():
            jax.config.update(name, value)
    from distributed import get_worker

    worker = get_worker()
    me = worker.address

    def report(k, more=0):
        worker.log_event(topic, [index, me, int(k), int(more)])

    return job(lo, hi, report)


class _Progress:
    """Relays progress events from the workers to ``report``; a batch restarted on another
    worker (its first worker died) takes back what its first attempt had reported."""

    def __init__(self, report: Callable):
        self.report = report
        self.seen: dict[int, tuple[str, int, int]] = {}  # batch -> (worker, k, more) reported so far

    def __call__(self, event) -> None:
        _, (index, worker, k, more) = event
        first, k_sum, more_sum = self.seen.get(index, (worker, 0, 0))
        if first != worker:  # a new attempt: undo the lost one
            self.report(-k_sum, -more_sum) if more_sum else self.report(-k_sum)
            k_sum, more_sum = 0, 0
        self.seen[index] = (worker, k_sum + k, more_sum + more)
        self.report(k, more) if more else self.report(k)


def run_on_cluster(
    client,
    job: Callable,
    batches: Sequence[tuple[int, int, int]],
    on_result: Callable[[int, object], object],
    report: Callable,
    batch_done: Callable[[int], object] | None = None,
) -> None:
    """Compute ``job(lo, hi, report)`` for every ``(index, lo, hi)`` as tasks on ``client``'s cluster.

    ``job`` must pickle.  It is sent once to every worker, or, if it has a
    method ``part(lo, hi)`` giving a copy that holds only those sites, each
    task gets just its part (far less to send for large inputs).  ``on_result(index,
    dataset)`` is called here, in the order batches finish; then
    ``batch_done(index)``.  A failing batch cancels the others and raises its
    error (a user-facing :class:`soiljax.io.FileFormatError` as it is); a batch
    whose workers keep dying raises :class:`WorkerError`.
    """
    distributed = _distributed()
    import dask

    token = uuid.uuid4().hex[:12]
    topic = f"soiljax-progress-{token}"
    relay = _Progress(report)
    client.subscribe_topic(topic, relay)
    settings = _jax_settings()
    shared = None
    if not hasattr(job, "part"):  # the whole job, sent once to every worker
        [shared] = client.scatter([job], broadcast=True, hash=False)
    futures = {}
    try:
        for index, lo, hi in batches:
            # a job with ``part`` sends each task only its batch's sites, as part of the task: the scheduler
            # keeps it, so a task whose worker dies can run again elsewhere (scattered data would die with it)
            data = shared if shared is not None else job.part(lo, hi)
            with dask.config.set({"distributed.admin.large-graph-warning-threshold": "4GB"}):
                fut = client.submit(_run_batch, data, index, lo, hi, topic, settings,
                                    key=f"soiljax-{token}-{index}", pure=False)
            futures[fut] = index
        for fut in distributed.as_completed(list(futures), loop=client.loop):
            _stop.check()
            index = futures[fut]
            try:
                result = fut.result()
            except distributed.KilledWorker as exc:
                raise WorkerError(
                    f"batch {index} was lost with the workers computing it, several times (killed, or out of "
                    "memory?); finished batches are kept: rerun to resume, with a smaller batch or more memory per "
                    "worker"
                ) from exc
            # written here with dask's local scheduler: xarray would take a cluster-wide lock for the file
            # when a distributed client is the default one, and fails to for files written to memory
            with dask.config.set(scheduler="synchronous"):
                on_result(index, result)
            fut.release()
            if batch_done is not None:
                batch_done(index)
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending)
        client.unsubscribe_topic(topic)
        if shared is not None:
            shared.release()
