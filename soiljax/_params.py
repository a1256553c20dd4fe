"""Parameter spaces of CLM5 and COMPAS.

Every model parameter is driven by a scaled value ``u`` in [0, 1]; the prior of
PRODA is uniform in ``u``.  The physical value is ``lo + u (hi - lo)`` except
for parameters declared log-scaled (COMPAS's enzyme turnover time, 10^(3u - 3)
years).  Samplers work on an unconstrained vector ``z`` with ``u = sigmoid(z)``;
:meth:`ParamSpace.u_from_z` returns the log-Jacobian needed to keep the prior
uniform in ``u``.

The parameter identifiers below are the contract used in files (the ``param``
coordinate), in code and on the command line; they follow MODELS.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class Param:
    name: str
    lo: float
    hi: float
    unit: str
    description: str
    log10: bool = False
    """If true the physical value is 10 ** (lo + u (hi - lo)) (lo, hi are exponents)."""


@dataclass(frozen=True)
class ParamSpace:
    """Names, bounds and u <-> physical mapping of one model's parameters."""

    model: str
    params: tuple[Param, ...]
    defaults: dict[str, float] = field(default_factory=dict)
    """Default *physical* values, where the model has them."""

    # --- metadata ---------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def size(self) -> int:
        return len(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(
                f"{self.model} has no parameter {name!r}; its parameters are: {', '.join(self.names)}"
            ) from None

    @property
    def lo(self) -> np.ndarray:
        return np.array([p.lo for p in self.params])

    @property
    def hi(self) -> np.ndarray:
        return np.array([p.hi for p in self.params])

    @property
    def log10_mask(self) -> np.ndarray:
        return np.array([p.log10 for p in self.params])

    @property
    def units(self) -> tuple[str, ...]:
        return tuple(p.unit for p in self.params)

    # --- mappings ------------------------------------------------------------
    def to_physical(self, u):
        """Physical values from scaled values ``u`` (last axis = parameters)."""
        u = jnp.asarray(u)
        self._check_last_axis(u)
        lin = self.lo + u * (self.hi - self.lo)
        # double where: 10**lin of a linear parameter may overflow, and its
        # infinite derivative would turn a zero cotangent into NaN
        exponent = jnp.where(self.log10_mask, lin, 0.0)
        return jnp.where(self.log10_mask, 10.0**exponent, lin)

    def to_u(self, theta):
        """Scaled values from physical values (inverse of :meth:`to_physical`)."""
        theta = jnp.asarray(theta)
        self._check_last_axis(theta)
        lin = jnp.where(self.log10_mask, jnp.log10(jnp.where(self.log10_mask, theta, 1.0)), theta)
        return (lin - self.lo) / (self.hi - self.lo)

    def u_from_z(self, z):
        """Map unconstrained ``z`` to ``u`` in (0, 1); returns (u, log|du/dz|).

        The log-Jacobian is summed over the parameter axis, so that a uniform
        prior on u becomes ``log_jac`` as a log density on z.
        """
        z = jnp.asarray(z)
        self._check_last_axis(z)
        u = jax.nn.sigmoid(z)
        log_jac = jnp.sum(jax.nn.log_sigmoid(z) + jax.nn.log_sigmoid(-z), axis=-1)
        return u, log_jac

    def z_from_u(self, u):
        """Inverse of :meth:`u_from_z` (logit)."""
        u = jnp.asarray(u)
        self._check_last_axis(u)
        return jnp.log(u) - jnp.log1p(-u)

    def default_u(self) -> np.ndarray:
        """Scaled values of the model's default parameters.

        A default may lie outside [0, 1] (CLM5's efolding of 10 m lies outside
        PRODA's prior); the model equations accept such values, priors do not.
        """
        missing = [n for n in self.names if n not in self.defaults]
        if missing:
            raise ValueError(f"{self.model} has no default for {missing}")
        theta = np.array([self.defaults[n] for n in self.names])
        return np.asarray(self.to_u(theta))

    def as_dict(self, values) -> dict[str, jax.Array]:
        """Split the last axis into a name -> array mapping."""
        values = jnp.asarray(values)
        self._check_last_axis(values)
        return {n: values[..., i] for i, n in enumerate(self.names)}

    def _check_last_axis(self, x) -> None:
        if x.ndim == 0 or x.shape[-1] != self.size:
            raise ValueError(
                f"{self.model} expects {self.size} parameters on the last axis "
                f"({', '.join(self.names)}), got an array of shape {tuple(x.shape)}"
            )


CLM5_SPACE = ParamSpace(
    model="CLM5",
    params=(
        Param("bio", 3e-5, 5e-4, "m2 yr-1", "bioturbation diffusivity"),
        Param("cryo", 3e-5, 1.6e-3, "m2 yr-1", "cryoturbation diffusivity"),
        Param("q10", 1.2, 3.0, "1", "temperature sensitivity Q10"),
        Param("efolding", 0.0, 1.0, "m", "e-folding depth of the depth scalar"),
        Param("tau_cwd", 1.0, 6.0, "yr", "turnover time of coarse woody debris"),
        Param("tau_l1", 0.0, 0.11, "yr", "turnover time of metabolic litter"),
        Param("tau_l2_l3", 0.1, 0.3, "yr", "turnover time of cellulose and lignin litter"),
        Param("tau_s1", 0.0, 1.0, "yr", "turnover time of active SOC"),
        Param("tau_s2", 1.0, 50.0, "yr", "turnover time of slow SOC"),
        Param("tau_s3", 200.0, 1000.0, "yr", "turnover time of passive SOC"),
        Param("f_l1_s1", 0.1, 0.8, "1", "transfer fraction metabolic litter -> active SOC"),
        Param("f_l2_s1", 0.2, 0.8, "1", "transfer fraction cellulose litter -> active SOC"),
        Param("f_l3_s2", 0.2, 0.8, "1", "transfer fraction lignin litter -> slow SOC"),
        Param("f_s1_s2", 0.0, 0.4, "1", "transfer fraction active -> slow SOC"),
        Param("f_s1_s3", 0.0, 0.05, "1", "transfer fraction active -> passive SOC"),
        Param("f_s2_s1", 0.1, 0.74, "1", "transfer fraction slow -> active SOC"),
        Param("f_s2_s3", 0.0, 0.1, "1", "transfer fraction slow -> passive SOC"),
        Param("f_s3_s1", 0.0, 0.9, "1", "transfer fraction passive -> active SOC"),
        Param("f_cwd_l2", 0.5, 1.0, "1", "fraction of CWD to cellulose litter (rest to lignin)"),
        Param("w_scaling", 0.0, 5.0, "1", "multiplier of the water scalar"),
        Param("beta", 0.5, 0.9999, "1", "shape of the input depth profile beta^(100 z)"),
    ),
    defaults={
        "bio": 1e-4,
        "cryo": 5e-4,
        "q10": 1.5,
        "efolding": 10.0,
        "tau_cwd": 3.33,
        "tau_l1": 0.0541,
        "tau_l2_l3": 0.2041,
        "tau_s1": 0.137,
        "tau_s2": 5.0,
        "tau_s3": 222.222,
        "f_l1_s1": 0.45,
        "f_l2_s1": 0.5,
        "f_l3_s2": 0.5,
        # CLM5 makes this sand dependent; 0.28 is its value at 42% sand.  Use
        # CLM5(sand_dependent_transfers=True) for the layer-wise CLM5 rule.
        "f_s1_s2": 0.28,
        "f_s1_s3": 0.004,
        "f_s2_s1": 0.42,
        "f_s2_s3": 0.03,
        "f_s3_s1": 0.45,
        "f_cwd_l2": 0.76,
        "w_scaling": 1.0,
        "beta": 0.95,
    },
)
"""CLM5's 21 parameters in PRODA's order (MODELS.md section 3.1)."""

COMPAS_SPACE = ParamSpace(
    model="COMPAS",
    params=(
        Param("bio", 3e-5, 5e-4, "m2 yr-1", "bioturbation diffusivity"),
        Param("cryo", 3e-5, 1.6e-3, "m2 yr-1", "cryoturbation diffusivity"),
        Param("q10", 1.2, 3.0, "1", "temperature sensitivity Q10"),
        Param("w_scaling", 0.0, 5.0, "1", "multiplier of the water scalar"),
        Param("tau_cwd", 1.0, 6.0, "yr", "turnover time of coarse woody debris"),
        Param("tau_l1", 0.0, 0.1, "yr", "turnover time of metabolic litter"),
        Param("tau_l2_l3", 0.1, 0.3, "yr", "turnover time of cellulose and lignin litter"),
        Param("tau_assim", 0.001, 0.03, "yr", "1 / Vmax of microbial DOC uptake"),
        Param("tau_mic_death", 0.0, 2.0, "yr", "microbial death turnover time"),
        Param("tau_enz_prod", 15.0, 30.0, "yr", "1 / enzyme production rate"),
        Param("tau_enz_decay", -3.0, 0.0, "yr", "enzyme turnover time, 10^(3u-3)", log10=True),
        Param("tau_decom", 0.0, 3e-4, "yr", "1 / Vmax of enzymatic SOC decomposition"),
        Param("km_assim", 300.0, 3000.0, "gC m-3", "Michaelis constant of DOC uptake"),
        Param("km_decom", 1e5, 1e6, "gC m-3", "Michaelis constant of SOC decomposition"),
        Param("f_cwd_l2", 0.5, 1.0, "1", "fraction of CWD to cellulose litter (rest to lignin)"),
        Param("p_l1_doc", 0.0, 0.1, "1", "fraction of metabolic litter to DOC without microbes"),
        Param("p_l2_doc", 0.05, 0.3, "1", "fraction of cellulose litter to DOC without microbes"),
        Param("p_l3_soc", 0.6, 0.95, "1", "fraction of lignin litter to mineral SOC"),
        Param("cue_l1", 0.4, 0.9, "1", "microbial CUE on metabolic litter"),
        Param("cue_l2_l3", 0.0, 0.4, "1", "microbial CUE on cellulose and lignin litter"),
        Param("cue_doc", 0.01, 0.7, "1", "microbial CUE on DOC"),
        Param("p_death_soc", 0.0, 1.0, "1", "fraction of necromass to SOC (rest to DOC)"),
        Param("beta", 0.5, 0.9999, "1", "shape of the input depth profile beta^(100 z)"),
    ),
    # The paper's Supplementary Table 2: global means of the site-level
    # posterior means, used by Tao et al. as COMPAS's default parameterisation.
    defaults={
        "bio": 2.6e-4,
        "cryo": 8e-4,
        "q10": 2.1,
        "w_scaling": 2.9,
        "tau_cwd": 3.5,
        "tau_l1": 0.049,
        "tau_l2_l3": 0.2,
        "tau_assim": 0.015,
        "tau_mic_death": 1.1,
        "tau_enz_prod": 22.0,
        "tau_enz_decay": 0.04,
        "tau_decom": 1.62e-4,
        "km_assim": 1.8e3,
        "km_decom": 5.65e5,
        "f_cwd_l2": 0.75,
        "p_l1_doc": 0.05,
        "p_l2_doc": 0.17,
        "p_l3_soc": 0.78,
        "cue_l1": 0.66,
        "cue_l2_l3": 0.16,
        "cue_doc": 0.27,
        "p_death_soc": 0.47,
        "beta": 0.72,
    },
)
"""COMPAS's 23 parameters in PRODA's order (MODELS.md section 4.1)."""
