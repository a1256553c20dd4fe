"""Steady states of many sites written to a result file, batch by batch.

:func:`simulate_to_file` solves the steady state of every site of a forcing
file ``batch_size`` sites at a time, with their SOC stocks and system-level
components, and writes each batch to a part file as soon as it is done
(:mod:`soiljax._parts`: a crash loses at most one batch, a rerun resumes);
the parts are merged into one result file (:mod:`soiljax.io.results`) at the
end.  :func:`results_dataset` builds the result dataset of one batch.

Both compute, so they live here and not in :mod:`soiljax.io`;
``soiljax.io.simulate_to_file`` and ``soiljax.io.results_dataset`` still
reach them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import equinox as eqx
import numpy as np
import xarray as xr

from ._engine import BatchBar, run_batches, take
from ._engine import fingerprint as run_fingerprint
from ._forcing import Forcing
from ._grid import DZ, N_LAYERS, ZISOI, ZSOI
from ._parts import parts_dir
from .io._netcdf import FileFormatError
from .io._netcdf import attr_value as _attr_value
from .io._netcdf import model_attrs as _model_attrs
from .io._netcdf import model_name as _model_name
from .io._netcdf import provenance as _provenance
from .io._netcdf import write_dataset as _write
from .io.results import STOCK_DEPTHS
from .io.results import stock_name as _stock_name


def _broadcast_u(model, u, n: int) -> np.ndarray:
    u = np.asarray(u, dtype=float)
    if u.ndim == 1:
        u = np.broadcast_to(u, (n, u.shape[0]))
    if u.ndim != 2 or u.shape != (n, model.space.size):
        raise ValueError(
            f"{_model_name(model)} parameters must have shape ({model.space.size},) or ({n}, {model.space.size}); "
            f"got {u.shape} (a parameter file with one site is broadcast to all sites)"
        )
    return u


def _call_components(model, u, forcing, steady) -> dict:
    from ._diagnostics import system_components

    return system_components(model, u, forcing, steady)


# system_components builds a new vmapped function on every call; one cached
# jit around it compiles once per model configuration and batch shape.
_components = eqx.filter_jit(_call_components)


def results_dataset(
    model,
    u,
    forcing: Forcing,
    steady,
    *,
    sites: xr.Dataset | None = None,
    components: Mapping | None = None,
    attrs: Mapping | None = None,
) -> xr.Dataset:
    """Results of a batch of sites as an :class:`xarray.Dataset`.

    ``steady`` is the :class:`~soiljax.SteadyState` of ``model`` at ``u``
    (site, param) or (param,) and ``forcing`` (leading site axis).
    ``components`` (from :func:`soiljax.system_components`) are computed when
    not given.  ``sites`` (as returned by :func:`read_forcing`) provides the
    ``site`` labels and ``lat``/``lon``/``zone``.
    """
    from ._diagnostics import COMPONENT_LONG_NAMES, COMPONENT_UNITS, soc_stock

    if len(forcing.batch_shape) != 1:
        raise ValueError(f"results_dataset expects a forcing with one leading site axis, got {forcing.batch_shape}")
    n = forcing.batch_shape[0]
    u = _broadcast_u(model, u, n)
    if components is None:
        components = _components(model, u, forcing, steady)
    state = np.asarray(steady.state)
    soc = np.asarray(steady.soc)
    valid = np.asarray(steady.valid).astype(bool)
    data = {
        "state": (
            ("site", "pool", "layer"),
            state,
            {"units": "gC m-3", "long_name": "steady-state carbon per pool and layer"},
        ),
        "soc": (
            ("site", "layer"),
            soc,
            {"units": "gC m-3", "long_name": f"steady-state soil organic carbon ({'+'.join(model.pool_names[p] for p in model.soc_pools)})"},
        ),
        "valid": (
            ("site",),
            valid,
            {"long_name": "steady state accepted by PRODA's rule (1) or rejected (0)", "units": "1"},
        ),
        "rcond": (
            ("site",),
            np.asarray(steady.rcond),
            {"units": "1", "long_name": "reciprocal 1-norm condition number of the linear system solved"},
        ),
        "u": (("site", "param"), u, {"units": "1", "long_name": "scaled parameters used"}),
    }
    for depth in STOCK_DEPTHS:
        data[_stock_name(depth)] = (
            ("site",),
            np.asarray(soc_stock(soc, depth)),
            {"units": "kgC m-2", "long_name": f"SOC stock from the surface to {depth:g} m"},
        )
    for key, unit in COMPONENT_UNITS.items():
        data[key] = (("site",), np.asarray(components[key]), {"units": unit, "long_name": COMPONENT_LONG_NAMES.get(key, key)})
    coords = {
        "site": np.arange(n) if sites is None else np.asarray(sites["site"].values),
        "pool": ("pool", np.array(model.pool_names), {"long_name": "carbon pool"}),
        "layer": ("layer", np.arange(1, N_LAYERS + 1), {"long_name": "soil layer index (1 = top)"}),
        "z": ("layer", np.asarray(ZSOI), {"units": "m", "long_name": "node depth of the layer", "positive": "down"}),
        "dz": ("layer", np.asarray(DZ), {"units": "m", "long_name": "layer thickness"}),
        "z_bottom": ("layer", np.asarray(ZISOI), {"units": "m", "long_name": "depth of the layer's lower interface"}),
        "param": ("param", np.array(model.space.names), {"long_name": f"{model.space.model} parameter name"}),
    }
    if len(coords["site"]) != n:
        raise ValueError(f"sites has {len(coords['site'])} sites but the forcing has {n}")
    ds = xr.Dataset(data, coords=coords)
    if sites is not None:
        for key in sites.variables:
            if key != "site" and sites[key].dims == ("site",):
                ds = ds.assign_coords({key: ("site", np.asarray(sites[key].values), dict(sites[key].attrs))})
    ds.attrs.update(_provenance(f"soiljax {_model_name(model)} steady states"))
    ds.attrs.update(_model_attrs(model))
    if attrs:
        ds.attrs.update({k: _attr_value(v) for k, v in attrs.items()})
    return ds


def _fingerprint(model, u: np.ndarray, forcing: Forcing, batch_size: int, sites=None, attrs=None) -> str:
    """Everything a result file is computed from or carries: model, parameters,
    forcing, batch size, site labels and coordinates, and the caller's attributes."""
    return run_fingerprint(sorted(_model_attrs(model).items()), batch_size,
                           arrays=[u, *forcing.variables().values()], sites=sites, attrs=attrs)


