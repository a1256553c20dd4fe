"""soiljax: JAX-accelerated, differentiable soil organic carbon models."""

import jax as _jax

# Steady states of these models reach condition numbers of 1e14: float64 is
# the default.  Set SOILJAX_ENABLE_X64=0 before importing to keep JAX's float32.
import os as _os

if _os.environ.get("SOILJAX_ENABLE_X64", "1") != "0":
    _jax.config.update("jax_enable_x64", True)

from ._batch import batched_steady_state as batched_steady_state
from ._batch import site_mesh as site_mesh
from ._diagnostics import COMPONENT_UNITS as COMPONENT_UNITS
from ._diagnostics import soc_stock as soc_stock
from ._diagnostics import system_components as system_components
from ._forcing import FORCING_UNITS as FORCING_UNITS
from ._forcing import FORCING_VARIABLES as FORCING_VARIABLES
from ._forcing import Forcing as Forcing
from ._forcing import ForcingError as ForcingError
from ._grid import DZ as DZ
from ._grid import N_LAYERS as N_LAYERS
from ._grid import ZISOI as ZISOI
from ._grid import ZSOI as ZSOI
from ._models import CLM5 as CLM5
from ._models import COMPAS as COMPAS
from ._models import AbstractSoilModel as AbstractSoilModel
from ._models import SteadyState as SteadyState
from ._observations import ObservationError as ObservationError
from ._observations import Observations as Observations
from ._params import CLM5_SPACE as CLM5_SPACE
from ._params import COMPAS_SPACE as COMPAS_SPACE
from ._params import ParamSpace as ParamSpace
from ._transient import transient as transient
from ._transient import vector_field as vector_field
from . import io as io
from . import synthetic as synthetic
from .io import read_forcing as read_forcing
from .io import read_observations as read_observations
from .io import read_params as read_params
from .io import write_forcing as write_forcing
from .io import write_observations as write_observations
from .io import write_params as write_params
from .synthetic import synthetic_observations as synthetic_observations
from .synthetic import synthetic_sites as synthetic_sites
from . import calibration as calibration
from . import dutch as dutch

try:
    from importlib.metadata import version as _version

    __version__ = _version("soiljax")
except Exception:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"
