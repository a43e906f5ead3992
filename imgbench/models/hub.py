"""timm's and torchvision's classifiers, built through imgbench's registry: ``model=timm model.name=convnext_atto``.

Two factories, :func:`timm` and :func:`torchvision` (``conf/model/timm.yaml``, ``conf/model/torchvision.yaml``),
take the model's name, the data's shape, ``pretrained`` and the model's own options (``**kwargs``, passed to the
model: ``drop_rate``, ``drop_path_rate`` for timm's, ``dropout`` for many of torchvision's). An input of other
than 3 channels gets a first convolution of its own: timm builds it (``in_chans``); torchvision's is replaced.
Size-bound models get the data's size (timm's ``img_size`` where its cfg says ``fixed_input_size``, torchvision's
ViTs' ``image_size``, MaxViT's ``input_size``).

Weights go through the one loader, :func:`imgbench.models.weights.load_pretrained`: ``pretrained=true`` downloads
the model's default weights (timm: its pretrained cfg on the Hugging Face hub, so ``name=resnet18.a1_in1k`` picks
a tag; torchvision: its ``DEFAULT`` weights, or a member name such as ``IMAGENET1K_V2``); a file is read as a
state_dict in timm's, torchvision's or imgbench's layout. A 3-channel first convolution is adapted (summed for
gray images), and a classifier of another class count keeps its fresh initialisation.

An unknown name or an option the model rejects is an :class:`~imgbench.errors.ArgumentError` naming ``name`` or
the option; ``python -m imgbench.models --timm 'convnext*'`` lists names.
"""

from __future__ import annotations

import difflib
import functools
import re
import sys
from collections.abc import Callable
from typing import Any

import torch
from timm import create_model as timm_create_model
from timm import list_models as timm_list_models
from timm.models import get_pretrained_cfg, split_model_name_tag
from torch import nn
from torchvision import models as tv_models

from ..errors import ArgumentError
from .arguments import check_data_shape, check_fraction, check_pretrained
from .registry import register_model
from .weights import PretrainedCfg, StateDict, load_pretrained

__all__ = ["UnknownOptionError", "timm", "timm_names", "torchvision", "torchvision_names"]

LIST_HINT = "see python -m imgbench.models"
# options that are probabilities (timm and torchvision pass them to nn.Dropout or drop-path unchecked)
FRACTIONS = (
    "drop_rate",
    "drop_path_rate",
    "drop_block_rate",
    "attn_drop_rate",
    "proj_drop_rate",
    "pos_drop_rate",
    "patch_drop_rate",
    "dropout",
    "attention_dropout",
    "stochastic_depth_prob",
)
UNEXPECTED = re.compile(r"unexpected keyword argument '(\w+)'")
AUX_HEADS = ("AuxLogits.", "aux1.", "aux2.")  # inception_v3's and googlenet's training-only heads
# a DenseNet file's old layer names (norm.1 for norm1), renamed as torchvision's densenet loader does
DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


class UnknownOptionError(ArgumentError, TypeError):
    """An option the model does not take: an ArgumentError naming it, and the TypeError Python raises for it."""


@functools.cache
def timm_names() -> tuple[str, ...]:
    """The architectures of timm (all classifiers), sorted."""
    return tuple(timm_list_models())


@functools.cache
def torchvision_names() -> tuple[str, ...]:
    """The classification models of torchvision (``torchvision.models``, not detection or segmentation), sorted."""
    return tuple(sorted(tv_models.list_models(module=tv_models)))


