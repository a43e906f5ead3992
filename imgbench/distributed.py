"""Several processes, one run: DDP with one run directory, written by global rank 0 only.

Processes of a DDP run are started in one of three ways, and all of them end up in the directory that global rank 0
chose:

- ``python train.py trainer=ddp`` (Lightning starts the other local processes): the
  :class:`~imgbench.ddp_launcher.JobScriptLauncher` that :func:`use_job_launcher` installs starts them as
  ``train.py <this job's overrides> hydra.run.dir=<this job's directory>``. Unlike Lightning's own re-run of
  ``sys.argv``, this never re-runs a sweep and works whoever started the parent (a multirun, Optuna, a submitit job).
  After each job :func:`job` waits for those processes, ends the process group and restores the environment, so
  the next job of a sweep starts its own processes.
- ``torchrun`` and ``srun`` (every process starts the script): :func:`shared_run_dir` lets global rank 0 create the
  run directory before Hydra starts and hands it to the other ranks through a ``torch.distributed`` TCP store on the
  launcher's ``MASTER_ADDR:MASTER_PORT`` (torchrun's own store, or one that rank 0 serves and that
  ``torch.distributed`` reuses afterwards).
- ``hydra/launcher=submitit_slurm`` with one task per GPU: every task runs the job function of the pickled launcher,
  whose sweep directory is already resolved, so all tasks share the job directory.

Which process is global rank 0 before any Trainer exists is :mod:`imgbench.ranks`'s business.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig

from .ddp_launcher import JobScriptLauncher
from .errors import ConfigError
from .paths import REPO_ROOT

log = logging.getLogger("imgbench")
# what Lightning's launcher writes into the parent's environment (restored after each job of a sweep)
_LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "OMP_NUM_THREADS")
STORE_TIMEOUT = timedelta(minutes=30)  # torch.distributed's default process-group timeout
_STORES: list[Any] = []  # rank 0 serves its store for the whole process (torch.distributed reuses it)


# ---------------------------------------------------------------------------- torchrun / srun: one directory


def external_environment() -> Any | None:
    """Lightning's cluster environment when torchrun, srun or LSF started several processes of this run, else None.

    Same detection order as Lightning's Trainer.
    """
    if not any(k in os.environ for k in ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "LSB_JOBID")):
        return None  # not started by such a launcher (and no need to import Lightning to say so)
    from lightning.fabric.plugins.environments import LSFEnvironment, SLURMEnvironment, TorchElasticEnvironment

    for env_type in (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment):
        if env_type.detect():
            env = env_type()
            return env if env.world_size() > 1 else None
    return None


def _store(env: Any) -> Any:
    """A TCP store on the launcher's main address and port, under an ``imgbench/`` prefix.

    torchrun's agent already serves one there (TORCHELASTIC_USE_AGENT_STORE): every rank is a client. Otherwise
    rank 0 serves it as a multi-tenant store and keeps it for the whole process, so that the process group Lightning
    creates later on the same port reuses the server instead of binding the port a second time.
    """
    from torch.distributed import PrefixStore, TCPStore

    host, port = env.main_address, int(env.main_port)
    agent = (
        os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        and os.environ.get("MASTER_ADDR") == host
        and os.environ.get("MASTER_PORT") == str(port)
    )
    store = TCPStore(
        host,
        port,
        is_master=env.global_rank() == 0 and not agent,
        timeout=STORE_TIMEOUT,
        wait_for_workers=False,
        multi_tenant=True,
    )
    _STORES.append(store)
    return PrefixStore(f"imgbench/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/", store)


def hydra_quote(value: str) -> str:
    """``value`` as a quoted Hydra override value."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def shared_run_dir(argv: list[str], choose: Any) -> list[str]:
    """For processes that torchrun or srun started together.

    Global rank 0 creates the run directory (``choose(argv)`` returns it) and every rank continues with
    ``hydra.run.dir=<that directory>``.

    ``choose`` raises :class:`ConfigError` for a command that cannot run this way (a sweep); the other ranks then
    stop with the same message instead of waiting.
    """
    env = external_environment()
    if env is None:
        return argv
    store = _store(env)
    if env.global_rank() == 0:
        try:
            run_dir = str(choose(argv))
        except ConfigError as e:
            store.set("run_dir", f"error:{e}")
            raise
        store.set("run_dir", f"dir:{run_dir}")
    else:
        kind, _, run_dir = store.get("run_dir").decode().partition(":")
        if kind == "error":
            raise ConfigError(run_dir)
    kept = [a for a in argv if not a.startswith("hydra.run.dir=")]
    return [*kept, f"hydra.run.dir={hydra_quote(run_dir)}"]


