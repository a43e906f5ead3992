"""Lightning's rich progress bar, updated during training no more often than it redraws."""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar as _RichProgressBar


class RichProgressBar(_RichProgressBar):
    """Lightning's ``RichProgressBar``, whose training bar takes at most ``refresh_rate`` updates a second.

    Lightning's updates the bar's count and metrics at every training batch (10,000 times an epoch in study D),
    while the display redraws only ``refresh_rate`` times a second; the updates in between are never seen. Here a
    batch's update is skipped when the last one is less than a redraw interval old; the epoch's last batch is always
    shown, and a batch skipped before the epoch ends early (``trainer.max_steps``) is shown then.

    Args:
        refresh_rate: redraws (and training updates) per second; 0 hides the bar.
        **kwargs: the other arguments of Lightning's ``RichProgressBar`` (``leave``, ``theme``, ``console_kwargs``).
    """

    def __init__(self, refresh_rate: int = 10, **kwargs: Any) -> None:
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        self._shown_at = -math.inf
        self._unshown: int | None = None  # the last batch whose update was skipped

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.monotonic()
        if (
            self.is_enabled
            and now - self._shown_at < 1 / self.refresh_rate
            and batch_idx + 1 < self.total_train_batches
        ):
            self._unshown = batch_idx
            return
        self._shown_at, self._unshown = now, None
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._unshown is not None:  # the bar shows the batches done (it reads only the batch index)
            super().on_train_batch_end(trainer, pl_module, None, None, self._unshown)
            self._unshown = None
        super().on_train_epoch_end(trainer, pl_module)
