"""The one generic LightningModule: any registry model, cross-entropy, torchmetrics accuracy."""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MaxMetric, MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
    MulticlassStatScores,
)

from ..checkpoint import CONFIG_KEY, rng_state, set_rng_state
from ..errors import ConfigError
from ..hardware import resolve_channels_last
from ..metrics.classification import classification_values
from ..models import classifier_prefix
from ..models.layers import count_parameters
from .finetune import FinetuneConfig, drop_backbone_grads, optimizer_defaults, parameter_groups
from .finetune import summary as finetune_summary
from .hooks import TRAIN_BATCH_HOOKS, signature_once, skip_empty_callback_hooks, skip_empty_hooks
from .inner_steps import check_inner_steps_value, epoch_steps, step_schedulers, take_steps
from .train_stats import NonFiniteLossError, Position, TrainStats, stop_if_not_finite

__all__ = ["ImageClassifier", "NonFiniteLossError", "check_class_weights"]

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


def check_class_weights(value: Any, num_classes: int | None = None) -> None:
    """Check ``module.class_weights``: None, ``balanced`` or one weight >= 0 per class.

    Args:
        value: the setting (a list or a config's ListConfig).
        num_classes: the classes of the data; None: not known yet (the count is not checked).

    Raises:
        ConfigError: a one-line message naming the key and what it accepts.
    """
    if value is None or value == "balanced":
        return
    weights = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else None
    if weights is None or not all(type(w) in (int, float) and w >= 0 for w in weights):
        raise ConfigError(f"module.class_weights must be balanced, null or [w_0, w_1, ...] (>= 0), got {value!r}")
    if num_classes is not None and len(weights) != num_classes:
        raise ConfigError(
            f"module.class_weights has {len(value)} weights for {num_classes} classes; give one per class or balanced"
        )


