"""CLM5 and COMPAS as equinox Modules sharing one abstract interface.

Both models are pure functions of (model configuration, scaled parameters ``u``,
:class:`~soiljax.Forcing`) for one site; batch them with ``jax.vmap`` or use
:func:`soiljax.batched_steady_state`.  Each model evaluates what depends on
(u, forcing) once, in :meth:`AbstractSoilModel.operators` (:class:`CLM5Operators`,
:class:`COMPASOperators`); its steady state, tendency, fluxes and scalars follow
from that object.  :func:`soiljax.model` finds a model by its ``name``.
Equations: MODELS.md sections 3 and 4.
"""



import abc
from typing import ClassVar, final

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from . import _linear
from ._forcing import Forcing
from ._grid import DZ, N_LAYERS, ZSOI
from ._params import CLM5_SPACE, COMPAS_SPACE, ParamSpace
from ._physics import (
    depth_scalar,
    environment_means,
    litter_input,
    temperature_scalar,
    transport_operator,
    turnover_rate,
    water_scalar,
)

BEDROCK_MODES = ("proda", "closed")


class SteadyState(eqx.Module):
    """Steady state of one site (or a batch, on leading axes).

    ``state`` holds every pool in gC m-3 (pool order of the model's
    ``pool_names``); ``soc`` is the observable SOC per layer; ``valid`` is
    PRODA's acceptance rule (see the model's docstring); ``rcond`` is the
    reciprocal 1-norm condition number of the linear system that was solved.
    Invalid profiles carry finite numbers (never NaN) so that they cannot
    poison batched reductions or gradients.
    """

    state: Float[Array, "*site pool layer"]
    soc: Float[Array, "*site layer"]
    valid: Bool[Array, "*site"]
    rcond: Float[Array, "*site"]


class LinearOperators(eqx.Module):
    """The linear part of a model at given parameters and forcing (one site).

    ``system`` is N = -(A K - V) for the pools it covers (all 7 of CLM5, the 4
    litter pools of COMPAS) and ``inputs`` is u = B I for those pools, so the
    linear dynamics are dX/dt = inputs - N X.  ``xi`` is the combined
    environmental scalar per pool and layer and ``k_base`` the baseline rate per
    pool (day-1), so that system.k = k_base * xi.
    """

    system: _linear.PoolSystem
    inputs: Float[Array, "pool layer"]
    k_base: Float[Array, " pool"]
    xi: Float[Array, "pool layer"]


class AbstractOperators(eqx.Module):
    """A model's operators and rates at given parameters and forcing (one site).

    :meth:`AbstractSoilModel.operators` evaluates everything that depends on
    (u, forcing) once; the steady state, the tendency, the fluxes at a state
    and the scalars read it from here, and so does
    :func:`soiljax.system_components`, which needs several of them together.
    ``theta`` holds the physical parameters by name, ``linear`` the linear
    (sub)system and ``environmental`` the environmental modifier
    xi_T xi_W xi_D per layer (paper eq. 13).
    """

    theta: eqx.AbstractVar[dict[str, Float[Array, ""]]]
    linear: eqx.AbstractVar[LinearOperators]
    environmental: eqx.AbstractVar[Float[Array, " layer"]]

    @abc.abstractmethod
    def steady_state(self) -> SteadyState:
        """Steady state of the site."""

    @abc.abstractmethod
    def tendency(self, state: Float[Array, "pool layer"]) -> Float[Array, "pool layer"]:
        """dX/dt (gC m-3 day-1) of the full transient model at ``state``."""

    @abc.abstractmethod
    def respiration(self, state: Float[Array, "pool layer"]) -> Float[Array, "pool layer"]:
        """Heterotrophic respiration per pool and layer (gC m-3 day-1) at ``state``."""

    @abc.abstractmethod
    def decomposition(self, state: Float[Array, "pool layer"]) -> Float[Array, "pool layer"]:
        """Carbon leaving each pool by decomposition or turnover (gC m-3 day-1) at ``state``."""

    @abc.abstractmethod
    def baseline_scalar(self) -> Float[Array, "pool layer"]:
        """The scalar that multiplies each pool's baseline rate."""


