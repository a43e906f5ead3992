"""The tasks of ``train.py`` and ``eval.py``.

Fit, test, write results; and :func:`run_task`, the wrapper Hydra calls, which turns errors into one line (single runs)
or a recorded failure (sweep jobs).
"""

from __future__ import annotations

import csv
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import EarlyStopping
from omegaconf import DictConfig, OmegaConf, open_dict

from . import distributed
from .build import build_datamodule, build_module, build_net, build_trainer, world_size
from .callbacks import EpochTests, LastCheckpoint, TrainingInterrupted
from .callbacks.tensorboard import log_failed_session, log_session
from .callbacks.trackers import finish_trackers
from .checkpoint import check_fits, read_checkpoint, saved_channels_last
from .compose import check_job
from .errors import ConfigError, UserError, fail
from .hydra_runtime import is_multirun, swept_keys
from .io import atomic_open, write_json
from .models import pretrained_stats
from .ranks import is_child, is_rank_zero
from .record import environment, run_config, run_record
from .sweep import archive_previous_attempt, finished_before, objective, was_killed
from .trained import checkpoint_file, datamodule_state, restore_config, run_of
from .tuning import tune

log = logging.getLogger(__name__)


def _metrics(trainer: L.Trainer, prefix: str) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix)}


def output_dir(cfg: DictConfig) -> Path:
    """The run directory Hydra made for this job."""
    return Path(cfg.paths.output_dir)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit the model described by ``cfg``, test it, and write ``metrics.json`` into the run directory.

    ``cfg`` has been checked (:class:`imgbench.compose.ConfigCheck`) before this runs.
    """
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    out = output_dir(cfg)
    dm = build_datamodule(cfg)
    net = build_net(cfg, dm)
    stats = pretrained_stats(net)
    if stats is not None:  # data.normalize=auto follows the weights' own statistics
        dm.use_statistics(*stats, source="the pretrained weights")
    has_val = "val" in dm.split_sizes
    epoch_tests = EpochTests(cfg.test_epochs) if cfg.get("test_epochs") and not cfg.get("tune") else None
    trainer = build_trainer(cfg, has_val, extra_callbacks=[epoch_tests] if epoch_tests else [])
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

    if cfg.get("tune"):  # a finder's suggestion for the next run, instead of training
        found = tune(cfg.tune, trainer, module, dm, out)
        result = {**run_record(cfg), "status": "tuned", "data": dm.name, "tune": found, "environment": environment()}
        if trainer.is_global_zero:
            write_json(out / "metrics.json", result)
        return result

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
    stopper = next((cb for cb in trainer.callbacks if isinstance(cb, EarlyStopping) and cb.stopped_epoch), None)
    if stopper is not None:  # callbacks.early_stopping ended the run before trainer.max_epochs
        result["stopped_early"] = {"epoch": stopper.stopped_epoch, "monitor": stopper.monitor,
                                   "best": float(stopper.best_score)}  # fmt: skip
    per_class = class_metrics(module, dm) if tested else None
    if per_class:
        result["per_class"] = per_class
    finetune = module.finetune_summary() if hasattr(module, "finetune_summary") else None
    if finetune:
        result["finetune"] = finetune
    if epoch_tests is not None:  # {"10": {"test/acc": ...}, ..., "<epochs trained>": the final test's metrics}
        result["test_epochs"] = epoch_tests.with_final(trainer.current_epoch, test_metrics)
    if trainer.is_global_zero:
        log_session(trainer, result, swept_keys())
        write_json(out / "metrics.json", result)
        finish_trackers(trainer, result, out)  # MLflow and W&B: settings, metrics.json and the pictures
        if per_class:
            write_per_class(out / "per_class.csv", per_class)
        log.info("test metrics: %s", _format(test_metrics))
        log.info("run directory: %s", out)
    return result


def class_metrics(module: L.LightningModule, dm: Any) -> dict[str, dict[str, float]] | None:
    """The test split's precision, recall, F1 and support per class, by class name (None: not measured)."""
    values = getattr(module, "per_class", None)
    if not values:
        return None
    names = getattr(dm, "class_names", None) or dm.classes
    if len(names) != len(values["support"]):
        names = [str(i) for i in range(len(values["support"]))]
    return {
        str(name): {k: (int(v[i]) if k == "support" else round(float(v[i]), 6)) for k, v in values.items()}
        for i, name in enumerate(names)
    }


def write_per_class(path: Path, per_class: dict[str, dict[str, float]]) -> None:
    """``per_class.csv``: one row per class (class, precision, recall, f1, support)."""
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "precision", "recall", "f1", "support"])
        for name, row in per_class.items():
            writer.writerow([name, row["precision"], row["recall"], row["f1"], row["support"]])


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


def _last_checkpoint(trainer: L.Trainer) -> str | None:
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, LastCheckpoint) and cb.path.is_file():
            return str(cb.path)
    return None


