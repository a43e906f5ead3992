"""A run in the loggers beside its files: TensorBoard's images tab, and the MLflow and Weights & Biases runs.

:func:`log_figure` sends a report's picture to every logger that shows pictures; :func:`finish_trackers` gives the
tracker runs the run's settings and report files when it ends, and closes them. Loggers of other kinds (CSV) are left
alone, and without a tracker logger both do nothing beyond TensorBoard. :class:`WandbLogger` is Lightning's, closing
its W&B run when the run fails.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` that also ends its W&B run when training or testing fails.

    Lightning leaves the W&B run open then, and the next job of a sweep in the same process would log into it (a
    new WandbLogger continues an open run). A finished run is ended by :func:`finish_trackers`.
    """

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().finalize(status)
        if status == "failed" and self._experiment is not None:  # a run was started: end it as failed
            self._experiment.finish(exit_code=1)


# the run directory's files that become files of the tracker runs: the record, the pictures and their tables
REPORT_FILES = ("metrics.json", "*.png", "*.csv")


def log_figure(
    trainer: L.Trainer, tag: str, rgb: np.ndarray, path: Path | None, step: int, tensorboard: bool = True
) -> None:
    """Log one picture to the run's loggers: TensorBoard's images, an MLflow artifact, a W&B image.

    Args:
        trainer: the running trainer (its loggers).
        tag: the picture's name (``curves``, ``test/confusion_matrix``, ...).
        rgb: the picture as an ``(H, W, 3)`` uint8 array.
        path: the PNG written in the run directory (MLflow keeps that file under its name); None: none was written,
            MLflow gets ``<tag>.png``.
        step: the training step the picture belongs to.
        tensorboard: also log it to TensorBoard loggers.
    """
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            if tensorboard:
                logger.experiment.add_image(tag, rgb, step, dataformats="HWC")
        elif isinstance(logger, MLFlowLogger):
            if path is not None:
                logger.experiment.log_artifact(logger.run_id, str(path))
            else:
                logger.experiment.log_image(logger.run_id, rgb, artifact_file=f"{tag}.png")
        elif isinstance(logger, _LightningWandbLogger):
            logger.log_image(key=tag, images=[rgb], step=step)


def tracker_loggers(trainer: L.Trainer) -> list[Logger]:
    """The trainer's MLflow and W&B loggers (the ones that keep a run of their own)."""
    return [lg for lg in trainer.loggers if isinstance(lg, MLFlowLogger | _LightningWandbLogger)]


def run_params(result: dict[str, Any]) -> dict[str, Any]:
    """A run's settings as tracker parameters: the flat config, and each config-group choice as ``choice/<group>``.

    Args:
        result: the run's record (``metrics.json``): ``config`` (flat) and ``choices``.

    Returns:
        ``{"optimizer.lr": 0.001, ..., "choice/model": "keras_cnn", ...}`` without None values.
    """
    params = {k: v for k, v in (result.get("config") or {}).items() if v is not None}
    params.update({f"choice/{k}": v for k, v in (result.get("choices") or {}).items() if v is not None})
    return params


def report_files(out: Path) -> list[Path]:
    """The files of the run directory ``out`` that go to the tracker runs (:data:`REPORT_FILES`), sorted."""
    return sorted({p for pattern in REPORT_FILES for p in out.glob(pattern) if p.is_file()})


def finish_trackers(trainer: L.Trainer, result: dict[str, Any], out: Path) -> None:
    """End the run's MLflow and W&B runs: its settings as parameters, marked finished; MLflow also keeps its files.

    Call it once ``metrics.json`` is written. MLflow gets the run directory's reports (:data:`REPORT_FILES`) as
    artifacts; W&B has the pictures as images already, and a copy of ``metrics.json`` inside the run directory (its
    ``wandb/`` folder) would count as a second run in reports. Only global rank 0 acts; without a tracker logger it
    does nothing. An offline W&B run is reported by one line with the ``wandb sync`` command that uploads it.

    Args:
        trainer: the trainer of the run (its loggers).
        result: the run's record, as written to ``metrics.json`` (:func:`run_params` reads it).
        out: the run directory.
    """
    loggers = tracker_loggers(trainer)
    if not loggers or not trainer.is_global_zero:
        return
    params = run_params(result)
    for logger in loggers:
        # flattened, one value per key; MLflow keeps 250 characters of each value (Lightning cuts them)
        logger.log_hyperparams(params)
        if isinstance(logger, MLFlowLogger):
            for path in report_files(out):
                logger.experiment.log_artifact(logger.run_id, str(path))
            logger.finalize("success")
        elif isinstance(logger, _LightningWandbLogger):
            finish_wandb(logger)


def finish_wandb(logger: _LightningWandbLogger) -> None:
    """Finish the W&B run of ``logger``, so that the next job of a sweep (same process) starts a run of its own.

    Lightning leaves the run open, and a later WandbLogger in the process would continue it.
    """
    run = logger.experiment
    name, offline, sync_dir = run.name, bool(getattr(run, "offline", False)), run.settings.sync_dir
    run.finish()
    if offline:
        log.info("W&B run '%s' is offline in %s; upload it with: wandb sync %s", name, sync_dir, sync_dir)
