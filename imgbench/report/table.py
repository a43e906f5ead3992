"""Turning runs into tables: seeds grouped into mean +- std, the papers' numbers beside ours."""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io import write_text
from .collect import Run, find_runs
from .references import Reading, ReferenceTable, load, match, to_unit


@dataclass
class Group:
    """Runs that differ only by seed."""

    key: tuple[tuple[str, str], ...]
    runs: list[Run] = field(default_factory=list)

    def values(self, metric: str) -> list[float]:
        """The values of ``metric`` of the finished runs that reported it."""
        return [v for r in self.runs if r.finished and (v := r.metric(metric)) is not None]


@dataclass
class Stat:
    """The mean and standard deviation of ``n`` values.

    Attributes:
        mean: the mean (NaN when there are none).
        std: the sample standard deviation (0 for one value).
        n: how many values.
    """

    mean: float
    std: float
    n: int

    def fmt(self, digits: int = 4) -> str:
        """``mean ± std`` with ``digits`` decimals; just the mean for one value, ``-`` for none."""
        if self.n == 0:
            return "-"
        if self.n == 1:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def stat(values: Sequence[float]) -> Stat:
    """Mean and sample standard deviation (0 for one value).

    Args:
        values: the numbers.

    Returns:
        Their statistics (NaN mean and ``n = 0`` when there are none).
    """
    if not values:
        return Stat(math.nan, math.nan, 0)
    return Stat(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))


def swept_keys(runs: list[Run]) -> list[str]:
    """Override keys whose value differs between runs (seed excluded), in first-seen order.

    Args:
        runs: the runs.

    Returns:
        The swept keys: the table's columns.
    """
    keys: dict[str, set[str]] = {}
    for r in runs:
        for k in r.overrides:
            keys.setdefault(k, set())
    for k in keys:
        keys[k] = {r.overrides.get(k, "") for r in runs}
    return [k for k, vals in keys.items() if len(vals) > 1 and k != "seed"]


def group_runs(runs: list[Run], keys: list[str]) -> list[Group]:
    """Group runs by their values of ``keys``: runs that differ only by seed (or unswept keys) go together.

    Args:
        runs: the runs.
        keys: the swept override keys (see :func:`swept_keys`).

    Returns:
        The groups, in the order their first run appears.
    """
    groups: dict[tuple, Group] = {}
    for r in runs:
        key = tuple((k, r.overrides.get(k, "")) for k in keys)
        groups.setdefault(key, Group(key)).runs.append(r)
    return list(groups.values())


