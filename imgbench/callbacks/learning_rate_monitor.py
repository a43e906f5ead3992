"""Lightning's learning-rate monitor with its tags under ``train/`` (``train/lr``, ``train/lr/pg2``, ...)."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor as _LightningMonitor


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
    A scheduler config's own ``name`` is kept as given.
    """

    def _extract_stats(self, trainer: L.Trainer, interval: str) -> dict[str, float]:
        stats = super()._extract_stats(trainer, interval)
        return {train_tag(k): v for k, v in stats.items()}
