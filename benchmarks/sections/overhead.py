"""Section ``overhead``: the framework's cost.

One training epoch through train.py's path (Lightning, logging, callbacks) against the same epoch as a plain
PyTorch loop (same model, optimizer, batches and augmentation), for keras_cnn on MNIST and resnet18 on
CIFAR-sized images.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from ..common import Figure, compose, side_by_side
from .shared import Sizes, channels_last_choice, datamodule, train_seconds


def _plain_epoch(overrides: list[str]) -> float:
    """Time the same epoch as a plain PyTorch loop.

    It has the same model, optimizer, batches (order included) and batched augmentation over the same
    preloaded uint8 tensors; no Lightning, no logging, no metrics.

    Args:
        overrides: Hydra overrides of the train config, as given to train.py's side.

    Returns:
        float: the epoch's seconds.
    """
    import lightning as L
    from hydra.utils import instantiate

    from imgbench.build import build_net
    from imgbench.hardware import resolve_channels_last

    cfg = compose([*overrides, "trainer.max_epochs=1"])
    dm = datamodule(tuple(overrides))
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


def run(sizes: Sizes) -> list[Figure]:
    """Measure imgbench's epoch time against the plain loop's, for each model.

    Args:
        sizes: how many images (keras_cnn) and batches (resnet18) an epoch has, and the repetitions.

    Returns:
        list[Figure]: one figure per model, with the time ratio and whether it meets its target.
    """
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
        # at least 5 repetitions: the tightest target of the suite, within reach of a shared machine's noise
        repeats = max(sizes.repeats, 5)
        side_by_side(fig, lambda o=overrides: train_seconds(o), lambda o=overrides: _plain_epoch(o), repeats)
        fig.extra["overhead"] = fig.a_median / fig.b_median
        fig.extra["met"] = fig.a_median / fig.b_median <= limit
        figures.append(fig)
    return figures
