"""netCDF files with xarray: one module per file kind, all on a ``site`` dimension.

:mod:`soiljax.io.forcing`
    forcing files: the monthly climatology and carbon inputs of each site
    (:func:`write_forcing`, :func:`read_forcing`); units attributes are
    parsed and carbon inputs converted on reading.
:mod:`soiljax.io.parameters`
    parameter files: scaled parameters ``u`` (site, param) by name
    (:func:`write_params`, :func:`read_params`).
:mod:`soiljax.io.results`
    result files: steady states, SOC stocks and components
    (:func:`write_results`, :func:`read_results`; computed and written by
    :func:`soiljax.simulate_to_file`).
:mod:`soiljax.io.observations`
    observed SOC profiles (:func:`write_observations`,
    :func:`read_observations`).
:mod:`soiljax.io.covariates`
    the covariates of each site, on (site, covariate), for the learners
    (:func:`write_covariates`, :func:`read_covariates`).
:mod:`soiljax.io.posteriors`
    posterior summaries of a calibration
    (:func:`soiljax.calibration.write_posterior`, ``read_posterior``).
:mod:`soiljax.io.maps`
    global prediction maps of a learner (:func:`soiljax.learning.write_maps`,
    ``read_maps``).

They share an internal base, :mod:`soiljax.io._netcdf` (engine, open, atomic
write, attributes, units), and :mod:`soiljax.io._layout` (the ``site``
dimension).  Nothing here computes: the modules read, check and write.

Every problem with a file raises :class:`FileFormatError` (a ``ValueError``)
whose message names the file, the variable and, where it applies, the site,
and says how to fix it.  Problems with forcing values raise
:class:`ForcingFileError`, which is also a :class:`soiljax.ForcingError`;
problems with observations :class:`ObservationFileError`, also a
:class:`soiljax.ObservationError`.  Every reader refuses a file with 0 sites
or with a repeated ``site`` label.  The forcing and observation readers also
check plausibility (``check_plausible=True``): an annual carbon input above
:data:`ANNUAL_INPUT_MAX` (annual totals in every month?) or positive below
:data:`ANNUAL_INPUT_MIN` gC m-2 yr-1 (a rate per second without units?), and
observations below the model grid (cm read as m?), are errors; an annual
input above :data:`ANNUAL_INPUT_HIGH` is a :class:`PlausibilityWarning`.

``simulate_to_file``, ``results_dataset`` and ``parts_dir`` are still
reachable here for existing code; they live in :mod:`soiljax._simulate` and
:mod:`soiljax._parts` and are imported when first asked for.
"""

from __future__ import annotations

from ._netcdf import (
    FileFormatError,
    OutputError,
    OutputLockedError,
    OutputWriteError,
    netcdf_engine,
)
from .covariates import CovariateFileError, read_covariates, write_covariates
from .forcing import (
    ANNUAL_INPUT_HIGH,
    ANNUAL_INPUT_MAX,
    ANNUAL_INPUT_MIN,
    N_MONTHS,
    ForcingFileError,
    PlausibilityWarning,
    forcing_dataset,
    forcing_from_dataset,
    read_forcing,
    write_forcing,
)
from .observations import (
    OBSERVATION_UNITS,
    ObservationFileError,
    observations_dataset,
    observations_from_dataset,
    read_observations,
    write_observations,
)
from .parameters import ParamsFileError, params_dataset, params_from_dataset, read_params, write_params
from .results import STOCK_DEPTHS, read_results, write_results

# soiljax names the single-module soiljax.io of earlier versions had in its
# namespace (its own imports), kept so that code reaching them through soiljax.io runs.
from .._forcing import FORCING_UNITS, FORCING_VARIABLES, Forcing, ForcingError, check_input_plausibility  # noqa: F401
from .._grid import DZ, N_LAYERS, ZISOI, ZSOI  # noqa: F401
from .._observations import OM_TO_SOC_HINT, ObservationError, Observations, check_depth_plausibility  # noqa: F401
from .._params import CLM5_SPACE, COMPAS_SPACE, ParamSpace  # noqa: F401

_ELSEWHERE = {
    "simulate_to_file": "soiljax._simulate",
    "results_dataset": "soiljax._simulate",
    "parts_dir": "soiljax._parts",
}
"""Names of soiljax.io that live in other modules: imported on first use (PEP 562), so that
io does not depend on the modules that compute and run batches."""


def __getattr__(name: str):
    if name in _ELSEWHERE:
        import importlib

        value = getattr(importlib.import_module(_ELSEWHERE[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'soiljax.io' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_ELSEWHERE))


__all__ = [
    "ANNUAL_INPUT_HIGH",
    "ANNUAL_INPUT_MAX",
    "ANNUAL_INPUT_MIN",
    "CovariateFileError",
    "FileFormatError",
    "ForcingFileError",
    "OutputError",
    "OutputLockedError",
    "OutputWriteError",
    "ParamsFileError",
    "PlausibilityWarning",
    "STOCK_DEPTHS",
    "forcing_dataset",
    "forcing_from_dataset",
    "netcdf_engine",
    "params_dataset",
    "params_from_dataset",
    "parts_dir",
    "read_forcing",
    "read_params",
    "read_covariates",
    "read_results",
    "results_dataset",
    "simulate_to_file",
    "write_covariates",
    "write_forcing",
    "write_params",
    "write_results",
    "OBSERVATION_UNITS",
    "ObservationFileError",
    "observations_dataset",
    "observations_from_dataset",
    "read_observations",
    "write_observations",
]
