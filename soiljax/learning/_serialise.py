"""Saving and loading learners: one file, a JSON header line then equinox leaves.

File layout::

    {"format": "soiljax-learner", "version": 1, "model_name": ..., ...}\\n
    <eqx.tree_serialise_leaves bytes of the Learner>

The header (one line of JSON) holds everything needed to rebuild an empty
Learner of the right shape: format version, model name, covariate and
parameter names, the architecture (hidden widths, dropout, number of members,
n_in, n_out, float type) and the learner's metadata.  :func:`load_learner`
builds that skeleton (without initialising weights) and fills it with
``eqx.tree_deserialise_leaves``.  The header also records the number of
bytes and the SHA-256 of the weights, so truncated or damaged files are
refused with a clear error.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._learner import Learner
from ._network import make_ensemble
from ._scaling import MinMaxScaler

FORMAT = "soiljax-learner"
VERSION = 1
"""Version of the file layout; files from a newer version are refused."""

_MAX_HEADER = 16 * 1024 * 1024


class LearnerFileError(ValueError):
    """A file is not a soiljax learner file, is corrupt, or has an unsupported version."""


def _dtype_name(learner: Learner) -> str:
    return str(learner.nets.layers[0].weight.dtype)


def learner_header(learner: Learner) -> dict:
    """The JSON header that :func:`save_learner` writes for ``learner``."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "model_name": learner.model_name,
        "covariate_names": list(learner.covariate_names),
        "param_names": list(learner.param_names),
        "architecture": {
            "n_in": learner.n_in,
            "n_out": learner.n_out,
            "hidden": list(learner.hidden),
            "dropout": learner.dropout,
            "ensemble": learner.n_members,
            "dtype": _dtype_name(learner),
        },
        "metadata": learner.metadata,
    }


def save_learner(path, learner: Learner) -> Path:
    """Write ``learner`` (scaler, network(s), names, metadata) to one file at ``path``.

    The file is written to a temporary name next to ``path`` and renamed, so
    an interrupted save never leaves a half-written learner behind.  Returns
    the path.  The suffix is free; ``.eqx`` is a good choice.
    """
    if not isinstance(learner, Learner):
        raise TypeError(f"save_learner expects a Learner, got {type(learner).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, learner)
    payload = buf.getvalue()
    head = learner_header(learner)
    head["payload_bytes"] = len(payload)
    head["payload_sha256"] = hashlib.sha256(payload).hexdigest()
    header = json.dumps(head, sort_keys=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header.encode("utf-8") + b"\n")
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_header(path) -> dict:
    """The JSON header of a learner file (checks format and version)."""
    with open(path, "rb") as f:
        return _read_header(f, path)


def _read_header(f, path) -> dict:
    line = f.readline(_MAX_HEADER)
    what = f"{str(path)!r} is not a soiljax learner file (written by soiljax.learning.save_learner)"
    if not line.endswith(b"\n"):
        raise LearnerFileError(f"{what}: no header line")
    try:
        header = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise LearnerFileError(f"{what}: its first line is not a JSON header") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise LearnerFileError(f"{what}: the header's format is {header.get('format') if isinstance(header, dict) else None!r}")
    version = header.get("version")
    if not isinstance(version, int) or version < 1:
        raise LearnerFileError(f"{str(path)!r}: invalid learner file version {version!r}")
    if version > VERSION:
        raise LearnerFileError(
            f"{str(path)!r} was written in learner file version {version}, newer than this soiljax reads "
            f"(version {VERSION}); upgrade soiljax to load it"
        )
    for key in ("model_name", "covariate_names", "param_names", "architecture"):
        if key not in header:
            raise LearnerFileError(f"{str(path)!r}: the header lacks {key!r}; the file is corrupt")
    return header


def _skeleton(header: dict) -> Learner:
    a = header["architecture"]
    dtype = jnp.dtype(a.get("dtype", "float64"))
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise LearnerFileError(
            "the learner was saved in float64 but JAX runs in float32 here; import soiljax without "
            "SOILJAX_ENABLE_X64=0 (or enable jax_enable_x64) to load it"
        )

    def build():
        nets = make_ensemble(
            int(a["ensemble"]), int(a["n_in"]), int(a["n_out"]), hidden=tuple(a["hidden"]),
            dropout=float(a["dropout"]), key=jax.random.PRNGKey(0), dtype=dtype,
        )
        z = jnp.zeros(int(a["n_in"]), dtype=float)
        return MinMaxScaler(z, z), nets

    scaler, nets = eqx.filter_eval_shape(build)
    return Learner(
        scaler=scaler,
        nets=nets,
        model_name=header["model_name"],
        covariate_names=tuple(header["covariate_names"]),
        param_names=tuple(header["param_names"]),
        metadata_json=json.dumps(header.get("metadata", {}), sort_keys=True),
    )


def load_learner(path) -> Learner:
    """Read a learner written by :func:`save_learner`.

    Raises :class:`LearnerFileError` (a ValueError) for a file that is not a
    learner file, has a newer format version, or is truncated or corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no learner file at {str(path)!r}")
    with open(path, "rb") as f:
        header = _read_header(f, path)
        try:
            skeleton = _skeleton(header)
        except LearnerFileError:
            raise
        except Exception as e:
            raise LearnerFileError(f"{str(path)!r}: the header does not describe a valid learner ({e})") from None
        payload = f.read()
    size, digest = header.get("payload_bytes"), header.get("payload_sha256")
    if size is not None and len(payload) != size:
        raise LearnerFileError(
            f"{str(path)!r} is truncated or corrupt: {len(payload)} bytes of weights, the header says {size}"
        )
    if digest is not None and hashlib.sha256(payload).hexdigest() != digest:
        raise LearnerFileError(f"{str(path)!r} is corrupt: the weights do not match the header's checksum")
    buf = io.BytesIO(payload)
    try:
        learner = eqx.tree_deserialise_leaves(buf, skeleton)
    except Exception as e:
        raise LearnerFileError(
            f"{str(path)!r} is corrupt or truncated: reading the network weights failed ({type(e).__name__}: {e})"
        ) from None
    if buf.read(1):
        raise LearnerFileError(f"{str(path)!r} is corrupt: unexpected data after the network weights")
    want = jax.tree_util.tree_leaves(skeleton)
    got = jax.tree_util.tree_leaves(learner)
    for w, g in zip(want, got):
        if tuple(w.shape) != tuple(np.shape(g)) or jnp.dtype(w.dtype) != jnp.dtype(g.dtype):
            raise LearnerFileError(
                f"{str(path)!r} is corrupt: an array has shape {np.shape(g)} {g.dtype}, the header implies "
                f"{tuple(w.shape)} {w.dtype}"
            )
    return learner


__all__ = ["save_learner", "load_learner", "read_header", "learner_header", "LearnerFileError", "FORMAT", "VERSION"]
