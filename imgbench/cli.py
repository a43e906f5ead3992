"""What the entry scripts (``train.py``, ``eval.py``) do around Hydra.

Prepare the command line (resume, the run directory torchrun or srun processes share), run the Hydra app, and turn
composition errors into one line.

The config is composed by Hydra alone and checked once, by the :class:`imgbench.compose.ConfigCheck` callback,
before anything is created.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException, OverrideParseException
from hydra.types import RunMode
from omegaconf.errors import OmegaConfBaseException

from . import resolvers, schema  # noqa: F401  (registered before Hydra composes anything)
from .compose import compose_config, describe_composition_error
from .distributed import shared_run_dir
from .errors import ConfigError, UserError, fail
from .paths import REPO_ROOT
from .ranks import is_child
from .resume import resolve_resume

# flags after which Hydra only prints (the config, help, ...) and runs nothing
_INFO_FLAGS = ("--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc", "--version", "--cfg", "-c")


class _DropAdverts(logging.Filter):
    """Lightning prints an advertisement for a cloud logger on every run; keep logs to what matters."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def setup_environment() -> None:
    """Process-wide settings for an entry script, before Hydra starts."""
    os.environ.setdefault("IMGBENCH_ROOT", str(REPO_ROOT))
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # Hydra re-raises composition errors: run() words them
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropAdverts())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # DDP: the logged accuracies and losses are torchmetrics values, already synchronised over the processes
    warnings.filterwarnings("ignore", message=r".*when logging on epoch level in distributed setting")


def run(hydra_main: Callable[[], object], config_name: str) -> None:
    """Run an entry script's ``@hydra.main`` function on this process's command line.

    Args:
        hydra_main: the decorated function of ``train.py`` or ``eval.py``.
        config_name: its config (``train`` or ``eval``).
    """
    setup_environment()
    argv = sys.argv[1:]
    if not is_child() and not any(a in _INFO_FLAGS for a in argv):
        try:
            argv = resolve_resume(argv) if config_name == "train" else argv
            argv = shared_run_dir(argv, _run_dir_chooser(config_name))  # torchrun / srun: rank 0's directory
        except UserError as e:
            fail(e)
    sys.argv[1:] = argv
    try:
        hydra_main()
    except (ConfigCompositionException, MissingConfigException, OverrideParseException) as e:
        fail(describe_composition_error(e, config_name, [a for a in argv if not a.startswith("-")]))


def _run_dir_chooser(config_name: str) -> Callable[[list[str]], Path]:
    """For processes torchrun or srun started: global rank 0 composes the run (once) to create its directory."""

    def choose(argv: list[str]) -> Path:
        sweep = ConfigError(
            "torchrun and srun start the processes of one run, not a sweep; sweep DDP runs with "
            "python train.py -m trainer=ddp ... (Lightning starts each job's processes) or "
            "hydra/launcher=submitit_slurm_ddp"
        )
        if "-m" in argv or "--multirun" in argv:
            raise sweep
        args = [a for a in argv if not a.startswith("-")]
        try:
            cfg = compose_config(config_name, args)
        except (HydraException, OmegaConfBaseException) as e:
            raise ConfigError(describe_composition_error(e, config_name, args)) from None
        try:
            if cfg.hydra.mode == RunMode.MULTIRUN:
                raise sweep
            HydraConfig.instance().set_config(cfg)
            return Path(str(cfg.hydra.run.dir))  # resolving it creates the directory (imgbench_unique_dir)
        finally:
            HydraConfig.instance().cfg = None

    return choose
