"""Run the benchmark sections and write benchmarks/results.md and benchmarks/results.json.

Usage: python -m benchmarks [--quick] [--only overhead,datapath,...] [--threads N] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from .common import Figure, load, machine, quiet
from .sections import SECTIONS, Sizes

HERE = Path(__file__).resolve().parent


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line's options.

    Args:
        argv: the arguments after the program name.

    Returns:
        argparse.Namespace: the options.
    """
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (about 3 minutes): checks that it all runs")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {', '.join(SECTIONS)}")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for every measurement (default 1: on a shared 2-core machine a second thread waits "
        "for a busy core in every parallel region, which makes timings erratic)",
    )
    p.add_argument("--repeats", type=int, default=None, help="repetitions per figure (default 3; median reported)")
    p.add_argument("--recipe-epochs", type=int, default=None, help="epochs of the cifar10_fast run (default 16)")
    p.add_argument(
        "--recipe-train-size", type=int, default=None, help="training images of the cifar10_fast run (default all)"
    )
    p.add_argument("--out", type=Path, default=HERE, help="folder for results.md and results.json")
    p.add_argument(
        "--keep-others",
        action="store_true",
        help="keep the figures of the sections not run from the existing results.json in --out (each marked with "
        "the date it was measured), instead of leaving them out",
    )
    return p.parse_args(argv)