# ---------------------------------------------------------------------------- Lightning starts the processes


@dataclass
class _Job:
    command: list[str]
    cwd: str
    launchers: list[Any] = field(default_factory=list)  # JobScriptLauncher


_JOB: _Job | None = None


def child_command(out: Path, resume: str | None = None) -> tuple[list[str], str]:
    """The command line (and working directory) that runs the current Hydra job again, as one more process of it.

    The job's own overrides (a sweep's values included), its run directory, run mode.
    """
    hc = HydraConfig.get()
    config_name = str(hc.job.config_name)
    script = REPO_ROOT / ("eval.py" if config_name.startswith("eval") else "train.py")
    dropped = ("hydra.run.", "hydra.sweep.", "hydra.mode", "hydra.launcher", "hydra/launcher", "hydra.sweeper")
    dropped += ("hydra/sweeper", "hydra.output_subdir", "hydra.job.id", "hydra.job.num")
    hydra_args = [o for o in hc.overrides.hydra if not o.lstrip("+~").startswith(dropped)]
    task = [o for o in hc.overrides.task if not (resume and o.startswith("resume="))]
    if resume:
        task.append(f"resume={hydra_quote(resume)}")
    flags = ["--config-name", config_name]
    for source in hc.runtime.config_sources:
        if source.provider == "command-line":
            flags += ["--config-dir", str(source.path).removeprefix("file://")]
    command = [sys.executable, str(script), *flags, *task, *hydra_args, f"hydra.run.dir={hydra_quote(str(out))}"]
    return [*command, "hydra.mode=RUN"], str(hc.runtime.cwd)


def use_job_launcher(trainer: Any) -> None:
    """Give ``trainer``'s DDP strategy a :class:`JobScriptLauncher` for the current job.

    Applies to any ``ddp`` strategy that starts processes by running the script again; a no-op otherwise, or
    outside a job.
    """
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    strategy = trainer.strategy
    launcher = getattr(strategy, "_launcher", None)
    if _JOB is None or type(launcher) is not _SubprocessScriptLauncher:
        return
    ours = JobScriptLauncher(
        launcher.cluster_environment, launcher.num_processes, launcher.num_nodes, _JOB.command, _JOB.cwd
    )
    strategy._launcher = ours
    _JOB.launchers.append(ours)


@contextlib.contextmanager
def job(out: Path, resume: str | None = None) -> Iterator[None]:
    """Run one Hydra job whose DDP processes :func:`use_job_launcher` may start.

    Afterwards wait for them, end the process group and restore the environment and thread count that Lightning's
    launch changed.
    """
    global _JOB
    try:
        command, cwd = child_command(out, resume)
    except ValueError:  # no Hydra job (train/evaluate called directly): Lightning's own launcher stays
        command = None
    if command is None:
        yield
        return
    saved_env = {k: os.environ.get(k) for k in _LAUNCH_ENV}
    threads = torch.get_num_threads()
    _JOB = _Job(command, cwd)
    failed = False
    try:
        yield
    except BaseException:
        failed = True  # the other processes end by themselves when they failed too; do not wait long for them
        raise
    finally:
        launchers, _JOB = _JOB.launchers, None
        started = [launcher for launcher in launchers if launcher.started]
        for launcher in started:
            codes = launcher.finish(timeout=30.0 if failed else 300.0)
            if any(codes) and not failed:  # after a failure they stopped too: rank 0 reports it
                log.warning("DDP processes of %s ended with exit codes %s", out, codes)
        if started:
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            torch.set_num_threads(threads)
