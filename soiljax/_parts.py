"""Batch-by-batch computations that survive interruption.

:func:`run_in_parts` splits ``n`` sites into batches, writes each batch's
dataset to its own netCDF part file in ``<path>.parts/`` as soon as it is
computed, and merges the parts into ``path`` at the end.  A run that stops
part-way loses at most the batch in progress; calling again with the same
inputs (same fingerprint) computes only the missing batches.  Used by
:func:`soiljax.io.simulate_to_file` and :func:`soiljax.calibration.calibrate`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import xarray as xr


class PartsMismatchError(ValueError):
    """The part files on disk belong to a run with other inputs."""


def parts_dir(path) -> Path:
    """Folder of the part files of an unfinished run writing ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".parts")


def _engine() -> str:
    from .io import netcdf_engine

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
    parallel: Callable[[list[tuple[int, int, int, Path]]], None] | None = None,
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
    receives ``(index, lo, hi, part_path)`` for each of them (worker
    processes, :func:`soiljax._workers.run_parallel`).  ``kept``, if given, is
    told how many finished parts of an earlier run are kept, before any
    batch is computed (a progress bar can leave them out of its total).
    """
    batch_size = max(1, min(int(batch_size), n))
    n_batches = -(-n // batch_size)
    if resume:
        finished = _finished(Path(path), required, fingerprint)
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
    parts.mkdir(parents=True, exist_ok=True)
    if not manifest_path.exists():
        info = {"fingerprint": fingerprint, "n_sites": n, "batch_size": batch_size, "n_batches": n_batches}
        info.update(manifest or {})
        manifest_path.write_text(json.dumps(info))

    def part_file(i: int) -> Path:
        return parts / f"part_{i:06d}.nc"

    todo = [i for i in range(n_batches) if not _readable(part_file(i), required)]
    if kept is not None:
        kept(n_batches - len(todo))
    if parallel is not None and todo:
        parallel([(i, i * batch_size, min((i + 1) * batch_size, n), part_file(i)) for i in todo])
        todo = [i for i in todo if not _readable(part_file(i), required)]
    iterator = todo
    if progress is True:
        from tqdm.auto import tqdm

        iterator = tqdm(todo, total=len(todo), desc=desc, unit="batch", disable=len(todo) <= 1)
    elif callable(progress):
        iterator = progress(todo, total=len(todo))
    for i in iterator:
        lo, hi = i * batch_size, min((i + 1) * batch_size, n)
        write(compute(lo, hi), part_file(i))

    pieces = []
    for i in range(n_batches):
        with xr.open_dataset(part_file(i), engine=_engine()) as p:
            pieces.append(p.load())
    merged = xr.concat(pieces, dim="site", data_vars="minimal", coords="minimal", compat="override", join="override")
    merged.attrs = dict(pieces[0].attrs)
    if finalize is not None:
        merged = finalize(merged)
    merged.attrs[FINGERPRINT_ATTR] = fingerprint
    write(merged, Path(path))
    shutil.rmtree(parts)
    return merged
