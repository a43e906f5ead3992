"""Studies A and B: AlexNet as published, torchvision's AlexNet, and study A's AlexNet with a binary hash layer.

- ``alexnet`` (study B, Krizhevsky et al. 2012): convs 96-256-384-384-256, LRN after the ReLU of conv1 and
  conv2, overlapping 3x3/2 max pooling after the two LRNs and after conv5, FC 4096-4096-classes with dropout
  0.5 on the outputs of FC6 and FC7 (Caffe's placement), the two-GPU split as ``groups=2`` on conv2, conv4
  and conv5, and the paper's initialisation. 60,965,224 parameters (1000 classes, groups=2).
- ``alexnet_tv``: torchvision's single-GPU variant (64-192-384-256-256, no LRN, adaptive 6x6 average pool);
  its ``state_dict`` is exactly torchvision's ``alexnet()`` (61,100,840 parameters), so ImageNet weights load
  with ``pretrained=<file>``.
- ``alexnet_hash`` (study A): max-ave pooling, a sigmoid hash layer H between FC7 and FC8, BN after every
  conv and maxout in FC6/FC7, each a switch; ``forward`` returns logits, ``encode`` the activations of H.

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

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, ConfigError
from .layers import conv_out, pair
from .registry import register_model

__all__ = [
    "AlexNet",
    "AlexNetHash",
    "InputAdapter",
    "MaxAvgPool2d",
    "Maxout",
    "alexnet",
    "alexnet_features",
    "alexnet_hash",
    "alexnet_tv",
    "load_state_dict_file",
    "paper_lrn",
]

log = logging.getLogger(__name__)

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


# ---------------------------------------------------------------------------- building blocks


def paper_lrn() -> nn.LocalResponseNorm:
    """The paper's local response normalisation: ``b = a / (k + alpha * sum a^2)^beta`` over 5 adjacent
    channels, k=2, alpha=1e-4, beta=0.75. PyTorch (like Caffe) divides alpha by the size, so alpha * size is
    passed to get the paper's formula."""
    size, alpha = 5, 1e-4
    return nn.LocalResponseNorm(size, alpha=alpha * size, beta=0.75, k=2.0)


class MaxAvgPool2d(nn.Module):
    """Study A's max-ave pooling: ``max_pool(x) + avg_pool(x)`` over the same windows (weights 1 and 1).
    Padded border cells are left out of the average (``count_include_pad=False``)."""

    def __init__(self, kernel_size: int = 3, stride: int = 2, padding: int = 0) -> None:
        super().__init__()
        self.max = nn.MaxPool2d(kernel_size, stride, padding)
        self.avg = nn.AvgPool2d(kernel_size, stride, padding, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.max(x) + self.avg(x)


class Maxout(nn.Module):
    """A fully connected maxout layer: ``out_features`` units, each the max of ``pieces`` linear pieces
    (one ``Linear(in, out * pieces)``; unit ``i`` takes pieces ``i * pieces ... i * pieces + pieces - 1``)."""

    def __init__(self, in_features: int, out_features: int, pieces: int = 2) -> None:
        super().__init__()
        if pieces < 1:
            raise ConfigError(f"maxout needs at least one piece, got {pieces}")
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).unflatten(-1, (self.out_features, self.pieces)).amax(-1)


class InputAdapter(nn.Module):
    """What happens to a batch before conv1 (no parameters): an optional bilinear resize to ``size`` and an
    optional replication of a gray channel to RGB. An identity when neither is asked for."""

    def __init__(self, size: tuple[int, int] | None = None, gray_to_rgb: bool = False) -> None:
        super().__init__()
        self.size, self.gray_to_rgb = size, gray_to_rgb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        if self.gray_to_rgb and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return x

    def extra_repr(self) -> str:
        return f"size={self.size}, gray_to_rgb={self.gray_to_rgb}"


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
    """AlexNet's five conv layers: conv [-> BN] -> ReLU [-> LRN, conv1 and conv2] [-> pool, after conv1, conv2
    and conv5]. ``groups`` applies to conv2, conv4 and conv5; pools are 3x3/2 (``overlap``) or 2x2/2.
    With the torchvision widths, ``groups=1``, no LRN and no BN this is torchvision's ``features``, index for
    index."""
    if layout not in LAYOUTS:
        raise ConfigError(f"alexnet layout must be imagenet or small, got '{layout}'")
    if pooling not in ("max", "maxave"):
        raise ConfigError(f"alexnet pooling must be max or maxave, got '{pooling}'")
    convs, pool_padding = LAYOUTS[layout]
    pool_kernel, pool_padding = (3, pool_padding) if overlap else (2, 0)
    layers: list[nn.Module] = []
    c = in_channels
    for i, (width, (kernel, stride, padding)) in enumerate(zip(widths, convs)):
        g = groups if GROUPED[i] else 1
        if c % g or width % g:
            raise ConfigError(f"alexnet groups={groups} must divide the widths of conv{i + 1} ({c} -> {width})")
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
    """Spatial size after :func:`alexnet_features` (floor rounding everywhere)."""
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


