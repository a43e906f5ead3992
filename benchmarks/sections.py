"""The five benchmark sections. Each returns a list of :class:`Figure` (side-by-side ratios)."""

from __future__ import annotations

import functools
import logging
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .common import Figure, compose, load, side_by_side

log = logging.getLogger("benchmarks")


@dataclass
class Sizes:
    """How much work each section does (``--quick`` shrinks everything)."""

    repeats: int = 3
    keras_images: int = 30000  # keras_cnn / MNIST epoch for the overhead figure
    resnet_batches: int = 8  # resnet18 / CIFAR-sized batches of 32 for the overhead figure
    datapath_images: int = 20000  # per-image pipeline images per measurement
    e2e_images: int = 55000  # end-to-end epoch (the reported 55,000-image epoch)
    retrieval_queries: int = 10000
    retrieval_database: int = 50000
    retrieval_direct_queries: int = 300  # the direct implementation runs on this many queries, scaled per query
    precision_batch: int = 8
    scaling_sizes: tuple[int, ...] = (10000, 30000, 60000)
    scaling_batches: tuple[int, ...] = (64, 128, 256)
    scaling_batch_images: int = 10000
    recipe_epochs: int = 16  # experiment=cifar10_fast on cifar10_jpeg: the recipe's 16 epochs
    recipe_train_size: int | None = None  # None: all 50,000 training images

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            repeats=3,
            keras_images=4000,
            resnet_batches=2,
            datapath_images=3000,
            e2e_images=4000,
            retrieval_queries=1000,
            retrieval_database=20000,
            retrieval_direct_queries=100,
            precision_batch=4,
            scaling_sizes=(2000, 6000, 12000),
            scaling_batches=(64, 128, 256),
            scaling_batch_images=4000,
            recipe_epochs=1,
            recipe_train_size=2048,
        )


# ---------------------------------------------------------------------------- 1. framework overhead


def _train_seconds(overrides: list[str]) -> float:
    """One training epoch through train.py's path (DataModule, LightningModule, Trainer, TensorBoard logging,
    the default callbacks); returns the module's own epoch time (first batch start to last batch end)."""
    from imgbench.run import train

    cfg = compose([*overrides, "trainer.max_epochs=1", "test=false", "logger=tensorboard"])
    return float(train(cfg)["train_seconds"])


@functools.lru_cache(maxsize=8)
def _datamodule(overrides: tuple[str, ...]):
    from imgbench.run import build_datamodule

    return build_datamodule(compose(list(overrides)))


