"""Training data from files: the sites of a covariate file paired by label with
those of a posterior, a forcing and an observation file.

The files of a study list their sites in any order, and not every site of
one file is in another (a calibration covers the observed sites only; a
covariate file may hold more sites).  These functions pair them by their
``site`` labels and return the rows each training loop takes:

:func:`posterior_means`
    the labels and posterior means ``u_mean`` of a calibration's posterior,
    checked to be those of the model's parameters, by name.
:func:`two_stage_data`
    the covariates and posterior means of the calibrated sites, optionally
    only PRODA's accepted ones (for :func:`train_two_stage`).
:func:`end_to_end_data`
    the covariates, forcing and observations of the observed sites with
    usable profiles, and optionally their posterior means as a prior (for
    :func:`train_end_to_end`).

Every problem (a missing variable or label, sites of one file missing from
the covariates) raises ``ValueError`` with a one-line message naming the file.
"""

from __future__ import annotations

import numpy as np

from ._learner import model_name_of, model_space

MIN_FILTERED = 3
"""Fewest profiles that must pass PRODA's filter for two-stage training on them."""


def _labels(ds, source: str) -> np.ndarray:
    """The ``site`` labels of a dataset as strings (files must label their sites)."""
    if "site" not in ds.coords and "site" not in ds:
        raise ValueError(f"{source} has no 'site' coordinate: files must label their sites so they can be matched")
    return np.asarray(ds["site"].values).astype(str)


def match_sites(sites, wanted, what: str) -> np.ndarray:
    """Indices into the covariate file's ``sites`` of the labels ``wanted``, all of which must be there;
    ``what`` names the other file in the message (``"posterior"``, ``"forcing file"``)."""
    pos = {lab: i for i, lab in enumerate(np.asarray(sites).astype(str))}
    wanted = np.asarray(wanted).astype(str)
    missing = [w for w in wanted if w not in pos]
    if missing:
        raise ValueError(f"{len(missing)} site(s) of the {what} are not in the covariate file "
                         f"(first: {missing[0]}); the files must describe the same sites")
    return np.array([pos[w] for w in wanted], dtype=int)


def posterior_means(post, model, *, source: str = "the posterior") -> tuple[np.ndarray, np.ndarray]:
    """``(sites, u_mean)`` of a posterior dataset (:func:`soiljax.calibration.read_posterior`): its
    site labels (strings) and posterior means (site, param), checked to be the parameters of
    ``model`` (a model, its class or its name) by the ``param`` coordinate.  ``source`` names
    the posterior in messages (e.g. ``"posterior file 'post.nc'"``)."""
    name = model_name_of(model)
    param_names = model_space(name).names
    if "u_mean" not in post:
        raise ValueError(f"{source} has no 'u_mean'; write one with soiljax calibrate")
    if "param" not in post.coords:
        raise ValueError(f"{source} has no 'param' coordinate, so its parameters cannot be matched to those of "
                         f"{name} by name; write it with soiljax calibrate")
    if tuple(map(str, post["param"].values)) != tuple(param_names):
        raise ValueError(f"the parameters of {source} are not those of {name} "
                         f"({', '.join(map(str, post['param'].values[:3]))}, ...); calibrate the same model")
    if post["u_mean"].dims != ("site", "param"):
        raise ValueError(f"'u_mean' in {source} has dims {tuple(map(str, post['u_mean'].dims))}, "
                         "expected ('site', 'param')")
    return _labels(post, source), np.asarray(post["u_mean"].values, dtype=float)


def two_stage_data(x, sites, post, model, *, proda_filter: bool = False,
                   source: str = "the posterior") -> tuple[np.ndarray, np.ndarray]:
    """``(x_fit, u_fit)``: the covariate rows and posterior means of the calibrated sites, the
    targets of :func:`train_two_stage`.

    ``x`` (site, covariate) and ``sites`` (labels) are those of a covariate file
    (:func:`soiljax.io.read_covariates`); ``post`` a calibration's posterior of ``model``
    (:func:`posterior_means`).  Sites whose posterior mean is not finite are left out, and
    with ``proda_filter`` those PRODA's filter rejected (the posterior's ``accepted``: mean
    R-hat < 1.05 and NSE > 0); at least :data:`MIN_FILTERED` must pass it.  Every site
    used must be in the covariate file.
    """
    labels, u_mean = posterior_means(post, model, source=source)
    keep = np.ones(len(labels), bool)
    if proda_filter:
        if "accepted" not in post:
            raise ValueError(f"PRODA's filter needs the variable 'accepted' (site) of soiljax calibrate, which "
                             f"{source} lacks")
        keep = np.asarray(post["accepted"].values).astype(bool)
        if keep.sum() < MIN_FILTERED:
            raise ValueError(f"only {int(keep.sum())} profiles pass PRODA's filter in {source}; train on all "
                             "profiles or calibrate longer")
    keep &= np.all(np.isfinite(u_mean), axis=1)
    idx = match_sites(sites, labels[keep], "posterior")
    return np.asarray(x)[idx], u_mean[keep]


def end_to_end_data(x, sites, forcing, forcing_sites, obs, *, post=None, model=None,
                    forcing_source: str = "the forcing", obs_source: str = "the observations",
                    post_source: str = "the posterior"):
    """``(x_fit, forcing_fit, obs_fit, u_prior)``: the observed sites with a usable profile, the
    inputs of :func:`train_end_to_end`.

    ``forcing`` and ``obs`` list the same sites in the same order (one forcing site per
    observed profile), labelled by ``forcing_sites`` (the dataset
    :func:`soiljax.io.read_forcing` returns); ``x`` and ``sites`` are those of a covariate
    file.  Profiles with fewer than two usable layers are left out (e.g. sites whose truth
    was invalid in a synthetic world).  With ``post``, a calibration's posterior of
    ``model``, ``u_prior`` (site, param) holds each site's posterior mean (NaN for a site
    the posterior lacks; at least one site must have one), else it is None.
    ``*_source`` name the files in messages.
    """
    if tuple(obs.batch_shape) != tuple(forcing.batch_shape):
        raise ValueError(f"{forcing_source} has {forcing.batch_shape[0]} sites but {obs_source} has "
                         f"{obs.batch_shape[0]}; give one forcing site per observed profile, in the same order")
    usable = np.asarray(obs.n_usable) >= 2
    f_labels = _labels(forcing_sites, forcing_source)[usable]
    idx = match_sites(sites, f_labels, "forcing file")
    sel = np.flatnonzero(usable)
    u_prior = None
    if post is not None:
        p_labels, u_mean = posterior_means(post, model, source=post_source)
        pos = {lab: i for i, lab in enumerate(p_labels)}
        u_prior = np.full((len(sel), u_mean.shape[1]), np.nan)
        for k, lab in enumerate(f_labels):
            if lab in pos:
                u_prior[k] = u_mean[pos[lab]]
        if not np.isfinite(u_prior).all(axis=1).any():
            raise ValueError(f"no site of the forcing file has a posterior mean in {post_source}, so the prior "
                             "would act on no site; the files must describe the same sites")
    return np.asarray(x)[idx], forcing[sel], obs[sel], u_prior


__all__ = ["MIN_FILTERED", "end_to_end_data", "match_sites", "posterior_means", "two_stage_data"]