def _input_plan(
    name: str,
    in_channels: int,
    image_size: int | Sequence[int],
    layout: str,
    resize_to: int | Sequence[int] | None,
    hint: str = "set model.layout=small or model.resize_to=224",
) -> tuple[tuple[int, int], str, tuple[int, int] | None]:
    """(size conv1 sees, layout, resize target) from the options; one-line errors for what cannot work."""
    if in_channels < 1:
        raise ConfigError(f"{name}: in_channels must be >= 1, got {in_channels}")
    size = pair(image_size)
    target = pair(resize_to) if resize_to is not None else None
    if target is not None:
        size = target
    if layout == "auto":
        layout = "imagenet" if min(size) >= MIN_IMAGENET_SIZE else "small"
    elif layout not in LAYOUTS:
        raise ConfigError(f"{name}: model.layout must be auto, imagenet or small, got '{layout}'")
    if layout == "imagenet" and min(size) < MIN_IMAGENET_SIZE:
        raise ConfigError(
            f"{name}: {size[0]}x{size[1]} images are too small for the ImageNet layout (at least "
            f"{MIN_IMAGENET_SIZE} px); {hint}"
        )
    return size, layout, target


def _paper_init_(linears_and_convs: Sequence[nn.Module], bias_one: Sequence[bool]) -> None:
    """The paper's initialisation: weights N(0, 0.01); biases 1 where ``bias_one``, else 0."""
    for m, one in zip(linears_and_convs, bias_one):
        nn.init.normal_(m.weight, 0.0, 0.01)
        nn.init.constant_(m.bias, 1.0 if one else 0.0)


def _check_init(name: str, init: str) -> None:
    if init not in ("paper", "torch"):
        raise ConfigError(f"{name}: model.init must be paper or torch, got '{init}'")


# ---------------------------------------------------------------------------- pretrained weights


