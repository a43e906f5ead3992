"""A timm-style model registry: ``@register_model(ModelClass)`` on a factory, ``create_model(name, **kwargs)``.

A model family is a class whose ``__init__`` carries every switch (typed, with defaults, validated there) and
the data's shape (``num_classes``, ``in_channels``, ``image_size``). Its factories are thin::

    @register_model(KerasCNN)
    def keras_cnn(**kwargs: Any) -> KerasCNN:
        return build_model(KerasCNN, **kwargs)

The factory's function name is the registry name, the name of its config file in ``conf/model/`` and the
``_target_`` in that file. Arguments a factory fixes itself are positional-only in the class (ResNet's blocks
per stage: ``build_model(ResNet, (2, 2, 2, 2), **kwargs)``), so they are no switches. :func:`model_arguments`
reads the keyword arguments from the class, and the factory reports the class's keyword arguments as its own
signature (``inspect.signature(keras_cnn)``), so nothing is written twice.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from .weights import load_pretrained

__all__ = [
    "ModelFactory",
    "UnknownModelError",
    "build_model",
    "create_model",
    "get_model_factory",
    "is_model_factory",
    "list_models",
    "model_arguments",
    "register_model",
]

ModelFactory = Callable[..., nn.Module]
M = TypeVar("M", bound=nn.Module)

_MODELS: dict[str, ModelFactory] = {}


class UnknownModelError(KeyError):
    """Raised for a model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def _keyword_signature(model_cls: type[nn.Module]) -> inspect.Signature:
    """The keyword arguments of ``model_cls(...)`` as a keyword-only signature returning ``model_cls``."""
    params = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if p.kind is p.POSITIONAL_OR_KEYWORD else p
        for p in inspect.signature(model_cls).parameters.values()
        if p.kind not in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL)
    ]
    return inspect.Signature(params, return_annotation=model_cls)


def _add(fn: ModelFactory) -> ModelFactory:
    name = fn.__name__
    if name in _MODELS and _MODELS[name] is not fn:
        raise ValueError(f"model '{name}' is registered twice")
    _MODELS[name] = fn
    return fn


def register_model(model_cls: type[nn.Module] | ModelFactory) -> Any:
    """Register a factory under its function name.

    Args:
        model_cls: The class the factory builds: ``@register_model(KerasCNN)``; the factory then reports the
            class's keyword arguments as its signature and keeps the class as ``factory.model_cls``. A plain
            function (``@register_model`` without a class) is registered with its own signature.

    Returns:
        The decorator (or, for a plain function, the function itself).

    Raises:
        ValueError: Another factory is registered under the same name.
    """
    if not (inspect.isclass(model_cls) and issubclass(model_cls, nn.Module)):
        return _add(model_cls)

    def decorator(fn: ModelFactory) -> ModelFactory:
        fn.__signature__ = _keyword_signature(model_cls)
        fn.model_cls = model_cls
        return _add(fn)

    return decorator


def build_model(model_cls: type[M], *args: Any, **kwargs: Any) -> M:
    """Build ``model_cls(*args, **kwargs)``, then load its ``pretrained`` weights if given (the one builder).

    Args:
        model_cls: The model class.
        *args: What the factory fixes (positional-only arguments of the class).
        **kwargs: The switches and the data's shape; ``pretrained`` (for classes that take it): True for the
            default weights, a weights file or a torchvision weight name, loaded by
            :func:`imgbench.models.weights.load_pretrained`.

    Returns:
        The model.

    Raises:
        ArgumentError: A bad switch (from the class).
        TypeError: An argument the class does not take.
        CheckpointError: Weights that cannot be read or do not fit.
    """
    model = model_cls(*args, **kwargs)
    pretrained: str | os.PathLike | bool | None = kwargs.get("pretrained")
    if pretrained:
        load_pretrained(model, pretrained, in_channels=kwargs.get("in_channels"))
    return model


def list_models() -> list[str]:
    """All registered model names, sorted."""
    return sorted(_MODELS)


def get_model_factory(name: str) -> ModelFactory:
    """The factory registered as ``name``.

    Args:
        name: A registry name.

    Returns:
        The factory.

    Raises:
        UnknownModelError: No such model; the one-line message suggests the closest name.
    """
    try:
        return _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _MODELS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UnknownModelError(f"unknown model '{name}'{hint}; available: {', '.join(list_models())}") from None


def model_arguments(name: str) -> tuple[set[str], bool]:
    """The keyword arguments the registered model ``name`` accepts, without building it.

    Args:
        name: A registry name.

    Returns:
        ``(names, open_ended)``: the argument names (the data's ``num_classes``, ``in_channels``, ``image_size``
        included, and ``pretrained`` where the model takes weights), and whether it also takes arbitrary
        ``**kwargs``.

    Raises:
        UnknownModelError: No such model.
    """
    names: set[str] = set()
    open_ended = False
    for p in inspect.signature(get_model_factory(name)).parameters.values():
        if p.kind is p.VAR_KEYWORD:
            open_ended = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            names.add(p.name)
    return names, open_ended


def create_model(name: str, /, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``.

    Args:
        name: A registry name (positional: ``create_model("timm", name="resnet18", ...)`` passes timm's name on).
        **kwargs: The model's arguments: ``num_classes``, ``in_channels``, ``image_size`` and its switches.

    Returns:
        The model.

    Raises:
        UnknownModelError: No such model.
    """
    return get_model_factory(name)(**kwargs)


def is_model_factory(fn: object) -> bool:
    """Whether ``fn`` is a registered factory (used to validate config ``_target_`` values).

    Args:
        fn: Any object.

    Returns:
        True if ``fn`` is one of the registered factories.
    """
    return any(fn is f for f in _MODELS.values())
