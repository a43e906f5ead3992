"""Writing a prepared dataset: every split's images checked and stored as LitData chunks, all cores at work.

The dataset is written into a temporary folder beside the output and renamed into place at the end, so an
interrupted prepare never leaves a folder that looks complete; ``imgbench.json`` is the last file written.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from litdata.streaming.writer import BinaryWriter
from tqdm import tqdm

from ..errors import DataError
from ..io import write_json
from .shards import META_FILE, ShardMeta, encode_image
from .sources import Source

log = logging.getLogger(__name__)

CHUNK_BYTES = "64MB"  # LitData's recommended chunk size: few files, small enough to stream and shuffle


@dataclass
class SplitReport:
    """What writing one split did.

    Attributes:
        written: images stored.
        converted: images re-encoded (gray, CMYK, PNG, ...).
        skipped: unreadable files skipped (with ``skip_corrupt``).
        seconds: wall time.
    """

    written: int = 0
    converted: int = 0
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse an output that holds anything, unless ``overwrite``; refuse a file in its place.

    Args:
        output: the dataset folder to write.
        overwrite: replace what is there (only once the new dataset is complete).

    Raises:
        DataError: the output is a file, or a non-empty folder without ``overwrite``.
    """
    if output.exists() and not output.is_dir():
        raise DataError(f"output {output} is a file; pass a folder")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise DataError(f"output folder {output} is not empty; pass another folder or --overwrite to replace it")


def _write_split(
    samples: list[tuple[Path, int]], folder: Path, pool: multiprocessing.pool.Pool, skip_corrupt: bool, split: str
) -> tuple[SplitReport, np.ndarray]:
    """Encode ``samples`` in the pool and write them in order; returns the report and channel sums."""
    report, started = SplitReport(), time.perf_counter()
    writer = BinaryWriter(str(folder), chunk_bytes=CHUNK_BYTES)
    sums = np.zeros((3, 3))  # sum, sum of squares, count per channel
    paths = [str(p) for p, _ in samples]
    progress = tqdm(total=len(samples), desc=f"prepare {split}", unit="img", smoothing=0.05, mininterval=1.0)
    for (path, label), enc in zip(samples, pool.imap(encode_image, paths, chunksize=32)):
        progress.update()
        if enc.error:
            if not skip_corrupt:
                progress.close()
                raise DataError(f"{path} {enc.error}; remove or replace it, or pass --skip-corrupt to skip such files")
            report.skipped.append(str(path))
            continue
        writer.add_item(report.written, {"image": enc.data, "label": int(label), "index": report.written})
        report.written += 1
        report.converted += enc.converted
        sums += np.stack([enc.sums, enc.squares, np.full(3, enc.count)])
    progress.close()
    if report.written == 0:
        raise DataError(f"no readable image in the {split} split; check the source")
    writer.done()
    writer.merge()
    report.seconds = time.perf_counter() - started
    return report, sums


def write_dataset(
    source: Source,
    output: Path,
    name: str | None = None,
    workers: int | None = None,
    seed: int = 0,
    skip_corrupt: bool = False,
    overwrite: bool = False,
) -> tuple[ShardMeta, dict[str, SplitReport]]:
    """Write ``source`` as a prepared dataset at ``output``.

    Args:
        source: the listed source (:func:`~imgbench.data.sources.read_source`).
        output: the dataset folder to create.
        name: the dataset's name (default: the source folder's).
        workers: decoding processes (default: every core).
        seed: the seed of the training images' order.
        skip_corrupt: skip (and count) unreadable images instead of stopping at the first.
        overwrite: replace a non-empty output once the new dataset is complete.

    Returns:
        The written description and a report per split.

    Raises:
        DataError: the output is in use, or an image cannot be read (without ``skip_corrupt``).
    """
    check_output(output, overwrite)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.parent / f".{output.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    reports: dict[str, SplitReport] = {}
    sums = None
    try:
        # fork: the workers need nothing but encode_image, and start at once; one torch thread each
        context = multiprocessing.get_context("fork")
        with context.Pool(workers or os.cpu_count() or 1, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            for split, samples in source.splits.items():
                if split == "train":
                    samples = list(samples)
                    random.Random(seed).shuffle(samples)
                reports[split], split_sums = _write_split(samples, tmp / split, pool, skip_corrupt, split)
                if split == "train":
                    sums = split_sums
        total, squares, count = sums
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean * mean, 1e-12))
        meta = ShardMeta(
            name or source.root.name,
            source.classes,
            source.class_names,
            {s: r.written for s, r in reports.items()},
            (mean / 255).tolist(),
            (std / 255).tolist(),
            {
                "source": str(source.root),
                "seed": seed,
                "converted": {s: r.converted for s, r in reports.items()},
                "skipped": {s: r.skipped for s, r in reports.items() if r.skipped},
            },
        )
        write_json(tmp / META_FILE, meta.to_json())
        _move_into_place(tmp, output, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta, reports


def _move_into_place(tmp: Path, output: Path, overwrite: bool) -> None:
    """Rename the finished dataset to ``output``; an old one is removed only after that."""
    old = None
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:  # filled while we were writing
            raise DataError(f"output folder {output} was filled by another process meanwhile; nothing was replaced")
        old = output.parent / f".{output.name}.old-{os.getpid()}"
        output.rename(old)
    elif output.is_dir():
        output.rmdir()
    tmp.rename(output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
