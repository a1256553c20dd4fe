"""The site-batch engine (soiljax/_engine.py) and its Dask backend (soiljax/_dask.py).

Batches, padding and fingerprints are checked directly; the Dask tests start
local clusters on 127.0.0.1 and check what a parallel run must guarantee: the
same result as in this process, each batch written once, a worker killed
mid-batch recomputed on another worker, errors raised as they are, workers
that quit when their parent is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import xarray as xr

import soiljax
from soiljax import _engine
from soiljax._dask import ClusterError, cluster, core_groups
from soiljax._parts import parts_dir

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the test jobs travel to the workers by value


# --------------------------------------------------------------------------
# batches and padding
# --------------------------------------------------------------------------


def test_plan_spreads_sites_evenly_over_the_batches():
    assert _engine.plan(481, 32) == 31  # 16 batches of 31, not 15 of 32 and one of 1
    assert _engine.plan(10, 4) == 4 and _engine.plan(10, 100) == 10 and _engine.plan(7, 1) == 1
    assert _engine.plan(10, 4, n_devices=3) == 6  # a multiple of the devices
    assert _engine.bounds(5, 2) == [(0, 0, 2), (1, 2, 4), (2, 4, 5)]


def test_take_pads_with_the_last_site_of_the_batch():
    a = np.arange(10.0)[:, None] * np.ones((1, 3))
    got = _engine.take({"a": a}, 8, 10, 4)["a"]
    np.testing.assert_array_equal(got[:, 0], [8, 9, 9, 9])
    np.testing.assert_array_equal(_engine.take(a, 2, 5)[:, 0], [2, 3, 4])  # no size: no padding


def test_map_sites_equals_one_call_and_drops_the_padding():
    x = np.linspace(0, 1, 23)
    y = np.arange(23.0)
    calls = []

    def fn(a, b):
        calls.append(a.shape[0])
        return {"sum": a + b, "pair": np.stack([a, b], axis=1)}

    got = _engine.map_sites(fn, x, y, batch_size=5)
    assert calls == [5] * 5  # every batch padded to one size: one compiled program
    np.testing.assert_array_equal(got["sum"], x + y)
    np.testing.assert_array_equal(got["pair"], np.stack([x, y], axis=1))
    with pytest.raises(ValueError, match="same leading site axis"):
        _engine.map_sites(fn, x, y[:3])


def test_batched_steady_state_does_not_depend_on_the_batch_size():
    forcing, _ = soiljax.synthetic_sites(7, seed=1)
    model = soiljax.CLM5()
    whole = soiljax.batched_steady_state(model, model.default_u(), forcing, batch_size=7)
    padded = soiljax.batched_steady_state(model, model.default_u(), forcing, batch_size=3)
    np.testing.assert_array_equal(whole.soc, padded.soc)
    np.testing.assert_array_equal(whole.valid, padded.valid)


def test_fingerprint_covers_inputs_labels_and_attributes():
    a = np.arange(4.0)
    base = _engine.fingerprint("model", 3, arrays=[a], sites=np.array(["s1", "s2"]), attrs={"k": 1})
    assert base == _engine.fingerprint("model", 3, arrays=[a.copy()], sites=np.array(["s1", "s2"]), attrs={"k": 1})
    others = [
        _engine.fingerprint("model", 4, arrays=[a], sites=np.array(["s1", "s2"]), attrs={"k": 1}),
        _engine.fingerprint("model", 3, arrays=[a + 1], sites=np.array(["s1", "s2"]), attrs={"k": 1}),
        _engine.fingerprint("model", 3, arrays=[a], sites=np.array(["s2", "s1"]), attrs={"k": 1}),
        _engine.fingerprint("model", 3, arrays=[a], sites=np.array(["s1", "s2"]), attrs={"k": 2}),
        _engine.fingerprint("model", 3, arrays=[a], sites=None, attrs={"k": 1}),
    ]
    assert base not in others and len(set(others)) == len(others)
    sites = xr.Dataset({"lat": ("site", [1.0, 2.0])}, coords={"site": ["a", "b"]})
    moved = sites.assign(lat=("site", [1.0, 2.5]))
    assert _engine.fingerprint(sites=sites) != _engine.fingerprint(sites=moved)


# --------------------------------------------------------------------------
# Dask
# --------------------------------------------------------------------------


class _Job:
    """A batch job that records each attempt (``attempt_<lo>_<pid>``) and takes ``seconds``."""

    def __init__(self, folder, seconds=0.0, fail_at=None):
        self.folder, self.seconds, self.fail_at = str(folder), seconds, fail_at

    def __call__(self, lo, hi, report):
        Path(self.folder, f"attempt_{lo}_{os.getpid()}").touch()
        if lo == self.fail_at:
            raise ZeroDivisionError(f"batch at {lo} failed")
        steps = 10
        for _ in range(steps):
            time.sleep(self.seconds / steps)
            report(1)
        return xr.Dataset({"x": ("site", np.arange(lo, hi, dtype=float) ** 2), "pid": ("site", np.full(hi - lo, os.getpid()))},
                          coords={"site": np.arange(lo, hi)})


@pytest.fixture(scope="module")
def client():
    with cluster(workers=2) as c:
        yield c


def _attempts(folder) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for f in Path(folder).glob("attempt_*"):
        _, lo, pid = f.name.split("_")
        out.setdefault(int(lo), []).append(int(pid))
    return out


def test_local_cluster_workers_are_pinned_single_threaded_and_local(client):
    info = client.scheduler_info()
    assert info["address"].startswith("tcp://127.0.0.1:")
    workers = info["workers"]
    assert len(workers) == 2 and all(w["nthreads"] == 1 for w in workers.values())
    assert all(addr.startswith("tcp://127.0.0.1:") for addr in workers)
    groups = [g for g in core_groups(2) if g is not None]
    if groups:  # each worker runs on its own share of the cores
        cores = sorted(sorted(c) for c in client.run(lambda: sorted(os.sched_getaffinity(0))).values())
        assert cores == sorted(groups)


def test_dask_run_equals_the_run_in_this_process_and_counts_progress(client, tmp_path):
    job = _Job(tmp_path)
    here = _engine.run_batches(job, 7, 2)
    reported, done = [], []
    there = _engine.run_batches(job, 7, 2, client=client, progress=lambda k, more=0: reported.append(k),
                                batch_done=done.append)
    xr.testing.assert_equal(here.drop_vars("pid"), there.drop_vars("pid"))
    assert sorted(done) == [0, 1, 2, 3] and sum(reported) == 4 * 10
    assert len({int(p) for p in there.pid.values}) >= 1


def test_a_failing_batch_raises_its_error_and_keeps_the_finished_parts(client, tmp_path):
    out = tmp_path / "out.nc"
    with pytest.raises(ZeroDivisionError, match="batch at 4 failed") as info:
        _engine.run_batches(_Job(tmp_path, seconds=0.5, fail_at=4), 6, 2, out=out, fingerprint="f",
                            write=lambda ds, p: ds.to_netcdf(p), required="x", client=client)
    assert "rerun the same command to resume" in " ".join(getattr(info.value, "__notes__", []))
    assert not out.exists() and parts_dir(out).is_dir()


@pytest.mark.slow  # starts a cluster of its own and kills one of its workers: ~20 s
def test_a_killed_worker_has_its_batch_recomputed_and_nothing_is_lost_or_doubled(tmp_path):
    out = tmp_path / "out.nc"
    written: list[int] = []

    def write(ds, path):
        if Path(path).name.startswith("part_"):
            written.append(int(Path(path).stem.rsplit("_", 1)[1]))
        ds.to_netcdf(path)

    job = _Job(tmp_path / "attempts", seconds=2.0)
    (tmp_path / "attempts").mkdir()
    killed = []

    def kill_a_worker_mid_batch():  # the first attempt of the third batch: kill its worker process
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pids = _attempts(tmp_path / "attempts").get(4)
            if pids:
                time.sleep(0.5)  # mid-batch
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
            time.sleep(0.05)

    with cluster(workers=2) as c:
        killer = threading.Thread(target=kill_a_worker_mid_batch)
        killer.start()
        ds = _engine.run_batches(job, 12, 2, out=out, fingerprint="f", write=write, required="x", client=c)
        killer.join()
    assert killed, "no worker was killed"
    attempts = _attempts(tmp_path / "attempts")
    assert len(attempts[4]) == 2 and killed[0] in attempts[4]  # recomputed, on the restarted or the other worker
    assert sorted(written) == list(range(6))  # each batch written once
    np.testing.assert_array_equal(ds.x.values, np.arange(12.0) ** 2)
    np.testing.assert_array_equal(ds.site.values, np.arange(12))
    assert killed[0] not in ds.pid.values[4:6]  # the killed attempt left nothing in the result


_ORPHAN_PARENT = textwrap.dedent("""
    import os, sys, time
    from soiljax._dask import cluster

    with cluster(workers=2) as c:
        print(" ".join(str(p) for p in c.run(os.getpid).values()), flush=True)
        time.sleep(300)
