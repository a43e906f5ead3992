"""The in-memory base DataModule: every split is one uint8 tensor ``(N, C, H, W)`` held in memory.

The training batches are augmented and normalised as whole batches on the training device
(``on_after_batch_transfer``), so the loop has no per-image work. The official test split stays the test split;
the validation split is carved from the training data with its own seed (``val_size``, ``split_seed``) and is
never the test set. Subclasses say how a split is read (``load_split``) and what the model sees (``declared_inputs``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, DataError
from .arrays import ImageArrays, class_diff
from .augment import AugmentConfig
from .batched import BatchedDataModule
from .checks import check_bool, check_on_device, check_path, check_val_size, check_whole, size_pair
from .folders import fit_image
from .loader import TensorBatches
from .normalization import normalization

log = logging.getLogger(__name__)


class InMemoryDataModule(BatchedDataModule):
    """Base of the DataModules whose splits are held in memory, each as one uint8 tensor.

    Subclasses implement :meth:`load_split` (``train`` or ``test``), set ``name`` and, where they know it,
    override :meth:`declared_inputs`. Every argument is checked here, before any file is read.

    Args:
        data_dir: where the dataset files are (``paths.data_dir``: ``IMGBENCH_DATA_DIR`` or ``./data``).
        batch_size: training images per step, all processes together (see :class:`BatchedDataModule`).
        eval_batch_size: evaluation images per step, all processes together (default: ``batch_size``).
        val_size: validation images carved from the training split (an int, or a fraction < 1; 0 = none).
        split_seed: the seed of that carve (kept apart from ``seed`` so every run validates on the same images).
        train_size: use only this many training images (after the carve; for quick runs and scaling studies): a
            random subset drawn with ``split_seed``, in stored order (the first images of a class-sorted image folder
            would be one or two classes).
        augment: the batched training augmentation (see :class:`AugmentConfig`).
        normalize: ``auto`` (pretrained weights' statistics, else ``dataset``), ``dataset`` (the training images'
            mean/std), ``unit``, ``imagenet`` or ``none``.
        crop_size: train on random crops of this size (``[h, w]`` or one int) and evaluate on the centre crop
            (AlexNet: 224 crops of 256 images); the model sees this size. null: whole images.
        eval_views: ``one``, ``flip`` or ``ten_crop`` (see :class:`BatchedDataModule`).
        steps_per_epoch: an epoch of this many batches from an endless shuffled stream (Keras recipes).
        drop_last: drop the last incomplete training batch.
        download: fetch the official files through torchvision where a network exists.
        on_device: keep the whole dataset on the accelerator (``auto``: on GPUs), like the fastest trainers.
        seed: the run seed: the shuffling and the batched augmentation follow it.

    Raises:
        ConfigError: an argument that cannot work (a one-line message naming ``data.<key>``).
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
        normalize: str = "auto",
        crop_size: int | list[int] | tuple[int, int] | None = None,
        eval_views: str = "one",
        steps_per_epoch: int | None = None,
        drop_last: bool = False,
        download: bool = False,
        on_device: str | bool = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, augment, normalize, eval_views, seed)
        check_path("data_dir", data_dir)
        check_val_size(val_size)
        check_whole("split_seed", split_seed)
        check_whole("train_size", train_size, 1, optional=True)
        check_whole("steps_per_epoch", steps_per_epoch, 1, optional=True)
        check_bool("drop_last", drop_last)
        check_bool("download", download)
        check_on_device(on_device)
        self.data_dir = Path(data_dir).expanduser()
        self.val_size = val_size
        self.split_seed = split_seed
        self.train_size = train_size
        self.crop_size = size_pair("crop_size", crop_size)
        if eval_views == "ten_crop" and self.crop_size is None:
            raise ConfigError("data.eval_views=ten_crop needs data.crop_size (e.g. 224 for 256-pixel images)")
        self.steps_per_epoch = steps_per_epoch
        self.drop_last = drop_last
        self.download = download
        self.on_device = on_device
        self.splits: dict[str, ImageArrays] = {}

    def loaded(self) -> bool:
        """Whether the splits are in memory."""
        return bool(self.splits)

    # ------------------------------------------------------------------ what subclasses provide

    def load_split(self, split: str) -> ImageArrays:
        """Read one split (subclasses implement this).

        Args:
            split: ``train`` or ``test``.

        Returns:
            The split as uint8 tensors.
        """
        raise NotImplementedError

    def declared_inputs(self) -> dict[str, Any]:
        """What the model will see, known from the constructor's arguments alone: no file is read.

        Returns:
            ``{"num_classes": int | None, "in_channels": int | None, "image_size": (h, w) | None}``, None where
            only the data can tell (this base knows only the crop: ``image_size`` is ``crop_size`` when that is set,
            as the model sees the crop; subclasses that know their data say more).
        """
        return self._declared(num_classes=None, in_channels=None, image_size=None)

    def _declared(self, num_classes: int | None, in_channels: int | None, image_size: tuple | None) -> dict[str, Any]:
        """The :meth:`declared_inputs` dictionary, with the crop in place of ``image_size`` when cropping."""
        size = self.crop_size or image_size
        return {"num_classes": num_classes, "in_channels": in_channels, "image_size": tuple(size) if size else None}

    # ------------------------------------------------------------------ shape of the data

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of what the model sees (the crop size when cropping; loads the data)."""
        if self.restored is not None and not self.splits:
            return tuple(self.restored["image_shape"])
        self._require_setup()
        c, h, w = self.splits["train"].images.shape[1:]
        return (c, *self.crop_size) if self.crop_size else (c, h, w)

    @property
    def stored_size(self) -> tuple[int, int]:
        """(height, width) of the stored images, before the evaluation crop (loads the data)."""
        if self.restored is not None and not self.splits:
            return tuple(self.restored.get("stored_size") or self.restored["image_shape"][1:])
        self._require_setup()
        return tuple(self.splits["train"].images.shape[2:])

    def class_counts(self) -> torch.Tensor:
        """Training images per class (loads the data)."""
        self._require_setup()
        return torch.bincount(self.splits["train"].labels.cpu(), minlength=len(self.classes))

    def prepare_image(self, image: torch.Tensor) -> torch.Tensor:
        """Stretch one image to the stored size (antialiased), as image folders are resized; see the base class.

        Args:
            image: uint8 ``(C, H, W)``.

        Returns:
            uint8 ``(C, *stored_size)``.
        """
        return fit_image(image, self.stored_size)

    @property
    def split_sizes(self) -> dict[str, int]:
        """Images per loaded split (empty before the data is loaded)."""
        return {k: len(v) for k, v in self.splits.items()}

    def split_images(self, split: str, index: torch.Tensor) -> torch.Tensor:
        """Some images of a split, as stored.

        Args:
            split: ``train``, ``val`` or ``test``.
            index: their positions in the split.

        Returns:
            uint8 images ``(len(index), C, H, W)``, on the CPU.
        """
        self._require_setup()
        images = self.splits[split].images
        return images[index.to(images.device)].cpu()

    # ------------------------------------------------------------------ loading and splitting

    def setup(self, stage: str | None = None) -> None:
        """Load the splits (once, whatever the ``stage``), seed this process's batch transform, move the data.

        Args:
            stage: Lightning's stage (``fit``, ``test``, ...); ignored.

        Raises:
            DataError: the data is missing or inconsistent.
            ConfigError: a setting does not fit the data (``val_size``, ``train_size``, ``crop_size``).
        """
        if not self.splits:
            self._load()
        self._seed_transform()
        self._place_on_device()

    def _load(self) -> None:
        train = self.load_split("train")
        test = self.load_split("test")
        if test.classes != train.classes:
            raise DataError(
                f"{self.name}: the train and test splits have different classes "
                f"({len(train.classes)} vs {len(test.classes)}: {class_diff(train.classes, test.classes)}); "
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
            keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.split_seed))
            keep = keep[: self.train_size].sort().values
            train = ImageArrays(train.images[keep], train.labels[keep], train.classes)
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
        """Read a validation split of the dataset's own (subclasses that have one override this).

        Returns:
            The split, or None (the default): ``val_size`` images are then carved from the training split.
        """
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
        return normalization(self.normalize, train_images)

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
            group=self.train_group if train else 1,
        )

    def train_dataloader(self) -> TensorBatches:
        """Shuffled training batches of this process (loads the data if needed)."""
        return self._loader("train", train=True)

    def val_dataloader(self) -> TensorBatches | list:
        """Validation batches of this process, or no loader without a validation split."""
        return self._loader("val", train=False) if "val" in self.splits else []

    def test_dataloader(self) -> TensorBatches:
        """Test batches of this process, in the split's order."""
        return self._loader("test", train=False)

    def predict_dataloader(self) -> TensorBatches:
        """The test batches (predictions are made on the test split)."""
        return self.test_dataloader()
