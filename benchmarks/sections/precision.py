"""Section ``precision``: training-step throughput of bf16 autocast and channels_last against fp32 NCHW.

The variants are each alone and both together, and what ``precision=auto`` / ``channels_last=auto`` pick here,
for resnet34 on 28x28 grey images and alexnet's small layout on 32x32 RGB images.
"""

from __future__ import annotations

import functools
import time

import torch
from torch import nn

from ..common import Figure, side_by_side
from .shared import Sizes


def _step_rate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool, steps: int = 1) -> float:
    """Images per second of ``steps`` training steps (forward, backward, SGD).

    Args:
        net: the network, already in the layout under test.
        x: one batch of inputs, in the same layout.
        y: its class indices.
        bf16: whether to run the forward pass under bf16 autocast.
        steps: how many steps to time.

    Returns:
        float: images per second.
    """
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    start = time.perf_counter()
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * len(x) / (time.perf_counter() - start)


def run(sizes: Sizes) -> list[Figure]:
    """Measure every precision and layout variant against fp32 NCHW, for each model.

    Args:
        sizes: the batch size and the repetitions.

    Returns:
        list[Figure]: per model, three variants and auto's choice against fp32 NCHW (images per second).
    """
    from imgbench.hardware import resolve_channels_last, resolve_precision
    from imgbench.models import create_model

    figures = []
    auto_precision = resolve_precision("auto", "cpu")
    for name, kwargs, shape in (
        ("resnet34, 28x28x1 (study C)", {"name": "resnet34"}, (1, 28, 28)),
        ("alexnet, 32x32x3 small layout", {"name": "alexnet", "layout": "small"}, (3, 32, 32)),
    ):
        b = sizes.precision_batch
        variants = {}
        for bf16 in (False, True):
            for cl in (False, True):
                torch.manual_seed(0)
                model_kwargs = {k: v for k, v in kwargs.items() if k != "name"}
                net = create_model(
                    kwargs["name"], num_classes=10, in_channels=shape[0], image_size=shape[1:], **model_kwargs
                )
                fmt = torch.channels_last if cl else torch.contiguous_format
                net = net.to(memory_format=fmt).train()
                x = torch.randn(b, *shape).contiguous(memory_format=fmt)
                y = torch.randint(0, 10, (b,))
                _step_rate(net, x, y, bf16)  # warm-up (oneDNN primitives)
                variants[(bf16, cl)] = functools.partial(_step_rate, net, x, y, bf16)
        auto_cl = resolve_channels_last("auto", net, shape, b, "cpu")
        for label, a_key in (
            ("bf16 autocast vs fp32", (True, False)),
            ("channels_last vs NCHW (fp32)", (False, True)),
            ("bf16 + channels_last vs fp32", (True, True)),
        ):
            fig = Figure(
                "precision",
                f"{name}: {label}",
                "bf16" if a_key[0] else "fp32",
                "fp32 NCHW",
                "img/s",
                note=f"batch {b}, one SGD step per measurement",
            )
            fig.a_label = ("bf16" if a_key[0] else "fp32") + (" channels_last" if a_key[1] else " NCHW")
            side_by_side(fig, variants[a_key], variants[(False, False)], sizes.repeats)
            figures.append(fig)
        auto_key = (auto_precision == "bf16-mixed", auto_cl)
        fig = Figure(
            "precision",
            f"{name}: auto (precision={auto_precision}, channels_last={auto_cl}) vs fp32 NCHW",
            "auto",
            "fp32 NCHW",
            "img/s",
            target="auto never slower than the best of the four (within noise)",
            note=f"batch {b}",
        )
        side_by_side(fig, variants[auto_key], variants[(False, False)], sizes.repeats)
        figures.append(fig)
    return figures
