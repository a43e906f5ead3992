"""Checking a command before it runs: Hydra composes, imgbench checks the composed config once.

:class:`ConfigCheck` is a Hydra callback (``conf/hydra/default.yaml``). For a single run it checks the config Hydra
composed for it; for a sweep it composes every job the sweeper will launch, as the launcher will, and checks each,
so that a bad value in the tenth job stops the sweep before the first starts. Either way nothing is created before
the check passes: no run directory, no sweep folder. A problem is one line and exit status 2.

Composition errors (an unknown option or key, a value of the wrong type for the schema) are raised by Hydra before
any callback runs; :func:`describe_composition_error` turns them into the same kind of line from the exceptions'
own fields (the missing config file and its group's options, the key OmegaConf names), never from their text.
"""

from __future__ import annotations

import copy
import difflib
import importlib.metadata
import importlib.util
import itertools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError
from omegaconf.nodes import BooleanNode, FloatNode, IntegerNode, StringNode

from .config import DATA_ARGS, MODULE_RUN_ARGS, accepted_parameters, resolve_target, validate
from .errors import ConfigError, UserError, fail
from .groups import CONFIG_GROUPS
from .models.registry import is_model_factory, model_arguments
from .paths import CONF_DIR
from .ranks import is_child

# what a schema's node type means in an error line
_NODE_WORDS = {IntegerNode: "an integer", FloatNode: "a number", BooleanNode: "true or false", StringNode: "a string"}
# sweepers that optimise the number train.py returns (the basic sweeper ignores it)
_OPTIMISING_SWEEPERS = ("optuna", "nevergrad", "ax")
# the trackers' loggers and the package each needs (the trackers extra)
_TRACKER_PACKAGES = {"MLFlowLogger": "mlflow", "WandbLogger": "wandb"}
# the tracking URI schemes MLflow opens ("": a plain path); plugins add theirs (mlflow.tracking_store entry points)
_MLFLOW_SCHEMES = {"", "file", "http", "https", "databricks", "sqlite", "postgresql", "mysql", "mssql"}


# ---------------------------------------------------------------------------- composition errors


def describe_composition_error(error: BaseException, config_name: str, overrides: Sequence[str]) -> str:
    """One line for an exception Hydra raised while composing ``config_name`` with ``overrides``."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file:
        group, _, option = str(error.missing_cfg_file).rpartition("/")
        if group and error.options is not None:
            close = difflib.get_close_matches(option, error.options, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            return f"unknown {group} '{option}'{hint}; choose one of: {', '.join(error.options)} (conf/{group}/)"
        return f"no config '{error.missing_cfg_file}' in conf/; check the name"
    cause = error.__cause__ if isinstance(error.__cause__, OmegaConfBaseException) else error
    if isinstance(cause, ValidationError) and cause.full_key:
        words = next((w for t, w in _NODE_WORDS.items() if isinstance(cause.child_node, t)), None)
        if words is None and cause.object_type is not None:  # the node is not created yet: ask the schema
            words = _schema_words(cause.object_type, str(cause.key))
        if words:
            return f"{cause.full_key} must be {words}, got {cause.value!r}"
        return f"{cause.full_key}: {str(cause.msg).splitlines()[0]}"
    if isinstance(cause, ConfigKeyError | ConfigAttributeError) and cause.full_key:
        return unknown_key_message(config_name, overrides, str(cause.full_key))
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    reason = f" ({str(error.__cause__).splitlines()[0]})" if error.__cause__ else ""
    return f"{first}{reason}"


def _schema_words(schema: type, key: str) -> str | None:
    annotation = getattr(schema, "__annotations__", {}).get(key)
    names = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}
    return names.get(str(annotation).split(" ")[0]) if annotation else None


def unknown_key_message(config_name: str, overrides: Sequence[str], key: str) -> str:
    """The line for an override of a key that the composed config does not have.

    The closest existing key, the parameters of the node's ``_target_`` that the config file does not list yet (add
    those with ``+``).
    """
    groups = [o for o in overrides if "=" in o and _is_group_override(o) and not o.startswith(("+", "~"))]
    try:
        base = compose_config(config_name, groups)
    except (HydraException, OmegaConfBaseException):
        return f"unknown config key '{key}'; to add a new key write +{key}=..."
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(base, parent_key) if parent_key else base
    known = [str(k) for k in parent] if isinstance(parent, DictConfig) else []
    accepted: list[str] = []
    if isinstance(parent, DictConfig) and "_target_" in parent:  # the target's parameters are what may be set
        try:
            target = resolve_target(str(parent["_target_"]), parent_key)
            model = is_model_factory(target)
            names, open_ended = model_arguments(target.__name__) if model else accepted_parameters(target)
        except UserError:
            names, open_ended = set(), True
        if not open_ended:
            accepted = sorted(names - {"params", *MODULE_RUN_ARGS, *DATA_ARGS})
    if leaf in accepted:  # a real option that the config file just does not list
        return f"'{key}' is not in the config yet; add it with +{key}=..."
    close = difflib.get_close_matches(leaf, known + accepted, n=1, cutoff=0.6)
    if close:
        prefix = f"{parent_key}." if parent_key else ""
        return f"unknown config key '{key}' (did you mean '{prefix}{close[0]}'?)"
    if accepted:
        return f"unknown config key '{key}'; {parent_key} accepts: {', '.join(accepted)}"
    return f"unknown config key '{key}'; to add a new key write +{key}=..."


def compose_config(config_name: str, overrides: Sequence[str]) -> DictConfig:
    """``config_name`` composed with ``overrides`` through Hydra's compose API, with its ``hydra`` node."""
    if GlobalHydra.instance().is_initialized():  # inside a running Hydra app: use its config search path
        return compose(config_name, overrides=list(overrides), return_hydra_config=True)
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name=config_name):
        return compose(config_name, overrides=list(overrides), return_hydra_config=True)


