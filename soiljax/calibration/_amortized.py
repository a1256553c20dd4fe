"""Amortised neural posterior estimation (NPE): the approximation of ``method="auto"``.

One conditional normalising flow ``q(z | c)`` serves every profile of a run:
it maps a profile's observations and its site's forcing (the conditioning
vector ``c``) to a distribution of the parameters ``z = logit(u)``.
``calibrate(method="auto")`` then corrects it per profile by importance
sampling with PSIS (:func:`~soiljax.calibration.flow_importance_sample`), and
sends the profiles whose weights fail their checks to NUTS.

**Training data** (:func:`train_amortizer`).  At each of the run's own sites,
``simulations / sites`` parameter vectors are drawn from the prior (``u``
uniform), the model's steady state is observed at that site's depths
(:func:`~soiljax.calibration.predict`), and noise is added: log-normal with
the site's relative error (``soc_sd / soc`` where the observations give it,
``noise`` where they do not), the error model of :class:`LogNormal`.  Draws
whose steady state is invalid are dropped (the posterior is zero there).  The
flow only proposes: the importance weights use the run's own likelihood, so a
different error model costs efficiency, never correctness.

**Conditioning vector** (:func:`site_features`).  Per observation slot: the
log SOC, the mask, the depth and the log relative error (zeros in padded
slots); then 17 forcing summaries: the monthly means of ``tsoi``,
``w_scalar``, ``o_scalar`` and ``fpi_vr`` over layers 1-5, 6-10 and 11-20,
the mean ``altmax`` and ``nbedrock``, the log annual input, the log share of
coarse woody debris in it and the mean sand content.  Features are
standardised with the training set's mean and standard deviation.

**Flow.**  A rational-quadratic spline coupling flow (flowjax, on Equinox):
sampling and density are both one pass per layer, which importance sampling
needs (draws from the flow, densities of the prior's draws).  It is fitted by
maximum likelihood (the forward KL divergence, which makes it cover the
posterior's mass rather than one mode) with Adam, early stopping on a 10%
validation split, in float32, and proposes in float32 (the importance
weights are computed in the run's precision); both run with 64-bit types off
(:func:`flow_precision`), without which flowjax would promote them to float64.

**Domain.**  A site whose standardised features lie outside the training
range widened by ``margin`` times that range on both sides, or whose profile
has more observed layers than the amortizer has slots, is outside the
amortizer's domain (:meth:`Amortizer.conditions`); ``calibrate`` samples it
with NUTS (``fallback_reason`` ``"outside_amortizer"``).

**Files.**  :func:`save_amortizer` writes a JSON header line (the settings
needed to rebuild the flow, the model, the training statistics) followed by
Equinox's serialised leaves; :func:`load_amortizer` reads it back.
"""

from __future__ import annotations

import contextlib
import hashlib
import io as _io
import json
import time
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._forcing import Forcing
from .._registry import model_name
from ._likelihood import predict

N_FORCING_FEATURES = 17
"""Forcing summaries in the conditioning vector (see the module docstring)."""
FEATURES_PER_SLOT = 4
"""log SOC, mask, depth and log relative error of each observation slot."""
FILE_FORMAT = "soiljax-amortizer-1"
"""First key of a saved amortizer's header: what :func:`load_amortizer` accepts."""


class AmortizerError(ValueError):
    """An amortizer file cannot be read, or the amortizer does not fit the run (another model)."""


def forcing_features(forcing: Forcing) -> np.ndarray:
    """The 17 forcing summaries of every site (site, 17); see the module docstring."""
    def layers(a):
        a = np.asarray(a, dtype=float).mean(axis=-2)  # monthly mean, per layer
        return np.stack([a[..., :5].mean(-1), a[..., 5:10].mean(-1), a[..., 10:].mean(-1)], axis=-1)

    inputs = sum(np.asarray(getattr(forcing, v), dtype=float) for v in
                 ("cwd_input", "litr1_input", "litr2_input", "litr3_input")).sum(-1)
    cwd = np.asarray(forcing.cwd_input, dtype=float).sum(-1)
    scalars = np.stack([np.asarray(forcing.altmax, dtype=float).mean(-1),
                        np.asarray(forcing.nbedrock, dtype=float).mean(-1),
                        np.log(np.maximum(inputs, 1e-12)),
                        np.log(np.maximum(cwd, 1e-3) / np.maximum(inputs, 1e-12)),
                        np.asarray(forcing.cellsand, dtype=float).mean(-1)], axis=-1)
    return np.concatenate([layers(forcing.tsoi), layers(forcing.w_scalar), layers(forcing.o_scalar),
                           layers(forcing.fpi_vr), scalars], axis=-1)


