"""Models by name: the one place where ``"clm5"`` becomes :class:`soiljax.CLM5`.

Every part of soiljax that lets a user choose a model by name (the command
line, files, learners, the synthetic world) goes through :func:`model`,
:func:`model_class` or :func:`model_name`.  The names themselves live in
:data:`soiljax._options.MODELS`, so that the command line can offer them
without importing JAX; each is the ``name`` class variable of its model.
"""

from types import MappingProxyType

from ._models import CLM5, COMPAS, AbstractSoilModel
from ._options import MODELS

_CLASSES = MappingProxyType({cls.name: cls for cls in (CLM5, COMPAS)})
assert tuple(_CLASSES) == MODELS, "soiljax._options.MODELS must list the models' names in order"


def model_class(model) -> type[AbstractSoilModel]:
    """The model class for a name (any case), a model class or a model instance."""
    if isinstance(model, str):
        cls = _CLASSES.get(model.lower())
    else:
        cls = model if isinstance(model, type) else type(model)
        if not issubclass(cls, AbstractSoilModel) or _CLASSES.get(getattr(cls, "name", None)) is not cls:
            cls = None
    if cls is None:
        raise ValueError(f"unknown model {model!r}; the models are {', '.join(MODELS)}")
    return cls


def model_name(model) -> str:
    """``"clm5"`` or ``"compas"`` for a name (any case), a model class or a model instance."""
    return model_class(model).name


def model(model, **options) -> AbstractSoilModel:
    """A model from its name, e.g. ``soiljax.model("clm5", bedrock="closed")``.

    ``model`` is a name (any case, one of :data:`MODELS`), a model class
    (instantiated with ``options``) or a model instance (returned as it is;
    ``options`` are then not allowed); classes and instances need not be
    registered.  An unknown name raises ``ValueError``
    listing the names.
    """
    if isinstance(model, AbstractSoilModel):
        if options:
            raise TypeError(f"options {sorted(options)} apply to a model name or class, not to the instance {model!r}")
        return model
    if isinstance(model, type) and issubclass(model, AbstractSoilModel):
        return model(**options)
    return model_class(model)(**options)


def model_classes() -> tuple[type[AbstractSoilModel], ...]:
    """The model classes, in the order of :data:`MODELS`."""
    return tuple(_CLASSES.values())


__all__ = ["MODELS", "model", "model_class", "model_classes", "model_name"]