def _unknown(hub: str, name: object, names: tuple[str, ...]) -> ArgumentError:
    close = difflib.get_close_matches(str(name), names, n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return ArgumentError("name", f"unknown {hub} model '{name}'{hint}; {LIST_HINT}")


def _check_options(prefix: str, options: dict[str, Any]) -> None:
    for key in FRACTIONS:
        if options.get(key) is not None:
            check_fraction(key, options[key], prefix=prefix)


def _build(
    prefix: str, build: Callable[[dict[str, Any]], nn.Module], options: dict[str, Any], auto: set[str], shape: str
) -> nn.Module:
    """``build(options)``, with what the library raised for a bad option or size made an ArgumentError naming it.

    ``auto`` are the options set for the data's size (not by the user): dropped when the model does not take them,
    and reported as ``image_size`` when they break it.
    """
    try:
        return build(options)
    except (TypeError, ValueError, AssertionError) as e:  # the libraries check little themselves
        error = e
    match = UNEXPECTED.search(str(error))
    if isinstance(error, TypeError) and match and match.group(1) in options:
        option = match.group(1)
        if option in auto:
            return _build(prefix, build, {k: v for k, v in options.items() if k != option}, auto - {option}, shape)
        raise UnknownOptionError(option, f"{prefix}takes no option '{option}' (remove model.{option})") from None
    culprit = next((k for k in options if re.search(rf"\b{re.escape(k)}\b", str(error))), None)
    if culprit is None:  # which option breaks it? build without each on the meta device (nothing allocated)
        for key in options:
            try:
                with torch.device("meta"):
                    build({k: v for k, v in options.items() if k != key})
            except (TypeError, ValueError, AssertionError):
                continue
            culprit = key
            break
    if culprit is not None and culprit not in auto:
        raise ArgumentError(culprit, f"{prefix}bad {culprit}={options[culprit]!r} ({type(error).__name__}: {error})")
    raise ArgumentError("image_size", f"{prefix}cannot be built for {shape} images ({type(error).__name__}: {error})")


# ---------------------------------------------------------------------------- timm


def _timm_filter(state: StateDict, model: nn.Module, source: str) -> StateDict:
    """Apply timm's conversion of the model's family, where it has one (``checkpoint_filter_fn``).

    It maps original layouts onto timm's and resizes ViT position embeddings to the model's size.
    """
    convert = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if convert is None:
        return state
    try:
        return dict(convert(state, model))
    except Exception:  # a file of another layout: the loader's key check names what does not fit
        return state


def _timm_cfg(model: nn.Module, name: str) -> PretrainedCfg:
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    return PretrainedCfg(
        f"timm {name}",
        classifier=cfg.get("classifier"),
        filter_fn=_timm_filter,
        first_conv=cfg.get("first_conv"),
        hf_hub_id=cfg.get("hf_hub_id"),
        hf_hub_filename=cfg.get("hf_hub_filename"),
        url=cfg.get("url") or None,
        mean=cfg.get("mean"),
        std=cfg.get("std"),
    )


@register_model
def timm(
    name: str,
    num_classes: int = 1000,
    in_channels: int = 3,
    image_size: int | tuple[int, int] = 224,
    pretrained: bool | str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A timm model (``timm.create_model``) for the data's classes and channels.

    Args:
        name: A timm architecture (``resnet18``, ``convnext_atto``), optionally with a weights tag
            (``resnet18.a1_in1k``); ``python -m imgbench.models --timm 'pattern'`` lists them.
        num_classes: Outputs (logits).
        in_channels: Image channels (timm's ``in_chans``).
        image_size: ``(height, width)`` or one side: passed as ``img_size`` to models of a fixed input size.
        pretrained: None/False: random init | True: the default (or tagged) weights from the Hugging Face hub |
            a state_dict file (``.safetensors``, ``.pth``, an imgbench ``.ckpt``).
        **kwargs: The model's own options (``drop_rate``, ``drop_path_rate``, ...).

    Returns:
        The model, with ``pretrained`` weights loaded.

    Raises:
        ArgumentError: An unknown name or a bad option (named by the error).
        CheckpointError: Weights that cannot be read or downloaded, or do not fit.
    """
    prefix = f"timm {name}: "
    size = check_data_shape(num_classes, in_channels, image_size, prefix=prefix)
    check_pretrained(pretrained, prefix=prefix)
    arch, tag = split_model_name_tag(name) if isinstance(name, str) else (None, "")
    if arch not in timm_names():
        raise _unknown("timm", name, timm_names())
    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError:  # timm's "Invalid pretrained tag"
        cfg = None
    if tag and cfg is None:
        tags = [n.partition(".")[2] for n in timm_list_models(arch, pretrained=True)]
        raise ArgumentError("name", f"timm {arch} has no weights tag '{tag}'; tags: {', '.join(tags) or 'none'}")
    _check_options(prefix, kwargs)
    options = dict(kwargs)
    auto = set()
    if cfg is not None and cfg.fixed_input_size and "img_size" not in options and size != tuple(cfg.input_size[1:]):
        options["img_size"], auto = size, {"img_size"}  # position embeddings and windows are built for one size

    def build(opts: dict[str, Any]) -> nn.Module:
        return timm_create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **opts)

    model = _build(prefix, build, options, auto, f"{in_channels}x{size[0]}x{size[1]}")
    if pretrained:
        load_pretrained(model, pretrained, _timm_cfg(model, name), in_channels)
    return model


# ---------------------------------------------------------------------------- torchvision


def _torchvision_filter(state: StateDict, model: nn.Module, source: str) -> StateDict:
    """Apply the renames of torchvision's own loaders: DenseNet's old names; aux heads the model lacks dropped."""
    state = {DENSENET_KEY.sub(r"\1\2", k): v for k, v in state.items()}
    own = model.state_dict()
    absent = tuple(p for p in AUX_HEADS if not any(k.startswith(p) for k in own))
    return {k: v for k, v in state.items() if not (absent and k.startswith(absent))}


def _replace_first_conv(model: nn.Module, conv_name: str, in_channels: int) -> None:
    """A first convolution for ``in_channels``, its weights the model's own (channels taken cyclically: same init)."""
    old = model.get_submodule(conv_name)
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        old.kernel_size,
        old.stride,
        old.padding,
        old.dilation,
        old.groups,
        old.bias is not None,
        old.padding_mode,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    with torch.no_grad():
        new.weight.copy_(old.weight[:, [i % old.in_channels for i in range(in_channels)]])
        if old.bias is not None:
            new.bias.copy_(old.bias)
    parent, _, attr = conv_name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)


def _classifier_name(model: nn.Module, num_classes: int) -> str | None:
    """The last Linear (or, SqueezeNet's, Conv2d) with ``num_classes`` outputs: the head of every torchvision model."""
    heads = [
        n
        for n, m in model.named_modules()
        if (isinstance(m, nn.Linear) and m.out_features == num_classes)
        or (isinstance(m, nn.Conv2d) and m.out_channels == num_classes)
    ]
    return heads[-1] if heads else None


@register_model
def torchvision(
    name: str,
    num_classes: int = 1000,
    in_channels: int = 3,
    image_size: int | tuple[int, int] = 224,
    pretrained: bool | str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A torchvision classification model (``torchvision.models.get_model``) for the data's classes and channels.

    Args:
        name: A model of ``torchvision.models`` (``resnet18``, ``mobilenet_v3_small``); ``python -m imgbench.models
            --torchvision`` lists them.
        num_classes: Outputs (logits).
        in_channels: Image channels: other than 3 replaces the first convolution.
        image_size: ``(height, width)`` or one side: passed to the ViTs (``image_size``, square) and MaxViT.
        pretrained: None/False: random init | True: the ``DEFAULT`` weights | a member name (``IMAGENET1K_V2``) |
            a state_dict file (``.pth``, ``.safetensors``, an imgbench ``.ckpt``).
        **kwargs: The model's own options (``dropout``, ``stochastic_depth_prob``, ...). googlenet and inception_v3
            default to ``aux_logits=False`` (one output to train on).

    Returns:
        The model, with ``pretrained`` weights loaded.

    Raises:
        ArgumentError: An unknown name or a bad option (named by the error).
        CheckpointError: Weights that cannot be read or downloaded, or do not fit.
    """
    prefix = f"torchvision {name}: "
    size = check_data_shape(num_classes, in_channels, image_size, prefix=prefix)
    check_pretrained(pretrained, prefix=prefix)
    if name not in torchvision_names():
        raise _unknown("torchvision", name, torchvision_names())
    _check_options(prefix, kwargs)
    options = dict(kwargs)
    if name in ("googlenet", "inception_v3"):  # as torchvision builds them for its weights, aux heads off
        options.setdefault("aux_logits", False)
        options.setdefault("init_weights", False)  # torchvision's coming default; the old init takes seconds
        options.setdefault("transform_input", bool(pretrained) and in_channels == 3)
    auto = {"image_size"} if name.startswith("vit_") else {"input_size"} if name.startswith("maxvit_") else set()
    for key in auto - set(options):  # position embeddings and windows are built for one size
        options[key] = size[0] if key == "image_size" else size

    def build(opts: dict[str, Any]) -> nn.Module:
        return tv_models.get_model(name, weights=None, num_classes=num_classes, **opts)

    model = _build(prefix, build, options, auto, f"{in_channels}x{size[0]}x{size[1]}")
    first_conv = next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if in_channels != 3 and first_conv is not None:
        _replace_first_conv(model, first_conv, in_channels)
    model.pretrained_cfg = PretrainedCfg(
        f"torchvision {name}",
        torchvision_weights=tv_models.get_model_weights(name).__name__,
        classifier=_classifier_name(model, num_classes),
        filter_fn=_torchvision_filter,
        first_conv=first_conv,
    )
    if pretrained:
        load_pretrained(model, pretrained, in_channels=in_channels)
    return model
