"""Batch-by-batch computations that survive interruption.

:func:`run_in_parts` splits ``n`` sites into batches, writes each batch's
dataset to its own netCDF part file in ``<path>.parts/`` as soon as it is
computed, and merges the parts into ``path`` at the end.  A run that stops
part-way loses at most the batch in progress; calling again with the same
inputs (same fingerprint) computes only the missing batches.  Used by
:func:`soiljax.simulate_to_file` and :func:`soiljax.calibration.calibrate`.

A run holds a lock on its output (``<path>.lock``, naming the process), so a
second run on the same output is refused instead of computing everything
twice or deleting the first run's parts.  The output path is checked before
any work (:func:`check_output_path`).  Part files carry the attribute
:data:`PARTIAL_ATTR` (they are not result files); hidden temporary files
left by killed writers are removed when a run starts; a run that fails or is
interrupted says where its finished batches are kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import shlex
import shutil
import socket
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import xarray as xr

from . import _stop


class PartsMismatchError(ValueError):
    """The part files on disk belong to a run with other inputs."""


class RunInterrupted(KeyboardInterrupt):
    """A run was interrupted (Ctrl-C); the message says where its finished batches are kept."""


class StaleLockWarning(UserWarning):
    """The lock of a run that is no longer running was taken over."""


PARTIAL_ATTR = "soiljax_partial"
"""Attribute of a part file: it holds one batch of an unfinished run, it is not a result file."""


def parts_dir(path) -> Path:
    """Folder of the part files of an unfinished run writing ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".parts")


