"""Section ``datapath``: how fast images reach the model.

imgbench's batched data path (preloaded uint8 tensors, augmentation on whole batches) against the usual
per-image DataLoader (one PIL image per item through torchvision's transforms, with the best worker count found
here), on MNIST and cifar10_jpeg; and end to end, one keras_cnn epoch on MNIST with train.py against a project
written as lightning-hydra-template does it, with the test accuracy of both.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..common import Figure, compose, side_by_side
from .shared import Sizes, channels_last_choice, datamodule


class ArrayImageDataset(torch.utils.data.Dataset):
    """The usual per-image Dataset (torchvision's MNIST / CIFAR10 classes).

    It keeps uint8 arrays in memory and makes one PIL image per item, through per-image transforms.

    Args:
        images: uint8 images, (N, H, W) for grey or (N, H, W, 3) for RGB.
        labels: the N class indices.
        transform: what turns one PIL image into a tensor (a torchvision transform).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Any) -> None:
        self.images, self.labels, self.transform = images, labels, transform
        self.mode = "L" if images.ndim == 3 else "RGB"

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i], mode=self.mode)), int(self.labels[i])


def _per_image_parts(dm, n: int | None, train: bool = True, split: str = "train") -> ArrayImageDataset:
    """The DataModule's split as a per-image Dataset with the matching torchvision transform.

    Args:
        dm: the imgbench DataModule (set up).
        n: how many images of the split (None: all).
        train: whether to add the training augmentation (crop, flip) before ToTensor and Normalize.
        split: which of the DataModule's splits.

    Returns:
        ArrayImageDataset: the split's images as HWC arrays with the transform.
    """
    import torchvision.transforms as T

    data = dm.splits[split]
    images = data.images[:n] if n else data.images
    arr = images.permute(0, 2, 3, 1).numpy()
    arr = arr[..., 0] if arr.shape[-1] == 1 else arr
    steps: list[Any] = []
    aug = dm.augment
    if train and aug.crop_padding:
        steps.append(
            T.RandomCrop(
                arr.shape[1:3], padding=aug.crop_padding, padding_mode=aug.pad_mode.replace("zeros", "constant")
            )
        )
    if train and aug.flip:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(dm.mean, dm.std)]
    labels = (data.labels[:n] if n else data.labels).numpy()
    return ArrayImageDataset(np.ascontiguousarray(arr), labels, T.Compose(steps))


def _loader(dataset, batch_size: int, workers: int, shuffle: bool = True) -> torch.utils.data.DataLoader:
    """A plain DataLoader over ``dataset`` (its workers kept between passes).

    Args:
        dataset: the per-image Dataset.
        batch_size: images per batch.
        workers: DataLoader worker processes (0: in this process).
        shuffle: whether to shuffle.

    Returns:
        torch.utils.data.DataLoader: the loader.
    """
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, persistent_workers=workers > 0
    )


