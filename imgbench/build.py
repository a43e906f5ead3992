"""Building a run's parts from its composed config with ``hydra.utils.instantiate``.

The DataModule, the network, the LightningModule (named by ``conf/module/``) with its optimizer and scheduler, and the
Trainer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .config import instantiate_part, scheduler_parts, to_plain
from .data import BatchedDataModule
from .distributed import use_job_launcher
from .errors import ConfigError
from .hardware import resolve_channels_last, resolve_precision

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig) -> BatchedDataModule:
    """The DataModule of ``cfg.data``, set up (its data loaded)."""
    dm = instantiate_part(cfg.data, _convert_="all")
    dm.train_group = int(OmegaConf.select(cfg, "module.inner_steps") or 1)  # the module's steps per loader item
    dm.setup()
    return dm


def build_net(cfg: DictConfig, dm: BatchedDataModule) -> torch.nn.Module:
    """The network of ``cfg.model`` for the data's classes and image shape."""
    return instantiate_net(cfg, dm.num_classes, dm.image_shape)


def instantiate_net(cfg: DictConfig, num_classes: int, image_shape: tuple[int, int, int]) -> torch.nn.Module:
    """The network of ``cfg.model`` for ``num_classes`` classes and ``(C, H, W)`` images."""
    c, h, w = image_shape
    return instantiate_part(cfg.model, num_classes=num_classes, in_channels=c, image_size=(h, w))


def build_module(
    cfg: DictConfig,
    net: torch.nn.Module,
    num_classes: int,
    input_shape: tuple[int, ...] | None = None,
    processes: int = 1,
    saved_layout: bool | None = None,
) -> L.LightningModule:
    """The LightningModule of ``cfg.module`` around ``net``, with the optimizer and scheduler of ``cfg``.

    Args:
        cfg: the run's config.
        net: the network.
        num_classes: classes of the data.
        input_shape: (C, H, W) of a training image, for timing the memory layouts (``channels_last=auto``).
        processes: processes of the run (DDP processes on CPUs always take NCHW: they must agree).
        saved_layout: the layout a checkpoint's run chose (resumes and eval.py compute exactly as the original).
    """
    if processes > 1 and (OmegaConf.select(cfg, "module.inner_steps") or 1) > 1:
        raise ConfigError(
            f"module.inner_steps > 1 takes one process (DDP's gradient sync runs once per training_step), got "
            f"{processes}; set module.inner_steps=1 or trainer.devices=1"
        )
    optimizer = instantiate(cfg.optimizer)
    scheduler, interval, frequency = scheduler_parts(cfg)
    module_cfg = to_plain(cfg.module)
    if module_cfg.get("channels_last") == "auto" and saved_layout is not None:
        module_cfg["channels_last"] = saved_layout
    elif module_cfg.get("channels_last") == "auto":
        module_cfg["channels_last"] = resolve_channels_last(
            "auto",
            net,
            input_shape=input_shape,
            batch_size=int(OmegaConf.select(cfg, "data.batch_size") or 32),
            accelerator=OmegaConf.select(cfg, "trainer.accelerator"),
            processes=processes,
            cache_file=_layout_cache(cfg),
        )
    return instantiate_part(
        module_cfg,
        _convert_="all",  # plain containers in the module's hyperparameters: checkpoints stay weights-only
        net=net,
        num_classes=num_classes,
        optimizer=optimizer,
        scheduler=scheduler,
        scheduler_interval=interval,
        scheduler_frequency=frequency,
        monitor=(cfg.get("scheduler") or {}).get("monitor") or cfg.get("monitor", "val/acc"),
    )


def _layout_cache(cfg: DictConfig) -> Path | None:
    cache_dir = OmegaConf.select(cfg, "paths.cache_dir", default=None, throw_on_missing=False)
    return Path(str(cache_dir)) / "channels_last.json" if cache_dir else None


def build_trainer(
    cfg: DictConfig, has_val: bool, extra_callbacks: Sequence[L.Callback] = (), **overrides: Any
) -> L.Trainer:
    """The Trainer of ``cfg.trainer`` with the run's callbacks and loggers.

    Args:
        cfg: the run's config.
        has_val: whether the data has a validation split (without one, only the last checkpoint is kept).
        extra_callbacks: callbacks the run adds to those of ``cfg.callbacks`` (driven by other keys).
        **overrides: Trainer arguments that replace the config's.
    """
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    callbacks += extra_callbacks
    if not has_val:
        for cb in callbacks:
            if isinstance(cb, L.pytorch.callbacks.ModelCheckpoint):
                cb.monitor = None  # no validation split: keep the last checkpoint only
                cb.save_top_k = 1
    loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values() if lg is not None]
    kwargs: dict[str, Any] = {"callbacks": callbacks, "logger": loggers or False}
    if not has_val:
        kwargs["limit_val_batches"] = 0
    if str(cfg.trainer.get("precision")) == "auto":
        kwargs["precision"] = resolve_precision("auto", cfg.trainer.get("accelerator"))
        log.info("trainer.precision=auto -> %s", kwargs["precision"])
    kwargs.update(overrides)
    trainer = instantiate(cfg.trainer, **kwargs)
    use_job_launcher(trainer)  # DDP: the processes Lightning starts run this job, in this run directory
    return trainer


def world_size(trainer: L.Trainer) -> int:
    """The number of processes ``trainer`` runs (known before it launches them)."""
    return int(trainer.num_nodes) * int(trainer.num_devices)