def _plain_epoch(overrides: list[str]) -> float:
    """The same epoch as a plain PyTorch loop: the same model, optimizer, batches (order included) and batched
    augmentation over the same preloaded uint8 tensors; no Lightning, no logging, no metrics."""
    import lightning as L
    from hydra.utils import instantiate

    from imgbench.hardware import resolve_channels_last
    from imgbench.run import build_net

    cfg = compose([*overrides, "trainer.max_epochs=1"])
    dm = _datamodule(tuple(overrides))
    L.seed_everything(cfg.seed, verbose=False)
    net = build_net(cfg, dm)
    fmt = torch.channels_last if resolve_channels_last(cfg.module.channels_last, net) else torch.contiguous_format
    net = net.to(memory_format=fmt)
    optimizer = instantiate(cfg.optimizer)(params=net.parameters())
    criterion = nn.CrossEntropyLoss(label_smoothing=float(cfg.module.label_smoothing))
    loader = dm.train_dataloader()
    net.train()
    start = time.perf_counter()
    for x, y in loader:
        x = dm.transform(x, train=True).contiguous(memory_format=fmt)
        loss = criterion(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def channels_last_choice(overrides: list[str]) -> bool:
    """What ``module.channels_last=auto`` picks for this config on this machine (decided once, then passed to
    both sides explicitly so that they run the same layout)."""
    from imgbench.hardware import resolve_channels_last
    from imgbench.run import build_net

    cfg = compose(list(overrides))
    dm = _datamodule(tuple(overrides))
    net = build_net(cfg, dm)
    return resolve_channels_last(cfg.module.channels_last, net, dm.image_shape, int(cfg.data.batch_size), "cpu")


def overhead(sizes: Sizes) -> list[Figure]:
    figures = []
    cases = [
        (
            "keras_cnn, MNIST",
            [f"data.train_size={sizes.keras_images}", "data.val_size=0"],
            "<= 1.10x the plain loop's time",
            1.10,
            f"{sizes.keras_images} images, batch 128, Adam",
        ),
        (
            "resnet18, CIFAR-sized (cifar10_jpeg)",
            [
                "model=resnet18",
                "data=cifar10_jpeg",
                f"data.train_size={32 * sizes.resnet_batches}",
                "data.batch_size=32",
                "data.val_size=0",
            ],
            "<= 1.03x the plain loop's time",
            1.03,
            f"{sizes.resnet_batches} batches of 32 (32x32 RGB, crop+flip), Adam",
        ),
    ]
    for name, overrides, target, limit, note in cases:
        cl = channels_last_choice(overrides)
        overrides = [*overrides, f"module.channels_last={str(cl).lower()}"]
        note += f"; channels_last={cl} (auto's choice here) on both sides"
        _plain_epoch(overrides)  # warm-up: data loading and first-call costs, outside the timings
        fig = Figure("overhead", name, "imgbench", "plain loop", "s", target=target, note=note)
        # at least 5 repetitions: the smallest margin of the suite, and a shared machine's noise is a few percent
        repeats = max(sizes.repeats, 5)
        side_by_side(fig, lambda o=overrides: _train_seconds(o), lambda o=overrides: _plain_epoch(o), repeats)
        fig.extra["overhead"] = fig.a_median / fig.b_median
        fig.extra["met"] = fig.a_median / fig.b_median <= limit
        figures.append(fig)
    return figures


# ---------------------------------------------------------------------------- 2. data path and end to end


class ArrayImageDataset(torch.utils.data.Dataset):
    """The usual per-image Dataset (torchvision's MNIST / CIFAR10 classes): uint8 arrays in memory, one PIL image
    per item through per-image transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Any) -> None:
        self.images, self.labels, self.transform = images, labels, transform  # images (N, H, W) or (N, H, W, 3)
        self.mode = "L" if images.ndim == 3 else "RGB"

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i], mode=self.mode)), int(self.labels[i])


def _per_image_parts(dm, n: int | None, train: bool = True, split: str = "train"):
    """The DataModule's split as HWC arrays and the matching torchvision transform."""
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


def _loader(dataset, batch_size: int, workers: int, shuffle: bool = True):
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, persistent_workers=workers > 0
    )


def _images_per_sec(loader) -> float:
    n = 0
    start = time.perf_counter()
    for x, _ in loader:
        n += len(x)
    return n / (time.perf_counter() - start)


def _imgbench_data_rate(dm) -> float:
    loader = dm.train_dataloader()
    n = 0
    start = time.perf_counter()
    for x, _ in loader:
        n += len(dm.transform(x, train=True))
    return n / (time.perf_counter() - start)


def best_workers(dataset, batch_size: int, candidates=(0, 1, 2)) -> tuple[int, dict[int, float]]:
    """The DataLoader worker count that delivers the most images per second here (one pass each)."""
    rates = {}
    for w in candidates:
        loader = _loader(dataset, batch_size, w)
        _images_per_sec(loader)  # start the workers
        rates[w] = _images_per_sec(loader)
        del loader
    return max(rates, key=rates.get), rates


def datapath(sizes: Sizes) -> list[Figure]:
    figures = []
    for name, overrides in (
        ("MNIST (normalise)", ["data=mnist", "data.val_size=0"]),
        ("cifar10_jpeg (crop 4 reflect + flip, normalise)", ["data=cifar10_jpeg", "data.val_size=0"]),
    ):
        dm = _datamodule(tuple(overrides))
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


def _template_module(net: nn.Module, num_classes: int):
    """A LightningModule written as lightning-hydra-template's MNISTLitModule: torchmetrics Accuracy and
    MeanMetric per split, epoch-level logging, Adam."""
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
    """Study E's MNIST CNN as a template user writes it: the same layers, shapes and Keras initialisation as
    imgbench's keras_cnn, from stock torch.nn modules (nn.Dropout, NCHW)."""
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
    """The usual Lightning project on MNIST (lightning-hydra-template's way): per-image Dataset of PIL images,
    ToTensor and Normalize, a DataLoader, torchmetrics, TensorBoard logging, checkpointing, a progress bar."""
    import tempfile

    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint, RichModelSummary, RichProgressBar
    from lightning.pytorch.loggers import TensorBoardLogger

    dm = _datamodule(("data=mnist",))
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
    dm = _datamodule(("data=mnist",))
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


# ---------------------------------------------------------------------------- 3. retrieval