def relative_error(soc, soc_sd, noise: float) -> np.ndarray:
    """Each layer's relative error: ``soc_sd / soc`` where given (finite, > 0), else ``noise``."""
    soc = np.asarray(soc, dtype=float)
    soc_sd = np.asarray(soc_sd, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        given = np.isfinite(soc_sd) & (soc_sd > 0) & np.isfinite(soc) & (soc > 0)
        return np.where(given, soc_sd / np.where(given, soc, 1.0), noise)


def obs_features(log_soc, mask, depth, rel_error) -> np.ndarray:
    """The observation part of the conditioning vector (..., slots * 4); zeros in padded slots."""
    mask = np.asarray(mask, bool)
    return np.concatenate([np.where(mask, log_soc, 0.0), mask.astype(float), np.where(mask, depth, 0.0),
                           np.where(mask, np.log(rel_error), 0.0)], axis=-1)


def site_features(forcing: Forcing, obs, noise: float, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """The raw conditioning vector of every site (site, 4 * slots + 17) and whether every
    observed layer found a slot (site,): profiles with more than ``slots`` observed layers do not."""
    depth = np.asarray(obs.depth, dtype=float)
    mask = np.asarray(obs.mask, bool)
    soc = np.asarray(obs.soc, dtype=float)
    fits = mask[:, slots:].sum(axis=1) == 0
    k = min(slots, depth.shape[1])
    pad = [(0, 0), (0, slots - k)]
    depth, mask, soc = np.pad(depth[:, :k], pad), np.pad(mask[:, :k], pad), np.pad(soc[:, :k], pad, constant_values=1.0)
    soc_sd = np.pad(np.asarray(obs.soc_sd, dtype=float)[:, :k], pad, constant_values=np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_soc = np.log(np.where(mask, soc, 1.0))
    feats = np.concatenate([obs_features(log_soc, mask, depth, relative_error(soc, soc_sd, noise)),
                            forcing_features(forcing)], axis=-1)
    return feats, fits


@contextlib.contextmanager
def flow_precision():
    """Trace a float32 flow in float32: 64-bit types off inside (``jax.enable_x64(False)``).

    With 64-bit types on (as soiljax runs its models), a flowjax flow whose
    weights are float32 still computes in float64: its base distribution and
    some of its constants are float64 and promote every layer.  Training the
    flow and drawing from it therefore run inside this context, on float32
    inputs: about 1.8 times faster on a CPU (``benchmarks/README.md``).
    flowjax asks for 64-bit dtypes in places; inside, they are 32-bit as
    intended, and the warnings saying so are silenced.
    """
    with warnings.catch_warnings(), jax.enable_x64(False):
        warnings.filterwarnings("ignore", message="Explicitly requested dtype")
        yield


def _build_flow(key, dim: int, cond_dim: int, flow_layers: int, nn_width: int, knots: int, interval: float):
    from flowjax.bijections import RationalQuadraticSpline
    from flowjax.distributions import StandardNormal
    from flowjax.flows import coupling_flow

    return coupling_flow(key, base_dist=StandardNormal((dim,)), cond_dim=cond_dim, flow_layers=flow_layers,
                         nn_width=nn_width, transformer=RationalQuadraticSpline(knots=knots, interval=interval))


def _cast(tree, dtype):
    return jax.tree_util.tree_map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, tree)


def _stored(amortizer):
    """The amortizer as it is saved: the flow in float32 (as trained), the feature statistics in float64."""
    arrays = tuple(np.asarray(getattr(amortizer, k), dtype=np.float64) for k in ("mean", "sd", "lo", "hi"))
    out = eqx.tree_at(lambda a: a.flow, amortizer, _cast(amortizer.flow, jnp.float32))
    return eqx.tree_at(lambda a: (a.mean, a.sd, a.lo, a.hi), out, arrays)


class Amortizer(eqx.Module):
    """A trained conditional flow ``q(z | c)`` and what is needed to use it (see the module docstring).

    ``flow`` is a flowjax distribution over ``z`` (param,); ``mean``/``sd``
    standardise the conditioning vector, ``lo``/``hi`` are the standardised
    training range.  Build one with :func:`train_amortizer`, keep it with
    :func:`save_amortizer`, read it with :func:`load_amortizer`.
    """

    flow: eqx.Module
    mean: np.ndarray
    sd: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    model: str = eqx.field(static=True)
    n_params: int = eqx.field(static=True)
    slots: int = eqx.field(static=True)
    noise: float = eqx.field(static=True)
    flow_layers: int = eqx.field(static=True)
    nn_width: int = eqx.field(static=True)
    knots: int = eqx.field(static=True)
    interval: float = eqx.field(static=True)
    margin: float = eqx.field(static=True, default=0.1)
    info: tuple = eqx.field(static=True, default=())
    """Training statistics as (name, value) pairs: simulations, valid share, epochs, losses, seconds."""

    def conditions(self, model, forcing: Forcing, obs) -> tuple[np.ndarray, np.ndarray]:
        """Standardised conditioning vectors (site, feature) and whether each site is inside the
        amortizer's domain (site,).  Raises when the amortizer was trained for another model."""
        name = model_name(model)
        if name != self.model or model.n_params != self.n_params:
            raise AmortizerError(f"the amortizer was trained for {self.model} ({self.n_params} parameters), not "
                             f"{name} ({model.n_params}); train one for this model (soiljax calibrate --method auto "
                             f"--amortizer NEW_FILE)")
        raw, fits = site_features(forcing, obs, self.noise, self.slots)
        c = (raw - self.mean) / self.sd
        width = self.hi - self.lo
        inside = np.all((c >= self.lo - self.margin * width) & (c <= self.hi + self.margin * width), axis=1)
        return c, fits & inside & np.all(np.isfinite(c), axis=1)

    def digest(self) -> str:
        """A hash of the flow's weights and settings: part of a run's fingerprint."""
        buf = _io.BytesIO()
        eqx.tree_serialise_leaves(buf, _stored(self))
        return hashlib.sha256(buf.getvalue() + json.dumps(self._header(), sort_keys=True).encode()).hexdigest()[:16]

    def _header(self) -> dict:
        return {"format": FILE_FORMAT, "model": self.model, "n_params": self.n_params, "slots": self.slots,
                "noise": self.noise, "flow_layers": self.flow_layers, "nn_width": self.nn_width, "knots": self.knots,
                "interval": self.interval, "margin": self.margin, "n_features": int(self.mean.shape[0]),
                "info": dict(self.info)}


def _simulate(model, forcing, obs, per_site: int, noise: float, rng, chunk_draws: int = 16384, progress=None):
    """Prior draws (site, per_site, param) in ``z``, simulated noisy log SOC (site, per_site, slot) and validity."""
    n = forcing.batch_shape[0]
    d = model.n_params
    u = rng.uniform(1e-6, 1.0 - 1e-6, (n, per_site, d))

    @jax.jit
    def run(uu, f, depth, mask):
        def site(ui, fi, di, mi):
            return jax.vmap(lambda x: predict(model, x, fi, di, mi))(ui)

        return jax.vmap(site)(uu, f, depth, mask)

    sites_per_call = max(1, chunk_draws // per_site)
    preds, valids = [], []
    for lo in range(0, n, sites_per_call):
        hi = min(n, lo + sites_per_call)
        idx = np.minimum(np.arange(lo, lo + sites_per_call), n - 1)  # one compiled shape: pad with the last site
        f, o = forcing[idx], obs[idx]
        p, v = run(u[idx], f, o.depth, o.mask)
        preds.append(np.asarray(p)[: hi - lo])
        valids.append(np.asarray(v)[: hi - lo])
        if progress is not None:
            progress(hi - lo)
    pred = np.concatenate(preds)
    mask = np.asarray(obs.mask, bool)[:, None, :]
    ok = np.concatenate(valids) & np.all(~mask | (np.isfinite(pred) & (pred > 0)), axis=-1)
    rel = relative_error(obs.soc, obs.soc_sd, noise)[:, None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        log_soc = np.log(np.where(mask & ok[..., None], pred, 1.0)) + rel * rng.standard_normal(pred.shape)
    z = np.log(u) - np.log1p(-u)
    return z, log_soc, ok


def train_amortizer(model, forcing: Forcing, obs, *, simulations: int = 100_000, noise: float = 0.1,
                    flow_layers: int = 8, nn_width: int = 64, knots: int = 8, interval: float = 6.0,
                    max_epochs: int = 60, max_patience: int = 5, batch_size: int = 512,
                    learning_rate: float = 1e-3, seed: int = 0, progress: bool = True,
                    extra_info=None) -> Amortizer:
    """Train the conditional flow of ``method="auto"`` on simulations from the prior at these sites.

    ``simulations`` prior draws in all, spread evenly over the sites (at
    least 8 per site); ``noise`` is the relative error of layers without
    ``soc_sd``.  ``flow_layers``, ``nn_width``, ``knots`` and ``interval``
    shape the spline coupling flow; ``max_epochs``, ``max_patience``,
    ``batch_size`` and ``learning_rate`` its fitting.  Shows progress
    (simulation, then epochs) unless ``progress=False``.  ``extra_info`` (a
    mapping of short strings or numbers) is kept with the training statistics.
    """
    from flowjax.train import fit_to_data

    n = forcing.batch_shape[0]
    if n < 1:
        raise ValueError("train_amortizer needs at least one site")
    if int(simulations) != simulations or simulations < 1000:
        raise ValueError(f"simulations={simulations!r}: use a whole number >= 1000 (the flow learns from them)")
    per_site = max(8, -(-int(simulations) // n))
    slots = int(np.asarray(obs.mask).shape[1])
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=f"amortizer: simulating {per_site} prior draws per site", unit="site")
    try:
        z, log_soc, ok = _simulate(model, forcing, obs, per_site, noise, rng,
                                   progress=None if bar is None else bar.update)
    finally:
        if bar is not None:
            bar.close()
    if ok.sum() < 100:
        raise ValueError(f"only {int(ok.sum())} of {ok.size} prior draws gave a valid steady state at these sites; "
                         "check the forcing (soiljax check) or calibrate with --method nuts")
    depth = np.asarray(obs.depth, dtype=float)
    mask = np.asarray(obs.mask, bool)
    rel = relative_error(obs.soc, obs.soc_sd, noise)
    def per_draw(a):
        return np.broadcast_to(a[:, None], log_soc.shape)

    cond_obs = obs_features(log_soc, per_draw(mask), per_draw(depth), per_draw(rel))
    ff = forcing_features(forcing)
    cond = np.concatenate([cond_obs, np.broadcast_to(ff[:, None], (n, per_site, ff.shape[1]))], axis=-1)[ok]
    x = z[ok]
    mean, sd = cond.mean(axis=0), cond.std(axis=0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    c = (cond - mean) / sd
    flow = _cast(_build_flow(jax.random.key(seed), model.n_params, c.shape[1], flow_layers, nn_width, knots,
                             interval), jnp.float32)
    t1 = time.perf_counter()
    with flow_precision():
        flow, losses = fit_to_data(jax.random.key(seed + 1), flow, (x.astype(np.float32), c.astype(np.float32)),
                                   learning_rate=learning_rate, max_epochs=max_epochs, max_patience=max_patience,
                                   batch_size=batch_size, show_progress=progress)
    info = (("simulations", int(ok.size)), ("valid_share", round(float(ok.mean()), 4)),
            ("epochs", len(losses["train"])), ("train_loss", round(float(losses["train"][-1]), 4)),
            ("val_loss", round(float(min(losses["val"])), 4)), ("simulate_s", round(t1 - t0, 2)),
            ("fit_s", round(time.perf_counter() - t1, 2))) + tuple(sorted((extra_info or {}).items()))
    return Amortizer(flow=flow, mean=mean, sd=sd, lo=c.min(axis=0), hi=c.max(axis=0), model=model_name(model),
                     n_params=model.n_params, slots=slots, noise=float(noise), flow_layers=flow_layers,
                     nn_width=nn_width, knots=knots, interval=float(interval), info=info)


def save_amortizer(amortizer: Amortizer, path) -> Path:
    """Write ``amortizer`` to ``path`` (JSON header line, then the serialised leaves); returns the path."""
    path = Path(path)
    buf = _io.BytesIO()
    eqx.tree_serialise_leaves(buf, _stored(amortizer))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(json.dumps(amortizer._header()).encode() + b"\n" + buf.getvalue())
    tmp.replace(path)
    return path


def load_amortizer(path) -> Amortizer:
    """Read an amortizer that :func:`save_amortizer` wrote."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise AmortizerError(f"cannot read the amortizer {path}: {e.strerror or e}") from None
    head, sep, body = raw.partition(b"\n")
    try:
        h = json.loads(head)
        ok = sep and h.get("format") == FILE_FORMAT
    except (ValueError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise AmortizerError(f"{path} is not a soiljax amortizer ({FILE_FORMAT}); write one with soiljax calibrate "
                         "--method auto --amortizer FILE (a FILE that does not exist yet is trained and saved)")
    nf = h["n_features"]
    zeros = np.zeros(nf)
    like = Amortizer(flow=_build_flow(jax.random.key(0), h["n_params"], nf, h["flow_layers"], h["nn_width"],
                                      h["knots"], h["interval"]),
                     mean=zeros, sd=zeros, lo=zeros, hi=zeros, model=h["model"], n_params=h["n_params"],
                     slots=h["slots"], noise=h["noise"], flow_layers=h["flow_layers"], nn_width=h["nn_width"],
                     knots=h["knots"], interval=h["interval"], margin=h["margin"],
                     info=tuple(sorted(h.get("info", {}).items())))
    like = _stored(like)
    try:
        out = eqx.tree_deserialise_leaves(_io.BytesIO(body), like)
    except Exception as e:  # a truncated or foreign file
        raise AmortizerError(f"{path}: the amortizer's weights cannot be read ({e}); train it again") from None
    arrays = {k: np.asarray(getattr(out, k), dtype=float) for k in ("mean", "sd", "lo", "hi")}
    return eqx.tree_at(lambda a: (a.mean, a.sd, a.lo, a.hi), out, tuple(arrays[k] for k in ("mean", "sd", "lo", "hi")))


__all__ = ["Amortizer", "AmortizerError", "train_amortizer", "save_amortizer", "load_amortizer", "site_features", "forcing_features"]