def _observable(state, pools):
    """SOC per layer: the sum of ``pools`` of ``state`` (pool axis second to last)."""
    return sum(state[..., p, :] for p in pools)


class AbstractSoilModel(eqx.Module):
    """Interface shared by CLM5 and COMPAS.

    The interface has no fields; each model is a final class that declares its
    own.  Every model has a ``bedrock`` field, which selects the transport
    boundary below bedrock: ``"proda"`` reproduces the original code (which
    leaks about 1% of the input through the bedrock interface when
    nbedrock < 20) and is the default, so that PRODA's fitted parameters and
    reference outputs carry over; ``"closed"`` closes that interface as CTSM
    does and conserves mass exactly.

    Class variables: ``name`` (how :func:`soiljax.model`, the command line and
    learners name the model), the parameter ``space``, the ``pool_names``, the ``soc_pools`` that
    make up the observable, and the model's calibration defaults
    (``default_warmup``, ``default_max_doublings``, ``default_extend``,
    ``default_auto_min_profiles``, ``default_auto_simulations``, read by :func:`soiljax.calibration.calibrate`
    when they are not given).
    """

    bedrock: eqx.AbstractVar[str]

    name: eqx.AbstractClassVar[str]
    space: eqx.AbstractClassVar[ParamSpace]
    pool_names: eqx.AbstractClassVar[tuple[str, ...]]
    soc_pools: eqx.AbstractClassVar[tuple[int, ...]]
    default_warmup: eqx.AbstractClassVar[int]
    default_max_doublings: eqx.AbstractClassVar[int]
    default_extend: eqx.AbstractClassVar[int]
    default_auto_min_profiles: eqx.AbstractClassVar[int]
    default_auto_simulations: eqx.AbstractClassVar[int]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        final = [base.__name__ for base in cls.__mro__[1:] if base.__dict__.get("__final__", False)]
        if final:
            raise TypeError(f"{final[0]} is final and cannot be subclassed; derive a new model from AbstractSoilModel")

    def __check_init__(self):
        if self.bedrock not in BEDROCK_MODES:
            raise ValueError(f"bedrock must be one of {BEDROCK_MODES}, got {self.bedrock!r}")

    @property
    def n_params(self) -> int:
        return self.space.size

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.space.names

    @property
    def n_pools(self) -> int:
        return len(self.pool_names)

    def default_u(self):
        """Scaled default parameters (see the model's parameter space)."""
        return jnp.asarray(self.space.default_u())

    def _check_u(self, u):
        u = jnp.asarray(u)
        if u.shape != (self.space.size,):
            raise ValueError(
                f"{type(self).__name__} expects u of shape ({self.space.size},) for one site "
                f"(use jax.vmap or soiljax.batched_steady_state for a batch), got {u.shape}"
            )
        return u

    def _transport(self, theta, forcing):
        return transport_operator(theta["bio"], theta["cryo"], forcing, closed=self.bedrock == "closed")

    @abc.abstractmethod
    def operators(self, u, forcing: Forcing) -> AbstractOperators:
        """The operators and rates at parameters ``u`` for one site, evaluated once.

        Every method below reads them from here; call it yourself to evaluate
        several of them at the same (u, forcing) without repeating the work.
        """

    def linear_operators(self, u, forcing: Forcing) -> LinearOperators:
        """K, A, V and the input vector at parameters ``u`` for one site."""
        return self.operators(u, forcing).linear

    def steady_state(self, u, forcing: Forcing) -> SteadyState:
        """Steady state of one site."""
        return self.operators(u, forcing).steady_state()

    def tendency(self, u, forcing: Forcing, state: Float[Array, "pool layer"]) -> Float[Array, "pool layer"]:
        """dX/dt (gC m-3 day-1) of the full transient model at ``state``."""
        return self.operators(u, forcing).tendency(state)

    def respiration(self, u, forcing: Forcing, state: Float[Array, "pool layer"]) -> Float[Array, "pool layer"]:
        """Heterotrophic respiration per pool and layer (gC m-3 day-1) at ``state``."""
        return self.operators(u, forcing).respiration(state)

    def decomposition(self, u, forcing: Forcing, state: Float[Array, "pool layer"]) -> Float[Array, "pool layer"]:
        """Carbon leaving each pool by decomposition or turnover (gC m-3 day-1), before
        it is split between respiration and transfer to other pools."""
        return self.operators(u, forcing).decomposition(state)

    def environmental_scalar(self, u, forcing: Forcing) -> Float[Array, " layer"]:
        """xi_T xi_W xi_D per layer (the environmental modifier of paper eq. 13)."""
        return self.operators(u, forcing).environmental

    def baseline_scalar(self, u, forcing: Forcing) -> Float[Array, "pool layer"]:
        """The scalar that multiplies each pool's baseline rate (decomposition = baseline
        rate x this scalar x stock); dividing it out gives baseline rates."""
        return self.operators(u, forcing).baseline_scalar()

    def observable(self, state: Float[Array, "*site pool layer"]) -> Float[Array, "*site layer"]:
        """SOC per layer that is compared with observations (gC m-3)."""
        return _observable(state, self.soc_pools)


