"""Site-level Bayesian calibration of CLM5 and COMPAS (PRODA's data assimilation).

``calibrate(model, forcing, obs)`` samples the posterior of every observed
profile's parameters, all profiles and chains at once, and returns an
:class:`xarray.Dataset` of posterior summaries and diagnostics (names in
:mod:`soiljax.calibration._summary`).  Its default ``method="auto"``
importance-samples each profile from an approximation (by default an
amortised neural posterior, :mod:`soiljax.calibration._amortized`) and falls
back to NUTS where PSIS's k-hat or the ESS fails
(:mod:`soiljax.calibration._importance`); runs too small to repay training
the flow use NUTS throughout, as ``method="nuts"`` does.  The pieces are public so
that a notebook can use them one by one: the likelihoods, the per-profile
log density :func:`log_density` (a plain JAX function of the unconstrained
parameter vector), the samplers and the diagnostics.
:func:`calibration_figure` draws observed against fitted profiles
(matplotlib, imported when first asked for).
"""

from .._observe import nse as nse
from ._likelihood import AbstractLikelihood as AbstractLikelihood
from ._likelihood import Gaussian as Gaussian
from ._likelihood import LogNormal as LogNormal
from ._likelihood import ProdaCLM5 as ProdaCLM5
from ._likelihood import ProdaCOMPAS as ProdaCOMPAS
from ._likelihood import log_density as log_density
from ._likelihood import log_likelihood as log_likelihood
from ._likelihood import predict as predict
from ._likelihood import proda_layer_weights as proda_layer_weights
from ._likelihood import proda_likelihood as proda_likelihood
from ._recovery import RecoveryRun as RecoveryRun
from ._recovery import identifiable as identifiable
from ._recovery import QUALITY_TARGETS as QUALITY_TARGETS
from ._recovery import meets_quality_targets as meets_quality_targets
from ._recovery import posterior_agreement as posterior_agreement
from ._recovery import read_recovery_inputs as read_recovery_inputs
from ._recovery import read_recovery_run as read_recovery_run
from ._recovery import recovery_profiles as recovery_profiles
from ._recovery import recovery_statistics as recovery_statistics
from ._recovery import score_recovery as score_recovery
from ._recovery import true_stock as true_stock
from ._recovery import truth_nse as truth_nse
from ._recovery import valid_truths as valid_truths
from ._recovery import write_recovery_inputs as write_recovery_inputs
from ._amortized import Amortizer as Amortizer
from ._amortized import AmortizerError as AmortizerError
from ._amortized import load_amortizer as load_amortizer
from ._amortized import save_amortizer as save_amortizer
from ._amortized import site_features as site_features
from ._amortized import train_amortizer as train_amortizer
from ._importance import Auto as Auto
from ._importance import flow_importance_sample as flow_importance_sample
from ._importance import ImportanceSampler as ImportanceSampler
from ._importance import importance_sample as importance_sample
from ._run import AUTO_REASONS as AUTO_REASONS
from ._run import DEFAULT_EXTEND as DEFAULT_EXTEND
from ._run import DEFAULT_WARMUP as DEFAULT_WARMUP
from ._run import METHODS as METHODS
from ._run import auto_variables as auto_variables
from ._run import calibrate as calibrate
from ._samplers import DEFAULT_DOUBLINGS as DEFAULT_DOUBLINGS
from ._samplers import HMC as HMC
from ._samplers import NUTS as NUTS
from ._samplers import ProdaMetropolis as ProdaMetropolis
from ._samplers import warmup_schedule as warmup_schedule
from ._summary import RHAT_THRESHOLD as RHAT_THRESHOLD
from ._summary import gelman_rubin as gelman_rubin
from ._summary import proda_filter as proda_filter
from ._summary import rhat_and_ess as rhat_and_ess
from ._summary import summarize as summarize
from ._numpyro import numpyro_model as numpyro_model
from ._numpyro import sample_numpyro as sample_numpyro
from ..io.posteriors import read_posterior as read_posterior
from ..io.posteriors import write_posterior as write_posterior


def __getattr__(name: str):
    # the figure needs matplotlib, which a calibration run does not: imported on first use (PEP 562)
    if name == "calibration_figure":
        from .._plots import calibration_figure

        globals()[name] = calibration_figure  # later lookups skip this function
        return calibration_figure
    raise AttributeError(f"module 'soiljax.calibration' has no attribute {name!r}")
