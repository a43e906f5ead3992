"""``python -m imgbench.report <dir> [--reference study/table]``: the table of every run under ``dir``."""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError
from .publish import publish
from .references import available
from .results import results_markdown
from .table import build_report


def main(argv: list[str] | None = None) -> int:
    """Print the table of every run under a directory and write it there as report.md and report.csv.

    Args:
        argv: the command-line arguments; None: ``sys.argv[1:]``.

    Returns:
        The exit code: 0, or 2 after a user error (printed to stderr).
    """
    parser = argparse.ArgumentParser(
        prog="imgbench-report",
        description="Collect every metrics.json under a run or multirun directory into one table "
        "(report.md and report.csv in that directory); seeds are grouped into mean ± std.",
    )
    parser.add_argument(
        "directory", nargs="?", help="a run or multirun directory, e.g. outputs/train/multirun/<date>_<time>"
    )
    parser.add_argument(
        "--reference",
        help="a paper table to put beside ours (default: the one the runs name); one of: " + ", ".join(available()),
    )
    parser.add_argument("--no-write", action="store_true", help="print only; do not write report.md/report.csv")
    parser.add_argument(
        "--publish",
        metavar="DIR",
        help="also publish the report into DIR (e.g. results/study_e_mnist): report.md with the command, commit, "
        "machine and dates, report.csv, comparison.csv and each run's curves (no checkpoints)",
    )
    parser.add_argument(
        "--results",
        metavar="DIR",
        help="print every paper cell beside the results published in DIR (results/): the README's Results table",
    )
    args = parser.parse_args(argv)
    if args.results:
        try:
            print(results_markdown(args.results), end="")
        except UserError as e:
            print(f"imgbench-report: error: {e}", file=sys.stderr)
            return 2
        return 0
    if not args.directory:
        parser.error("give a run or multirun directory (or --results DIR)")
    try:
        report = build_report(args.directory, args.reference)
        if not report.runs:
            raise UserError(f"no runs under {args.directory} (no metrics.json or .hydra/ found)")
        print(report.markdown())
        if not args.no_write:
            for path in report.write():
                print(f"wrote {path}")
        if args.publish:
            written = publish(args.directory, args.publish, args.reference)
            print(f"published {len(written)} files into {args.publish}")
    except UserError as e:
        print(f"imgbench-report: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
