"""Batch-by-batch runs: part files, resume, and finished runs that are not recomputed;
the output's lock, its checks, and write errors (a full disk)."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import xarray as xr

from soiljax import io
from soiljax.io import _netcdf
from soiljax.io._netcdf import write_dataset
from soiljax._parts import (
    FINGERPRINT_ATTR,
    PARTIAL_ATTR,
    PartsMismatchError,
    RunInterrupted,
    StaleLockWarning,
    check_output_path,
    lock_path,
    parts_dir,
    run_in_parts,
)


def _toy(calls):
    def compute(lo, hi):
        calls.append((lo, hi))
        return xr.Dataset({"x": ("site", np.arange(lo, hi, dtype=float) ** 2)})

    return compute


def _write(ds, path):
    ds.to_netcdf(path)


def test_finished_run_is_read_not_recomputed(tmp_path):
    out = tmp_path / "toy.nc"
    calls = []
    first = run_in_parts(out, n=7, batch_size=3, fingerprint="abc", compute=_toy(calls), write=_write, required="x")
    assert calls == [(0, 3), (3, 6), (6, 7)]
    assert not parts_dir(out).exists()
    with xr.open_dataset(out) as ds:
        assert ds.attrs[FINGERPRINT_ATTR] == "abc"
    again = run_in_parts(out, n=7, batch_size=3, fingerprint="abc", compute=_toy(calls), write=_write, required="x")
    assert len(calls) == 3  # nothing recomputed
    np.testing.assert_array_equal(again["x"].values, first["x"].values)
    # other inputs, or resume=False, compute again
    run_in_parts(out, n=7, batch_size=3, fingerprint="other", compute=_toy(calls), write=_write, required="x")
    assert len(calls) == 6
    run_in_parts(out, n=7, batch_size=3, fingerprint="other", compute=_toy(calls), write=_write, required="x",
                 resume=False)
    assert len(calls) == 9


def test_interrupted_run_resumes_and_refuses_other_inputs(tmp_path):
    out = tmp_path / "toy.nc"
    calls = []
    compute = _toy(calls)

    def flaky(lo, hi):
        if lo == 3:
            raise KeyboardInterrupt
        return compute(lo, hi)

    with pytest.raises(KeyboardInterrupt):
        run_in_parts(out, n=7, batch_size=3, fingerprint="abc", compute=flaky, write=_write, required="x")
    assert parts_dir(out).exists() and not out.exists()
    with pytest.raises(PartsMismatchError, match="other inputs"):
        run_in_parts(out, n=7, batch_size=3, fingerprint="zzz", compute=compute, write=_write, required="x")
    kept = []
    done = run_in_parts(out, n=7, batch_size=3, fingerprint="abc", compute=compute, write=_write, required="x",
                        kept=kept.append)
    assert calls == [(0, 3), (3, 6), (6, 7)]  # the first batch was not computed twice
    assert kept == [1]  # told before computing, so a progress bar can leave it out
    np.testing.assert_array_equal(done["x"].values, np.arange(7.0) ** 2)


# --------------------------------------------------------------------------
# the output: checked before any work, locked while a run writes it
# --------------------------------------------------------------------------


def _ds(lo, hi, width=1):
    return xr.Dataset({"x": (("site", "t"), np.full((hi - lo, width), float(lo)))})


def _run(out, calls=None, **kw):
    calls = [] if calls is None else calls

    def compute(lo, hi):
        calls.append((lo, hi))
        return _ds(lo, hi)

    kw = {"n": 4, "batch_size": 2, "fingerprint": "abc", "write": write_dataset, "required": "x"} | kw
    return run_in_parts(out, compute=compute, **kw)


def test_output_path_is_checked_before_any_work(tmp_path):
    calls = []
    (tmp_path / "taken").mkdir()
    with pytest.raises(io.OutputError, match="is a directory") as err:
        _run(tmp_path / "taken", calls)
    assert "\n" not in str(err.value)
    (tmp_path / "file").write_text("")
    with pytest.raises(io.OutputError, match="not a directory"):
        _run(tmp_path / "file" / "out.nc", calls)
    with pytest.raises(io.OutputError, match="is a directory"):
        check_output_path(tmp_path)
    assert calls == []
    check_output_path(tmp_path / "new" / "folder" / "out.nc")  # missing folders are made when writing
    assert not (tmp_path / "new").exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
def test_output_in_a_read_only_folder_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(io.OutputError, match="cannot write"):
            check_output_path(folder / "sub" / "out.nc")
    finally:
        folder.chmod(0o700)


_HOLDER = textwrap.dedent("""
    import pathlib, sys, time
    import numpy as np, xarray as xr
    from soiljax import io
    from soiljax._parts import run_in_parts
    from soiljax.io._netcdf import write_dataset

    out, flag = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])

    def compute(lo, hi):
        if lo:  # the first batch is kept; the second waits for the test
            (flag.parent / "started").write_text("")
            deadline = time.time() + 120
            while not flag.exists() and time.time() < deadline:
                time.sleep(0.05)
        return xr.Dataset({"x": (("site", "t"), np.full((hi - lo, 1), float(lo)))})

    run_in_parts(out, n=4, batch_size=2, fingerprint="abc", compute=compute, write=write_dataset, required="x")
