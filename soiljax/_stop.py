"""A request to stop a run, set by a signal handler and read between batches.

The command line turns SIGTERM into ``KeyboardInterrupt`` (see ``cli._terminate_as_interrupt``).
Python delivers that exception wherever the main thread is when the signal arrives, and some
places swallow it: a weak-reference callback or a garbage-collection hook prints
"Exception ignored in ..." and carries on.  So the handler also sets this flag, and every
batch loop calls :func:`check` before it starts the next batch: a run whose interrupt was
swallowed still stops at the next batch boundary, with the finished batches kept.

Kept free of heavy imports: the command line imports it before JAX.
"""

from __future__ import annotations

import threading

_requested = threading.Event()


def request() -> None:
    """Ask the running batch loop to stop before its next batch."""
    _requested.set()


def clear() -> None:
    """Forget an earlier request (a new run starts)."""
    _requested.clear()


def requested() -> bool:
    """Whether a stop has been asked for and not cleared."""
    return _requested.is_set()


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a stop has been asked for."""
    if _requested.is_set():
        raise KeyboardInterrupt
