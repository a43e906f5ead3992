"""The one way pretrained weights get into a model (the counterpart of timm's ``load_pretrained``).

:func:`load_pretrained` reads a state_dict (:func:`load_state_dict_file`: a file, an imgbench checkpoint or one
of torchvision's download names such as ``IMAGENET1K_V1``), lets the model class adapt the file's key layout to
its own (its :class:`PretrainedCfg`'s ``filter_fn``), leaves a classifier of another class count freshly
initialised, checks that everything else fits and loads it. A model class takes pretrained weights by setting
a ``pretrained_cfg`` class attribute and a ``pretrained`` argument; :func:`imgbench.models.registry.build_model`
calls the loader after building the model.

Every problem with a weights file (missing, unreadable, not a state_dict, not fitting the model, a failed
download) is a one-line :class:`~imgbench.errors.CheckpointError`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from ..errors import CheckpointError

__all__ = ["PretrainedCfg", "StateDict", "layers_with_weights", "load_pretrained", "load_state_dict_file"]

log = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]
FilterFn = Callable[[StateDict, nn.Module, str], StateDict]


@dataclass(frozen=True)
class PretrainedCfg:
    """How a model class takes pretrained weights: the hooks :func:`load_pretrained` calls.

    Attributes:
        name: The model's name in messages (its registry name).
        torchvision_weights: The name of the torchvision weights enum (``"AlexNet_Weights"``) whose member names
            (``IMAGENET1K_V1``, ``DEFAULT``) are accepted instead of a file and downloaded; None: files only.
        classifier: The module path of the last layer (``"classifier.6"``): when its tensors' shapes differ from
            the file's (another ``num_classes``), it keeps its fresh initialisation. None: no exception.
        filter_fn: ``filter_fn(state, model, source) -> state`` maps the file's keys onto the model's (and raises
            CheckpointError for a file it cannot use); None: the file has the model's own key layout.
        strict: Whether every tensor of the model must come from the file (the classifier excepted).
    """

    name: str
    torchvision_weights: str | None = None
    classifier: str | None = None
    filter_fn: FilterFn | None = None
    strict: bool = True


def _torchvision_weights(enum_name: str):
    """The torchvision weights enum ``enum_name`` (torchvision is imported only when weights are asked for)."""
    import torchvision.models

    return getattr(torchvision.models, enum_name)


def load_state_dict_file(source: str | os.PathLike, torchvision_weights: str | None = None) -> StateDict:
    """Read a state_dict.

    Args:
        source: A file read with ``torch.load(weights_only=True)``: a plain state_dict, or a checkpoint with a
            ``state_dict`` entry (of an imgbench checkpoint, the ``net.`` keys are taken). Or, when
            ``torchvision_weights`` is given, one of that enum's names (``IMAGENET1K_V1``, ``DEFAULT``),
            downloaded once into torch's cache (needs a network).
        torchvision_weights: The name of a torchvision weights enum, e.g. ``"AlexNet_Weights"``.

    Returns:
        The state_dict, names to tensors.

    Raises:
        CheckpointError: The file does not exist (and is no weight name), cannot be read, holds no state_dict, or
            the download fails.
    """
    path = Path(source).expanduser()
    if not path.is_file():
        if torchvision_weights is None:
            raise CheckpointError(f"pretrained weights {path} do not exist; pass a state_dict file")
        enum = _torchvision_weights(torchvision_weights)
        name = str(source)
        if name not in enum.__members__:
            example = Path(urlparse(enum.DEFAULT.url).path).name
            raise CheckpointError(
                f"pretrained weights {path} do not exist; pass a state_dict file (e.g. torchvision's "
                f"{example}) or one of {', '.join(enum.__members__)}"
            )
        weights = enum[name]
        try:
            return weights.get_state_dict(progress=False)
        except Exception as e:  # no network, proxy, disk full, ...
            raise CheckpointError(
                f"could not download torchvision's {torchvision_weights}.{name} ({type(e).__name__}: {e}); "
                f"download {weights.url} on a machine with internet and pass its path as model.pretrained"
            ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable weights file ({type(e).__name__}: {e})") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
        if any(k.startswith("net.") for k in obj):  # an imgbench checkpoint: the model is the module's `net`
            obj = {k[4:]: v for k, v in obj.items() if k.startswith("net.")}
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return dict(obj)


def layers_with_weights(state: Mapping[str, torch.Tensor], ndim: int) -> list[tuple[str, str | None]]:
    """The layers of a state_dict with weights of ``ndim`` dimensions, in order (for ``filter_fn`` hooks).

    Args:
        state: A state_dict.
        ndim: 4 for convolutions, 2 for linear layers.

    Returns:
        ``(weight key, bias key or None)`` per layer.
    """
    found = []
    for key, value in state.items():
        if key.endswith("weight") and value.ndim == ndim:
            bias = key[: -len("weight")] + "bias"
            found.append((key, bias if bias in state else None))
    return found


def _listing(label: str, keys: list[str]) -> str:
    return f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"


def load_pretrained(model: nn.Module, source: str | os.PathLike, cfg: PretrainedCfg | None = None) -> None:
    """Load pretrained weights into ``model``, in place.

    Args:
        model: The freshly built model.
        source: A weights file or a torchvision weight name (see :func:`load_state_dict_file`).
        cfg: The model's hooks; default ``model.pretrained_cfg`` (or: the model's own layout, strict).

    Raises:
        CheckpointError: The weights cannot be read, or do not fit the model: missing, unexpected or wrongly
            shaped tensors (a classifier of another class count excepted), or whatever ``cfg.filter_fn`` rejects.
    """
    cfg = cfg or getattr(model, "pretrained_cfg", None) or PretrainedCfg(type(model).__name__)
    state = load_state_dict_file(source, cfg.torchvision_weights)
    source = str(source)
    if cfg.filter_fn is not None:
        state = cfg.filter_fn(state, model, source)
    own = model.state_dict()
    head = [
        k
        for k in own
        if cfg.classifier and k.startswith(f"{cfg.classifier}.") and k in state and state[k].shape != own[k].shape
    ]
    missing = [k for k in own if k not in state] if cfg.strict else []
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape and k not in head]
    if missing or unexpected or wrong:
        parts = [
            _listing(label, keys)
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        ]
        raise CheckpointError(f"pretrained weights {source} do not fit {cfg.name} ({'; '.join(parts)})")
    model.load_state_dict({k: v for k, v in state.items() if k not in head}, strict=cfg.strict and not head)
    fresh = sorted({k.rsplit(".", 1)[0] for k in own if k not in state or k in head})
    log.info("%s: loaded %s%s", cfg.name, source, f"; freshly initialised: {', '.join(fresh)}" if fresh else "")
