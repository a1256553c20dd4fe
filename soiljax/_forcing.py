"""The monthly forcing of one site or a batch of sites.

A :class:`Forcing` holds a 12-month climatology as written by CLM5/CESM2
history files (MODELS.md section 2).  Arrays may carry any number of leading
batch axes (sites); the trailing axes are ``(month, layer)`` for the
layer-resolved scalars, ``(month,)`` for column quantities and ``(layer,)`` for
sand.  Construction from concrete arrays validates every site and raises a
:class:`ForcingError` that names the site and the variable.
:func:`check_input_plausibility` (run by the file readers) refuses annual
carbon inputs that no ecosystem has, such as annual totals written in every
month or rates per second without units.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ._grid import N_LAYERS
from ._sites import first_site

N_MONTHS = 12

#: Variables and their trailing shapes; the names are the netCDF names.
FORCING_VARIABLES: dict[str, tuple[str, ...]] = {
    "TSOI": ("month", "layer"),
    "W_SCALAR": ("month", "layer"),
    "O_SCALAR": ("month", "layer"),
    "FPI_vr": ("month", "layer"),
    "ALTMAX": ("month",),
    "ALTMAX_LASTYEAR": ("month",),
    "nbedrock": ("month",),
    "CWD_INPUT": ("month",),
    "LITR1_INPUT": ("month",),
    "LITR2_INPUT": ("month",),
    "LITR3_INPUT": ("month",),
    "CELLSAND": ("layer",),
}

FORCING_UNITS: dict[str, str] = {
    "TSOI": "K",
    "W_SCALAR": "1",
    "O_SCALAR": "1",
    "FPI_vr": "1",
    "ALTMAX": "m",
    "ALTMAX_LASTYEAR": "m",
    "nbedrock": "1",
    "CWD_INPUT": "gC m-2 month-1",
    "LITR1_INPUT": "gC m-2 month-1",
    "LITR2_INPUT": "gC m-2 month-1",
    "LITR3_INPUT": "gC m-2 month-1",
    "CELLSAND": "%",
}

# Python attribute <-> file variable
_ATTR = {
    "TSOI": "tsoi",
    "W_SCALAR": "w_scalar",
    "O_SCALAR": "o_scalar",
    "FPI_vr": "fpi_vr",
    "ALTMAX": "altmax",
    "ALTMAX_LASTYEAR": "altmax_lastyear",
    "nbedrock": "nbedrock",
    "CWD_INPUT": "cwd_input",
    "LITR1_INPUT": "litr1_input",
    "LITR2_INPUT": "litr2_input",
    "LITR3_INPUT": "litr3_input",
    "CELLSAND": "cellsand",
}
_SIZES = {"month": N_MONTHS, "layer": N_LAYERS}


class ForcingError(ValueError):
    """A forcing variable is missing, mis-shaped or has values a model cannot use."""


class Forcing(eqx.Module):
    """Monthly climatology of one site (or a batch of sites on leading axes).

    Attributes use lower-case names; :data:`FORCING_VARIABLES` gives the
    file names and trailing shapes.  Inputs are column totals per month
    (gC m-2 month-1); their sum over the 12 months is the annual input.
    """

    tsoi: Float[Array, "*site month layer"]
    w_scalar: Float[Array, "*site month layer"]
    o_scalar: Float[Array, "*site month layer"]
    fpi_vr: Float[Array, "*site month layer"]
    altmax: Float[Array, "*site month"]
    altmax_lastyear: Float[Array, "*site month"]
    nbedrock: Int[Array, "*site month"]
    cwd_input: Float[Array, "*site month"]
    litr1_input: Float[Array, "*site month"]
    litr2_input: Float[Array, "*site month"]
    litr3_input: Float[Array, "*site month"]
    cellsand: Float[Array, "*site layer"]

    def __init__(
        self,
        tsoi,
        w_scalar,
        o_scalar,
        fpi_vr,
        altmax,
        altmax_lastyear,
        nbedrock,
        cwd_input,
        litr1_input,
        litr2_input,
        litr3_input,
        cellsand=None,
        *,
        validate: bool = True,
        site_labels=None,
    ):
        """Build and (for concrete arrays) validate a forcing.

        ``cellsand`` defaults to 0 % sand when not given (it is only used by
        CLM5's optional sand-dependent transfers).  ``site_labels`` (one per
        site, flattened batch order) names sites in error messages.
        """
        values = dict(
            TSOI=tsoi,
            W_SCALAR=w_scalar,
            O_SCALAR=o_scalar,
            FPI_vr=fpi_vr,
            ALTMAX=altmax,
            ALTMAX_LASTYEAR=altmax_lastyear,
            nbedrock=nbedrock,
            CWD_INPUT=cwd_input,
            LITR1_INPUT=litr1_input,
            LITR2_INPUT=litr2_input,
            LITR3_INPUT=litr3_input,
            CELLSAND=cellsand,
        )
        if values["CELLSAND"] is None:
            ref = jnp.asarray(tsoi)
            values["CELLSAND"] = jnp.zeros(ref.shape[:-2] + (N_LAYERS,), dtype=ref.dtype)
        concrete = not any(isinstance(v, jax.core.Tracer) for v in values.values())
        if concrete and validate:
            validate_forcing_arrays({k: np.asarray(v) for k, v in values.items()}, site_labels)
        for name, v in values.items():
            if name == "nbedrock":
                v = jnp.asarray(jnp.round(jnp.asarray(v)), dtype=jnp.int32) if concrete else jnp.asarray(v)
            else:
                v = jnp.asarray(v, dtype=float)
            setattr(self, _ATTR[name], v)

    # -- convenience ---------------------------------------------------------
    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.tsoi.shape[:-2])

    @property
    def n_sites(self) -> int:
        return int(np.prod(self.batch_shape)) if self.batch_shape else 1

    @property
    def annual_input(self) -> Float[Array, "*site 4"]:
        """Annual input to CWD, L1, L2, L3 in gC m-2 yr-1."""
        return jnp.stack(
            [
                self.cwd_input.sum(-1),
                self.litr1_input.sum(-1),
                self.litr2_input.sum(-1),
                self.litr3_input.sum(-1),
            ],
            axis=-1,
        )

    def variables(self) -> dict[str, Array]:
        """File-name -> array mapping (for writing)."""
        return {name: getattr(self, attr) for name, attr in _ATTR.items()}

    @classmethod
    def from_variables(cls, variables: dict, *, validate: bool = True, site_labels=None) -> "Forcing":
        """Build from a mapping with the file names of :data:`FORCING_VARIABLES`."""
        missing = [n for n in FORCING_VARIABLES if n not in variables and n != "CELLSAND"]
        if missing:
            raise ForcingError(
                f"forcing is missing variable(s) {', '.join(missing)}; a forcing needs "
                f"{', '.join(FORCING_VARIABLES)} (CELLSAND optional)"
            )
        kwargs = {_ATTR[n]: variables.get(n) for n in FORCING_VARIABLES}
        return cls(**kwargs, validate=validate, site_labels=site_labels)

    def site(self, i) -> "Forcing":
        """The forcing of site ``i`` of a 1-D batch."""
        return self[i]

    def __getitem__(self, idx) -> "Forcing":
        return jax.tree_util.tree_map(lambda x: x[idx], self)


def validate_forcing_arrays(values: dict[str, np.ndarray], site_labels=None) -> None:
    """Check shapes and value ranges; raise :class:`ForcingError` naming site and variable."""
    tsoi = values["TSOI"]
    if tsoi.ndim < 2:
        raise ForcingError(f"TSOI must have trailing axes (month, layer) = (12, 20); got shape {tsoi.shape}")
    batch = tsoi.shape[:-2]
    for name, dims in FORCING_VARIABLES.items():
        v = values[name]
        want = batch + tuple(_SIZES[d] for d in dims)
        if v.shape != want:
            raise ForcingError(
                f"{name} has shape {v.shape}, expected {want} "
                f"(sites {batch} then {', '.join(f'{d}={_SIZES[d]}' for d in dims)})"
            )

    def fail(name: str, mask: np.ndarray, what: str) -> None:
        nd = len(FORCING_VARIABLES[name])
        per_site = mask.reshape(mask.shape[: mask.ndim - nd] + (-1,)).any(-1).reshape(-1)
        first, where = first_site(per_site, batch, site_labels)
        v = values[name].reshape((-1,) + values[name].shape[len(batch):])[first]
        m = mask.reshape((-1,) + mask.shape[len(batch):])[first]
        pos = np.unravel_index(int(np.argmax(m)), m.shape)
        axes = ", ".join(f"{d} {p + 1}" for d, p in zip(FORCING_VARIABLES[name], pos))
        raise ForcingError(f"{where}: {name} {what} (value {v[pos].item()} at {axes})")

    for name in FORCING_VARIABLES:
        v = values[name].astype(float)
        bad = ~np.isfinite(v)
        if bad.any():
            fail(name, bad, "contains NaN or inf; fill gaps before building a Forcing")
    for name in ("W_SCALAR", "O_SCALAR", "FPI_vr"):
        v = values[name]
        bad = (v < 0) | (v > 1)
        if bad.any():
            fail(name, bad, "must lie in [0, 1] (a dimensionless scalar; check units / scaling)")
    t = values["TSOI"]
    bad = (t < 150) | (t > 350)
    if bad.any():
        hint = " (looks like degrees Celsius: TSOI is in kelvin)" if np.nanmax(t) < 100 else ""
        fail("TSOI", bad, f"must lie in 150-350 K{hint}")
    nb = values["nbedrock"].astype(float)
    bad = (nb < 1) | (nb > N_LAYERS) | (nb != np.round(nb))
    if bad.any():
        fail("nbedrock", bad, f"must be an integer layer index in 1..{N_LAYERS}")
    for name in ("ALTMAX", "ALTMAX_LASTYEAR"):
        bad = values[name] < 0
        if bad.any():
            fail(name, bad, "must be >= 0 m (active-layer depth)")
    for name in ("CWD_INPUT", "LITR1_INPUT", "LITR2_INPUT", "LITR3_INPUT"):
        bad = values[name] < 0
        if bad.any():
            fail(name, bad, "must be >= 0 (carbon input in gC m-2 month-1)")
    bad = (values["CELLSAND"] < 0) | (values["CELLSAND"] > 100)
    if bad.any():
        fail("CELLSAND", bad, "must lie in 0-100 % sand")


# ---------------------------------------------------------------------------
# plausibility of the carbon input (checked by the file readers)
# ---------------------------------------------------------------------------

ANNUAL_INPUT_MAX = 5000.0
"""gC m-2 yr-1.  An annual carbon input above this is refused by the readers.

