"""Names of the UDE's options, importable without JAX (the command line's choices)."""

ADJOINT_NAMES: tuple[str, ...] = ("recursive", "direct", "backsolve")
"""Keys of :data:`soiljax.ude.ADJOINTS`, the selectable reverse-mode adjoints."""

NOISE_FAMILIES: tuple[str, ...] = ("normal", "student_t", "lognormal")
"""Likelihoods of the noise-aware loss (:class:`soiljax.ude.NoiseModel`)."""
