"""The check of ``test_epochs`` (tests at chosen epochs inside one run), before any data loads.

Testing the weights after epoch 10 of a 100-epoch run stands for a 10-epoch run only when nothing in the first 10
epochs depends on the run's length. The learning-rate schedule is what usually does: cosine annealing over the
run (``T_max: ${trainer.max_epochs}``), a one-cycle or warm-up-cosine schedule over the run's steps
(``total_steps: null``). So is an average of the weights that is tested in place of the weights (EMA), and a
module whose test measures more than :class:`~imgbench.modules.ImageClassifier` does (study A's retrieval
protocol). Each is refused in one line; the callback that tests is :class:`imgbench.callbacks.EpochTests`.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from hydra.utils import get_object
from lightning.pytorch.callbacks import WeightAveraging
from omegaconf import DictConfig, ListConfig, OmegaConf

from .errors import ConfigError
from .groups import options
from .modules.classifier import ImageClassifier
from .paths import CONF_DIR

# the settings that are the run's length, as a message names them
RUN_LENGTH = {"trainer.max_epochs": "trainer.max_epochs", "trainer.max_steps": "trainer.max_steps"}
# the hooks of a test that EpochTests reproduces (a module overriding one tests differently)
TEST_HOOKS = ("on_test_start", "on_test_epoch_start", "test_step", "_eval_step", "predict_logits", "on_test_epoch_end")
# a plain ${key} reference, also one inside a resolver's arguments (${mul:${trainer.max_epochs},2})
_REFERENCE = re.compile(r"\$\{([^${}:]+)\}")


def check_test_epochs(cfg: DictConfig) -> None:
    """Refuse a ``test_epochs`` that cannot work, or whose tests would not equal separate runs.

    Entries are finished-epoch counts: whole numbers >= 1, increasing, at most ``trainer.max_epochs`` (an entry
    equal to it is the run's final test, not tested twice).

    Args:
        cfg: the composed config (without its ``hydra`` node is fine).

    Raises:
        ConfigError: one line naming ``test_epochs``, the setting in the way and the fix.
    """
    value = cfg.get("test_epochs")
    if not value:
        return
    if not isinstance(value, ListConfig):
        raise ConfigError(f"test_epochs must be a list of epochs, e.g. [10, 30, 60]; got {value!r}")
    epochs = OmegaConf.to_container(value)
    if not all(isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in epochs):
        raise ConfigError(f"test_epochs entries must be whole numbers of epochs >= 1, e.g. [10, 30, 60]; got {epochs}")
    if epochs != sorted(set(epochs)):
        raise ConfigError(f"test_epochs must be increasing, without repeats, e.g. [10, 30, 60]; got {epochs}")
    max_epochs = OmegaConf.select(cfg, "trainer.max_epochs")
    if not isinstance(max_epochs, int) or max_epochs < 1:
        raise ConfigError(f"test_epochs counts epochs: set trainer.max_epochs (got {max_epochs}) or test_epochs=[]")
    if epochs[-1] > max_epochs:
        raise ConfigError(
            f"test_epochs entry {epochs[-1]} is beyond trainer.max_epochs={max_epochs}; drop it (the end is tested "
            f"anyway) or raise trainer.max_epochs"
        )
    for key in ("train", "test"):
        if not cfg.get(key, True):
            raise ConfigError(
                f"test_epochs tests while training and at the end, but {key}=false; set {key}=true or test_epochs=[]"
            )
    if cfg.get("test_ckpt") == "best":
        raise ConfigError(
            "test_epochs tests the weights of each epoch, but test_ckpt=best tests another epoch's weights at the end; "
            "set test_ckpt=last or test_epochs=[]"
        )
    _check_module(cfg)
    _check_callbacks(cfg)
    _check_schedule(cfg)


def _check_module(cfg: DictConfig) -> None:
    module = get_object(str(cfg.module._target_))
    if not all(getattr(module, hook, None) is getattr(ImageClassifier, hook) for hook in TEST_HOOKS):
        raise ConfigError(
            f"test_epochs tests as ImageClassifier does, but {module.__name__} (module._target_) tests otherwise "
            f"(e.g. study A's retrieval protocol): use separate runs, or set test_epochs=[]"
        )


def _check_callbacks(cfg: DictConfig) -> None:
    for name, node in (cfg.get("callbacks") or {}).items():
        target = get_object(str(node._target_)) if node is not None and "_target_" in node else None
        if inspect.isclass(target) and issubclass(target, WeightAveraging):
            raise ConfigError(
                f"test_epochs tests the trained weights, but callbacks.{name} tests an average of them, swapped in at "
                f"the end of the run only: remove it (~callbacks.{name}), use separate runs, or set test_epochs=[]"
            )


def _check_schedule(cfg: DictConfig) -> None:
    scheduler = OmegaConf.to_container(cfg.scheduler, resolve=False) if cfg.get("scheduler") is not None else None
    if scheduler is None:
        return
    trainer = OmegaConf.to_container(cfg.trainer, resolve=False) if cfg.get("trainer") is not None else {}
    length = dict(RUN_LENGTH)
    for key in RUN_LENGTH:  # what the length itself follows: trainer.max_epochs: ${recipe.epochs}
        length |= {ref: f"{ref} (as {key} does)" for ref in _references(trainer.get(key.split(".")[1]))}
    reasons = length_dependence(scheduler, length)
    if reasons:
        keys = ", ".join(f"scheduler.{key}=<number>" for key in reasons)
        free = "|".join(o for o in options("scheduler") if not length_dependence(_option(o), RUN_LENGTH))
        raise ConfigError(
            f"test_epochs needs a learning-rate schedule that does not depend on the run's length; "
            f"{_scheduler_name(str(scheduler.get('_target_')))}'s {' and '.join(reasons.values())}: give it a "
            f"fixed length ({keys}), use separate runs, or choose scheduler={free}"
        )


def length_dependence(scheduler: dict[str, Any], length: dict[str, str]) -> dict[str, str]:
    """The settings of a scheduler config that follow the run's length, each with how.

    Args:
        scheduler: the scheduler's config, interpolations unresolved (``T_max: ${trainer.max_epochs}``).
        length: the keys that are (or give) the run's length -> how to name them in a message.

    Returns:
        ``{key: "T_max follows trainer.max_epochs"}``; empty when the schedule is the same for any run length.
    """
    reasons = {}
    for key, value in scheduler.items():
        if key == "total_steps" and value is None:  # filled with the run's optimizer steps
            reasons[key] = "total_steps is null (the run's optimizer steps)"
            continue
        refs = set().union(*(_references(v) for v in (value if isinstance(value, list) else [value])))
        followed = sorted(ref for ref in refs if ref in length)
        if followed:
            reasons[key] = f"{key} follows {length[followed[0]]}"
    return reasons


def _references(value: Any) -> set[str]:
    return {ref.strip() for ref in _REFERENCE.findall(value)} if isinstance(value, str) else set()


def _option(name: str) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.load(CONF_DIR / "scheduler" / f"{name}.yaml"), resolve=False)


def _scheduler_name(target: str) -> str:
    """``scheduler=<option>`` for the option of conf/scheduler/ with this target, else the target's class name."""
    for name in options("scheduler"):
        if _option(name).get("_target_") == target:
            return f"scheduler={name}"
    return f"scheduler {target.rsplit('.', 1)[-1]}"