""")


def test_a_second_run_on_a_live_output_is_refused(tmp_path):
    out, flag = tmp_path / "out.nc", tmp_path / "go"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out), str(flag)])
    try:
        deadline = time.time() + 120
        while not (tmp_path / "started").exists():
            assert holder.poll() is None and time.time() < deadline, "the first run did not start"
            time.sleep(0.05)
        calls = []
        for resume in (True, False):  # --restart must not delete the live run's parts either
            with pytest.raises(io.OutputLockedError, match=f"pid {holder.pid}") as err:
                _run(out, calls, resume=resume)
            message = str(err.value)
            assert "\n" not in message and socket.gethostname() in message and str(lock_path(out)) in message
        assert calls == []
        assert (parts_dir(out) / "part_000000.nc").exists()
        flag.write_text("")
        assert holder.wait(120) == 0
    finally:
        flag.write_text("")
        if holder.poll() is None:
            holder.kill()
    assert not lock_path(out).exists()  # released
    done = _run(out, calls)
    assert calls == [] and done["x"].values[:, 0].tolist() == [0.0, 0.0, 2.0, 2.0]


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)


def test_a_stale_lock_is_taken_over(tmp_path):
    out = tmp_path / "out.nc"
    pid = _dead_pid()
    lock_path(out).write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "started": "earlier"}))
    with pytest.warns(StaleLockWarning, match=f"pid {pid}"):
        _run(out)
    assert out.exists() and not lock_path(out).exists()
    # a lock file left empty (its writer died between creating and filling it) is stale once it is old
    lock_path(out).write_text("")
    old = time.time() - 600
    os.utime(lock_path(out), (old, old))
    with pytest.warns(StaleLockWarning):
        _run(out, fingerprint="other")
    assert not lock_path(out).exists()


def test_a_lock_of_another_host_is_refused(tmp_path):
    out = tmp_path / "out.nc"
    text = json.dumps({"host": "elsewhere.example", "pid": 4321, "started": "2026-01-01T00:00:00"})
    lock_path(out).write_text(text)
    calls = []
    with pytest.raises(io.OutputLockedError, match="elsewhere.example") as err:
        _run(out, calls)
    assert "pid 4321" in str(err.value) and "delete" in str(err.value)
    assert calls == [] and lock_path(out).read_text() == text and not parts_dir(out).exists()


# --------------------------------------------------------------------------
# part files: marked as partial, temporary files of killed runs removed
# --------------------------------------------------------------------------


def test_interrupted_run_says_where_its_parts_are_and_releases_the_lock(tmp_path):
    out = tmp_path / "out.nc"

    def stop(lo, hi):
        if lo:
            raise KeyboardInterrupt
        return _ds(lo, hi)

    with pytest.raises(RunInterrupted) as err:
        run_in_parts(out, n=4, batch_size=2, fingerprint="abc", compute=stop, write=write_dataset, required="x")
    assert isinstance(err.value, KeyboardInterrupt)
    message = str(err.value)
    assert str(parts_dir(out)) in message and "1 of 2" in message and "rerun" in message and "\n" not in message
    assert not lock_path(out).exists()


def test_a_stop_request_whose_interrupt_was_swallowed_ends_the_run_at_the_next_batch(tmp_path):
    """SIGTERM's KeyboardInterrupt can land in a weak-reference callback, where Python prints it and
    carries on; the handler's stop request still ends the run before its next batch."""
    from soiljax import _stop

    out = tmp_path / "out.nc"
    calls = []

    def swallowed(lo, hi):
        calls.append(lo)
        if lo == 2:
            _stop.request()  # what the signal handler does; its exception is lost here
        return _ds(lo, hi)

    try:
        with pytest.raises(RunInterrupted) as err:
            run_in_parts(out, n=8, batch_size=2, fingerprint="abc", compute=swallowed, write=write_dataset,
                         required="x")
    finally:
        _stop.clear()
    assert calls == [0, 2]
    assert "2 of 4" in str(err.value) and not lock_path(out).exists()
    resumed = run_in_parts(out, n=8, batch_size=2, fingerprint="abc", compute=swallowed, write=write_dataset,
                           required="x")
    assert calls == [0, 2, 4, 6] and resumed.sizes["site"] == 8