def lock_path(path) -> Path:
    """Lock file of a run writing ``path`` (it exists while the run is live)."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


# --------------------------------------------------------------------------
# the output path, checked before any work
# --------------------------------------------------------------------------


def check_output_path(path) -> Path:
    """Raise :class:`soiljax.io.OutputError` (one line) if ``path`` cannot be written as an output file.

    Refuses an existing folder, a path under a file, a folder this process
    may not write in, and a ``<path>.parts`` or ``<path>.lock`` of the wrong
    kind.  Missing folders are fine (they are made when writing); nothing is
    created here.  Cheap: call it before reading inputs or compiling.
    """
    from .io._netcdf import OutputError

    path = Path(path)
    if path.is_dir():
        raise OutputError(f"the output {str(path)!r} is a directory; give a file name, e.g. {str(path / 'out.nc')!r}")
    for other, kind in ((parts_dir(path), "folder"), (lock_path(path), "file")):
        if other.exists() and other.is_dir() != (kind == "folder"):
            raise OutputError(f"cannot write {str(path)!r}: {str(other)!r} is in the way (it should be a {kind} of "
                              "a run writing that output); move it away")
    folder = path.parent  # the nearest folder that exists must be a folder this process may write in
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {str(path)!r}: {str(folder)!r} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {str(path)!r}: no permission to write in {str(folder)!r} (or it is on a "
                          "read-only disk); choose another output folder")
    return path


# --------------------------------------------------------------------------
# the lock: one live run per output
# --------------------------------------------------------------------------
#
# The lock file is created with O_CREAT | O_EXCL, which only one process can
# do, and holds JSON naming its owner (host, pid, the pid's start time, when,
# the command line).  A lock whose owner is on this host and no longer running
# is stale (the run was killed: SIGKILL, a power cut) and is taken over; a
# lock of another host (a shared disk) cannot be checked and is refused with
# a message that says to delete it if that run is gone.  Taking over is
# itself guarded by a second file (``.lock.break``, O_EXCL again) so that two
# runs finding the same stale lock cannot both take it.

_FRESH_SECONDS = 10.0
"""An unreadable lock (or takeover guard) younger than this may be in the making; older, its writer died."""
_LOCK_TIMEOUT = 30.0


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a pid of another user's process counts)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate it; there is no cheap check: assume it lives
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, it is someone else's
        return True
    return True


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (Linux, from /proc), to tell a reused pid from its first owner."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]  # field 22, starttime
    except (OSError, IndexError):
        return None


def _owner() -> dict:
    argv = [os.path.basename(sys.argv[0])] + sys.argv[1:] if sys.argv and sys.argv[0] else ["python"]
    return {"host": socket.gethostname(), "pid": os.getpid(), "process_start": _process_start(os.getpid()),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": shlex.join(argv)}


def _snapshot(file: Path) -> tuple[str, tuple] | None:
    """The text of ``file`` and its identity (inode, mtime), or None if it is gone."""
    try:
        st = file.stat()
        return file.read_text(errors="replace"), (st.st_dev, st.st_ino, st.st_mtime_ns)
    except FileNotFoundError:
        return None


def _age(file: Path) -> float:
    try:
        return time.time() - file.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _describe(info: dict) -> str:
    what = f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started', '?')}"
    return what + (f": {info['command']}" if info.get("command") else "")


def _stale(info: dict | None, file: Path) -> bool:
    """Whether the lock ``info`` (read from ``file``; None if unreadable) belongs to a run that is gone.

    Raises :class:`OutputLockedError` if it belongs to a live run, or to a
    run on another host."""
    from .io._netcdf import OutputLockedError

    out = str(file)[: -len(".lock")]
    if info is None:  # empty or garbled: its writer died between creating and filling it, or is filling it now
        return _age(file) > _FRESH_SECONDS
    if info.get("host") != socket.gethostname():
        raise OutputLockedError(
            f"{out!r} is locked by a run on another host ({_describe(info)}), which cannot be checked from here; "
            f"if that run is no longer running, delete {str(file)!r} and run again"
        )
    pid = info.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return True
    started = info.get("process_start")
    if started is not None and _process_start(pid) not in (None, started):
        return True  # the pid was reused by another process
    raise OutputLockedError(
        f"{out!r} is being written by another run ({_describe(info)}); wait for it to finish or stop it: two runs "
        f"on one output would compute everything twice. Its lock file is {str(file)!r}"
    )


def _break(file: Path, seen: tuple) -> None:
    """Remove the stale lock ``file`` if it is still the one judged stale (``seen``)."""
    guard = file.with_name(file.name + ".break")
    try:
        os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:  # another run is taking it over; a guard left by a killed run goes after a while
        if _age(guard) > _FRESH_SECONDS:
            guard.unlink(missing_ok=True)
        time.sleep(0.1)
        return
    try:
        if _snapshot(file) == seen:  # not replaced by a new owner meanwhile
            file.unlink(missing_ok=True)
    finally:
        guard.unlink(missing_ok=True)


def _acquire(file: Path) -> str:
    """Create the lock ``file`` for this process; returns the text written (to release only our own lock)."""
    from .io._netcdf import OutputLockedError, OutputWriteError

    text = json.dumps(_owner())
    deadline = time.monotonic() + _LOCK_TIMEOUT
    while time.monotonic() < deadline:
        try:
            fd = os.open(file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            seen = _snapshot(file)
            if seen is None:  # released meanwhile
                continue
            try:
                info = json.loads(seen[0])
                info = info if isinstance(info, dict) else None
            except ValueError:
                info = None
            if not _stale(info, file):
                time.sleep(0.1)  # an unreadable lock that may be in the making: read it again
                continue
            warnings.warn(StaleLockWarning(
                f"taking over the lock {str(file)!r} of a run that is no longer running"
                + (f" ({_describe(info)})" if info else "")
            ), stacklevel=4)
            _break(file, seen)
            continue
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
        except OSError as exc:
            file.unlink(missing_ok=True)
            raise OutputWriteError(f"could not write the lock file {str(file)!r}: {exc.strerror or exc}") from exc
        return text
    raise OutputLockedError(f"could not lock {str(file)!r} within {_LOCK_TIMEOUT:.0f} s: is another run starting "
                            "on the same output?")


@contextlib.contextmanager
def output_lock(path):
    """Hold the lock on output ``path`` for the duration of the ``with`` block (see above)."""
    file = lock_path(path)
    text = _acquire(file)
    try:
        yield file
    finally:
        try:
            if file.read_text() == text:  # still ours (nobody deleted and retook it)
                file.unlink()
        except OSError:
            pass


def _remove_stale_temporaries(path: Path) -> None:
    """Remove hidden temporary files (``.NAME.tmpPID``, see
    :func:`soiljax.io._netcdf.write_dataset`) of ``path`` and its parts whose writer is no longer running
    (killed mid-write).

    Called while holding the lock, so a live writer can only be a worker of a
    killed run finishing its batch; a pid equal to ours is a leftover of an
    earlier process with that pid (this one has not written yet)."""
    found = list(path.parent.glob(f".{glob.escape(path.name)}.tmp*"))
    if parts_dir(path).is_dir():
        found += parts_dir(path).glob(".part_*.nc.tmp*")
    for file in found:
        pid = file.name.rsplit(".tmp", 1)[1]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            file.unlink(missing_ok=True)


@dataclasses.dataclass(frozen=True)
class _PartWriter:
    """``write`` for part files: marks each as partial (:data:`PARTIAL_ATTR`); pickles for worker processes."""

    write: Callable
    n_batches: int
    output: str

    def __call__(self, ds: xr.Dataset, path):
        i = int(Path(path).stem.rsplit("_", 1)[1])
        note = (f"batch {i + 1} of {self.n_batches} of an unfinished run writing {self.output}; not a result file: "
                "rerun the command that started it to finish")
        return self.write(ds.assign_attrs({PARTIAL_ATTR: note}), Path(path))


def _engine() -> str:
    from .io._netcdf import netcdf_engine

    return netcdf_engine()


FINGERPRINT_ATTR = "soiljax_run_fingerprint"
"""Attribute of a finished file: the inputs and settings it was computed from, hashed."""


def _finished(path: Path, required: str, fingerprint: str) -> xr.Dataset | None:
    """The dataset at ``path`` if it is a finished run of the same inputs, else None."""
    if not path.exists() or parts_dir(path).exists():
        return None
    try:
        with xr.open_dataset(path, engine=_engine()) as ds:
            if required in ds.variables and ds.attrs.get(FINGERPRINT_ATTR) == fingerprint:
                return ds.load()
    except Exception:  # noqa: BLE001 - an unreadable file is recomputed
        return None
    return None


def _readable(path: Path, required: str) -> bool:
    if not path.exists():
        return False
    try:
        with xr.open_dataset(path, engine=_engine()) as ds:
            return required in ds.variables
    except Exception:  # noqa: BLE001 - a truncated part is recomputed
        return False


def run_in_parts(
    path,
    *,
    n: int,
    batch_size: int,
    fingerprint: str,
    compute: Callable[[int, int], xr.Dataset],
    write: Callable[[xr.Dataset, Path], object],
    required: str,
    resume: bool = True,
    progress: bool | Callable = False,
    desc: str = "batches",
    finalize: Callable[[xr.Dataset], xr.Dataset] | None = None,
    manifest: Mapping | None = None,
    parallel: Callable[[list[tuple[int, int, int, Path]], Callable], None] | None = None,
    kept: Callable[[int], None] | None = None,
) -> xr.Dataset:
    """Compute ``compute(lo, hi)`` for every batch of sites, part file by part file.

    ``required`` names a variable every complete part holds (a part without
    it, or one that cannot be read, is recomputed).  ``resume=False`` deletes
    existing parts and starts over; with ``resume=True`` parts of a run with
    another ``fingerprint`` raise :class:`PartsMismatchError`, and a finished
    ``path`` of the same fingerprint is read and returned.  ``finalize``
    post-processes the merged dataset before it is written to ``path``.
    ``parallel``, if given, computes and writes the missing parts itself: it
    receives ``(index, lo, hi, part_path)`` for each of them and the
    (picklable) function that writes a part file, ``part_write(ds, part_path)``
    (tasks on a Dask cluster, :func:`soiljax._engine.run_batches`).  ``kept``, if
    given, is told how many finished parts of an earlier run are kept, before
    any batch is computed (a progress bar can leave them out of its total).

    Before any work the output path is checked (:func:`check_output_path`)
    and locked (:func:`output_lock`: a live run on the same output raises
    :class:`soiljax.io.OutputLockedError`), and hidden temporary files of
    killed writers are removed.  Part files carry :data:`PARTIAL_ATTR`; the
    merged file does not.  A write that fails (a full disk) raises
    :class:`soiljax.io.OutputWriteError`, Ctrl-C :class:`RunInterrupted`;
    both say where the finished batches are kept, and so does a note on
    any other error.
    """
    from .io._netcdf import OutputError

    path = Path(path)
    check_output_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot make the folder {str(path.parent)!r}: {exc.strerror or exc}") from exc
    with output_lock(path):  # before anything is read or deleted (resume=False deletes the parts)
        _remove_stale_temporaries(path)
        return _run_locked(path, n=n, batch_size=batch_size, fingerprint=fingerprint, compute=compute, write=write,
                           required=required, resume=resume, progress=progress, desc=desc, finalize=finalize,
                           manifest=manifest, parallel=parallel, kept=kept)


def _kept_note(parts: Path, n_batches: int) -> str:
    done = min(n_batches, len(list(parts.glob("part_*.nc")))) if parts.is_dir() else 0
    return (f"{done} of {n_batches} batches are finished and kept in {str(parts)!r}; rerun the same command to "
            "resume from them")


def _run_locked(path: Path, *, n, batch_size, fingerprint, compute, write, required, resume, progress, desc,
                finalize, manifest, parallel, kept) -> xr.Dataset:
    """:func:`run_in_parts` once the output is locked."""
    from .io._netcdf import OutputWriteError

    batch_size = max(1, min(int(batch_size), n))
    n_batches = -(-n // batch_size)
    if resume:
        finished = _finished(path, required, fingerprint)
        if finished is not None:
            return finished
    parts = parts_dir(path)
    manifest_path = parts / "manifest.json"
    if parts.exists():
        try:
            same = json.loads(manifest_path.read_text()).get("fingerprint") == fingerprint
        except (OSError, ValueError):
            same = False
        if resume and not same:
            raise PartsMismatchError(
                f"{str(parts)!r} holds part files of a run with other inputs or settings; remove that "
                "folder, or start over with resume=False (--restart on the command line)"
            )
        if not resume:
            shutil.rmtree(parts)
    try:
        parts.mkdir(parents=True, exist_ok=True)
        if not manifest_path.exists():
            info = {"fingerprint": fingerprint, "n_sites": n, "batch_size": batch_size, "n_batches": n_batches}
            info.update(manifest or {})
            manifest_path.write_text(json.dumps(info))
    except OSError as exc:
        raise OutputWriteError(f"could not write {str(manifest_path)!r}: {exc.strerror or exc}") from exc

    def part_file(i: int) -> Path:
        return parts / f"part_{i:06d}.nc"

    part_write = _PartWriter(write, n_batches, path.name)
    try:  # from here on, a failure says where the finished batches are
        todo = [i for i in range(n_batches) if not _readable(part_file(i), required)]
        if kept is not None:
            kept(n_batches - len(todo))
        if parallel is not None and todo:
            parallel([(i, i * batch_size, min((i + 1) * batch_size, n), part_file(i)) for i in todo], part_write)
            todo = [i for i in todo if not _readable(part_file(i), required)]
        iterator = todo
        if progress is True:
            from tqdm.auto import tqdm

            iterator = tqdm(todo, total=len(todo), desc=desc, unit="batch", disable=len(todo) <= 1)
        elif callable(progress):
            iterator = progress(todo, total=len(todo))
        for i in iterator:
            _stop.check()
            lo, hi = i * batch_size, min((i + 1) * batch_size, n)
            part_write(compute(lo, hi), part_file(i))
        _stop.check()

        pieces = []
        for i in range(n_batches):
            with xr.open_dataset(part_file(i), engine=_engine()) as p:
                pieces.append(p.load())
        merged = xr.concat(pieces, dim="site", data_vars="minimal", coords="minimal", compat="override",
                           join="override")
        merged.attrs = {k: v for k, v in pieces[0].attrs.items() if k != PARTIAL_ATTR}
        if finalize is not None:
            merged = finalize(merged)
        merged.attrs[FINGERPRINT_ATTR] = fingerprint
        write(merged, path)
        shutil.rmtree(parts)
        return merged
    except OutputWriteError as exc:
        raise OutputWriteError(f"{exc}; {_kept_note(parts, n_batches)}") from exc
    except KeyboardInterrupt as exc:
        raise RunInterrupted(_kept_note(parts, n_batches)) from exc
    except Exception as exc:
        exc.add_note(_kept_note(parts, n_batches))
        raise