def load_state_dict_file(source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state_dict from a file (``torch.load(weights_only=True)``: a plain state_dict, or a checkpoint with a
    ``state_dict`` entry, whose ``net.`` keys are taken) or from torchvision's named AlexNet weights
    (``IMAGENET1K_V1`` or ``DEFAULT``, downloaded once into torch's cache; needs a network)."""
    path = Path(source).expanduser()
    if not path.is_file():
        from torchvision.models import AlexNet_Weights

        name = str(source)
        if name not in AlexNet_Weights.__members__:
            raise CheckpointError(
                f"pretrained weights {path} do not exist; pass a state_dict file (e.g. torchvision's "
                f"alexnet-owt-7be5be79.pth) or one of {', '.join(AlexNet_Weights.__members__)}"
            )
        weights = AlexNet_Weights[name]
        try:
            return weights.get_state_dict(progress=False)
        except Exception as e:  # no network, proxy, disk full, ...
            raise CheckpointError(
                f"could not download torchvision's AlexNet_Weights.{name} ({type(e).__name__}: {e}); download "
                f"{weights.url} on a machine with internet and pass its path as model.pretrained"
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


def _layers_with_weights(state: Mapping[str, torch.Tensor], ndim: int) -> list[tuple[str, str | None]]:
    """(weight key, bias key or None) of every conv (ndim 4) or linear (ndim 2) layer of ``state``, in order."""
    found = []
    for key, value in state.items():
        if key.endswith("weight") and value.ndim == ndim:
            bias = key[: -len("weight")] + "bias"
            found.append((key, bias if bias in state else None))
    return found


# ---------------------------------------------------------------------------- AlexNet (studies B and torchvision)


class AlexNet(nn.Module):
    """``input`` (resize / gray to RGB, no parameters) -> ``features`` -> ``avgpool`` -> flatten -> ``classifier``.

    ``alexnet`` has no average pool and its classifier sees the conv5 map as is; ``alexnet_tv`` has
    torchvision's adaptive 6x6 average pool and classifier.
    """

    def __init__(
        self,
        features: nn.Sequential,
        classifier: nn.Sequential,
        avgpool: nn.Module | None = None,
        input_adapter: InputAdapter | None = None,
    ) -> None:
        super().__init__()
        self.input = input_adapter or InputAdapter()
        self.features = features
        self.avgpool = avgpool or nn.Identity()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(self.input(x)))
        return self.classifier(torch.flatten(x, 1))


@register_model
def alexnet(
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
) -> AlexNet:
    """Study B's AlexNet as published: 60,965,224 parameters with 1000 classes and ``groups=2`` (at 224 or 227 px).

    ``groups``: 2 = the two-GPU split (conv2, conv4, conv5 see only their half), 1 = one GPU.
    ``lrn`` / ``overlap``: the paper's ablations (no LRN; 2x2/2 instead of 3x3/2 pooling).
    ``layout``: auto | imagenet | small (see the module docstring); ``resize_to``: resize inside the model.
    ``init``: paper = weights N(0, 0.01), biases 1 in conv2, conv4, conv5, FC6, FC7 and 0 elsewhere | torch.
    """
    _check_init("alexnet", init)
    size, layout, target = _input_plan("alexnet", in_channels, image_size, layout, resize_to)
    gray_to_rgb = target is not None and in_channels == 1  # a resized gray image is fed as RGB, like ImageNet's
    c_in = 3 if gray_to_rgb else in_channels
    features = alexnet_features(c_in, PAPER_WIDTHS, groups, lrn=lrn, pooling="max", overlap=overlap, layout=layout)
    h, w = features_out_size(size, layout, overlap)
    if h < 1 or w < 1:
        raise ConfigError(f"alexnet: {size[0]}x{size[1]} images are too small for layout={layout}")
    flat = PAPER_WIDTHS[-1] * h * w
    classifier = nn.Sequential(
        nn.Linear(flat, 4096),  # FC6
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(4096, 4096),  # FC7
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(4096, num_classes),  # FC8
    )
    model = AlexNet(features, classifier, input_adapter=InputAdapter(target, gray_to_rgb))
    if init == "paper":
        convs = [m for m in features if isinstance(m, nn.Conv2d)]
        fcs = [m for m in classifier if isinstance(m, nn.Linear)]
        _paper_init_(convs + fcs, (*BIAS_ONE, True, True, False))
    return model


@register_model
def alexnet_tv(
    num_classes: int = 1000,
    in_channels: int = 3,
    image_size: int | tuple[int, int] = 224,
    pretrained: str | None = None,
    dropout: float = 0.5,
    resize_to: int | tuple[int, int] | None = None,
) -> AlexNet:
    """torchvision's AlexNet, layer for layer: the same ``state_dict`` (61,100,840 parameters with 1000 classes)
    and, in eval mode, the same outputs as ``torchvision.models.alexnet()``.

    ``pretrained``: a state_dict file (e.g. torchvision's ``alexnet-owt-7be5be79.pth``), an imgbench checkpoint
    of this model, or torchvision's weight name ``IMAGENET1K_V1`` / ``DEFAULT`` (downloaded; needs a network).
    Every tensor must fit, except the last layer when ``num_classes`` differs from the file's: that layer keeps
    its fresh initialisation (fine-tuning). Gray images are replicated to RGB (conv1 always has 3 channels);
    ``resize_to`` resizes inside the model (images below 63 px need it).
    """
    hint = "set model.resize_to=224 to resize inside the model"
    _, _, target = _input_plan("alexnet_tv", in_channels, image_size, "imagenet", resize_to, hint)
    if in_channels not in (1, 3):
        raise ConfigError(f"alexnet_tv takes 1 or 3 channels (ImageNet's conv1 has 3), got {in_channels}")
    state = load_state_dict_file(pretrained) if pretrained else None  # a missing file fails before any work
    features = alexnet_features(3, TORCHVISION_WIDTHS, groups=1, lrn=False, layout="imagenet")
    classifier = nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(TORCHVISION_WIDTHS[-1] * 6 * 6, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes),
    )
    model = AlexNet(features, classifier, nn.AdaptiveAvgPool2d((6, 6)), InputAdapter(target, in_channels == 1))
    if state is not None:
        _load_torchvision_layout(model, state, str(pretrained))
    return model


def _load_torchvision_layout(model: AlexNet, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly, except a classifier head of another class count (left as initialised)."""
    own = model.state_dict()
    head = [k for k in ("classifier.6.weight", "classifier.6.bias") if k in state and state[k].shape != own[k].shape]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape and k not in head]
    if missing or unexpected or wrong:
        parts = [
            f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        ]
        raise CheckpointError(f"pretrained weights {source} do not fit alexnet_tv ({'; '.join(parts)})")
    model.load_state_dict({k: v for k, v in state.items() if k not in head}, strict=not head)
    if head:
        n = own["classifier.6.weight"].shape[0]
        log.info("alexnet_tv: loaded %s; the %d-class head stays freshly initialised", source, n)


# ---------------------------------------------------------------------------- study A: AlexNet with a hash layer


class AlexNetHash(nn.Module):
    """AlexNet with study A's switches: ``input`` -> ``features`` -> ``fc6`` -> ``fc7`` -> [``hash`` (H, sigmoid)]
    -> ``fc8``. FC6 and FC7 are ``Linear + ReLU`` or :class:`Maxout`, each followed by dropout.

    ``forward(x)`` returns logits; ``encode(x)`` the sigmoid activations of H (the binary code is
    ``encode(x) >= 0.5``); ``forward_with_codes(x)`` both from one pass. ``hash_bits`` is the code length
    (0: no H, FC8 sits on FC7 like plain AlexNet).
    """

    def __init__(
        self,
        features: nn.Sequential,
        flat_features: int,
        num_classes: int,
        hash_bits: int = 48,
        fc_width: int = 2048,
        fc_activation: str = "maxout",
        maxout_pieces: int = 2,
        dropout: float = 0.5,
        input_adapter: InputAdapter | None = None,
    ) -> None:
        super().__init__()
        if hash_bits < 0:
            raise ConfigError(f"alexnet_hash: hash_bits must be >= 0 (0: no hash layer), got {hash_bits}")
        self.hash_bits = hash_bits
        self.input = input_adapter or InputAdapter()
        self.features = features
        self.fc6 = self._fc(flat_features, fc_width, fc_activation, maxout_pieces, dropout)
        self.fc7 = self._fc(fc_width, fc_width, fc_activation, maxout_pieces, dropout)
        self.hash = nn.Linear(fc_width, hash_bits) if hash_bits else None
        self.fc8 = nn.Linear(hash_bits or fc_width, num_classes)

    @staticmethod
    def _fc(n_in: int, n_out: int, activation: str, pieces: int, dropout: float) -> nn.Sequential:
        if activation == "maxout":
            return nn.Sequential(Maxout(n_in, n_out, pieces), nn.Dropout(dropout))
        if activation == "relu":
            return nn.Sequential(nn.Linear(n_in, n_out), nn.ReLU(inplace=True), nn.Dropout(dropout))
        raise ConfigError(f"alexnet_hash: fc_activation must be relu or maxout, got '{activation}'")

    def _fc7(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.features(self.input(x)), 1)
        return self.fc7(self.fc6(x))

    def forward_with_codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, sigmoid activations of H) from one forward pass; H is empty when ``hash_bits`` is 0."""
        x = self._fc7(x)
        if self.hash is None:
            return self.fc8(x), x.new_zeros(x.shape[0], 0)
        h = torch.sigmoid(self.hash(x))
        return self.fc8(h), h

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The sigmoid activations of H, ``(N, hash_bits)`` in (0, 1); ``>= 0.5`` gives the binary code."""
        if self.hash is None:
            raise RuntimeError("alexnet_hash was built with hash_bits=0: it has no hash layer")
        return torch.sigmoid(self.hash(self._fc7(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_codes(x)[0]


@register_model
def alexnet_hash(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int | tuple[int, int] = 32,
    hash_bits: int = 48,
    pooling: str = "maxave",
    fc_activation: str = "maxout",
    maxout_pieces: int = 2,
    fc_width: int | None = None,
    bn: bool = False,
    base: str = "paper",
    layout: str = "auto",
    resize_to: int | tuple[int, int] | None = None,
    dropout: float = 0.5,
    init: str = "torch",
    pretrained: str | None = None,
) -> AlexNetHash:
    """Study A's network; the defaults are the paper's final model (maxout + max-ave pooling, n = 48 bits).

    ``pooling``: max | maxave (``max_pool + avg_pool`` on AlexNet's three pools).
    ``hash_bits``: n units of the sigmoid layer H between FC7 and FC8 (0: none).
    ``bn``: BatchNorm after every conv (before its ReLU; conv biases kept so that pretrained weights fit).
    ``fc_activation``: relu | maxout with ``maxout_pieces`` (k, not stated: 2 keeps FC6's parameter count).
    ``fc_width``: FC6/FC7 width; None = 2048 with maxout (the paper), 4096 with ReLU.
    ``base``: paper = study B's convs (96-256-384-384-256, LRN, groups 2) | torchvision = torchvision's convs
    (64-192-384-256-256, no LRN), the layout of the ImageNet weights PyTorch users have.
    ``pretrained``: a state_dict file (or a torchvision weight name) of the same ``base``; its five convs are
    loaded (they must fit), FC6 and FC7 where the shapes fit; H and FC8 stay random, as in the paper.
    ``init``: torch (PyTorch's defaults) | paper (AlexNet's N(0, 0.01), biases 1 in conv2, conv4, conv5, FC6,
    FC7). Study A never trains from a random init (it fine-tunes ImageNet weights); from scratch, the loss moves
    from the first steps with PyTorch's init, while with N(0, 0.01) the signal fades through the convs and the
    loss stayed flat over the first steps in a quick check.
    """
    _check_init("alexnet_hash", init)
    if base not in ("paper", "torchvision"):
        raise ConfigError(f"alexnet_hash: model.base must be paper or torchvision, got '{base}'")
    size, layout, target = _input_plan("alexnet_hash", in_channels, image_size, layout, resize_to)
    if pretrained and layout != "imagenet":
        raise ConfigError(
            f"alexnet_hash: pretrained ImageNet convs need the ImageNet layout, but {size[0]}x{size[1]} images "
            f"use layout={layout}; set model.resize_to=224"
        )
    state = load_state_dict_file(pretrained) if pretrained else None
    gray_to_rgb = in_channels == 1 and (target is not None or bool(pretrained))
    c_in = 3 if gray_to_rgb else in_channels
    paper = base == "paper"
    widths = PAPER_WIDTHS if paper else TORCHVISION_WIDTHS
    features = alexnet_features(c_in, widths, 2 if paper else 1, lrn=paper, bn=bn, pooling=pooling, layout=layout)
    h, w = features_out_size(size, layout)
    if fc_width is None:
        fc_width = 2048 if fc_activation == "maxout" else 4096
    model = AlexNetHash(
        features,
        widths[-1] * h * w,
        num_classes,
        hash_bits=hash_bits,
        fc_width=fc_width,
        fc_activation=fc_activation,
        maxout_pieces=maxout_pieces,
        dropout=dropout,
        input_adapter=InputAdapter(target, gray_to_rgb),
    )
    if init == "paper":
        convs = [m for m in features if isinstance(m, nn.Conv2d)]
        fcs = [m for m in model.modules() if isinstance(m, nn.Linear)]  # fc6, fc7, H, fc8 in that order
        _paper_init_(convs + fcs, BIAS_ONE + (True, True) + (False,) * (len(fcs) - 2))
    if state is not None:
        _load_convs_and_fcs(model, state, str(pretrained))
    return model


def _load_convs_and_fcs(model: AlexNetHash, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy the five convs of ``state`` (by order; they must fit) and its first two linear layers into FC6/FC7
    where the shapes fit (Caffe's fine-tuning rule: a layer is copied when its blob shapes match)."""
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    fcs = [next(m for m in fc.modules() if isinstance(m, nn.Linear)) for fc in (model.fc6, model.fc7)]
    src_convs = _layers_with_weights(state, 4)
    shapes = [tuple(state[w].shape) for w, _ in src_convs]
    want = [tuple(m.weight.shape) for m in convs]
    if shapes != want:
        raise CheckpointError(
            f"pretrained weights {source} do not fit alexnet_hash's convs (file: {shapes or 'no conv layers'}; "
            f"model: {want}); use model.base=torchvision for torchvision's ImageNet weights"
        )
    loaded = []
    with torch.no_grad():
        for m, (w, b) in zip(convs, src_convs):
            m.weight.copy_(state[w])
            if b is not None:
                m.bias.copy_(state[b])
        for name, m, (w, b) in zip(("fc6", "fc7"), fcs, _layers_with_weights(state, 2)):
            if state[w].shape == m.weight.shape and (b is None or state[b].shape == m.bias.shape):
                m.weight.copy_(state[w])
                if b is not None:
                    m.bias.copy_(state[b])
                loaded.append(name)
    log.info("alexnet_hash: loaded conv1-conv5%s from %s", "".join(f", {n}" for n in loaded), source)