# ---------------------------------------------------------------------------
# CLM5
# ---------------------------------------------------------------------------

_CWD, _L1, _L2, _L3, _S1, _S2, _S3 = range(7)
_CLM5_SOC = (_S1, _S2, _S3)


class CLM5Operators(AbstractOperators):
    """CLM5 at (u, forcing): the whole model is the linear system ``linear``."""

    theta: dict[str, Float[Array, ""]]
    linear: LinearOperators
    environmental: Float[Array, " layer"]

    def steady_state(self) -> SteadyState:
        x, valid, rc = _solve_checked(self.linear.system, self.linear.inputs)
        x = jnp.maximum(x, 0.0)  # PRODA sets negative round-off to zero
        return SteadyState(state=x, soc=_observable(x, _CLM5_SOC), valid=valid, rcond=rc)

    def tendency(self, state):
        return self.linear.inputs - self.linear.system.matvec(state)

    def respiration(self, state):
        return _linear_respiration(self.linear.system, state)

    def decomposition(self, state):
        return self.linear.system.k * state

    def baseline_scalar(self):
        return self.linear.xi


@final
class CLM5(AbstractSoilModel):
    """CLM5's vertically resolved CENTURY-type model in matrix form (7 pools x 20 layers).

    dX/dt = u + A K X - V X; steady state X* = (A K - V)^-1 (-u) with negative
    entries set to 0.  Observable: S1 + S2 + S3.  A profile is invalid when the
    system is numerically singular: reciprocal 1-norm condition number below
    machine epsilon, PRODA's (MATLAB's) rejection rule.

    ``sand_dependent_transfers=True`` replaces f_s1_s2 and f_s1_s3 by CLM5's
    default sand rule (t = 0.85 - 0.0068 (100 - sand); f_s1_s2 = 1 - t - 0.004,
    f_s1_s3 = 0.004, layer by layer from CELLSAND), ignoring those two entries
    of ``u``.
    """

    bedrock: str = "proda"
    sand_dependent_transfers: bool = False

    name: ClassVar[str] = "clm5"
    space: ClassVar[ParamSpace] = CLM5_SPACE
    pool_names: ClassVar[tuple[str, ...]] = ("CWD", "L1", "L2", "L3", "S1", "S2", "S3")
    soc_pools: ClassVar[tuple[int, ...]] = _CLM5_SOC

    default_warmup: ClassVar[int] = 400
    """Warmup (adaptation) iterations per chain when ``calibrate(warmup=None)``.

    Measured with ``benchmarks/recovery.py`` (benchmarks/README.md): CLM5 meets
    PRODA's R-hat rule for 97-98% of 1,000 profiles with 400."""
    default_max_doublings: ClassVar[int] = 6
    """NUTS tree-depth cap when ``NUTS(max_num_doublings=None)``.

    Measured on synthetic profiles (``benchmarks/recovery.py``,
    benchmarks/README.md): a 63-step cap (6) meets PRODA's R-hat rule and a
    deeper cap costs more per draw."""
    default_extend: ClassVar[int] = 0
    """Extension rounds per chain when ``calibrate(extend=None)`` (HMC/NUTS).

    None: CLM5 meets PRODA's R-hat rule for 97-98% of profiles without them,
    and another compiled program per worker would add to its time."""
    default_auto_min_profiles: ClassVar[int] = 200
    """Fewest profiles for which ``calibrate(method="auto")`` trains its flow when none is given
    (:class:`soiljax.calibration.Auto`); smaller runs are sampled by NUTS.

    Measured on two cores (benchmarks/README.md, 2,000 CLM5 profiles):
    training the flow costs about 250 s, NUTS about 2.4 s per profile and
    auto about 0.7 s per profile after training, so auto pays from about
    150 profiles on."""
    default_auto_simulations: ClassVar[int] = 100_000
    """Prior simulations that ``calibrate(method="auto")`` trains its flow on, over all sites
    (:class:`soiljax.calibration.Auto`'s ``simulations``).

    About 72% give a valid steady state.  Measured on 200 CLM5 recovery profiles
    (benchmarks/README.md): with the retry stage, 93.5% of the profiles are
    importance sampled."""

    def operators(self, u, forcing: Forcing) -> CLM5Operators:
        u = self._check_u(u)
        th = self.space.as_dict(self.space.to_physical(u))
        f = forcing
        env_soil, env_litter = environment_means(th["q10"], th["w_scaling"], f.tsoi, f.w_scalar, f.o_scalar, f.fpi_vr)
        xi_d = depth_scalar(th["efolding"])
        # K is the mean over months of the monthly products (as PRODA): CWD and
        # soil pools, and L1-L3 with the nitrogen scalar
        xi_soil = env_soil * xi_d
        xi_litter = env_litter * xi_d
        xi = jnp.stack([xi_soil, xi_litter, xi_litter, xi_litter, xi_soil, xi_soil, xi_soil])
        k_base = turnover_rate(
            jnp.stack(
                [th["tau_cwd"], th["tau_l1"], th["tau_l2_l3"], th["tau_l2_l3"], th["tau_s1"], th["tau_s2"], th["tau_s3"]]
            )
        )
        k = k_base[:, None] * xi
        ones = jnp.ones(N_LAYERS)
        if self.sand_dependent_transfers:
            sand = jnp.clip(forcing.cellsand, 0.0, 100.0)
            t = 0.85 - 0.0068 * (100.0 - sand)
            f_s1_s3 = 0.004 * ones
            f_s1_s2 = (1.0 - t) - f_s1_s3
        else:
            f_s1_s2 = th["f_s1_s2"] * ones
            f_s1_s3 = th["f_s1_s3"] * ones
        transfers = {
            (_L2, _CWD): th["f_cwd_l2"] * ones,
            (_L3, _CWD): (1.0 - th["f_cwd_l2"]) * ones,
            (_S1, _L1): th["f_l1_s1"] * ones,
            (_S1, _L2): th["f_l2_s1"] * ones,
            (_S2, _L3): th["f_l3_s2"] * ones,
            (_S2, _S1): f_s1_s2,
            (_S3, _S1): f_s1_s3,
            (_S1, _S2): th["f_s2_s1"] * ones,
            (_S3, _S2): th["f_s2_s3"] * ones,
            (_S1, _S3): th["f_s3_s1"] * ones,
        }
        lower, diag, upper = self._transport(th, forcing)
        system = _linear.PoolSystem(
            k=k,
            transfers=transfers,
            lower=lower,
            diag=diag,
            upper=upper,
            transported=(False, True, True, True, True, True, True),
            groups=((_CWD,), (_L1,), (_L2,), (_L3,), (_S1, _S2, _S3)),
        )
        inputs = jnp.concatenate([litter_input(th["beta"], forcing), jnp.zeros((3, N_LAYERS))])
        linear = LinearOperators(system=system, inputs=inputs, k_base=k_base, xi=xi)
        xi_tw = temperature_scalar(th["q10"], forcing.tsoi) * water_scalar(th["w_scaling"], forcing.w_scalar)
        environmental = jnp.mean(xi_tw, axis=0) * xi_d
        return CLM5Operators(theta=th, linear=linear, environmental=environmental)


