"""Study B's AlexNet as published (``alexnet``) and torchvision's AlexNet (``alexnet_tv``).

- ``alexnet`` (study B, Krizhevsky et al. 2012): convs 96-256-384-384-256, LRN after the ReLU of conv1 and
  conv2, overlapping 3x3/2 max pooling after the two LRNs and after conv5, FC 4096-4096-classes with dropout
  0.5 on the outputs of FC6 and FC7 (Caffe's placement), the two-GPU split as ``groups=2`` on conv2, conv4
  and conv5, and the paper's initialisation. 60,965,224 parameters (1000 classes, groups=2).
- ``alexnet_tv``: torchvision's single-GPU variant (64-192-384-256-256, no LRN, adaptive 6x6 average pool);
  its ``state_dict`` is exactly torchvision's ``alexnet()`` (61,100,840 parameters), so ImageNet weights load
  with ``pretrained=<file>``.

Study A's AlexNet with a hash layer, built from the same parts, is :mod:`imgbench.models.alexnet_hash`.

The 224 versus 227 question: with the paper's 224 crops, conv1 (11x11, stride 4) only gives the paper's
55x55 map with padding, so conv1 has ``padding=2`` (torchvision's choice): 224 -> 55 -> 27 -> 13 -> 6.
A 227 input (Caffe's crops) also works: 227 -> 56 -> 27 -> 13 -> 6; both give FC6 9216 inputs.

Small images (28x28, 32x32): ``layout=small`` keeps 5 conv + 3 FC layers and the widths, but conv1 is 5x5
stride 1 (like the 5x5 convs of Krizhevsky's cuda-convnet CIFAR-10 net) and the 3x3/2 pools have padding 1,
so 32 -> 16 -> 8 -> 4 and 28 -> 14 -> 7 -> 4 (FC6 sees 256x4x4). ``layout=auto`` takes the ImageNet layout
whenever it fits (at least 63 px) and the small one otherwise. Alternatively ``resize_to=224`` resizes
inside the model (bilinear) and replicates gray images to 3 channels, so the ImageNet layout (and ImageNet
weights) can be used on MNIST or CIFAR.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import ArgumentError
from .arguments import (
    check_bool,
    check_choice,
    check_data_shape,
    check_fraction,
    check_int,
    check_pretrained,
    check_size,
)
from .layers import InputAdapter, MaxAvgPool2d, conv_out, paper_lrn
from .registry import build_model, register_model
from .weights import PretrainedCfg

__all__ = [
    "BIAS_ONE",
    "LAYOUTS",
    "MIN_IMAGENET_SIZE",
    "PAPER_WIDTHS",
    "TORCHVISION_WIDTHS",
    "AlexNet",
    "TorchvisionAlexNet",
    "alexnet",
    "alexnet_features",
    "alexnet_tv",
    "check_init",
    "features_out_size",
    "input_plan",
    "paper_init_",
]

PAPER_WIDTHS = (96, 256, 384, 384, 256)
TORCHVISION_WIDTHS = (64, 192, 384, 256, 256)
MIN_IMAGENET_SIZE = 63  # the smallest input for which the ImageNet layout reaches a 1x1 map after pool5
# (kernel, stride, padding) of conv1..conv5 and the padding of the three 3x3/2 pools, per layout
LAYOUTS = {
    "imagenet": (((11, 4, 2), (5, 1, 2), (3, 1, 1), (3, 1, 1), (3, 1, 1)), 0),
    "small": (((5, 1, 2), (5, 1, 2), (3, 1, 1), (3, 1, 1), (3, 1, 1)), 1),
}
GROUPED = (False, True, False, True, True)  # the convs that saw only their own GPU's half (conv2, conv4, conv5)
BIAS_ONE = (False, True, False, True, True)  # the convs whose biases the paper initialises to 1
POOLINGS = ("max", "maxave")
INITS = ("paper", "torch")


# ---------------------------------------------------------------------------- parts shared with alexnet_hash


def alexnet_features(
    in_channels: int,
    widths: Sequence[int] = PAPER_WIDTHS,
    groups: int = 2,
    lrn: bool = True,
    bn: bool = False,
    pooling: str = "max",
    overlap: bool = True,
    layout: str = "imagenet",
) -> nn.Sequential:
    """AlexNet's five conv layers.

    conv [-> BN] -> ReLU [-> LRN, conv1 and conv2] [-> pool, after conv1, conv2 and conv5]. With the
    torchvision widths, ``groups=1``, no LRN and no BN this is torchvision's ``features``, index for index.

    Args:
        in_channels: Channels conv1 sees.
        widths: Output channels of conv1..conv5.
        groups: Groups of conv2, conv4 and conv5 (2: the paper's two-GPU split).
        lrn: Local response normalisation after the ReLUs of conv1 and conv2.
        bn: BatchNorm after every conv, before its ReLU.
        pooling: max | maxave (:class:`~imgbench.models.layers.MaxAvgPool2d`).
        overlap: 3x3/2 pools (True) or 2x2/2.
        layout: imagenet | small (see the module docstring).

    Returns:
        The layers as one ``nn.Sequential``.

    Raises:
        ArgumentError: An unknown layout or pooling, or ``groups`` that does not divide the widths.
    """
    check_choice("layout", layout, tuple(LAYOUTS), prefix="alexnet ")
    check_choice("pooling", pooling, POOLINGS, prefix="alexnet ")
    c = in_channels
    for i, width in enumerate(widths):
        g = groups if GROUPED[i] else 1
        if c % g or width % g:
            raise ArgumentError(
                "groups", f"alexnet groups={groups} must divide the widths of conv{i + 1} ({c} -> {width})"
            )
        c = width
    convs, pool_padding = LAYOUTS[layout]
    pool_kernel, pool_padding = (3, pool_padding) if overlap else (2, 0)
    layers: list[nn.Module] = []
    c = in_channels
    for i, (width, (kernel, stride, padding)) in enumerate(zip(widths, convs)):
        g = groups if GROUPED[i] else 1
        layers.append(nn.Conv2d(c, width, kernel, stride=stride, padding=padding, groups=g))
        if bn:
            layers.append(nn.BatchNorm2d(width))
        layers.append(nn.ReLU(inplace=True))
        if lrn and i < 2:
            layers.append(paper_lrn())
        if i in (0, 1, 4):
            if pooling == "max":
                layers.append(nn.MaxPool2d(pool_kernel, 2, pool_padding))
            else:
                layers.append(MaxAvgPool2d(pool_kernel, 2, pool_padding))
        c = width
    return nn.Sequential(*layers)


def features_out_size(size: tuple[int, int], layout: str, overlap: bool = True) -> tuple[int, int]:
    """Spatial size after :func:`alexnet_features` (floor rounding everywhere).

    Args:
        size: ``(height, width)`` of conv1's input.
        layout: imagenet | small.
        overlap: 3x3/2 pools (True) or 2x2/2.

    Returns:
        ``(height, width)`` of the conv5 map after its pool.
    """
    convs, pool_padding = LAYOUTS[layout]
    pool_kernel, pool_padding = (3, pool_padding) if overlap else (2, 0)
    out = []
    for s in size:
        for i, (kernel, stride, padding) in enumerate(convs):
            s = conv_out(s, kernel, stride, padding)
            if i in (0, 1, 4):
                s = conv_out(s, pool_kernel, 2, pool_padding)
        out.append(s)
    return out[0], out[1]


def input_plan(
    name: str,
    image_size: int | Sequence[int],
    layout: str,
    resize_to: int | Sequence[int] | None,
    hint: str = "set layout=small or resize_to=224",
) -> tuple[tuple[int, int], str, tuple[int, int] | None]:
    """How images reach conv1: the size conv1 sees, the layout and the resize target.

    Args:
        name: The model's name (for messages).
        image_size: The data's image size.
        layout: auto | imagenet | small.
        resize_to: A size to resize to inside the model, or None.
        hint: What to do when the images are too small for the ImageNet layout.

    Returns:
        ``(size, layout, target)``: ``layout`` resolved (never auto), ``target`` None without resizing.

    Raises:
        ArgumentError: A bad layout or resize_to, or images too small for the ImageNet layout.
    """
    size = check_size("image_size", image_size, prefix=f"{name}: ")
    target = check_size("resize_to", resize_to, prefix=f"{name}: ") if resize_to is not None else None
    if target is not None:
        size = target
    check_choice("layout", layout, ("auto", *LAYOUTS), prefix=f"{name}: ")
    if layout == "auto":
        layout = "imagenet" if min(size) >= MIN_IMAGENET_SIZE else "small"
    if layout == "imagenet" and min(size) < MIN_IMAGENET_SIZE:
        raise ArgumentError(
            "image_size" if target is None else "resize_to",
            f"{name}: {size[0]}x{size[1]} images are too small for the ImageNet layout (at least "
            f"{MIN_IMAGENET_SIZE} px); {hint}",
        )
    return size, layout, target


def paper_init_(linears_and_convs: Sequence[nn.Module], bias_one: Sequence[bool]) -> None:
    """The paper's initialisation, in place: weights N(0, 0.01); biases 1 where ``bias_one``, else 0.

    Args:
        linears_and_convs: The layers to initialise.
        bias_one: For each layer, whether its biases start at 1.
    """
    for m, one in zip(linears_and_convs, bias_one):
        nn.init.normal_(m.weight, 0.0, 0.01)
        nn.init.constant_(m.bias, 1.0 if one else 0.0)


def check_init(name: str, init: str) -> str:
    """Check the ``init`` switch of the AlexNets (paper | torch).

    Args:
        name: The model's name (for messages).
        init: The value to check.

    Returns:
        ``init``.

    Raises:
        ArgumentError: Another value.
    """
    return check_choice("init", init, INITS, prefix=f"{name}: ")


# ---------------------------------------------------------------------------- the two AlexNets


class _AlexNetBase(nn.Module):
    """``input`` (resize / gray to RGB, no parameters) -> ``features`` -> ``avgpool`` -> flatten -> ``classifier``."""

    input: InputAdapter
    features: nn.Sequential
    avgpool: nn.Module
    classifier: nn.Sequential

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(self.input(x)))
        return self.classifier(torch.flatten(x, 1))


class AlexNet(_AlexNetBase):
    """Study B's AlexNet as published: 60,965,224 parameters with 1000 classes and ``groups=2`` (224 or 227 px).

    No average pool: the classifier sees the conv5 map as is.

    Args:
        num_classes: Outputs (logits).
        in_channels: Image channels.
        image_size: ``(height, width)`` or one side.
        groups: 2 = the two-GPU split (conv2, conv4, conv5 see only their half) | 1 = one GPU.
        lrn: The paper's LRN (False: its ablation).
        overlap: 3x3/2 pooling (False: the paper's 2x2/2 ablation).
        dropout: Dropout on the outputs of FC6 and FC7, in [0, 1).
        layout: auto | imagenet | small (see the module docstring).
        resize_to: Resize inside the model to this size (gray images are then replicated to RGB); None: no resize.
        init: paper = weights N(0, 0.01), biases 1 in conv2, conv4, conv5, FC6, FC7 and 0 elsewhere | torch.

    Raises:
        ArgumentError: A bad argument (named by the error), or images too small for the layout.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        image_size: int | tuple[int, int] = 224,
        groups: int = 2,
        lrn: bool = True,
        overlap: bool = True,
        dropout: float = 0.5,
        layout: str = "auto",
        resize_to: int | tuple[int, int] | None = None,
        init: str = "paper",
    ) -> None:
        super().__init__()
        check_data_shape(num_classes, in_channels, image_size, prefix="alexnet: ")
        check_int("groups", groups, prefix="alexnet: ")
        check_bool("lrn", lrn, prefix="alexnet: ")
        check_bool("overlap", overlap, prefix="alexnet: ")
        check_fraction("dropout", dropout, prefix="alexnet: ")
        check_init("alexnet", init)
        size, layout, target = input_plan("alexnet", image_size, layout, resize_to)
        h, w = features_out_size(size, layout, overlap)
        if h < 1 or w < 1:
            raise ArgumentError("image_size", f"alexnet: {size[0]}x{size[1]} images are too small for layout={layout}")
        gray_to_rgb = target is not None and in_channels == 1  # a resized gray image is fed as RGB, like ImageNet's
        self.input = InputAdapter(target, gray_to_rgb)
        c_in = 3 if gray_to_rgb else in_channels
        self.features = alexnet_features(
            c_in, PAPER_WIDTHS, groups, lrn=lrn, pooling="max", overlap=overlap, layout=layout
        )
        self.avgpool = nn.Identity()
        self.classifier = nn.Sequential(
            nn.Linear(PAPER_WIDTHS[-1] * h * w, 4096),  # FC6
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),  # FC7
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),  # FC8
        )
        if init == "paper":
            convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
            fcs = [m for m in self.classifier if isinstance(m, nn.Linear)]
            paper_init_(convs + fcs, (*BIAS_ONE, True, True, False))


