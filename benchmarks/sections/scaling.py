"""Section ``scaling``: how a keras_cnn / MNIST epoch through train.py's path grows with the data.

It measures how the epoch grows with the dataset size (seconds per 1,000 images at each size; linear is
constant) and how its throughput changes with the batch size.
"""

from __future__ import annotations

import statistics

from ..common import Figure, load
from .shared import Sizes, channels_last_choice, train_seconds


def run(sizes: Sizes) -> list[Figure]:
    """Time an epoch at each dataset size and each batch size, the sizes alternated in order between repetitions.

    Args:
        sizes: the dataset sizes, the batch sizes and their images, and the repetitions.

    Returns:
        list[Figure]: one figure: the seconds per image at the largest size relative to the smallest (1.0 is
        linear), with every sample in its extras.
    """
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
    train_seconds(["data.train_size=2000", "data.val_size=0", *fixed])  # warm-up
    for i in range(sizes.repeats):
        order = list(sizes.scaling_sizes) if i % 2 == 0 else list(reversed(sizes.scaling_sizes))
        for n in order:
            per_size[n].append(train_seconds([f"data.train_size={n}", "data.val_size=0", *fixed]))
        border = list(sizes.scaling_batches) if i % 2 == 0 else list(reversed(sizes.scaling_batches))
        for b in border:
            per_batch[b].append(
                train_seconds(
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