def _linear_respiration(system: _linear.PoolSystem, state):
    """Respired flux per donor pool: (1 - sum of its transfer fractions) k x."""
    passed = [jnp.zeros(system.n_layers) for _ in range(system.n_pools)]
    for (_r, d), f in system.transfers.items():
        passed[d] = passed[d] + f
    return (1.0 - jnp.stack(passed)) * system.k * state


def _solve_checked(system: _linear.PoolSystem, rhs):
    """Solve N x = rhs with a validity flag; invalid systems give x = 0 and zero gradients."""
    fac = jax.lax.stop_gradient(_linear.factorise(system))
    rc = _linear.rcond(fac)
    valid = rc >= _linear.EPS
    # A singular factorisation holds inf/NaN: replace it so that neither the
    # solution nor the implicit (transposed-solve) gradient can carry NaN.
    safe = eqx.tree_at(
        lambda f: f.factors,
        fac,
        jax.tree_util.tree_map(lambda a: jnp.where(valid, a, 0.0), fac.factors),
    )
    x = _linear.solve(system, rhs, fac=safe)
    return x, valid, rc


# ---------------------------------------------------------------------------
# COMPAS
# ---------------------------------------------------------------------------

_DOC, _MIC, _ENZ, _SOC = 4, 5, 6, 7
COMPAS_EFOLDING = 0.5  # m, fixed in COMPAS
MIN_TOTAL_TO_MIC = 10.0  # PRODA: profiles with total / MIC stock below this are rejected


