"""Batches straight from in-memory tensors: one permutation per epoch, one gather per batch.

This replaces a ``DataLoader`` over a per-image ``Dataset`` for data that fits in memory: no workers, no
collation, no per-image Python. The order is a pure function of ``(seed, epoch)``, so a resumed run sees
exactly the batches the uninterrupted run would have seen, and each DDP rank takes a disjoint share: the
global batch of step ``k`` (all ranks together) holds the images of batch ``k`` of a one-process run with the
same seed and global batch size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch


def is_group(item: Any) -> bool:
    """Whether a loader item is a group of batches (:class:`TensorBatches`' ``group``): a list of tuples.

    One batch is a tuple, or a list of tensors (a ``DataLoader``'s default collation).
    """
    return isinstance(item, list) and bool(item) and isinstance(item[0], tuple)


class TensorBatches:
    """An iterable of ``(images, labels)`` batches over tensors that live on one device.

    Args:
        images: the whole split's uint8 images, on the device batches should be on.
        labels: its int64 labels, on the same device.
        batch_size: images per batch for this process.
        shuffle: a new random order every epoch (training); otherwise the stored order.
        drop_last: drop a last incomplete batch.
        seed: the shuffling seed; epoch ``e`` uses ``seed + e``.
        steps_per_epoch: if set, an epoch is this many batches of an endless stream of shuffled passes
            (Keras's ``steps_per_epoch``): epoch ``e`` continues where epoch ``e - 1`` stopped.
        rank: this process's rank: its share of every epoch (DDP). Training cuts each epoch's permutation
            into global batches of ``batch_size * world_size`` images and gives rank ``r`` the ``r``-th slice of
            each (the last, shorter global batch is split evenly; at most ``world_size - 1`` images of an epoch
            are left out, so that ranks stay in step). Evaluation strides over the split (rank ``r`` gets images
            ``r, r + world_size, ...``): every image is evaluated exactly once, nothing is padded.
        world_size: the number of processes.
        epoch_fn: returns the current epoch when iteration starts (the DataModule passes the trainer's
            ``current_epoch``, which a resumed run restores); without it, ``set_epoch`` sets it.
        position_fn: returns how many of the loader's items (batches, or groups of them) training has finished
            in the current epoch; saved by :meth:`state_dict` so that a run resumed from a mid-epoch checkpoint
            continues with the next batch.
        group: hand out lists of this many consecutive batches (the last list may be shorter) instead of single
            batches, for a module that takes one optimizer step per batch of the list (``module.inner_steps``):
            the batches and their order are the same, Lightning's per-item work is done once per list.

    Raises:
        ValueError: ``batch_size`` below 1.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        steps_per_epoch: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        epoch_fn: Callable[[], int] | None = None,
        position_fn: Callable[[], int] | None = None,
        group: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if group < 1:
            raise ValueError("group must be >= 1")
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.seed = seed
        self.steps_per_epoch = steps_per_epoch
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.epoch_fn = epoch_fn
        self.position_fn = position_fn
        self.group = group
        self._yielded = 0
        self._resume_at: tuple[int, int] | None = None  # (epoch, batches already done) after load_state_dict

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch whose order the next iteration follows (when there is no ``epoch_fn``).

        Args:
            epoch: the epoch.
        """
        self.epoch = epoch

    @property
    def num_samples(self) -> int:
        """Images this process sees per epoch (a full pass, or ``steps_per_epoch`` batches)."""
        n = len(self.labels)
        if self.steps_per_epoch is not None:
            return self.steps_per_epoch * self.batch_size
        if self.shuffle:
            return n // self.world_size  # equal shares, so ranks stay in step
        return len(range(self.rank, n, self.world_size))

    @property
    def batches(self) -> int:
        """Batches per epoch (each an optimizer step), whatever their grouping."""
        if self.steps_per_epoch is not None:
            return self.steps_per_epoch
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __len__(self) -> int:
        return math.ceil(self.batches / self.group)

    def _permutation(self, k: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed + k)
        return torch.randperm(len(self.labels), generator=g).to(self.labels.device)

    def indices(self) -> torch.Tensor:
        """This process's image indices for the current epoch, in order."""
        n = len(self.labels)
        if not self.shuffle:
            return torch.arange(self.rank, n, self.world_size, device=self.labels.device)
        if self.steps_per_epoch is None:
            perm = self._permutation(self.epoch)
            if self.world_size == 1:
                return perm
            usable = n - n % self.world_size  # equal shares, so ranks stay in step
            per_step = self.batch_size * self.world_size
            full = usable // per_step
            head = perm[: full * per_step].view(full, self.world_size, self.batch_size)[:, self.rank]
            tail = perm[full * per_step : usable].view(self.world_size, -1)[self.rank]
            return torch.cat([head.reshape(-1), tail])
        # an endless stream of shuffled passes, split between ranks batch by batch
        per_step = self.batch_size * self.world_size
        start = self.epoch * self.steps_per_epoch * per_step
        stop = start + self.steps_per_epoch * per_step
        parts = [self._permutation(k) for k in range(start // n, (stop - 1) // n + 1)]
        stream = torch.cat(parts)[start - (start // n) * n :][: stop - start]
        return stream.view(self.steps_per_epoch, self.world_size, self.batch_size)[:, self.rank].reshape(-1)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor] | list[tuple[torch.Tensor, torch.Tensor]]]:
        if self.group == 1:
            yield from self._batches()
            return
        batches = list[tuple[torch.Tensor, torch.Tensor]]()
        for batch in self._batches():
            batches.append(batch)
            if len(batches) == self.group:
                yield batches
                batches = []
        if batches:
            yield batches

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.epoch_fn is not None:
            self.epoch = self.epoch_fn()
        skip = 0
        if self._resume_at is not None:
            epoch, done = self._resume_at
            skip = done if epoch == self.epoch else 0
            self._resume_at = None
        idx = self.indices()
        self._yielded = skip
        for b in range(skip, self.batches):
            i = idx[b * self.batch_size : (b + 1) * self.batch_size]
            if len(i) == 0:
                return
            self._yielded += 1
            yield self.images[i], self.labels[i]

    # Lightning saves a loader with these two methods in every checkpoint and restores it on resume.

    def state_dict(self) -> dict[str, int]:
        """Where training is: the epoch and the batches of it already done."""
        if self.position_fn is None:
            return {"epoch": self.epoch, "batches": self._yielded}
        return {"epoch": self.epoch, "batches": min(int(self.position_fn()) * self.group, self.batches)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume training after the batches a checkpoint had seen (evaluation always starts at the beginning).

        Args:
            state: what :meth:`state_dict` returned.
        """
        if self.shuffle:  # only training resumes mid-epoch; evaluation always sees the whole split
            self._resume_at = (int(state["epoch"]), int(state["batches"]))