The input of a soil is the litter of the plants above it, at most their net
primary production (NPP).  The most productive ecosystems measured --
tropical rain forests (up to about 2,200 gC m-2 yr-1 in the synthesis of
Clark et al. 2001, Ecological Applications), intensively managed crops such
as sugarcane -- stay below about 2,000-3,000 gC m-2 yr-1; typical sites
receive 100-1,000.  5,000 leaves a
margin of about two above any measured NPP and catches annual totals written
in every month (12 x the input) at every site above ~420 gC m-2 yr-1.
"""

ANNUAL_INPUT_HIGH = 3000.0
"""gC m-2 yr-1.  Above this (and up to :data:`ANNUAL_INPUT_MAX`) the readers
warn (:class:`PlausibilityWarning`): only the most productive ecosystems come
near it, and 12 x the input of a site of 250-420 gC m-2 yr-1 lands here."""

ANNUAL_INPUT_MIN = 1.0
"""gC m-2 yr-1.  A positive annual input below this is refused by the readers:
it is what a rate per second (CLM history fields are in gC m-2 s-1: a site of
600 gC m-2 yr-1 gives ~2e-4 summed over 12 months) looks like in a file that
lost its units attribute.  A polar desert receives a few gC m-2 yr-1; zero
(bare ground) is accepted."""


class PlausibilityWarning(UserWarning):
    """Values that are possible but unusual enough to be a mistake (e.g. a units slip).

    Silence with ``check_plausible=False`` on the readers or with
    ``warnings.filterwarnings("ignore", category=PlausibilityWarning)``.
    """


def check_input_plausibility(forcing: "Forcing", site_labels=None, *, where: str = "forcing") -> None:
    """Refuse annual carbon inputs that no ecosystem has; warn about unusually high ones.

    The annual input of a site is the sum of CWD_INPUT and LITR1-3_INPUT over
    the 12 months (gC m-2 yr-1).  Above :data:`ANNUAL_INPUT_MAX`, or positive
    and below :data:`ANNUAL_INPUT_MIN`, raises :class:`ForcingError`; above
    :data:`ANNUAL_INPUT_HIGH` warns with :class:`PlausibilityWarning`.  Every
    message starts with ``where`` and names the (first) site.
    """
    import warnings

    annual = np.asarray(forcing.annual_input, dtype=float).sum(-1)
    batch = annual.shape
    annual = annual.reshape(-1)
    skip = "pass check_plausible=False (soiljax --allow-implausible) if the values are right"
    what = "the annual carbon input (CWD_INPUT + LITR1_INPUT + LITR2_INPUT + LITR3_INPUT summed over the 12 months)"
    high = annual > ANNUAL_INPUT_MAX
    if high.any():
        i, sites = first_site(high, batch, site_labels)
        raise ForcingError(
            f"{where}: {sites}: {what} is {float(annual[i]):.0f} gC m-2 yr-1, above {ANNUAL_INPUT_MAX:.0f}, more than "
            "any ecosystem produces (the most productive reach ~2,000-3,000); were annual totals written in every "
            f"month (divide by 12), or are the inputs in other units? Give monthly totals in gC m-2 month-1, or {skip}"
        )
    tiny = (annual > 0) & (annual < ANNUAL_INPUT_MIN)
    if tiny.any():
        i, sites = first_site(tiny, batch, site_labels)
        raise ForcingError(
            f"{where}: {sites}: {what} is {float(annual[i]):.3g} gC m-2 yr-1, positive but below {ANNUAL_INPUT_MIN:g}, "
            "less than any vegetated soil receives: it looks like a rate per second (or per day) in a file without "
            "units; give monthly totals in gC m-2 month-1 (a rate per second x 86400 x days in the month), or "
            f"{skip}"
        )
    unusual = annual > ANNUAL_INPUT_HIGH
    if unusual.any():
        i, sites = first_site(unusual, batch, site_labels)
        warnings.warn(
            f"{where}: {sites}: {what} is {float(annual[i]):.0f} gC m-2 yr-1, above {ANNUAL_INPUT_HIGH:.0f}, which "
            "only the most productive ecosystems reach; check that the inputs are monthly, not annual, totals (silence "
            "with check_plausible=False or soiljax --allow-implausible)",
            PlausibilityWarning,
            stacklevel=3,
        )