class SoilRates(eqx.Module):
    """COMPAS's soil-pool rates per layer (day-1; half-saturation constants in gC m-3).

    Each rate is the parameter's baseline rate times the environmental scalar
    xi of the layer (the scalar of the CWD pool).
    """

    k_assim: Float[Array, " layer"]
    k_death: Float[Array, " layer"]
    k_enz_prod: Float[Array, " layer"]
    k_enz_decay: Float[Array, " layer"]
    k_decom: Float[Array, " layer"]
    km_assim: Float[Array, " layer"]
    km_decom: Float[Array, " layer"]

    @classmethod
    def at(cls, th, xi) -> "SoilRates":
        """The rates for physical parameters ``th`` and environmental scalar ``xi``."""
        per_day = lambda tau: xi * turnover_rate(tau)  # noqa: E731
        return cls(
            k_assim=per_day(th["tau_assim"]),
            k_death=per_day(th["tau_mic_death"]),
            k_enz_prod=per_day(th["tau_enz_prod"]),
            k_enz_decay=per_day(th["tau_enz_decay"]),
            k_decom=per_day(th["tau_decom"]),
            km_assim=th["km_assim"] * xi,
            km_decom=th["km_decom"] * xi,
        )

    def uptake(self, doc, mic):
        """DOC taken up by microbes (Michaelis-Menten in DOC)."""
        return self.k_assim * mic * doc / (self.km_assim + doc)

    def depolymerisation(self, enz, soc):
        """Mineral SOC depolymerised by enzymes (Michaelis-Menten in SOC)."""
        return self.k_decom * enz * soc / (self.km_decom + soc)


