"""Finding runs: every ``metrics.json`` under a run or multirun directory, with the overrides that made it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError

# keys that name how a run was launched, not what was trained: never a column
IGNORED_KEYS = ("hydra.", "paths.", "sweep.", "logger", "callbacks", "trainer.accelerator", "trainer.devices")


@dataclass
class Run:
    """One job: where it is, what it reported, and its command-line overrides as a dict.

    Attributes:
        path: the job directory.
        record: its ``metrics.json`` (or a stand-in with ``status`` when it has none or it is unreadable).
        overrides: its command-line overrides, ``key -> value``, without the launch-only keys.
    """

    path: Path
    record: dict[str, Any]
    overrides: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """The recorded status (``finished``, ``failed``, ``unfinished``, ...; ``unknown`` when none)."""
        return str(self.record.get("status", "unknown"))

    @property
    def finished(self) -> bool:
        """Whether the job finished."""
        return self.status == "finished"

    def value(self, key: str) -> Any:
        """A setting of this run: a config-group choice, a metrics.json field, or a flattened config key.

        Args:
            key: the setting, e.g. ``model``, ``seed`` or ``optimizer.lr``.

        Returns:
            Its value, or None when the run does not say.
        """
        choices = self.record.get("choices") or {}
        if key in choices:
            return choices[key]
        if key in ("model", "data", "seed") and key in self.record:
            return self.record[key]
        if key == "report.stand_in" and "stand_in" in self.record:
            return self.record["stand_in"]
        config = self.record.get("config") or {}
        if key in config:
            return config[key]
        return self.overrides.get(key)

    def at_epochs(self) -> list[Run]:
        """This run as each of its tests: one view per epoch of ``test_epochs``, then the run itself.

        A view reads as a run of that many epochs (``trainer.max_epochs``) whose metrics are that epoch's test, so
        one run with ``test_epochs=[10,30,60]`` and 100 epochs fills a paper's 10, 30, 60 and 100-epoch cells.
        """
        tested = self.record.get("test_epochs") or {}
        final = self.value("trainer.max_epochs")
        views = []
        for epoch, metrics in tested.items():
            if str(epoch) == str(final):
                continue  # the run's own final test
            config = {**(self.record.get("config") or {}), "trainer.max_epochs": int(epoch)}
            record = {k: v for k, v in self.record.items() if k not in ("train_seconds", "fit_seconds")}
            record.update({"metrics": dict(metrics), "config": config, "tested_epoch": int(epoch)})
            views.append(Run(self.path, record, {**self.overrides, "trainer.max_epochs": str(epoch)}))
        return [*views, self]

    def metric(self, name: str) -> float | None:
        """A number this run reported (under ``metrics`` or at the top of ``metrics.json``); None if absent."""
        value = (self.record.get("metrics") or {}).get(name)
        if value is None and name in self.record:
            value = self.record[name]
        return float(value) if isinstance(value, int | float) else None


def parse_overrides(lines: list[str]) -> dict[str, str]:
    """Turn Hydra override lines into a dict.

    E.g. ``["model=resnet34", "+x=1", "~y"]`` -> ``{"model": "resnet34", "x": "1"}``.

    Args:
        lines: the override lines; deletions (no ``=``) are dropped and ``+``/``~`` prefixes removed.

    Returns:
        ``key -> value``.
    """
    out: dict[str, str] = {}
    for line in lines:
        if "=" not in line:
            continue
        key, value = line.split("=", 1)
        out[key.lstrip("+~")] = value
    return out


def _overrides(job_dir: Path, record: dict[str, Any]) -> dict[str, str]:
    lines = record.get("overrides")
    if lines is None:
        path = job_dir / ".hydra" / "overrides.yaml"
        lines = yaml.safe_load(path.read_text()) if path.is_file() else []
    return {k: v for k, v in parse_overrides(lines or []).items() if not k.startswith(IGNORED_KEYS)}


def find_runs(root: str | Path) -> list[Run]:
    """Every job under ``root`` (a run directory or a multirun directory, searched recursively).

    A job directory is one with ``.hydra/`` or ``metrics.json``; a job without ``metrics.json`` is reported as
    ``unfinished`` (it was killed, or is still running).

    Args:
        root: a run directory or a multirun directory.

    Returns:
        The jobs, sorted by path (numbered job directories in numeric order).

    Raises:
        UserError: ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(
            f"{root} is not a directory; pass a run or multirun directory (e.g. outputs/train/multirun/...)"
        )
    # trackers' copies (MLflow artifacts, W&B files) and archived attempts are not runs
    skip = {"previous_attempts", "mlruns", "wandb"}
    job_dirs = {p.parent for p in root.rglob("metrics.json") if not skip.intersection(p.parts)}
    job_dirs |= {p.parent for p in root.rglob(".hydra") if p.is_dir() and not skip.intersection(p.parts)}
    runs = []
    for job_dir in sorted(job_dirs, key=_job_sort_key):
        metrics = job_dir / "metrics.json"
        try:
            record = json.loads(metrics.read_text()) if metrics.is_file() else {"status": "unfinished"}
        except json.JSONDecodeError:
            record = {"status": "unreadable", "error": f"{metrics} is not valid JSON"}
        runs.append(Run(job_dir, record, _overrides(job_dir, record)))
    return runs


def _job_sort_key(path: Path) -> tuple:
    # job 2 before job 10, and a folder of more jobs (e.g. seed43/) after the jobs beside it
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.parts)
