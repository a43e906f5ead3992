"""Multirun support.

Jobs named by their overrides, failures recorded instead of ending the sweep, finished jobs skipped on a re-run, and a
report (with a non-zero exit when any job failed) when the sweep ends.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from .hydra_runtime import job_overrides
from .ranks import is_rank_zero
from .report import Report, build_report

log = logging.getLogger("imgbench")

# files of a job directory that belong to a training attempt (the log and .hydra/ stay: Hydra owns them)
ATTEMPT_FILES = ("metrics.json", "checkpoints", "tensorboard", "csv", "submission.csv")


# ---------------------------------------------------------------------------- before and after a job


def _comparable(overrides: list[str]) -> list[str]:
    return sorted(o for o in overrides if not o.lstrip("+~").startswith(("sweep.", "hydra.")))


def finished_before(out: Path) -> dict[str, Any] | None:
    """The metrics.json of an earlier attempt of this very job (same overrides) that finished, if any."""
    path = out / "metrics.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError:
        return None
    if record.get("status") == "finished" and _comparable(record.get("overrides", [])) == _comparable(job_overrides()):
        return record
    return None


def was_killed(out: Path) -> bool:
    """An earlier attempt of this job stopped without finishing (killed or interrupted) but left a checkpoint."""
    path = out / "metrics.json"
    if not (out / "checkpoints" / "last.ckpt").is_file() or not path.is_file():
        return False
    try:
        record = json.loads(path.read_text())
    except ValueError:
        return False
    same = _comparable(record.get("overrides", [])) == _comparable(job_overrides())
    return same and record.get("status") in ("running", "interrupted")


def archive_previous_attempt(out: Path) -> Path | None:
    """Move what an earlier attempt left in ``out`` to ``out/previous_attempts/<time>/``: nothing is overwritten."""
    present = [out / name for name in ATTEMPT_FILES if (out / name).exists()]
    present += [p for p in out.glob("*.png")]
    if not present:
        return None
    dest = out / "previous_attempts" / time.strftime("%Y-%m-%d_%H-%M-%S")
    dest.mkdir(parents=True, exist_ok=True)
    for p in present:
        shutil.move(str(p), str(dest / p.name))
    log.info("moved the files of an earlier attempt to %s", dest)
    return dest


def objective(result: dict[str, Any] | None, metric: str | None) -> float | None:
    """The number a sweeper optimises (``optimized_metric``), or None.

    None for a failed job (Optuna's sweeper records that as a failed trial and goes on up to its max_failure_rate;
    NaN would make optuna 2.x raise) and for a run without that metric (``test=false``: only a sweeper that
    optimises needs it, and the config check refuses that combination).
    """
    if not result or result.get("status") != "finished" or not metric:
        return None
    value = (result.get("metrics") or {}).get(metric)
    return None if value is None else float(value)


# ---------------------------------------------------------------------------- the Hydra callback


class SweepReport(Callback):
    """Prints (and writes) the report when a run or sweep ends; a sweep with failed jobs exits with status 1.

    Args:
        single_runs: print the report of a single run too (predict.py, whose results are no table row, says no).
    """

    def __init__(self, single_runs: bool = True) -> None:
        self.single_runs = single_runs

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        out = Path(str(config.hydra.runtime.output_dir))
        if self.single_runs and is_rank_zero() and (out / "metrics.json").is_file():  # DDP: once, from global rank 0
            self._report(out, write=False)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir() or not is_rank_zero():
            return
        report = self._report(sweep_dir, write=True)
        if report is not None and report.failures():
            names = "; ".join(
                f"{r.path.name} ({r.status}: {r.record.get('error', 'no metrics.json')})" for r in report.failures()
            )
            print(
                f"imgbench: {len(report.failures())} of {len(report.runs)} jobs did not finish: {names}",
                file=sys.stderr,
            )
            print(
                f"imgbench: re-run only those: add hydra.sweep.dir={sweep_dir} sweep.skip_finished=true",
                file=sys.stderr,
            )
            sys.exit(1)

    @staticmethod
    def _report(root: Path, write: bool) -> Report | None:
        try:
            report = build_report(root)
        except Exception as e:  # a report problem must never hide the results themselves
            log.warning("could not build the report for %s: %s", root, e)
            return None
        print("\n" + report.markdown())
        if write:
            for path in report.write():
                print(f"wrote {path}")
        return report
