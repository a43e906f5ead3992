"""Several optimizer steps in one ``training_step`` call (``module.inner_steps``), for small batches.

At batch 4 a small CNN's step is about a millisecond of compute, and Lightning's own per-batch work (its loop, hooks,
closures and logging) adds about a third to it even with nothing else attached (benchmarks/results.md). With
``inner_steps: k`` the training loader hands the module a list of ``k`` consecutive batches
(:class:`~imgbench.data.loader.TensorBatches`' ``group``), each augmented as it would be alone, and the module takes
one optimizer step per batch under Lightning's manual optimization: the same batches, order and updates, with
Lightning's per-batch work once per ``k`` steps. ``trainer.global_step`` and the loggers' step axis still count
optimizer steps; what counts loader items (callbacks' per-batch hooks, the progress bar) counts groups. The settings
this cannot honour are refused before any data loads (:func:`imgbench.inner_steps.check_inner_steps`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch

from ..errors import ConfigError


def check_inner_steps_value(value: Any) -> None:
    """Refuse a ``module.inner_steps`` that is not a whole number >= 1.

    Args:
        value: the setting.

    Raises:
        ConfigError: one line naming it.
    """
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"module.inner_steps must be a whole number >= 1, got {value!r}")


def take_steps(
    module: L.LightningModule,
    batches: Sequence[tuple[torch.Tensor, ...]],
    group_idx: int,
    step_loss: Callable[[tuple[torch.Tensor, ...], int], torch.Tensor],
) -> None:
    """One optimizer step per batch of ``batches``, as Lightning's automatic optimization would take them.

    Each step zeroes the gradients (to None), back-propagates through the precision plugin (``manual_backward``),
    steps the optimizer and then the step-interval schedulers whose ``frequency`` has come.

    Args:
        module: the LightningModule (``automatic_optimization`` off).
        batches: the group's batches.
        group_idx: the group's index in the epoch; batch ``i`` of it is batch ``group_idx * inner_steps + i``.
        step_loss: computes a batch's loss (and counts its metrics) from the batch and its index in the epoch.
    """
    optimizer = module.optimizers()
    per_group = module.hparams.inner_steps
    for i, batch in enumerate(batches):
        batch_idx = group_idx * per_group + i
        loss = step_loss(batch, batch_idx)
        optimizer.zero_grad(set_to_none=True)
        module.manual_backward(loss)
        optimizer.step()
        step_schedulers(module.trainer, "step", batch_idx + 1)
    # Lightning counts a loader item as one step of the loggers' axis (and of log_every_n_steps): the others too
    module.trainer.fit_loop.epoch_loop._batches_that_stepped += len(batches) - 1


def step_schedulers(trainer: L.Trainer, interval: str, count: int) -> None:
    """Step the schedulers of ``interval`` whose frequency divides ``count``, as automatic optimization does.

    Args:
        trainer: the trainer (its ``lr_scheduler_configs``).
        interval: ``step`` (after an optimizer step) or ``epoch`` (at an epoch's end).
        count: Lightning's count for it: the batches done in this epoch, or the epochs done.

    Raises:
        ConfigError: a ReduceLROnPlateau scheduler (it steps on a validation metric; refused by the config check).
    """
    for config in trainer.lr_scheduler_configs:
        if config.interval != interval:
            continue
        if config.reduce_on_plateau:
            raise ConfigError(
                "module.inner_steps > 1 cannot step a ReduceLROnPlateau scheduler; set module.inner_steps=1"
            )
        if count % config.frequency == 0:
            config.scheduler.step()


def epoch_steps(loader: Any, limit: int | float | None) -> int:
    """The optimizer steps of an epoch of ``loader`` under Lightning's ``limit_train_batches`` (it counts items).

    Args:
        loader: the training loader; a :class:`~imgbench.data.loader.TensorBatches` may hand out groups of batches.
        limit: ``trainer.limit_train_batches``: a number of loader items, a fraction of them, or None (all).

    Returns:
        The batches (one optimizer step each) in the items Lightning takes.
    """
    items = len(loader)
    if isinstance(limit, int):
        items = min(items, limit)
    elif limit is not None:
        items = int(items * limit)
    return min(getattr(loader, "batches", items), items * getattr(loader, "group", 1))
