"""The OmegaConf resolvers imgbench's configs use (``${imgbench_unique_dir:...}`` and friends).

They must exist wherever a job's config is resolved, launcher subprocesses (submitit) included, so importing
this module registers them.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from .groups import help_text
from .hydra_runtime import job_name
from .ranks import if_rank_zero


def unique_dir(path: str) -> str:
    """``path`` if it does not exist yet, else ``path_1``, ``path_2``, ...

    The folder is created atomically, so two runs started in the same second never share a directory.
    """
    base = Path(path)
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


def register_resolvers() -> None:
    """Register imgbench's resolvers (once per process)."""
    for name, fn, cache in (
        ("imgbench_unique_dir", unique_dir, True),
        ("imgbench_mkdir", make_dir, False),
        ("imgbench_rank_zero", if_rank_zero, False),  # per process: DDP ranks > 0 write no .hydra/
        ("imgbench_job_name", job_name, False),
        ("imgbench_config_groups", help_text, False),  # python train.py --help
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn, use_cache=cache)


register_resolvers()
