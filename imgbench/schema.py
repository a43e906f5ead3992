"""Structured-config schemas (dataclasses in Hydra's ConfigStore): the keys and types Hydra checks while it composes.

A misspelt key or a value of the wrong type (``seed=abc``, ``data.batch_size=many``) then fails during composition,
where :mod:`imgbench.cli` turns Hydra's exception into one line. What a schema cannot say (ranges, choices that
depend on other values) is checked by :mod:`imgbench.config`.

The schemas are config nodes without a group, so they never show up as options in ``python train.py --help``:
``conf/train.yaml`` starts from ``imgbench_train``, the in-memory datasets from ``imgbench_in_memory_data``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from .data.augment import AugmentConfig


@dataclass
class SweepSchema:
    """``sweep.*``: re-running a sweep into its directory with ``skip_finished=true`` runs only what is missing."""

    skip_finished: bool = False


@dataclass
class ReportSchema:
    """``report.*``: the paper table (``<study>/<table>``) the report puts beside our numbers.

    ``stand_in``: this run's dataset stands in for the paper's (cifar10_jpeg for CIFAR-10): its numbers fill the
    paper's cells, marked as stand-in numbers; without it a stand-in run matches no cell.
    """

    reference: str | None = None
    stand_in: bool = False


@dataclass
class TrainSchema:
    """The top level of ``conf/train.yaml``: the groups (typed by their own files) and the run's own settings."""

    task_name: str = "train"
    tags: list[str] = field(default_factory=list)
    seed: int = 42
    train: bool = True
    test: bool = True
    test_ckpt: str = "last"
    test_epochs: list[int] = field(default_factory=list)  # also test after these epochs (imgbench.epoch_tests)
    ckpt_path: str | None = None
    resume: str | None = None
    tune: str | None = None  # lr_find | batch_size: Lightning's finder, its plot and suggestion; nothing trained
    monitor: str = "val/acc"
    monitor_mode: str = "max"
    sweep: SweepSchema = field(default_factory=SweepSchema)
    optimized_metric: str | None = "test/acc"
    report: ReportSchema = field(default_factory=ReportSchema)
    recipe: Any = None  # a recipe's numbers in one place (experiment=cifar10_fast), used by interpolation
    model: Any = None
    module: Any = None
    data: Any = None
    optimizer: Any = None
    scheduler: Any = None
    trainer: Any = None
    callbacks: Any = None
    logger: Any = None
    paths: Any = None


@dataclass
class InMemoryDataSchema:
    """Options shared by every in-memory dataset (imgbench.data.InMemoryDataModule)."""

    _target_: str = "imgbench.data.InMemoryDataModule"
    data_dir: str = "${paths.data_dir}"
    batch_size: int = 128
    eval_batch_size: int = 1000  # evaluation holds no gradients: bigger batches are faster
    val_size: Any = 5000  # images carved from the training split (a count, or a fraction < 1)
    split_seed: int = 0  # fixed, so every run validates on the same images whatever its seed
    train_size: int | None = None  # use only this many training images (quick runs, scaling studies)
    normalize: str = "auto"  # auto: a pretrained model's statistics, else dataset | dataset: the training images'
    # mean/std | unit: x / 255 | imagenet | none
    crop_size: Any = None  # train on random crops of this size, evaluate on the centre crop (null: whole images)
    eval_views: str = "one"  # one | flip: + mirror image | ten_crop: corners, centre, mirrors (softmax averaged)
    steps_per_epoch: int | None = None  # an epoch of this many batches (Keras steps_per_epoch); null: one pass
    drop_last: bool = False
    download: bool = False  # fetch the official files through torchvision (needs a network)
    on_device: Any = "auto"  # auto: keep the whole dataset on the GPU when training on one | true | false
    seed: int = "${seed}"  # type: ignore[assignment]  # shuffling and augmentation follow the run's seed
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # the DataModule's own dataclass


@dataclass
class CIFAR100DataSchema(InMemoryDataSchema):
    """CIFAR-100's extra option."""

    label_type: str = "fine"  # fine: 100 classes | coarse: 20 superclasses


@dataclass
class ImageFolderDataSchema(InMemoryDataSchema):
    """Image folders' extra options (imgbench.data.ImageFolderDataModule)."""

    root: str = MISSING  # a folder or an archive; relative paths are taken from data_dir
    name: str = "imagefolder"
    channels: int = 3  # 3: RGB | 1: gray; other image modes are converted
    image_size: Any = None  # [H, W] (or one int) to bring every image to; required when sizes differ
    resize: str = "stretch"  # stretch: to image_size | center_crop: shorter side to image_size, then the centre
    skip_corrupt: bool = False  # skip unreadable files (counted) instead of stopping
    cache_dir: str = "${paths.cache_dir}"


@dataclass
class StreamingDataSchema:
    """The streaming datasets' options (``data=streaming``, ``data=imagenet``): shards of ``imgbench.prepare``."""

    _target_: str = "imgbench.data.StreamingDataModule"
    root: str = MISSING  # the prepared dataset: a folder (relative to data_dir) or an s3:// or gs:// URI
    name: str | None = None  # null: the name imgbench.prepare gave it
    data_dir: str = "${paths.data_dir}"
    cache_dir: str = "${paths.cache_dir}"  # chunks of a remote dataset are cached here
    batch_size: int = 256
    eval_batch_size: int | None = None  # null: batch_size
    image_size: int = 224  # the square crop the model sees
    eval_resize: int = 256  # evaluation: shorter side to this, centre square, then the centre image_size crop
    train_crop: str = "random_resized"  # random_resized: Inception's crops | random: AlexNet's, of the square
    scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # random_resized: area range
    ratio: list[float] = field(default_factory=lambda: [0.75, 1.3333333333333333])  # random_resized: aspect range
    num_workers: Any = "auto"  # loader processes per training process; auto: the cores, shared
    decode: str = "workers"  # workers: decode_jpeg in loader workers | device: the training device decodes batches
    val_size: Any = 10000  # the last images of the (prepare-shuffled) training split; 0: none
    train_size: int | None = None  # train on only the first this many training images
    drop_last: bool = False
    normalize: str = "auto"  # auto: a pretrained model's, else dataset | dataset: prepare's | imagenet | unit | none
    eval_views: str = "one"  # one | flip | ten_crop (of the eval_resize square)
    seed: int = "${seed}"  # type: ignore[assignment]
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(flip=True))  # flip, lighting


SCHEMAS = {
    "imgbench_train": TrainSchema,
    "imgbench_in_memory_data": InMemoryDataSchema,
    "imgbench_cifar100_data": CIFAR100DataSchema,
    "imgbench_image_folder_data": ImageFolderDataSchema,
    "imgbench_streaming_data": StreamingDataSchema,
}


def register_schemas() -> None:
    """Put the schemas into Hydra's ConfigStore (needed before any config of conf/ is composed)."""
    store = ConfigStore.instance()
    for name, node in SCHEMAS.items():
        store.store(name=name, node=node)


register_schemas()
