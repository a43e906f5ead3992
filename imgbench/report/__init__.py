"""Result tables: every run's metrics.json under a directory in one table, the papers' numbers beside ours.

python -m imgbench.report outputs/train/multirun/<date>_<time>      # or: imgbench-report <dir>
"""

from .collect import Run, find_runs
from .references import ReferenceTable, available, load
from .table import Report, build_report

__all__ = ["ReferenceTable", "Report", "Run", "available", "build_report", "find_runs", "load"]
