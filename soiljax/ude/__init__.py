"""The SOC universal differential equation (UDE) of Raju et al. (2025), in JAX.

Flow: drivers (:mod:`._model`, paper eqs. 8-11) -> :class:`SOCModel` vector field
(advection-diffusion by the method of lines + ``NN_P`` - ``NN_R``) -> diffrax solve
(:func:`solve`) -> loss (:func:`plain_loss`, :func:`noise_aware_loss`) -> Adam + L-BFGS
(:func:`train`) -> metrics and figures (:func:`run_case`, CLI ``soiljax ude``).
"""

from ._cases import CASES as CASES
from ._cases import NOISE_AWARE_SMOOTHING as NOISE_AWARE_SMOOTHING
from ._cases import CaseConfig as CaseConfig
from ._cases import build_problem as build_problem
from ._cases import ESTIMATE_FILE as ESTIMATE_FILE
from ._cases import estimate_skeleton as estimate_skeleton
from ._cases import interval_factor as interval_factor
from ._cases import load_estimate as load_estimate
from ._cases import run_case as run_case
from ._data import NoiseSpec as NoiseSpec
from ._data import SyntheticData as SyntheticData
from ._data import clean_truth as clean_truth
from ._data import make_synthetic as make_synthetic
from ._model import ADJOINTS as ADJOINTS
from ._model import DIFFUSIVITY as DIFFUSIVITY
from ._model import NZ as NZ
from ._model import T_END as T_END
from ._model import VELOCITY as VELOCITY
from ._model import AbstractReactions as AbstractReactions
from ._model import Drivers as Drivers
from ._model import NeuralReactions as NeuralReactions
from ._model import NoReactions as NoReactions
from ._model import RateNet as RateNet
from ._model import ReferenceReactions as ReferenceReactions
from ._model import SOCModel as SOCModel
from ._model import depth_grid as depth_grid
from ._model import initial_profile as initial_profile
from ._model import make_ude as make_ude
from ._model import solve as solve
from ._model import transport as transport
from ._model import trapezoid_mass as trapezoid_mass
from ._noise import ar1_noise as ar1_noise
from ._noise import multiplicative as multiplicative
from ._noise import white_noise as white_noise
from ._train import FINAL as FINAL
from ._train import initial_roughness as initial_roughness
from ._train import profile_roughness as profile_roughness
from ._train import TUNING as TUNING
from ._train import Estimate as Estimate
from ._train import LossWeights as LossWeights
from ._train import NoiseModel as NoiseModel
from ._train import NoisyEstimate as NoisyEstimate
from ._train import Problem as Problem
from ._train import SolveOptions as SolveOptions
from ._train import grid_search as grid_search
from ._train import initial_estimate as initial_estimate
from ._train import noise_aware_loss as noise_aware_loss
from ._train import plain_loss as plain_loss
from ._train import predict as predict
from ._train import r2 as r2
from ._train import train as train
