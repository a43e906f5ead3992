"""``checkpoints/last.ckpt``: always the newest training state (the final weights, and the resume point)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint

log = logging.getLogger(__name__)


class LastCheckpoint(Checkpoint):
    """Saves ``<dirpath>/last.ckpt`` at the end of every training epoch and every ``every_n_train_steps`` steps.

    The epoch's checkpoint comes after its validation. A killed run loses at most that much work and resumes
    exactly.

    Lightning's ``ModelCheckpoint(save_last=True)`` only refreshes ``last.ckpt`` when it also saves a top-k
    checkpoint; this one always does, so ``last.ckpt`` is the final model that ``eval.py`` reproduces.
    Being a :class:`Checkpoint`, it runs after the LightningModule's own epoch-end hook, so the saved state
    includes that epoch's bookkeeping.

    Args:
        dirpath: the folder of ``last.ckpt``.
        every_n_train_steps: also save every this many optimizer steps; None: only at the end of each epoch.

    Raises:
        ValueError: ``every_n_train_steps`` is below 1.
    """

    FILE = "last.ckpt"

    def __init__(self, dirpath: str, every_n_train_steps: int | None = None) -> None:
        if every_n_train_steps is not None and every_n_train_steps < 1:
            raise ValueError("every_n_train_steps must be >= 1 or null")
        self.dirpath = Path(dirpath)
        self.every_n_train_steps = every_n_train_steps

    @property
    def path(self) -> Path:
        """The checkpoint file, ``<dirpath>/last.ckpt``."""
        return self.dirpath / self.FILE

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        module = trainer.lightning_module
        if not all(torch.isfinite(p).all() for p in module.parameters()):
            log.warning("not saving %s at step %d: the weights are no longer finite", self.path, trainer.global_step)
            return  # keep the last good checkpoint
        trainer.save_checkpoint(self.path, weights_only=False)  # the full training state, resumable

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        n = self.every_n_train_steps
        if n and trainer.global_step % n == 0 and not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)
