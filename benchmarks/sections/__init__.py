"""The benchmark sections, one module each, in the order ``python -m benchmarks`` runs and reports them.

Each section is a function ``run(sizes) -> list[Figure]`` (side-by-side ratios, see benchmarks/common.py):
overhead (the framework against a plain loop), datapath (batched against per-image data loading, and end to end
against a Lightning template project), augmentation (each augmentation of the batched data path against
normalising alone, per batch at CIFAR and ImageNet size), retrieval (the retrieval metrics against a direct
implementation), precision (bf16 and channels_last against fp32 NCHW), scaling (epoch time against dataset
and batch size), streaming (imgbench.prepare, the streaming loader against ImageFolder + DataLoader and against
decoding alone, and a training run's memory on N and 10N images, on a generated ImageNet-like folder) and recipe
(one cifar10_fast run). What several sections use is in :mod:`.shared`.
"""

from __future__ import annotations

from collections.abc import Callable

from ..common import Figure
from . import augmentation, datapath, overhead, precision, recipe, retrieval, scaling, streaming
from .shared import Sizes

__all__ = ["SECTIONS", "Sizes"]

SECTIONS: dict[str, Callable[[Sizes], list[Figure]]] = {
    "overhead": overhead.run,
    "datapath": datapath.run,
    "augmentation": augmentation.run,
    "retrieval": retrieval.run,
    "precision": precision.run,
    "scaling": scaling.run,
    "streaming": streaming.run,
    "recipe": recipe.run,
}
