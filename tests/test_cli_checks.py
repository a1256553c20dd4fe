"""Issue 18: options are checked before any work, sites pair by label, resumes cannot mix runs.

Each test here reproduces a failure of the command line found by a hostile probe:
an option that was silently ignored, a site paired with another site's
parameters, a resumed run that mixed two sets of site labels.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

import soiljax as sj
from soiljax import io
from soiljax._sites import SitePairingError, pair_sites, plain
from soiljax.cli import main
from soiljax.synthetic import synthetic_sites

from cli_errors import cli_error as _error

N = 6


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checks")
    forcing, info = synthetic_sites(N, seed=11)
    io.write_forcing(forcing, folder / "forcing.nc", sites=info)
    model = sj.CLM5()
    u_true = np.random.default_rng(3).uniform(0.3, 0.7, size=(N, model.n_params))
    obs, _ = sj.synthetic_observations(model, u_true, forcing, noise=0.05, seed=2)
    io.write_observations(obs, folder / "obs.nc", sites=info)
    return {"folder": folder, "forcing": folder / "forcing.nc", "obs": folder / "obs.nc",
            "labels": np.asarray(info["site"].values), "u": u_true}


# ---------------------------------------------------------------------------
# options are checked before JAX is imported (item 4, 12 and "parse first")
# ---------------------------------------------------------------------------

def _python(script: str) -> str:
    """Standard output of ``script`` run by a fresh interpreter (which must succeed)."""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


_REFUSED = [
    # (argv after "calibrate --model clm5 --forcing F --obs O --out P", words the message must hold)
    (["--method", "hmc", "--steps", "0"], "--steps"),
    (["--steps", "5"], "--method hmc"),
    (["--keep-draws", "-1"], "--keep-draws"),
    (["--keep-draws", "600"], "--keep-draws"),
    (["--samples", "3"], "--samples"),
    (["--max-doublings", "0"], "--max-doublings"),
    (["--max-doublings", "-2"], "--max-doublings"),
    (["--method", "hmc", "--max-doublings", "5"], "--method nuts"),
    (["--method", "proda", "--sigma", "0.2"], "--sigma"),
    (["--likelihood", "proda", "--sigma", "0.2"], "--sigma"),
    (["--sigma", "0"], "--sigma"),
    (["--method", "proda", "--warmup", "100"], "--warmup"),
    (["--chains", "1"], "--chains"),
    (["--method", "nuts", "--amortizer", "flow.amortizer"], "--method auto only"),
    (["--method", "hmc", "--approximation", "laplace"], "--method auto only"),
    (["--method", "auto", "--approximation", "laplace", "--amortizer", "flow.amortizer"], "--approximation npe"),
]


def test_bad_calibrate_options_are_refused_before_jax_is_imported(tmp_path):
    """Every case runs in one fresh interpreter that must never import JAX:
    the refusal comes before any file is read and anything is compiled."""
    cases = [["calibrate", "--model", "clm5", "--forcing", "f.nc", "--obs", "o.nc", "--out",
              str(tmp_path / "post.nc"), *extra] for extra, _ in _REFUSED]
    script = (
        "import contextlib, io, json, sys\n"
        "from soiljax.cli import main\n"
        "out = []\n"
        f"for argv in {cases!r}:\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n"
        "        rc = main(argv)\n"
        "    out.append([rc, err.getvalue()])\n"
        "print(json.dumps({'results': out, 'jax': 'jax' in sys.modules}))\n"
    )
    report = json.loads(_python(script))
    assert not report["jax"], "an option check imported JAX"
    for (extra, words), (rc, err) in zip(_REFUSED, report["results"]):
        assert rc == 2, (extra, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (extra, err)
        assert words in err, (extra, err)


def test_help_and_version_do_not_import_jax():
    script = (
        "import sys, contextlib, io\n"
        "from soiljax.cli import build_parser\n"
        "p = build_parser()\n"
        "for argv in (['--version'], ['ude', '--help'], ['calibrate', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            p.parse_args(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "print('jax' in sys.modules)\n"
    )
    assert _python(script).strip() == "False"


def test_lazy_package_still_enables_float64_and_exports_its_names():
    script = (
        "import soiljax, jax.numpy as jnp\n"
        "assert 'CLM5' in dir(soiljax) and soiljax.CLM5 is soiljax._models.CLM5\n"
        "assert soiljax.io.read_forcing is soiljax.read_forcing\n"
        "print(jnp.ones(1).dtype)\n"
    )
    assert _python(script).strip() == "float64"
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        sj.nonsense  # noqa: B018


def test_ude_option_names_match_the_implementation():
    from soiljax.ude import ADJOINTS
    from soiljax.ude._options import ADJOINT_NAMES

    assert tuple(ADJOINTS) == ADJOINT_NAMES


def test_sigma_alone_sets_the_default_lognormal_error(files, tmp_path, monkeypatch):
    """--sigma without --likelihood used to be ignored (the default likelihood kept 0.1)."""
    import soiljax.calibration as cal

    seen = {}

    def fake_calibrate(model, forcing, obs, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt  # stop before any sampling

    monkeypatch.setattr(cal, "calibrate", fake_calibrate)
    argv = ["calibrate", "--model", "clm5", "--forcing", str(files["forcing"]), "--obs", str(files["obs"]),
            "--out", str(tmp_path / "p.nc"), "--sigma", "0.3"]
    assert main(argv) == 130
    assert isinstance(seen["likelihood"], cal.LogNormal) and seen["likelihood"].sigma == 0.3
    assert isinstance(seen["method"], cal.Auto)  # the default method
    assert main(argv[:-2] + ["--method", "hmc", "--steps", "7", "--likelihood", "gaussian"]) == 130
    assert isinstance(seen["likelihood"], cal.Gaussian) and seen["likelihood"].rel_sigma == 0.1
    assert seen["method"].num_integration_steps == 7


def test_calibrate_help_names_each_models_auto_threshold(capsys):
    from soiljax.cli import build_parser
    from soiljax._registry import model_classes

    with pytest.raises(SystemExit):
        build_parser().parse_args(["calibrate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for cls in model_classes():
        assert f"{cls.default_auto_min_profiles} for {cls.__name__}" in text


def test_library_samplers_refuse_empty_trajectories():
    from soiljax import calibration as cal

    with pytest.raises(ValueError, match="num_integration_steps"):
        cal.HMC(num_integration_steps=0)
    with pytest.raises(ValueError, match="max_num_doublings"):
        cal.NUTS(max_num_doublings=0)


# ---------------------------------------------------------------------------
# sites pair by label (item 2)
# ---------------------------------------------------------------------------


def test_pair_sites_rules():
    a = np.array(["s1", "s2", "s3"])
    np.testing.assert_array_equal(pair_sites(a, a[::-1], what="A", other_what="B"), [2, 1, 0])
    assert pair_sites(a, a, what="A", other_what="B") is None
    assert pair_sites(a, None, what="A", other_what="B") is None  # unlabelled: in order
    assert pair_sites(a, np.arange(3), what="A", other_what="B") is None  # positions 0..n-1: unlabelled
    np.testing.assert_array_equal(pair_sites(np.arange(3), np.array([2, 1, 0]), what="A", other_what="B"), [2, 1, 0])
    with pytest.raises(SitePairingError, match="first: s3.*first: x9"):
        pair_sites(a, np.array(["s1", "s2", "x9"]), what="A", other_what="B")
    assert plain(np.str_("syn0_000001")) == "syn0_000001" and plain(np.float64(0.5)) == "0.5"


def test_simulate_pairs_parameter_rows_by_site_label(files, tmp_path, capsys):
    """A parameter file listing the sites in reverse order ran site A with site B's parameters."""
    labels, u = files["labels"], files["u"]
    forward = io.write_params(u, "clm5", tmp_path / "fwd.nc", site_id=labels)
    reverse = io.write_params(u[::-1], "clm5", tmp_path / "rev.nc", site_id=labels[::-1])
    base = ["simulate", "--model", "clm5", "--forcing", str(files["forcing"]), "--no-progress"]
    assert main(base + ["--params", str(forward), "--out", str(tmp_path / "a.nc")]) == 0
    assert main(base + ["--params", str(reverse), "--out", str(tmp_path / "b.nc")]) == 0
    a, b = io.read_results(tmp_path / "a.nc"), io.read_results(tmp_path / "b.nc")
    np.testing.assert_array_equal(a["u"].values, u)
    np.testing.assert_array_equal(b["u"].values, u)
    np.testing.assert_array_equal(a["soc"].values, b["soc"].values)

    other = io.write_params(u, "clm5", tmp_path / "other.nc", site_id=[f"x{i}" for i in range(N)])
    err = _error(base + ["--params", str(other), "--out", str(tmp_path / "c.nc")], capsys)
    assert "site labels" in err and str(labels[0]) in err and "x0" in err


