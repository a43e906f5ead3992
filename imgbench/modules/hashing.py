"""Study A's evaluation: the generic classifier, plus Hamming retrieval and Hamming kNN on the hash codes.

A net has hash codes when :func:`has_hash_codes` says so: an attribute ``hash_bits > 0`` and a method
``forward_with_codes(x) -> (logits, h)`` with ``h`` the sigmoid activations of the hash layer (binary code
``h >= 0.5``), e.g. ``imgbench.models.alexnet_hash``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..metrics.retrieval import DEFAULT_PRECISION_KS, retrieval_metrics
from .classifier import ImageClassifier, OptimizerFactory

__all__ = ["CODE_THRESHOLD", "HashClassifier", "has_hash_codes"]

log = logging.getLogger(__name__)

CODE_THRESHOLD = 0.5  # binary code = sigmoid(H) >= 0.5 (DLBHC)


def has_hash_codes(net: nn.Module) -> bool:
    """Whether ``net`` produces hash codes (``hash_bits > 0`` and ``forward_with_codes``).

    Args:
        net: the model.

    Returns:
        True for a net to train with :class:`HashClassifier`.
    """
    return int(getattr(net, "hash_bits", 0) or 0) > 0 and callable(getattr(net, "forward_with_codes", None))


class HashClassifier(ImageClassifier):
    """:class:`ImageClassifier` for nets with hash codes, adding study A's Hamming evaluation at test time.

    It trains the same way (cross-entropy on the logits) and, at test time, adds the Hamming evaluation to
    ``test/acc`` (the softmax classification).

    The test images are the queries; the database is the ``database`` split of the datamodule (an
    ``imgbench.data.InMemoryDataModule``; default the training split, without the carved validation images),
    encoded with the evaluation transform by the tested weights. Codes come from the same forward pass as the
    logits (``forward_with_codes``). Logged (definitions in :mod:`imgbench.metrics.retrieval`):
    ``test/knn_acc`` (Hamming kNN vote), ``test/map``, ``test/map@<map_cutoff>``, ``test/precision@<k>``,
    ``test/precision_r<radius>``. ``hash_protocol`` then describes what was measured (for metrics.json).

    Args:
        net: the model; it must have hash codes (:func:`has_hash_codes`).
        num_classes: number of classes, as :class:`ImageClassifier`.
        optimizer: a partial optimizer, as :class:`ImageClassifier`.
        knn_k: neighbours in the kNN vote.
        map_cutoff: K of mAP@K (DLBHC: 1000).
        radius: the Hamming radius of ``precision_r<radius>``.
        precision_ks: the k of precision@k (k larger than the database are skipped, with a warning).
        database: the datamodule split that forms the database.
        database_size: use only the first this many images of that split (quick runs; null: all of it).
            Under ``fast_dev_run`` the database is one evaluation batch.
        hash: the same settings as one mapping (the config's ``module.hash``); its entries replace the keyword
            arguments of the same names.
        **kwargs: the other arguments of :class:`ImageClassifier`.

    Raises:
        ConfigError: ``hash`` has an unknown key, ``net`` has no hash codes, or a setting is out of range.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optimizer: OptimizerFactory,
        *,
        knn_k: int = 10,
        map_cutoff: int = 1000,
        radius: int = 2,
        precision_ks: Sequence[int] = DEFAULT_PRECISION_KS,
        database: str = "train",
        database_size: int | None = None,
        hash: Mapping[str, Any] | None = None,  # the config key module.hash
        **kwargs: Any,
    ) -> None:
        settings = {"knn_k": knn_k, "map_cutoff": map_cutoff, "radius": radius, "precision_ks": precision_ks}
        settings |= {"database": database, "database_size": database_size}
        unknown = set(hash or {}) - set(settings)
        if unknown:
            raise ConfigError(
                f"unknown key 'module.hash.{sorted(unknown)[0]}'; module.hash accepts: {', '.join(settings)}"
            )
        settings |= dict(hash or {})
        knn_k, map_cutoff, radius = settings["knn_k"], settings["map_cutoff"], settings["radius"]
        precision_ks, database = settings["precision_ks"], settings["database"]
        database_size = settings["database_size"]
        if not has_hash_codes(net):
            raise ConfigError(
                f"{type(net).__name__} has no hash codes (needs hash_bits > 0 and forward_with_codes); "
                f"use ImageClassifier, or a model with a hash layer such as alexnet_hash with hash_bits > 0"
            )
        precision_ks = tuple(int(k) for k in precision_ks)  # plain ints, so that checkpoints stay weights-only
        if knn_k < 1 or map_cutoff < 1 or radius < 0 or any(k < 1 for k in precision_ks):
            raise ConfigError(
                f"hash evaluation needs knn_k >= 1, map_cutoff >= 1, radius >= 0 and precision k >= 1; got "
                f"knn_k={knn_k}, map_cutoff={map_cutoff}, radius={radius}, precision_ks={list(precision_ks)}"
            )
        super().__init__(net, num_classes, optimizer, **kwargs)
        self.knn_k, self.map_cutoff, self.radius = int(knn_k), int(map_cutoff), int(radius)
        self.precision_ks = precision_ks
        self.database = database
        self.database_size = database_size
        self.hash_protocol: dict[str, Any] | None = None
        self._query_codes: list[torch.Tensor] = []
        self._query_labels: list[torch.Tensor] = []

    # ------------------------------------------------------------------ codes

    def logits_and_codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and hash-layer activations from one forward pass.

        Args:
            x: images ``(N, C, H, W)`` (one view per image).

        Returns:
            The logits and the hash layer's sigmoid activations.

        Raises:
            ConfigError: ``x`` is a stack of views.
        """
        if x.ndim == 5:
            raise ConfigError("hash evaluation takes one view per image; set data.eval_views=one")
        return self.net.forward_with_codes(x.contiguous(memory_format=self.memory_format))

    def _datamodule(self) -> Any:
        """The test's datamodule, which must hold the database split (checked before any test batch runs)."""
        dm = getattr(self.trainer, "datamodule", None)
        splits = getattr(dm, "splits", None)
        if not isinstance(splits, dict) or self.database not in splits or not callable(getattr(dm, "transform", None)):
            raise ConfigError(
                f"HashClassifier needs the '{self.database}' split of an imgbench InMemoryDataModule as its "
                f"database; pass the datamodule to trainer.test(datamodule=...)"
            )
        return dm

    @torch.inference_mode()
    def database_codes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode the database split with the tested weights, every process a share, gathered in order.

        Returns:
            The binary codes (bool, on the CPU) and labels of the database split, in the split's order.
        """
        dm = self._datamodule()
        split = dm.splits[self.database]
        batch = int(getattr(dm, "eval_batch_size", None) or 256)
        size = batch if self.trainer.fast_dev_run else self.database_size
        images, labels = (split.images[:size], split.labels[:size]) if size else (split.images, split.labels)
        rank, world = self.trainer.global_rank, self.trainer.world_size
        images, labels = images[rank::world], labels[rank::world]  # the evaluation loaders' sharding
        codes = []
        with self.trainer.precision_plugin.forward_context():
            for i in range(0, len(images), batch):
                x = dm.transform(images[i : i + batch].to(self.device), train=False)
                codes.append((self.logits_and_codes(x)[1] >= CODE_THRESHOLD).cpu())
        empty = torch.zeros(0, self.net.hash_bits, dtype=torch.bool)
        return self._gather_in_order(torch.cat(codes) if codes else empty), self._gather_in_order(labels.cpu())

    def _gather_in_order(self, local: torch.Tensor) -> torch.Tensor:
        """Items sharded ``rank::world`` over the processes, gathered back into their original order."""
        world = self.trainer.world_size if self._trainer is not None else 1
        if world == 1:
            return local
        sizes = self.all_gather(torch.tensor(len(local), device=self.device)).view(-1).tolist()
        longest = max(sizes)
        # bool and small ints travel as int64 (every backend gathers those); floats keep their type
        dtype = local.dtype if local.is_floating_point() else torch.int64
        padded = torch.zeros((longest, *local.shape[1:]), dtype=dtype)
        padded[: len(local)] = local
        gathered = self.all_gather(padded.to(self.device)).cpu()  # (world, longest, ...)
        # item i lives on rank i % world at position i // world: interleave the ranks, drop the padding
        ordered = gathered.transpose(0, 1).reshape(longest * world, *local.shape[1:])[: sum(sizes)]
        return ordered.to(local.dtype)

    # ------------------------------------------------------------------ test

    def on_test_epoch_start(self) -> None:
        self._datamodule()
        self._query_codes, self._query_labels = [], []

    def test_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        x, y = batch
        logits, h = self.logits_and_codes(x)
        self.test_loss.update(F.cross_entropy(logits.float(), y, reduction="none"))
        self.test_metrics.update(logits, y)
        self.test_classes.update(logits, y)
        self._query_codes.append((h >= CODE_THRESHOLD).cpu())
        self._query_labels.append(y.cpu())
        return {"logits": logits.detach(), "targets": y}

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()  # test/acc (softmax), test/acc_top5, test/loss
        if not self._query_codes:
            return
        t0 = time.perf_counter()
        queries = self._gather_in_order(torch.cat(self._query_codes))
        query_labels = self._gather_in_order(torch.cat(self._query_labels))
        self._query_codes, self._query_labels = [], []
        db_codes, db_labels = self.database_codes()
        n_db = len(db_labels)
        ks = [k for k in self.precision_ks if k <= n_db]
        if len(ks) < len(self.precision_ks):
            log.warning("precision@k skipped for k > %d (the database size): %s", n_db, self._skipped(ks))
        knn_k = min(self.knn_k, n_db)
        if knn_k < self.knn_k:
            log.warning("knn_k=%d is larger than the database (%d items): using %d", self.knn_k, n_db, knn_k)
        values = retrieval_metrics(
            queries,
            query_labels,
            db_codes,
            db_labels,
            map_cutoff=self.map_cutoff,
            precision_ks=ks,
            radius=self.radius,
            knn_k=knn_k,
        )
        self.log_dict({f"test/{k}": v for k, v in values.items()})
        self.hash_protocol = {
            "queries": "test split",
            "num_queries": len(query_labels),
            "database": f"{self.database} split, evaluation transform, tested weights",
            "num_database": n_db,
            "hash_bits": int(self.net.hash_bits),
            "code": f"sigmoid(H) >= {CODE_THRESHOLD}",
            "relevant": "same label",
            "ranking": "Hamming distance ascending, ties by database index",
            "map": "AP over the whole ranking, normalised by all relevant items in the database",
            "map_cutoff": self.map_cutoff,
            "map_at_cutoff": "AP over the top map_cutoff, normalised by the relevant items among them (DLBHC)",
            "precision_ks": ks,
            "radius": self.radius,
            "radius_empty_query": "precision 0",
            "knn_k": knn_k,
            "knn_ties": "most votes, then the class whose best-ranked item comes first",
            "classification": {"test/acc": "softmax of FC8", "test/knn_acc": "Hamming kNN over the database"},
            "seconds": round(time.perf_counter() - t0, 3),
        }

    def _skipped(self, ks: list[int]) -> str:
        return ", ".join(str(k) for k in self.precision_ks if k not in ks)