def _format(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))


# ---------------------------------------------------------------------------- evaluation


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Rebuild the run that wrote ``cfg.ckpt_path`` and test it; writes ``metrics.json`` in this run's directory."""
    ckpt_path = checkpoint_file(cfg.ckpt_path)
    ckpt = read_checkpoint(ckpt_path)
    restore_config(cfg, ckpt)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    saved = datamodule_state(ckpt, dm)
    if saved.get("mean") and saved.get("std"):  # the statistics the run normalised with (pretrained weights' too)
        dm.use_statistics(saved["mean"], saved["std"], source="the checkpoint")
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
    per_class = class_metrics(module, dm)
    if per_class:
        result["per_class"] = per_class
    if getattr(module, "hash_protocol", None):
        result["hash_protocol"] = module.hash_protocol
    run_dir = run_of(ckpt_path)
    if run_dir is not None:
        original = json.loads((run_dir / "metrics.json").read_text()).get("metrics", {})
        same = {k: original.get(k) == v for k, v in metrics.items() if k in original}
        result["matches_run"] = all(same.values()) if same else None
    if trainer.is_global_zero:
        write_json(output_dir(cfg) / "metrics.json", result)
        if per_class:
            write_per_class(output_dir(cfg) / "per_class.csv", per_class)
        log.info("test metrics: %s", _format(metrics))
        if result.get("matches_run") is not None:
            log.info("same as the run's metrics.json: %s", "yes" if result["matches_run"] else "NO")
    return result


# ---------------------------------------------------------------------------- the task wrapper


def run_task(fn: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig) -> float | None:
    """Run ``fn(cfg)`` (train or evaluate) in the run directory Hydra made; returns ``optimized_metric``.

    Single run: a :class:`UserError` ends it with one line and exit status 2; other errors keep their traceback.
    Sweep job: any error is logged and recorded in the job's ``metrics.json`` (status ``failed``) and the sweep
    goes on; :class:`imgbench.sweep.SweepReport` reports the failures and exits non-zero at the end. With
    ``sweep.skip_finished=true`` a job whose earlier attempt finished (same overrides) is not run again.
    """
    return objective(_run(fn, cfg), cfg.get("optimized_metric"))


def _run(fn: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig) -> dict[str, Any] | None:
    out = Path(cfg.paths.output_dir)
    multirun = is_multirun()
    # Under DDP every process runs this; only global rank 0 writes. The other ranks of a torchrun/SLURM job read the
    # same files and so take the same decision (rank 0 only ever moves them towards "run again").
    writer = is_rank_zero()
    if multirun and OmegaConf.select(cfg, "sweep.skip_finished"):
        previous = finished_before(out)
        if previous is not None:
            log.info("skipping %s: it finished before (sweep.skip_finished=true)", out)
            return previous
        if was_killed(out):  # an attempt died with a checkpoint: continue it rather than start over
            log.info("resuming the unfinished job in %s", out)
            with open_dict(cfg):
                cfg.resume = str(out)
    if not cfg.get("resume") and writer:
        archive_previous_attempt(out)
    try:
        if writer:
            write_json(out / "metrics.json", {**run_record(cfg), "status": "running"})
        job = HydraConfig.get().job if multirun else None
        if job is not None and job.num and not is_child():  # the sweep checked its first job before it started
            check_job(cfg, str(job.config_name))
        with distributed.job(out, cfg.get("resume")):  # DDP: the processes Lightning starts run this same job
            return fn(cfg)
    except TrainingInterrupted as e:
        if writer:
            write_json(out / "metrics.json", {**run_record(cfg), "status": "interrupted", "error": str(e)})
            print(f"imgbench: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except Exception as e:
        log.error("%s: %s", type(e).__name__, e, exc_info=not isinstance(e, UserError))
        if writer:
            _record_failure(out, cfg, e)
        if multirun:
            return None
        if isinstance(e, UserError):
            if not writer:  # a DDP rank > 0: the log line above says it, rank 0 prints the one line
                sys.exit(2)
            fail(e)
        raise


def _record_failure(out: Path, cfg: DictConfig, error: BaseException) -> None:
    try:
        record = run_record(cfg)
    except Exception:  # never hide the original error
        record = {}
    write_json(out / "metrics.json", {**record, "status": "failed", "error": f"{type(error).__name__}: {error}"})
    tensorboard = OmegaConf.select(cfg, "logger.tensorboard", default=None)
    if record and tensorboard is not None:  # the failure as a failed session in TensorBoard's HParams
        try:
            log_dir = Path(str(tensorboard.save_dir)) / str(tensorboard.name) / str(tensorboard.get("version") or "")
            log_failed_session(log_dir, record, swept_keys())
        except Exception as e:  # never hide the original error
            log.warning("could not record the failure in TensorBoard: %s", e)