def _images_per_sec(loader, transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> float:
    """Measure the images per second of one pass over ``loader``.

    Args:
        loader: what yields (images, labels) batches.
        transform: applied to every batch of images inside the timing (imgbench's batched augmentation), if any.

    Returns:
        float: images per second.
    """
    n = 0
    start = time.perf_counter()
    for x, _ in loader:
        n += len(transform(x) if transform else x)
    return n / (time.perf_counter() - start)


def _imgbench_data_rate(dm) -> float:
    """Measure the images per second of one pass over imgbench's training batches, augmentation included.

    Args:
        dm: the imgbench DataModule.

    Returns:
        float: images per second.
    """
    return _images_per_sec(dm.train_dataloader(), functools.partial(dm.transform, train=True))


def best_workers(dataset, batch_size: int, candidates=(0, 1, 2)) -> tuple[int, dict[int, float]]:
    """Find the DataLoader worker count that delivers the most images per second here (one pass each).

    Args:
        dataset: the per-image Dataset.
        batch_size: images per batch.
        candidates: the worker counts to try.

    Returns:
        tuple[int, dict[int, float]]: the best count, and the images per second of each candidate.
    """
    rates = {}
    for w in candidates:
        loader = _loader(dataset, batch_size, w)
        _images_per_sec(loader)  # start the workers
        rates[w] = _images_per_sec(loader)
        del loader
    return max(rates, key=rates.get), rates


def run(sizes: Sizes) -> list[Figure]:
    """Measure the data path figures of MNIST and cifar10_jpeg, then the end-to-end figure.

    Args:
        sizes: how many images per measurement, and the repetitions.

    Returns:
        list[Figure]: one figure per dataset (images per second) and the end-to-end figure (seconds).
    """
    figures = []
    for name, overrides in (
        ("MNIST (normalise)", ["data=mnist", "data.val_size=0"]),
        ("cifar10_jpeg (crop 4 reflect + flip, normalise)", ["data=cifar10_jpeg", "data.val_size=0"]),
    ):
        dm = datamodule(tuple(overrides))
        dataset = _per_image_parts(dm, sizes.datapath_images)
        workers, rates = best_workers(dataset, dm.batch_size)
        loader = _loader(dataset, dm.batch_size, workers)
        _images_per_sec(loader)
        fig = Figure(
            "datapath",
            name,
            "imgbench",
            f"per-image DataLoader ({workers} workers)",
            "img/s",
            target=">= 10x",
            note=f"batch {dm.batch_size}; worker search (img/s): "
            + ", ".join(f"{k}: {v:.0f}" for k, v in rates.items()),
        )
        side_by_side(fig, lambda d=dm: _imgbench_data_rate(d), lambda ld=loader: _images_per_sec(ld), sizes.repeats)
        fig.extra["met"] = fig.ratio >= 10
        figures.append(fig)
        del loader
    figures.append(end_to_end(sizes))
    return figures


# ---------------------------------------------------------------------------- end to end


def _template_module(net: nn.Module, num_classes: int):
    """A LightningModule written as lightning-hydra-template's MNISTLitModule.

    It has torchmetrics Accuracy and MeanMetric per split, epoch-level logging and Adam.

    Args:
        net: the network it trains.
        num_classes: the number of classes (for the accuracy metrics).

    Returns:
        lightning.LightningModule: the module; its ``epoch_seconds`` is the last training epoch's time.
    """
    import lightning as L
    from torchmetrics import MaxMetric, MeanMetric
    from torchmetrics.classification.accuracy import Accuracy

    class MNISTLitModule(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.criterion = nn.CrossEntropyLoss()
            self.train_acc = Accuracy(task="multiclass", num_classes=num_classes)
            self.val_acc = Accuracy(task="multiclass", num_classes=num_classes)
            self.test_acc = Accuracy(task="multiclass", num_classes=num_classes)
            self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
            self.val_acc_best = MaxMetric()
            self.epoch_seconds = 0.0

        def forward(self, x):
            return self.net(x)

        def model_step(self, batch):
            x, y = batch
            logits = self(x)
            return self.criterion(logits, y), logits.argmax(dim=1), y

        def on_train_epoch_start(self) -> None:
            self._start = time.perf_counter()

        def training_step(self, batch, batch_idx):
            loss, preds, targets = self.model_step(batch)
            self.train_loss(loss)
            self.train_acc(preds, targets)
            self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
            self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
            self._end = time.perf_counter()
            return loss

        def on_train_epoch_end(self) -> None:
            self.epoch_seconds = self._end - self._start

        def test_step(self, batch, batch_idx):
            loss, preds, targets = self.model_step(batch)
            self.test_loss(loss)
            self.test_acc(preds, targets)
            self.log("test/loss", self.test_loss, on_step=False, on_epoch=True)
            self.log("test/acc", self.test_acc, on_step=False, on_epoch=True)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3, eps=1e-7)

    return MNISTLitModule()


def template_cnn() -> nn.Module:
    """Study E's MNIST CNN as a template user writes it.

    It has the same layers, shapes and Keras initialisation as imgbench's keras_cnn, from stock torch.nn modules
    (nn.Dropout, NCHW).

    Returns:
        nn.Module: the network (an nn.Sequential).
    """
    from imgbench.models.layers import keras_init_

    layers: list[nn.Module] = []
    c = 1
    for width in (16, 32, 64):
        layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Dropout(0.25)]
        c = width
    layers += [nn.Flatten(), nn.Linear(64 * 3 * 3, 128), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(128, 10)]
    net = nn.Sequential(*layers)
    keras_init_(net)
    return net


