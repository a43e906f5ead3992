"""``resnet18`` and ``resnet34``: ResNet-18 and ResNet-34 (basic blocks) with study C's switches.

The switches give SELU blocks, an inception stem and zero-padding or projection shortcuts.

Layout (He et al. 2016): a stem, four stages of basic blocks (2-2-2-2 or 3-4-6-3) with 64, 128, 256, 512
channels, where each new stage halves the map and doubles the channels, global average pooling and a
linear classifier ``fc``. Parameter names are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ...,
``layer2.0.downsample.0``, ``fc``), so with ``stem_layout="imagenet"``, ``shortcut="projection"`` and
``activation="relu"`` a ``torchvision.models.resnet18()`` / ``resnet34()`` state_dict loads with
``strict=True`` and gives the same outputs.

Switches (each a config value, so study C's ablation is one sweep):

- ``activation``: ``relu`` | ``selu`` inside every residual block: conv-BN-act-conv-BN, add, act. The stem
  keeps ReLU (the paper changes the residual block only). SELU uses PyTorch's constants
  (lambda ~ 1.0507, alpha ~ 1.6733).
- ``stem``: ``conv`` (one convolution) | ``inception`` (study C's three branches of stacked 3x3 convs,
  [4->8->16], [4->8->16], [8->16->32] channels, concatenated to 64).
- ``stem_layout``: how much the stem downsamples. ``small``: stride 1, no pooling (a 3x3 conv, or inception
  convs with stride 1 and 'same' padding). ``imagenet``: stride 4 (the 7x7 stride-2 conv, or stride 2 in each
  inception branch's first conv, then a 3x3 stride-2 max pool). ``auto``: small below 64 px (the shorter
  side), imagenet from 64 px up.
- ``shortcut`` where a block changes the shape: ``zero_pad`` (the original ResNet's option A and study C's
  baseline: subsample by the stride, append zero channels; no parameters) | ``projection`` (1x1 conv + BN,
  option B as in torchvision).

Convolutions use torchvision's initialisation (Kaiming-normal, fan-out) for every switch; with BN after
every convolution the scale of the initial weights does not matter.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ArgumentError
from .arguments import check_choice, check_data_shape, check_int
from .layers import activation as make_activation
from .layers import pair
from .registry import build_model, register_model

__all__ = ["BasicBlock", "InceptionStem", "ResNet", "ZeroPadShortcut", "resnet18", "resnet34", "resolve_stem_layout"]

ACTIVATIONS = ("relu", "selu")
STEMS = ("conv", "inception")
STEM_LAYOUTS = ("auto", "small", "imagenet")
SHORTCUTS = ("zero_pad", "projection")
SMALL_IMAGE_LIMIT = 64  # stem_layout=auto: images with a shorter side below this use the small stem


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, 'same' padding, no bias (a BN follows).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: The step.

    Returns:
        The convolution.
    """
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias (a BN follows).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: The step.

    Returns:
        The convolution.
    """
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A shortcut: keep every ``stride``-th pixel and append zero channels up to ``out_channels``.

    It has no parameters and keeps the input's dtype and memory format (channels_last stays channels_last).

    Args:
        in_channels: Input channels.
        out_channels: Output channels (at least ``in_channels``).
        stride: Subsampling step.

    Raises:
        ArgumentError: ``out_channels`` below ``in_channels``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ArgumentError(
                "out_channels", f"zero_pad shortcut cannot reduce channels ({in_channels} -> {out_channels})"
            )
        self.extra_channels = out_channels - in_channels
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        # pad = (left, right, top, bottom, channels before, channels after)
        out = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        # F.pad loses channels_last on odd map sizes (the strided slice's layout is ambiguous): restore it
        return out.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

    def extra_repr(self) -> str:
        return f"extra_channels={self.extra_channels}, stride={self.stride}"


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN: conv-BN-act-conv-BN, add the shortcut, act.

    Args:
        in_channels: Input channels.
        channels: Output channels.
        stride: Stride of the first conv.
        downsample: The shortcut when the shape changes; None: identity.
        activation: relu | selu (any name :func:`~imgbench.models.layers.activation` knows).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act = make_activation(activation)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample  # None: identity shortcut

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + identity)


class InceptionStem(nn.Module):
    """Study C's stem convolution: three branches of stacked 3x3 convs, concatenated along channels.

    Branch widths [4, 8, 16], [4, 8, 16], [8, 16, 32] give 16 + 16 + 32 = 64 output channels. Inside a branch
    each conv is followed by BN and ReLU; the branches' last convs are normalised and activated by the
    network's ``bn1`` and ``relu`` after the concatenation, which is the same thing (BN works per channel).
    ``stride`` is applied by the first conv of each branch; all convs pad to keep the size ('same').

    Args:
        in_channels: Input channels.
        branches: Conv widths per branch.
        stride: Stride of each branch's first conv.
    """

    def __init__(
        self,
        in_channels: int,
        branches: tuple[tuple[int, ...], ...] = ((4, 8, 16), (4, 8, 16), (8, 16, 32)),
        stride: int = 1,
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(self._branch(in_channels, widths, stride) for widths in branches)
        self.out_channels = sum(widths[-1] for widths in branches)

    @staticmethod
    def _branch(in_channels: int, widths: tuple[int, ...], stride: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        c = in_channels
        for i, width in enumerate(widths):
            layers.append(conv3x3(c, width, stride if i == 0 else 1))
            if i < len(widths) - 1:  # the last conv's BN + ReLU are the network's bn1 + relu
                layers += [nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            c = width
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class ResNet(nn.Module):
    """A basic-block ResNet: stem (conv1-bn1-relu-maxpool), layer1..layer4, global average pool, ``fc``.

    Args:
        blocks_per_stage: Basic blocks in layer1..layer4 (positional only: fixed by the factory, 2-2-2-2 for
            ResNet-18, 3-4-6-3 for ResNet-34).
        num_classes: Outputs (logits).
        in_channels: Image channels.
        image_size: ``(height, width)`` or one side (chooses the stem layout when it is ``auto``).
        activation: relu | selu inside every residual block (the stem keeps ReLU).
        stem: conv (one convolution) | inception (study C's three branches).
        stem_layout: auto | small | imagenet (see the module docstring).
        shortcut: zero_pad (option A, no parameters) | projection (1x1 conv + BN, option B).

    Raises:
        ArgumentError: A bad argument (named by the error).
    """

    def __init__(
        self,
        blocks_per_stage: tuple[int, int, int, int],
        /,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int | tuple[int, int] = 32,
        activation: str = "relu",
        stem: str = "conv",
        stem_layout: str = "auto",
        shortcut: str = "zero_pad",
    ) -> None:
        super().__init__()
        check_data_shape(num_classes, in_channels, image_size, prefix="resnet ")
        if len(blocks_per_stage) != 4:
            raise ArgumentError("blocks_per_stage", f"resnet needs blocks for 4 stages, got {blocks_per_stage}")
        for n in blocks_per_stage:
            check_int("blocks_per_stage", n, prefix="resnet ")
        _check("activation", activation, ACTIVATIONS)
        _check("stem", stem, STEMS)
        _check("shortcut", shortcut, SHORTCUTS)
        stem_layout = resolve_stem_layout(stem_layout, image_size)
        self.activation = activation
        self.shortcut = shortcut
        imagenet = stem_layout == "imagenet"

        # stem: conv1 -> bn1 -> relu -> maxpool, 64 channels out; stride 4 (imagenet) or 1 (small)
        if stem == "inception":
            self.conv1 = InceptionStem(in_channels, stride=2 if imagenet else 1)
        elif imagenet:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = conv3x3(in_channels, 64)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if imagenet else nn.Identity()

        self.layer1 = self._make_stage(64, 64, blocks_per_stage[0], stride=1)
        self.layer2 = self._make_stage(64, 128, blocks_per_stage[1], stride=2)
        self.layer3 = self._make_stage(128, 256, blocks_per_stage[2], stride=2)
        self.layer4 = self._make_stage(256, 512, blocks_per_stage[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_stage(self, in_channels: int, channels: int, num_blocks: int, stride: int) -> nn.Sequential:
        """``num_blocks`` basic blocks; the first one changes the shape (stride, channels) where needed."""
        downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            if self.shortcut == "projection":
                downsample = nn.Sequential(conv1x1(in_channels, channels, stride), nn.BatchNorm2d(channels))
            else:
                downsample = ZeroPadShortcut(in_channels, channels, stride)
        blocks = [BasicBlock(in_channels, channels, stride, downsample, self.activation)]
        blocks += [BasicBlock(channels, channels, activation=self.activation) for _ in range(1, num_blocks)]
        return nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def _check(name: str, value: str, choices: tuple[str, ...]) -> None:
    check_choice(name, value, choices, message=f"resnet {name} must be one of {', '.join(choices)}; got '{value}'")


def resolve_stem_layout(stem_layout: str, image_size: int | tuple[int, int]) -> str:
    """The stem layout to use.

    Args:
        stem_layout: auto | small | imagenet.
        image_size: ``(height, width)`` or one side.

    Returns:
        ``stem_layout``, with ``auto`` -> ``small`` for images whose shorter side is below 64 px, ``imagenet``
        otherwise.

    Raises:
        ArgumentError: An unknown stem layout.
    """
    _check("stem_layout", stem_layout, STEM_LAYOUTS)
    if stem_layout != "auto":
        return stem_layout
    return "small" if min(pair(image_size)) < SMALL_IMAGE_LIMIT else "imagenet"


@register_model(ResNet)
def resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18 (basic blocks 2-2-2-2).

    11,689,512 params with 1000 classes, the imagenet stem and projection shortcuts (torchvision's resnet18);
    zero_pad shortcuts save 173,824.

    Args:
        **kwargs: The keyword arguments of :class:`ResNet`.

    Returns:
        The model.
    """
    return build_model(ResNet, (2, 2, 2, 2), **kwargs)


@register_model(ResNet)
def resnet34(**kwargs: Any) -> ResNet:
    """ResNet-34 (basic blocks 3-4-6-3), study C's network.

    21,797,672 params with 1000 classes, the imagenet stem and projection shortcuts (torchvision's resnet34);
    zero_pad shortcuts save 173,824.

    Args:
        **kwargs: The keyword arguments of :class:`ResNet`.

    Returns:
        The model.
    """
    return build_model(ResNet, (3, 4, 6, 3), **kwargs)
