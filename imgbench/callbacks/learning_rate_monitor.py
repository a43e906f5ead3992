"""Lightning's learning-rate monitor with its tags under ``train/`` (``train/lr``, ``train/lr/pg2``, ...)."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor as _LightningMonitor

from ..data.loader import is_group


def train_tag(name: str) -> str:
    """``lr-Adam`` -> ``train/lr``, ``lr-SGD/pg2`` -> ``train/lr/pg2``, ``lr-AdamW-momentum`` -> ``train/momentum``.

    Lightning names the learning rate after the optimizer's class, which TensorBoard sorts before train/, val/ and
    test/ as a group of its own; the run records the optimizer anyway.
    """
    if not name.startswith("lr-"):
        return name
    head, sep, group = name.partition("/")
    stat = next((s for s in ("momentum", "weight_decay") if head.endswith(f"-{s}")), "lr")
    return f"train/{stat}" + (f"/{group}" if sep else "")


class LearningRateMonitor(_LightningMonitor):
    """Lightning's ``LearningRateMonitor``, logging ``train/lr`` (see :func:`train_tag`).

    Its public API has no way to name the tags; ``_extract_stats`` returns what is logged, so it is renamed there.
    A scheduler config's own ``name`` is kept as given. A training batch that is a group of batches
    (``module.inner_steps``) logs the learning rate of its first step when a logging step falls among its steps:
    Lightning's own check looks at the first step only, which is never a logging step then.
    """

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, *args: Any) -> None:
        if not is_group(batch):
            return super().on_train_batch_start(trainer, pl_module, batch, *args)
        first, every = trainer.fit_loop.epoch_loop._batches_that_stepped, trainer.log_every_n_steps
        if self.logging_interval == "epoch" or every <= 0 or (first + len(batch)) // every == first // every:
            return None
        stats = self._extract_stats(trainer, "step" if self.logging_interval is None else "any")
        for logger in trainer.loggers if stats else ():
            logger.log_metrics(stats, step=first)
        return None

    def _extract_stats(self, trainer: L.Trainer, interval: str) -> dict[str, float]:
        stats = super()._extract_stats(trainer, interval)
        return {train_tag(k): v for k, v in stats.items()}