def kept_figures(path: Path, sections: list[str]) -> tuple[list[Figure], dict[str, dict]]:
    """The figures of the sections not in ``sections`` from an earlier results.json (``--keep-others``).

    Args:
        path: the earlier results.json (it may be missing).
        sections: the sections this run measures again.

    Returns:
        tuple[list[Figure], dict[str, dict]]: the kept figures, each marked with the date it was measured, and per
        kept section that date and its seconds.
    """
    if not path.is_file():
        return [], {}
    old = json.loads(path.read_text())
    figures = [Figure.from_dict(f) for f in old["figures"] if f["section"] not in sections]
    # a section kept by an earlier --keep-others run has its seconds in that run's kept_sections
    earlier = old["machine"].get("kept_sections", {})
    seconds = {k: v.get("seconds") for k, v in earlier.items()}
    seconds.update(old["machine"].get("section_seconds", {}))
    # the CPU each kept section was measured on: the machine of its run (CPUs differ between runs)
    old_cpu = f"{old['machine']['cpu']}, {old['machine']['cpu_capability']}"
    cpus = {k: v.get("cpu", old_cpu) for k, v in earlier.items()}
    kept = {}
    for f in figures:
        date = f.extra.get("measured", old["machine"]["date"])
        f.extra["measured"] = date
        kept[f.section] = {"date": date, "seconds": seconds.get(f.section), "cpu": cpus.get(f.section, old_cpu)}
    return figures, kept


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections and write results.json and results.md after each.

    Args:
        argv: the command line's arguments (default: ``sys.argv[1:]``).

    Returns:
        int: the exit status (2 for an unknown section).
    """
    args = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    quiet()
    torch.set_num_threads(args.threads)
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.repeats:
        sizes.repeats = max(1, args.repeats)
    if args.recipe_epochs:
        sizes.recipe_epochs = args.recipe_epochs
    if args.recipe_train_size:
        sizes.recipe_train_size = args.recipe_train_size
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        print(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    info = machine()
    info.update({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "quick": args.quick})
    info["load_at_start"] = load()
    kept: list[Figure] = []
    if args.keep_others:  # read before this run writes over the file
        kept, info["kept_sections"] = kept_figures(args.out / "results.json", sections)
    figures: list[Figure] = []
    seconds: dict[str, float] = {}
    for name in sections:
        logging.getLogger("benchmarks").info("section %s (load %.2f)", name, load())
        start = time.perf_counter()
        figures += SECTIONS[name](sizes)
        seconds[name] = round(time.perf_counter() - start, 1)
        info["load_at_end"] = load()
        info["section_seconds"] = seconds
        everything = sorted(figures + kept, key=lambda f: list(SECTIONS).index(f.section))
        write(args.out, info, sizes, everything)  # after every section: a later failure loses nothing measured
    figures = everything
    print(report(info, sizes, figures))
    return 0


def _json_default(value: Any) -> Any:
    """Turn numpy scalars and arrays in the figures' extras (``np.bool_``, ``np.float64``) into plain JSON values.

    Args:
        value: what json cannot write by itself.

    Returns:
        Any: the value as Python scalars and lists.

    Raises:
        TypeError: for anything without ``tolist``.
    """
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# results.md from this line on is written by hand (one-off measurements quoted elsewhere) and kept by every run
NOTES_MARKER = "<!-- hand-written notes below this line: make bench keeps them -->"


def write(out: Path, info: dict, sizes: Sizes, figures: list[Figure]) -> None:
    """Write results.json and results.md in ``out``.

    Args:
        out: the folder (made if missing).
        info: the machine and the run (see :func:`benchmarks.common.machine`).
        sizes: the sizes measured at.
        figures: the figures, in report order.
    """
    out.mkdir(parents=True, exist_ok=True)
    data = {"machine": info, "sizes": vars(sizes), "figures": [f.as_dict() for f in figures]}
    (out / "results.json").write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    notes = kept_notes(out / "results.md")
    (out / "results.md").write_text(report(info, sizes, figures) + (f"\n{notes}" if notes else ""))


def kept_notes(path: Path) -> str:
    """The hand-written end of an existing results.md (from :data:`NOTES_MARKER` on), which a new run keeps.

    Args:
        path: results.md.

    Returns:
        str: that part, or "" when there is none.
    """
    text = path.read_text() if path.is_file() else ""
    start = text.find(NOTES_MARKER)
    return text[start:] if start >= 0 else ""


def _fmt(value: float, unit: str) -> str:
    """One sample or median for the report.

    Args:
        value: the number.
        unit: its unit ("img/s", "s", "MB" or anything else for a bare number).

    Returns:
        str: the number with its unit.
    """
    if unit == "img/s":
        return f"{value:,.0f} img/s" if value >= 100 else f"{value:.2f} img/s"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "MB":
        return f"{value:,.0f} MB"
    return f"{value:.3f}"


def report(info: dict, sizes: Sizes, figures: list[Figure]) -> str:
    """The text of results.md: the machine, the side-by-side figures, their samples, scaling and the recipe run.

    Args:
        info: the machine and the run.
        sizes: the sizes measured at.
        figures: the figures, in report order.

    Returns:
        str: the Markdown text.
    """
    lines = [
        "# imgbench benchmarks",
        "",
        "Written by `make bench` (`python -m benchmarks`). Every ratio compares two things measured side by side in",
        "one run on one machine: alternated (B A, A B, ...), each the median of the repetitions shown.",
        "",
        f"- machine: {info['cpu']}, {info['cores']} cores, torch CPU capability {info['cpu_capability']}, native bf16: "
        f"{info['native_bf16']}, GPU: {info['gpu'] or 'none'}",
        f"- torch {info['torch']}, Python {info['python']}, torch threads {info['threads']}",
        f"- {info['date']}, {'quick sizes' if info['quick'] else 'default sizes'}, {sizes.repeats} repetitions"
        " per figure (at least 5 for the overhead figures);"
        f" load average {info['load_at_start']} at the start, {info['load_at_end']} at the end (other jobs share"
        f" the cores)",
        f"- seconds per section: {', '.join(f'{k} {v}' for k, v in info['section_seconds'].items())}",
        *(
            f"- section {name} kept from the run of {k['date']} on {k.get('cpu', 'another machine')} "
            f"(`--keep-others`; it took {k['seconds']} s)"
            for name, k in info.get("kept_sections", {}).items()
        ),
        "",
        "| section | figure | A | B | A (median) | B (median) | ratio | target | met | load | notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in figures:
        if f.section in ("scaling", "recipe"):
            continue
        met = f.extra.get("met")
        ratio = f"{f.ratio:.2f}x" if f.section != "overhead" else f"{f.a_median / f.b_median:.3f}x time"
        loads = f"{min(f.loads):.1f}-{max(f.loads):.1f}" if f.loads else ""
        lines.append(
            f"| {f.section} | {f.name} | {f.a_label} | {f.b_label} | {_fmt(f.a_median, f.unit)} | "
            f"{_fmt(f.b_median, f.unit)} | {ratio} | {f.target} | {'' if met is None else ('yes' if met else 'no')} | "
            f"{loads} | {f.note} |"
        )
    lines += ["", "Samples (A; B), in measurement order:", ""]
    for f in figures:
        if f.section not in ("scaling", "recipe"):
            lines.append(
                f"- {f.name}: {', '.join(_fmt(v, f.unit) for v in f.a)}; {', '.join(_fmt(v, f.unit) for v in f.b)}"
            )
    for f in figures:
        if f.section == "scaling":
            lines += [
                "",
                "## Scaling",
                "",
                f"{f.name} ({f.note}):",
                "",
                "| images | seconds (median) | s per 1,000 |",
                "| --- | --- | --- |",
            ]
            for size, v in f.extra["per_size"].items():
                n, med = int(size), sorted(v)[len(v) // 2]  # keys are strings in a figure read from results.json
                lines.append(f"| {n:,} | {med:.2f} | {med / n * 1000:.3f} |")
            lines += [
                "",
                f"Batch size at {sizes.scaling_batch_images:,} images:",
                "",
                "| batch | seconds (median) | img/s |",
                "| --- | --- | --- |",
            ]
            for b, v in f.extra["per_batch"].items():
                med = sorted(v)[len(v) // 2]
                lines.append(f"| {b} | {med:.2f} | {sizes.scaling_batch_images / med:,.0f} |")
            lines.append("")
            lines.append(
                f"Seconds per image at the largest size relative to the smallest: {f.a[0]:.3f} (1.0 = linear)."
            )
    for f in figures:
        if f.section == "recipe":
            x = f.extra
            lines += [
                "",
                "## A fast CIFAR-10 recipe on this machine",
                "",
                f"`{x['command']}`: test accuracy **{x['test_acc']:.4f}** after {x['epochs']} epoch(s) on "
                f"{x['train_size']:,} training images, {x['train_seconds'] / 60:.1f} minutes of training "
                f"({x['images_per_sec']:,.0f} img/s; {x['wall_seconds'] / 60:.1f} minutes in all, with loading and "
                f"the test), precision {x['precision']}, channels_last {x['channels_last']}, "
                f"{x.get('threads', '?')} torch threads (a user's default).",
            ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
