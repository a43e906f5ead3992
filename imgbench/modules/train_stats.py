"""The training loss and accuracy of an epoch at a few tensor operations a step, and the loss's finiteness check.

torchmetrics' ``update`` at every step was the largest cost of a small model's training step at batch 4 after the
model itself (argument checks, state bookkeeping, and a NaN scan that waits for the GPU; benchmarks/results.md), and
``bool(torch.isfinite(loss))`` waits for the GPU at every step. Here a step adds its loss to the mean's float64 sum
in place and keeps its logits and labels; the accuracy metrics are updated with many steps' rows at once, and the
sum is checked for a non-finite loss every :data:`CHECK_EVERY` steps. The metrics end up bit for bit where per-step
updates would have left them: the accuracies are integer counts, and the loss sum gets the same float64 additions
in the same order.
"""

from __future__ import annotations

from typing import NamedTuple

import lightning as L
import torch
from torchmetrics import MeanMetric, MetricCollection

from ..callbacks.checkpoint import LastCheckpoint
from ..errors import UserError

CHECK_EVERY = 8  # steps between two finiteness checks of the loss (one GPU sync each)
FLUSH_STEPS = 64  # steps whose logits are kept before the accuracy metrics are updated with them
FLUSH_ELEMENTS = 1 << 22  # ... or this many logits (16 MB in float32), whichever comes first


class NonFiniteLossError(UserError):
    """The loss became NaN or infinite: training stops (the last good checkpoint stays).

    The losses are checked every :data:`CHECK_EVERY` training steps (one GPU sync each, not one a step), at the
    epoch's end and before a checkpoint is saved: a run stops up to that many steps after the non-finite loss, and
    the message names the step that had it.
    """


class Position(NamedTuple):
    """Where a training step was: its epoch, global step and batch of the epoch."""

    epoch: int
    step: int
    batch: int


class NonFinite(NamedTuple):
    """The first non-finite loss a check found: its value (``nan``, ``inf``, ``-inf``) and step."""

    value: str
    where: Position


class TrainStats:
    """Keeps an epoch's training metrics up to date for a few tensor operations a step.

    Args:
        metrics: the training accuracy metrics, updated with ``(logits, labels)``.
        loss: the training loss mean; its sum (``mean_value``) gets every step's ``loss * images`` in place, as
            ``loss.update(value, weight=images)`` would add it, and its weight and update count follow at
            :meth:`flush`.
    """

    def __init__(self, metrics: MetricCollection, loss: MeanMetric) -> None:
        self.metrics = metrics
        self.loss = loss
        self._rows: list[tuple[torch.Tensor, torch.Tensor]] = []  # logits and labels not yet in the metrics
        self._elements = 0
        self._images = 0  # images of the losses added since the last flush
        self._unchecked: list[tuple[torch.Tensor, Position]] = []  # losses added since the last check
        self.last: Position | None = None

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, where: Position) -> None:
        """Count one training step (no sync, one tensor operation).

        Args:
            loss: the step's mean loss (a scalar).
            logits: its logits ``(N, classes)``.
            labels: its integer labels ``(N,)``.
            where: the step's position, for the message of a non-finite loss.
        """
        loss = loss.detach()
        n = len(labels)
        # MeanMetric.update(loss, weight=n) adds float64(loss) * n, an exact product, to the sum: the same rounding
        self.loss.mean_value.add_(loss, alpha=n)
        self._images += n
        self._rows.append((logits.detach(), labels))
        self._elements += logits.numel()
        self._unchecked.append((loss, where))
        self.last = where
        if len(self._rows) >= FLUSH_STEPS or self._elements >= FLUSH_ELEMENTS:
            self.flush()

    @property
    def check_due(self) -> bool:
        """Whether :data:`CHECK_EVERY` steps have been added since the last check."""
        return len(self._unchecked) >= CHECK_EVERY

    @property
    def unchecked(self) -> int:
        """The steps added since the last check."""
        return len(self._unchecked)

    def first_nonfinite(self) -> NonFinite | None:
        """Check the losses added since the last check (one sync).

        The float64 sum of finite float32 losses times batch sizes cannot overflow, so a non-finite sum means a
        non-finite loss since the epoch began; an earlier check found the sum finite, so it is among the unchecked.

        Returns:
            The first non-finite loss among them, or None when they are all finite.
        """
        unchecked, self._unchecked = self._unchecked, []
        if not unchecked or bool(torch.isfinite(self.loss.mean_value)):
            return None
        losses = torch.stack([loss for loss, _ in unchecked])
        bad = (~torch.isfinite(losses)).nonzero().flatten().tolist()
        i = bad[0] if bad else len(unchecked) - 1
        return NonFinite(str(losses[i].item()), unchecked[i][1])

    def flush(self) -> None:
        """Update the metrics with the kept rows, and the loss mean's weight and update count with their images."""
        if self._rows:
            logits = torch.cat([r[0] for r in self._rows])
            labels = torch.cat([r[1] for r in self._rows])
            self._rows.clear()
            self._elements = 0
            self.metrics.update(logits, labels)
        if self._images:
            # the losses are in the sum already: adding 0 with their images as weight counts the images (and the update)
            zero = torch.zeros((), dtype=self.loss.mean_value.dtype, device=self.loss.mean_value.device)
            self.loss.update(zero, weight=float(self._images))
            self._images = 0


def stop_if_not_finite(stats: TrainStats, trainer: L.Trainer) -> None:
    """Raise :class:`NonFiniteLossError` if a loss added since the last check was not finite, on any process.

    Args:
        stats: the training statistics of the LightningModule.
        trainer: its trainer (under DDP every process takes part: they all stop at the same step).

    Raises:
        NonFiniteLossError: with the loss, its epoch, step and batch, and the last good checkpoint.
    """
    bad = stats.first_nonfinite()
    finite = bad is None
    world = trainer.world_size
    if world > 1:  # every process stops at the same step (one alone would leave the others waiting)
        finite = trainer.strategy.reduce_boolean_decision(finite, all=True)
    if finite:
        return
    if bad is not None:
        value, (epoch, step, batch) = bad
        where = f" on process {trainer.global_rank}" if world > 1 else ""
    else:
        value, where = "not finite on another process", ""
        epoch, step, batch = stats.last or (trainer.current_epoch, trainer.global_step, 0)
    raise NonFiniteLossError(
        f"the training loss is {value}{where} at epoch {epoch}, step {step} (batch {batch} of the epoch); "
        f"{_last_good_checkpoint(trainer)}; lower optimizer.lr or set trainer.gradient_clip_val"
    )


def _last_good_checkpoint(trainer: L.Trainer) -> str:
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, LastCheckpoint) and cb.path.is_file():
            return f"the last good checkpoint, {cb.path}, is kept"
    return "no checkpoint had been saved yet"
