"""What a run writes about itself.

The config stored in its checkpoints, and the fields of ``metrics.json`` that identify it in reports (overrides, group
choices, flattened config, versions).
"""

from __future__ import annotations

import platform
import subprocess
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from .config import to_plain
from .hardware import cpu_name
from .hydra_runtime import hydra_cfg, job_overrides
from .paths import REPO_ROOT

# the parts of a config that define the model and its data (stored in checkpoints; eval.py rebuilds from them)
RUN_KEYS = ("data", "model", "optimizer", "scheduler", "module", "seed", "monitor", "monitor_mode")


def model_name(model_cfg: DictConfig) -> str:
    """The registry name of a model config (its factory's name); for timm's and torchvision's, ``timm/<name>``."""
    name = str(model_cfg["_target_"]).rsplit(".", 1)[-1]
    return f"{name}/{model_cfg['name']}" if model_cfg.get("name") else name


def run_config(cfg: DictConfig) -> dict[str, Any]:
    """The part of the config that defines the model and its data, as stored in checkpoints.

    Resolved (so that values that depended on the command line stay what was trained), except the references to
    ``paths``, which eval.py resolves on the machine where it runs.
    """

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
    hc = hydra_cfg()
    return {
        "model": model_name(cfg.model) if cfg.get("model") is not None else None,
        "data": None,
        "seed": cfg.get("seed"),
        "overrides": job_overrides(),
        "choices": {k: v for k, v in to_plain(hc.runtime.choices).items() if not k.startswith("hydra/")} if hc else {},
        "reference": OmegaConf.select(cfg, "report.reference"),
        "stand_in": bool(OmegaConf.select(cfg, "report.stand_in", default=False)),  # fills the paper's cells
        "config": flat_config(cfg),
    }


def flat_config(cfg: DictConfig) -> dict[str, Any]:
    """The run-defining part of the config as ``{"trainer.max_epochs": 10, ...}`` (plain scalars)."""
    plain = {k: to_plain(cfg[k]) if isinstance(cfg[k], DictConfig) else cfg[k] for k in RUN_KEYS if k in cfg}
    if cfg.get("trainer") is not None:  # export.py has no trainer
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


def environment() -> dict[str, Any]:
    """Versions and hardware a result depends on."""
    return {
        "torch": torch.__version__,
        "lightning": L.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else cpu_name(),
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "commit": source_commit(),
    }


def source_commit() -> str | None:
    """The git commit of imgbench's checkout (``<sha>+dirty`` with uncommitted changes), or None outside one."""
    try:
        head = _git("rev-parse", "HEAD")
        changed = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):  # no git, or not a checkout (an installed package)
        return None
    return head + ("+dirty" if changed else "")


def _git(*args: str) -> str:
    command = ["git", "-C", str(REPO_ROOT), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
