"""Reports on the test predictions (studies D and E).

The reports are the confusion matrix, a grid of test images with their predicted labels, and
``submission.csv`` with every prediction.

Each callback collects what ``test_step`` returns (``{"logits", "targets"}`` per batch) and, when the test
epoch ends, puts the predictions back into the test split's order. Under DDP every rank evaluates a strided
share of the test split (rank ``r`` gets images ``r, r + world, ...``, see ``imgbench.data.loader``, and a
``DistributedSampler`` without shuffling does the same): the shares are gathered with ``all_gather`` and
interleaved, and only global rank 0 writes. With ``limit_test_batches`` or ``fast_dev_run`` the reports
cover the images that were tested; ``index`` in ``submission.csv`` says which.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from ..io import atomic_open
from .base import ReportCallback, class_names, run_title
from .plots import draw_confusion_matrix, draw_prediction_grid

log = logging.getLogger(__name__)


@dataclass
class Predictions:
    """The test predictions in the test split's order (CPU tensors)."""

    index: torch.Tensor  # int64 (N,): position of each image in the test split, ascending
    label: torch.Tensor  # int64 (N,): the true class
    pred: torch.Tensor  # int64 (N,): the predicted class (argmax of the logits, as the accuracy metric uses)
    prob: torch.Tensor  # float32 (N,): the softmax probability of the predicted class
    num_classes: int

    def __len__(self) -> int:
        return len(self.index)

    @property
    def correct(self) -> int:
        """How many predictions are right."""
        return int((self.pred == self.label).sum())