class TorchvisionAlexNet(_AlexNetBase):
    """The torchvision AlexNet, layer for layer, with an adaptive 6x6 average pool.

    It has the same ``state_dict`` (61,100,840 parameters with 1000 classes) and, in eval mode, the same
    outputs as ``torchvision.models.alexnet()``. Gray images are replicated to RGB (conv1 always has 3 channels).

    Args:
        num_classes: Outputs (logits).
        in_channels: Image channels: 1 or 3.
        image_size: ``(height, width)`` or one side; at least 63 px unless ``resize_to`` is set.
        dropout: Dropout before FC6 and FC7 (torchvision's placement), in [0, 1).
        resize_to: Resize inside the model to this size; None: no resize.
        pretrained: A state_dict file (e.g. torchvision's ``alexnet-owt-7be5be79.pth``), an imgbench checkpoint
            of this model, or torchvision's weight name ``IMAGENET1K_V1`` / ``DEFAULT`` (downloaded; needs a
            network); loaded by :func:`~imgbench.models.registry.build_model` after construction. Every tensor
            must fit, except the last layer when ``num_classes`` differs from the file's: that layer keeps its
            fresh initialisation (fine-tuning).

    Raises:
        ArgumentError: A bad argument (named by the error), or images below 63 px without ``resize_to``.
    """

    pretrained_cfg = PretrainedCfg("alexnet_tv", torchvision_weights="AlexNet_Weights", classifier="classifier.6")

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        image_size: int | tuple[int, int] = 224,
        dropout: float = 0.5,
        resize_to: int | tuple[int, int] | None = None,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        check_data_shape(num_classes, in_channels, image_size, prefix="alexnet_tv: ")
        check_fraction("dropout", dropout, prefix="alexnet_tv: ")
        check_pretrained(pretrained, prefix="alexnet_tv: ")
        hint = "set resize_to=224 to resize inside the model"
        _, _, target = input_plan("alexnet_tv", image_size, "imagenet", resize_to, hint)
        if in_channels not in (1, 3):
            raise ArgumentError(
                "in_channels", f"alexnet_tv takes 1 or 3 channels (ImageNet's conv1 has 3), got {in_channels}"
            )
        self.input = InputAdapter(target, in_channels == 1)
        self.features = alexnet_features(3, TORCHVISION_WIDTHS, groups=1, lrn=False, layout="imagenet")
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(TORCHVISION_WIDTHS[-1] * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )


@register_model(AlexNet)
def alexnet(**kwargs: Any) -> AlexNet:
    """Study B's AlexNet as published (60,965,224 parameters with 1000 classes and ``groups=2``).

    Args:
        **kwargs: The arguments of :class:`AlexNet`.

    Returns:
        The model.
    """
    return build_model(AlexNet, **kwargs)


@register_model(TorchvisionAlexNet)
def alexnet_tv(**kwargs: Any) -> TorchvisionAlexNet:
    """The torchvision AlexNet (61,100,840 parameters with 1000 classes); ``pretrained`` loads its weights.

    Args:
        **kwargs: The arguments of :class:`TorchvisionAlexNet`.

    Returns:
        The model, with ``pretrained`` weights loaded when given.
    """
    return build_model(TorchvisionAlexNet, **kwargs)
