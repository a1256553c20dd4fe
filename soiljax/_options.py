"""Names and defaults that the command line offers, importable without JAX.

``soiljax --help`` and the checks of every option run before JAX is imported;
the modules that implement these choices and defaults import the names from
here, so that the command line and the library share one set of defaults.
"""

MODELS: tuple[str, ...] = ("clm5", "compas")
"""Names of the models (:func:`soiljax.model`), each the ``name`` of its class."""

ZONES: tuple[str, ...] = ("tropical", "temperate", "arid", "boreal", "shallow_bedrock")
"""Names of the synthetic climate zones (:mod:`soiljax.synthetic`), in the order of the ``zone_id`` codes."""

MIN_SAMPLES = 4
"""Fewest draws per chain a calibration takes: split R-hat and ESS need at least two draws per half chain."""

# ---------------------------------------------------------------------------
# parameter learning (soiljax.learning, ``soiljax learn``)
# ---------------------------------------------------------------------------

PRODA_HIDDEN: tuple[int, ...] = (256, 512, 512, 256)
"""Hidden layer widths of PRODA's network (MODELS.md section 8)."""

PRODA_DROPOUT = 0.2
"""Dropout rate after every hidden layer in PRODA's network."""

LEARNING_RATE = 1e-3
"""Adam's learning rate of both training loops."""

TWO_STAGE_LOSSES: tuple[str, ...] = ("mse", "proda")
"""Loss names of the two-stage regression (:data:`soiljax.learning.LOSSES`)."""

TWO_STAGE_EPOCHS = 1000
"""Most epochs of :func:`soiljax.learning.train_two_stage` (PRODA trains up to 6000 and keeps the best;
with early stopping the kept benchmark runs stopped after 120 or fewer)."""

TWO_STAGE_PATIENCE = 100
"""Epochs without a better validation loss before two-stage training stops."""

TWO_STAGE_BATCH_SIZE = 32
"""Sites per mini-batch of the two-stage regression (PRODA's 32)."""

END_TO_END_EPOCHS = 500
"""Most epochs of :func:`soiljax.learning.train_end_to_end` (the kept benchmark runs, benchmarks/README.md)."""

END_TO_END_PATIENCE = 30
"""Epochs without a better validation loss before end-to-end training stops."""

END_TO_END_BATCH_SIZE = 32
"""Sites per mini-batch of end-to-end training (PRODA's 32, as in the kept benchmark runs)."""
