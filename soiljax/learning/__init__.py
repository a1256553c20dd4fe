"""Learning model parameters from site covariates: PRODA's second stage, and beyond.

Two approaches share one network (:class:`ParamNet`: covariates min-max
scaled to [0, 1] -> fully connected 256-512-512-256 ReLU layers with dropout
0.2 -> sigmoid outputs, the scaled parameters ``u`` in (0, 1)) and one result
type (:class:`Learner`: scaler, network or bootstrap ensemble, names and
metadata; :func:`save_learner` / :func:`load_learner`).

Two-stage (PRODA), :func:`train_two_stage`
    After the site-level calibration (:func:`soiljax.calibration.calibrate`),
    regress the posterior-mean ``u`` of the calibrated sites on their
    covariates: MSE or PRODA's MSE x mean-relative-error loss
    (:func:`proda_loss`), mini-batches of 32, Adam, the scaler fitted on the
    training split only, early stopping on the validation split keeping the
    best epoch, optional bootstrap ensembles trained together in one vmapped
    program.

End-to-end (beyond PRODA), :func:`train_end_to_end`
    Skip the per-site posteriors: the network's ``u`` go through the model's
    steady-state solver and the pchip observation operator, and the loss is
    the misfit to the observed profiles (:func:`site_misfit`, by default the
    log-normal misfit with a 10% relative error), averaged over mini-batches of
    sites; gradients flow through the solver into the weights.  Optionally
    regularised towards posterior means (``u_prior``, ``prior_weight``) or
    started from a two-stage learner (``init``).  Invalid steady states
    contribute a constant penalty and no gradient, and steps with non-finite
    gradients are skipped, so training never produces NaN.

:func:`evaluate` scores a learner on (held-out) sites: NSE of the predicted
profile against the observations, SOC stock to 1 m, validity, and the
correlation of predicted with true parameters where those are known
(:func:`evaluate_u` the same for given parameters);
:func:`evaluation_summary` gives the figures of a comparison table (invalid
counted as failure) and :func:`paired_comparison` compares two evaluations
site by site with a sign test.

The training data of files (a covariate file, a posterior, forcing and
observations, :mod:`soiljax.io`) are paired by site label with
:func:`two_stage_data` and :func:`end_to_end_data` (``soiljax learn`` does
this); :func:`posterior_means` reads a posterior's means by parameter name.
The defaults of both training loops are those of ``soiljax learn``.

:func:`predict_maps` applies a learner to every land cell of a world
(:mod:`soiljax.world`) and returns maps (lat, lon) of the predicted parameters,
the SOC stocks ``soc_stock_0_30``, ``soc_stock_0_100`` (kgC m-2) and the six
system-level components (NaN over the ocean and where the steady state is
invalid); :func:`write_maps` / :func:`read_maps` keep them in netCDF,
:func:`compare_models` correlates two models' maps (paper Figure 4) and
:func:`maps_figure`, :func:`latitude_figure`, :func:`comparison_figure` draw
them.

Networks train in JAX's default float type, float64 once soiljax is imported
(the steady states need it); small networks train quickly on CPU.
"""

from ._data import MIN_FILTERED as MIN_FILTERED
from ._data import end_to_end_data as end_to_end_data
from ._data import match_sites as match_sites
from ._data import posterior_means as posterior_means
from ._data import two_stage_data as two_stage_data
from ._end_to_end import DEFAULT_SIGMA as DEFAULT_SIGMA
from ._end_to_end import INVALID_PENALTY as INVALID_PENALTY
from ._end_to_end import default_likelihood as default_likelihood
from ._end_to_end import end_to_end_loss as end_to_end_loss
from ._end_to_end import site_misfit as site_misfit
from ._end_to_end import train_end_to_end as train_end_to_end
from ._evaluate import evaluate as evaluate
from ._evaluate import evaluate_u as evaluate_u
from ._evaluate import pearson as pearson
from ._learner import MODEL_NAMES as MODEL_NAMES
from ._learner import Learner as Learner
from ._learner import init_learner as init_learner
from ._learner import split_indices as split_indices
from ._losses import LOSSES as LOSSES
from ._losses import mean_relative_error as mean_relative_error
from ._losses import mse_loss as mse_loss
from ._losses import proda_loss as proda_loss
from ._network import PRODA_DROPOUT as PRODA_DROPOUT
from ._network import PRODA_HIDDEN as PRODA_HIDDEN
from ._network import U_EPS as U_EPS
from ._network import ParamNet as ParamNet
from ._network import make_ensemble as make_ensemble
from ._scaling import MinMaxScaler as MinMaxScaler
from ._scores import evaluation_summary as evaluation_summary
from ._scores import paired_comparison as paired_comparison
from ._serialise import LearnerFileError as LearnerFileError
from ._serialise import load_learner as load_learner
from ._serialise import read_header as read_header
from ._serialise import save_learner as save_learner
from ._train import train_two_stage as train_two_stage
from ._figures import comparison_figure as comparison_figure
from ._figures import latitude_figure as latitude_figure
from ._figures import map_figures as map_figures
from ._figures import maps_figure as maps_figure
from ._maps import MAP_VARIABLES as MAP_VARIABLES
from ._maps import MapsError as MapsError
from ._maps import compare_models as compare_models
from ._maps import format_comparison as format_comparison
from ._maps import global_stock as global_stock
from ._maps import latitude_profile as latitude_profile
from ._maps import predict_cells as predict_cells
from ._maps import predict_maps as predict_maps
from ._maps import read_maps as read_maps
from ._maps import to_grid as to_grid
from ._maps import write_maps as write_maps