def test_part_files_are_marked_and_stale_temporary_files_removed(tmp_path):
    out = tmp_path / "out.nc"
    parts = parts_dir(out)

    def stop(lo, hi):
        if lo:
            raise KeyboardInterrupt
        return _ds(lo, hi)

    with pytest.raises(KeyboardInterrupt):
        run_in_parts(out, n=4, batch_size=2, fingerprint="abc", compute=stop, write=write_dataset, required="x")
    with xr.open_dataset(parts / "part_000000.nc") as part:
        assert "not a result file" in part.attrs[PARTIAL_ATTR] and "1 of 2" in part.attrs[PARTIAL_ATTR]
    dead, live = _dead_pid(), os.getppid()
    stale = [parts / f".part_000001.nc.tmp{dead}", tmp_path / f".out.nc.tmp{dead}",
             tmp_path / f".out.nc.tmp{os.getpid()}"]  # an earlier process with this pid
    kept = [tmp_path / f".out.nc.tmp{live}", tmp_path / f".other.nc.tmp{dead}"]  # a live writer; another output
    for f in stale + kept:
        f.write_bytes(b"half a file")
    seen = []

    def compute(lo, hi):
        seen.append([f.exists() for f in stale])
        return _ds(lo, hi)

    done = run_in_parts(out, n=4, batch_size=2, fingerprint="abc", compute=compute, write=write_dataset, required="x")
    assert seen == [[False, False, False]]  # removed before computing
    assert all(f.exists() for f in kept)
    assert PARTIAL_ATTR not in done.attrs
    with xr.open_dataset(out) as ds:
        assert PARTIAL_ATTR not in ds.attrs


# --------------------------------------------------------------------------
# write errors: a full disk (a file-size limit makes writes fail with EFBIG)
# --------------------------------------------------------------------------