class ImageClassifier(L.LightningModule):
    """Trains ``net`` (an ``nn.Module`` that maps images to logits) with cross-entropy.

    Logs, per split (``train/``, ``val/``, ``test/``): ``loss``, ``acc`` (top-1) and ``acc_top5`` when there
    are more than 5 classes; ``val/acc_best``; ``train/epoch_time`` and ``train/images_per_sec`` (training
    batches only, data included; all processes together under DDP);
    the macro means of the per-class precision, recall and F1 as ``test/precision_macro``, ``test/recall_macro``,
    ``test/f1_macro`` (the per-class values are in :attr:`per_class` after testing).

    Args:
        net: the model.
        num_classes: number of classes.
        optimizer: a partial optimizer (``_partial_: true`` config) called with the parameters.
        scheduler: a partial LR scheduler called with the optimizer, or None.
        scheduler_interval: when the scheduler steps: ``epoch`` or ``step``.
        scheduler_frequency: every how many epochs or steps (``scheduler_interval``) it steps.
        monitor: the metric ReduceLROnPlateau watches.
        label_smoothing: cross-entropy label smoothing.
        channels_last: run the model in channels-last memory format (faster convolutions on some hardware);
            ``auto``: on for convolutional models (see :mod:`imgbench.hardware`).
        compile: wrap the model in ``torch.compile``.
        freeze_backbone_epochs: train only the classifier head for the first this many epochs (fine-tuning).
        backbone_lr_scale: the backbone's learning rate is ``optimizer.lr`` times this; the head's is ``optimizer.lr``.
        no_weight_decay_norm_bias: no weight decay on biases and normalisation weights.
        class_weights: weigh the training loss per class: ``balanced`` (``n / (classes * n_c)`` from the training
            split's class counts, scikit-learn's rule, for imbalanced data), a list of one weight per class, or
            None (all 1).
        inner_steps: optimizer steps per ``training_step`` call: the training loader hands over this many batches
            at once and the module steps once per batch (same updates; Lightning's per-batch work once per group:
            for small batches, see :mod:`imgbench.modules.inner_steps`).

    A training batch is ``(images, labels)`` or, with mixup/cutmix, ``(images, labels, soft targets)``: the loss is
    then taken against the soft targets and the accuracy against the labels. A NaN or infinite training loss stops
    the run with :class:`NonFiniteLossError`; the losses are checked every few steps, not at each (see
    :mod:`imgbench.modules.train_stats`).
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        scheduler_frequency: int = 1,
        monitor: str = "val/loss",
        label_smoothing: float = 0.0,
        channels_last: bool | str = False,
        compile: bool = False,
        freeze_backbone_epochs: int = 0,
        backbone_lr_scale: float = 1.0,
        no_weight_decay_norm_bias: bool = False,
        class_weights: str | list[float] | None = None,
        inner_steps: int = 1,
    ) -> None:
        super().__init__()
        check_class_weights(class_weights, num_classes)
        check_inner_steps_value(inner_steps)
        self.automatic_optimization = inner_steps == 1  # several batches a call: the module steps (inner_steps.py)
        try:
            self.finetune = FinetuneConfig(freeze_backbone_epochs, backbone_lr_scale, no_weight_decay_norm_bias)
        except ValueError as e:
            raise ConfigError(f"module.{e}") from None
        self.head_prefix = classifier_prefix(net)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.class_weights = class_weights
        # per-class loss weights, set in setup(); not in checkpoints (the config and data give them again)
        self.register_buffer("loss_weights", None, persistent=False)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        channels_last = resolve_channels_last(channels_last, net)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.model = torch.compile(self.net) if compile else self.net

        metrics = {"acc": MulticlassAccuracy(num_classes, average="micro")}
        if num_classes > 5:
            metrics["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
        collection = MetricCollection(metrics)
        self.train_metrics = collection.clone(prefix="train/")
        self.train_metrics.persistent(True)  # a run resumed mid-epoch reports the same train/acc
        self.val_metrics = collection.clone(prefix="val/")
        self.test_metrics = collection.clone(prefix="test/")
        # one compute group: the four share their counts (torchmetrics updates them once)
        self.test_classes = MetricCollection(
            {
                "precision": MulticlassPrecision(num_classes, average=None),
                "recall": MulticlassRecall(num_classes, average=None),
                "f1": MulticlassF1Score(num_classes, average=None),
                "counts": MulticlassStatScores(num_classes, average=None),
            }
        )
        self.per_class: dict[str, list[float]] | None = None  # test precision, recall, f1, support per class
        self.train_loss = MeanMetric()
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # kept in checkpoints, so a resumed run knows its best
        self.train_stats = TrainStats(self.train_metrics, self.train_loss)  # their cheap per-step updates
        skip_empty_hooks(self, L.LightningModule, TRAIN_BATCH_HOOKS)  # Lightning inspects the evaluation ones
        self.num_params = count_parameters(net)
        self._epoch_start = self._last_batch_end = 0.0  # the epoch's clock, from the start of its first batch
        self._epoch_images = 0
        self._epoch_so_far = (0.0, 0)  # seconds and images of the epoch a mid-epoch checkpoint was saved in
        self._step_logged_at = -math.inf
        self.train_seconds = 0.0
        self.train_images = 0
        self.run_config: dict[str, Any] | None = None  # set by imgbench.run; stored in every checkpoint
        self._rng_to_restore: dict[str, Any] | None = None
        self._summed_train_metrics = False  # a DDP checkpoint holds the training metrics of all processes

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets _current_fx_name twice around each of a step's ~20 hooks: nn.Module's __setattr__ (its
        # parameter, module and buffer checks) is not needed for it (benchmarks/results.md, small batches)
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # ------------------------------------------------------------------ forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=self.memory_format))

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for evaluation, averaged over the views when there are several.

        A stack of views ``(N, V, C, H, W)`` (``data.eval_views``: flips, ten crops) is averaged as AlexNet
        does: the mean of the views' softmax, returned as its log (so cross-entropy and argmax apply to the
        averaged prediction).

        Args:
            x: images ``(N, C, H, W)`` or views ``(N, V, C, H, W)``.

        Returns:
            ``(N, classes)`` logits (for views: the log of the mean softmax).
        """
        if x.ndim == 5:
            n, v = x.shape[:2]
            probs = self(x.flatten(0, 1)).float().softmax(-1).unflatten(0, (n, v)).mean(1)
            return probs.clamp_min(1e-12).log()
        return self(x)

    # ------------------------------------------------------------------ steps

    @signature_once
    def training_step(
        self, batch: tuple[torch.Tensor, ...] | list[tuple[torch.Tensor, ...]], batch_idx: int
    ) -> torch.Tensor | None:
        if self.automatic_optimization:
            return self._step_loss(batch, batch_idx)
        take_steps(self, batch, batch_idx, self._step_loss)  # a group of module.inner_steps batches
        return None

    def _step_loss(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        """A training batch's loss; its metrics are counted and its loss logged as Lightning's step rules say."""
        x, y, *soft = batch  # soft targets come with mixup/cutmix
        logits = self(x)
        target = soft[0] if soft else y
        if self.loss_weights is None:
            loss = self.criterion(logits, target)
        else:
            loss = nn.functional.cross_entropy(
                logits, target, weight=self.loss_weights, label_smoothing=self.criterion.label_smoothing
            )
        # train_metrics and train_loss (the mean over images, as Lightning's batch_size), for a few tensor ops a step
        self.train_stats.add(loss, logits, y, Position(self.current_epoch, self.global_step, batch_idx))
        if self.train_stats.check_due:
            stop_if_not_finite(self.train_stats, self.trainer)
        if self._log_this_step():
            # not sync_dist: under DDP the progress bar (rank 0 only) would start that collective on rank 0 alone
            # and deadlock; train/loss_step is rank 0's, train/loss_epoch (torchmetrics) all processes'
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(y))
        self._epoch_images += len(y) * self.trainer.world_size  # the processes' batches are equal: all of them
        return loss

    def _log_this_step(self) -> bool:
        """Whether to log this step's loss.

        ``self.log`` is a noticeable part of a small model's step (benchmarks/results.md), so only on the steps
        Lightning writes to the loggers (every ``trainer.log_every_n_steps``) and, for the progress bar, at most
        once a second in between.
        """
        every = self.trainer.log_every_n_steps
        now = time.perf_counter()
        if (every > 0 and (self.global_step + 1) % every == 0) or now - self._step_logged_at >= 1.0:
            self._step_logged_at = now
            return True
        return False

    def _eval_step(self, batch, metrics: MetricCollection, loss_metric: MeanMetric) -> dict[str, torch.Tensor]:
        x, y = batch
        logits = self.predict_logits(x)
        loss = nn.functional.cross_entropy(logits.float(), y, reduction="none")
        loss_metric.update(loss)
        metrics.update(logits, y)
        return {"logits": logits.detach(), "targets": y}

    def validation_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        return self._eval_step(batch, self.val_metrics, self.val_loss)

    def test_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        out = self._eval_step(batch, self.test_metrics, self.test_loss)
        self.test_classes.update(out["logits"], out["targets"])
        return out

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self.predict_logits(batch[0]).softmax(-1)

    # ------------------------------------------------------------------ epoch ends

    def on_train_epoch_start(self) -> None:
        self.train_stats.flush()
        self._start_epoch()

    def _start_epoch(self, seconds: float = 0.0, images: int = 0) -> None:
        self._sum_losses_in_float64(self.train_loss)
        self._last_batch_end = time.perf_counter()
        self._epoch_start, self._epoch_images = self._last_batch_end - seconds, images

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._last_batch_end = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        seconds = max(self._last_batch_end - self._epoch_start, 1e-9)
        self.train_seconds += seconds
        self.train_images += self._epoch_images
        if not self.automatic_optimization:  # automatic optimization steps them after this hook, as here
            step_schedulers(self.trainer, "epoch", self.current_epoch + 1)
        if self.train_stats.unchecked:
            stop_if_not_finite(self.train_stats, self.trainer)
        self.train_stats.flush()
        if self.train_loss.update_count:  # none after resuming at an epoch's end (the processes are in step)
            self.log("train/loss_epoch", self.train_loss.compute().float(), prog_bar=True)
        self.train_loss.reset()
        self.log_dict(self.train_metrics.compute(), prog_bar=True)
        self.train_metrics.reset()
        self.log("train/epoch_time", seconds)
        self.log("train/images_per_sec", self._epoch_images / seconds)

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        values["val/loss"] = self.val_loss.compute().float()
        self.val_loss.reset()
        self.log_dict(values, prog_bar=True)
        if not self.trainer.sanity_checking:
            self.val_acc_best.update(values["val/acc"])
            self.log("val/acc_best", self.val_acc_best.compute())

    def on_test_epoch_end(self) -> None:
        values, self.per_class = classification_values(self.test_metrics, self.test_loss, self.test_classes)
        for metric in (self.test_metrics, self.test_loss, self.test_classes):
            metric.reset()
        self.log_dict(values)

    def _sum_losses_in_float64(self, metric: MeanMetric) -> None:
        # The loss means are sums of float32 losses: summed in float64 (then rounded to float32),
        # the rounding of the sum stays far below float32 precision, whatever the batch sizes or number of processes,
        # and a 2-process test reproduces a 1-process evaluation exactly. MPS has no float64: float32 there.
        # Set at the start of each loop: moving the module to its device (DDP does, after `setup`) resets the dtype
        # torchmetrics casts the updates to.
        if self.trainer.strategy.root_device.type != "mps":
            metric.set_dtype(torch.float64)

    def on_validation_start(self) -> None:
        self._sum_losses_in_float64(self.val_loss)

    def on_test_start(self) -> None:
        self._sum_losses_in_float64(self.test_loss)

    def setup(self, stage: str) -> None:
        skip_empty_callback_hooks(self.trainer.callbacks)  # all of them are attached by now
        if stage == "fit" and self.class_weights is not None and self.loss_weights is None:
            self.loss_weights = self._class_weight_tensor()

    def _class_weight_tensor(self) -> torch.Tensor:
        num_classes = self.test_classes["f1"].num_classes
        if self.class_weights != "balanced":
            return torch.tensor(self.class_weights, dtype=torch.float32)
        counts = self.trainer.datamodule.class_counts().double()
        # scikit-learn's "balanced": n / (classes * n_c); a class with no training image gets no weight
        weights = counts.sum() / (num_classes * counts.clamp_min(1))
        return torch.where(counts > 0, weights, 0.0).float()

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.train_stats.flush()  # the training metrics' states hold every step so far
        return super().state_dict(*args, **kwargs)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.train_stats.unchecked:  # no checkpoint of the state after a non-finite loss
            stop_if_not_finite(self.train_stats, self.trainer)
        # plain data only, so that eval.py can rebuild the run with torch.load(weights_only=True)
        checkpoint[CONFIG_KEY] = {
            "config": self.run_config,
            "train_seconds": self.train_seconds,
            "train_images": self.train_images,
            "epoch_so_far": [self._last_batch_end - self._epoch_start, self._epoch_images],
            "rng": rng_state(),  # dropout draws from the global generator: a resumed run must continue it
            "processes": self.trainer.world_size,
        }
        if self.trainer.world_size > 1:
            # the epoch's training accuracy so far, all processes together (every process saves: Lightning's rule);
            # after a resume rank 0 carries it on and the other ranks start from zero (on_train_start)
            with contextlib.ExitStack() as stack:
                for metric in self.train_metrics.values():
                    stack.enter_context(metric.sync_context())
                checkpoint["state_dict"].update(self.train_metrics.state_dict(prefix="train_metrics."))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.train_stats.flush()  # the checkpoint's states then replace the steps before, as with per-step updates
        saved = checkpoint.get(CONFIG_KEY) or {}
        self.train_seconds = float(saved.get("train_seconds", 0.0))
        self.train_images = int(saved.get("train_images", 0))
        self._epoch_so_far = tuple(saved.get("epoch_so_far", (0.0, 0)))
        self._rng_to_restore = saved.get("rng")
        self._summed_train_metrics = int(saved.get("processes", 1)) > 1

    def on_train_start(self) -> None:
        self._start_epoch(*self._epoch_so_far)  # Lightning skips on_train_epoch_start when it resumes mid-epoch
        if self._summed_train_metrics and self.global_rank > 0:
            self.train_metrics.reset()  # the checkpoint's counts are all processes' and live on rank 0
        self._summed_train_metrics = False
        if self._rng_to_restore:  # restored last, right before training continues
            set_rng_state(self._rng_to_restore)
            self._rng_to_restore = None

    # ------------------------------------------------------------------ optimisation

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.current_epoch < self.finetune.freeze_backbone_epochs:
            drop_backbone_grads(list(self.named_parameters()), self.head_prefix)

    def finetune_summary(self) -> dict[str, Any] | None:
        """The head, what was frozen and the parameter groups' learning rates (for ``metrics.json``); None if unused."""
        if not self.finetune.active or not self.trainer.optimizers:
            return None
        named = list(self.named_parameters())
        return finetune_summary(named, self.head_prefix, self.finetune, self.trainer.optimizers[0])

    def _total_steps(self) -> int:
        """The run's optimizer steps, counted from the DataModule's training loader.

        Not Lightning's ``estimated_stepping_batches``: it sets up the trainer's loaders while the optimizers are
        configured, before a resumed run's checkpoint gives them their position, so the position is never applied
        and the resumed epoch starts again from its first batch.
        """
        trainer = self.trainer
        if trainer.max_steps and trainer.max_steps > 0:
            return int(trainer.max_steps)
        if trainer.datamodule is None:  # loaders passed to fit() directly: Lightning's estimate is all there is
            return int(trainer.estimated_stepping_batches)
        batches = epoch_steps(trainer.datamodule.train_dataloader(), trainer.limit_train_batches)
        return max(1, math.ceil(batches / trainer.accumulate_grad_batches) * max(1, trainer.max_epochs or 1))

    def configure_optimizers(self) -> Any:
        factory = self.scheduler_factory
        if self.finetune.active:
            lr, weight_decay = optimizer_defaults(self.optimizer_factory)
            groups = parameter_groups(list(self.named_parameters()), self.head_prefix, self.finetune, lr, weight_decay)
            optimizer = self.optimizer_factory(params=groups)
            if isinstance(factory, functools.partial) and isinstance(factory.keywords.get("max_lr"), int | float):
                # OneCycleLR's one max_lr would erase the groups' ratio: one per group, in the same ratio
                factory = functools.partial(factory, max_lr=[factory.keywords["max_lr"] * g["lr"] / lr for g in groups])
        else:
            optimizer = self.optimizer_factory(params=self.parameters())
        if factory is None:
            return optimizer
        if isinstance(factory, functools.partial) and factory.keywords.get("total_steps", 0) is None:
            # a per-run schedule (OneCycleLR) with total_steps: null gets this run's number of optimizer steps
            factory = functools.partial(factory, total_steps=self._total_steps())
        scheduler = factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": self.hparams.scheduler_interval,
                "frequency": self.hparams.scheduler_frequency,
                "monitor": self.hparams.monitor,
            },
        }
