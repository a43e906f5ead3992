"""The one check of a composed config.

Every mistake becomes one line that names the key, the value and the fix, raised before any data is loaded.

Hydra's structured configs (:mod:`imgbench.schema`) have already checked the top-level keys and the types they
declare while composing. This module checks what a schema cannot say:

- keys: every node with a ``_target_`` against the parameters of what it names (a misspelt ``trainer.max_epoch``
  or ``optimizer.learning_rate`` is caught wherever it was written: command line, experiment or group file);
  a model's keys against the arguments its registry entry accepts;
- values: the ranges that cannot work (a learning rate <= 0, ``max_epochs=0``, a step scheduler's
  ``step_size=0``, a negative seed, ...);
- the parts themselves, built as far as that costs nothing: the DataModule (its constructor checks its options,
  no file is read), the optimizer and scheduler on a dummy parameter, and the model on PyTorch's meta device with
  the input the data declares (so an unknown activation or stem is caught before any data loads).
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .epoch_tests import check_test_epochs
from .errors import ArgumentError, ConfigError, UserError
from .inner_steps import check_inner_steps
from .models.registry import is_model_factory, model_arguments
from .modules.classifier import check_class_weights
from .schema import TrainSchema
from .tuning import TUNERS

# keys that may stand at the top of a composed train.yaml / eval.yaml
TOP_LEVEL_KEYS = {f.name for f in fields(TrainSchema)}
# tasks with top-level options of their own: task -> (those keys, the check of their values); imgbench.export adds
# export.py's when imported
TASK_OPTIONS: dict[str, tuple[set[str], Callable[[DictConfig], None]]] = {}
HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
SCHEDULER_LIGHTNING_KEYS = {"interval", "frequency", "monitor"}
# what a model gets from the data, never from its config
DATA_ARGS = ("num_classes", "in_channels", "image_size")
# what the run passes to the LightningModule itself (not config keys)
MODULE_RUN_ARGS = {"self", "net", "num_classes", "optimizer", "scheduler", "scheduler_interval", "scheduler_frequency"}
MODULE_RUN_ARGS.add("monitor")
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
# the model configs (and inputs) that built on the meta device in this process
_BUILT_ON_META: set[tuple[str, str]] = set()
# a model built on the meta device for the check, when the data does not declare its image size before loading
NOMINAL_IMAGE_SIZE = (224, 224)


def _whole_at_least_1(v: float) -> bool:
    return v >= 1 and int(v) == v


# (key, predicate, what it must be): numbers that cannot work, caught before anything is built
VALUE_RULES: list[tuple[str, Callable[[float], bool], str]] = [
    ("seed", lambda v: 0 <= v < 2**32 and int(v) == v, "a whole number in 0..4294967295"),
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
    ("scheduler.step_size", _whole_at_least_1, "a whole number >= 1 (epochs, or steps with interval: step)"),
    ("scheduler.gamma", lambda v: v > 0, "> 0"),
    ("scheduler.T_max", _whole_at_least_1, "a whole number >= 1"),
    ("scheduler.eta_min", lambda v: v >= 0, ">= 0"),
    ("scheduler.factor", lambda v: 0 < v < 1, "in (0, 1)"),
    ("scheduler.patience", lambda v: v >= 0 and int(v) == v, "a whole number >= 0"),
    ("scheduler.min_lr", lambda v: v >= 0, ">= 0"),
    ("scheduler.total_steps", _whole_at_least_1, "a whole number >= 1 (or null: the run's steps)"),
    ("scheduler.pct_start", lambda v: 0 < v < 1, "in (0, 1)"),
    ("scheduler.warmup_epochs", lambda v: v >= 0, ">= 0"),
    ("scheduler.start_factor", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("scheduler.min_factor", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("scheduler.frequency", _whole_at_least_1, "a whole number >= 1"),
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
    """The parameter names ``fn`` accepts and whether it also takes ``**kwargs`` that go somewhere unknown.

    For classes, the ``__init__`` chain is followed as long as each passes ``**kwargs`` on.
    """
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
    """The callable a ``_target_`` names; one line when it cannot be imported."""
    try:
        return get_object(path)
    except Exception as e:  # ImportError, AttributeError, ... from the named module
        raise ConfigError(
            f"{where}._target_ '{path}' cannot be imported ({type(e).__name__}); check the spelling"
        ) from None


def _check_keys(node: DictConfig, where: str, accepted: set[str], owner: str, extra_ok: Iterable[str] = ()) -> None:
    allowed = accepted | HYDRA_KEYS | set(extra_ok)
    for key in node:
        if key not in allowed:
            raise ConfigError(
                f"unknown key '{where}.{key}'{_suggest(str(key), accepted)}; {owner} accepts: "
                f"{', '.join(sorted(accepted - {'self'}))}"
            )


def check_target_keys(node: DictConfig, where: str, extra_ok: Iterable[str] = ()) -> Callable:
    """Every key of ``node`` must be a parameter of its ``_target_``; returns the target."""
    fn = resolve_target(str(node["_target_"]), where)
    accepted, open_ended = accepted_parameters(fn)
    if not open_ended:
        _check_keys(node, where, accepted, fn.__qualname__, extra_ok)
    return fn


def _group_node(cfg: DictConfig, group: str) -> DictConfig | None:
    node = cfg.get(group)
    if node is None:
        return None
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise ConfigError(f"'{group}' must be a config with a _target_; pick one with {group}=<name>")
    return node


def _number(cfg: DictConfig, key: str) -> float | None:
    value = _get(cfg, key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    return value


def validate(cfg: DictConfig, task: str = "train") -> None:
    """Raise :class:`ConfigError` (one line) for the first problem found in a composed config.

    Args:
        cfg: the composed config (with or without its ``hydra`` node).
        task: ``train``, ``eval`` (eval.py takes model and data from the checkpoint) or a task of
            :data:`TASK_OPTIONS`.

    Raises:
        ConfigError: the first problem, with the key and the fix.
    """
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
    missing = sorted(_missing_keys(job))
    if missing:
        example = "<run dir>/checkpoints/last.ckpt" if missing[0] == "ckpt_path" else "..."
        raise ConfigError(f"{missing[0]} has no value; add {missing[0]}={example} to the command line")
    task_keys, check_task = TASK_OPTIONS.get(task, (set(), None))
    for key in job:
        if key not in TOP_LEVEL_KEYS | task_keys:
            raise ConfigError(
                f"unknown top-level key '{key}'{_suggest(str(key), TOP_LEVEL_KEYS | task_keys)}; "
                f"see conf/{task}.yaml for the keys that exist"
            )
    if check_task is not None:  # its own options; like eval.py it takes the model and data from the checkpoint
        check_task(job)
        return
    if task == "eval":
        return
    _check_keys_of_groups(job)
    _check_values(job)
    _check_parts(job)


def _missing_keys(node: DictConfig | ListConfig, prefix: str = "") -> list[str]:
    """Keys whose value is ``???``, without resolving interpolations (some need a running Hydra job)."""
    found = []
    for key in node if isinstance(node, DictConfig) else range(len(node)):
        full = f"{prefix}{key}" if isinstance(node, DictConfig) else f"{prefix.rstrip('.')}[{key}]"
        if OmegaConf.is_missing(node, key):
            found.append(full)
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig | ListConfig) and not child._is_none() and not child._is_interpolation():
            found += _missing_keys(child, f"{full}.")
    return found


def _check_keys_of_groups(cfg: DictConfig) -> None:
    model = _group_node(cfg, "model")
    fn = resolve_target(str(model["_target_"]), "model") if model is not None else None
    if fn is None or not is_model_factory(fn):
        raise ConfigError(f"model._target_ must be a registered model factory (imgbench.models), got {fn}")
    for key in DATA_ARGS:
        if key in model:
            raise ConfigError(f"model.{key} comes from the data; remove it from the model config")
    accepted, open_ended = model_arguments(fn.__name__)
    if not open_ended:
        _check_keys(model, "model", accepted - set(DATA_ARGS), fn.__name__)

    module = _group_node(cfg, "module")
    if module is None:
        raise ConfigError("'module' must be a config with a _target_; pick one with module=classifier")
    target = resolve_target(str(module["_target_"]), "module")
    if not (inspect.isclass(target) and issubclass(target, L.LightningModule)):
        raise ConfigError(f"module._target_ must name a LightningModule, got '{module['_target_']}'")
    accepted, open_ended = accepted_parameters(target)
    if not open_ended:
        _check_keys(module, "module", accepted - MODULE_RUN_ARGS, target.__qualname__)

    for group in ("data", "optimizer", "trainer"):
        node = _group_node(cfg, group)
        if node is not None:
            check_target_keys(node, group)
    scheduler = _group_node(cfg, "scheduler")
    if scheduler is not None:
        check_target_keys(scheduler, "scheduler", SCHEDULER_LIGHTNING_KEYS)
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


def _check_values(cfg: DictConfig) -> None:
    for key, ok, requirement in VALUE_RULES:
        value = _number(cfg, key)
        if value is not None and not ok(value):
            raise ConfigError(f"{key} must be {requirement}, got {value}")
    seed = _get(cfg, "seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    max_epochs = _number(cfg, "trainer.max_epochs")
    max_steps = _number(cfg, "trainer.max_steps")
    if max_epochs == -1 and (max_steps is None or max_steps <= 0):
        raise ConfigError("trainer.max_epochs=-1 trains forever; also set trainer.max_steps to a positive number")
    precision = _get(cfg, "trainer.precision")
    if precision is not None and str(precision) not in PRECISIONS:
        raise ConfigError(f"trainer.precision '{precision}' is not one of {', '.join(sorted(PRECISIONS))}")
    check_class_weights(_get(cfg, "module.class_weights"))
    channels_last = _get(cfg, "module.channels_last")
    if channels_last is not None and not isinstance(channels_last, bool) and channels_last != "auto":
        raise ConfigError(f"module.channels_last must be true, false or auto, got {channels_last!r}")
    if cfg.get("test_ckpt") not in ("last", "best"):
        raise ConfigError(
            f"test_ckpt must be 'last' (the final weights) or 'best' (best {cfg.get('monitor')}), "
            f"got '{cfg.get('test_ckpt')}'"
        )
    if cfg.get("tune") not in (None, *TUNERS):
        raise ConfigError(f"tune must be one of {', '.join(TUNERS)} (or null), got '{cfg.get('tune')}'")
    if cfg.get("monitor_mode") not in ("min", "max"):
        raise ConfigError(f"monitor_mode must be 'min' or 'max', got '{cfg.get('monitor_mode')}'")
    if cfg.get("scheduler") is not None:
        interval = _get(cfg, "scheduler.interval", "epoch")
        if interval not in ("epoch", "step"):
            raise ConfigError(f"scheduler.interval must be 'epoch' or 'step', got '{interval}'")
        milestones = _get(cfg, "scheduler.milestones")
        if milestones is not None and (
            not all(isinstance(m, int) and m >= 1 for m in milestones) or list(milestones) != sorted(set(milestones))
        ):
            raise ConfigError(f"scheduler.milestones must be increasing whole numbers >= 1, got {list(milestones)}")
    if not cfg.get("train") and not cfg.get("test"):
        raise ConfigError("train=false and test=false leave nothing to do; set one of them to true")
    check_test_epochs(cfg)  # tests at chosen epochs of the run (imgbench.epoch_tests)
    check_inner_steps(cfg)  # several optimizer steps per training_step call (imgbench.inner_steps)


def instantiate_part(node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(node, **kwargs)``, with what the target raised for bad input unwrapped.

    A :class:`UserError` (one line) or a model's :class:`ArgumentError` (``model.<argument>``).
    """
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, UserError):
            raise e.__cause__ from None
        error = model_error(e)
        if error is None:
            raise
        raise error from None


