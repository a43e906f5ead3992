"""Ctrl+C and SIGTERM (preemption) save a resumable checkpoint instead of losing the run."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint

from ..errors import UserError

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _final_epoch(trainer: L.Trainer) -> bool:
    max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
    return (max_epochs is not None and max_epochs >= 0 and trainer.current_epoch + 1 >= max_epochs) or (
        max_steps is not None and 0 < max_steps <= trainer.global_step
    )


class TrainingInterrupted(UserError):  # noqa: N818 (an interruption, not an error)
    """Raised after the checkpoint is saved; the entry point prints it and exits with 128 + the signal.

    Args:
        message: what happened and how to resume or test.
        signum: the signal's number; ``exit_code`` is 128 + it.
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class GracefulInterrupt(Checkpoint):
    """Stops a run on SIGINT or SIGTERM, saving a resumable checkpoint first when it is training.

    During training it finishes the current batch, saves ``<dirpath>/last.ckpt`` and stops with a message
    that says how to resume. A second signal stops at once. During testing, training is already complete and
    the run just stops.

    The checkpoint is taken where a resumed run continues exactly: after a batch inside the epoch, or, when
    the signal comes at the epoch's last batch or during its validation, once the epoch has ended (as a
    :class:`Checkpoint` this runs after the LightningModule's epoch-end hook, like ``LastCheckpoint``).

    Under DDP the processes agree at every training batch on whether any of them was signalled, so that all of
    them save (a collective step) and stop at the same batch.

    Args:
        dirpath: the folder of ``last.ckpt`` (the run's ``checkpoints`` folder).
    """

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # asked twice: stop now
            self._restore()
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("%s received: finishing the current batch, then saving a checkpoint", signal.Signals(signum).name)

    def _install(self) -> None:
        if threading.current_thread() is threading.main_thread() and not self._previous:
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)

    def _restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    def _agree(self, trainer: L.Trainer) -> None:
        """Under DDP: the signal any process received (the highest number), on every process."""
        if trainer.world_size > 1:
            signum = torch.tensor(self.signum or 0, device=trainer.strategy.root_device)
            received = int(trainer.strategy.reduce(signum, reduce_op="max"))
            if received and self.signum is None:
                self.signum = received

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._agree(trainer)
        if self.signum is not None and not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self._save_and_stop(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._agree(trainer)
        if self.signum is not None and not _final_epoch(trainer):  # after the final one, on_fit_end stops
            self._save_and_stop(trainer)

    def _save_and_stop(self, trainer: L.Trainer) -> None:
        path = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(path, weights_only=False)  # the full training state, resumable
        assert self.signum is not None
        name = signal.Signals(self.signum).name
        signum = self.signum
        self._restore()
        raise TrainingInterrupted(
            f"stopped by {name} at epoch {trainer.current_epoch}, step {trainer.global_step}; saved {path}; resume "
            f"with: python train.py resume={self.dirpath.parent}",
            signum,
        )

    def on_test_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if self.signum is not None:
            signum = self.signum
            self._restore()
            raise TrainingInterrupted(
                f"stopped by {signal.Signals(signum).name} while testing (training had finished); test again with: "
                f"python eval.py ckpt_path={self.dirpath / 'last.ckpt'}",
                signum,
            )

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._agree(trainer)
        if self.signum is not None:  # arrived after the last training batch: the final checkpoint is complete
            signum = self.signum
            self._restore()
            raise TrainingInterrupted(
                f"stopped by {signal.Signals(signum).name} after training finished; test with: "
                f"python eval.py ckpt_path={self.dirpath / 'last.ckpt'}",
                signum,
            )

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()
