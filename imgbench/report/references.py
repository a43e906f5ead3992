"""The papers' tables as data (``references/<study>.yaml``) and how our runs are matched to their cells."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from ..errors import UserError
from .collect import Run

UNITS = ("fraction", "percent", "error_percent")
# offline stand-ins for a paper's dataset: <our data config> -> <the paper's>; a stand-in run fills a cell only
# when its command says so (report.stand_in=true), and the report marks that number
STAND_INS = {"cifar10_jpeg": "cifar10"}
DATA_KEYS = ("data", "data.name")  # every cell names its dataset by one of these


@dataclass
class Reading:
    """One way a table is run where its paper leaves a choice open (a table without readings has one, empty)."""

    suffix: str = ""  # appended to each cell's label
    setting: dict[str, Any] = field(default_factory=dict)  # added to each cell's setting
    experiment: str = ""  # the experiment that runs it


@dataclass
class Cell:
    """One number of a paper's table and the setting it belongs to."""

    label: str
    setting: dict[str, Any]
    value: float
    metric: str
    unit: str
    time_s: float | None = None
    reading: Reading = field(default_factory=Reading)  # the table's reading this cell is in


@dataclass
class ReferenceTable:
    """One table of a paper: its cells and where they come from.

    Attributes:
        name: ``<study>/<table>``.
        title: the paper's title.
        caption: the table's caption.
        source: where in the paper the numbers are.
        note: how the numbers are to be read, on one line.
        cells: the table's numbers, each once per reading.
        readings: the ways the table is run (one, empty, where the paper leaves nothing open).
        tolerance: the spread the paper itself shows for one setting (in its unit): a number of ours within it of
            the paper's reproduces it; None where the paper gives none.
    """

    name: str  # "<study>/<table>"
    title: str
    caption: str
    source: str
    note: str
    cells: list[Cell] = field(default_factory=list)
    tolerance: float | None = None  # the paper's own spread for one setting, in its unit (None: not stated)
    readings: list[Reading] = field(default_factory=lambda: [Reading()])


def available() -> list[str]:
    """Every reference table there is.

    Returns:
        The ``<study>/<table>`` names.
    """
    names = []
    for f in sorted(resources.files(__package__).joinpath("references").iterdir(), key=lambda p: p.name):
        if f.name.endswith(".yaml"):
            data = yaml.safe_load(f.read_text())
            names += [f"{f.name[:-5]}/{t}" for t in data.get("tables", {})]
    return names


def load(name: str) -> ReferenceTable:
    """Load a paper's table.

    Args:
        name: ``<study>/<table>``, e.g. ``study_e/mnist``.

    Returns:
        The table.

    Raises:
        UserError: there is no such table.
        ValueError: the table's file gives an unknown unit.
    """
    study, _, table = name.partition("/")
    path = resources.files(__package__).joinpath("references", f"{study}.yaml")
    if not table or not path.is_file():
        raise UserError(f"unknown reference table '{name}'; available: {', '.join(available())}")
    data = yaml.safe_load(path.read_text())
    if table not in data.get("tables", {}):
        raise UserError(f"unknown reference table '{name}'; available: {', '.join(available())}")
    spec = data["tables"][table]
    unit = spec.get("unit", "fraction")
    if unit not in UNITS:
        raise ValueError(f"{path}: unit must be one of {UNITS}")
    # a table run in several readings of what the paper leaves open: each cell once per reading, its label suffixed
    readings = [Reading(**r) for r in spec.get("readings") or [{}]]
    specs = [{**c, "label": c["label"] + r.suffix, "setting": {**c["setting"], **r.setting}, "reading": r}
             for r in readings for c in spec["cells"]]  # fmt: skip
    for c in specs:
        if not any(k in c["setting"] for k in DATA_KEYS):  # a cell without its dataset would take any dataset's run
            raise ValueError(f"{path}: cell '{c['label']}' of table '{table}' does not name its data (data: <name>)")
    cells = [
        Cell(
            label=c["label"],
            setting=dict(c["setting"]),
            value=float(c["value"]),
            metric=c.get("metric", spec.get("metric", "test/acc")),
            unit=c.get("unit", unit),
            time_s=c.get("time_s"),
            reading=c["reading"],
        )
        for c in specs
    ]
    return ReferenceTable(
        name,
        data.get("title", study),
        spec.get("caption", table),
        data.get("source", ""),
        " ".join(str(data.get("note", "")).split()),
        cells,
        spec.get("tolerance"),
        readings,
    )


def to_unit(value: float, unit: str) -> float:
    """Our metric (an accuracy in [0, 1]) in the paper's unit.

    Args:
        value: the accuracy, in [0, 1].
        unit: one of :data:`UNITS`.

    Returns:
        ``value`` as a fraction, a percentage, or an error percentage.
    """
    if unit == "percent":
        return 100.0 * value
    if unit == "error_percent":
        return 100.0 * (1.0 - value)
    return value


def _same(a: Any, b: Any) -> bool:
    if a is None:
        return False
    if isinstance(b, bool) or isinstance(a, bool):
        return str(a).lower() == str(b).lower()
    if isinstance(b, int | float):
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return False
    return str(a) == str(b)


def match(run: Run, setting: dict[str, Any]) -> str | None:
    """How ``run`` fills a paper's cell: ``exact``, ``stand-in``, or None (it does not).

    Args:
        run: one of our runs.
        setting: ``key -> value`` that a paper's cell belongs to (every setting the paper fixes, its data too).

    Returns:
        ``exact`` when the run has every value (numbers compared as numbers, booleans case-insensitively);
        ``stand-in`` when it has every value but its data is a stand-in for the cell's (:data:`STAND_INS`) and its
        command said so (``report.stand_in=true``); else None.
    """
    stand_in = False
    for key, want in setting.items():
        have = run.value(key)
        if _same(have, want):
            continue
        if key == "data" and STAND_INS.get(str(have)) == str(want) and _same(run.value("report.stand_in"), True):
            stand_in = True
            continue
        return None
    return "stand-in" if stand_in else "exact"


def matches(run: Run, setting: dict[str, Any]) -> bool:
    """Whether ``run`` fills the cell of ``setting`` (exactly or, when its command said so, as a stand-in)."""
    return match(run, setting) is not None