class COMPASOperators(AbstractOperators):
    """COMPAS at (u, forcing): the linear litter system ``linear`` feeding the
    nonlinear soil pools, whose rates are ``soil``."""

    theta: dict[str, Float[Array, ""]]
    linear: LinearOperators
    environmental: Float[Array, " layer"]
    soil: SoilRates

    def soil_inputs(self, litter):
        """Carbon entering DOC, MIC and SOC from the decomposition of the ``litter`` pools."""
        th = self.theta
        litter_flux = self.linear.system.k * litter
        f1, f2, f3 = litter_flux[1], litter_flux[2], litter_flux[3]
        in_doc = th["p_l1_doc"] * f1 + th["p_l2_doc"] * f2
        in_soc = th["p_l3_soc"] * f3
        in_mic = (
            (1.0 - th["p_l1_doc"]) * th["cue_l1"] * f1
            + (1.0 - th["p_l2_doc"]) * th["cue_l2_l3"] * f2
            + (1.0 - th["p_l3_soc"]) * th["cue_l2_l3"] * f3
        )
        return in_doc, in_mic, in_soc

    def steady_state(self) -> SteadyState:
        th, r = self.theta, self.soil
        litter, litter_ok, rc = _solve_checked(self.linear.system, self.linear.inputs)
        litter = jnp.maximum(litter, 0.0)
        in_doc, in_mic, in_soc = self.soil_inputs(litter)
        c, p = th["cue_doc"], th["p_death_soc"]
        kk = r.k_death + r.k_enz_prod
        mic, ok1 = _safe_div(in_mic + c * (in_soc + in_doc), (1.0 - c) * kk)
        enz, ok2 = _safe_div(r.k_enz_prod * mic, r.k_enz_decay)
        soc, ok3 = _safe_div(
            (in_soc + p * r.k_death * mic) * r.km_decom,
            r.k_decom * enz - p * r.k_death * mic - in_soc,
        )
        doc, ok4 = _safe_div((kk * mic - in_mic) * r.km_assim, (c * r.k_assim - kk) * mic + in_mic)
        finite = jnp.all(ok1 & ok2 & ok3 & ok4)
        state = jnp.concatenate([litter, jnp.stack([doc, mic, enz, soc])])
        total = doc + mic + enz + soc
        dz = jnp.asarray(DZ)
        total_stock = jnp.sum(total * dz)
        mic_stock = jnp.sum(mic * dz)
        non_negative = jnp.all(state >= 0)
        ratio_ok = total_stock >= MIN_TOTAL_TO_MIC * mic_stock
        valid = litter_ok & finite & non_negative & ratio_ok
        return SteadyState(state=state, soc=total, valid=valid, rcond=rc)

    def tendency(self, state):
        th, r = self.theta, self.soil
        litter = state[:4]
        d_litter = self.linear.inputs - self.linear.system.matvec(litter)
        in_doc, in_mic, in_soc = self.soil_inputs(litter)
        doc, mic, enz, soc = state[_DOC], state[_MIC], state[_ENZ], state[_SOC]
        uptake = r.uptake(doc, mic)
        decom = r.depolymerisation(enz, soc)
        c, p = th["cue_doc"], th["p_death_soc"]
        death = r.k_death * mic
        d_mic = in_mic + c * uptake - (r.k_death + r.k_enz_prod) * mic
        d_enz = r.k_enz_prod * mic - r.k_enz_decay * enz
        d_soc = in_soc + p * death - decom
        d_doc = in_doc + (1.0 - p) * death + r.k_enz_decay * enz + decom - uptake
        return jnp.concatenate([d_litter, jnp.stack([d_doc, d_mic, d_enz, d_soc])])

    def respiration(self, state):
        th = self.theta
        flux = self.linear.system.k * state[:4]
        f1, f2, f3 = flux[1], flux[2], flux[3]
        # litter decomposed by microbes loses (1 - CUE)
        resp_l1 = (1.0 - th["p_l1_doc"]) * (1.0 - th["cue_l1"]) * f1
        resp_l2 = (1.0 - th["p_l2_doc"]) * (1.0 - th["cue_l2_l3"]) * f2
        resp_l3 = (1.0 - th["p_l3_soc"]) * (1.0 - th["cue_l2_l3"]) * f3
        resp_doc = (1.0 - th["cue_doc"]) * self.soil.uptake(state[_DOC], state[_MIC])
        zero = jnp.zeros(N_LAYERS)
        return jnp.stack([zero, resp_l1, resp_l2, resp_l3, resp_doc, zero, zero, zero])

    def decomposition(self, state):
        r = self.soil
        doc, mic, enz, soc = state[_DOC], state[_MIC], state[_ENZ], state[_SOC]
        mic_turnover = (r.k_death + r.k_enz_prod) * mic
        enz_turnover = r.k_enz_decay * enz
        soil = jnp.stack([r.uptake(doc, mic), mic_turnover, enz_turnover, r.depolymerisation(enz, soc)])
        return jnp.concatenate([self.linear.system.k * state[:4], soil])

    def baseline_scalar(self):
        xi = self.linear.xi
        return jnp.concatenate([xi, jnp.broadcast_to(xi[0], (4, N_LAYERS))])