@dataclass
class Report:
    """Everything the report shows, computed once and rendered as markdown or CSV."""

    root: Path
    runs: list[Run]
    keys: list[str]
    groups: list[Group]
    reference: ReferenceTable | None = None

    # ------------------------------------------------------------------ the results table

    def rows(self) -> list[dict[str, Any]]:
        """The results table: one row per group, the swept keys then the statistics."""
        rows = []
        for g in self.groups:
            acc, val = stat(g.values("test/acc")), stat(g.values("val/acc_best"))
            f1 = stat(g.values("test/f1_macro"))
            seconds, speed = stat(g.values("train_seconds")), stat(g.values("train_images_per_sec"))
            params = next((r.record.get("params") for r in g.runs if r.record.get("params")), None)
            row = {k: v for k, v in g.key}
            row.update(
                {
                    "test acc": acc.fmt(),
                    "test error %": Stat(100 * (1 - acc.mean), 100 * acc.std, acc.n).fmt(2) if acc.n else "-",
                    "macro F1": f1.fmt(),
                    "best val acc": val.fmt(),
                    "params": f"{params:,}" if params else "-",
                    "train s": f"{seconds.mean:.1f}" if seconds.n else "-",
                    "images/s": f"{speed.mean:.0f}" if speed.n else "-",
                    "n": f"{acc.n}/{len(g.runs)}",
                }
            )
            rows.append(row)
        return rows

    def per_class(self, limit: int = 20) -> list[dict[str, Any]]:
        """Per-class test precision, recall and F1 (means over the runs) when the report holds one group.

        Classes are sorted by F1, lowest first; beyond ``limit`` classes only the ``limit`` lowest are shown.
        """
        if len(self.groups) != 1:
            return []
        tables = [t for r in self.groups[0].runs if r.finished and (t := r.record.get("per_class"))]
        if not tables:
            return []
        rows = []
        for name in tables[0]:
            cells = [t[name] for t in tables if name in t]
            row: dict[str, Any] = {"class": name}
            for k in ("precision", "recall", "f1"):
                row[k] = f"{statistics.fmean(c[k] for c in cells):.4f}"
            row["support"] = str(cells[0]["support"])
            rows.append(row)
        return sorted(rows, key=lambda r: float(r["f1"]))[:limit]

    def constants(self) -> dict[str, str]:
        """Settings shared by every run (shown once above the table)."""
        shared: dict[str, str] = {}
        finished = [r for r in self.runs if r.record.get("model")]
        for field_name in ("model", "data"):
            values = {str(r.record.get(field_name)) for r in finished}
            if len(values) == 1 and field_name not in self.keys:
                shared[field_name] = values.pop()
        for k, v in (self.runs[0].overrides if self.runs else {}).items():
            if k not in self.keys and k != "seed" and all(r.overrides.get(k) == v for r in self.runs):
                shared[k] = v
        return shared

    def failures(self) -> list[Run]:
        """The runs that did not finish."""
        return [r for r in self.runs if not r.finished]

    # ------------------------------------------------------------------ the paper's table beside ours

    def readings_elsewhere(self) -> list[Reading]:
        """The table's readings no run here has: another experiment runs their cells, so they are not listed.

        A table run in several readings (e.g. study D with and without momentum) shows only the readings some run
        of this report has; with no run in any reading, every cell is listed (as not run).
        """
        readings = self.reference.readings if self.reference else []
        here = [r for r in readings if any(match(run, r.setting) for run in self.runs)]
        return [r for r in readings if r not in here] if here else []

    def comparison(self) -> list[dict[str, Any]]:
        """The paper's table beside ours: one row per paper cell (empty without a reference table)."""
        if self.reference is None:
            return []
        out = []
        views = [view for r in self.runs for view in r.at_epochs()]  # test_epochs: a run fills several cells
        elsewhere = self.readings_elsewhere()
        for cell in (c for c in self.reference.cells if c.reading not in elsewhere):
            how = {id(r): m for r in views if (m := match(r, cell.setting))}
            exact = [r for r in views if how.get(id(r)) == "exact"]
            matched = exact or [r for r in views if id(r) in how]  # stand-in runs only where no exact run is
            done = [v for r in matched if r.finished and (v := r.metric(cell.metric)) is not None]
            ours = stat([to_unit(v, cell.unit) for v in done])
            row: dict[str, Any] = {"cell": cell.label, "paper": _fmt_unit(cell.value, cell.unit)}
            if ours.n:
                row["ours"] = ours.fmt(2 if cell.unit != "fraction" else 4)
                row["diff"] = f"{ours.mean - cell.value:+.{2 if cell.unit != 'fraction' else 4}f}"
            else:
                statuses = {r.status for r in matched}  # running, or killed without a word: unfinished
                status = next((s for s in ("failed", "interrupted", "running") if s in statuses), "unfinished")
                row["ours"] = status if matched else "not run"
                row["diff"] = ""
            row["verdict"] = verdict(ours, cell.value, self.reference.tolerance)
            stand_ins = sorted({str(r.value("data")) for r in matched if how[id(r)] == "stand-in"})
            row["data"] = f"stand-in: {', '.join(stand_ins)}" if stand_ins else ("paper's" if matched else "")
            row["n"] = str(ours.n)
            if any(c.time_s for c in self.reference.cells):
                times = [t for r in matched if r.finished and (t := r.metric("train_seconds")) is not None]
                row["paper time s"] = f"{cell.time_s:,.0f}" if cell.time_s else ""
                row["our time s"] = f"{statistics.fmean(times):,.0f}" if times else ""
            out.append(row)
        return out

    # ------------------------------------------------------------------ rendering

    def markdown(self) -> str:
        """The whole report as markdown: settings, results table, the paper's table, runs that failed."""
        lines = [f"# Report: {self.root}", ""]
        constants = self.constants()
        if constants:
            lines += ["Common settings: " + ", ".join(f"`{k}={v}`" for k, v in constants.items()), ""]
        finished = sum(r.finished for r in self.runs)
        lines += [f"{len(self.runs)} runs, {finished} finished, {len(self.failures())} not.", ""]
        lines += [*_md_table(self.rows()), ""]
        per_class = self.per_class()
        if per_class:
            total = len(next(r.record["per_class"] for r in self.groups[0].runs if r.record.get("per_class")))
            shown = "" if total <= len(per_class) else f" (the {len(per_class)} lowest F1 of {total})"
            lines += [f"## Per class, test split{shown}", "", *_md_table(per_class), ""]
        if self.reference is not None:
            ref = self.reference
            lines += [f"## Paper: {ref.title} — {ref.caption} (`{ref.name}`)", ""]
            if ref.note:
                lines += [f"{ref.note} Source: `{ref.source}`.", ""]
            lines += [*_md_table(self.comparison()), ""]
            lines += [
                "`diff` = ours - paper, in the paper's unit; `not run`: no run of ours has every setting the paper "
                "fixes for that cell (its dataset included); `data`: `paper's` when our runs used the paper's "
                "dataset, `stand-in: <data>` when the number comes from a stand-in (report.stand_in=true); "
                "`verdict`: `reproduced` when our mean is within the paper's own spread of its number (the table's "
                "tolerance; without one, two standard deviations of our seeds), else `deviates`; `1 run`: one "
                "seed where the paper states no spread, so nothing to judge the difference by.",
                "",
            ]
            for reading in self.readings_elsewhere():
                n = sum(c.reading == reading for c in ref.cells)
                where = f" (`experiment={reading.experiment}` runs them)" if reading.experiment else ""
                read = ", ".join(f"{k}={v}" for k, v in reading.setting.items())
                lines += [f"Not listed: the {n} cells read with `{read}`, which no run here has{where}.", ""]
        if self.failures():
            lines += ["## Runs that did not finish", ""]
            for r in self.failures():
                overrides = ", ".join(f"{k}={v}" for k, v in r.overrides.items()) or "(no overrides)"
                error = r.record.get("error", "no metrics.json: killed or still running")
                lines.append(f"- `{r.path}` [{r.status}] {overrides}: {error}")
            lines.append("")
        return "\n".join(lines)

    def csv(self) -> str:
        """The results table as CSV (empty when there are no runs)."""
        buf = io.StringIO()
        rows = self.rows()
        if rows:
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return buf.getvalue()

    def write(self) -> list[Path]:
        """Write report.md and report.csv (and comparison.csv with a reference) into the root directory.

        Returns:
            The paths written.
        """
        paths = [self.root / "report.md", self.root / "report.csv"]
        write_text(paths[0], self.markdown())
        write_text(paths[1], self.csv())
        if self.reference is not None:
            paths.append(self.root / "comparison.csv")
            write_text(paths[-1], self.comparison_csv())
        return paths

    def comparison_csv(self) -> str:
        """The paper's table beside ours as CSV, each row naming its table (empty without a reference table)."""
        buf = io.StringIO()
        rows = [{"table": self.reference.name, **row} for row in self.comparison()] if self.reference else []
        if rows:
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return buf.getvalue()