def test_calibrate_pairs_observations_by_label_and_refuses_other_sites(files, tmp_path, capsys, monkeypatch):
    import soiljax.calibration as cal

    obs, sites = io.read_observations(files["obs"])
    rev = tmp_path / "obs_rev.nc"
    io.write_observations(obs[np.arange(N)[::-1]], rev, site_id=files["labels"][::-1])
    seen = {}

    def fake_calibrate(model, forcing, obs, **kwargs):
        seen["obs"] = obs
        raise KeyboardInterrupt

    monkeypatch.setattr(cal, "calibrate", fake_calibrate)
    base = ["calibrate", "--model", "clm5", "--forcing", str(files["forcing"]), "--out", str(tmp_path / "p.nc")]
    assert main(base + ["--obs", str(rev)]) == 130
    capsys.readouterr()
    np.testing.assert_array_equal(np.asarray(seen["obs"].soc), np.asarray(obs.soc))  # back in forcing order

    wrong = tmp_path / "obs_wrong.nc"
    io.write_observations(obs, wrong, site_id=[f"p{i}" for i in range(N)])
    err = _error(base + ["--obs", str(wrong)], capsys)
    assert "site labels" in err and "p0" in err


# ---------------------------------------------------------------------------
# resume cannot mix runs (item 3)
# ---------------------------------------------------------------------------


