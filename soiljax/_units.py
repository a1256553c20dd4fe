"""Unit strings of netCDF files, parsed with pint.

:func:`parse` turns a ``units`` attribute into a :class:`pint.Quantity`
(magnitude 1 unless the string holds a number, as in ``1e-3 kg m-2``).
Spellings of the CF conventions and UDUNITS are understood besides pint's
own: exponents without ``**`` (``m-2``, ``m2``), ``per``, ``%``, ``mon``,
``C``/``deg_C`` for degrees Celsius.  Case matters, as in SI: ``Mg`` is a
megagram, ``mg`` a milligram.  With ``carbon=True`` a carbon qualifier on a
mass is dropped -- ``gC``, ``kgC``, ``MgC``, ``tC``, ``g C``, ``kg carbon``
are grams, kilograms, megagrams, tonnes of carbon -- and the mass is taken to
be the mass of carbon (as in CF, where the variable says what the mass is
of: ``kg m-2`` for a carbon stock).  The readers in :mod:`soiljax.io` decide
which dimensions they accept and convert with :func:`factor`.

pint's registry takes ~0.4 s to build; it is built on the first call, so
importing soiljax does not pay for it.
"""

from __future__ import annotations

import functools
import re

WORDS_DIMENSIONLESS = frozenset({"", "1", "-", "none", "unitless", "dimensionless", "fraction", "0-1", "ratio"})
"""Words (any case) that name no unit: a dimensionless number with factor 1."""

WORDS_INDEX = frozenset({"index", "layer", "level", "layer index", "count"})
"""Words (any case) that name a layer index (``nbedrock``)."""

# UDUNITS powers: a letter directly followed by an (optionally negative) integer, "m-2" -> "m**-2",
# but not the exponent of a number ("1e-3").  The same rule as cf_xarray's (from MetPy).
_POWER = re.compile(r"(?<=[A-Za-z])(?![A-Za-z])(?<![0-9\-][eE])(?<![0-9\-])(?=[0-9\-])")
# "g/100 g": pint reads a/b c as (a/b) c; a number in a denominator belongs to the unit after it
_SCALED_DENOMINATOR = re.compile(r"/\s*(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*([A-Za-zµμ]\w*)")
_PER = re.compile(r"\s+per\s+", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-zµμ_]+")


class UnitParseError(ValueError):
    """A unit string that pint cannot read."""


@functools.lru_cache(maxsize=1)
def registry():
    """The unit registry (pint), built on first use with the CF/UDUNITS aliases soiljax reads."""
    import pint

    ureg = pint.UnitRegistry(autoconvert_offset_to_baseunit=False, on_redefinition="ignore")
    for line in (
        "@alias month = mon",
        "@alias percent = pct = percentage",
        "@alias kelvin = deg_K = degrees_K = degree_K",
        # 'C' is the coulomb in pint; in these files it means Celsius (TSOI) or carbon (stripped first)
        "@alias degree_Celsius = C = deg_C = degrees_C = degree_C = degrees_Celsius = ºC",
        "@alias hour = h",
        "@alias day = d",
    ):
        ureg.define(line)
    return ureg


def _is_mass(word: str) -> bool:
    if not word:
        return False
    try:
        return registry().get_dimensionality(registry().parse_units(word)) == {"[mass]": 1}
    except Exception:  # noqa: BLE001 - any word pint does not know is not a mass
        return False


def strip_carbon(text: str) -> tuple[str, bool]:
    """``text`` with carbon qualifiers on masses removed, and whether there was one.

    ``gC`` -> ``g``, ``MgC`` -> ``Mg``, ``g_C`` -> ``g``, ``g C`` -> ``g``, ``kg carbon`` -> ``kg``.
    """
    out, pos, prev_mass, found = [], 0, False, False
    for m in _WORD.finditer(text):
        word = m.group()
        repl = word
        if word in ("C", "carbon") and prev_mass:
            repl, found = "", True
        elif word.endswith("C") and _is_mass(word[:-1].rstrip("_")):
            repl, found = word[:-1].rstrip("_"), True
        out.append(text[pos : m.start()] + repl)
        pos = m.end()
        if repl:
            prev_mass = _is_mass(repl)
    out.append(text[pos:])
    return "".join(out), found


@functools.lru_cache(maxsize=512)
def _parse(text: str, carbon: bool):
    ureg = registry()
    s = " ".join(str(text).split())
    if s.lower() in WORDS_DIMENSIONLESS:
        return ureg.Quantity(1, "")
    s = _PER.sub(" / ", s)
    if carbon:
        s, _ = strip_carbon(s)
    s = _SCALED_DENOMINATOR.sub(r"/(\1 \2)", s)
    s = _POWER.sub("**", s)
    try:
        q = ureg.parse_expression(s)
    except Exception as exc:  # noqa: BLE001 - pint raises many kinds for a string it cannot read
        raise UnitParseError(f"{text!r} is not a unit pint can read ({type(exc).__name__})") from None
    if not isinstance(q, ureg.Quantity):
        q = ureg.Quantity(q, "")
    return q


def parse(text, *, carbon: bool = False):
    """The :class:`pint.Quantity` a ``units`` string stands for; :class:`UnitParseError` if none.

    ``carbon=True`` reads ``gC``, ``g C``, ``kgC`` ... as masses (of carbon).
    """
    return _parse(str(text), bool(carbon))


def dimensionality(q) -> dict[str, float]:
    """Dimensions of ``q`` as a plain dict, e.g. ``{'[mass]': 1, '[length]': -3}``."""
    return dict(q.dimensionality)


def is_dim(q, spec: str) -> bool:
    """Whether ``q`` has the dimensions of ``spec`` (e.g. ``'[mass] / [length] ** 3'``)."""
    return q.dimensionality == registry().get_dimensionality(spec)


def factor(q, to: str) -> float:
    """The number that converts values in ``q`` to ``to`` (12 significant digits).

    Rounding to 12 digits removes the round-off of pint's conversion chain
    (1 g cm-3 is exactly 1e6 g m-3) and no real unit factor has more digits.
    """
    value = float(q.to(registry().parse_units(to)).magnitude)
    return float(f"{value:.12g}")


def time_units(q) -> list[tuple[str, float]]:
    """The (name, exponent) of each time unit in ``q``, e.g. ``[('month', -1)]``."""
    ureg = registry()
    return [
        (name, exp) for name, exp in q.unit_items() if ureg.get_dimensionality(name) == {"[time]": 1}
    ]


def unit_name(q) -> str:
    """pint's name of the unit of ``q`` (``'degree_Celsius'``, ``'kelvin'``, ``'percent'``)."""
    return str(q.units)
