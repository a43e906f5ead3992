"""Study A: ``alexnet_hash``, AlexNet with a binary hash layer, max-ave pooling and maxout, each a switch.

``input`` -> ``features`` (AlexNet's five convs, from :mod:`imgbench.models.alexnet`) -> ``fc6`` -> ``fc7`` ->
[``hash`` (H, sigmoid)] -> ``fc8``. FC6 and FC7 are ``Linear + ReLU`` or :class:`~imgbench.models.layers.Maxout`,
each followed by dropout; the pools are max or max-ave (``max_pool + avg_pool``); BN after every conv is a
switch. ``forward`` returns logits, ``encode`` the activations of H, ``forward_with_codes`` both (what
:class:`imgbench.modules.HashClassifier` uses).

Pretrained weights (``pretrained``) are ImageNet convs of the same ``base``: the five convs are loaded by order
(they must fit), FC6 and FC7 where the shapes fit (Caffe's fine-tuning rule); H and FC8 stay random, as in the
paper.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ArgumentError, CheckpointError
from .alexnet import (
    BIAS_ONE,
    PAPER_WIDTHS,
    POOLINGS,
    TORCHVISION_WIDTHS,
    alexnet_features,
    check_init,
    features_out_size,
    input_plan,
    paper_init_,
)
from .arguments import check_bool, check_choice, check_data_shape, check_fraction, check_int, check_pretrained
from .layers import InputAdapter, Maxout
from .registry import build_model, register_model
from .weights import PretrainedCfg, StateDict, layers_with_weights

__all__ = ["AlexNetHash", "alexnet_hash"]

BASES = ("paper", "torchvision")
FC_ACTIVATIONS = ("relu", "maxout")


def _convs_and_fcs(state: StateDict, model: AlexNetHash, source: str) -> StateDict:
    """The ``filter_fn`` of alexnet_hash: the file's five convs (by order) and its first two linear layers.

    They come under the model's names; FC6/FC7 only where the shapes fit (Caffe's rule: a layer is copied when
    its blobs fit).

    Args:
        state: The file's state_dict.
        model: The model the weights are for.
        source: The file (for messages).

    Returns:
        The state_dict to load, under the model's names.

    Raises:
        CheckpointError: The file's convs do not have the model's shapes.
    """
    convs = [(f"features.{name}", m) for name, m in model.features.named_children() if isinstance(m, nn.Conv2d)]
    fcs = [
        next((f"{fc}.{name}", m) for name, m in getattr(model, fc).named_modules() if isinstance(m, nn.Linear))
        for fc in ("fc6", "fc7")
    ]
    src_convs = layers_with_weights(state, 4)
    shapes = [tuple(state[w].shape) for w, _ in src_convs]
    want = [tuple(m.weight.shape) for _, m in convs]
    if shapes != want:
        raise CheckpointError(
            f"pretrained weights {source} do not fit alexnet_hash's convs (file: {shapes or 'no conv layers'}; "
            f"model: {want}); use model.base=torchvision for torchvision's ImageNet weights"
        )
    out: StateDict = {}
    for (name, _), (w, b) in zip(convs, src_convs):
        out[f"{name}.weight"] = state[w]
        if b is not None:
            out[f"{name}.bias"] = state[b]
    for (name, m), (w, b) in zip(fcs, layers_with_weights(state, 2)):
        if state[w].shape == m.weight.shape and (b is None or state[b].shape == m.bias.shape):
            out[f"{name}.weight"] = state[w]
            if b is not None:
                out[f"{name}.bias"] = state[b]
    return out


class AlexNetHash(nn.Module):
    """Study A's network; the defaults are the paper's final model (maxout + max-ave pooling, n = 48 bits).

    ``forward(x)`` returns logits; ``encode(x)`` the sigmoid activations of H (the binary code is
    ``encode(x) >= 0.5``); ``forward_with_codes(x)`` both from one pass. ``hash_bits`` is the code length
    (0: no H, FC8 sits on FC7 like plain AlexNet).

    Args:
        num_classes: Outputs (logits).
        in_channels: Image channels.
        image_size: ``(height, width)`` or one side.
        hash_bits: n units of the sigmoid layer H between FC7 and FC8 (0: none).
        pooling: max | maxave (``max_pool + avg_pool`` on AlexNet's three pools).
        fc_activation: relu | maxout with ``maxout_pieces`` linear pieces per unit.
        maxout_pieces: k (not stated in the paper: 2 keeps FC6's parameter count).
        fc_width: FC6/FC7 width; None = 2048 with maxout (the paper), 4096 with ReLU.
        bn: BatchNorm after every conv (before its ReLU; conv biases kept so that pretrained weights fit).
        base: paper = study B's convs (96-256-384-384-256, LRN, groups 2) | torchvision = torchvision's convs
            (64-192-384-256-256, no LRN), the layout of the ImageNet weights PyTorch users have.
        layout: auto | imagenet | small (see :mod:`imgbench.models.alexnet`).
        resize_to: Resize inside the model to this size; None: no resize.
        dropout: Dropout after FC6 and FC7, in [0, 1).
        init: torch (PyTorch's defaults) | paper (AlexNet's N(0, 0.01), biases 1 in conv2, conv4, conv5, FC6,
            FC7). Study A never trains from a random init: it fine-tunes ImageNet weights.
        pretrained: A state_dict file (or a torchvision weight name) of the same ``base``, loaded by
            :func:`~imgbench.models.registry.build_model` after construction (see the module docstring). Here
            it asks for the ImageNet layout and feeds gray images as RGB.

    Raises:
        ArgumentError: A bad argument (named by the error), or images too small for the layout.
    """

    pretrained_cfg = PretrainedCfg(
        "alexnet_hash", torchvision_weights="AlexNet_Weights", filter_fn=_convs_and_fcs, strict=False
    )

    def __init__(
        self,
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
    ) -> None:
        super().__init__()
        name = "alexnet_hash: "
        check_data_shape(num_classes, in_channels, image_size, prefix=name)
        check_int("hash_bits", hash_bits, minimum=0, prefix=name)
        check_choice("pooling", pooling, POOLINGS, prefix=name)
        check_choice("fc_activation", fc_activation, FC_ACTIVATIONS, prefix=name)
        check_int("maxout_pieces", maxout_pieces, prefix=name)
        if fc_width is not None:
            check_int("fc_width", fc_width, prefix=name)
        check_bool("bn", bn, prefix=name)
        check_choice("base", base, BASES, prefix=name)
        check_fraction("dropout", dropout, prefix=name)
        check_init("alexnet_hash", init)
        check_pretrained(pretrained, prefix=name)
        size, layout_used, target = input_plan("alexnet_hash", image_size, layout, resize_to)
        if pretrained and layout_used != "imagenet":
            raise ArgumentError(
                "layout" if layout == "small" else "image_size",
                f"{name}pretrained ImageNet convs need the ImageNet layout, but {size[0]}x{size[1]} images "
                f"use layout={layout_used}; set resize_to=224",
            )
        paper = base == "paper"
        widths = PAPER_WIDTHS if paper else TORCHVISION_WIDTHS
        h, w = features_out_size(size, layout_used)
        gray_to_rgb = in_channels == 1 and (target is not None or bool(pretrained))
        c_in = 3 if gray_to_rgb else in_channels
        fc_width = fc_width if fc_width is not None else 2048 if fc_activation == "maxout" else 4096

        self.hash_bits = hash_bits
        self.input = InputAdapter(target, gray_to_rgb)
        self.features = alexnet_features(
            c_in, widths, 2 if paper else 1, lrn=paper, bn=bn, pooling=pooling, layout=layout_used
        )
        flat_features = widths[-1] * h * w
        self.fc6 = self._fc(flat_features, fc_width, fc_activation, maxout_pieces, dropout)
        self.fc7 = self._fc(fc_width, fc_width, fc_activation, maxout_pieces, dropout)
        self.hash = nn.Linear(fc_width, hash_bits) if hash_bits else None
        self.fc8 = nn.Linear(hash_bits or fc_width, num_classes)
        if init == "paper":
            convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
            fcs = [m for m in self.modules() if isinstance(m, nn.Linear)]  # fc6, fc7, H, fc8 in that order
            paper_init_(convs + fcs, BIAS_ONE + (True, True) + (False,) * (len(fcs) - 2))

    @staticmethod
    def _fc(n_in: int, n_out: int, activation: str, pieces: int, dropout: float) -> nn.Sequential:
        if activation == "maxout":
            return nn.Sequential(Maxout(n_in, n_out, pieces), nn.Dropout(dropout))
        return nn.Sequential(nn.Linear(n_in, n_out), nn.ReLU(inplace=True), nn.Dropout(dropout))

    def _fc7(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.features(self.input(x)), 1)
        return self.fc7(self.fc6(x))

    def forward_with_codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and codes from one forward pass.

        Args:
            x: Images ``(N, C, H, W)``.

        Returns:
            ``(logits, h)``: ``h`` the sigmoid activations of H, ``(N, hash_bits)``; empty when ``hash_bits`` is 0.
        """
        x = self._fc7(x)
        if self.hash is None:
            return self.fc8(x), x.new_zeros(x.shape[0], 0)
        h = torch.sigmoid(self.hash(x))
        return self.fc8(h), h

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The sigmoid activations of H; ``>= 0.5`` gives the binary code.

        Args:
            x: Images ``(N, C, H, W)``.

        Returns:
            ``(N, hash_bits)`` activations in (0, 1).

        Raises:
            RuntimeError: The model has no hash layer (``hash_bits=0``).
        """
        if self.hash is None:
            raise RuntimeError("alexnet_hash was built with hash_bits=0: it has no hash layer")
        return torch.sigmoid(self.hash(self._fc7(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_codes(x)[0]


@register_model(AlexNetHash)
def alexnet_hash(**kwargs: Any) -> AlexNetHash:
    """Study A's AlexNet with a hash layer; the defaults are the paper's final model.

    Args:
        **kwargs: The arguments of :class:`AlexNetHash`.

    Returns:
        The model, with ``pretrained`` weights loaded when given.
    """
    return build_model(AlexNetHash, **kwargs)
