"""LightningDataModules for datasets that fit in memory.

Every split is one uint8 tensor ``(N, C, H, W)``. The training batches are augmented and normalised as
whole batches on the training device (``on_after_batch_transfer``), so the loop has no per-image work.
The official test split stays the test split; the validation split is carved from the training data with
its own seed (``val_size``, ``split_seed``) and is never the test set.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ..errors import ConfigError, DataError
from .augment import EVAL_VIEWS, AugmentConfig, BatchTransform
from .loader import TensorBatches
from .sources import (
    FolderStats,
    ImageArrays,
    extract_archive,
    find_split_root,
    folder_fingerprint,
    is_archive,
    load_cifar,
    load_image_folder,
    load_npz,
    load_torchvision_mnist,
)

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def channel_stats(images: torch.Tensor, chunk: int = 8192) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images, in [0, 1] units."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk].to("cpu", torch.float64)
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return (mean / 255).tolist(), (std / 255).tolist()


class InMemoryDataModule(L.LightningDataModule):
    """Base class: subclasses implement :meth:`load_split` (``train`` or ``test``) and set ``name``.

    Args:
        data_dir: where the dataset files are (``paths.data_dir``: ``IMGBENCH_DATA_DIR`` or ``./data``).
        batch_size: training images per optimizer step, all processes together: under DDP each of ``N`` processes
            takes ``batch_size / N`` of them (it must divide), so a recipe means the same on any number of GPUs.
        eval_batch_size: images per validation/test step, all processes together (default: ``batch_size``; each
            process takes ``ceil(eval_batch_size / N)``).
        val_size: validation images carved from the training split (an int, or a fraction < 1; 0 = none).
        split_seed: the seed of that carve (kept apart from ``seed`` so every run validates on the same images).
        train_size: use only this many training images (after the carve; for quick runs and scaling studies).
        augment: training-time batched augmentation (see :class:`AugmentConfig`).
        normalize: ``dataset`` (mean/std of the training images), ``unit`` (x / 255), ``imagenet``,
            or ``none`` (pixels 0..255 as float).
        crop_size: train on random crops of this size (``[h, w]`` or one int) and evaluate on the centre crop
            (AlexNet: 224 crops of 256 images); the model sees this size. null: whole images.
        eval_views: what validation and testing show the model: ``one`` (the centre crop), ``flip`` (it and
            its mirror image) or ``ten_crop`` (corners, centre and their mirrors); the model averages the
            softmax over the views.
        steps_per_epoch: an epoch of this many batches from an endless shuffled stream (Keras recipes).
        drop_last: drop the last incomplete training batch.
        download: fetch the official files through torchvision where a network exists.
        on_device: keep the whole dataset on the accelerator (``auto``: on GPUs), like the fastest trainers.
        seed: the run seed: shuffling and augmentation derive from it (augmentation draws ``seed + 1000 * rank``
            under DDP, so every process augments differently).
    """

    name = "in_memory"

    def __init__(
        self,
        data_dir: str | os.PathLike = "data",
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        val_size: int | float = 5000,
        split_seed: int = 0,
        train_size: int | None = None,
        augment: dict[str, Any] | AugmentConfig | None = None,
        normalize: str = "dataset",
        crop_size: int | list[int] | tuple[int, int] | None = None,
        eval_views: str = "one",
        steps_per_epoch: int | None = None,
        drop_last: bool = False,
        download: bool = False,
        on_device: str | bool = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        if normalize not in ("dataset", "unit", "imagenet", "none"):
            raise ConfigError(f"data.normalize must be dataset, unit, imagenet or none, got '{normalize}'")
        self.data_dir = Path(data_dir).expanduser()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.val_size = val_size
        self.split_seed = split_seed
        self.train_size = train_size
        try:
            self.augment = augment if isinstance(augment, AugmentConfig) else AugmentConfig(**(augment or {}))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"data.augment: {e}") from None
        self.normalize = normalize
        self.crop_size = (crop_size, crop_size) if isinstance(crop_size, int) else (tuple(crop_size) if crop_size else None)
        if eval_views not in EVAL_VIEWS:
            raise ConfigError(f"data.eval_views must be one of {', '.join(EVAL_VIEWS)}, got '{eval_views}'")
        if eval_views == "ten_crop" and self.crop_size is None:
            raise ConfigError("data.eval_views=ten_crop needs data.crop_size (e.g. 224 for 256-pixel images)")
        self.eval_views = eval_views
        self.steps_per_epoch = steps_per_epoch
        self.drop_last = drop_last
        self.download = download
        self.on_device = on_device
        self.seed = seed
        self.splits: dict[str, ImageArrays] = {}
        self.classes: list[str] = []
        self.mean: list[float] = []
        self.std: list[float] = []
        self.transform: BatchTransform | None = None
        self._transform_rank: int | None = None  # the rank the transform's generator was seeded for
        self._transform_state: dict | None = None

    # ------------------------------------------------------------------ what subclasses provide

    def load_split(self, split: str) -> ImageArrays:
        """Return the ``train`` or ``test`` split as uint8 tensors."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shape of the data

    @property
    def num_classes(self) -> int:
        self._require_setup()
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of what the model sees (the crop size when cropping)."""
        self._require_setup()
        c, h, w = self.splits["train"].images.shape[1:]
        return (c, *self.crop_size) if self.crop_size else (c, h, w)

    @property
    def split_sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.splits.items()}

    def _require_setup(self) -> None:
        if not self.splits:
            self.setup()

    # ------------------------------------------------------------------ loading and splitting

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self._load()
        self._seed_transform()
        self._place_on_device()

    def _seed_transform(self) -> None:
        """The batch transform of this process: seeded with ``seed + 1000 * rank``. ``setup`` may first run before a
        Trainer is attached (rank unknown, 0); Lightning's own ``setup`` call then re-seeds it for the real rank."""
        rank = self._rank()
        if self.transform is not None and self._transform_rank == rank:
            return
        self.transform = BatchTransform(
            self.mean,
            self.std,
            self.augment,
            seed=self.seed + 1000 * rank,
            crop_size=self.crop_size,
            views=self.eval_views,
        )
        self._transform_rank = rank
        if self._transform_state:
            self.transform.load_state_dict(self._transform_state)

    def _load(self) -> None:
        train = self.load_split("train")
        test = self.load_split("test")
        if test.classes != train.classes:
            raise DataError(
                f"{self.name}: the train and test splits have different classes "
                f"({len(train.classes)} vs {len(test.classes)}: {_class_diff(train.classes, test.classes)}); "
                f"give both splits the same class folders"
            )
        if test.images.shape[1:] != train.images.shape[1:]:
            raise DataError(
                f"{self.name}: train images are {tuple(train.images.shape[1:])} but test images are "
                f"{tuple(test.images.shape[1:])}; set data.image_size to bring them to one size"
            )
        n_val = self._val_count(len(train))
        val = self.load_val_split()
        if val is None and n_val:
            perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.split_seed))
            val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
            val = ImageArrays(train.images[val_idx], train.labels[val_idx], train.classes)
            train = ImageArrays(train.images[train_idx], train.labels[train_idx], train.classes)
        if self.train_size is not None:
            if not 0 < self.train_size <= len(train):
                raise ConfigError(f"data.train_size must be in 1..{len(train)}, got {self.train_size}")
            train = ImageArrays(train.images[: self.train_size], train.labels[: self.train_size], train.classes)
        self.splits = {"train": train, "test": test}
        if val is not None:
            self.splits["val"] = val
        self.classes = train.classes
        if self.crop_size and (self.crop_size[0] > train.images.shape[2] or self.crop_size[1] > train.images.shape[3]):
            raise ConfigError(
                f"data.crop_size {list(self.crop_size)} is larger than the images ({train.images.shape[2]}x"
                f"{train.images.shape[3]}); use a smaller crop or larger data.image_size"
            )
        self.mean, self.std = self._normalization(train.images)
        log.info("%s: %s, image %s, %d classes", self.name, self.split_sizes, self.image_shape, self.num_classes)

    def load_val_split(self) -> ImageArrays | None:
        """A dataset with its own validation split returns it here; the default carves one from train."""
        return None

    def _val_count(self, n_train: int) -> int:
        v = self.val_size
        if isinstance(v, float) and 0 < v < 1:
            v = round(v * n_train)
        if not isinstance(v, int | float) or v < 0 or int(v) != v or v >= n_train:
            raise ConfigError(
                f"data.val_size must be an image count in 0..{n_train - 1} or a fraction in (0, 1), got {self.val_size}"
            )
        return int(v)

    def _normalization(self, train_images: torch.Tensor) -> tuple[list[float], list[float]]:
        c = train_images.shape[1]
        if self.normalize == "dataset":
            return channel_stats(train_images)
        if self.normalize == "imagenet":
            if c != 3:
                raise ConfigError("data.normalize=imagenet needs RGB images; use dataset or unit")
            return list(IMAGENET_MEAN), list(IMAGENET_STD)
        if self.normalize == "unit":
            return [0.0] * c, [1.0] * c
        return [0.0] * c, [1.0 / 255] * c  # none: keep 0..255

    def _rank(self) -> int:
        trainer = self._trainer_or_none()
        return trainer.global_rank if trainer is not None else 0

    def _world(self) -> tuple[int, int]:
        trainer = self._trainer_or_none()
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _trainer_or_none(self):
        return getattr(self, "trainer", None)

    def _place_on_device(self) -> None:
        trainer = self._trainer_or_none()
        if trainer is None:
            return
        device = trainer.strategy.root_device
        want = device.type != "cpu" if self.on_device == "auto" else bool(self.on_device)
        if want and device.type != "cpu":
            for split in self.splits.values():
                split.images = split.images.to(device)
                split.labels = split.labels.to(device)

    # ------------------------------------------------------------------ loaders

    def per_process_batch_size(self, world_size: int) -> int:
        """Training images per step of each of ``world_size`` processes (``batch_size`` is the global batch)."""
        if self.batch_size % world_size:
            lower = self.batch_size // world_size * world_size
            choices = " or ".join(str(b) for b in (lower, lower + world_size) if b > 0)
            raise ConfigError(
                f"data.batch_size={self.batch_size} is the global batch and does not split over {world_size} "
                f"processes; use a multiple of {world_size} (e.g. data.batch_size={choices})"
            )
        return self.batch_size // world_size

    def _loader(self, split: str, train: bool) -> TensorBatches:
        self._require_setup()
        data = self.splits[split]
        rank, world = self._world()
        if train and self.drop_last and len(data.labels) < self.batch_size and not self.steps_per_epoch:
            raise ConfigError(
                f"data.drop_last=true with data.batch_size={self.batch_size} leaves no training batch from "
                f"{len(data.labels)} images; lower data.batch_size or set data.drop_last=false"
            )
        return TensorBatches(
            data.images,
            data.labels,
            batch_size=self.per_process_batch_size(world) if train else -(-self.eval_batch_size // world),
            shuffle=train,
            drop_last=self.drop_last if train else False,
            seed=self.seed,
            steps_per_epoch=self.steps_per_epoch if train else None,
            rank=rank,
            world_size=world,
            epoch_fn=self._current_epoch if train else None,
            position_fn=self._batches_done if train else None,
        )

    def _current_epoch(self) -> int:
        trainer = self._trainer_or_none()
        return trainer.current_epoch if trainer is not None else 0

    def _batches_done(self) -> int:
        """Training batches finished in the current epoch (what a checkpoint saved now has seen)."""
        trainer = self._trainer_or_none()
        return trainer.fit_loop.epoch_loop.batch_progress.current.processed if trainer is not None else 0

    def train_dataloader(self) -> TensorBatches:
        return self._loader("train", train=True)

    def val_dataloader(self) -> TensorBatches | list:
        return self._loader("val", train=False) if "val" in self.splits else []

    def test_dataloader(self) -> TensorBatches:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> TensorBatches:
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment (training only) and normalise the uint8 batch on its device."""
        x, y = batch
        trainer = self._trainer_or_none()
        training = bool(trainer is not None and trainer.training)
        return self.transform(x, train=training), y

    # ------------------------------------------------------------------ checkpoint state

    def state_dict(self) -> dict[str, Any]:
        """Called on every process when a checkpoint is saved (Lightning's rule): under DDP the augmentation
        generators of all ranks are gathered into ``augment_rng_ranks``, so that each rank resumes its own."""
        state: dict[str, Any] = {"name": self.name, "classes": self.classes, "mean": self.mean, "std": self.std}
        if self.splits:
            state["image_shape"] = list(self.image_shape)
        if self.transform is not None:
            rng = self.transform.state_dict()
            rank, world = self._world()
            if world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
                ranks: list[Any] = [None] * world
                torch.distributed.all_gather_object(ranks, rng)
                state["augment_rng_ranks"] = ranks
            else:
                state["augment_rng"] = rng
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        rank, world = self._world()
        ranks = state.get("augment_rng_ranks")
        saved_world = len(ranks) if ranks is not None else 1
        if saved_world == world:
            self._transform_state = ranks[rank] if ranks is not None else state.get("augment_rng")
        else:  # a run resumed with another number of processes cannot continue every rank's draws
            log.warning(
                "the checkpoint comes from %d process(es), this run has %d: augmentation starts again from the seed",
                saved_world,
                world,
            )
            self._transform_state = None
        if self.transform is not None:
            self.transform = None  # re-seeded for this rank, then given the saved state
            self._seed_transform()


def _class_diff(a: list[str], b: list[str]) -> str:
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    parts = []
    if only_a:
        parts.append(f"only in train: {', '.join(only_a[:5])}")
    if only_b:
        parts.append(f"only in test: {', '.join(only_b[:5])}")
    return "; ".join(parts) or "same names, different order"


# ---------------------------------------------------------------------------- built-in datasets


class _BuiltinDataModule(InMemoryDataModule):
    """A dataset found as ``<data_dir>/<name>-<split>.npz`` or in its official format under ``data_dir``."""

    official_hint = ""

    def load_split(self, split: str) -> ImageArrays:
        if not self.data_dir.is_dir() and not self.download:
            raise DataError(
                f"data directory {self.data_dir} does not exist; set IMGBENCH_DATA_DIR or paths.data_dir to the folder "
                f"that holds {self.name}, or add data.download=true on a machine with internet"
            )
        npz = self.data_dir / f"{self.name}-{split}.npz"
        searched = [str(npz)]
        if npz.is_file():
            return load_npz(npz)
        found, where = self.load_official(split == "train", download=False)
        searched.append(where)
        if found is not None:
            return found
        if self.download:
            found, _ = self.load_official(split == "train", download=True)
            if found is not None:
                return found
        extra = f"; {self.official_hint}" if self.official_hint else ""
        raise DataError(
            f"{self.name} {split} data not found (looked for {' and '.join(searched)}); set IMGBENCH_DATA_DIR or "
            f"paths.data_dir to the folder that holds it, or add data.download=true on a machine with internet{extra}"
        )

    def load_official(self, train: bool, download: bool) -> tuple[ImageArrays | None, str]:
        raise NotImplementedError


class MNISTDataModule(_BuiltinDataModule):
    """MNIST: 60,000 training and 10,000 test digits, 28x28 gray, 10 classes."""

    name = "mnist"
    _folder = "MNIST"

    def load_official(self, train: bool, download: bool) -> tuple[ImageArrays | None, str]:
        where = str(self.data_dir / self._folder / "raw")
        return load_torchvision_mnist(self.name, self.data_dir, train, download), where


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST: 60,000 training and 10,000 test clothing images, 28x28 gray, 10 classes."""

    name = "fashion_mnist"
    _folder = "FashionMNIST"


class CIFAR10DataModule(_BuiltinDataModule):
    """CIFAR-10: 50,000 training and 10,000 test images, 32x32 RGB, 10 classes (official python pickles)."""

    name = "cifar10"
    official_hint = "a lossy JPEG stand-in is available offline as data=cifar10_jpeg"

    def load_official(self, train: bool, download: bool) -> tuple[ImageArrays | None, str]:
        from .sources import CIFAR_LAYOUT, download_cifar

        where = str(self.data_dir / CIFAR_LAYOUT[self.name][0])
        if download and not Path(where).is_dir():
            download_cifar(self.name, self.data_dir)
        return load_cifar(self.name, self.data_dir, train, **self._cifar_kwargs()), where

    def _cifar_kwargs(self) -> dict[str, Any]:
        return {}


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100: 50,000 training and 10,000 test images, 32x32 RGB, 100 fine (or 20 coarse) classes."""

    name = "cifar100"
    official_hint = ""

    def __init__(self, *args: Any, label_type: str = "fine", **kwargs: Any) -> None:
        if label_type not in ("fine", "coarse"):
            raise ConfigError(f"data.label_type must be fine or coarse, got '{label_type}'")
        self.label_type = label_type
        super().__init__(*args, **kwargs)

    def _cifar_kwargs(self) -> dict[str, Any]:
        return {"label_type": self.label_type}


# ---------------------------------------------------------------------------- image folders


class ImageFolderDataModule(InMemoryDataModule):
    """Images in ``<root>/train/<class>/*`` and ``<root>/test/<class>/*`` (or ``val/`` as the test split).

    ``root`` may be a folder or an archive (.tar.gz, .tgz, .tar, .zip), extracted once into ``cache_dir``.
    When both ``val/`` and ``test/`` exist, ``val/`` is the validation split. Decoded splits are cached in
    ``cache_dir`` as tensors, keyed by the files' names, sizes and times, so later runs start at once.

    Args:
        root: the folder or archive (relative paths are taken from ``data_dir``).
        name: the dataset's name in logs and reports.
        channels: 3 (RGB) or 1 (gray); other image modes are converted.
        image_size: ``[H, W]`` (or one int) to bring every image to; required when sizes differ.
        resize: how: ``stretch`` to exactly that size, or ``center_crop``: scale the shorter side to it and
            cut the centre (AlexNet's 256x256 images).
        skip_corrupt: skip unreadable files (counted in the log) instead of stopping.
        cache_dir: where archives are extracted and decoded tensors cached.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        name: str = "imagefolder",
        channels: int = 3,
        image_size: list[int] | tuple[int, int] | int | None = None,
        resize: str = "stretch",
        skip_corrupt: bool = False,
        cache_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if channels not in (1, 3):
            raise ConfigError(f"data.channels must be 1 or 3, got {channels}")
        self.name = name
        self.root = Path(root).expanduser()
        if not self.root.is_absolute():
            self.root = self.data_dir / self.root
        self.channels = channels
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size = tuple(image_size) if image_size is not None else None
        if resize not in ("stretch", "center_crop"):
            raise ConfigError(f"data.resize must be stretch or center_crop, got '{resize}'")
        self.resize = resize
        self.skip_corrupt = skip_corrupt
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else self.data_dir / ".cache"
        self.folder_stats: dict[str, FolderStats] = {}
        self._folder: Path | None = None

    def _split_root(self) -> Path:
        if self._folder is None:
            if not self.root.exists():
                raise DataError(
                    f"{self.name}: {self.root} does not exist; set data.root (or IMGBENCH_DATA_DIR) to the image "
                    f"folder or archive"
                )
            folder = extract_archive(self.root, self.cache_dir) if is_archive(self.root) else self.root
            self._folder = find_split_root(folder)
            if not (self._folder / "train").is_dir():
                raise DataError(f"{self.name}: no train/ folder under {folder}; expected <root>/train/<class>/<images>")
            if not any((self._folder / s).is_dir() for s in ("test", "val")):
                raise DataError(f"{self.name}: no test/ or val/ folder under {self._folder}; add the test split")
        return self._folder

    def _split_dir(self, split: str) -> Path:
        root = self._split_root()
        if split == "test":
            return root / "test" if (root / "test").is_dir() else root / "val"
        return root / split

    def load_split(self, split: str) -> ImageArrays:
        return self._load_folder(self._split_dir(split), split)

    def load_val_split(self) -> ImageArrays | None:
        root = self._split_root()
        if (root / "test").is_dir() and (root / "val").is_dir():
            return self._load_folder(root / "val", "val")
        return None

    def _load_folder(self, split_dir: Path, split: str) -> ImageArrays:
        key = folder_fingerprint(split_dir, self.channels, self.image_size, self.resize, self.skip_corrupt)
        cache = self.cache_dir / "decoded" / f"{self.name}-{split}-{key}.pt"
        if cache.is_file():
            try:
                d = torch.load(cache, weights_only=True)
                return ImageArrays(d["images"], d["labels"], list(d["classes"]))
            except Exception:  # a damaged cache is rebuilt, never trusted
                log.warning("ignoring unreadable cache %s", cache)
        arrays, stats = load_image_folder(split_dir, self.channels, self.image_size, self.skip_corrupt, self.resize)
        self.folder_stats[split] = stats
        if stats.skipped:
            log.warning("%s %s: skipped %d unreadable files", self.name, split, len(stats.skipped))
        if stats.converted or stats.resized:
            log.info("%s %s: converted %d, resized %d images", self.name, split, stats.converted, stats.resized)
        from ..io import atomic_open

        with atomic_open(cache, "wb") as f:
            torch.save({"images": arrays.images, "labels": arrays.labels, "classes": arrays.classes}, f)
        return arrays
