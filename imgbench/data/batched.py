"""The base of imgbench's DataModules: uint8 batches, augmented and normalised on the device in whole batches.

Both data paths deliver ``(uint8 images, labels)`` batches: the in-memory one gathers them from one tensor, the
streaming one decodes them in loader workers. What happens after the batch reached its device (flips, crops,
auto-augment, PCA lighting, normalisation, random erasing, Mixup/CutMix, evaluation views) is this class's, so
both paths train and evaluate alike, and the augmentation generators of every rank are saved in checkpoints.

The batch the model gets: ``(float32 images, int64 labels)``, or with Mixup or CutMix on, training batches
``(images, labels, soft targets)``: the labels stay the true ones (for accuracy), the soft targets
``(N, num_classes)`` float32 are what the loss is taken against.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch

from ..errors import ConfigError
from .augment import EVAL_VIEWS, BatchTransform
from .checks import augment_config, check_whole
from .loader import is_group

log = logging.getLogger(__name__)

NORMALIZE = ("auto", "dataset", "unit", "symmetric", "imagenet", "none")


class BatchedDataModule(L.LightningDataModule):
    """Batches as uint8 ``(images, labels)``; :meth:`on_after_batch_transfer` augments and normalises them.

    Subclasses fill ``classes``, ``mean`` and ``std`` when their data is read, set ``crop_size`` (the crop the
    model sees, or None) and ``train_crop`` (whether training batches still need their random crop), and say
    whether the data is read (:meth:`loaded`).

    Args:
        batch_size: training images per optimizer step, all processes together: under DDP each of ``N`` processes
            takes ``batch_size / N`` of them (it must divide), so a recipe means the same on any number of GPUs.
        eval_batch_size: images per validation/test step, all processes together (default: ``batch_size``; each
            process takes ``ceil(eval_batch_size / N)``).
        augment: the batched training augmentation (see :class:`~imgbench.data.augment.AugmentConfig`).
        normalize: ``auto`` (the statistics a pretrained model's weights expect, else ``dataset``), ``dataset``
            (mean/std of the training images), ``unit`` (x / 255), ``symmetric`` (to [-1, 1]: mean and std 0.5),
            ``imagenet``, or ``none`` (pixels 0..255 as float).
        eval_views: what validation and testing show the model: ``one`` (the centre crop), ``flip`` (it and
            its mirror image) or ``ten_crop`` (corners, centre and their mirrors); the model averages the
            softmax over the views.
        seed: the run seed: shuffling and augmentation derive from it (augmentation draws ``seed + 1000 * rank``
            under DDP, so every process augments differently).

    Raises:
        ConfigError: an argument that cannot work (a one-line message naming ``data.<key>``).
    """

    name = "batched"

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        augment: Any = None,
        normalize: str = "auto",
        eval_views: str = "one",
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_whole("batch_size", batch_size, 1)
        check_whole("eval_batch_size", eval_batch_size, 1, optional=True)
        if normalize not in NORMALIZE:
            raise ConfigError(f"data.normalize must be {', '.join(NORMALIZE[:-1])} or none, got '{normalize}'")
        if eval_views not in EVAL_VIEWS:
            raise ConfigError(f"data.eval_views must be one of {', '.join(EVAL_VIEWS)}, got '{eval_views}'")
        check_whole("seed", seed, 0)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.augment = augment_config(augment)
        self.normalize = normalize
        self.eval_views = eval_views
        self.seed = seed
        self.crop_size: tuple[int, int] | None = None
        self.train_crop = True
        self.classes: list[str] = []
        self.mean: list[float] = []
        self.std: list[float] = []
        self.transform: BatchTransform | None = None
        self._transform_rank: int | None = None  # the rank the transform's generator was seeded for
        self._transform_state: dict | None = None
        self.restored: dict[str, Any] | None = None  # a checkpoint's description of the data, in place of the data
        self.train_group = 1  # training batches a loader item holds (the module's inner_steps; in-memory data only)

    def loaded(self) -> bool:
        """Whether the data (or its description) has been read (subclasses implement this)."""
        raise NotImplementedError

    def _require_setup(self) -> None:
        """Read the data (or its description) if that has not happened yet and no checkpoint described it."""
        if not self.loaded() and self.restored is None:
            self.setup()

    def restore(self, state: dict[str, Any]) -> None:
        """Describe the data as a checkpoint recorded it (classes, normalisation, image shape), without reading it.

        predict.py and export.py use a trained run where its data may not be: they need only what the model was
        given. Call before :meth:`setup` (which then is not needed).

        Args:
            state: the DataModule's entry of a checkpoint (:meth:`state_dict`).
        """
        self.restored = dict(state)
        self.name = str(state.get("name") or self.name)
        self.classes = [str(c) for c in state["classes"]]
        if state.get("class_names"):
            self.class_names = [str(c) for c in state["class_names"]]
        if state.get("mean") and state.get("std"):
            self.mean, self.std = [float(m) for m in state["mean"]], [float(s) for s in state["std"]]
        self.transform = None
        self._seed_transform()

    @property
    def num_classes(self) -> int:
        """How many classes the data has (reads the data if needed)."""
        self._require_setup()
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of what the model sees (subclasses implement this)."""
        raise NotImplementedError

    @property
    def stored_size(self) -> tuple[int, int]:
        """(height, width) of an image before the evaluation crop (subclasses implement this)."""
        raise NotImplementedError

    def class_counts(self) -> torch.Tensor:
        """Training images per class, int64 ``(num_classes,)`` (for ``module.class_weights=balanced``).

        Raises:
            ConfigError: the data path does not know them (subclasses that do implement this).
        """
        raise ConfigError(
            f"module.class_weights=balanced needs the training split's class counts, which {self.name} does not "
            f"record; give module.class_weights=[w_0, w_1, ...]"
        )

    def prepare_image(self, image: torch.Tensor) -> torch.Tensor:
        """Bring one decoded image to :attr:`stored_size` as the evaluation data was brought (predict.py).

        What follows is the run's: the batch transform's evaluation crop, views and normalisation.

        Args:
            image: uint8 ``(C, H, W)`` with the data's channels, of any size.

        Returns:
            uint8 ``(C, *stored_size)`` (subclasses implement this).
        """
        raise NotImplementedError

    def use_eval_views(self, views: str) -> None:
        """Evaluate with ``views`` (``one``, ``flip``, ``ten_crop``) instead of ``eval_views`` (predict.py's choice).

        Args:
            views: the evaluation views.

        Raises:
            ConfigError: unknown views, or ten crops of images that are not cropped.
        """
        if views not in EVAL_VIEWS:
            raise ConfigError(f"evaluation views must be one of {', '.join(EVAL_VIEWS)}, got '{views}'")
        if views == "ten_crop" and self.crop_size is None:
            raise ConfigError("ten-crop views need a run trained on crops (data.crop_size); choose one or flip views")
        self.eval_views = views
        if self.transform is not None:
            self.transform = None  # rebuilt with the new views
            self._seed_transform()

    def split_images(self, split: str, index: torch.Tensor) -> torch.Tensor:
        """Some images of a split as the model sees them before normalisation (reports draw them).

        Args:
            split: ``train``, ``val`` or ``test``.
            index: their positions in the split.

        Returns:
            uint8 images ``(len(index), C, H, W)`` (subclasses implement this).
        """
        raise NotImplementedError

    def use_statistics(self, mean: list[float], std: list[float], source: str) -> bool:
        """Normalise with ``mean`` and ``std`` instead of the data's own, when ``normalize`` is ``auto``.

        Args:
            mean: per-channel means, in [0, 1] units (e.g. those pretrained weights were trained with).
            std: per-channel standard deviations.
            source: what they come from, for the log.

        Returns:
            Whether they are used (``normalize=auto`` and as many channels as the data has).
        """
        if self.normalize != "auto" or len(mean) != len(self.mean or mean):
            return False
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]
        log.info("%s: normalising with %s's mean %s and std %s", self.name, source,
                 [round(m, 4) for m in self.mean], [round(s, 4) for s in self.std])  # fmt: skip
        if self.transform is not None:
            self.transform = None  # rebuilt with the new statistics (the generator state is kept)
            self._seed_transform()
        return True

    # ------------------------------------------------------------------ the batch transform

    def _seed_transform(self) -> None:
        """Build the batch transform of this process, seeded with ``seed + 1000 * rank``.

        ``setup`` may first run before a Trainer is attached (rank unknown, 0); Lightning's own ``setup`` call
        then re-seeds it for the real rank.
        """
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
            train_crop=self.train_crop,
        )
        self._transform_rank = rank
        if self._transform_state:
            self.transform.load_state_dict(self._transform_state)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment (training only) and normalise the uint8 ``(images, labels)`` batch on its device.

        Args:
            batch: the uint8 images and their labels, on the training device.
            dataloader_idx: which dataloader the batch comes from (unused).

        Returns:
            ``(float images, labels)``; in evaluation with several views, images ``(N, V, C, H, W)``. Training
            batches with Mixup or CutMix on: ``(mixed images, labels, soft targets (N, num_classes) float32)``.
            A list of batches (``train_group``) gives the list of their results, each batch augmented as it
            would be alone.
        """
        if is_group(batch):
            return [self.on_after_batch_transfer(b, dataloader_idx) for b in batch]
        x, y = batch
        trainer = self._trainer_or_none()
        training = bool(trainer is not None and trainer.training)
        x = self.transform(x, train=training)
        if training and self.augment.mixing:
            x, soft = self.transform.mix(x, y, len(self.classes))
            return x, y, soft
        return x, y

    # ------------------------------------------------------------------ processes

    def per_process_batch_size(self, world_size: int) -> int:
        """Training images per step of each process: ``batch_size / world_size`` (``batch_size`` is the global batch).

        Args:
            world_size: the number of processes.

        Returns:
            The per-process batch size.

        Raises:
            ConfigError: ``batch_size`` is not a multiple of ``world_size``.
        """
        if self.batch_size % world_size:
            lower = self.batch_size // world_size * world_size
            choices = " or ".join(str(b) for b in (lower, lower + world_size) if b > 0)
            raise ConfigError(
                f"data.batch_size={self.batch_size} is the global batch and does not split over {world_size} "
                f"processes; use a multiple of {world_size} (e.g. data.batch_size={choices})"
            )
        return self.batch_size // world_size

    def _rank(self) -> int:
        trainer = self._trainer_or_none()
        return trainer.global_rank if trainer is not None else 0

    def _world(self) -> tuple[int, int]:
        trainer = self._trainer_or_none()
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _trainer_or_none(self) -> L.Trainer | None:
        return getattr(self, "trainer", None)

    def _current_epoch(self) -> int:
        trainer = self._trainer_or_none()
        return trainer.current_epoch if trainer is not None else 0

    def _batches_done(self) -> int:
        """Training batches finished in the current epoch (what a checkpoint saved now has seen)."""
        trainer = self._trainer_or_none()
        return trainer.fit_loop.epoch_loop.batch_progress.current.processed if trainer is not None else 0

    # ------------------------------------------------------------------ checkpoint state

    def state_dict(self) -> dict[str, Any]:
        """The state a checkpoint keeps: class names, normalisation, image shape and augmentation generators.

        Called on every process when a checkpoint is saved (Lightning's rule): under DDP the augmentation
        generators of all ranks are gathered into ``augment_rng_ranks``, so that each rank resumes its own.
        """
        state: dict[str, Any] = {"name": self.name, "classes": self.classes, "mean": self.mean, "std": self.std}
        if getattr(self, "class_names", None):
            state["class_names"] = list(self.class_names)
        if self.loaded():
            state["image_shape"] = list(self.image_shape)
            state["stored_size"] = list(self.stored_size)
        if self.transform is not None:
            rng = self.transform.state_dict()
            _, world = self._world()
            if world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
                ranks: list[Any] = [None] * world
                torch.distributed.all_gather_object(ranks, rng)
                state["augment_rng_ranks"] = ranks
            else:
                state["augment_rng"] = rng
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore this rank's augmentation generator from a checkpoint's state.

        A checkpoint written by another number of processes cannot continue every rank's draws: augmentation
        then starts again from the seed (with a warning).

        Args:
            state: what :meth:`state_dict` returned.
        """
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