@final
class COMPAS(AbstractSoilModel):
    """COMPAS: litter as in CLM5 (4 pools, linear, L1-L3 transported) feeding
    four immobile soil pools per layer (DOC, MIC, ENZ, mineral SOC) with
    Michaelis-Menten DOC uptake and SOC depolymerisation (8 pools x 20 layers).

    Steady state: the 80-state litter system is solved exactly (negatives to 0),
    the soil pools by the closed form of Georgiou et al. (2017).  A profile is
    invalid (PRODA's rule) when the litter system is numerically singular, a
    layer has no finite steady state, any pool is negative, or the total soil
    carbon stock is less than 10 times the microbial stock.  Observable: DOC +
    MIC + ENZ + SOC.

    ``proda_enzyme_quirk=True`` reproduces the original code, where the enzyme
    turnover time is driven by the u of ``km_assim`` instead of its own.
    """

    bedrock: str = "proda"
    proda_enzyme_quirk: bool = False

    name: ClassVar[str] = "compas"
    space: ClassVar[ParamSpace] = COMPAS_SPACE
    pool_names: ClassVar[tuple[str, ...]] = ("CWD", "L1", "L2", "L3", "DOC", "MIC", "ENZ", "SOC")
    soc_pools: ClassVar[tuple[int, ...]] = (_DOC, _MIC, _ENZ, _SOC)

    default_warmup: ClassVar[int] = 800
    """Warmup (adaptation) iterations per chain when ``calibrate(warmup=None)``.

    Measured with ``benchmarks/recovery.py`` (benchmarks/README.md): PRODA's
    R-hat rule went from 87% to 93% of 30 profiles when the warmup went from
    400 to 800, and held for 91% of 90 profiles with 800 (COMPAS's stiff
    posteriors need longer to adapt the step size and the mass matrix)."""
    default_max_doublings: ClassVar[int] = 10
    """NUTS tree-depth cap when ``NUTS(max_num_doublings=None)``.

    Measured on synthetic profiles (``benchmarks/recovery.py``,
    benchmarks/README.md): COMPAS's posteriors are stiff ridges
    (preconditioned curvature up to ~10^4: adapted step sizes ~0.01), so 63
    steps barely move a chain: a 1023-step cap (10) gives ~20x the effective
    samples for ~6x the gradient evaluations, and the R-hat rule goes from 29%
    to 87% of profiles."""
    default_extend: ClassVar[int] = 3
    """Extension rounds per chain when ``calibrate(extend=None)`` (HMC/NUTS).

    Measured with ``benchmarks/recovery.py`` (benchmarks/README.md): COMPAS
    profiles that fail PRODA's R-hat rule after 500 draws mostly mix slowly
    rather than sit in separate modes, and longer chains pass (the rule went
    from 90% to 97% of 60 profiles, for 41% more wall time)."""
    default_auto_min_profiles: ClassVar[int] = 32
    """Fewest profiles for which ``calibrate(method="auto")`` trains its flow when none is given
    (:class:`soiljax.calibration.Auto`); smaller runs are sampled by NUTS.

    Measured on two cores (benchmarks/README.md, COMPAS paragraph of
    "Calibration at scale"): NUTS costs about 29 s per profile, training the
    flow about 480 s and auto about 7 s per profile after training, so auto
    pays from about 22 profiles on."""
    default_auto_simulations: ClassVar[int] = 340_000
    """Prior simulations that ``calibrate(method="auto")`` trains its flow on, over all sites
    (:class:`soiljax.calibration.Auto`'s ``simulations``).

    Only about 30% give a valid steady state.  Measured on 96 COMPAS recovery
    profiles (benchmarks/README.md): trained on 100,000 (30,000 valid), the
    flow's importance sampling passed k-hat and ESS for 43% of the profiles
    after the retry stage; on 340,000 (100,000 valid), for 83%."""

    def _theta(self, u):
        u = self._check_u(u)
        if self.proda_enzyme_quirk:
            u = u.at[self.space.index("tau_enz_decay")].set(u[self.space.index("km_assim")])
        return self.space.as_dict(self.space.to_physical(u))

    def operators(self, u, forcing: Forcing) -> COMPASOperators:
        th = self._theta(u)
        xi_t = jnp.mean(temperature_scalar(th["q10"], forcing.tsoi), axis=0)
        xi_w = jnp.mean(water_scalar(th["w_scaling"], forcing.w_scalar), axis=0)
        xi_o = jnp.mean(forcing.o_scalar, axis=0)
        xi_d = jnp.exp(-jnp.asarray(ZSOI) / COMPAS_EFOLDING)
        xi = xi_t * xi_w * xi_o * xi_d
        xi_n = jnp.mean(forcing.fpi_vr, axis=0)
        # the litter sub-system (CWD, L1, L2, L3)
        k_base = turnover_rate(jnp.stack([th["tau_cwd"], th["tau_l1"], th["tau_l2_l3"], th["tau_l2_l3"]]))
        xi_p = jnp.stack([xi, xi * xi_n, xi * xi_n, xi * xi_n])
        ones = jnp.ones(N_LAYERS)
        lower, diag, upper = self._transport(th, forcing)
        system = _linear.PoolSystem(
            k=k_base[:, None] * xi_p,
            transfers={(_L2, _CWD): th["f_cwd_l2"] * ones, (_L3, _CWD): (1.0 - th["f_cwd_l2"]) * ones},
            lower=lower,
            diag=diag,
            upper=upper,
            transported=(False, True, True, True),
            groups=((_CWD,), (_L1,), (_L2,), (_L3,)),
        )
        linear = LinearOperators(system=system, inputs=litter_input(th["beta"], forcing), k_base=k_base, xi=xi_p)
        return COMPASOperators(
            theta=th, linear=linear, environmental=xi_t * xi_w * xi_d, soil=SoilRates.at(th, xi_p[0])
        )