# ---------------------------------------------------------------------------- checking jobs


def check_job(cfg: DictConfig, task: str, validator: Callable[[DictConfig, str], None] = validate) -> None:
    """Every check of one job's composed config (with its ``hydra`` node).

    Args:
        cfg: the job's config.
        task: ``train`` or ``eval``.
        validator: the check of the config's values (:func:`imgbench.config.validate`).

    Raises:
        ConfigError: the first problem.
    """
    validator(cfg, task)
    sweeper = str(OmegaConf.select(cfg, "hydra.sweeper._target_", default="") or "").lower()
    metric = cfg.get("optimized_metric")
    optimising = any(s in sweeper for s in _OPTIMISING_SWEEPERS)
    if optimising and str(metric).startswith("test/") and not cfg.get("test", True):
        raise ConfigError(
            f"the sweeper optimises optimized_metric={metric} but test=false runs no test; "
            "set optimized_metric=val/acc_best or test=true"
        )
    check_writable(Path(_run_root(cfg)))
    check_launcher(cfg)
    check_trackers(cfg)


def _run_root(cfg: DictConfig) -> str:
    """Where this command writes: the run or sweep directory given on the command line, else ``paths.log_dir``."""
    hydra_overrides = OmegaConf.select(cfg, "hydra.overrides.hydra", default=None) or []
    given = [o.split("=", 1)[1] for o in hydra_overrides if o.startswith(("hydra.sweep.dir=", "hydra.run.dir="))]
    return given[-1].strip("'\"") if given else str(OmegaConf.select(cfg, "paths.log_dir"))