def hash_codes(n: int, bits: int, classes: int, rng: np.random.Generator, flip: float = 0.15):
    """Codes clustered around one random prototype per class (as a trained hash layer gives), with ties."""
    protos = rng.integers(0, 2, (classes, bits), dtype=np.uint8)
    labels = rng.integers(0, classes, n)
    codes = protos[labels] ^ (rng.random((n, bits)) < flip)
    return codes.astype(bool), labels


def retrieval(sizes: Sizes) -> list[Figure]:
    from imgbench.metrics.retrieval import retrieval_metrics

    from .direct_retrieval import direct_retrieval_metrics

    rng = np.random.default_rng(0)
    nq, nd, nq_direct = sizes.retrieval_queries, sizes.retrieval_database, sizes.retrieval_direct_queries
    codes, labels = hash_codes(nq + nd, 48, 10, rng)
    qc, ql, dc, dl = codes[:nq], labels[:nq], codes[nq:], labels[nq:]
    fig = Figure(
        "retrieval",
        f"{nq:,} x {nd:,} codes of 48 bits (mAP, mAP@1000, P@100..1000, P(r<=2), kNN)",
        "imgbench.metrics.retrieval",
        "direct NumPy",
        "s",
        target=">= 20x, same numbers",
        note=f"the direct implementation runs {nq_direct} queries per measurement, scaled to {nq:,} (it is per query);"
        f" imgbench on {os.cpu_count()} threads over query chunks, the direct one on one",
    )
    same: list[float] = []

    workers = os.cpu_count() or 1

    def ours() -> float:
        start = time.perf_counter()
        retrieval_metrics(qc, ql, dc, dl, workers=workers)
        return time.perf_counter() - start

    def direct() -> float:
        start = time.perf_counter()
        want = direct_retrieval_metrics(qc[:nq_direct], ql[:nq_direct], dc, dl)
        seconds = (time.perf_counter() - start) * nq / nq_direct
        got = retrieval_metrics(qc[:nq_direct], ql[:nq_direct], dc, dl)
        same.append(max(abs(got[k] - want[k]) for k in want))
        return seconds

    side_by_side(fig, ours, direct, sizes.repeats)
    fig.extra.update({"max_abs_difference": float(max(same)), "met": bool(fig.ratio >= 20 and max(same) < 1e-9)})
    fig.note += f"; largest difference between the two: {max(same):.1e}"
    return [fig]


# ---------------------------------------------------------------------------- 4. precision and layout


def _step_rate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool, steps: int = 1) -> float:
    """Images per second of ``steps`` training steps (forward, backward, SGD)."""
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    start = time.perf_counter()
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * len(x) / (time.perf_counter() - start)


def precision(sizes: Sizes) -> list[Figure]:
    from imgbench.hardware import resolve_channels_last, resolve_precision
    from imgbench.models import create_model

    figures = []
    auto_precision = resolve_precision("auto", "cpu")
    for name, kwargs, shape in (
        ("resnet34, 28x28x1 (study C)", {"name": "resnet34"}, (1, 28, 28)),
        ("alexnet, 32x32x3 small layout", {"name": "alexnet", "layout": "small"}, (3, 32, 32)),
    ):
        b = sizes.precision_batch
        variants = {}
        for bf16 in (False, True):
            for cl in (False, True):
                torch.manual_seed(0)
                model_kwargs = {k: v for k, v in kwargs.items() if k != "name"}
                net = create_model(
                    kwargs["name"], num_classes=10, in_channels=shape[0], image_size=shape[1:], **model_kwargs
                )
                fmt = torch.channels_last if cl else torch.contiguous_format
                net = net.to(memory_format=fmt).train()
                x = torch.randn(b, *shape).contiguous(memory_format=fmt)
                y = torch.randint(0, 10, (b,))
                _step_rate(net, x, y, bf16)  # warm-up (oneDNN primitives)
                variants[(bf16, cl)] = functools.partial(_step_rate, net, x, y, bf16)
        auto_cl = resolve_channels_last("auto", net, shape, b, "cpu")
        for label, a_key in (
            ("bf16 autocast vs fp32", (True, False)),
            ("channels_last vs NCHW (fp32)", (False, True)),
            ("bf16 + channels_last vs fp32", (True, True)),
        ):
            fig = Figure(
                "precision",
                f"{name}: {label}",
                "bf16" if a_key[0] else "fp32",
                "fp32 NCHW",
                "img/s",
                note=f"batch {b}, one SGD step per measurement",
            )
            fig.a_label = ("bf16" if a_key[0] else "fp32") + (" channels_last" if a_key[1] else " NCHW")
            side_by_side(fig, variants[a_key], variants[(False, False)], sizes.repeats)
            figures.append(fig)
        auto_key = (auto_precision == "bf16-mixed", auto_cl)
        fig = Figure(
            "precision",
            f"{name}: auto (precision={auto_precision}, channels_last={auto_cl}) vs fp32 NCHW",
            "auto",
            "fp32 NCHW",
            "img/s",
            target="auto never slower than the best of the four (within noise)",
            note=f"batch {b}",
        )
        side_by_side(fig, variants[auto_key], variants[(False, False)], sizes.repeats)
        figures.append(fig)
    return figures


