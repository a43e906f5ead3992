"""Learning-rate schedules that torch.optim.lr_scheduler does not have in one piece."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    max_epochs: int,
    warmup_epochs: float = 5,
    start_factor: float = 0.01,
    min_factor: float = 0.0,
) -> LambdaLR:
    """Linear warmup, then cosine annealing: the schedule of timm's and torchvision's ImageNet recipes.

    One LambdaLR rather than torch's SequentialLR of LinearLR and CosineAnnealingLR: SequentialLR needs the two
    schedulers built on the optimizer first, which a config cannot express as one partial.

    Args:
        optimizer: the optimizer (every group keeps its own base learning rate: backbone and head alike).
        total_steps: the run's optimizer steps (stepped every batch).
        max_epochs: the run's epochs (to turn ``warmup_epochs`` into steps).
        warmup_epochs: epochs of linear warmup from ``start_factor`` x the learning rate (0: none).
        start_factor: the learning rate's factor at the first step.
        min_factor: its factor at the end of the run.

    Returns:
        The scheduler.

    Raises:
        ValueError: a value out of range.
    """
    if total_steps < 1 or max_epochs < 1 or warmup_epochs < 0 or warmup_epochs > max_epochs:
        raise ValueError(f"warmup_epochs must be in 0..max_epochs ({max_epochs}), got {warmup_epochs}")
    if not 0 < start_factor <= 1 or not 0 <= min_factor < 1:
        raise ValueError(f"start_factor must be in (0, 1] and min_factor in [0, 1), got {start_factor}, {min_factor}")
    warmup = round(total_steps * warmup_epochs / max_epochs)

    def factor(step: int) -> float:
        if step < warmup:
            return start_factor + (1 - start_factor) * step / warmup
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * t))

    return LambdaLR(optimizer, factor)
