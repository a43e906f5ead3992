"""What ``train.py`` and ``eval.py`` do: build the parts from a composed config, fit, test, write results."""

from __future__ import annotations

import logging
import platform
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from .callbacks import LastCheckpoint
from .checkpoint import CONFIG_KEY, check_fits, read_checkpoint
from .config import to_plain, validate
from .data.datamodules import InMemoryDataModule
from .distributed import use_job_launcher
from .errors import ConfigError
from .hardware import resolve_channels_last, resolve_precision
from .io import write_json
from .modules import HashClassifier, ImageClassifier, has_hash_codes

log = logging.getLogger(__name__)
RUN_KEYS = ("data", "model", "optimizer", "scheduler", "module", "seed", "monitor", "monitor_mode")


def model_name(model_cfg: DictConfig) -> str:
    """The registry name of a model config (its factory's name)."""
    return str(model_cfg["_target_"]).rsplit(".", 1)[-1]


def build_datamodule(cfg: DictConfig) -> InMemoryDataModule:
    dm = instantiate(cfg.data, _convert_="object")
    dm.setup()
    return dm


def build_net(cfg: DictConfig, dm: InMemoryDataModule) -> torch.nn.Module:
    c, h, w = dm.image_shape
    return instantiate(cfg.model, num_classes=dm.num_classes, in_channels=c, image_size=(h, w))


def build_module(
    cfg: DictConfig,
    net: torch.nn.Module,
    num_classes: int,
    input_shape: tuple[int, ...] | None = None,
    processes: int = 1,
    saved_layout: bool | None = None,
) -> ImageClassifier:
    """The LightningModule for ``net`` with the optimizer and scheduler of ``cfg``.

    ``module.channels_last=auto`` becomes ``saved_layout`` when continuing from a checkpoint (its run's choice, so a
    resumed or evaluated run computes exactly as the original); otherwise imgbench.hardware decides, timing both
    layouts on a CPU for ``input_shape`` (C, H, W) in single-process runs."""
    optimizer = instantiate(cfg.optimizer)
    scheduler, interval, frequency = None, "epoch", 1
    if cfg.get("scheduler") is not None:
        sched = to_plain(cfg.scheduler)
        interval = sched.pop("interval", "epoch")
        frequency = sched.pop("frequency", 1)
        sched.pop("monitor", None)
        scheduler = instantiate(sched)
    module_cfg = to_plain(cfg.get("module") or {})
    hash_cfg = module_cfg.pop("hash", None) or {}
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
    cls, extra = (HashClassifier, hash_cfg) if has_hash_codes(net) else (ImageClassifier, {})
    return cls(
        net,
        num_classes=num_classes,
        optimizer=optimizer,
        scheduler=scheduler,
        scheduler_interval=interval,
        scheduler_frequency=frequency,
        monitor=(cfg.get("scheduler") or {}).get("monitor") or cfg.get("monitor", "val/acc"),
        **extra,
        **module_cfg,
    )


def _layout_cache(cfg: DictConfig) -> Path | None:
    cache_dir = OmegaConf.select(cfg, "paths.cache_dir", default=None, throw_on_missing=False)
    return Path(str(cache_dir)) / "channels_last.json" if cache_dir else None


def build_trainer(cfg: DictConfig, has_val: bool, **overrides: Any) -> L.Trainer:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
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


def run_config(cfg: DictConfig) -> dict[str, Any]:
    """The part of the config that defines the model and its data, as stored in checkpoints: resolved (so that
    values that depended on the command line, like study A's hash bits, stay what was trained), except the
    references to ``paths``, which eval.py resolves on the machine where it runs."""

    def keep_paths(resolved: Any, raw: Any) -> Any:
        if isinstance(resolved, dict) and isinstance(raw, dict):
            return {k: keep_paths(v, raw.get(k)) for k, v in resolved.items()}
        return raw if isinstance(raw, str) and "${paths." in raw else resolved

    return {
        k: keep_paths(to_plain(cfg[k]), to_plain(cfg[k], resolve=False)) if isinstance(cfg[k], DictConfig) else cfg[k]
        for k in RUN_KEYS
        if k in cfg
    }


