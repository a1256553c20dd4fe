"""The library pieces behind ``soiljax learn`` and the benchmarks: covariate files, the pairing
of training data by site label, the shared defaults, held-out summaries and the recovery
profiles."""

import inspect

import numpy as np
import pytest
import xarray as xr

import soiljax
from soiljax import _options as O
from soiljax import calibration as cal
from soiljax import io
from soiljax import learning as L

NAMES = ("a", "b", "c")


def _covariates(n=6):
    x = np.arange(n * len(NAMES), dtype=float).reshape(n, len(NAMES))
    sites = np.array([f"s{i}" for i in range(n)])
    return x, sites


def _posterior(labels, u, *, accepted=None, param=True):
    ds = xr.Dataset({"u_mean": (("site", "param"), u)}, coords={"site": labels})
    if param:
        ds = ds.assign_coords(param=list(soiljax.CLM5().param_names))
    if accepted is not None:
        ds["accepted"] = ("site", np.asarray(accepted, bool))
    return ds


# ---------------------------------------------------------------------------
# covariate files
# ---------------------------------------------------------------------------


def test_covariate_file_round_trip(tmp_path):
    x, sites = _covariates()
    path = io.write_covariates(x, NAMES, tmp_path / "cov.nc", site_id=sites, attrs={"seed": 3})
    x2, names, sites2 = io.read_covariates(path)
    np.testing.assert_array_equal(x2, x)
    assert names == NAMES and list(sites2) == list(sites)
    with xr.open_dataset(path) as ds:
        assert ds["covariates"].dims == ("site", "covariate") and ds.attrs["seed"] == 3


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda x, s: xr.Dataset({"other": (("site", "covariate"), x)}, coords={"site": s, "covariate": list(NAMES)}),
         "no variable 'covariates'"),
        (lambda x, s: xr.Dataset({"covariates": (("covariate", "site"), x.T)},
                                 coords={"site": s, "covariate": list(NAMES)}), "expected \\('site', 'covariate'\\)"),
        (lambda x, s: xr.Dataset({"covariates": (("site", "covariate"), x)}, coords={"site": s}),
         "'covariate' coordinate"),
        (lambda x, s: xr.Dataset({"covariates": (("site", "covariate"), x)}, coords={"covariate": list(NAMES)}),
         "no 'site' coordinate"),
        (lambda x, s: xr.Dataset({"covariates": (("site", "covariate"), x)},
                                 coords={"site": ["s0"] * len(s), "covariate": list(NAMES)}), "appears"),
    ],
)
def test_covariate_file_errors_name_the_file(tmp_path, make, match):
    x, sites = _covariates()
    make(x, sites).to_netcdf(tmp_path / "bad.nc")
    with pytest.raises(io.CovariateFileError, match=match) as info:
        io.read_covariates(tmp_path / "bad.nc")
    assert "bad.nc" in str(info.value) and isinstance(info.value, io.FileFormatError)


# ---------------------------------------------------------------------------
# training data paired by site label
# ---------------------------------------------------------------------------


def test_two_stage_data_pairs_by_label_and_filters():
    x, sites = _covariates()
    n_p = soiljax.CLM5().n_params
    labels = np.array(["s4", "s1", "s3", "s0"])  # another order, a subset
    u = np.linspace(0.1, 0.9, 4)[:, None] * np.ones((4, n_p))
    u[2, 0] = np.nan  # s3: no finite posterior mean
    post = _posterior(labels, u, accepted=[True, False, True, True])
    x_fit, u_fit = L.two_stage_data(x, sites, post, "clm5")
    np.testing.assert_array_equal(x_fit, x[[4, 1, 0]])
    np.testing.assert_array_equal(u_fit, u[[0, 1, 3]])
    x_fit, u_fit = L.two_stage_data(x, sites, post, soiljax.CLM5(), proda_filter=True)
    np.testing.assert_array_equal(x_fit, x[[4, 0]])
    with pytest.raises(ValueError, match="only 1 profiles pass PRODA's filter"):
        L.two_stage_data(x, sites, _posterior(labels, u, accepted=[True, False, False, False]), "clm5",
                         proda_filter=True)
    with pytest.raises(ValueError, match="'accepted'"):
        L.two_stage_data(x, sites, _posterior(labels, u), "clm5", proda_filter=True)
    with pytest.raises(ValueError, match="not in the covariate file"):
        L.two_stage_data(x, sites, _posterior(np.array(["s1", "zz", "s2", "s0"]), u), "clm5")


def test_posterior_means_checks_the_parameters_by_name():
    u = np.full((2, soiljax.CLM5().n_params), 0.5)
    post = _posterior(np.array(["s0", "s1"]), u)
    labels, means = L.posterior_means(post, "clm5")
    assert list(labels) == ["s0", "s1"] and means.shape == u.shape
    with pytest.raises(ValueError, match="not those of compas"):
        L.posterior_means(post, soiljax.COMPAS(), source="posterior file 'p.nc'")
    with pytest.raises(ValueError, match="no 'param' coordinate"):
        L.posterior_means(_posterior(np.array(["s0", "s1"]), u, param=False), "clm5")
    with pytest.raises(ValueError, match="no 'u_mean'"):
        L.posterior_means(post.drop_vars("u_mean"), "clm5")


