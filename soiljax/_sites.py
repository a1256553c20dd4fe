"""Pairing the sites of two files by their labels.

Files on a ``site`` dimension (forcing, observations, parameters) carry site
labels as the ``site`` coordinate.  Two files describe the same sites when
their labels agree; :func:`pair_sites` then says which row of the second file
belongs to each site of the first, whatever order either file lists them in.

A file whose ``site`` coordinate is missing, or is just the positions
0, 1, ..., n-1 (what soiljax writes when it was given no labels), is
*unlabelled*: its rows pair with the other file's sites in order.
"""

from __future__ import annotations

from collections import Counter

import numpy as np


class SitePairingError(ValueError):
    """The site labels of two files do not describe the same sites."""


def plain(value) -> str:
    """A label or number as a user reads it: ``syn0_000001``, ``3``, ``0.25``, not ``np.str_('...')``."""
    if isinstance(value, (bytes, np.bytes_)):
        value = value.decode()
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)


def site_name(flat: int, batch_shape, labels=None) -> str:
    """How messages name site ``flat`` (a flat index into ``batch_shape``): its label,
    else its index (``site 3``, ``site (1, 2)``), or ``the site`` when there is one."""
    if labels is not None:
        return f"site {plain(np.asarray(labels).reshape(-1)[flat])}"
    if len(batch_shape) == 0:
        return "the site"
    if len(batch_shape) == 1:
        return f"site {flat}"
    return f"site {tuple(int(i) for i in np.unravel_index(flat, batch_shape))}"


def first_site(mask, batch_shape, labels=None) -> tuple[int, str]:
    """The first site where the flat boolean ``mask`` holds, and how messages name it
    with the others: ``site X`` or ``site X (and k more site(s))``."""
    mask = np.asarray(mask).reshape(-1)
    first = int(np.argmax(mask))
    extra = int(mask.sum()) - 1
    return first, site_name(first, batch_shape, labels) + (f" (and {extra} more site(s))" if extra > 0 else "")


def repeated(labels) -> dict[str, int]:
    """The labels that occur more than once, as plain text, with their counts (in order of first occurrence)."""
    counts = Counter(plain(x) for x in np.asarray(labels).reshape(-1))
    return {label: c for label, c in counts.items() if c > 1}


def is_positional(labels) -> bool:
    """True when ``labels`` is None or the integers 0..n-1 in order (no real labels)."""
    if labels is None:
        return True
    arr = np.asarray(labels)
    return arr.dtype.kind in "iu" and np.array_equal(arr, np.arange(arr.size))


def pair_sites(labels, other, *, what: str, other_what: str) -> np.ndarray | None:
    """Row of ``other`` for each site of ``labels``; None when the rows pair in order as they are.

    Both label lists must have the same length.  When they hold the same
    labels (in any order) the sites are paired by label.  When either file
    is unlabelled (:func:`is_positional`) the rows pair in order.  Otherwise
    :class:`SitePairingError` says which labels differ; ``what`` and
    ``other_what`` name the two files in that message.
    """
    a = [plain(x) for x in np.asarray(labels if labels is not None else [])]
    b = [plain(x) for x in np.asarray(other if other is not None else [])]
    if labels is not None and other is not None and len(a) != len(b):
        raise SitePairingError(f"{what} has {len(a)} sites but {other_what} has {len(b)}")
    if labels is not None and other is not None and set(a) == set(b) and len(set(b)) == len(b):
        order = {lab: i for i, lab in enumerate(b)}
        idx = np.array([order[lab] for lab in a], dtype=int)
        return None if np.array_equal(idx, np.arange(len(idx))) else idx
    if is_positional(labels) or is_positional(other):
        return None
    only_a = [lab for lab in a if lab not in set(b)]
    only_b = [lab for lab in b if lab not in set(a)]
    raise SitePairingError(
        f"the site labels of {what} and {other_what} differ: {len(only_a)} site(s) of {what} are not in "
        f"{other_what} (first: {only_a[0] if only_a else '-'}) and {len(only_b)} of {other_what} are not in "
        f"{what} (first: {only_b[0] if only_b else '-'}); the files must describe the same sites (they are "
        "paired by label, in any order)"
    )