def _interrupt_after_first_batch(iterable, total):
    for k, item in enumerate(iterable):
        if k == 1:
            raise KeyboardInterrupt
        yield item


def test_resume_refuses_parts_of_a_run_with_other_site_labels(files, tmp_path):
    forcing, sites = io.read_forcing(files["forcing"])
    model = sj.CLM5()
    out = tmp_path / "r.nc"
    with pytest.raises(KeyboardInterrupt):
        io.simulate_to_file(model, model.default_u(), forcing, out, sites=sites, batch_size=2,
                            progress=_interrupt_after_first_batch)
    assert io.parts_dir(out).exists()
    relabelled = sites.assign_coords(site=[f"new{i}" for i in range(N)])
    with pytest.raises(io.FileFormatError, match="other inputs"):
        io.simulate_to_file(model, model.default_u(), forcing, out, sites=relabelled, batch_size=2)
    moved = sites.assign_coords(lat=("site", sites["lat"].values + 1.0))
    with pytest.raises(io.FileFormatError, match="other inputs"):
        io.simulate_to_file(model, model.default_u(), forcing, out, sites=moved, batch_size=2)
    with pytest.raises(io.FileFormatError, match="other inputs"):
        io.simulate_to_file(model, model.default_u(), forcing, out, sites=sites, batch_size=2,
                            attrs={"forcing_file": "another.nc"})
    done = io.simulate_to_file(model, model.default_u(), forcing, out, sites=sites, batch_size=2)
    assert [str(s) for s in done["site"].values] == [str(s) for s in sites["site"].values]
    # a finished file is not handed back for other labels: the run is computed anew
    again = io.simulate_to_file(model, model.default_u(), forcing, out, sites=relabelled, batch_size=2)
    assert list(map(str, again["site"].values)) == [f"new{i}" for i in range(N)]
    assert list(map(str, xr.open_dataset(out)["site"].values)) == [f"new{i}" for i in range(N)]


def test_calibration_fingerprint_covers_labels_and_attributes(files):
    from soiljax.calibration._run import _fingerprint

    forcing, _ = io.read_forcing(files["forcing"])
    obs, _ = io.read_observations(files["obs"])
    model = sj.CLM5()
    args = (model, "lik", "sampler", forcing, obs, {"chains": 3})
    base = _fingerprint(*args, files["labels"], {"obs_file": "obs.nc"})
    assert base == _fingerprint(*args, files["labels"], {"obs_file": "obs.nc"})
    assert base != _fingerprint(*args, files["labels"][::-1], {"obs_file": "obs.nc"})
    assert base != _fingerprint(*args, files["labels"], {"obs_file": "other.nc"})


# ---------------------------------------------------------------------------
# a killed run releases its lock and says where its batches are (items 7, 10)
# ---------------------------------------------------------------------------


def test_sigterm_ends_a_run_like_ctrl_c(tmp_path):
    import os
    import signal
    import time

    forcing, info = synthetic_sites(200, seed=5)
    io.write_forcing(forcing, tmp_path / "f.nc", sites=info)
    out = tmp_path / "r.nc"
    env = {**os.environ, "SOILJAX_CACHE_DIR": ""}
    proc = subprocess.Popen([sys.executable, "-m", "soiljax.cli", "simulate", "--model", "clm5", "--forcing",
                             str(tmp_path / "f.nc"), "--out", str(out), "--batch-size", "1", "--no-progress"],
                            stderr=subprocess.PIPE, text=True, env=env)
    parts = io.parts_dir(out)
    deadline = time.monotonic() + 120
    while not (parts.exists() and len(list(parts.glob("part_*.nc"))) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be stopped"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 143, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "terminated" in err and str(parts) in err and "rerun" in err, err
    assert not (tmp_path / "r.nc.lock").exists()
