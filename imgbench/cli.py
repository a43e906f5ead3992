"""Glue for the Hydra entry points (``train.py``, ``eval.py``): resolvers, a pre-flight check of the command
line that turns every config mistake into one line before anything runs, and the task wrapper that does
the same for errors found while a run starts."""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .config import CONFIG_GROUPS as GROUPS
from .errors import ConfigError, UserError

log = logging.getLogger("imgbench")

REPO_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = REPO_ROOT / "conf"
# flags after which Hydra only prints (the config, help, ...) and runs nothing: no pre-flight check
_INFO_FLAGS = ("--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc", "--version", "--cfg", "-c")
# flags that take the next argument as their value
_VALUE_FLAGS = (
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--package",
    "-p",
    "--experimental-rerun",
)


# ---------------------------------------------------------------------------- resolvers


_CHECKING = False  # True while precheck composes a command line: nothing may be created then


def unique_dir(path: str) -> str:
    """``path`` if it does not exist yet, else ``path_1``, ``path_2``, ...; the folder is created atomically,
    so two runs started in the same second never share a directory."""
    base = Path(path)
    if _CHECKING:
        return path
    candidate, i = base, 0
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return str(candidate)
        except FileExistsError:
            i += 1
            candidate = base.with_name(f"{base.name}_{i}")


def make_dir(path: str) -> str:
    """``path``, created if missing (for files that other tools open, like an Optuna SQLite study)."""
    Path(path).mkdir(parents=True, exist_ok=True)
    return path


def select(key: object, mapping: dict, default: object) -> object:
    """``${imgbench_select:${hydra:runtime.choices.data},{cifar100:128},48}``: a value that depends on a choice."""
    return mapping.get(key, default)


def register_resolvers() -> None:
    from .distributed import if_rank_zero
    from .sweep import register_resolvers as register_sweep_resolvers

    if not OmegaConf.has_resolver("imgbench_unique_dir"):
        OmegaConf.register_new_resolver("imgbench_unique_dir", unique_dir, use_cache=True)
    if not OmegaConf.has_resolver("imgbench_mkdir"):
        OmegaConf.register_new_resolver("imgbench_mkdir", make_dir)
    if not OmegaConf.has_resolver("imgbench_select"):
        OmegaConf.register_new_resolver("imgbench_select", select)
    if not OmegaConf.has_resolver("imgbench_rank_zero"):  # per process: DDP ranks > 0 write no .hydra/
        OmegaConf.register_new_resolver("imgbench_rank_zero", if_rank_zero)
    register_sweep_resolvers()


class _DropAdverts(logging.Filter):
    """Lightning prints an advertisement for a cloud logger on every run; keep logs to what matters."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def setup_environment() -> None:
    """Called by the entry scripts before Hydra starts."""
    os.environ.setdefault("IMGBENCH_ROOT", str(REPO_ROOT))
    register_resolvers()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropAdverts())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # DDP: the logged accuracies and losses are torchmetrics values, already synchronised over the processes
    warnings.filterwarnings("ignore", message=r".*when logging on epoch level in distributed setting")


# ---------------------------------------------------------------------------- pre-flight check


def options(group: str) -> list[str]:
    """The config files of a group (without the internal ones that start with '_')."""
    folder = CONF_DIR / group
    return sorted(p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_")) if folder.is_dir() else []


def glob_options(group: str, spec: str) -> list[str]:
    """The options of ``group`` that a sweeper's ``glob(pattern)`` selects."""
    from fnmatch import fnmatch

    pattern = spec.strip()[5:-1].strip()
    return [option for option in options(group) if fnmatch(option, pattern)]


