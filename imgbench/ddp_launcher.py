"""The launcher behind ``trainer=ddp`` and ``trainer=ddp_cpu`` when Lightning starts the processes.

Installed by :func:`imgbench.distributed.use_job_launcher`.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Sequence
from typing import Any

from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

from .ranks import CHILD_ENV

log = logging.getLogger("imgbench")


class JobScriptLauncher(_SubprocessScriptLauncher):
    """Lightning's launcher for ``strategy=ddp``, except that the other local processes run ``command``.

    It sets the same environment and watches the processes as Lightning's does; ``command`` runs this Hydra job
    alone, in its run directory.

    Args:
        cluster_environment: as Lightning's ``_SubprocessScriptLauncher``.
        num_processes: processes per node, as Lightning's.
        num_nodes: nodes, as Lightning's.
        command: the command line of the other processes.
        cwd: their working directory (where the parent was started).
    """

    def __init__(
        self, cluster_environment: Any, num_processes: int, num_nodes: int, command: Sequence[str], cwd: str
    ) -> None:
        super().__init__(cluster_environment, num_processes, num_nodes)
        self.command = list(command)
        self.cwd = cwd
        self.started = False

    def _call_children_scripts(self) -> None:
        self._check_can_spawn_children()
        self.procs = []
        os.environ["MASTER_ADDR"] = self.cluster_environment.main_address
        os.environ["MASTER_PORT"] = str(self.cluster_environment.main_port)
        os.environ["NODE_RANK"] = str(self.cluster_environment.node_rank())
        os.environ["LOCAL_RANK"] = str(self.cluster_environment.local_rank())
        os.environ["WORLD_SIZE"] = f"{self.num_processes * self.num_nodes}"
        for local_rank in range(1, self.num_processes):
            env = os.environ.copy()
            env["LOCAL_RANK"] = str(local_rank)
            env[CHILD_ENV] = "1"
            if os.environ.get("PL_GLOBAL_SEED") is None:
                env.pop("PL_GLOBAL_SEED", None)
            self.procs.append(subprocess.Popen(self.command, env=env, cwd=self.cwd))
        self.started = True

    def finish(self, timeout: float = 300.0) -> list[int]:
        """Wait for the processes this launcher started and stop Lightning's watcher from acting on them later.

        Args:
            timeout: seconds to wait for each before killing it.

        Returns:
            Their exit codes.
        """
        procs = list(self.procs)
        self.procs.clear()  # the watcher thread shares this list: it now has nothing to watch and ends
        codes = []
        for proc in procs:
            try:
                codes.append(proc.wait(timeout=timeout))
            except subprocess.TimeoutExpired:
                log.warning("DDP process %d did not end %ds after rank 0; killing it", proc.pid, timeout)
                proc.kill()
                codes.append(proc.wait())
        return codes