def verdict(ours: Stat, paper: float, tolerance: float | None) -> str:
    """Whether our number reproduces the paper's: ``reproduced``, ``deviates``, ``1 run`` or empty when we have none.

    Reproduced: our mean is within the paper's own spread of its number (``tolerance``); where the paper states
    none, within two standard deviations of our seeds. One run against a paper that states no spread has nothing to
    judge a difference by: ``1 run`` (a second seed decides).
    """
    if not ours.n:
        return ""
    if tolerance is None and ours.n < 2:
        return "1 run"
    spread = tolerance if tolerance is not None else 2 * ours.std
    return "reproduced" if abs(ours.mean - paper) <= spread + 1e-9 else "deviates"


def _fmt_unit(value: float, unit: str) -> str:
    return f"{value:.4f}" if unit == "fraction" else f"{value:.2f}"


def _md_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["(no runs)"]
    headers = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(str(row.get(h, "")) for h in headers) + " |" for row in rows]
    return lines


def build_report(root: str | Path, reference: str | None = None) -> Report:
    """Collect every run under ``root`` and group it.

    Args:
        root: a run or multirun directory.
        reference: the paper table to compare with (``<study>/<table>``); None: the one the runs name, if
            they all name the same one.

    Returns:
        The report.

    Raises:
        UserError: ``root`` is not a directory or the reference table is unknown.
    """
    runs = find_runs(root)
    if reference is None:
        named = {r.record.get("reference") for r in runs if r.record.get("reference")}
        reference = named.pop() if len(named) == 1 else None
    keys = swept_keys(runs)
    return Report(Path(root), runs, keys, group_runs(runs, keys), load(reference) if reference else None)