def test_end_to_end_data_keeps_usable_profiles_and_the_prior():
    model = soiljax.CLM5()
    forcing, f_sites = soiljax.synthetic_sites(4, seed=2)
    f_sites = f_sites.assign_coords(site=["s3", "s0", "s5", "s2"])
    obs, _ = soiljax.synthetic_observations(model, model.default_u(), forcing, seed=1)
    x, sites = _covariates()
    x_fit, f_fit, o_fit, u_prior = L.end_to_end_data(x, sites, forcing, f_sites, obs)
    np.testing.assert_array_equal(x_fit, x[[3, 0, 5, 2]])
    assert f_fit.batch_shape == (4,) and o_fit.batch_shape == (4,) and u_prior is None
    u = np.full((2, model.n_params), 0.4)
    post = _posterior(np.array(["s5", "s9"]), u)
    *_, u_prior = L.end_to_end_data(x, sites, forcing, f_sites, obs, post=post, model=model)
    assert np.isnan(u_prior[[0, 1, 3]]).all() and np.allclose(u_prior[2], 0.4)
    with pytest.raises(ValueError, match="no site of the forcing file has a posterior mean"):
        L.end_to_end_data(x, sites, forcing, f_sites, obs, post=_posterior(np.array(["zz"]), u[:1]), model=model)
    with pytest.raises(ValueError, match="one forcing site per observed profile"):
        L.end_to_end_data(x, sites, forcing[:3], f_sites, obs)


# ---------------------------------------------------------------------------
# one set of defaults
# ---------------------------------------------------------------------------


def _default(fn, name):
    return inspect.signature(fn).parameters[name].default


def test_the_library_and_the_command_line_share_the_learning_defaults():
    from soiljax.cli import _learn_defaults

    two, e2e = _learn_defaults("two-stage"), _learn_defaults("end-to-end")
    for fn, cli in ((L.train_two_stage, two), (L.train_end_to_end, e2e)):
        for name in ("epochs", "patience", "batch_size"):
            assert _default(fn, name) == cli[name], (fn.__name__, name)
        assert _default(fn, "hidden") == O.PRODA_HIDDEN and _default(fn, "dropout") == O.PRODA_DROPOUT
        assert _default(fn, "learning_rate") == O.LEARNING_RATE
    assert _default(L.train_two_stage, "loss") == two["loss"] and _default(L.train_two_stage, "ensemble") == 1
    assert L.PRODA_HIDDEN == O.PRODA_HIDDEN and set(L.LOSSES) == set(O.TWO_STAGE_LOSSES)
    # the settings of the kept benchmark runs (benchmarks/README.md)
    assert (two["epochs"], two["patience"], two["batch_size"]) == (1000, 100, 32)
    assert (e2e["epochs"], e2e["patience"], e2e["batch_size"]) == (500, 30, 32)


# ---------------------------------------------------------------------------
# held-out summaries
# ---------------------------------------------------------------------------


def test_paired_comparison_counts_sites_and_names_them():
    a = {"valid": np.array([True, True, True, False]), "nse": np.array([0.9, 0.1, 0.5, np.nan])}
    b = {"valid": np.array([True, True, False, True]), "nse": np.array([0.5, 0.2, np.nan, 0.3])}
    res = L.paired_comparison(a, b, names=("x", "y"))
    assert res == {"sites": 4, "x_better": 2, "y_better": 2, "x_better_fraction": 0.5, "sign_test_p": 1.0}
    s = L.evaluation_summary({**a, "stock_1m": np.array([1.0, 1.05, 2.0, np.nan])}, np.ones(4))
    assert s["q10_nse"] == -np.inf and s["stock_within_10pct"] == 0.5 and "u_corr" not in s


def test_evaluate_u_is_evaluate_for_given_parameters():
    model = soiljax.CLM5()
    forcing, _ = soiljax.synthetic_sites(5, seed=3)
    u = np.random.default_rng(0).uniform(0.3, 0.7, (5, model.n_params))
    obs, _ = soiljax.synthetic_observations(model, u, forcing, seed=2)
    ev = L.evaluate_u(model, u, forcing, obs, u_true=u)
    assert ev["valid"].sum() >= 3 and ev["median_u_corr"] == pytest.approx(1.0)  # r over the valid sites
    assert set(ev) >= {"u", "valid", "nse", "stock_1m", "pred", "u_corr", "u_rmse"}
    with pytest.raises(ValueError, match="one profile per row of u"):
        L.evaluate_u(model, u[:4], forcing, obs)


# ---------------------------------------------------------------------------
# recovery profiles
# ---------------------------------------------------------------------------


def test_recovery_profiles_round_trip(tmp_path):
    model = soiljax.CLM5()
    forcing, obs, u_true = cal.recovery_profiles(model, 4, seed=1, noise=0.1)
    assert u_true.shape == (forcing.batch_shape[0], model.n_params) == (obs.batch_shape[0], model.n_params)
    assert np.all((u_true >= 0.1) & (u_true <= 0.9))
    again = cal.recovery_profiles(model, 4, seed=1, noise=0.1)
    np.testing.assert_array_equal(again[2], u_true)
    folder = cal.write_recovery_inputs(tmp_path / "inputs", model, forcing, obs, u_true, attrs={"seed": 1})
    f2, o2, u2 = cal.read_recovery_inputs(folder, model)
    np.testing.assert_allclose(u2, u_true)
    np.testing.assert_allclose(np.asarray(o2.soc), np.asarray(obs.soc))
    assert f2.batch_shape == forcing.batch_shape