@dataclasses.dataclass
class _SimulationJob:
    """The result dataset of sites ``lo:hi``: ``job(lo, hi, report)`` (pickles, for Dask workers)."""

    model: object
    u: np.ndarray
    forcing: Forcing
    sites: xr.Dataset | None
    attrs: Mapping | None
    batch_size: int
    offset: int = 0  # index of the first site held (a part holds only its batch's sites)

    def part(self, lo: int, hi: int) -> "_SimulationJob":
        """A copy holding only the sites ``lo:hi`` (what one task on a Dask worker needs), called as this job."""
        a, b = lo - self.offset, hi - self.offset
        sites = None if self.sites is None else self.sites.isel(site=slice(a, b))
        return dataclasses.replace(self, u=self.u[a:b], forcing=self.forcing[a:b], sites=sites, offset=lo)

    def __call__(self, lo: int, hi: int, report=None) -> xr.Dataset:
        from ._batch import batched_steady_state

        site_range = (lo, hi)
        lo, hi = lo - self.offset, hi - self.offset  # positions in the sites held
        # every batch padded to one size: one compiled program for all of them
        u_b, f_b = take((self.u, self.forcing), lo, hi, self.batch_size)
        steady = batched_steady_state(self.model, u_b, f_b)
        comps = _components(self.model, u_b, f_b, steady)
        m = hi - lo
        steady = type(steady)(**{k: np.asarray(getattr(steady, k))[:m] for k in ("state", "soc", "valid", "rcond")})
        comps = {k: np.asarray(v)[:m] for k, v in comps.items()}
        sub_sites = None if self.sites is None else self.sites.isel(site=slice(lo, hi))
        ds = results_dataset(self.model, self.u[lo:hi], self.forcing[lo:hi], steady, sites=sub_sites,
                             components=comps, attrs=self.attrs)
        if self.sites is None:
            ds = ds.assign_coords(site=np.arange(*site_range))
        return ds


def _finalize(merged: xr.Dataset) -> xr.Dataset:
    merged["valid"] = merged["valid"].astype(bool)
    return merged


def simulate_to_file(
    model,
    u,
    forcing: Forcing,
    path,
    *,
    sites: xr.Dataset | None = None,
    batch_size: int = 4096,
    progress: bool | Callable = False,
    resume: bool = True,
    attrs: Mapping | None = None,
    workers: int = 1,
    client=None,
) -> xr.Dataset:
    """Steady states, stocks and components of every site, written to ``path``.

    Sites are computed ``batch_size`` at a time; each batch is written to its
    own part file in ``<path>.parts/`` as soon as it is done, so an
    interrupted run loses at most one batch.  Calling again with the same
    inputs (``resume=True``) skips the batches already on disk; with other
    inputs it refuses (remove the folder or pass ``resume=False``, which
    starts over).  When every batch is done the parts are merged into
    ``path`` and the folder is removed.  Returns the merged dataset.

    ``workers`` > 1 computes that many batches at a time on an embedded Dask
    cluster of pinned worker processes; ``client`` (a ``distributed.Client``)
    runs them on that cluster instead (:mod:`soiljax._dask`).  Results do not
    depend on either.  ``progress=True`` shows a tqdm bar over batches; a
    callable is used as the wrapper (``progress(iterable, total=...)``).
    """
    from ._dask import cluster
    from ._parts import PartsMismatchError

    if len(forcing.batch_shape) != 1:
        raise ValueError(f"simulate_to_file expects a forcing with one leading site axis, got {forcing.batch_shape}")
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers={workers!r} must be a whole number >= 1")
    n = forcing.batch_shape[0]
    u = _broadcast_u(model, u, n)
    batch_size = max(1, min(int(batch_size), n))
    n_batches = -(-n // batch_size)
    bar = BatchBar(progress, n_batches, desc=f"{_model_name(model)} batches")
    try:
        with cluster(workers=workers, client=client, echo=bar.echo) as dask_client:
            job = _SimulationJob(model, u, forcing if dask_client is None else _host(forcing), sites, attrs, batch_size)
            return run_batches(job, n, batch_size, out=path, fingerprint=_fingerprint(model, u, forcing, batch_size,
                                                                                        sites, attrs),
                               write=_write, required="state", resume=resume, batch_done=bar.done, kept=bar.kept,
                               client=dask_client, finalize=_finalize)
    except PartsMismatchError as exc:
        raise FileFormatError(
            f"{str(parts_dir(path))!r} holds part files of a run with other inputs (forcing, parameters, model "
            "or batch size); remove that folder or start over with resume=False (--restart)"
        ) from exc
    finally:
        bar.close()


def _host(tree):
    """``tree`` with numpy arrays (it pickles without a device)."""
    import jax

    return jax.tree_util.tree_map(np.asarray, tree)


__all__ = ["results_dataset", "simulate_to_file"]
