"""The :class:`World` container: the datasets, forcings, truth and observations of one world."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from .._forcing import Forcing
from .._observations import Observations
from ._catalogue import COVARIATES
from ._hidden import model_instance, model_key


@dataclass(frozen=True, eq=False, repr=False)
class World:
    """A synthetic world: grid, land cells, sites, forcing, hidden truth and observations.

    See the module docstring for what every field holds.  Build one with
    :func:`synthetic_world`; save and load with :func:`write_world` and
    :func:`read_world`.
    """

    grid: xr.Dataset
    cells: xr.Dataset
    cell_forcing: Forcing
    sites: xr.Dataset
    site_forcing: Forcing
    u_true: dict[str, np.ndarray]
    cell_u_true: dict[str, np.ndarray]
    observations: dict[str, Observations]
    valid: dict[str, np.ndarray]

    @property
    def models(self) -> tuple[str, ...]:
        """The models of the truth (keys of :attr:`u_true`)."""
        return tuple(self.u_true)

    @property
    def n_sites(self) -> int:
        return int(self.sites.sizes["site"])

    @property
    def n_cells(self) -> int:
        return int(self.cells.sizes["cell"])

    @property
    def seed(self) -> int:
        return int(self.grid.attrs["seed"])

    @property
    def resolution(self) -> float:
        return float(self.grid.attrs["resolution"])

    def param_names(self, model: str) -> tuple[str, ...]:
        """Parameter names of ``model`` ('clm5' or 'compas'), the columns of its u arrays."""
        return tuple(model_instance(model_key(model)).param_names)

    def covariate_matrix(self, where: str = "sites") -> np.ndarray:
        """(n, 60) float array of covariates (columns in the order of :data:`COVARIATES`) of
        the sites (``where="sites"``) or of the land cells (``where="cells"``)."""
        if where == "sites":
            return np.asarray(self.sites["covariates"].values, dtype=float)
        if where == "cells":
            return np.asarray(self.cells["covariates"].values, dtype=float)
        raise ValueError(f"where must be 'sites' or 'cells', got {where!r}")

    def __repr__(self) -> str:
        fractions = ", ".join(f"{m} {self.valid[m].mean():.0%}" for m in self.valid)
        return (
            f"World(seed={self.seed}, resolution={self.resolution:g} deg, grid {self.grid.sizes['lat']} x "
            f"{self.grid.sizes['lon']}, {self.n_cells} land cells, {self.n_sites} sites, "
            f"{len(COVARIATES)} covariates, models {list(self.models)}; valid sites: {fractions or '-'})"
        )

