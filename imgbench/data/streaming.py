"""The streaming DataModule: datasets beyond memory, read from LitData shards made by ``imgbench.prepare``.

Training streams the shards in LitData's shuffled order (:class:`~litdata.StreamingDataLoader`: local folders
or ``s3://``/``gs://`` URIs, a disjoint share per process, its position saved in checkpoints so that a resumed
run continues with the next batch). Loader workers decode each JPEG and crop it (:class:`ImageView`); the
batched device-side steps (flip, PCA lighting, normalisation, evaluation views) are the in-memory path's.

Evaluation reads its split by index in a fixed order (rank ``r`` of ``N`` takes images ``r, r + N, ...``, as
the in-memory path does): every image is evaluated exactly once, and predictions come back in the split's order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from litdata import StreamingDataLoader, StreamingDataset
from torch.utils.data import DataLoader, Dataset

from ..errors import ConfigError
from .augment import center_crop
from .batched import BatchedDataModule
from .checks import check_bool, check_path, check_val_size, check_whole
from .image_views import DECODERS, TRAIN_CROPS, EncodedBatch, EncodedView, ImageView, collate_encoded, crop
from .normalization import fixed_normalization
from .shards import ShardMeta, is_remote, read_meta

log = logging.getLogger(__name__)
logging.getLogger("litdata").setLevel(logging.WARNING)  # its per-dataset INFO lines (cache sizes) drown the run's log


class ShardStream(StreamingDataset):
    """A split's shards as LitData streams them, each image decoded and cropped in the worker.

    Args:
        input_dir: the split's folder or URI.
        view: what becomes of each image.
        cache_dir: where remote chunks are cached.
        kwargs: :class:`~litdata.StreamingDataset`'s (``shuffle``, ``drop_last``, ``seed``, ...).
    """

    def __init__(self, input_dir: str, view: ImageView, cache_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(input_dir, cache_dir=cache_dir, **kwargs)
        self.view = view

    def __getitem__(self, index: Any) -> Any:
        item = super().__getitem__(index)
        return self.view(item["image"], int(item["index"]), self.current_epoch), int(item["label"])


class ShardIndex(Dataset):
    """Images ``indices`` of a split, by position (evaluation: a fixed order, each image once).

    Args:
        shards: the split's shards (read by global index).
        indices: the positions this process evaluates.
        view: what becomes of each image.
    """

    def __init__(self, shards: StreamingDataset, indices: range, view: ImageView) -> None:
        self.shards, self.indices, self.view = shards, indices, view

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        index = self.indices[i]
        item = self.shards[index]
        return self.view(item["image"], index, 0), int(item["label"])


class ShardLoader(StreamingDataLoader):
    """LitData's loader, its epochs following the trainer's.

    Lightning does not restore a loader from a checkpoint taken as an epoch ended, so the loader's own epoch count
    would start again; and a resumed epoch must not leave LitData's restore flag set (see :meth:`__iter__`). The
    saved position is LitData's own: Lightning does not fetch ahead of a loader that has a length.

    Args:
        dataset: the training stream.
        epoch_fn: returns the trainer's epoch: each epoch's order follows it, whatever was restored.
        kwargs: :class:`~litdata.StreamingDataLoader`'s.
    """

    def __init__(self, dataset: ShardStream, epoch_fn: Any = None, **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self.epoch_fn = epoch_fn
        self._just_restored = False

    def __iter__(self) -> Iterator[Any]:
        # a generator: this runs at the first batch, once Lightning has set the epoch. LitData clears ``restore``
        # only when a resumed epoch is read to its end; Lightning stops at the epoch's length, so the next epoch
        # would "resume" again and yield nothing
        if self.restore and not self._just_restored:
            self.restore = False
        self._just_restored = False
        if not self.restore and self.epoch_fn is not None:
            self.current_epoch = self.epoch_fn()  # LitData counts from 1: trainer epoch e reads its epoch e + 1
        yield from super().__iter__()

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        """Continue from a checkpoint's position (Lightning calls this for checkpoints taken mid-epoch).

        Args:
            obj: what :meth:`state_dict` returned.
        """
        super().load_state_dict(obj)
        self._just_restored = True


class StreamingDataModule(BatchedDataModule):
    """Any dataset prepared by ``python -m imgbench.prepare``, streamed from a folder or object storage.

    Args:
        root: the prepared dataset: a folder (relative paths are taken from ``data_dir``) or an ``s3://``,
            ``gs://`` URI.
        name: the dataset's name in reports (null: the name ``imgbench.prepare`` gave it).
        data_dir: where relative roots are found.
        cache_dir: where chunks of a remote dataset are cached.
        image_size: the side of the (square) crop the model sees.
        eval_resize: evaluation brings the shorter side to this and takes the centre (then the centre
            ``image_size`` crop, or ten crops); ``random`` training crops start from the same square.
        train_crop: ``random_resized`` (Inception's crops of ``scale`` and ``ratio``, resized to ``image_size``)
            or ``random`` (AlexNet's: a random ``image_size`` crop of the ``eval_resize`` centre square).
        scale: the random-resized crop's area range, as fractions of the image.
        ratio: its aspect-ratio range.
        num_workers: loader worker processes per process (``auto``: the cores, shared between local processes).
        decode: ``workers`` (loader workers decode and crop each JPEG) or ``device`` (workers only read the
            header and plan the crop; the training device decodes the whole batch, with nvJPEG on a GPU).
        val_size: validation images, the last of the (prepare-shuffled) training split (a count or a fraction;
            0: none; a dataset prepared with its own validation split uses that).
        train_size: train on only the first this many training images.
        drop_last: drop the last incomplete training batch (under DDP the shares are always equal).
        batch_size: training images per step, all processes together (see :class:`BatchedDataModule`).
        eval_batch_size: evaluation images per step, all processes together.
        augment: the batched augmentation: ``flip`` and ``lighting`` (crops are ``train_crop``'s).
        normalize: ``auto`` (pretrained weights' statistics, else ``dataset``), ``dataset`` (the statistics
            ``imgbench.prepare`` measured), ``imagenet``, ``unit`` or ``none``.
        eval_views: ``one``, ``flip`` or ``ten_crop`` (of the ``eval_resize`` square).
        seed: the run seed: the stream's order, the crops and the batched augmentation follow it.

    Raises:
        ConfigError: an argument that cannot work (checked before anything is read).
    """

    def __init__(
        self,
        root: str,
        name: str | None = None,
        data_dir: str | os.PathLike = "data",
        cache_dir: str | os.PathLike = ".cache",
        image_size: int = 224,
        eval_resize: int = 256,
        train_crop: str = "random_resized",
        scale: tuple[float, float] | list[float] = (0.08, 1.0),
        ratio: tuple[float, float] | list[float] = (3 / 4, 4 / 3),
        num_workers: int | str = "auto",
        decode: str = "workers",
        val_size: int | float = 10000,
        train_size: int | None = None,
        drop_last: bool = False,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        augment: Any = None,
        normalize: str = "auto",
        eval_views: str = "one",
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, augment, normalize, eval_views, seed)
        check_path("root", root)
        check_path("data_dir", data_dir)
        check_whole("image_size", image_size, 1)
        check_whole("eval_resize", eval_resize, 1)
        if image_size > eval_resize:
            raise ConfigError(f"data.image_size ({image_size}) must be at most data.eval_resize ({eval_resize})")
        if train_crop not in TRAIN_CROPS:
            raise ConfigError(f"data.train_crop must be one of {', '.join(TRAIN_CROPS)}, got '{train_crop}'")
        for key, value, low in (("scale", scale, 0.0), ("ratio", ratio, 0.0)):
            if len(value) != 2 or not low < float(value[0]) <= float(value[1]) or (key == "scale" and value[1] > 1):
                raise ConfigError(f"data.{key} must be [low, high] with 0 < low <= high, got {list(value)}")
        if num_workers != "auto":
            check_whole("num_workers", num_workers, 0)
        check_val_size(val_size)
        check_whole("train_size", train_size, 1, optional=True)
        check_bool("drop_last", drop_last)
        if decode not in DECODERS:
            raise ConfigError(f"data.decode must be one of {', '.join(DECODERS)}, got '{decode}'")
        if self.augment.crop_padding or self.augment.shift:
            raise ConfigError("data.augment.crop_padding and data.augment.shift are for small in-memory images; "
                              "the streaming path crops with data.train_crop")  # fmt: skip
        self.root = root if is_remote(str(root)) else str(Path(data_dir).expanduser() / Path(root).expanduser())
        self.name = name or "streaming"
        self._given_name = name
        self.cache_dir = Path(cache_dir)
        self.image_size, self.eval_resize, self.train_crop_mode = image_size, eval_resize, train_crop
        self.scale, self.ratio = (float(scale[0]), float(scale[1])), (float(ratio[0]), float(ratio[1]))
        self.num_workers = num_workers
        self.val_size, self.train_size, self.drop_last = val_size, train_size, drop_last
        self.decode = decode
        self.crop_size = (image_size, image_size)
        self.train_crop = train_crop == "random"  # the batch cuts AlexNet's crops; random-resized ones are done
        self.meta: ShardMeta | None = None
        self.class_names: list[str] = []
        self.ranges: dict[str, tuple[str, range]] = {}  # split -> (shard folder, the positions it holds)

    def declared_inputs(self) -> dict[str, Any]:
        """What the model will see, known without reading anything: RGB ``image_size`` crops."""
        return {"num_classes": None, "in_channels": 3, "image_size": self.crop_size}

    def loaded(self) -> bool:
        """Whether ``imgbench.json`` has been read."""
        return self.meta is not None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(3, image_size, image_size): what the model sees."""
        return (3, *self.crop_size)

    @property
    def split_sizes(self) -> dict[str, int]:
        """Images per split (empty before ``imgbench.json`` is read)."""
        return {split: len(positions) for split, (_, positions) in self.ranges.items()}

    def split_images(self, split: str, index: torch.Tensor) -> torch.Tensor:
        """Some images of a split, decoded and cut as evaluation cuts them (the centre ``image_size`` crop).

        Args:
            split: ``train``, ``val`` or ``test``.
            index: their positions in the split.

        Returns:
            uint8 images ``(len(index), 3, image_size, image_size)``.
        """
        self._require_setup()
        folder, positions = self.ranges[split]
        shards = StreamingDataset(self._split_dir(folder), cache_dir=self._cache())
        view = self._view(train=False, encoded=False)
        images = [view(shards[positions[int(i)]]["image"], 0, 0) for i in index]
        return center_crop(torch.stack(images), self.crop_size) if images else torch.zeros(0, *self.image_shape)

    @property
    def stored_size(self) -> tuple[int, int]:
        """(eval_resize, eval_resize): evaluation's centre square, before its ``image_size`` crop."""
        return (self.eval_resize, self.eval_resize)

    def prepare_image(self, image: torch.Tensor) -> torch.Tensor:
        """Cut one image as evaluation does: the centre square, resized to ``eval_resize`` (see the base class).

        Args:
            image: uint8 ``(3, H, W)``.

        Returns:
            uint8 ``(3, eval_resize, eval_resize)``.
        """
        view = self._view(train=False, encoded=False)
        return crop(image, view.plan(image.shape[1], image.shape[2], 0, 0))

    def setup(self, stage: str | None = None) -> None:
        """Read and check ``imgbench.json`` and the splits' chunk lists, carve the validation split.

        Args:
            stage: Lightning's stage; ignored.

        Raises:
            DataError: not a prepared dataset, or a split folder or chunk missing or truncated.
            ConfigError: ``val_size`` or ``train_size`` larger than the training split.
        """
        if self.meta is None:
            self._read()
        self._seed_transform()

    def _read(self) -> None:
        meta = read_meta(self.root, self.cache_dir)
        n_train = meta.splits["train"]
        if "val" in meta.splits:
            n_val = 0
            self.ranges["val"] = ("val", range(meta.splits["val"]))
        else:
            v = self.val_size
            n_val = round(v * n_train) if isinstance(v, float) and v < 1 else int(v)
            if n_val >= n_train:
                raise ConfigError(f"data.val_size must be below the {n_train} training images, got {self.val_size}")
            if n_val:
                self.ranges["val"] = ("train", range(n_train - n_val, n_train))
        n_use = n_train - n_val
        if self.train_size is not None:
            if self.train_size > n_use:
                raise ConfigError(f"data.train_size must be in 1..{n_use}, got {self.train_size}")
            n_use = self.train_size
        self.ranges["train"] = ("train", range(n_use))
        self.ranges["test"] = ("test", range(meta.splits["test"]))
        self.classes = list(meta.classes)
        self.class_names = [n.split(",")[0] for n in meta.class_names]  # ILSVRC's first synonym: 'tench'
        self.name = self._given_name or meta.name
        if self.normalize in ("dataset", "auto"):
            self.mean, self.std = list(meta.mean), list(meta.std)
        else:
            self.mean, self.std = fixed_normalization(self.normalize, 3)
        self.meta = meta
        log.info("%s: %s, image %s, %d classes (streamed from %s)", self.name, self.split_sizes,
                 self.image_shape, len(self.classes), self.root)  # fmt: skip

    # ------------------------------------------------------------------ loaders

    def _workers(self) -> int:
        if self.num_workers != "auto":
            return int(self.num_workers)
        trainer = self._trainer_or_none()
        local = max(getattr(trainer, "num_devices", 1) or 1, 1) if trainer is not None else 1
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // local)

    def _view(self, train: bool, encoded: bool | None = None) -> ImageView | EncodedView:
        view = ImageView(train, self.image_size, self.eval_resize, self.train_crop_mode, self.scale, self.ratio,
                         self.seed)  # fmt: skip
        return EncodedView(view) if (self.decode == "device" if encoded is None else encoded) else view

    def _collate(self) -> Any:
        return collate_encoded if self.decode == "device" else None

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Decode an encoded batch on its device first (``decode=device``), then as every DataModule does.

        Args:
            batch: ``(images or EncodedBatch, labels)`` on the training device.
            dataloader_idx: which dataloader the batch comes from.

        Returns:
            ``(float images, labels)``.
        """
        x, y = batch
        if isinstance(x, EncodedBatch):
            batch = (x.decode(y.device), y)
        return super().on_after_batch_transfer(batch, dataloader_idx)

    def _cache(self) -> str | None:
        return str(self.cache_dir / "streaming") if is_remote(self.root) else None  # local shards are read in place

    def _split_dir(self, folder: str) -> str:
        return f"{str(self.root).rstrip('/')}/{folder}"

    def train_dataloader(self) -> ShardLoader:
        """The shuffled training stream of this process (its share under DDP)."""
        self._require_setup()
        folder, positions = self.ranges["train"]
        _, world = self._world()
        stream = ShardStream(
            self._split_dir(folder),
            self._view(train=True),
            cache_dir=self._cache(),
            shuffle=True,
            drop_last=self.drop_last or world > 1,
            seed=self.seed,
        )
        if len(positions) < len(stream):
            stream = stream.subset(slice(0, len(positions)))
        workers = self._workers()
        return ShardLoader(
            stream,
            epoch_fn=self._current_epoch,
            batch_size=self.per_process_batch_size(world),
            num_workers=workers,
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
            prefetch_factor=4 if workers else None,
            generator=self._loader_generator(),
            collate_fn=self._collate(),
        )

    def _loader_generator(self) -> torch.Generator:
        # a DataLoader draws its workers' base seed from the global generator whenever an epoch starts; a generator
        # of its own keeps the global one (dropout's, restored on resume) out of it
        return torch.Generator().manual_seed(self.seed)

    def _eval_loader(self, split: str) -> DataLoader:
        self._require_setup()
        folder, positions = self.ranges[split]
        rank, world = self._world()
        shards = StreamingDataset(self._split_dir(folder), cache_dir=self._cache())
        workers = self._workers()
        return DataLoader(
            ShardIndex(shards, positions[rank::world], self._view(train=False)),
            batch_size=-(-self.eval_batch_size // world),
            num_workers=workers,
            pin_memory=torch.cuda.is_available(),
            prefetch_factor=4 if workers else None,
            generator=self._loader_generator(),
            collate_fn=self._collate(),
        )

    def val_dataloader(self) -> DataLoader | list:
        """Validation batches of this process, or no loader without a validation split."""
        self._require_setup()
        return self._eval_loader("val") if "val" in self.ranges else []

    def test_dataloader(self) -> DataLoader:
        """Test batches of this process, in the split's order."""
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        """The test batches (predictions are made on the test split)."""
        return self.test_dataloader()