def run_record(cfg: DictConfig) -> dict[str, Any]:
    """What identifies a run in reports: its overrides, config-group choices and flattened config."""
    from .sweep import hydra_cfg, job_overrides

    hc = hydra_cfg()
    return {
        "model": model_name(cfg.model) if cfg.get("model") is not None else None,
        "data": None,
        "seed": cfg.get("seed"),
        "overrides": job_overrides(),
        "choices": {k: v for k, v in to_plain(hc.runtime.choices).items() if not k.startswith("hydra/")} if hc else {},
        "reference": OmegaConf.select(cfg, "report.reference"),
        "config": flat_config(cfg),
    }


def flat_config(cfg: DictConfig) -> dict[str, Any]:
    """The run-defining part of the config as ``{"trainer.max_epochs": 10, ...}`` (plain scalars)."""
    plain = {k: to_plain(cfg[k]) if isinstance(cfg[k], DictConfig) else cfg[k] for k in RUN_KEYS if k in cfg}
    plain["trainer"] = {
        k: v for k, v in to_plain(cfg.trainer).items() if not k.startswith("_") and k != "default_root_dir"
    }
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            flat[prefix] = value if value is None or isinstance(value, int | float | str | bool) else str(value)

    walk("", plain)
    return flat


def _metrics(trainer: L.Trainer, prefix: str) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix)}


def output_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit the model described by ``cfg``, test it, and write ``metrics.json`` into the run directory."""
    validate(cfg, "train")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    out = output_dir(cfg)
    dm = build_datamodule(cfg)
    net = build_net(cfg, dm)
    has_val = "val" in dm.splits
    trainer = build_trainer(cfg, has_val)
    processes = world_size(trainer)
    ckpt_path, ckpt = start_checkpoint(cfg)
    module = build_module(
        cfg, net, dm.num_classes, dm.image_shape, processes=processes, saved_layout=saved_channels_last(ckpt)
    )
    if ckpt is not None:
        check_fits(ckpt, module, ckpt_path)
    module.run_config = run_config(cfg)
    if isinstance(module.run_config.get("module"), dict):  # resumes and eval.py rebuild the layout that was chosen
        module.run_config["module"]["channels_last"] = module.memory_format == torch.channels_last
    per_process = dm.per_process_batch_size(processes)  # one line now if the batch does not split
    if processes > 1 and cfg.trainer.get("sync_batchnorm") and trainer.strategy.root_device.type == "cpu":
        raise ConfigError("trainer.sync_batchnorm=true needs GPUs (torch's SyncBatchNorm); set it to false on CPUs")
    if processes > 1:
        log.info(
            "%d processes; data.batch_size=%d is the global batch: %d per process",
            processes,
            dm.batch_size,
            per_process,
        )

    fit_seconds = 0.0
    if cfg.get("train", True):
        t0 = time.perf_counter()
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
        fit_seconds = time.perf_counter() - t0

    val_best = trainer.callback_metrics.get("val/acc_best")  # read before testing resets the metrics
    test_metrics: dict[str, float] = {}
    tested = None
    if cfg.get("test", True):
        ckpt = None  # "last": the weights in memory are the final weights (== checkpoints/last.ckpt)
        tested = "last"
        if (
            cfg.get("test_ckpt") == "best"
            and trainer.checkpoint_callback
            and trainer.checkpoint_callback.best_model_path
        ):
            ckpt, tested = trainer.checkpoint_callback.best_model_path, "best"
        trainer.test(module, datamodule=dm, ckpt_path=ckpt, verbose=False)
        test_metrics = _metrics(trainer, "test/")

    result: dict[str, Any] = {
        **run_record(cfg),
        "status": "finished",
        "data": dm.name,
        "metrics": {
            **test_metrics,
            **({"val/acc_best": float(val_best)} if val_best is not None else {}),
        },
        "params": module.num_params,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "train_seconds": round(module.train_seconds, 3),
        "fit_seconds": round(fit_seconds, 3),
        "train_images_per_sec": round(module.train_images / module.train_seconds, 1) if module.train_seconds else None,
        "splits": dm.split_sizes,
        "processes": processes,
        "batch_size": dm.batch_size,
        "tested_weights": tested,
        "checkpoint": _last_checkpoint(trainer),
        "precision": str(trainer.precision),
        "channels_last": module.memory_format == torch.channels_last,
        "environment": environment(),
    }
    if getattr(module, "hash_protocol", None):
        result["hash_protocol"] = module.hash_protocol
    if trainer.is_global_zero:
        log_hparams(trainer, result)
        write_json(out / "metrics.json", result)
        log.info("test metrics: %s", _format(test_metrics))
        log.info("run directory: %s", out)
    return result


def log_hparams(trainer: L.Trainer, result: dict[str, Any]) -> None:
    """The run's settings and final metrics in TensorBoard's HParams tab (one entry per run of a sweep)."""
    params = {k: v for k, v in result["config"].items() if v is not None}
    params.update({f"choice/{k}": v for k, v in result["choices"].items() if v is not None})
    metrics = {k: v for k, v in result["metrics"].items()}
    metrics.update({"params": result["params"], "train_seconds": result["train_seconds"]})
    for logger in trainer.loggers:
        if isinstance(logger, L.pytorch.loggers.TensorBoardLogger):
            logger.log_hyperparams(params, metrics=metrics)
            logger.finalize("success")


def start_checkpoint(cfg: DictConfig) -> tuple[str | None, dict[str, Any] | None]:
    """The checkpoint ``fit`` continues from (``resume=<run dir>``'s last.ckpt, or ``ckpt_path``), read."""
    path = cfg.get("ckpt_path")
    if cfg.get("resume"):
        last = Path(cfg.resume) / "checkpoints" / LastCheckpoint.FILE
        if not last.is_file():
            log.info("resume: %s has no checkpoint yet, training from the start in that directory", cfg.resume)
            return None, None
        path = str(last)
        log.info("resuming from %s", path)
    if path is None:
        return None, None
    return str(path), read_checkpoint(path)


def saved_channels_last(ckpt: dict[str, Any] | None) -> bool | None:
    """The memory layout the checkpoint's run trained in (``None``: not recorded)."""
    value = (((ckpt or {}).get(CONFIG_KEY) or {}).get("config") or {}).get("module", {}).get("channels_last")
    return value if isinstance(value, bool) else None


def _last_checkpoint(trainer: L.Trainer) -> str | None:
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, LastCheckpoint) and cb.path.is_file():
            return str(cb.path)
    return None


