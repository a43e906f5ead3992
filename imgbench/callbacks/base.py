"""What every report callback shares: where the files go, the run's name, pictures in the loggers."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
from matplotlib.figure import Figure

from .plots import figure_to_rgb, save_png
from .tensorboard import figure_step
from .trackers import log_figure

log = logging.getLogger(__name__)


class ReportCallback(L.Callback):
    """Base class of the report callbacks: files in the run directory, figures also in the loggers.

    Writes into ``output_dir`` (default: the run directory, ``trainer.default_root_dir``) from global rank 0
    only, and logs its figures to every logger of the run that shows pictures: TensorBoard, MLflow (as artifacts),
    W&B (:func:`imgbench.callbacks.trackers.log_figure`; no such logger: files only).

    Args:
        output_dir: the folder for the files; None: ``trainer.default_root_dir`` (``paths.output_dir``).
        tensorboard: also show the figures in TensorBoard's images tab when a TensorBoardLogger is present.
    """

    def __init__(self, output_dir: str | os.PathLike | None = None, tensorboard: bool = True) -> None:
        self.output_dir = output_dir
        self.tensorboard = tensorboard

    def run_dir(self, trainer: L.Trainer) -> Path:
        """The folder the files go into: ``output_dir``, or else the trainer's ``default_root_dir``."""
        return Path(self.output_dir if self.output_dir is not None else trainer.default_root_dir)

    def publish(
        self, trainer: L.Trainer, fig: Figure, filename: str | None, tag: str, tensorboard: bool = True
    ) -> Path | None:
        """Save ``fig`` as ``<run dir>/<filename>`` (if a name is given) and log it to the loggers as ``tag``.

        Args:
            trainer: the running trainer (its run directory, loggers and global step).
            fig: the figure to save and log.
            filename: the PNG's name in the run directory; None or empty: no file.
            tag: the image tag (TensorBoard, W&B); MLflow keeps the PNG under its file name.
            tensorboard: log this figure to the loggers (to TensorBoard when the callback's ``tensorboard`` is on
                too); False for drafts, such as the curves redrawn during training.

        Returns:
            The path of the PNG written, or None when no file was written.
        """
        path = None
        rgb = figure_to_rgb(fig)  # rendered once for both
        if filename:
            path = self.run_dir(trainer) / filename
            save_png(rgb, path)
        if tensorboard:
            log_figure(trainer, tag, rgb, path, figure_step(trainer), tensorboard=self.tensorboard)
        return path


def run_title(trainer: L.Trainer) -> str:
    """A figure title, ``<model> on <data>``, from the imgbench run config and DataModule, as far as known.

    Args:
        trainer: the trainer whose LightningModule and DataModule are described.

    Returns:
        ``<model> on <data>``, or just the model's name when the DataModule has no ``name``.
    """
    module = trainer.lightning_module
    config = getattr(module, "run_config", None) or {}
    target = str((config.get("model") or {}).get("_target_", ""))
    model = target.rsplit(".", 1)[-1] if target else type(getattr(module, "net", module)).__name__
    data = getattr(trainer.datamodule, "name", None)
    return f"{model} on {data}" if data else model


def class_names(trainer: L.Trainer, num_classes: int) -> list[str]:
    """The DataModule's readable class names (``class_names``, else ``classes``), or ``0``, ``1``, ... when it has none.

    Args:
        trainer: the trainer whose DataModule may have ``class_names`` (ImageNet's words for its wnids) or ``classes``.
        num_classes: how many classes the model predicts; names of another length are not used.

    Returns:
        One name per class.
    """
    dm = trainer.datamodule
    classes = list(getattr(dm, "class_names", None) or getattr(dm, "classes", None) or [])
    return [str(c) for c in classes] if len(classes) == num_classes else [str(i) for i in range(num_classes)]
