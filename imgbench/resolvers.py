"""The OmegaConf resolvers imgbench's configs use (``${imgbench_unique_dir:...}`` and friends).

They must exist wherever a job's config is resolved, launcher subprocesses (submitit) included, so importing
this module registers them.
"""

from __future__ import annotations

import netrc
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

from omegaconf import OmegaConf

from .groups import help_text
from .hydra_runtime import job_name, run_name
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


def wandb_offline(timeout: float = 3.0) -> bool:
    """Whether W&B must run offline: no API key, or its server out of reach (a run never waits on the network).

    The key is ``WANDB_API_KEY`` or the ``.netrc`` entry ``wandb login`` writes (``NETRC`` or ``~/.netrc``) for the
    server ``WANDB_BASE_URL`` names (default api.wandb.ai); with a key, one TCP connection to the server, at most
    ``timeout`` seconds, name lookup included. ``WANDB_MODE=offline`` decides alone. ``wandb sync`` uploads later.
    """
    if os.environ.get("WANDB_MODE") in ("offline", "dryrun"):
        return True
    url = urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    if not (os.environ.get("WANDB_API_KEY") or _netrc_has(url.netloc)):
        return True
    address = (url.hostname or "", url.port or (80 if url.scheme == "http" else 443))
    reached: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection(address, timeout=timeout):
                reached.append(True)
        except OSError:
            pass

    probe = threading.Thread(target=connect, daemon=True)  # a thread: the name lookup has no timeout of its own
    probe.start()
    probe.join(timeout)
    return not reached


def _netrc_has(host: str) -> bool:
    try:
        return netrc.netrc(os.environ.get("NETRC") or None).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):  # no file, or one netrc cannot read: no key from it
        return False


def register_resolvers() -> None:
    """Register imgbench's resolvers (once per process)."""
    for name, fn, cache in (
        ("imgbench_unique_dir", unique_dir, True),
        ("imgbench_mkdir", make_dir, False),
        ("imgbench_rank_zero", if_rank_zero, False),  # per process: DDP ranks > 0 write no .hydra/
        ("imgbench_job_name", job_name, False),
        ("imgbench_run_name", run_name, False),  # trackers: the sweep job's name, else the run directory's
        ("imgbench_wandb_offline", wandb_offline, False),
        ("imgbench_config_groups", help_text, False),  # python train.py --help
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn, use_cache=cache)


register_resolvers()
