"""Section ``augmentation``: what each augmentation of the batched data path costs per batch.

Each augmentation through :class:`imgbench.data.augment.BatchTransform` (a training batch: the augmentation and
the normalisation, and for Mixup and CutMix :meth:`~imgbench.data.augment.BatchTransform.mix` after it) against
the normalisation alone, on the training device, at CIFAR size (batch 128, 3x32x32 uint8) and ImageNet size
(batch 64, 3x224x224 uint8). No targets: these are costs to know when choosing a recipe.

The section measures in a child process whose glibc malloc keeps freed memory for reuse (``MALLOC_*`` below).
Left to itself, glibc maps a buffer above its mmap threshold (at most 32 MB; an ImageNet-sized float batch is
38.5 MB) afresh on some calls and takes it from its heap on others, as the heap's state of the moment decides: a
fresh buffer costs a page fault per 4 KB page (about 15 ms per float batch here, on each side and on every batch
that makes one), so the same normalisation measured 6 ms in one figure and 21 ms in the next. With the memory
reused, every figure measures the work itself (as on a GPU, whose caching allocator reuses memory too).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..common import Figure, quiet, side_by_side
from .shared import Sizes

# what each figure switches on (AugmentConfig's fields), by name; "mix" ones run BatchTransform.mix afterwards
AUGMENTATIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("crop 4 + flip", {"crop_padding": 4, "pad_mode": "reflect", "flip": True}),
    ("trivialaugment", {"auto": "trivialaugment"}),
    ("randaugment (2 ops, magnitude 9)", {"auto": "randaugment", "randaugment_ops": 2, "randaugment_magnitude": 9}),
    ("random erasing (p 0.25)", {"erase_prob": 0.25}),
    ("mixup (alpha 0.2)", {"mixup_alpha": 0.2}),
    ("cutmix (alpha 1.0)", {"cutmix_alpha": 1.0}),
    ("PCA lighting (0.1)", {"lighting": 0.1}),
)

# (name, batch, image side, classes)
SHAPES: tuple[tuple[str, int, int, int], ...] = (("CIFAR", 128, 32, 10), ("ImageNet", 64, 224, 1000))

# cifar10_jpeg's channel statistics (any mean and std cost the same)
MEAN, STD = (0.491, 0.482, 0.447), (0.247, 0.243, 0.262)

# the measuring process's glibc malloc: every allocation from the heap, freed memory kept there for reuse
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 31)}


def device() -> torch.device:
    """The training device: the GPU where there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def batch_step(augment: dict[str, Any], num_classes: int, seed: int = 0) -> Callable[[torch.Tensor, torch.Tensor], Any]:
    """One training batch's transform, as the data path runs it.

    Args:
        augment: AugmentConfig's fields (empty: normalise only).
        num_classes: the classes of the soft targets (Mixup, CutMix).
        seed: the transform's seed.

    Returns:
        Callable: ``(uint8 images, labels) ->`` the float batch (and soft targets where mixing).
    """
    from imgbench.data.augment import AugmentConfig, BatchTransform

    config = AugmentConfig(**augment)
    transform = BatchTransform(MEAN, STD, config, seed=seed)
    if config.mixing:
        return lambda x, y: transform.mix(transform(x, train=True), y, num_classes)
    return lambda x, y: transform(x, train=True)


def ms_per_batch(
    step: Callable[[torch.Tensor, torch.Tensor], Any], x: torch.Tensor, y: torch.Tensor, seconds: float
) -> float:
    """Time ``step`` on one batch, repeated until ``seconds`` have passed (at least 2 batches).

    Args:
        step: the batch transform.
        x: uint8 images ``(N, C, H, W)`` on the device.
        y: their labels.
        seconds: how long to keep measuring.

    Returns:
        float: milliseconds per batch.
    """
    cuda = x.device.type == "cuda"
    n = 0
    start = time.perf_counter()
    while True:
        step(x, y)
        n += 1
        if cuda:
            torch.cuda.synchronize(x.device)
        elapsed = time.perf_counter() - start
        if n >= 2 and elapsed >= seconds:
            return elapsed / n * 1000


def measure(
    name: str, augment: dict[str, Any], shape: tuple[str, int, int, int], seconds: float, repeats: int
) -> Figure:
    """Measure one augmentation (with the normalisation) against the normalisation alone, side by side.

    Args:
        name: the augmentation's name.
        augment: its AugmentConfig fields.
        shape: (name, batch, image side, classes).
        seconds: how long each sample measures.
        repeats: the samples of each side.

    Returns:
        Figure: ms per batch of each side; the ratio is how many times the normalisation's time the
        augmentation and the normalisation take.
    """
    from imgbench.data.augment import AugmentConfig

    size, batch, side, classes = shape
    dev = device()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch, 3, side, side), dtype=torch.uint8, generator=g).to(dev)
    y = torch.randint(0, classes, (batch,), generator=g).to(dev)
    a, b = batch_step(augment, classes), batch_step({}, classes)
    a(x, y), b(x, y)  # warm-up: generators, normalisation constants, first-call costs
    mix = " then .mix" if AugmentConfig(**augment).mixing else ""
    reused = os.environ.get("MALLOC_MMAP_THRESHOLD_") == MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"]
    memory = (
        "in a process whose glibc malloc keeps freed memory for reuse (MALLOC_MMAP_THRESHOLD_=1 GiB, "
        "MALLOC_TRIM_THRESHOLD_=2 GiB: no fresh pages per batch)"
        if reused
        else "malloc's defaults"
    )
    fig = Figure(
        "augmentation",
        f"{size} (batch {batch}, 3x{side}x{side}): {name}, ms per batch",
        f"{name} + normalise",
        "normalise",
        "ms",
        note=f"batch {batch} of 3x{side}x{side} uint8 (random pixels) on {dev.type}, {torch.get_num_threads()} "
        f"torch thread(s); BatchTransform(train=True){mix}; each sample repeats the batch for {seconds:g} s (at "
        f"least 2 batches); {memory}",
    )
    return side_by_side(fig, lambda: ms_per_batch(a, x, y, seconds), lambda: ms_per_batch(b, x, y, seconds), repeats)


def _measure_all(
    shapes: tuple[tuple[str, int, int, int], ...], seconds: float, repeats: int, threads: int
) -> list[Figure]:
    """Measure every augmentation at every shape (in the child process of :func:`run`).

    Args:
        shapes: (name, batch, image side, classes) of each size.
        seconds: how long each sample measures.
        repeats: the samples of each side.
        threads: torch threads (the parent's).

    Returns:
        list[Figure]: one figure per shape and augmentation.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    quiet()
    torch.set_num_threads(threads)
    return [measure(name, augment, shape, seconds, repeats) for shape in shapes for name, augment in AUGMENTATIONS]


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block (a child started in it inherits them), then restore them.

    Args:
        values: the variables and their values.
    """
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run(sizes: Sizes, shapes: tuple[tuple[str, int, int, int], ...] = SHAPES) -> list[Figure]:
    """Measure every augmentation at CIFAR and ImageNet size, in a child process with :data:`MALLOC_ENV`.

    Args:
        sizes: how long each sample measures, and the repetitions.
        shapes: (name, batch, image side, classes) of each size.

    Returns:
        list[Figure]: one figure per augmentation and size (ms per batch; no targets).
    """
    # spawn: a fresh interpreter, whose malloc reads the environment when it starts
    with environment(MALLOC_ENV), multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_measure_all, (shapes, sizes.augment_seconds, sizes.repeats, torch.get_num_threads()))
