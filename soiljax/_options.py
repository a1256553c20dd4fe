"""Names that the command line offers as choices, importable without JAX.

``soiljax --help`` and the checks of every option run before JAX is imported;
the modules that implement these choices import the names from here.
"""

MODELS: tuple[str, ...] = ("clm5", "compas")
"""Names of the models (:func:`soiljax.model`), each the ``name`` of its class."""

ZONES: tuple[str, ...] = ("tropical", "temperate", "arid", "boreal", "shallow_bedrock")
"""Names of the synthetic climate zones (:mod:`soiljax.synthetic`), in the order of the ``zone_id`` codes."""

MIN_SAMPLES = 4
"""Fewest draws per chain a calibration takes: split R-hat and ESS need at least two draws per half chain."""
