"""The check of ``module.inner_steps`` (several optimizer steps per ``training_step`` call), before any data loads.

With ``inner_steps: k`` the training loader hands the module groups of ``k`` batches and the module steps the
optimizer itself (:mod:`imgbench.modules.inner_steps`). Lightning then counts loader items, not optimizer steps, in
what it does per item, and leaves to the module what it does only under automatic optimization. Each setting that
would then do something else than at ``k = 1`` is refused in one line with its fix:

- data that is not held in memory (a streamed loader hands out one batch at a time);
- ``trainer.accumulate_grad_batches`` and ``trainer.gradient_clip_val`` (automatic optimization only);
- a ReduceLROnPlateau scheduler, and a weight average updated per loader item (``callbacks.ema``);
- step counts that are not multiples of ``k`` (``trainer.log_every_n_steps``, ``trainer.max_steps``, a callback's
  ``every_n_train_steps``), and ``trainer.val_check_interval`` / ``trainer.limit_train_batches`` given as a number of
  batches (they would count groups).

More than one process is refused when the trainer is built (``imgbench.build.build_module``).
"""

from __future__ import annotations

from hydra.utils import get_object
from lightning.pytorch.callbacks import WeightAveraging
from omegaconf import DictConfig, OmegaConf

from .data import InMemoryDataModule
from .errors import ConfigError
from .modules.inner_steps import check_inner_steps_value

# Trainer settings that only automatic optimization applies
AUTOMATIC_ONLY = {"trainer.accumulate_grad_batches": 1, "trainer.gradient_clip_val": 0}
# Trainer settings that count batches when they are whole numbers (Lightning counts loader items)
BATCH_COUNTS = ("trainer.val_check_interval", "trainer.limit_train_batches")


def check_inner_steps(cfg: DictConfig) -> None:
    """Refuse a ``module.inner_steps`` that is not a whole number >= 1, or a setting it cannot honour.

    Args:
        cfg: the composed config (without its ``hydra`` node is fine).

    Raises:
        ConfigError: one line naming ``module.inner_steps``, the setting in the way and the fix.
    """
    k = OmegaConf.select(cfg, "module.inner_steps")
    if k is None:
        return
    check_inner_steps_value(k)
    if k == 1:
        return
    off = "or set module.inner_steps=1"
    data_target = OmegaConf.select(cfg, "data._target_")
    if data_target and not issubclass(get_object(data_target), InMemoryDataModule):
        raise ConfigError(
            f"module.inner_steps={k} needs data held in memory ({data_target} streams one batch at a time); {off[3:]}"
        )
    for key, neutral in AUTOMATIC_ONLY.items():
        value = OmegaConf.select(cfg, key)
        if value not in (None, neutral):
            raise ConfigError(f"{key}={value} is not applied with module.inner_steps={k}; set {key}={neutral} {off}")
    scheduler = str(OmegaConf.select(cfg, "scheduler._target_") or "")
    if scheduler.endswith("ReduceLROnPlateau"):
        raise ConfigError(f"scheduler {scheduler} is not stepped with module.inner_steps={k}; choose another {off}")
    for name, node in (cfg.get("callbacks") or {}).items():
        target = node.get("_target_") if isinstance(node, DictConfig) else None
        if target and issubclass(get_object(target), WeightAveraging):
            raise ConfigError(
                f"callbacks.{name} averages the weights once per loader item, a group of module.inner_steps={k} "
                f"steps; remove it (callbacks.{name}=null) {off}"
            )
    counts = {key: OmegaConf.select(cfg, key) for key in ("trainer.log_every_n_steps", "trainer.max_steps")}
    for name, node in (cfg.get("callbacks") or {}).items():
        if isinstance(node, DictConfig) and "every_n_train_steps" in node:
            counts[f"callbacks.{name}.every_n_train_steps"] = node.every_n_train_steps
    for key, value in counts.items():
        if isinstance(value, int) and value > 0 and value % k:
            raise ConfigError(
                f"{key}={value} is not a multiple of module.inner_steps={k} (steps come {k} at a time); make it "
                f"a multiple of {k} {off}"
            )
    for key in BATCH_COUNTS:
        value = OmegaConf.select(cfg, key)
        if isinstance(value, int) and not isinstance(value, bool):
            raise ConfigError(
                f"{key}={value} would count groups of module.inner_steps={k} batches; give a fraction of the epoch "
                f"(e.g. {key}=0.5) {off}"
            )
