"""Every paper cell in one table: the published results (``results/*/comparison.csv``) beside every reference table.

``python -m imgbench.report --results results`` prints it as markdown (the README's "Results" section); a cell no
published comparison has is ``not run``, with its estimated cost when ``results/costs.yaml`` gives one.
"""

from __future__ import annotations

import csv
from pathlib import Path

import yaml

from ..errors import UserError
from .references import available, load

COSTS = "costs.yaml"  # <study>/<table>: a line on what the cells not run would cost (one GPU, this CPU)


def published(results: Path) -> dict[tuple[str, str], dict[str, str]]:
    """The published comparison rows, by (table, cell), with the folder they come from."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for path in sorted(results.glob("*/comparison.csv")):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                if row.get("table") and row.get("n") not in (None, "", "0"):  # a number, not "running" or "failed"
                    rows[(row["table"], row["cell"])] = {**row, "folder": path.parent.name}
    return rows


def results_markdown(results: str | Path) -> str:
    """The markdown table of every paper cell: paper, ours, difference, verdict, where it is published.

    Raises:
        UserError: ``results`` is not a folder.
    """
    results = Path(results)
    if not results.is_dir():
        raise UserError(f"{results} is not a folder; pass the results folder (results/)")
    rows = published(results)
    costs_file = results / COSTS
    costs = yaml.safe_load(costs_file.read_text()) or {} if costs_file.is_file() else {}
    lines = ["| paper, table | cell | paper | ours | diff | verdict | published, or the cost of a run |"]
    lines.append("| --- " * 7 + "|")
    costed: set[str] = set()  # tables whose cost was given on an earlier row
    for name in available():
        table = load(name)
        for cell in table.cells:
            row = rows.get((name, cell.label))
            paper = f"{cell.value:.4f}" if cell.unit == "fraction" else f"{cell.value:.2f}"
            if row is None:
                cost = costs.get(name, "") if name not in costed else "(as above)"
                costed.add(name)
                lines.append(f"| {name} | {cell.label} | {paper} | not run | | | {cost} |")
                continue
            data = f" ({row['data']})" if row.get("data", "").startswith("stand-in") else ""
            folder = f"[{row['folder']}](results/{row['folder']}/report.md)"
            lines.append(f"| {name} | {cell.label} | {paper} | {row['ours']}{data} | {row['diff']} | "
                         f"{row.get('verdict', '')} | {folder} |")  # fmt: skip
    return "\n".join(lines) + "\n"
