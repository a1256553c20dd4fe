"""Every bad-input case of a Forcing raises an error that names the site and the variable."""

import numpy as np
import pytest

import soiljax
from soiljax import Forcing, ForcingError


def _good(n=3):
    rng = np.random.default_rng(0)
    return dict(
        tsoi=np.full((n, 12, 20), 285.0) + rng.normal(size=(n, 12, 20)),
        w_scalar=np.full((n, 12, 20), 0.6),
        o_scalar=np.full((n, 12, 20), 0.9),
        fpi_vr=np.full((n, 12, 20), 0.7),
        altmax=np.full((n, 12), 49.556),
        altmax_lastyear=np.full((n, 12), 49.556),
        nbedrock=np.full((n, 12), 20.0),
        cwd_input=np.full((n, 12), 5.0),
        litr1_input=np.full((n, 12), 10.0),
        litr2_input=np.full((n, 12), 8.0),
        litr3_input=np.full((n, 12), 4.0),
        cellsand=np.full((n, 20), 40.0),
    )


def test_good_forcing_builds_and_runs():
    f = Forcing(**_good())
    assert f.batch_shape == (3,) and f.nbedrock.dtype.kind == "i"
    ss = soiljax.CLM5().steady_state(soiljax.CLM5().default_u(), f.site(0))
    assert bool(ss.valid)


@pytest.mark.parametrize(
    "var, attr, value, message",
    [
        ("TSOI", "tsoi", np.nan, "NaN or inf"),
        ("TSOI", "tsoi", np.inf, "NaN or inf"),
        ("TSOI", "tsoi", 12.0, "150-350 K"),
        ("TSOI", "tsoi", 400.0, "150-350 K"),
        ("W_SCALAR", "w_scalar", 1.5, r"\[0, 1\]"),
        ("O_SCALAR", "o_scalar", -0.1, r"\[0, 1\]"),
        ("FPI_vr", "fpi_vr", 2.0, r"\[0, 1\]"),
        ("nbedrock", "nbedrock", 0.0, "1..20"),
        ("nbedrock", "nbedrock", 21.0, "1..20"),
        ("nbedrock", "nbedrock", 7.5, "1..20"),
        ("CWD_INPUT", "cwd_input", -1.0, ">= 0"),
        ("LITR1_INPUT", "litr1_input", -1.0, ">= 0"),
        ("LITR2_INPUT", "litr2_input", np.nan, "NaN or inf"),
        ("LITR3_INPUT", "litr3_input", -3.0, ">= 0"),
        ("ALTMAX", "altmax", -1.0, ">= 0 m"),
        ("CELLSAND", "cellsand", 120.0, "0-100"),
    ],
)
def test_bad_values_name_site_and_variable(var, attr, value, message):
    kwargs = _good()
    arr = kwargs[attr].copy()
    arr[1].flat[3] = value  # site 1 is bad
    kwargs[attr] = arr
    with pytest.raises(ForcingError, match=message) as info:
        Forcing(**kwargs)
    assert "site 1" in str(info.value) and var in str(info.value)


def test_celsius_hint_and_site_labels():
    kwargs = _good()
    kwargs["tsoi"] = kwargs["tsoi"] - 273.15
    with pytest.raises(ForcingError, match="degrees Celsius") as info:
        Forcing(**kwargs, site_labels=["A", "B", "C"])
    assert "site A" in str(info.value) and "2 more" in str(info.value)


@pytest.mark.parametrize("attr, shape", [("tsoi", (3, 20, 12)), ("altmax", (3, 11)), ("cellsand", (3, 25))])
def test_wrong_shapes(attr, shape):
    kwargs = _good()
    kwargs[attr] = np.ones(shape)
    with pytest.raises(ForcingError, match="shape"):
        Forcing(**kwargs)


def test_missing_variable_from_mapping():
    variables = {k: v for k, v in Forcing(**_good()).variables().items() if k != "FPI_vr"}
    with pytest.raises(ForcingError, match="missing variable.*FPI_vr"):
        Forcing.from_variables(variables)


def test_messages_print_plain_values():
    kwargs = _good()
    kwargs["litr1_input"] = kwargs["litr1_input"].copy()
    kwargs["litr1_input"][2, 4] = np.nan
    with pytest.raises(ForcingError) as info:
        Forcing(**kwargs, site_labels=np.array(["A", "B", "C"]))
    msg = str(info.value)
    assert msg.startswith("site C: LITR1_INPUT") and "value nan at month 5" in msg and "np." not in msg, msg


def test_sites_of_a_2d_batch_are_named_by_plain_indices():
    kwargs = {k: np.stack([v, v]) for k, v in _good().items()}  # batch (2, 3)
    kwargs["tsoi"] = kwargs["tsoi"].copy()
    kwargs["tsoi"][1, 0, 3, 2] = np.nan
    with pytest.raises(ForcingError) as info:
        Forcing(**kwargs)
    assert str(info.value).startswith("site (1, 0): TSOI"), str(info.value)