def _check_parts(cfg: DictConfig) -> None:
    """Build what costs nothing to build: the DataModule (no data read), optimizer, scheduler, model on meta."""
    try:
        dm = instantiate_part(cfg.data, _convert_="all")
    except (TypeError, ValueError, InstantiationException) as e:
        raise ConfigError(f"data: {e}") from None
    optimizer = check_optimizer(cfg)
    check_scheduler(cfg, optimizer)
    declared = dm.declared_inputs()
    check_model_builds(cfg.model, declared)


def check_optimizer(cfg: DictConfig) -> torch.optim.Optimizer:
    """The optimizer of ``cfg`` on one dummy parameter (torch checks its own arguments)."""
    try:
        return instantiate_part(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    except (TypeError, ValueError, InstantiationException) as e:
        raise ConfigError(f"optimizer: {e}; check the optimizer.* values") from None


def scheduler_parts(cfg: DictConfig, total_steps: int | None = None) -> tuple[Any, str, int]:
    """The scheduler of ``cfg`` as a factory of an optimizer, with when Lightning steps it.

    Args:
        cfg: the run's config.
        total_steps: fill a ``total_steps: null`` (OneCycleLR) with this; None: leave it for the run.

    Returns:
        The factory (None without a scheduler), its interval (``epoch`` or ``step``) and frequency; the
        ``interval``, ``frequency`` and ``monitor`` keys are Lightning's, not the scheduler's.
    """
    if cfg.get("scheduler") is None:
        return None, "epoch", 1
    sched = to_plain(cfg.scheduler)
    interval, frequency = sched.pop("interval", "epoch"), sched.pop("frequency", 1)
    sched.pop("monitor", None)
    if total_steps is not None and "total_steps" in sched and sched["total_steps"] is None:
        sched["total_steps"] = total_steps
    return instantiate_part(sched), interval, frequency


def check_scheduler(cfg: DictConfig, optimizer: torch.optim.Optimizer) -> None:
    """The scheduler of ``cfg`` on the dummy optimizer, stepped a few times (some schedulers fail only then)."""
    if cfg.get("scheduler") is None:
        return
    try:
        factory, _, _ = scheduler_parts(cfg, total_steps=100)
        scheduler = factory(optimizer)
        plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        for _ in range(3):
            optimizer.step()
            scheduler.step(0.0) if plateau else scheduler.step()
    except (TypeError, ValueError, ZeroDivisionError, InstantiationException) as e:
        raise ConfigError(f"scheduler: {type(e).__name__}: {e}; check the scheduler.* values") from None


def check_model_builds(model_cfg: DictConfig, declared: dict[str, Any]) -> None:
    """Build the model on the meta device (no memory, no weights read) for the input the data declares.

    Whether the model suits the data's image size is left to the run, which knows the size once the data is loaded
    (:func:`model_error`); everything else about the model's arguments is checked here.

    Raises:
        ConfigError: a model argument is wrong, named as ``model.<argument>``.
    """
    size = declared.get("image_size")
    kwargs = {
        "num_classes": declared.get("num_classes") or 10,
        "in_channels": declared.get("in_channels") or 3,
        "image_size": tuple(size) if size else NOMINAL_IMAGE_SIZE,
    }
    if "pretrained" in model_cfg:
        kwargs["pretrained"] = None  # the file is checked below; reading it is the run's work
        pretrained = model_cfg.get("pretrained")
        path = Path(os.path.expanduser(str(pretrained)))
        if isinstance(pretrained, str) and path.suffix and not path.exists():
            raise ConfigError(f"model.pretrained: {pretrained} does not exist; pass an existing weights file")
    key = (OmegaConf.to_yaml(model_cfg, resolve=True), repr(sorted(kwargs.items())))
    if key in _BUILT_ON_META:  # a sweep's jobs often share their model (seeds, optimizer values)
        return
    try:
        with torch.device("meta"):
            instantiate(model_cfg, **kwargs)
    except InstantiationException as e:  # Hydra wraps what the factory raised
        error = model_error(e)
        if error is not None and not (isinstance(e.__cause__, ArgumentError) and e.__cause__.argument in DATA_ARGS):
            raise error from None
    _BUILT_ON_META.add(key)


def model_error(error: InstantiationException) -> ConfigError | None:
    """The one line for a model that could not be built from its config (None: not the config's fault)."""
    cause = error.__cause__
    if isinstance(cause, ArgumentError):
        if cause.argument in DATA_ARGS:  # the data's shape does not suit the model
            return ConfigError(f"{cause}; choose another model, or data of a size it takes")
        if isinstance(cause, TypeError):  # an option the model does not take (models.hub.UnknownOptionError)
            return ConfigError(f"model.{cause.argument}: {cause}")
        return ConfigError(f"model.{cause.argument}: {cause}; set model.{cause.argument}=<value>")
    if isinstance(cause, UserError):
        return ConfigError(str(cause))
    return None


def to_plain(cfg: DictConfig | ListConfig, resolve: bool = True) -> Any:
    """A config as plain Python containers."""
    return OmegaConf.to_container(cfg, resolve=resolve)
