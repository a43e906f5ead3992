"""A trained run, rebuilt from its checkpoint: what ``eval.py``, ``predict.py`` and ``export.py`` start from.

The checkpoint holds the run's config (model, data, module, seed), the DataModule's state (class names, the
normalisation it used, the image shape) and the weights; this module reads it and rebuilds the parts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf, open_dict

from .build import build_module, instantiate_net
from .callbacks import LastCheckpoint
from .checkpoint import CONFIG_KEY, check_fits, read_checkpoint, saved_channels_last
from .config import instantiate_part
from .data import BatchedDataModule
from .errors import CheckpointError
from .record import RUN_KEYS


def checkpoint_file(path: str | os.PathLike) -> Path:
    """The checkpoint a ``ckpt_path`` names: the file itself, or a run directory's final weights."""
    path = Path(path)
    return path / "checkpoints" / LastCheckpoint.FILE if path.is_dir() else path


def run_of(ckpt_path: Path) -> Path | None:
    """The run directory a checkpoint belongs to (``<run dir>/checkpoints/<file>``), when it looks like one."""
    run = ckpt_path.parent.parent
    return run if ckpt_path.parent.name == "checkpoints" and (run / "metrics.json").is_file() else None


def restore_config(cfg: DictConfig, ckpt: dict[str, Any]) -> DictConfig:
    """Fill ``cfg`` with the checkpoint's run config (model, data, module, seed, ...) where it has none.

    Keys given on this command line (``data.batch_size=...``) win over the stored ones.
    """
    stored = OmegaConf.create(ckpt[CONFIG_KEY]["config"])
    with open_dict(cfg):
        for key in RUN_KEYS:
            if key in stored and (key not in cfg or cfg[key] is None):
                cfg[key] = stored[key]
        if "_target_" not in (cfg.get("module") or {}):  # a checkpoint from before conf/module/ existed
            hashing = "hash_bits" in cfg.model and cfg.model.hash_bits
            legacy = {"_target_": f"imgbench.modules.{'HashClassifier' if hashing else 'ImageClassifier'}"}
            kept = {k: v for k, v in (cfg.get("module") or {}).items() if hashing or k != "hash"}
            cfg.module = OmegaConf.merge(legacy, kept)
        if cfg.model.get("pretrained"):
            cfg.model.pretrained = None  # the checkpoint holds the weights: the pretrained file is not needed again
    return cfg


def datamodule_state(ckpt: dict[str, Any], dm: BatchedDataModule) -> dict[str, Any]:
    """The DataModule's entry of the checkpoint (class names, mean, std, image shape), or {} when absent."""
    return ckpt.get(type(dm).__qualname__) or {}


@dataclass
class TrainedRun:
    """A run rebuilt from its checkpoint.

    Attributes:
        cfg: the run's config, with this command's overrides.
        ckpt_path: the checkpoint file.
        ckpt: its contents.
        datamodule: the run's DataModule, constructed (no data read), normalising with the run's statistics.
        module: the LightningModule with the checkpoint's weights, in eval mode, on the CPU.
        run_dir: the directory of the run that wrote the checkpoint, when it is one.
    """

    cfg: DictConfig
    ckpt_path: Path
    ckpt: dict[str, Any]
    datamodule: BatchedDataModule
    module: L.LightningModule
    run_dir: Path | None

    @property
    def classes(self) -> list[str]:
        """The readable class names (ImageNet's words for its wnids), one per output."""
        names = getattr(self.datamodule, "class_names", None) or self.datamodule.classes
        return [str(c) for c in names]


def load_trained(cfg: DictConfig) -> TrainedRun:
    """Rebuild the run that wrote ``cfg.ckpt_path`` from the checkpoint alone (its data is not read).

    Args:
        cfg: a config with ``ckpt_path`` (a ``.ckpt`` file or a run directory); missing run keys are filled in.

    Returns:
        The run, its weights loaded.

    Raises:
        CheckpointError: the checkpoint is missing, not imgbench's, or lacks the DataModule state this needs.
    """
    ckpt_path = checkpoint_file(cfg.ckpt_path)
    ckpt = read_checkpoint(ckpt_path)
    restore_config(cfg, ckpt)
    dm: BatchedDataModule = instantiate_part(cfg.data, _convert_="all")
    state = datamodule_state(ckpt, dm)
    if not state.get("classes") or not state.get("image_shape"):
        raise CheckpointError(
            f"{ckpt_path} does not record its data's classes and image shape (written by an older imgbench); "
            f"re-test it with eval.py, which reads the data"
        )
    dm.restore(state)
    c, h, w = state["image_shape"]
    net = instantiate_net(cfg, len(state["classes"]), (c, h, w))
    module = build_module(cfg, net, len(state["classes"]), (c, h, w), saved_layout=saved_channels_last(ckpt))
    check_fits(ckpt, module, ckpt_path)
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    return TrainedRun(cfg, ckpt_path, ckpt, dm, module, run_of(ckpt_path))