def _check_group_values(group: str, values: Sequence[str]) -> None:
    for value in values:
        if value in ("null", "None") or value is None:
            continue
        if not (CONF_DIR / group / f"{value}.yaml").is_file():
            from difflib import get_close_matches

            avail = options(group)
            close = get_close_matches(str(value), avail, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown {group} '{value}'{hint}; choose one of: {', '.join(avail)} (conf/{group}/)")


def _split_sweeps(overrides: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """The first combination of a sweep as plain overrides, and every value of each group override."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
    except Exception as e:  # OverrideParseException and friends
        raise ConfigError(f"cannot parse the command line: {str(e).splitlines()[0]}") from None
    first: list[str] = []
    group_values: dict[str, list[str]] = {}
    for o in parsed:
        key = o.get_key_element()
        if o.is_sweep_override():
            try:
                values = list(o.sweep_string_iterator())
            except Exception:  # interval sweeps (optuna) have no finite list
                continue
            if not values:
                continue
            value = values[0]
        else:
            values = [o.get_value_element_as_str()]
            value = values[0]
        if o.is_delete():
            first.append(o.input_line)
            continue
        if o.key_or_group in GROUPS and "." not in o.key_or_group:
            group_values[o.key_or_group] = values
        first.append(f"{key}={value}")
    return first, group_values


def _unknown_key(cfg: DictConfig, key: str) -> str:
    from difflib import get_close_matches

    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    known = [str(k) for k in parent] if isinstance(parent, DictConfig) else []
    accepted: list[str] = []
    if isinstance(parent, DictConfig) and "_target_" in parent:  # the target's parameters are what may be set
        from .config import accepted_parameters, resolve_target

        names, open_ended = accepted_parameters(resolve_target(str(parent["_target_"]), parent_key))
        if not open_ended:
            accepted = sorted(names - {"self", "params", "optimizer"})
    if leaf in accepted:  # a real option that the config file just does not list
        return f"'{key}' is not in the config yet; add it with +{key}=..."
    close = get_close_matches(leaf, known + accepted, n=1, cutoff=0.6)
    if close:
        prefix = f"{parent_key}." if parent_key else ""
        return f"unknown config key '{key}' (did you mean '{prefix}{close[0]}'?)"
    if accepted:
        return f"unknown config key '{key}'; {parent_key} accepts: {', '.join(accepted)}"
    return f"unknown config key '{key}'; to add a new key write +{key}=..."


def compose_checked(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose ``config_name`` with ``overrides`` (a single run), turning composition errors into one line."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name=config_name):
        try:
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
        except (HydraException, OmegaConfBaseException) as e:
            text = str(e)
            m = re.search(r"Could not override '([^']+)'", text)
            if m and "not in struct" in text + str(e.__cause__):
                plain = [o for o in overrides if "=" in o and o.split("=", 1)[0].split("@")[0] in GROUPS]
                base = compose(config_name, overrides=plain, return_hydra_config=False)
                raise ConfigError(_unknown_key(base, m.group(1))) from None
            m = re.search(r"Could not find '([^']+)'", text)
            if m:
                raise ConfigError(f"no config '{m.group(1)}' in conf/; check the name") from None
            first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
            cause = f" ({str(e.__cause__).splitlines()[0]})" if e.__cause__ else ""
            raise ConfigError(f"{first}{cause}") from None
        HydraConfig.instance().set_config(cfg)
    return cfg


def precheck(config_name: str, argv: Sequence[str], validator: Callable[[DictConfig, str], None]) -> None:
    """Validate a command line before Hydra runs it; prints one line and exits 2 on the first problem."""
    if any(a in _INFO_FLAGS for a in argv):
        return
    global _CHECKING
    values = {i + 1 for i, a in enumerate(argv) if a in _VALUE_FLAGS}
    args = [a for i, a in enumerate(argv) if not a.startswith("-") and i not in values]
    job_args = [a for a in args if not re.match(r"^[+~]*hydra[./]", a)]
    _CHECKING = True
    try:
        first, group_values = _split_sweeps(job_args)
        for group, values in group_values.items():
            _check_group_values(group, values)
        cfg = compose_checked(config_name, first)
        sweep_params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
        for key, spec in sweep_params.items():
            if key not in GROUPS or not isinstance(spec, str) or spec.strip().startswith(("interval", "range", "tag")):
                continue
            spec = spec.strip()
            if spec.startswith("glob("):  # glob(pattern) over the group's options: it must match one at least
                if not glob_options(key, spec):
                    raise ConfigError(f"hydra.sweeper.params.{key}={spec} matches no file in conf/{key}/")
                continue
            _check_group_values(key, [v.strip() for v in spec.split(",")])
        job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        validator(job, config_name)
        run_dir = next((a.split("=", 1)[1] for a in args if a.startswith(("hydra.run.dir=", "hydra.sweep.dir="))), None)
        check_writable(Path(run_dir) if run_dir else Path(str(OmegaConf.select(cfg, "paths.log_dir"))))
        if any(re.match(r"^[+~]*hydra([./]launcher)", a) for a in args):
            check_launcher(compose_checked(config_name, _split_sweeps(args)[0]))
    except UserError as e:
        fail(e)
    finally:
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().cfg = None
        _CHECKING = False


def check_launcher(cfg: DictConfig) -> None:
    """A SLURM submission of a DDP run must start one task per process: as many nodes as ``trainer.num_nodes`` and
    ``trainer.devices`` tasks on each (Lightning's SLURMEnvironment then takes ranks and addresses from SLURM)."""
    from omegaconf.errors import OmegaConfBaseException

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


# ---------------------------------------------------------------------------- torchrun / srun


def _choose_run_dir(config_name: str) -> Callable[[list[str]], Path]:
    def choose(argv: list[str]) -> Path:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        sweep = ConfigError(
            "torchrun and srun start the processes of one run, not a sweep; sweep DDP runs with "
            "python train.py -m trainer=ddp ... (Lightning starts each job's processes) or "
            "hydra/launcher=submitit_slurm_ddp"
        )
        if "-m" in argv or "--multirun" in argv:
            raise sweep
        values = {i + 1 for i, a in enumerate(argv) if a in _VALUE_FLAGS}
        args = [a for i, a in enumerate(argv) if not a.startswith("-") and i not in values]
        try:
            cfg = compose_checked(config_name, args)
            if cfg.hydra.mode == RunMode.MULTIRUN:
                raise sweep
            return Path(str(cfg.hydra.run.dir))  # resolving it creates the directory (imgbench_unique_dir)
        finally:
            HydraConfig.instance().cfg = None

    return choose


def share_run_dir(config_name: str, argv: list[str]) -> list[str]:
    """Processes that torchrun or srun started together continue in the run directory global rank 0 created
    (see :func:`imgbench.distributed.shared_run_dir`); a plain process keeps ``argv``."""
    from .distributed import shared_run_dir

    if any(a in _INFO_FLAGS for a in argv):
        return argv
    try:
        return shared_run_dir(argv, _choose_run_dir(config_name))
    except UserError as e:
        fail(e)
        raise  # not reached


# ---------------------------------------------------------------------------- resume


def _saved_overrides(run_dir: Path) -> list[str]:
    import yaml

    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        raise ConfigError(
            f"{run_dir} is not a run directory (no .hydra/overrides.yaml); pass resume=<run dir> or resume=latest"
        )
    return [o for o in (yaml.safe_load(path.read_text()) or []) if not o.startswith(("resume=", "hydra."))]


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def latest_run(overrides: list[str], log_dir: Path) -> Path:
    """The newest run directory under ``log_dir`` whose command-line overrides equal ``overrides``."""
    want = sorted(overrides)
    candidates = [
        p.parent.parent
        for p in log_dir.glob("*/*/.hydra/overrides.yaml")
        if "multirun" not in p.parts and sorted(_saved_overrides(p.parent.parent)) == want
    ]
    if not candidates:
        shown = " ".join(overrides) or "(no overrides)"
        raise ConfigError(
            f"resume=latest: no earlier run of this config ({shown}) under {log_dir}; start one without resume"
        )
    return max(candidates, key=lambda p: (p / ".hydra" / "overrides.yaml").stat().st_mtime)


def resolve_resume(argv: list[str]) -> list[str]:
    """Turn ``resume=<run dir>|latest`` into the run's own overrides, its directory and ``resume=<dir>``.

    Extra overrides given with ``resume`` replace the saved ones (e.g. ``trainer.max_epochs=20`` to train on).
    """
    resume = [a for a in argv if a.startswith("resume=")]
    if not resume:
        return argv
    if "-m" in argv or "--multirun" in argv:
        raise ConfigError(
            "resume= continues one run; to continue a sweep add hydra.sweep.dir=<dir> sweep.skip_finished=true"
        )
    value = resume[-1].split("=", 1)[1]
    extras = [a for a in argv if not a.startswith("resume=") and not a.startswith("-")]
    flags = [a for a in argv if a.startswith("-")]
    if value == "latest":
        log_dir = next(
            (Path(a.split("=", 1)[1]) for a in extras if a.startswith("paths.log_dir=")), REPO_ROOT / "outputs"
        )
        run_dir = latest_run([a for a in extras if not a.startswith("hydra.")], log_dir)
    else:
        run_dir = Path(value).expanduser()
    run_dir = run_dir.resolve()
    saved = {_key(o): o for o in _saved_overrides(run_dir)}
    saved.update({_key(o): o for o in extras if not o.startswith("hydra.run.dir=")})
    print(f"imgbench: resuming {run_dir}", file=sys.stderr)
    return [*flags, *saved.values(), f"hydra.run.dir={run_dir}", f"resume={run_dir}"]


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


def fail(error: BaseException, code: int = 2) -> None:
    print(f"imgbench: error: {error}", file=sys.stderr)
    sys.exit(code)


# resolvers must exist wherever a job's config is resolved, also in launcher subprocesses (submitit)
register_resolvers()


# ---------------------------------------------------------------------------- the task wrapper


def run_task(fn: Callable[[DictConfig], Any], cfg: DictConfig) -> dict[str, Any] | None:
    """Run ``fn(cfg)`` (train or evaluate) in the run directory Hydra made.

    Single run: a :class:`UserError` ends it with one line and exit status 2; other errors keep their traceback.
    Sweep job: any error is logged and recorded in the job's ``metrics.json`` (status ``failed``) and the sweep
    goes on; :class:`imgbench.sweep.SweepReport` reports the failures and exits non-zero at the end. With
    ``sweep.skip_finished=true`` a job whose earlier attempt finished (same overrides) is not run again.
    """
    from omegaconf import open_dict

    from . import distributed
    from .callbacks import TrainingInterrupted
    from .io import write_json
    from .run import run_record
    from .sweep import archive_previous_attempt, finished_before, is_multirun, was_killed

    out = Path(cfg.paths.output_dir)
    multirun = is_multirun()
    # Under DDP every process runs this; only global rank 0 writes. The other ranks of a torchrun/SLURM job read the
    # same files and so take the same decision (rank 0 only ever moves them towards "run again").
    writer = distributed.is_rank_zero()
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
    from .io import write_json
    from .run import run_record

    try:
        record = run_record(cfg)
    except Exception:  # never hide the original error
        record = {}
    write_json(out / "metrics.json", {**record, "status": "failed", "error": f"{type(error).__name__}: {error}"})