_FULL_DISK = textwrap.dedent("""
    import pathlib, resource, signal, sys
    import numpy as np, xarray as xr
    from soiljax import io
    from soiljax._parts import run_in_parts
    from soiljax.io._netcdf import write_dataset

    out, limit, workers = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

    def compute(lo, hi):
        return xr.Dataset({"x": (("site", "t"), np.full((hi - lo, 2000), float(lo)))})

    # writes past the limit fail with EFBIG, as they fail with ENOSPC on a full disk (workers inherit both)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        if workers:  # the batches computed on a local Dask cluster; this process writes them as they arrive
            sys.path.insert(0, str(out.parent))
            from soiljax._dask import cluster
            from soiljax._engine import run_batches
            import jobs

            with cluster(workers=workers) as client:
                run_batches(jobs.job, 40, 10, out=out, fingerprint="abc", write=write_dataset, required="x",
                            client=client)
        else:
            run_in_parts(out, n=40, batch_size=10, fingerprint="abc", compute=compute, write=write_dataset,
                         required="x")
    except io.OutputWriteError as exc:
        print(exc)
        sys.exit(5)
""")

_JOBS = textwrap.dedent("""
    import numpy as np, xarray as xr

    def job(lo, hi, bar):
        bar(1)
        return xr.Dataset({"x": (("site", "t"), np.full((hi - lo, 2000), float(lo)))})
""")


def _assert_disk_full(tmp_path, out, proc, finished):
    assert proc.returncode == 5, proc.stderr[-3000:]  # not a segmentation fault (-11), not a traceback
    message = proc.stdout.strip()
    assert "\n" not in message and "disk" in message and "rerun" in message
    assert str(parts_dir(out)) in message and f"{finished} of 4" in message
    # the kept parts resume once there is space; no half-written file stays behind
    calls = []

    def compute(lo, hi):
        calls.append(lo)
        return xr.Dataset({"x": (("site", "t"), np.full((hi - lo, 2000), float(lo)))})

    done = run_in_parts(out, n=40, batch_size=10, fingerprint="abc", compute=compute, write=write_dataset, required="x")
    assert len(calls) == 4 - finished
    np.testing.assert_array_equal(done["x"].values[:, 0], np.repeat([0.0, 10, 20, 30], 10))
    assert not [p.name for p in tmp_path.rglob(".*tmp*")]


def test_a_full_disk_is_a_one_line_error_and_the_rerun_resumes(tmp_path):
    out = tmp_path / "out.nc"  # parts of 160 kB fit under the limit, the merged 640 kB do not
    proc = subprocess.run([sys.executable, "-c", _FULL_DISK, str(out), "400000", "0"], capture_output=True,
                          text=True, timeout=300)
    assert str(out) in proc.stdout
    _assert_disk_full(tmp_path, out, proc, finished=4)


@pytest.mark.slow  # starts a local Dask cluster of two workers
def test_a_full_disk_in_a_parallel_run_is_the_same_one_line_error(tmp_path):
    out = tmp_path / "out.nc"
    (tmp_path / "jobs.py").write_text(_JOBS)
    proc = subprocess.run([sys.executable, "-c", _FULL_DISK, str(out), "100000", "2"], capture_output=True,
                          text=True, timeout=300)
    assert "part_0000" in proc.stdout
    _assert_disk_full(tmp_path, out, proc, finished=0)


@pytest.mark.parametrize("in_memory", [True, False])  # False: an xarray that cannot make netCDF-4 in memory
def test_a_failed_write_is_a_one_line_error_and_leaves_nothing(tmp_path, monkeypatch, in_memory):
    monkeypatch.setattr(_netcdf, "_writes_to_memory", lambda engine: in_memory)
    (tmp_path / "taken.nc").mkdir()  # os.replace onto a folder fails as a full disk would: with an OSError
    with pytest.raises(io.OutputWriteError, match="could not write") as err:
        write_dataset(_ds(0, 3), tmp_path / "taken.nc")
    assert str(tmp_path / "taken.nc") in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.nc"]  # no temporary file left
    write_dataset(_ds(0, 3), tmp_path / "ok.nc")
    with xr.open_dataset(tmp_path / "ok.nc") as ds:
        assert ds["x"].values[:, 0].tolist() == [0.0, 0.0, 0.0]
