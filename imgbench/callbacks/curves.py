"""Training and validation loss and accuracy per epoch: ``curves.png`` (and ``history.csv``).

They look like the Keras ``history`` plots that studies D and E show.
"""

from __future__ import annotations

import csv
import io
import os
from typing import Any

import lightning as L

from ..io import write_text
from .base import ReportCallback, run_title
from .plots import draw_curves

# the per-epoch values ImageClassifier logs (train/loss_epoch: the epoch's mean, train/loss_step: a recent step's)
METRICS = {
    "train_loss": ("train/loss_epoch",),
    "train_acc": ("train/acc",),
    "val_loss": ("val/loss",),
    "val_acc": ("val/acc",),
}


class MetricCurves(ReportCallback):
    """Records the per-epoch train/val loss and accuracy and draws them: two panels (loss, accuracy), x = epoch.

    The values are read from ``trainer.callback_metrics``: validation ones when a validation run ends, training
    ones once the module's ``on_train_epoch_end`` has logged them (at the next epoch's start or the end of
    training). The history is kept in checkpoints, so a resumed run continues its curves (a checkpoint written
    when validation ends, before the epoch's training values are logged, lacks that epoch's training point).
    Only global rank 0 writes; the values are torchmetrics', synchronised over all processes.

    Args:
        filename: the PNG in the run directory.
        history_filename: the same numbers as CSV (``epoch,train_loss,train_acc,val_loss,val_acc``); None: none.
        every_n_epochs: also redraw during training every this many epochs (0: only when training ends).
        output_dir: see :class:`ReportCallback`.
        tensorboard: see :class:`ReportCallback`; TensorBoard gets the final figure as ``curves``.

    Raises:
        ValueError: ``every_n_epochs`` is negative.
    """

    def __init__(
        self,
        filename: str = "curves.png",
        history_filename: str | None = "history.csv",
        every_n_epochs: int = 1,
        output_dir: str | os.PathLike | None = None,
        tensorboard: bool = True,
    ) -> None:
        super().__init__(output_dir, tensorboard)
        if every_n_epochs < 0:
            raise ValueError(f"every_n_epochs must be >= 0, got {every_n_epochs}")
        self.filename = filename
        self.history_filename = history_filename
        self.every_n_epochs = every_n_epochs
        self.history: dict[int, dict[str, float]] = {}  # 0-based epoch -> metric -> value
        self._ended_epoch: int | None = None  # a training epoch whose metrics the module is about to log
        self._trainer: L.Trainer | None = None

    # ------------------------------------------------------------------ recording

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def _record(self, trainer: L.Trainer, epoch: int, split: str) -> None:
        metrics = trainer.callback_metrics
        row = self.history.setdefault(epoch, {})
        for name, keys in METRICS.items():
            if name.startswith(split):
                value = next((metrics[k] for k in keys if k in metrics), None)
                if value is not None:
                    row[name] = float(value)

    def _flush_train(self, trainer: L.Trainer) -> None:
        if self._ended_epoch is not None:
            self._record(trainer, self._ended_epoch, "train")
            self._ended_epoch = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._record(trainer, trainer.current_epoch, "val")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning calls this before the module's own hook, which logs train/acc: read it later
        self._ended_epoch = trainer.current_epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush_train(trainer)
        if self.every_n_epochs and self.history and trainer.current_epoch % self.every_n_epochs == 0:
            self.write(trainer, final=False)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush_train(trainer)
        if self.history:
            self.write(trainer, final=True)

    # ------------------------------------------------------------------ output

    def series(self) -> tuple[list[int], dict[str, list[float | None]]]:
        """The recorded history as plot series.

        Returns:
            The 1-based epochs and metric -> one value per epoch (None where an epoch has no value).
        """
        epochs = sorted(self.history)
        return [e + 1 for e in epochs], {m: [self.history[e].get(m) for e in epochs] for m in METRICS}

    def write(self, trainer: L.Trainer, final: bool = True) -> None:
        """Draw the curves (and the CSV) into the run directory; the final figure also goes to TensorBoard.

        Args:
            trainer: the running trainer; only global rank 0 writes.
            final: whether this is the figure at the end of training (the one logged to TensorBoard).
        """
        if not trainer.is_global_zero:
            return
        epochs, values = self.series()
        fig = draw_curves(values, epochs, title=run_title(trainer))
        self.publish(trainer, fig, self.filename, "train/curves", tensorboard=final)
        if self.history_filename:
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(["epoch", *METRICS])
            for i, epoch in enumerate(epochs):
                writer.writerow([epoch, *("" if values[m][i] is None else f"{values[m][i]:.6g}" for m in METRICS)])
            write_text(self.run_dir(trainer) / self.history_filename, out.getvalue())

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        if self._trainer is not None:
            self._flush_train(self._trainer)  # a checkpoint at the end of an epoch holds that epoch's values
        return {"history": {int(e): dict(v) for e, v in self.history.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {int(e): dict(v) for e, v in state_dict.get("history", {}).items()}