def _format(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))


def environment() -> dict[str, Any]:
    """Versions and hardware a result depends on."""
    return {
        "torch": torch.__version__,
        "lightning": L.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------------------- evaluation


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Rebuild the run that wrote ``cfg.ckpt_path`` and test it; writes ``metrics.json`` in this run's directory."""
    validate(cfg, "eval")
    ckpt_path = Path(cfg.ckpt_path)
    if ckpt_path.is_dir():  # a run directory: its final weights
        ckpt_path = ckpt_path / "checkpoints" / "last.ckpt"
    ckpt = read_checkpoint(ckpt_path)
    stored = OmegaConf.create(ckpt[CONFIG_KEY]["config"])
    with open_dict(cfg):
        for key in RUN_KEYS:
            if key in stored and (key not in cfg or cfg[key] is None):
                cfg[key] = stored[key]
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    net = build_net(cfg, dm)
    module = build_module(cfg, net, dm.num_classes, dm.image_shape, saved_layout=saved_channels_last(ckpt))
    check_fits(ckpt, module, ckpt_path)
    module.load_state_dict(ckpt["state_dict"])
    trainer = build_trainer(cfg, has_val=False, enable_checkpointing=False)
    trainer.test(module, datamodule=dm, verbose=False)
    metrics = _metrics(trainer, "test/")
    result = {
        **run_record(cfg),
        "status": "finished",
        "checkpoint": str(ckpt_path),
        "data": dm.name,
        "metrics": metrics,
        "splits": {"test": dm.split_sizes["test"]},
        "environment": environment(),
    }
    if getattr(module, "hash_protocol", None):
        result["hash_protocol"] = module.hash_protocol
    train_metrics = ckpt_path.parent.parent / "metrics.json"
    if train_metrics.is_file():
        import json

        original = json.loads(train_metrics.read_text()).get("metrics", {})
        same = {k: original.get(k) == v for k, v in metrics.items() if k in original}
        result["matches_run"] = all(same.values()) if same else None
    if trainer.is_global_zero:
        write_json(output_dir(cfg) / "metrics.json", result)
        log.info("test metrics: %s", _format(metrics))
        if result.get("matches_run") is not None:
            log.info("same as the run's metrics.json: %s", "yes" if result["matches_run"] else "NO")
    return result
