"""The test split's classification numbers from torchmetrics' states: what ``trainer.test`` reports."""

from __future__ import annotations

import torch
from torchmetrics import MeanMetric, MetricCollection


def classification_values(
    metrics: MetricCollection, loss: MeanMetric, classes: MetricCollection, prefix: str = "test/"
) -> tuple[dict[str, torch.Tensor], dict[str, list[float]]]:
    """The accuracies, mean loss and macro precision, recall and F1 of a test pass, and the per-class values.

    What ``ImageClassifier.on_test_epoch_end`` logs and the epoch tests record. The macro means are taken over the
    classes that were predicted or present (torchmetrics' own macro rule). Under DDP ``compute`` gathers every
    process's counts, so every process must call this.

    Args:
        metrics: the accuracies (keys already prefixed, ``test/acc``, ``test/acc_top5``).
        loss: the per-image losses' mean.
        classes: per-class ``precision``, ``recall``, ``f1`` (``average=None``) and ``counts``
            (``MulticlassStatScores``, ``average=None``).
        prefix: the prefix of the loss and macro keys.

    Returns:
        ``{name: scalar tensor}`` (``<prefix>loss``, ``<prefix>precision_macro``, ...) and the per-class lists
        (``precision``, ``recall``, ``f1``, ``support``). The metrics are not reset.
    """
    values = dict(metrics.compute())
    values[f"{prefix}loss"] = loss.compute().float()
    per_class = classes.compute()
    counts = per_class.pop("counts")  # per class: tp, fp, tn, fn, support
    seen = (counts[:, 0] + counts[:, 1] + counts[:, 3]) > 0
    for name, value in per_class.items():
        values[f"{prefix}{name}_macro"] = value[seen].float().mean() if seen.any() else value.float().mean()
    return values, {k: v.tolist() for k, v in per_class.items()} | {"support": counts[:, 4].tolist()}
