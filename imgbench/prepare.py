"""``python -m imgbench.prepare <source> <output>`` (also ``imgbench-prepare``): image folders -> streaming shards.

The output is what ``data=imagenet`` and ``data=streaming`` read (``data.root=<output>``); see
:mod:`imgbench.data.sources` for the source layouts and :mod:`imgbench.data.shards` for the format.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .data.shard_writer import check_output, write_dataset
from .data.sources import read_source
from .errors import UserError

log = logging.getLogger("imgbench.prepare")


def main(argv: list[str] | None = None) -> int:
    """Prepare a dataset for streaming.

    Args:
        argv: the command-line arguments; None: ``sys.argv[1:]``.

    Returns:
        The exit code: 0, or 2 after a user error (one line on stderr; nothing is left at the output).
    """
    parser = argparse.ArgumentParser(
        prog="imgbench-prepare",
        description="Turn an image folder (train/<class>/..., val/ and/or test/) or ILSVRC as distributed "
        "(train/<wnid>/*.JPEG, a flat val/ with LOC_val_solution.csv or the devkit's ground truth) into "
        "LitData shards for data=imagenet or data=streaming (data.root=<output>).",
    )
    parser.add_argument("source", type=Path, help="the folder that holds train/ (and val/ and/or test/)")
    parser.add_argument("output", type=Path, help="the dataset folder to create (must be empty or absent)")
    parser.add_argument("--name", help="the dataset's name (default: the source folder's)")
    parser.add_argument("--val-labels", type=Path, help="the flat val/'s label file, if not beside the source")
    parser.add_argument("--workers", type=int, help="decoding processes (default: every core)")
    parser.add_argument("--seed", type=int, default=0, help="the seed of the training images' order (default 0)")
    parser.add_argument("--skip-corrupt", action="store_true", help="skip and count unreadable images")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output once the new one is done")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)  # stderr: progress, errors
    try:
        if args.workers is not None and args.workers < 1:
            raise UserError(f"--workers must be >= 1, got {args.workers}")
        check_output(args.output, args.overwrite)
        source = read_source(args.source, args.val_labels)
        for note in source.notes:
            log.info("%s", note)
        sizes = ", ".join(f"{s} {len(v)}" for s, v in source.splits.items())
        log.info("%s: %d classes; %s images", source.root, len(source.classes), sizes)
        meta, reports = write_dataset(
            source, args.output, args.name, args.workers, args.seed, args.skip_corrupt, args.overwrite
        )
    except UserError as e:
        print(f"imgbench-prepare: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("imgbench-prepare: interrupted; nothing was written", file=sys.stderr)
        return 130
    for split, r in reports.items():
        log.info(
            "%s: %d images in %.1f s (%.0f images/s), %d converted to RGB JPEG, %d skipped",
            split, r.written, r.seconds, r.written / max(r.seconds, 1e-9), r.converted, len(r.skipped),
        )  # fmt: skip
    log.info("wrote %s (%s); train with: python train.py data=streaming data.root=%s", args.output, meta.name,
             args.output)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
