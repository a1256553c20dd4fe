"""Batches computed by worker processes, one per group of CPU cores.

XLA's CPU backend runs a vmapped sampler's small kernels on one core, and
splitting one batch over several host devices scales poorly: a vmapped
``while_loop`` (every NUTS trajectory) makes all devices agree on when to stop
after every leapfrog step.  Independent processes need no such agreement, so
``calibrate(..., workers=2)`` on a 2-core machine runs two batches at a time,
one per core, at nearly twice the throughput.

:func:`run_parallel` hands the batches out one at a time (a worker that
finishes early takes the next one), each worker writes its own part files, and
the parent process shows the progress of all of them.  Workers are started
with ``spawn``: each imports JAX afresh, compiles its own program, and is
pinned to its share of the cores the parent may use.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path


class WorkerError(RuntimeError):
    """A worker process failed; the batches finished before it are kept."""


POLL_SECONDS = 1.0
ORPHAN_EXIT = 3
"""Exit status of a worker that quit because its parent process had died."""


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


def _worker(job, write, tasks, messages, jax_settings) -> None:
    """Body of one worker process: take tasks until the ``None`` sentinel."""
    import jax

    for name, value in jax_settings.items():
        jax.config.update(name, value)
    parent = os.getppid()

    def report(k, more=0):
        # the parent was killed (SIGTERM, SIGKILL: no chance to stop us): quit
        # instead of computing on for nobody; finished part files stay
        if os.getppid() != parent:
            os._exit(ORPHAN_EXIT)
        messages.put(("progress", k, more))

    while True:
        task = tasks.get()
        if task is None:
            break
        index, lo, hi, path = task
        try:
            write(job(lo, hi, report), Path(path))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
            messages.put(("error", index, traceback.format_exc(), _user_error(exc)))
            return
    messages.put(("exit",))


def _user_error(exc: BaseException) -> BaseException | None:
    """``exc`` if the parent should raise it as it is: a user-facing error (a
    :class:`soiljax.io.FileFormatError`, e.g. a full disk's
    :class:`~soiljax.io.OutputWriteError`) that pickles; else None."""
    from .io import FileFormatError

    if not isinstance(exc, FileFormatError):
        return None
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - an exception with odd arguments: reported as a traceback
        return None
    return exc


def _start_pinned(process, cores) -> None:
    """Start ``process`` on ``cores`` only.

    The child inherits the CPU affinity of the thread that starts it, from
    its first instruction: importing soiljax starts XLA's CPU backend, whose
    thread pools take the affinity (and their size) they are created with, so
    pinning from inside the child would come too late.
    """
    if cores is None:
        process.start()
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        process.start()
    finally:
        os.sched_setaffinity(0, before)


def _jax_settings() -> dict:
    """The parent's JAX settings that a spawned worker must share."""
    import jax

    settings = {"jax_enable_x64": bool(jax.config.jax_enable_x64)}
    cache = getattr(jax.config, "jax_compilation_cache_dir", None)
    if cache:
        settings["jax_compilation_cache_dir"] = cache
    return settings


def run_parallel(
    job: Callable,
    write: Callable,
    tasks: Sequence[tuple[int, int, int, Path]],
    workers: int,
    bar: Callable[..., object] | None = None,
) -> None:
    """Compute ``write(job(lo, hi, bar), path)`` for every ``(index, lo, hi, path)``
    in ``tasks`` with ``workers`` processes.

    ``job`` and ``write`` must be picklable (module-level functions, or objects
    of module-level classes).  ``job`` reports progress through its third
    argument, ``bar(k)`` or, where a batch adds ``more`` iterations to its
    total, ``bar(k, more)``; the calls reach ``bar`` in this process.  A failing batch stops
    every worker and raises :class:`WorkerError` with the worker's traceback
    (a :class:`soiljax.io.FileFormatError`, such as a full disk's
    :class:`~soiljax.io.OutputWriteError`, is raised as it is: one line);
    part files written before that stay, so a rerun resumes.  Workers
    whose parent dies without stopping them (killed by a signal) quit at
    their next progress report.
    """
    bar = bar or (lambda k, more=0: None)
    ctx = mp.get_context("spawn")
    task_queue, messages = ctx.Queue(), ctx.Queue()
    for task in tasks:
        task_queue.put((task[0], task[1], task[2], str(task[3])))
    workers = max(1, min(int(workers), len(tasks)))
    for _ in range(workers):
        task_queue.put(None)
    settings = _jax_settings()
    procs = []
    for cores in core_groups(workers):
        p = ctx.Process(target=_worker, args=(job, write, task_queue, messages, settings), daemon=True)
        _start_pinned(p, cores)
        procs.append(p)
    try:
        running = workers
        while running:
            try:
                msg = messages.get(timeout=POLL_SECONDS)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise WorkerError(
                        f"a worker process died with exit code {dead[0].exitcode} (killed, or out of memory?); "
                        "finished batches are kept: rerun to resume, with fewer workers or a smaller batch"
                    ) from None
                continue
            if msg[0] == "progress":
                if msg[2]:  # the batch grew (an extension round of the calibration)
                    bar(msg[1], msg[2])
                else:
                    bar(msg[1])
            elif msg[0] == "error":
                if msg[3] is not None:  # a one-line user error (a full disk): as if raised here
                    raise msg[3]
                raise WorkerError(f"batch {msg[1]} failed in a worker process; finished batches are kept, "
                                  f"a rerun resumes. The worker's error:\n{msg[2]}")
            elif msg[0] == "exit":
                running -= 1
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join()