def _template_run(n_train: int, workers: int, accuracy: list[float]) -> float:
    """Run the usual Lightning project on MNIST (lightning-hydra-template's way) for one epoch and the test.

    It has a per-image Dataset of PIL images, ToTensor and Normalize, a DataLoader, torchmetrics, TensorBoard
    logging, checkpointing and a progress bar.

    Args:
        n_train: training images.
        workers: DataLoader worker processes.
        accuracy: the run's test accuracy is appended here.

    Returns:
        float: the training epoch's seconds.
    """
    import tempfile

    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint, RichModelSummary, RichProgressBar
    from lightning.pytorch.loggers import TensorBoardLogger

    dm = datamodule(("data=mnist",))
    L.seed_everything(42, verbose=False)
    train_set = _per_image_parts(dm, n_train, train=False)
    test_set = _per_image_parts(dm, None, train=False, split="test")
    net = template_cnn()
    module = _template_module(net, 10)
    out = tempfile.mkdtemp(prefix="template-")
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=TensorBoardLogger(out),
        callbacks=[ModelCheckpoint(dirpath=out), RichModelSummary(), RichProgressBar()],
        default_root_dir=out,
        limit_val_batches=0,
    )
    trainer.fit(module, train_dataloaders=_loader(train_set, 128, workers))
    trainer.test(module, dataloaders=_loader(test_set, 1000, workers, shuffle=False), verbose=False)
    accuracy.append(float(trainer.callback_metrics["test/acc"]))
    return module.epoch_seconds


def _imgbench_run(n_train: int, accuracy: list[float], channels_last: bool) -> float:
    """Run keras_cnn on MNIST with train.py's defaults, one epoch and the test.

    Args:
        n_train: training images.
        accuracy: the run's test accuracy is appended here.
        channels_last: the layout to train in (auto's choice, decided once).

    Returns:
        float: the training epoch's seconds.
    """
    from imgbench.run import train

    cfg = compose(
        [
            f"data.train_size={n_train}",
            "trainer.max_epochs=1",
            "logger=tensorboard",
            f"module.channels_last={str(channels_last).lower()}",
        ]
    )
    result = train(cfg)
    accuracy.append(result["metrics"]["test/acc"])
    return float(result["train_seconds"])


def end_to_end(sizes: Sizes) -> Figure:
    """Time one keras_cnn epoch on MNIST: train.py against the Lightning template, with both test accuracies.

    Args:
        sizes: the epoch's training images, the images of the worker search, and the repetitions.

    Returns:
        Figure: seconds per epoch; met when imgbench is at least 1.5x faster at the same accuracy.
    """
    dm = datamodule(("data=mnist",))
    workers, _ = best_workers(_per_image_parts(dm, sizes.datapath_images // 2, train=False), 128)
    acc_a: list[float] = []
    acc_b: list[float] = []
    n = min(sizes.e2e_images, len(dm.splits["train"]))
    fig = Figure(
        "datapath",
        "end to end: keras_cnn on MNIST, one epoch",
        "imgbench (train.py)",
        f"Lightning template ({workers} workers)",
        "s",
        target=">= 1.5x faster, same accuracy",
        note=f"{n} training images, batch 128, Adam 1e-3; test accuracy on the 10,000 test images",
    )
    cl = channels_last_choice(["data=mnist"])
    fig.note += f"; imgbench's defaults (channels_last=auto chose {cl} here), the template as written (NCHW)"
    side_by_side(fig, lambda: _imgbench_run(n, acc_a, cl), lambda: _template_run(n, workers, acc_b), sizes.repeats)
    fig.extra.update(
        {
            "a_test_acc": acc_a,
            "b_test_acc": acc_b,
            "met": bool(fig.ratio >= 1.5 and abs(np.median(acc_a) - np.median(acc_b)) < 0.005),
        }
    )
    fig.note += f"; test acc imgbench {np.median(acc_a):.4f}, template {np.median(acc_b):.4f}"
    return fig