def interleave_shares(
    shares: Mapping[str, torch.Tensor], counts: Sequence[int], size: int | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Put gathered per-rank shares back into the split's order.

    Args:
        shares: name -> ``(world, max_count)`` tensor, row ``r`` holding rank ``r``'s values (padded).
        counts: how many values each rank really has.
        size: the split's size; positions beyond it (a sampler's padding that repeats images) are dropped.

    Returns:
        The positions (ascending) and name -> values in that order. Rank ``r``'s ``j``-th value is the image at
        position ``r + world * j``.
    """
    world = len(counts)
    index = torch.cat([r + world * torch.arange(int(c)) for r, c in enumerate(counts)])
    values = {k: torch.cat([v[r, : int(c)].cpu() for r, c in enumerate(counts)]) for k, v in shares.items()}
    order = torch.argsort(index)
    index = index[order]
    values = {k: v[order] for k, v in values.items()}
    if size is not None:
        keep = index < size
        index, values = index[keep], {k: v[keep] for k, v in values.items()}
    return index, values


def _test_size(trainer: L.Trainer) -> int | None:
    sizes = getattr(trainer.datamodule, "split_sizes", None)
    return sizes.get("test") if isinstance(sizes, Mapping) else None


class PredictionReport(ReportCallback):
    """Base class: collects the test predictions; subclasses write them in :meth:`report` (global rank 0).

    Args:
        output_dir: see :class:`ReportCallback`.
        tensorboard: see :class:`ReportCallback`.
    """

    def __init__(self, output_dir: str | os.PathLike | None = None, tensorboard: bool = True) -> None:
        super().__init__(output_dir, tensorboard)
        self._parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._num_classes: int | None = None
        self._warned = False

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._parts = []

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if dataloader_idx != 0:  # only the first test dataloader (imgbench has one: the test split)
            return
        if not isinstance(outputs, Mapping) or "logits" not in outputs or "targets" not in outputs:
            if not self._warned:
                log.warning("%s: test_step returned no {'logits', 'targets'}; no report", type(self).__name__)
                self._warned = True
            return
        logits = outputs["logits"].detach().float()
        pred = logits.argmax(dim=-1)
        prob = logits.softmax(dim=-1).gather(1, pred[:, None])[:, 0]
        self._parts.append((pred, prob, outputs["targets"].detach().long()))
        self._num_classes = logits.shape[-1]

    def collect(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Predictions | None:
        """This epoch's predictions from every rank, in the test split's order (called on every rank).

        Args:
            trainer: the running trainer.
            pl_module: the LightningModule under test (its device and ``all_gather``).

        Returns:
            The gathered predictions, or None when no rank tested any image.
        """
        device = pl_module.device
        if self._parts:
            pred, prob, label = (torch.cat(t).to(device) for t in zip(*self._parts))
        else:
            pred = label = torch.zeros(0, dtype=torch.long, device=device)
            prob = torch.zeros(0, device=device)
        num_classes = self._num_classes or pl_module.hparams.get("num_classes") or 0
        size = _test_size(trainer)
        if trainer.world_size == 1:
            counts = [len(pred)]
            shares = {"pred": pred[None], "prob": prob[None], "label": label[None]}
        else:
            counts = pl_module.all_gather(torch.tensor(len(pred), device=device)).flatten().tolist()
            width = max(counts)
            shares = pl_module.all_gather(
                {k: _pad(v, width) for k, v in (("pred", pred), ("prob", prob), ("label", label))}
            )
            num_classes = int(pl_module.all_gather(torch.tensor(num_classes, device=device)).max())
        if sum(counts) == 0:
            return None
        index, values = interleave_shares(shares, counts, size)
        return Predictions(index, values["label"], values["pred"], values["prob"].float(), int(num_classes))

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        predictions = self.collect(trainer, pl_module)
        self._parts = []
        if predictions is not None and trainer.is_global_zero:
            self.report(trainer, predictions)

    def report(self, trainer: L.Trainer, predictions: Predictions) -> None:
        """Write the report from the gathered predictions (global rank 0 only).

        Args:
            trainer: the running trainer.
            predictions: every rank's predictions, in the test split's order.
        """
        raise NotImplementedError


def _pad(t: torch.Tensor, width: int) -> torch.Tensor:
    return torch.cat([t, t.new_zeros(width - len(t))])


class ConfusionMatrixReport(PredictionReport):
    """The test split's confusion matrix (torchmetrics): a PNG with the class names and a CSV of counts.

    In the CSV, rows are the true class and columns the predicted class; the header and first column hold the
    class names.

    Args:
        filename: the PNG in the run directory (None: none).
        csv_filename: the CSV in the run directory (None: none).
        output_dir: see :class:`ReportCallback`.
        tensorboard: see :class:`ReportCallback`; TensorBoard gets ``test/confusion_matrix``.
    """

    def __init__(
        self,
        filename: str | None = "confusion_matrix.png",
        csv_filename: str | None = "confusion_matrix.csv",
        output_dir: str | os.PathLike | None = None,
        tensorboard: bool = True,
    ) -> None:
        super().__init__(output_dir, tensorboard)
        self.filename = filename
        self.csv_filename = csv_filename
        self.matrix: torch.Tensor | None = None

    def report(self, trainer: L.Trainer, predictions: Predictions) -> None:
        # the predictions are already gathered and only rank 0 is here: a synchronising compute() would hang
        metric = MulticlassConfusionMatrix(num_classes=predictions.num_classes, sync_on_compute=False)
        metric.update(predictions.pred, predictions.label)
        self.matrix = metric.compute().cpu()
        classes = class_names(trainer, predictions.num_classes)
        if self.csv_filename:
            with atomic_open(self.run_dir(trainer) / self.csv_filename, "w", encoding="utf-8", newline="") as f:
                writer = csv.writer(f, lineterminator="\n")
                writer.writerow(["true\\predicted", *classes])
                for name, row in zip(classes, self.matrix.tolist()):
                    writer.writerow([name, *row])
        n = len(predictions)
        title = f"{run_title(trainer)}: {n} test images, accuracy {predictions.correct / n:.4f}"
        fig = draw_confusion_matrix(self.matrix.numpy(), classes, title=title)
        self.publish(trainer, fig, self.filename, "test/confusion_matrix")


class PredictionGrid(PredictionReport):
    """A grid of test images titled ``label=<class>, predict=<class>`` (green: right, red: wrong).

    The images are the DataModule's uint8 test images (``datamodule.split_images("test", index)``), as stored; without
    such a DataModule the grid is skipped with a warning.

    Args:
        count: images in the grid (study D shows 12, study E 25).
        sample: ``random`` (a fixed random choice: the same images in every run with the same ``seed``),
            ``first`` (the first tested images) or ``errors`` (wrong predictions first, then right ones).
        seed: the seed of the random choice.
        filename: the PNG in the run directory (None: TensorBoard only).
        output_dir: see :class:`ReportCallback`.
        tensorboard: see :class:`ReportCallback`; TensorBoard gets ``test/predictions``.

    Raises:
        ValueError: ``count`` is below 1 or ``sample`` is not one of :attr:`SAMPLES`.
    """

    SAMPLES = ("random", "first", "errors")

    def __init__(
        self,
        count: int = 25,
        sample: str = "random",
        seed: int = 0,
        filename: str | None = "predictions.png",
        output_dir: str | os.PathLike | None = None,
        tensorboard: bool = True,
    ) -> None:
        super().__init__(output_dir, tensorboard)
        if count < 1:
            raise ValueError(f"prediction grid count must be >= 1, got {count}")
        if sample not in self.SAMPLES:
            raise ValueError(f"prediction grid sample must be one of {', '.join(self.SAMPLES)}, got '{sample}'")
        self.count = count
        self.sample = sample
        self.seed = seed
        self.filename = filename

    def choose(self, predictions: Predictions) -> torch.Tensor:
        """Rows of ``predictions`` to show, in test-split order (errors first for ``errors``).

        Args:
            predictions: the gathered test predictions.

        Returns:
            At most ``count`` row indices into ``predictions``.
        """
        n = len(predictions)
        k = min(self.count, n)
        if self.sample == "first":
            return torch.arange(k)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        if self.sample == "random":
            return order[:k].sort().values
        wrong = order[predictions.pred[order] != predictions.label[order]]
        right = order[predictions.pred[order] == predictions.label[order]]
        return torch.cat([wrong[:k].sort().values, right[: max(0, k - len(wrong))].sort().values])

    def report(self, trainer: L.Trainer, predictions: Predictions) -> None:
        dm = trainer.datamodule
        if not hasattr(dm, "split_images"):
            log.warning("PredictionGrid: the datamodule cannot show its test images (no split_images); no grid")
            return
        rows = self.choose(predictions)
        images = dm.split_images("test", predictions.index[rows]).cpu().numpy()
        labels, preds = predictions.label[rows].tolist(), predictions.pred[rows].tolist()
        right = sum(t == p for t, p in zip(labels, preds))
        what = {"random": "random", "first": "first", "errors": "errors first,"}[self.sample]
        title = f"{run_title(trainer)}: {what} {len(rows)} of {len(predictions)} test images, {right} right"
        fig = draw_prediction_grid(images, labels, preds, class_names(trainer, predictions.num_classes), title)
        self.publish(trainer, fig, self.filename, "test/predictions")


class SubmissionWriter(PredictionReport):
    """``submission.csv``: one row per test image, in the test split's order.

    The columns are ``index,label,predicted,probability,label_name,predicted_name`` (probability: of the
    predicted class).

    Args:
        filename: the CSV in the run directory.
        output_dir: see :class:`ReportCallback`.
    """

    COLUMNS = ("index", "label", "predicted", "probability", "label_name", "predicted_name")

    def __init__(self, filename: str = "submission.csv", output_dir: str | os.PathLike | None = None) -> None:
        super().__init__(output_dir, tensorboard=False)
        self.filename = filename

    def report(self, trainer: L.Trainer, predictions: Predictions) -> None:
        classes = class_names(trainer, predictions.num_classes)
        path = self.run_dir(trainer) / self.filename
        with atomic_open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(self.COLUMNS)
            for i, t, p, q in zip(
                predictions.index.tolist(),
                predictions.label.tolist(),
                predictions.pred.tolist(),
                predictions.prob.tolist(),
            ):
                writer.writerow([i, t, p, f"{q:.6f}", classes[t], classes[p]])
        log.info("wrote %d test predictions to %s", len(predictions), path)