@jax.custom_jvp
def _quotient(num, den):
    """``num / den`` whose derivative never squares ``den``.

    The default rule ``dnum / den - num * dden / den**2`` overflows (or
    gives 0/0) when ``den`` is tiny but finite, e.g. ~1e-170 for the litter
    of a layer below bedrock, although the quotient and its true derivative
    are moderate.  Here the tangent is ``(dnum - q * dden) / den``.
    """
    return num / den


@_quotient.defjvp
def _quotient_jvp(primals, tangents):
    num, den = primals
    dnum, dden = tangents
    q = num / den
    q_finite = jnp.where(jnp.isfinite(q), q, 0.0)
    return q, (dnum - q_finite * dden) / den


def _safe_div(num, den):
    """num / den, or 0 with a False flag where den == 0 (PRODA's 0/0 = NaN case).

    Negative quotients are kept (PRODA rejects them through its negativity rule);
    the double ``where`` and :func:`_quotient`'s derivative keep value and
    gradient free of NaN.
    """
    nonzero = den != 0
    q = _quotient(num, jnp.where(nonzero, den, 1.0))
    ok = nonzero & jnp.isfinite(q)
    return jnp.where(ok, q, 0.0), ok


__all__ = [
    "AbstractOperators",
    "AbstractSoilModel",
    "BEDROCK_MODES",
    "CLM5",
    "CLM5Operators",
    "COMPAS",
    "COMPASOperators",
    "LinearOperators",
    "SoilRates",
    "SteadyState",
]
