"""A timm-style model registry: ``@register_model`` on a factory, ``create_model(name, **kwargs)`` to build.

Every factory takes the data's shape as keyword arguments (``num_classes``, ``in_channels``,
``image_size``) plus its own switches, and returns a plain ``nn.Module`` that outputs logits.
The factory's function name is the registry name, the name of its config file in ``conf/model/``
and the ``_target_`` in that file.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from torch import nn

ModelFactory = Callable[..., nn.Module]

_MODELS: dict[str, ModelFactory] = {}


class UnknownModelError(KeyError):
    """Raised for a model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def register_model(fn: ModelFactory) -> ModelFactory:
    """Register ``fn`` under its function name."""
    name = fn.__name__
    if name in _MODELS and _MODELS[name] is not fn:
        raise ValueError(f"model '{name}' is registered twice")
    _MODELS[name] = fn
    return fn


def list_models() -> list[str]:
    """All registered model names, sorted."""
    return sorted(_MODELS)


def get_model_factory(name: str) -> ModelFactory:
    """The factory registered as ``name``; a one-line error with suggestions otherwise."""
    try:
        return _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _MODELS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UnknownModelError(f"unknown model '{name}'{hint}; available: {', '.join(list_models())}") from None


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with ``kwargs`` (num_classes, in_channels, image_size, switches)."""
    return get_model_factory(name)(**kwargs)


def is_model_factory(fn: object) -> bool:
    """Whether ``fn`` is a registered factory (used to validate config ``_target_`` values)."""
    return any(fn is f for f in _MODELS.values())
