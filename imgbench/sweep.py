"""Multirun support: jobs named by their overrides, failures recorded instead of ending the sweep, finished
jobs skipped on a re-run, and a report (with a non-zero exit when any job failed) when the sweep ends."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .distributed import is_rank_zero

log = logging.getLogger("imgbench")

# files of a job directory that belong to a training attempt (the log and .hydra/ stay: Hydra owns them)
ATTEMPT_FILES = ("metrics.json", "checkpoints", "tensorboard", "csv", "submission.csv")


def hydra_cfg() -> DictConfig | None:
    try:
        return HydraConfig.get()
    except ValueError:
        return None


def is_multirun() -> bool:
    from hydra.types import RunMode

    cfg = hydra_cfg()
    return cfg is not None and cfg.mode == RunMode.MULTIRUN


def job_overrides() -> list[str]:
    """This job's command-line overrides (sweep values included), as Hydra recorded them."""
    cfg = hydra_cfg()
    return list(cfg.overrides.task) if cfg is not None else []


def swept_keys() -> set[str]:
    """Keys that vary across the current sweep: the sweeper's params plus sweep overrides of the command line."""
    cfg = hydra_cfg()
    if cfg is None:
        return set()
    keys = {str(k) for k in (OmegaConf.select(cfg, "sweeper.params") or {})}
    multirun_yaml = Path(str(cfg.sweep.dir)) / "multirun.yaml"
    if multirun_yaml.is_file():
        from hydra.core.override_parser.overrides_parser import OverridesParser

        master = OmegaConf.load(multirun_yaml)
        try:
            parsed = OverridesParser.create().parse_overrides(list(master.hydra.overrides.task))
            keys |= {o.get_key_element() for o in parsed if o.is_sweep_override()}
        except Exception:  # an unparseable file must not stop a job
            pass
    return keys


def job_name(max_len: int = 100) -> str:
    """A readable, path-safe name from the swept overrides of this job ('' outside a multirun)."""
    if not is_multirun():
        return ""
    keys = swept_keys()
    parts = [o for o in job_overrides() if not keys or o.split("=", 1)[0].lstrip("+~") in keys]
    num = OmegaConf.select(hydra_cfg(), "job.num", default=None, throw_on_missing=False)
    name = re.sub(r"[^\w.,=+-]+", "_", ",".join(parts)) or (f"job{num}" if num is not None else "")
    if len(name) > max_len:
        name = name[: max_len - 9] + "_" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return name


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("imgbench_job_name"):
        OmegaConf.register_new_resolver("imgbench_job_name", job_name)


# ---------------------------------------------------------------------------- before and after a job


def _comparable(overrides: list[str]) -> list[str]:
    return sorted(o for o in overrides if not o.lstrip("+~").startswith(("sweep.", "hydra.")))


def finished_before(out: Path) -> dict[str, Any] | None:
    """The metrics.json of an earlier attempt of this very job (same overrides) that finished, if any."""
    import json

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
    import json

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


def objective(result: dict[str, Any] | None, metric: str) -> float | None:
    """The number a sweeper optimises; None for a failed job (Optuna's sweeper records that as a failed trial
    and goes on up to its max_failure_rate; NaN would make optuna 2.x raise)."""
    if not result or result.get("status") != "finished":
        return None
    value = (result.get("metrics") or {}).get(metric)
    if value is None:
        raise KeyError(
            f"optimized_metric '{metric}' is not among the run's metrics: {sorted(result.get('metrics', {}))}"
        )
    return float(value)


# ---------------------------------------------------------------------------- the Hydra callback


class SweepReport(Callback):
    """Prints (and writes) the report when a run or sweep ends; a sweep with failed jobs exits with status 1."""

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        out = Path(str(config.hydra.runtime.output_dir))
        if is_rank_zero() and (out / "metrics.json").is_file():  # DDP: once, from global rank 0
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
    def _report(root: Path, write: bool):
        from .report import build_report

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
