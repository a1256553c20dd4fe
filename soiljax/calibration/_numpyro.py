"""The calibration posterior as a NumPyro model: an independent cross-check.

:func:`numpyro_model` writes the posterior of :func:`soiljax.calibration.log_density`
for a batch of profiles in NumPyro's language: the scaled parameters ``u``
(site, param) get PRODA's uniform prior on (0, 1), and one ``numpyro.factor``
adds every profile's log likelihood of its observations, ``-inf`` where the
steady state is invalid.  NumPyro maps ``u`` to unconstrained space with the
same sigmoid as :meth:`soiljax.ParamSpace.u_from_z` and adds the log-Jacobian
itself, so its potential energy at ``z = logit(u)`` is minus the sum of the
profiles' :func:`~soiljax.calibration.log_density` at ``z``.

:func:`sample_numpyro` samples that model with NumPyro's NUTS (chains
vectorised).  The sites form one joint model, so one step size, one mass
matrix and one trajectory serve all of them, and an invalid proposal at any
site rejects the whole joint proposal: correct, but less efficient than
:func:`~soiljax.calibration.calibrate`, which runs an independent sampler per
profile.  Use it to validate the samplers on a few tens of profiles, not for
production runs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._likelihood import AbstractLikelihood, log_likelihood


def _site_log_likelihood(model, likelihood, forcing, obs):
    """Log likelihood of every profile at u (site, param); -inf where invalid."""
    return jax.vmap(lambda u, f, o: log_likelihood(model, likelihood, f, o)(u))


def _check_batch(forcing, obs):
    if len(forcing.batch_shape) != 1:
        raise ValueError(f"expected a forcing with one leading site axis, got batch shape {forcing.batch_shape}")
    if obs.batch_shape != forcing.batch_shape:
        raise ValueError(
            f"the observations have batch shape {obs.batch_shape} but the forcing has {forcing.batch_shape}; "
            "pass one observed profile per forcing site, in the same order"
        )


def numpyro_model(model, likelihood: AbstractLikelihood, forcing, obs):
    """A NumPyro model (a function of no arguments) of the profiles' joint posterior.

    ``forcing`` and ``obs`` hold the same sites (one leading site axis).  The
    model has one sample site ``"u"`` (site, param) with a uniform prior on
    (0, 1) and one factor ``"log_likelihood"``.
    """
    import numpyro
    import numpyro.distributions as dist

    _check_batch(forcing, obs)
    n_sites, d = forcing.batch_shape[0], model.n_params
    site_ll = _site_log_likelihood(model, likelihood, forcing, obs)

    def soil_model():
        u = numpyro.sample("u", dist.Uniform(0.0, 1.0).expand([n_sites, d]).to_event(2))
        numpyro.factor("log_likelihood", jnp.sum(site_ll(u, forcing, obs)))

    return soil_model


def _initial_u(model, likelihood, forcing, obs, key, num_chains: int, n_candidates: int = 16):
    """Per chain and site the first of ``n_candidates`` draws of u in U(0.1, 0.9)^d
    with a finite likelihood (the most likely one if none is): (chain, site, param)."""
    n_sites, d = forcing.batch_shape[0], model.n_params
    site_ll = _site_log_likelihood(model, likelihood, forcing, obs)

    @jax.jit
    def pick(key):
        u = jax.random.uniform(key, (num_chains, n_candidates, n_sites, d), minval=0.1, maxval=0.9)
        ll = jax.vmap(jax.vmap(lambda uu: site_ll(uu, forcing, obs)))(u)  # (chain, cand, site)
        finite = jnp.isfinite(ll)
        best = jnp.where(finite.any(axis=1), jnp.argmax(finite, axis=1), jnp.argmax(ll, axis=1))  # (chain, site)
        return jnp.take_along_axis(u, best[:, None, :, None], axis=1)[:, 0]

    return pick(key)


def sample_numpyro(
    model,
    likelihood: AbstractLikelihood,
    forcing,
    obs,
    *,
    num_warmup: int,
    num_samples: int,
    num_chains: int = 3,
    seed: int = 0,
    max_tree_depth: int = 10,
    target_accept_prob: float = 0.8,
) -> np.ndarray:
    """NUTS draws of u (site, chain, draw, param) from :func:`numpyro_model`.

    Runs ``numpyro.infer.MCMC(NUTS(...), chain_method="vectorized")`` with a
    diagonal mass matrix.  Every chain starts, per site, at the first of 16
    random u in U(0.1, 0.9)^d with a valid steady state.
    """
    from numpyro.infer import MCMC, NUTS, init_to_value

    soil_model = numpyro_model(model, likelihood, forcing, obs)
    k_init, k_run = jax.random.split(jax.random.PRNGKey(seed))
    u0 = _initial_u(model, likelihood, forcing, obs, k_init, num_chains)
    z0 = model.space.z_from_u(u0)
    # NumPyro checks its init strategy even when init_params are given: point it at a valid state
    kernel = NUTS(soil_model, max_tree_depth=max_tree_depth, target_accept_prob=target_accept_prob,
                  init_strategy=init_to_value(values={"u": u0[0]}))
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(k_run, init_params={"u": z0})
    u = np.asarray(mcmc.get_samples(group_by_chain=True)["u"])  # (chain, draw, site, param)
    return np.transpose(u, (2, 0, 1, 3))
