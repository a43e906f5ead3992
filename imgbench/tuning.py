"""``train.py tune=lr_find|batch_size``: Lightning's learning-rate and batch-size finders on the run's own parts.

The finder's plot and suggestion are written into the run directory; nothing is trained beyond the finder's own
steps, and the suggestion is for the next run (``optimizer.lr=...`` or ``data.batch_size=...``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.tuner import Tuner

from .io import write_json

log = logging.getLogger(__name__)

TUNERS = ("lr_find", "batch_size")


def tune(kind: str, trainer: L.Trainer, module: L.LightningModule, dm: L.LightningDataModule, out: Path) -> dict:
    """Run one finder and write what it found.

    Args:
        kind: ``lr_find`` (the LR range test: ``lr_find.png`` and ``lr_find.json``) or ``batch_size`` (the largest
            batch that fits, doubling from ``data.batch_size``: ``batch_size.json``).
        trainer: the run's trainer.
        module: the run's LightningModule.
        dm: the run's DataModule.
        out: the run directory.

    Returns:
        What the finder suggested, for ``metrics.json``.
    """
    tuner = Tuner(trainer)
    if kind == "lr_find":
        finder = tuner.lr_find(module, datamodule=dm, update_attr=False, num_training=100)
        found: dict[str, Any] = {"suggested_lr": finder.suggestion(), "lr": finder.results["lr"],
                                 "loss": finder.results["loss"]}  # fmt: skip
        if trainer.is_global_zero:
            finder.plot(suggest=True).savefig(out / "lr_find.png", dpi=100)
            write_json(out / "lr_find.json", found)
            log.info("lr_find: suggested optimizer.lr=%.3g (lr_find.png, lr_find.json)", found["suggested_lr"])
        return {"kind": kind, "suggested_lr": found["suggested_lr"]}
    start = dm.batch_size
    size = tuner.scale_batch_size(module, datamodule=dm, mode="power", max_trials=6, batch_arg_name="batch_size")
    found = {"start": start, "suggested_batch_size": size}
    if trainer.is_global_zero:
        write_json(out / "batch_size.json", found)
        log.info("batch_size: data.batch_size=%s fits (from %s, doubling; batch_size.json)", size, start)
    return {"kind": kind, **found}