def sweep_jobs(cfg: DictConfig) -> list[list[str]]:
    """The override lists of the jobs a sweep will launch.

    Every combination of its discrete sweeps (the sweeper's params and the command line). Continuous sweeps (Optuna's
    intervals) keep their config value.
    """
    params = [f"{k}={v}" for k, v in (OmegaConf.select(cfg, "hydra.sweeper.params") or {}).items()]
    loader = GlobalHydra.instance().config_loader() if GlobalHydra.instance().is_initialized() else None
    parser = OverridesParser.create(config_loader=loader)
    values: dict[str, list[str]] = {}
    for o in parser.parse_overrides([*params, *cfg.hydra.overrides.task]):
        key = o.get_key_element()
        if o.is_sweep_override():
            if o.is_discrete_sweep():
                values[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            values[key] = [f"{key}={o.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*values.values())]


def check_sweep(
    cfg: DictConfig,
    task: str,
    compose_job: Callable[[list[str]], DictConfig],
    validator: Callable[[DictConfig, str], None] = validate,
) -> int:
    """Compose every job of the sweep ``cfg`` describes and check the first one in full; returns the job count.

    Every job must compose (its group options exist, its keys exist, its values have the schema's types), so that a
    typo stops the sweep before anything runs. The values of the other jobs are checked by each job when it starts
    (:func:`imgbench.run.run_task`): a job with an impossible value fails alone, is recorded as failed, and the sweep
    goes on, as any other failing job does.

    Hydra composes a job from its config-group choices, then sets its plain values on the result. The check does
    the same with fewer compositions: once per distinct set of group choices, then each job's values applied to a
    copy of that (a study of 70 seeded jobs over 7 ablation rows is composed 7 times, not 70).
    """
    jobs = sweep_jobs(cfg)
    parser = OverridesParser.create()
    composed: dict[tuple[str, ...], DictConfig] = {}
    for i, overrides in enumerate(jobs):
        groups = tuple(o for o in overrides if _is_group_override(o))
        values = [o for o in overrides if not _is_group_override(o)]
        try:
            if groups not in composed:
                composed[groups] = compose_job(list(groups))
            job_cfg = copy.deepcopy(composed[groups])
            with open_dict(job_cfg.hydra):
                job_cfg.hydra.overrides.task = list(overrides)
            # Hydra's own last step of composing a job (a static helper of its config loader)
            ConfigLoaderImpl._apply_overrides_to_config(parser.parse_overrides(values), job_cfg)
        except (HydraException, OmegaConfBaseException) as e:
            raise ConfigError(describe_composition_error(e, task, overrides)) from None
        if i == 0:
            check_job(job_cfg, task, validator)
    return len(jobs)


def _is_group_override(override: str) -> bool:
    """Whether an override chooses a config-group option (``model=lenet5``, ``hydra/launcher=...``)."""
    key = override.split("=", 1)[0].lstrip("+~").split("@", 1)[0]
    return key in CONFIG_GROUPS or "/" in key


class ConfigCheck(Callback):
    """Hydra callback that checks the run, or the sweep (:func:`check_sweep`), before anything is created.

    A DDP process started by imgbench's launcher has been checked by its parent and skips this.
    """

    def on_run_start(self, config: DictConfig, config_name: str | None = None, **kwargs: Any) -> None:
        if not is_child():
            _or_exit(lambda: check_job(config, config_name or "train"))

    def on_multirun_start(self, config: DictConfig, config_name: str | None = None, **kwargs: Any) -> None:
        loader = GlobalHydra.instance().config_loader()
        _or_exit(lambda: check_sweep(config, config_name or "train", lambda o: loader.load_sweep_config(config, o)))


def _or_exit(check: Callable[[], Any]) -> None:
    try:
        check()
    except UserError as e:
        fail(e)  # SystemExit: Hydra turns a callback's ordinary exceptions into warnings, not this


def precheck(config_name: str, argv: Sequence[str], validator: Callable[[DictConfig, str], None] = validate) -> None:
    """Check a command line as ``python <config_name>.py <argv>`` would, without running or creating anything.

    Composes the run (or every job of the sweep) through Hydra's compose API and applies the same checks as
    :class:`ConfigCheck`; prints one line and exits 2 on the first problem.

    Args:
        config_name: ``train`` or ``eval``.
        argv: the command line after the script name.
        validator: the check of one composed config (:func:`imgbench.config.validate`).
    """
    args = [a for a in argv if not a.startswith("-")]
    multirun = "-m" in argv or "--multirun" in argv
    try:
        try:
            master = compose_config(config_name, [a for a in args if not _is_sweep(a)] if multirun else args)
        except (HydraException, OmegaConfBaseException) as e:
            raise ConfigError(describe_composition_error(e, config_name, args)) from None
        if master.hydra.mode == RunMode.MULTIRUN or multirun:
            with open_dict(master):
                master.hydra.overrides.task = [a for a in args if not a.startswith("hydra")]
            check_sweep(master, config_name, lambda o: compose_config(config_name, [*_hydra_args(args), *o]), validator)
        else:
            HydraConfig.instance().set_config(master)
            check_job(master, config_name, validator)
    except UserError as e:
        fail(e)
    finally:
        HydraConfig.instance().cfg = None


def _is_sweep(arg: str) -> bool:
    try:
        return OverridesParser.create().parse_overrides([arg])[0].is_sweep_override()
    except HydraException:
        return False


def _hydra_args(args: Sequence[str]) -> list[str]:
    return [a for a in args if a.lstrip("+~").startswith("hydra")]


# ---------------------------------------------------------------------------- where runs go, how they launch


def check_writable(path: Path) -> None:
    """The folder runs are written to must be creatable and writable (one line otherwise)."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot write run directories under {path} ({probe} is not writable); "
            "set paths.log_dir to a writable folder"
        )


def check_launcher(cfg: DictConfig) -> None:
    """A SLURM submission of a DDP run must start one task per process.

    As many nodes as ``trainer.num_nodes`` and ``trainer.devices`` tasks on each (Lightning's SLURMEnvironment then
    takes ranks and addresses from SLURM).
    """
    launcher = OmegaConf.select(cfg, "hydra.launcher")
    if launcher is None or not str(launcher.get("_target_", "")).endswith("SlurmLauncher"):
        return
    devices = OmegaConf.select(cfg, "trainer.devices")
    num_nodes = OmegaConf.select(cfg, "trainer.num_nodes", default=1)
    strategy = OmegaConf.select(cfg, "trainer.strategy")
    strategy = str(strategy.get("_target_", "")) if isinstance(strategy, DictConfig) else str(strategy or "")
    if not (num_nodes > 1 or (isinstance(devices, int) and devices > 1) or "ddp" in strategy.lower()):
        return  # one process: any SLURM allocation works
    if not isinstance(devices, int) or isinstance(devices, bool) or devices < 1:
        raise ConfigError(
            f"trainer.devices={devices} cannot size a SLURM job; set trainer.devices to the processes (GPUs) per "
            f"node, e.g. trainer.devices=4"
        )
    fix = (
        f"use hydra/launcher=submitit_slurm_ddp (it takes both from the trainer) or set hydra.launcher.nodes="
        f"{num_nodes} hydra.launcher.tasks_per_node={devices} hydra.launcher.gpus_per_node={devices}"
    )
    try:
        nodes, tasks = int(launcher.nodes), int(launcher.tasks_per_node)
    except (OmegaConfBaseException, TypeError, ValueError) as e:
        raise ConfigError(f"hydra.launcher.nodes / tasks_per_node do not resolve ({e}); {fix}") from None
    if (nodes, tasks) != (num_nodes, devices):
        raise ConfigError(
            f"hydra.launcher asks SLURM for {nodes} node(s) x {tasks} task(s) but the trainer runs {num_nodes} "
            f"node(s) x {devices} process(es) (trainer.num_nodes x trainer.devices); {fix}"
        )


def check_trackers(cfg: DictConfig) -> None:
    """A tracker logger (MLflow, W&B) needs its package, and MLflow a tracking URI it can open (one line otherwise).

    Nothing is contacted: a server that is down shows when the run starts.
    """
    for name, node in (cfg.get("logger") or {}).items():
        kind = str((node or {}).get("_target_", "")).rsplit(".", 1)[-1]
        package = _TRACKER_PACKAGES.get(kind)
        if package is None:
            continue
        if importlib.util.find_spec(package) is None:
            raise ConfigError(f"logger.{name} needs {package}, which is not installed: pip install -e '.[trackers]'")
        uri = node.get("tracking_uri") if kind == "MLFlowLogger" else None
        if uri is None:
            continue
        schemes = _MLFLOW_SCHEMES | {e.name for e in importlib.metadata.entry_points(group="mlflow.tracking_store")}
        if urlsplit(str(uri)).scheme.split("+")[0].lower() not in schemes:  # postgresql+psycopg2: the dialect
            raise ConfigError(
                f"logger.{name}.tracking_uri={uri} is not a store MLflow opens; give a folder (file:/path/mlruns), "
                f"a database (sqlite:///path/mlflow.db) or a tracking server (http://host:5000)"
            )