# ---------------------------------------------------------------------------- 5. scaling


def scaling(sizes: Sizes) -> list[Figure]:
    figures = []
    size_fig = Figure(
        "scaling",
        "keras_cnn / MNIST epoch time vs dataset size (batch 128)",
        "seconds per epoch",
        "",
        "s",
        note="through train.py's path; linear means constant seconds per 1,000 images",
    )
    per_size: dict[int, list[float]] = {n: [] for n in sizes.scaling_sizes}
    per_batch: dict[int, list[float]] = {b: [] for b in sizes.scaling_batches}
    fixed = [f"module.channels_last={str(channels_last_choice(['data=mnist'])).lower()}"]
    _train_seconds(["data.train_size=2000", "data.val_size=0", *fixed])  # warm-up
    for i in range(sizes.repeats):
        order = list(sizes.scaling_sizes) if i % 2 == 0 else list(reversed(sizes.scaling_sizes))
        for n in order:
            per_size[n].append(_train_seconds([f"data.train_size={n}", "data.val_size=0", *fixed]))
        border = list(sizes.scaling_batches) if i % 2 == 0 else list(reversed(sizes.scaling_batches))
        for b in border:
            per_batch[b].append(
                _train_seconds(
                    [f"data.train_size={sizes.scaling_batch_images}", "data.val_size=0", f"data.batch_size={b}", *fixed]
                )
            )
        size_fig.loads.append(load())
    size_fig.extra["per_size"] = {n: per_size[n] for n in per_size}
    size_fig.extra["per_batch"] = {b: per_batch[b] for b in per_batch}
    size_fig.extra["seconds_per_1000"] = {n: statistics.median(v) / n * 1000 for n, v in per_size.items()}
    size_fig.extra["images_per_sec_by_batch"] = {
        b: sizes.scaling_batch_images / statistics.median(v) for b, v in per_batch.items()
    }
    small, large = min(per_size), max(per_size)
    size_fig.a = [statistics.median(per_size[large]) / statistics.median(per_size[small]) * small / large]
    size_fig.b = [1.0]
    size_fig.unit = "ratio"
    figures.append(size_fig)
    return figures


# ---------------------------------------------------------------------------- 6. the fast CIFAR-10 recipe


def recipe(sizes: Sizes) -> list[Figure]:
    """``experiment=cifar10_fast data=cifar10_jpeg`` as a user runs it: test accuracy and training minutes here."""
    from imgbench.run import train

    overrides = ["experiment=cifar10_fast", "data=cifar10_jpeg", f"trainer.max_epochs={sizes.recipe_epochs}"]
    if sizes.recipe_train_size:
        overrides.append(f"data.train_size={sizes.recipe_train_size}")
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)  # as a user runs it, not the timing sections' single thread
    try:
        start = time.perf_counter()
        result = train(compose([*overrides, "logger=tensorboard"]))
        wall = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    fig = Figure(
        "recipe",
        "experiment=cifar10_fast on cifar10_jpeg",
        "python train.py " + " ".join(overrides),
        "",
        "s",
        note="one run: the accuracy it reaches and the time it takes here (no baseline)",
    )
    fig.a = [float(result["train_seconds"])]
    fig.b = [float(result["train_seconds"])]
    fig.loads.append(load())
    fig.extra.update(
        {
            "test_acc": result["metrics"]["test/acc"],
            "train_seconds": result["train_seconds"],
            "wall_seconds": wall,
            "images_per_sec": result.get("train_images_per_sec"),
            "epochs": sizes.recipe_epochs,
            "train_size": result.get("splits", {}).get("train"),
            "precision": result.get("precision"),
            "channels_last": result.get("channels_last"),
            "command": fig.a_label,
            "threads": os.cpu_count() or 1,
        }
    )
    return [fig]


SECTIONS = {
    "overhead": overhead,
    "datapath": datapath,
    "retrieval": retrieval,
    "precision": precision,
    "scaling": scaling,
    "recipe": recipe,
}
