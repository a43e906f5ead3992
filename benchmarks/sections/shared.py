"""What more than one section uses.

That is how much work each section does, the cached DataModules, one training epoch through train.py's path,
and the channels_last layout that ``auto`` picks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ..common import compose


@dataclass
class Sizes:
    """How much work each section does (``--quick`` shrinks everything)."""

    repeats: int = 3
    keras_images: int = 30000  # keras_cnn / MNIST epoch for the overhead figure
    lenet_batch4_images: int = 4000  # lenet5 / CIFAR-sized epoch at batch 4 (study D) for the overhead figure
    lenet_batch128_images: int = 30720  # ... and at batch 128 (240 steps)
    resnet_batches: int = 8  # resnet18 / CIFAR-sized batches of 32 for the overhead figure
    timm_batches: int = 64  # timm resnet18 / CIFAR-sized batches of 32 (its ImageNet stem: ~25x less work a batch)
    datapath_images: int = 20000  # per-image pipeline images per measurement
    augment_seconds: float = 1.0  # each augmentation sample repeats its batch for this long (at least 2 batches)
    e2e_images: int = 55000  # end-to-end epoch (the reported 55,000-image epoch)
    retrieval_queries: int = 10000
    retrieval_database: int = 50000
    retrieval_direct_queries: int = 300  # the direct implementation runs on this many queries, scaled per query
    precision_batch: int = 8
    scaling_sizes: tuple[int, ...] = (10000, 30000, 60000)
    scaling_batches: tuple[int, ...] = (64, 128, 256)
    scaling_batch_images: int = 10000
    streaming_images: int = 5000  # generated ImageNet-like training JPEGs (and a tenth as many validation ones)
    streaming_memory_images: int = 500  # N of the streaming memory figure: train.py on N and 10N training images
    recipe_epochs: int = 16  # experiment=cifar10_fast on cifar10_jpeg: the recipe's 16 epochs
    recipe_train_size: int | None = None  # None: all 50,000 training images

    @classmethod
    def quick(cls) -> Sizes:
        """The small sizes of ``--quick``: enough to check that every section runs.

        Returns:
            Sizes: the shrunken sizes.
        """
        return cls(
            repeats=3,
            keras_images=4000,
            lenet_batch4_images=800,
            lenet_batch128_images=4096,
            resnet_batches=2,
            timm_batches=4,
            datapath_images=3000,
            augment_seconds=0.1,
            e2e_images=4000,
            retrieval_queries=1000,
            retrieval_database=20000,
            retrieval_direct_queries=100,
            precision_batch=4,
            scaling_sizes=(2000, 6000, 12000),
            scaling_batches=(64, 128, 256),
            scaling_batch_images=4000,
            streaming_images=1000,
            streaming_memory_images=100,
            recipe_epochs=1,
            recipe_train_size=2048,
        )


def train_seconds(overrides: list[str]) -> float:
    """Time one training epoch through train.py's path.

    The path is the DataModule, LightningModule, Trainer, TensorBoard logging and the default callbacks.

    Args:
        overrides: Hydra overrides of the train config (the epoch count, test and logger are set here).

    Returns:
        float: the module's own epoch time in seconds (first batch start to last batch end).
    """
    from imgbench.run import train

    cfg = compose([*overrides, "trainer.max_epochs=1", "test=false", "logger=tensorboard"])
    return float(train(cfg)["train_seconds"])


@functools.lru_cache(maxsize=8)
def datamodule(overrides: tuple[str, ...]):
    """The DataModule that train.py builds for these overrides, built once per overrides and then shared.

    Args:
        overrides: Hydra overrides of the train config (a tuple, so that it can be the cache key).

    Returns:
        The set-up DataModule.
    """
    from imgbench.build import build_datamodule

    return build_datamodule(compose(list(overrides)))


def channels_last_choice(overrides: list[str]) -> bool:
    """What ``module.channels_last=auto`` picks for this config on this machine.

    It is decided once, then passed to both sides explicitly so that they run the same layout.

    Args:
        overrides: Hydra overrides of the train config.

    Returns:
        bool: whether auto chooses the channels_last layout.
    """
    from imgbench.build import build_net
    from imgbench.hardware import resolve_channels_last

    cfg = compose(list(overrides))
    dm = datamodule(tuple(overrides))
    net = build_net(cfg, dm)
    return resolve_channels_last(cfg.module.channels_last, net, dm.image_shape, int(cfg.data.batch_size), "cpu")
