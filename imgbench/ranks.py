"""Which process this is, before any Trainer exists: global rank 0 or not, and whether imgbench started it.

Read from the launcher's environment variables: torchrun's ``RANK``, SLURM's ``SLURM_PROCID``, LSF's
``JSM_NAMESPACE_RANK``, or ``LOCAL_RANK`` and ``NODE_RANK`` for processes Lightning starts; a plain process is
rank 0. Once a Trainer exists, ``trainer.is_global_zero`` says the same.
"""

from __future__ import annotations

import os
from typing import Any

CHILD_ENV = "IMGBENCH_DDP_CHILD"  # set in the DDP processes imgbench's launcher starts


def _int_env(name: str) -> int:
    try:
        return int(os.environ.get(name, "0"))
    except ValueError:
        return 0


def srun_used() -> bool:
    """Launched by ``srun`` (Lightning's SLURMEnvironment rule: SLURM_NTASKS is set, not an interactive job)."""
    return "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")


def is_rank_zero() -> bool:
    """Whether this process is global rank 0 as its launcher says."""
    if "RANK" in os.environ:
        return _int_env("RANK") == 0
    if srun_used():
        return _int_env("SLURM_PROCID") == 0
    if "JSM_NAMESPACE_RANK" in os.environ:
        return _int_env("JSM_NAMESPACE_RANK") == 0
    return _int_env("LOCAL_RANK") == 0 and _int_env("NODE_RANK") == 0


def if_rank_zero(value: Any, other: Any = None) -> Any:
    """Resolver ``${imgbench_rank_zero:value[,other]}``: ``value`` on global rank 0, ``other`` elsewhere."""
    return value if is_rank_zero() else other


def is_child() -> bool:
    """A DDP process that imgbench's launcher started (its command line is already complete and checked)."""
    return os.environ.get(CHILD_ENV) == "1"
