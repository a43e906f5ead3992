"""Section ``overhead``: the framework's cost.

One training epoch through train.py's path (Lightning, logging, callbacks) against the same epoch as a plain
PyTorch loop (same model, optimizer, batches and augmentation), for keras_cnn on MNIST, for study D's recipe
(lenet5 on CIFAR-sized images, SGD, no augmentation) at its batch of 4 and at 128, and on CIFAR-sized images for
imgbench's resnet18 and for timm's (``model=timm model.name=resnet18``, the plain loop building it with
``timm.create_model``). At batch 4 a step is about a millisecond of compute, so there the figure is mostly
Lightning's and imgbench's per-step Python.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from imgbench.hardware import cpu_name

from ..common import Figure, compose, side_by_side
from .shared import Sizes, channels_last_choice, datamodule, train_seconds


class Case(NamedTuple):
    """One overhead figure: a model and data, the target and how the plain loop builds the network.

    Attributes:
        name: the figure's name.
        overrides: Hydra overrides of the train config (both sides).
        target: the target, in words.
        limit: the largest time ratio (imgbench / plain loop) that meets it.
        note: how it is measured.
        plain_net: how the plain loop builds the network from the config and the DataModule (default: as
            train.py does, :func:`imgbench.build.build_net`).
    """

    name: str
    overrides: list[str]
    target: str
    limit: float
    note: str
    plain_net: Callable[..., nn.Module] | None = None


def _plain_epoch(overrides: list[str], plain_net: Callable[..., nn.Module] | None = None) -> float:
    """Time the same epoch as a plain PyTorch loop.

    It has the same model, optimizer, batches (order included) and batched augmentation over the same
    preloaded uint8 tensors; no Lightning, no logging, no metrics.

    Args:
        overrides: Hydra overrides of the train config, as given to train.py's side.
        plain_net: builds the network from the config and the DataModule (default: imgbench's build_net).

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
    net = (plain_net or build_net)(cfg, dm)
    fmt = torch.channels_last if resolve_channels_last(cfg.module.channels_last, net) else torch.contiguous_format
    net = net.to(memory_format=fmt)
    optimizer = instantiate(cfg.optimizer)(params=net.parameters())
    criterion = nn.CrossEntropyLoss(label_smoothing=float(cfg.module.label_smoothing))
    loader = dm.train_dataloader()
    loader.group = 1  # one batch at a time (train.py's side may group them: module.inner_steps)
    net.train()
    start = time.perf_counter()
    for x, y in loader:
        x = dm.transform(x, train=True).contiguous(memory_format=fmt)
        loss = criterion(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def timm_resnet18(cfg, dm) -> nn.Module:
    """The plain loop's timm resnet18, built as a plain PyTorch user does: ``timm.create_model``.

    Args:
        cfg: the run's config (unused: the plain loop does not go through imgbench's model registry).
        dm: the DataModule (its class count; 10 on cifar10_jpeg).

    Returns:
        nn.Module: the model, randomly initialised.
    """
    import timm

    return timm.create_model("resnet18", num_classes=dm.num_classes)


def cifar_sized(model: list[str], batches: int) -> list[str]:
    """Overrides for an epoch of ``batches`` batches of 32 CIFAR-sized images from cifar10_jpeg (crop+flip).

    Args:
        model: the model's overrides.
        batches: the epoch's batches.

    Returns:
        list[str]: the overrides.
    """
    return [*model, "data=cifar10_jpeg", f"data.train_size={32 * batches}", "data.batch_size=32", "data.val_size=0"]


def study_d(batch: int, images: int, inner_steps: int) -> list[str]:
    """Overrides for an epoch of study D's recipe on ``images`` CIFAR-sized images (cifar10_jpeg) at ``batch``.

    Study D as its experiment composes it (lenet5, SGD lr 0.001 momentum 0.9, no augmentation, [-1, 1] inputs, its
    callbacks and logging), without validation and without its tests at epochs 10, 30 and 60 (one epoch here).

    Args:
        batch: images per step.
        images: training images.
        inner_steps: optimizer steps per ``training_step`` call (study D's own: 20; 1: Lightning's usual loop).

    Returns:
        list[str]: the overrides.
    """
    return [
        "experiment=study_d",
        "data=cifar10_jpeg",
        f"data.batch_size={batch}",
        f"data.train_size={images}",
        "data.val_size=0",
        "test_epochs=[]",
        f"module.inner_steps={inner_steps}",
    ]


def cases(sizes: Sizes) -> list[Case]:
    """The section's figures.

    Args:
        sizes: how many images (keras_cnn, lenet5) and batches (each resnet18) an epoch has.

    Returns:
        list[Case]: keras_cnn on MNIST, imgbench's resnet18 and timm's resnet18 on CIFAR-sized images, and lenet5
        (study D) at batch 4 and 128.
    """
    cifar_note = "batches of 32 (32x32 RGB, crop+flip), Adam"
    study_d_note = "study D's recipe (experiment=study_d: SGD lr 0.001 momentum 0.9, no augmentation, [-1, 1] inputs"
    return [
        Case(
            "keras_cnn, MNIST",
            [f"data.train_size={sizes.keras_images}", "data.val_size=0"],
            "<= 1.10x the plain loop's time",
            1.10,
            f"{sizes.keras_images} images, batch 128, Adam",
        ),
        Case(
            "resnet18, CIFAR-sized (cifar10_jpeg)",
            cifar_sized(["model=resnet18"], sizes.resnet_batches),
            "<= 1.03x the plain loop's time",
            1.03,
            f"{sizes.resnet_batches} {cifar_note}",
        ),
        Case(
            "timm resnet18, CIFAR-sized",
            cifar_sized(["model=timm", "model.name=resnet18"], sizes.timm_batches),
            "<= 1.05x the plain loop's time",
            1.05,
            f"{sizes.timm_batches} {cifar_note}; model=timm model.name=resnet18 against "
            "timm.create_model('resnet18', num_classes=10) in the plain loop",
            timm_resnet18,
        ),
        Case(
            "lenet5 at batch 4, CIFAR-sized (study D)",
            study_d(4, sizes.lenet_batch4_images, 20),
            "<= 1.30x the plain loop's time",
            1.30,
            f"{sizes.lenet_batch4_images} images ({sizes.lenet_batch4_images // 4} steps), batch 4, {study_d_note}, "
            f"module.inner_steps=20 as study D sets it); CPU: {cpu_name()}",
        ),
        Case(
            "lenet5 at batch 128, CIFAR-sized (study D)",
            study_d(128, sizes.lenet_batch128_images, 1),
            "<= 1.10x the plain loop's time",
            1.10,
            f"{sizes.lenet_batch128_images} images, batch 128, {study_d_note}, module.inner_steps=1: Lightning's "
            f"usual loop); CPU: {cpu_name()}",
        ),
    ]


def measure(case: Case, repeats: int) -> Figure:
    """Measure one case: train.py's epoch time against the plain loop's, side by side.

    Args:
        case: the model, data, target and plain network.
        repeats: the repetitions of each side.

    Returns:
        Figure: the time ratio and whether it meets the case's target.
    """
    cl = channels_last_choice(case.overrides)
    overrides = [*case.overrides, f"module.channels_last={str(cl).lower()}"]
    note = f"{case.note}; channels_last={cl} (auto's choice here) on both sides"
    _plain_epoch(overrides, case.plain_net)  # warm-up: data loading and first-call costs, outside the timings
    fig = Figure("overhead", case.name, "imgbench", "plain loop", "s", target=case.target, note=note)
    side_by_side(fig, lambda: train_seconds(overrides), lambda: _plain_epoch(overrides, case.plain_net), repeats)
    fig.extra["overhead"] = fig.a_median / fig.b_median
    fig.extra["met"] = fig.a_median / fig.b_median <= case.limit
    return fig


def run(sizes: Sizes) -> list[Figure]:
    """Measure imgbench's epoch time against the plain loop's, for each model.

    Args:
        sizes: how many images (keras_cnn) and batches (each resnet18) an epoch has, and the repetitions.

    Returns:
        list[Figure]: one figure per model, with the time ratio and whether it meets its target.
    """
    # at least 5 repetitions: the tightest target of the suite, within reach of a shared machine's noise
    return [measure(case, max(sizes.repeats, 5)) for case in cases(sizes)]
