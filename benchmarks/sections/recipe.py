"""Section ``recipe``: no comparison, one run.

``experiment=cifar10_fast data=cifar10_jpeg`` as a user runs it (all the cores), with the test accuracy it
reaches and the minutes it takes on this machine.
"""

from __future__ import annotations

import os
import time

import torch

from ..common import Figure, compose, load
from .shared import Sizes


def run(sizes: Sizes) -> list[Figure]:
    """Run ``experiment=cifar10_fast data=cifar10_jpeg`` as a user runs it: test accuracy and training minutes here.

    Args:
        sizes: the epochs and the training images (None: all) of the run.

    Returns:
        list[Figure]: one figure, the run's training seconds on both sides, its accuracy and settings in extras.
    """
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
