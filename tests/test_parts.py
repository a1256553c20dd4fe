"""Batch-by-batch runs: part files, resume, and finished runs that are not recomputed."""

import numpy as np
import pytest
import xarray as xr

from soiljax._parts import FINGERPRINT_ATTR, PartsMismatchError, parts_dir, run_in_parts


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
