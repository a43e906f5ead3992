"""Publishing a finished sweep into ``results/<experiment>/``: report, paper beside it, curves, provenance.

Provenance is what it ran on: the command, commit, machine and dates. Small files only: no checkpoint, event file or
log is copied.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import yaml

from ..errors import UserError
from ..io import write_text
from .collect import Run
from .table import Report, build_report

CURVES = "curves.png"


def job_label(run: Run, keys: list[str]) -> str:
    """A file name for a job: the overrides that tell it apart (``model=keras_cnn,seed=1``); else its folder name."""
    label = ",".join(f"{k}={v}" for k, v in sorted(run.overrides.items()) if k in keys or k == "seed")
    return "".join(c if c.isalnum() or c in "=,.+-_" else "_" for c in label) or run.path.name


def sweep_commands(root: Path) -> list[str]:
    """The commands that ran the sweeps under ``root``, from Hydra's ``multirun.yaml`` files.

    ``root``'s own sweep comes first, then sweeps run into folders inside it (e.g. more seeds added later); a single
    run has none.
    """
    paths = sorted(root.rglob("multirun.yaml"), key=lambda p: (len(p.relative_to(root).parts), str(p)))
    commands = []
    for path in paths:
        overrides = (yaml.safe_load(path.read_text()).get("hydra") or {}).get("overrides", {}).get("task") or []
        commands.append("python train.py " + " ".join(overrides))
    return commands


def provenance(report: Report) -> list[str]:
    """Markdown lines saying how the runs were made: command, commits, machines, threads and dates."""
    finished = [r for r in report.runs if r.finished]
    envs = [r.record.get("environment") or {} for r in finished]
    commits = sorted({str(e.get("commit")) for e in envs if e.get("commit")})
    machines = sorted({str(e.get("cpu") or e.get("device")) for e in envs if e.get("cpu") or e.get("device")})
    threads = sorted({str(e.get("threads")) for e in envs if e.get("threads")})
    times = sorted(dt.datetime.fromtimestamp((r.path / "metrics.json").stat().st_mtime, dt.timezone.utc)
                   for r in finished)  # fmt: skip
    commands = sweep_commands(report.root)
    lines = ["## How these numbers were made", ""]
    if not commands:
        lines.append("- command: (a single run; see its overrides above)")
    else:
        lines.append(f"- command{'s' if len(commands) > 1 else ''}: {'; '.join(f'`{c}`' for c in commands)}")
    lines.append(f"- commit: {', '.join(f'`{c}`' for c in commits) or 'not recorded'}")
    lines.append(f"- machine: {'; '.join(machines) or 'not recorded'} (torch threads: {', '.join(threads) or '?'})")
    if times:
        lines.append(f"- finished: {times[0]:%Y-%m-%d %H:%M} to {times[-1]:%Y-%m-%d %H:%M} UTC ({len(finished)} runs)")
    return [*lines, ""]


def publish(root: str | Path, dest: str | Path, reference: str | None = None) -> list[Path]:
    """Write a sweep's report, the paper's table beside it, its curves and its provenance into ``dest``.

    Args:
        root: the sweep (or run) directory.
        dest: the results folder, e.g. ``results/study_e_mnist``; created, its report files replaced.
        reference: the paper table (default: the one the runs name).

    Returns:
        The files written.

    Raises:
        UserError: no finished run under ``root``.
    """
    report = build_report(root, reference)
    if not any(r.finished for r in report.runs):
        raise UserError(f"no finished run under {root}; publish a sweep once some of its jobs have finished")
    dest = Path(dest)
    (dest / "curves").mkdir(parents=True, exist_ok=True)
    written = []
    markdown = report.markdown().replace(f"# Report: {report.root}", f"# {dest.name}", 1)
    written.append(dest / "report.md")
    write_text(written[-1], markdown + "\n" + "\n".join(provenance(report)))
    written.append(dest / "report.csv")
    write_text(written[-1], report.csv())
    if report.reference is not None:
        written.append(dest / "comparison.csv")
        write_text(written[-1], report.comparison_csv())
    for run in report.runs:
        if run.finished and (run.path / CURVES).is_file():
            written.append(dest / "curves" / f"{job_label(run, report.keys)}.png")
            shutil.copyfile(run.path / CURVES, written[-1])
    return written
