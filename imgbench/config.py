"""Config validation: every mistake a user can make in a composed config becomes one line that names the
key, the bad value and the fix, raised before any data is loaded.

Two kinds of checks:
- keys: top-level keys against the known set, and every node with a ``_target_`` against the parameters
  of the callable it names (so a misspelt ``trainer.max_epoch`` or ``optimizer.learning_rate`` is caught
  wherever it was written: command line, experiment file or config group);
- values: the ranges that cannot work (a learning rate <= 0, ``max_epochs=0``, a batch size < 1, ...).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError

# the config groups of conf/ (each a folder of options)
CONFIG_GROUPS = (
    "model",
    "data",
    "optimizer",
    "scheduler",
    "trainer",
    "callbacks",
    "logger",
    "paths",
    "experiment",
    "ablation",
    "hparams_search",
    "debug",
)
# keys that may stand at the top of a composed train.yaml / eval.yaml
TOP_LEVEL_KEYS = set(CONFIG_GROUPS) | {
    "task_name",
    "tags",
    "seed",
    "ckpt_path",
    "resume",
    "train",
    "test",
    "test_ckpt",
    "monitor",
    "monitor_mode",
    "module",
    "sweep",
    "optimized_metric",
    "report",
}
MODULE_KEYS = {"label_smoothing", "channels_last", "compile", "hash"}
HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
SCHEDULER_LIGHTNING_KEYS = {"interval", "frequency", "monitor"}
PRECISIONS = {
    "32",
    "32-true",
    "16",
    "16-mixed",
    "bf16",
    "bf16-mixed",
    "bf16-true",
    "16-true",
    "64",
    "64-true",
    "transformer-engine",
    "auto",
}


def _whole_at_least_1(v: float) -> bool:
    return v >= 1 and int(v) == v


# (key, predicate, what it must be): numbers that cannot work, caught before anything is built
VALUE_RULES: list[tuple[str, Callable[[float], bool], str]] = [
    ("optimizer.lr", lambda v: v > 0, "> 0"),
    ("optimizer.weight_decay", lambda v: v >= 0, ">= 0"),
    ("optimizer.momentum", lambda v: 0 <= v < 1, "in [0, 1)"),
    (
        "trainer.max_epochs",
        lambda v: v == -1 or _whole_at_least_1(v),
        "a whole number >= 1 (or -1 with trainer.max_steps)",
    ),
    ("data.batch_size", _whole_at_least_1, "a whole number >= 1"),
    ("data.eval_batch_size", _whole_at_least_1, "a whole number >= 1"),
    ("data.steps_per_epoch", _whole_at_least_1, "a whole number >= 1"),
    ("data.val_size", lambda v: v >= 0, ">= 0 (an image count or a fraction)"),
    ("module.label_smoothing", lambda v: 0 <= v < 1, "in [0, 1)"),
]


def _suggest(key: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _get(cfg: DictConfig, key: str, default: Any = None) -> Any:
    try:
        return OmegaConf.select(cfg, key, default=default, throw_on_missing=False)
    except OmegaConfBaseException as e:
        raise ConfigError(f"cannot resolve '{key}': {e}") from None


def accepted_parameters(fn: Callable) -> tuple[set[str], bool]:
    """Parameter names ``fn`` accepts (for classes, along the ``__init__`` chain) and whether it takes **kwargs
    that go somewhere unknown."""
    names: set[str] = set()
    targets = [c.__init__ for c in inspect.getmro(fn) if "__init__" in vars(c)] if inspect.isclass(fn) else [fn]
    for target in targets:
        try:
            params = inspect.signature(target).parameters.values()
        except (TypeError, ValueError):
            return names, True
        has_var_kw = False
        for p in params:
            if p.kind is p.VAR_KEYWORD:
                has_var_kw = True
            elif p.kind is not p.VAR_POSITIONAL:
                names.add(p.name)
        if not has_var_kw:
            return names, False
        if not inspect.isclass(fn):
            return names, True
    return names, True


def resolve_target(path: str, where: str) -> Callable:
    from hydra.utils import get_object

    try:
        return get_object(path)
    except Exception as e:
        raise ConfigError(
            f"{where}._target_ '{path}' cannot be imported ({type(e).__name__}); check the spelling"
        ) from None


def check_target_keys(node: DictConfig, where: str, extra_ok: Iterable[str] = ()) -> Callable:
    """Every key of ``node`` must be a parameter of its ``_target_``."""
    fn = resolve_target(str(node["_target_"]), where)
    accepted, open_ended = accepted_parameters(fn)
    if open_ended:
        return fn
    allowed = accepted | HYDRA_KEYS | set(extra_ok)
    for key in node:
        if key not in allowed:
            raise ConfigError(
                f"unknown key '{where}.{key}'{_suggest(str(key), accepted)}; {fn.__qualname__} accepts: "
                f"{', '.join(sorted(accepted - {'self'}))}"
            )
    return fn


def _check_group(cfg: DictConfig, group: str, extra_ok: Iterable[str] = ()) -> Callable | None:
    node = cfg.get(group)
    if node is None:
        return None
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise ConfigError(f"'{group}' must be a config with a _target_; pick one with {group}=<name>")
    return check_target_keys(node, group, extra_ok)


def _number(cfg: DictConfig, key: str) -> float | None:
    value = _get(cfg, key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    return value


def validate(cfg: DictConfig, task: str = "train") -> None:
    """Raise :class:`ConfigError` (one line) for the first problem found in a composed config."""
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
    missing = sorted(OmegaConf.missing_keys(job))
    if missing:
        example = "<run dir>/checkpoints/last.ckpt" if missing[0] == "ckpt_path" else "..."
        raise ConfigError(f"{missing[0]} has no value; add {missing[0]}={example} to the command line")
    for key in cfg:
        if key not in TOP_LEVEL_KEYS and key != "hydra":
            raise ConfigError(
                f"unknown top-level key '{key}'{_suggest(str(key), TOP_LEVEL_KEYS)}; "
                f"see conf/{task}.yaml for the keys that exist"
            )
    if task == "eval":
        return

    # model: a registered factory
    from .models.registry import is_model_factory

    fn = _check_group(cfg, "model")
    if fn is None or not is_model_factory(fn):
        raise ConfigError(f"model._target_ must be a registered model factory (imgbench.models), got {fn}")
    for key in ("num_classes", "in_channels", "image_size"):
        if key in cfg.model:
            raise ConfigError(f"model.{key} comes from the data; remove it from the model config")

    _check_group(cfg, "data")
    _check_group(cfg, "optimizer")
    if cfg.get("scheduler") is not None:
        _check_group(cfg, "scheduler", SCHEDULER_LIGHTNING_KEYS)
        interval = _get(cfg, "scheduler.interval", "epoch")
        if interval not in ("epoch", "step"):
            raise ConfigError(f"scheduler.interval must be 'epoch' or 'step', got '{interval}'")
    _check_group(cfg, "trainer")
    for group in ("callbacks", "logger"):
        nodes = cfg.get(group)
        if nodes is None:
            continue
        if not isinstance(nodes, DictConfig):
            raise ConfigError(f"'{group}' must be a mapping of name -> config")
        for name, node in nodes.items():
            if node is not None:
                if not isinstance(node, DictConfig) or "_target_" not in node:
                    raise ConfigError(f"{group}.{name} must be a config with a _target_")
                check_target_keys(node, f"{group}.{name}")
    for key in cfg.get("module") or {}:
        if key not in MODULE_KEYS:
            raise ConfigError(
                f"unknown key 'module.{key}'{_suggest(str(key), MODULE_KEYS)}; known: {', '.join(sorted(MODULE_KEYS))}"
            )

    # values
    for key, ok, requirement in VALUE_RULES:
        value = _number(cfg, key)
        if value is not None and not ok(value):
            raise ConfigError(f"{key} must be {requirement}, got {value}")
    max_epochs = _number(cfg, "trainer.max_epochs")
    max_steps = _number(cfg, "trainer.max_steps")
    if max_epochs == -1 and (max_steps is None or max_steps <= 0):
        raise ConfigError("trainer.max_epochs=-1 trains forever; also set trainer.max_steps to a positive number")
    precision = _get(cfg, "trainer.precision")
    if precision is not None and str(precision) not in PRECISIONS:
        raise ConfigError(f"trainer.precision '{precision}' is not one of {', '.join(sorted(PRECISIONS))}")
    channels_last = _get(cfg, "module.channels_last")
    if channels_last is not None and not isinstance(channels_last, bool) and channels_last != "auto":
        raise ConfigError(f"module.channels_last must be true, false or auto, got {channels_last!r}")
    seed = _get(cfg, "seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    test_ckpt = _get(cfg, "test_ckpt", "last")
    if test_ckpt not in ("last", "best"):
        raise ConfigError(
            f"test_ckpt must be 'last' (the final weights) or 'best' (best {cfg.get('monitor')}), got '{test_ckpt}'"
        )
    mode = _get(cfg, "monitor_mode", "max")
    if mode not in ("min", "max"):
        raise ConfigError(f"monitor_mode must be 'min' or 'max', got '{mode}'")


def to_plain(cfg: DictConfig | ListConfig, resolve: bool = True) -> Any:
    """A config as plain Python containers."""
    return OmegaConf.to_container(cfg, resolve=resolve)