""")


def _running(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie waiting to be reaped does not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process states from /proc")
def test_workers_quit_when_their_parent_is_killed():
    """A parent killed by a signal cannot stop its workers: they must notice and quit."""
    parent = subprocess.Popen([sys.executable, "-c", _ORPHAN_PARENT], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(_running(p) for p in pids)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 60
    while any(_running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    orphans = [p for p in pids if _running(p)]
    for p in orphans:  # leave nothing behind
        os.kill(p, signal.SIGKILL)
    assert not orphans, "workers kept running after their parent was killed"


def test_cluster_errors_say_what_to_do(tmp_path):
    with pytest.raises(ClusterError, match="no scheduler file"):
        with cluster(scheduler_file=tmp_path / "missing.json"):
            pass
    with pytest.raises(ClusterError, match="not both"):
        with cluster(scheduler="tcp://127.0.0.1:1", scheduler_file=tmp_path / "s.json"):
            pass
    with pytest.raises(ClusterError, match="could not reach the Dask scheduler"):
        with cluster(scheduler="tcp://127.0.0.1:1", timeout="1s"):
            pass
    with cluster(workers=1) as none:  # one worker: this process, no cluster
        assert none is None


def test_a_scheduler_file_connects_to_a_running_cluster(tmp_path, client):
    import json

    address = client.scheduler_info()["address"]
    (tmp_path / "scheduler.json").write_text(json.dumps({"address": address}))
    with cluster(scheduler_file=tmp_path / "scheduler.json") as c:
        assert c.scheduler_info()["address"] == address
        ds = _engine.run_batches(_Job(tmp_path), 3, 2, client=c)
    np.testing.assert_array_equal(ds.x.values, [0.0, 1.0, 4.0])
    with cluster(scheduler=address) as c:
        assert len(c.scheduler_info()["workers"]) == 2


@pytest.mark.slow  # both workers compile the steady state and the components: ~1 minute
def test_simulate_and_predict_on_dask_equal_this_process(client, tmp_path):
    from soiljax import learning as lrn
    from soiljax import world as W

    forcing, sites = soiljax.synthetic_sites(9, seed=2)
    model = soiljax.CLM5()
    here = soiljax.simulate_to_file(model, model.default_u(), forcing, tmp_path / "here.nc", sites=sites, batch_size=4)
    there = soiljax.simulate_to_file(model, model.default_u(), forcing, tmp_path / "there.nc", sites=sites,
                                     batch_size=4, client=client)
    here.attrs.pop("created"), there.attrs.pop("created")
    xr.testing.assert_identical(here, there)

    world = W.synthetic_world(20, resolution=30.0, seed=3, models=())
    learner = lrn.init_learner(world.covariate_matrix("cells"), model_name="clm5", covariate_names=W.COVARIATES,
                               seed=0)
    cells_here = lrn.predict_cells(learner, world.cells, world.cell_forcing, cells=world.cells, batch_size=8)
    cells_there = lrn.predict_cells(learner, world.cells, world.cell_forcing, cells=world.cells, batch_size=8,
                                    client=client)
    for ds in (cells_here, cells_there):
        ds.attrs.pop("created", None)
    xr.testing.assert_identical(cells_here, cells_there)


def test_cli_cluster_options_are_checked_first(tmp_path, capsys):
    from soiljax.cli import main

    base = ["simulate", "--model", "clm5", "--forcing", str(tmp_path / "missing.nc"), "--out", str(tmp_path / "o.nc")]
    assert main(base + ["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "drop --workers" in capsys.readouterr().err
    assert main(base + ["--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err


@pytest.mark.slow  # the cluster's workers compile the steady state: ~30 s
def test_cli_simulate_on_a_running_scheduler(client, tmp_path, capsys):
    import json

    from soiljax.cli import main

    forcing, sites = soiljax.synthetic_sites(5, seed=4)
    soiljax.io.write_forcing(forcing, tmp_path / "f.nc", sites=sites)
    base = ["simulate", "--model", "clm5", "--forcing", str(tmp_path / "f.nc"), "--batch-size", "2", "--no-progress"]
    assert main(base + ["--out", str(tmp_path / "here.nc")]) == 0
    address = client.scheduler_info()["address"]
    assert main(base + ["--out", str(tmp_path / "there.nc"), "--scheduler", address]) == 0
    (tmp_path / "scheduler.json").write_text(json.dumps({"address": address}))
    assert main(base + ["--out", str(tmp_path / "file.nc"), "--scheduler-file", str(tmp_path / "scheduler.json")]) == 0
    here = soiljax.io.read_results(tmp_path / "here.nc")
    for name in ("there.nc", "file.nc"):
        np.testing.assert_array_equal(soiljax.io.read_results(tmp_path / name).soc.values, here.soc.values)
    assert main(base + ["--out", str(tmp_path / "x.nc"), "--scheduler-file", str(tmp_path / "none.json")]) == 2
    assert "no scheduler file" in capsys.readouterr().err
