"""An exponential moving average of the weights that starts at a fraction of the run (Lightning's EMA callback)."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging


class EMA(EMAWeightAveraging):
    """Lightning's :class:`EMAWeightAveraging`, with two things a recipe needs.

    - ``start_fraction``: average the steps after this fraction of the run's optimizer steps (0.5: the second half),
      whatever ``trainer.max_epochs`` is. (Lightning's ``update_starting_at_epoch`` alone does not delay the
      per-step updates: they start at step 0, and a short run's average is mostly the initial weights.)
    - until the first update, validation, test and the saved weights are the trained ones (Lightning's callback
      would swap in, and save, the average it has not started yet: the initial weights).

    Args:
        decay: the EMA decay per update.
        start_fraction: start averaging after this fraction of the run's optimizer steps, in [0, 1); None: use
            Lightning's own start (``update_starting_at_step`` / ``update_starting_at_epoch`` in ``kwargs``).
        **kwargs: passed on to :class:`EMAWeightAveraging`.

    Raises:
        ValueError: ``start_fraction`` is outside [0, 1).
    """

    def __init__(self, decay: float = 0.999, start_fraction: float | None = None, **kwargs) -> None:
        if start_fraction is not None and not 0.0 <= start_fraction < 1.0:
            raise ValueError(f"callbacks.ema.start_fraction must be in [0, 1), got {start_fraction}")
        super().__init__(decay=decay, **kwargs)
        self.start_fraction = start_fraction

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.start_fraction is not None:
            self.update_starting_at_step = int(self.start_fraction * trainer.estimated_stepping_batches)

    def started(self) -> bool:
        """Whether the average holds any update yet."""
        average = self._average_model
        return average is not None and int(average.n_averaged) > 0

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.started():
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.started():
            super().on_validation_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.started():
            super().on_train_end(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if self.started():
            super().on_save_checkpoint(trainer, pl_module, checkpoint)
