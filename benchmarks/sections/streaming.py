"""Section ``streaming``: the streaming data path (``imgbench.prepare``'s LitData shards) on an ImageNet-like folder.

The section writes its own folder of JPEGs to a temporary directory (10 classes, ``train/`` and ``val/`` class
folders; each side 200-500 px; smooth colour blobs and gradients with mild noise, saved by Pillow at quality 90,
so the files are 10-65 KB, about 33 KB on average, as photos of that size are) and measures: prepare's images
per second; the training loader's images per second (random-resized crop 224, flip, normalisation) against
torchvision's ImageFolder + DataLoader with the same transforms, and against decoding alone
(``torchvision.io.decode_jpeg`` in as many processes); and the peak memory of a ``train.py`` run on N and on 10N
training images.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..common import REPO, Figure, side_by_side
from .shared import Sizes

CLASSES = 10
SIDES = (200, 500)  # each side of a generated image is drawn from this range, as ImageNet's photos mostly are
JPEG_QUALITY = 90


# ---------------------------------------------------------------------------- the generated image folder


@dataclass
class SourceInfo:
    """What :func:`write_source` wrote.

    Attributes:
        root: the folder (``train/<class>/*.jpg`` and ``val/<class>/*.jpg``).
        train: training images.
        val: validation images.
        mean_kb: the files' mean size in KB (1,000 bytes).
        min_kb: the smallest file's size.
        max_kb: the largest file's size.
        mean_side: the images' mean side in pixels (height and width together).
    """

    root: Path
    train: int
    val: int
    mean_kb: float
    min_kb: float
    max_kb: float
    mean_side: float

    def describe(self, sides: tuple[int, int] = SIDES) -> str:
        """The images in words, for a figure's note."""
        return (
            f"{self.train:,} training + {self.val:,} validation JPEGs, {CLASSES} classes, sides {sides[0]}-{sides[1]}"
            f" px (mean {self.mean_side:.0f}), {self.mean_kb:.0f} KB mean ({self.min_kb:.0f}-{self.max_kb:.0f}),"
            f" quality {JPEG_QUALITY}"
        )


def synthetic_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """An image with a photo's statistics rather than noise's: smooth blobs, a gradient, finer blobs, mild noise.

    Args:
        rng: where the random numbers come from.
        height: the image's height.
        width: its width.

    Returns:
        np.ndarray: uint8 ``(height, width, 3)``.
    """
    from PIL import Image

    k = int(rng.integers(3, 9))
    coarse = Image.fromarray(rng.integers(0, 256, (k, k, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    fine = Image.fromarray(rng.integers(0, 256, (4 * k, 4 * k, 3), dtype=np.uint8)).resize(
        (width, height), Image.BILINEAR
    )
    img = 0.7 * np.asarray(coarse, dtype=np.float32) + 0.3 * np.asarray(fine, dtype=np.float32)
    ramp = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :, None]
    img += ramp * rng.uniform(-60, 60, 3).astype(np.float32)
    img += rng.normal(0, 6, (height, width, 3)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_images(job: tuple[list[Path], int, tuple[int, int]]) -> list[int]:
    """Write the JPEGs of ``job`` (paths, seed, side range); returns their sizes in bytes and sides (a pool task)."""
    from PIL import Image

    paths, seed, sides = job
    out = []
    for k, path in enumerate(paths):
        rng = np.random.default_rng([seed, k])
        height, width = (int(v) for v in rng.integers(sides[0], sides[1] + 1, 2))
        Image.fromarray(synthetic_image(rng, height, width)).save(path, "JPEG", quality=JPEG_QUALITY)
        out += [path.stat().st_size, height + width]
    return out


def write_source(
    root: Path, train: int, val: int, sides: tuple[int, int] = SIDES, seed: int = 0, workers: int | None = None
) -> SourceInfo:
    """Write an ImageNet-like image folder: ``root/train/c<k>/<i>.jpg`` and ``root/val/c<k>/<i>.jpg``.

    Image ``i`` of a split is of class ``i % 10``, so the first ``n`` images of a split are balanced (see
    :func:`subset_source`).

    Args:
        root: the folder to write (made if missing).
        train: training images.
        val: validation images.
        sides: the range each side is drawn from, in pixels.
        seed: the images' seed.
        workers: writing processes (default: every core).

    Returns:
        SourceInfo: the folder and its images' sizes.
    """
    jobs = []
    for s, (split, n) in enumerate((("train", train), ("val", val))):
        for c in range(CLASSES):
            (root / split / f"c{c}").mkdir(parents=True, exist_ok=True)
        paths = [root / split / f"c{i % CLASSES}" / f"{i:06d}.jpg" for i in range(n)]
        jobs += [(paths[j : j + 64], seed * 1_000_003 + s * 100_003 + j, sides) for j in range(0, n, 64)]
    with multiprocessing.get_context("fork").Pool(workers or os.cpu_count() or 1) as pool:
        written = [v for part in pool.map(_write_images, jobs) for v in part]
    kb = np.array(written[0::2], dtype=np.float64) / 1000
    return SourceInfo(
        root, train, val, float(kb.mean()), float(kb.min()), float(kb.max()), float(np.mean(written[1::2]) / 2)
    )


def subset_source(source: Path, dest: Path, train: int, val: int) -> Path:
    """A folder of the first ``train`` and ``val`` images of a :func:`write_source` folder (hard links).

    Args:
        source: the full folder.
        dest: the folder to make.
        train: training images to keep.
        val: validation images to keep.

    Returns:
        Path: ``dest``.
    """
    for split, n in (("train", train), ("val", val)):
        for i in range(n):
            src = source / split / f"c{i % CLASSES}" / f"{i:06d}.jpg"
            out = dest / split / src.parent.name / src.name
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, out)
            except OSError:  # another file system
                shutil.copyfile(src, out)
    return dest


# ---------------------------------------------------------------------------- prepare


def prepare_rate(source: Path, output: Path) -> float:
    """Measure the images per second of one ``imgbench.prepare`` of ``source`` (every core; the output replaced).

    Args:
        source: the image folder.
        output: the shards' folder.

    Returns:
        float: images written (all splits) per second, the listing included.
    """
    from imgbench.data.shard_writer import write_dataset
    from imgbench.data.sources import read_source

    start = time.perf_counter()
    _, reports = write_dataset(read_source(source), output, overwrite=True)
    return sum(r.written for r in reports.values()) / (time.perf_counter() - start)


def _read_and_decode(paths: list[str]) -> int:
    """Read and decode JPEG files (a pool task); returns how many."""
    from imgbench.data.image_views import decode

    for p in paths:
        decode(Path(p).read_bytes())
    return len(paths)


def read_decode_rate(files: list[Path], workers: int) -> float:
    """Measure the images per second of reading and decoding ``files`` in a new pool of ``workers`` processes.

    It bounds prepare's speed: prepare reads and decodes every file too (to check it and measure the channel
    statistics), then writes it. The pool is started inside the timing, as prepare's is.

    Args:
        files: the JPEG files.
        workers: processes (one torch thread each).

    Returns:
        float: images per second.
    """
    from imgbench.data.image_views import decode  # noqa: F401 (imported here: the forked workers inherit it)

    paths = [str(p) for p in files]
    chunks = [paths[i : i + 32] for i in range(0, len(paths), 32)]
    start = time.perf_counter()
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        n = sum(pool.imap_unordered(_read_and_decode, chunks))
    return n / (time.perf_counter() - start)


def prepare_figure(info: SourceInfo, output: Path, repeats: int) -> Figure:
    """Measure prepare's images per second on ``info``'s folder, with reading and decoding alone beside it.

    Args:
        info: the generated folder.
        output: where the shards go (written ``repeats`` times; left there).
        repeats: samples of each side.

    Returns:
        Figure: images per second; no target (reading and decoding alone is prepare's limit, not a rival).
    """
    workers = os.cpu_count() or 1
    files = sorted(info.root.glob("*/*/*.jpg"))
    fig = Figure(
        "streaming",
        "imgbench.prepare: image folder -> LitData shards",
        f"prepare (write_dataset, {workers} processes)",
        f"read + decode_jpeg only ({workers} processes)",
        "img/s",
        note=f"{info.describe()}; every core; B reads and decodes the same files and writes nothing (what prepare "
        "cannot avoid: it decodes each image to check it and to measure the channel statistics)",
    )
    return side_by_side(fig, lambda: prepare_rate(info.root, output), lambda: read_decode_rate(files, workers), repeats)


# ---------------------------------------------------------------------------- training loaders


def streaming_module(shards: Path, image_size: int = 224, batch_size: int = 64, workers: int = 2):
    """The StreamingDataModule of the training figures: random-resized crops, batched flip, the dataset's statistics.

    Args:
        shards: the prepared dataset.
        image_size: the crop's side.
        batch_size: images per batch.
        workers: loader worker processes.

    Returns:
        StreamingDataModule: set up (no validation split).
    """
    from imgbench.data import StreamingDataModule

    dm = StreamingDataModule(
        root=str(shards),
        image_size=image_size,
        eval_resize=round(image_size * 256 / 224),
        train_crop="random_resized",
        batch_size=batch_size,
        num_workers=workers,
        val_size=0,
        augment={"flip": True},
        normalize="dataset",
        seed=0,
    )
    dm.setup()
    return dm


def _check_count(n: int, expected: int | None, what: str) -> None:
    """Refuse a pass that did not see every image once (its rate would not compare like with like)."""
    if expected is not None and n != expected:
        raise RuntimeError(f"{what} yielded {n} images in one pass, expected {expected}")


def streaming_rate(dm, expected: int | None = None) -> float:
    """Measure the images per second of one training epoch of the streaming loader, flip and normalisation included.

    The batched flip and normalisation run on this process, as ``on_after_batch_transfer`` runs them in
    training; a new loader per epoch, as a training epoch starts its workers (``persistent_workers=False``).

    Args:
        dm: the set-up StreamingDataModule.
        expected: the images one epoch must yield (None: not checked).

    Returns:
        float: images per second.

    Raises:
        RuntimeError: the epoch yielded another number of images than ``expected``.
    """
    n = 0
    start = time.perf_counter()
    for x, _ in dm.train_dataloader():
        n += len(dm.transform(x, train=True))
    rate = n / (time.perf_counter() - start)
    _check_count(n, expected, "the streaming loader")
    return rate


def imagefolder_loader(
    train_dir: Path, mean: list[float], std: list[float], image_size: int = 224, batch_size: int = 64, workers: int = 2
) -> torch.utils.data.DataLoader:
    """What a lightning-hydra-template user writes for an image folder: ImageFolder, per-image transforms, DataLoader.

    Args:
        train_dir: ``<folder>/train``.
        mean: the normalisation's mean (the streaming side's, so both normalise alike).
        std: its standard deviation.
        image_size: the crop's side.
        batch_size: images per batch.
        workers: loader worker processes.

    Returns:
        torch.utils.data.DataLoader: shuffled, ``pin_memory=False``, workers started each epoch.
    """
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    transform = T.Compose(
        [T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)]
    )
    dataset = ImageFolder(str(train_dir), transform=transform)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=workers, pin_memory=False
    )


def loader_rate(loader, expected: int | None = None) -> float:
    """Measure the images per second of one pass over ``loader``.

    Args:
        loader: what yields (images, labels) batches.
        expected: the images one pass must yield (None: not checked).

    Returns:
        float: images per second.

    Raises:
        RuntimeError: the pass yielded another number of images than ``expected``.
    """
    n = 0
    start = time.perf_counter()
    for x, _ in loader:
        n += len(x)
    rate = n / (time.perf_counter() - start)
    _check_count(n, expected, "the loader")
    return rate


_BLOBS: list[torch.Tensor] = []  # DecodePool's JPEGs, in memory before its pool forks


def _decode_range(span: tuple[int, int]) -> int:
    """Decode ``_BLOBS[start:stop]`` (a pool task); returns how many."""
    from torchvision.io import ImageReadMode, decode_jpeg

    for blob in _BLOBS[span[0] : span[1]]:
        decode_jpeg(blob, mode=ImageReadMode.RGB)
    return span[1] - span[0]


class DecodePool:
    """``workers`` processes (one torch thread each) that decode JPEGs read into memory before they started.

    The bytes are read in this process first and inherited by the forked workers: the timing holds
    ``torchvision.io.decode_jpeg`` alone (no file reading, no copying of bytes between processes).

    Args:
        files: the JPEG files.
        workers: processes.
    """

    def __init__(self, files: list[Path], workers: int) -> None:
        _BLOBS[:] = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in files]
        self.n = len(_BLOBS)
        step = max(1, -(-self.n // (8 * workers)))
        self.spans = [(i, min(i + step, self.n)) for i in range(0, self.n, step)]
        context = multiprocessing.get_context("fork")
        self.pool = context.Pool(workers, initializer=torch.set_num_threads, initargs=(1,))
        self.pool.map(_decode_range, [(0, 1)] * workers)  # started

    def rate(self) -> float:
        """Measure the images per second of decoding every file once.

        Returns:
            float: images per second.
        """
        start = time.perf_counter()
        n = sum(self.pool.map(_decode_range, self.spans, chunksize=1))
        return n / (time.perf_counter() - start)

    def close(self) -> None:
        """Stop the processes and free the bytes."""
        self.pool.terminate()
        self.pool.join()
        _BLOBS.clear()


def per_image_ms(dm, shards: Path, count: int = 256) -> dict[str, float]:
    """Where the streaming loader's time goes, per image, each step timed alone in this process (one thread).

    The steps: ``decode`` (:func:`imgbench.data.image_views.decode`) and ``resized_crop`` (the random-resized
    crop, as :class:`~imgbench.data.image_views.ImageView` does both in a worker), ``collate`` (stacking a batch
    into shared memory, as a DataLoader worker does before sending it) and ``flip_normalise`` (``dm.transform``
    on the uint8 batch, in the training process), with ``flip_normalise_kernel``, the part of it this process
    spent in the kernel (page faults of the batch-sized tensors it allocates).

    Args:
        dm: the set-up StreamingDataModule.
        shards: its prepared dataset.
        count: images to time (the first of the training split).

    Returns:
        dict[str, float]: milliseconds per image of each step.
    """
    import random
    import resource

    from litdata import StreamingDataset
    from torchvision.transforms.v2 import functional as TF

    from imgbench.data.image_views import decode, random_resized_box

    stream = StreamingDataset(str(shards / "train"))
    blobs = [stream[i]["image"] for i in range(min(count, len(stream)))]
    out: dict[str, float] = {}
    start = time.perf_counter()
    images = [decode(b) for b in blobs]
    out["decode"] = time.perf_counter() - start
    rng = random.Random(0)
    boxes = [random_resized_box(*im.shape[1:], rng, dm.scale, dm.ratio) for im in images]
    size = [dm.image_size, dm.image_size]
    start = time.perf_counter()
    crops = [TF.resized_crop(im, *box, size, antialias=True) for im, box in zip(images, boxes)]
    out["resized_crop"] = time.perf_counter() - start
    b = dm.batch_size
    start = time.perf_counter()
    batches = []
    for i in range(0, len(crops), b):
        part = crops[i : i + b]
        batches.append(torch.stack(part, out=torch.empty(len(part), *part[0].shape, dtype=torch.uint8).share_memory_()))
    out["collate"] = time.perf_counter() - start
    start, kernel = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_stime
    for x in batches:
        dm.transform(x, train=True)
    out["flip_normalise"] = time.perf_counter() - start
    out["flip_normalise_kernel"] = resource.getrusage(resource.RUSAGE_SELF).ru_stime - kernel
    return {k: v / len(blobs) * 1000 for k, v in out.items()}


def loader_figures(
    info: SourceInfo, shards: Path, repeats: int, image_size: int = 224, batch_size: int = 64, workers: int = 2
) -> list[Figure]:
    """Measure the streaming loader against ImageFolder + DataLoader, then against decoding alone.

    Args:
        info: the generated folder (its ``train/`` is what ``shards`` holds as the training split).
        shards: the prepared dataset.
        repeats: samples of each side.
        image_size: the crop's side.
        batch_size: images per batch.
        workers: loader worker processes, and decoding processes.

    Returns:
        list[Figure]: the two figures (images per second).
    """
    dm = streaming_module(shards, image_size, batch_size, workers)
    threads = torch.get_num_threads()
    common = (
        f"{info.describe()}; the {info.train:,} training images once per sample; batch {batch_size}, "
        f"{workers} loader workers (started each epoch), pin_memory=False; this process on {threads} torch "
        f"thread(s), each worker on 1"
    )
    a_label = f"StreamingDataModule ({workers} workers)"
    vs_template = Figure(
        "streaming",
        f"training loader: random-resized crop {image_size} + flip + normalise",
        a_label,
        f"ImageFolder + DataLoader ({workers} workers)",
        "img/s",
        target=">= 1.5x",
        note=f"{common}; A: decode_jpeg + resized_crop in the workers, flip + normalise on each uint8 batch here "
        "(dm.transform); B: PIL decode, T.RandomResizedCrop, T.RandomHorizontalFlip, T.ToTensor, T.Normalize "
        "per image in the workers, the same mean and std",
    )
    baseline = imagefolder_loader(info.root / "train", dm.mean, dm.std, image_size, batch_size, workers)
    n = info.train
    streaming_rate(dm, n)  # warm-up: page cache, imports in the workers
    loader_rate(baseline, n)
    side_by_side(vs_template, lambda: streaming_rate(dm, n), lambda: loader_rate(baseline, n), repeats)
    vs_template.extra["met"] = vs_template.ratio >= 1.5

    decoder = DecodePool(sorted((info.root / "train").glob("*/*.jpg")), workers)
    try:
        vs_decode = Figure(
            "streaming",
            f"training loader vs decoding alone (crop {image_size})",
            a_label,
            f"decode_jpeg alone ({workers} processes)",
            "img/s",
            target=">= 0.8x",
            note=f"{common}; B: torchvision.io.decode_jpeg (RGB) of the same training JPEGs in a Pool of "
            f"{workers} processes (1 torch thread each), the bytes read into memory before the pool started "
            "(no file reading, no crop, nothing sent back)",
        )
        decoder.rate()
        side_by_side(vs_decode, lambda: streaming_rate(dm, n), decoder.rate, repeats)
        vs_decode.extra["met"] = vs_decode.ratio >= 0.8
    finally:
        decoder.close()
    profile = per_image_ms(dm, shards)
    vs_decode.extra["per_image_ms"] = profile
    vs_decode.note += "; per image, each step alone on one thread here: " + ", ".join(
        f"{k} {v:.2f} ms" for k, v in profile.items()
    )
    return [vs_template, vs_decode]


# ---------------------------------------------------------------------------- peak memory of a training run


def _children() -> dict[int, list[int]]:
    """Every process's children, from ``/proc/<pid>/stat``."""
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        out.setdefault(ppid, []).append(int(entry))
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (now).

    Args:
        pid: the root process.

    Returns:
        list[int]: their ids, ``pid`` first.
    """
    children, tree, i = _children(), [pid], 0
    while i < len(tree):
        tree += children.get(tree[i], [])
        i += 1
    return tree


def _status_kb(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` value in kB (0 for a process that is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int:
    """The process's proportional set size in kB (shared pages split between their users; 0 if unknown)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class TreeMemory:
    """What :func:`peak_tree_memory` saw.

    Attributes:
        peak_rss_mb: the largest sum of the processes' resident sets (MB of 2**20 bytes) at one poll.
        peak_pss_mb: the largest sum of their proportional set sizes (pages shared by forked workers counted once).
        peak_anon_mb: the largest sum of their anonymous resident memory (RssAnon: not the mapped files, such as
            the shards' chunks that LitData memory-maps, whose pages are the page cache's).
        peak_processes: the most processes alive at one poll.
        returncode: the command's exit status.
        seconds: its wall time.
        output: the end of its output (stdout and stderr).
    """

    peak_rss_mb: float
    peak_pss_mb: float
    peak_anon_mb: float
    peak_processes: int
    returncode: int
    seconds: float
    output: str


def peak_tree_memory(cmd: list[str], cwd: Path = REPO, interval: float = 0.05, timeout: float = 1800) -> TreeMemory:
    """Run ``cmd`` and poll the memory of it and all its descendants every ``interval`` seconds.

    Args:
        cmd: the command.
        cwd: where to run it.
        interval: seconds between polls.
        timeout: seconds after which it is killed.

    Returns:
        TreeMemory: the peaks of the summed resident set (VmRSS), proportional set and anonymous resident sizes,
        and how it ended.
    """
    rss = pss = anon = procs = 0
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        try:
            while proc.poll() is None:
                tree = process_tree(proc.pid)
                rss = max(rss, sum(_status_kb(p, "VmRSS:") for p in tree))
                pss = max(pss, sum(_pss_kb(p) for p in tree))
                anon = max(anon, sum(_status_kb(p, "RssAnon:") for p in tree))
                procs = max(procs, len(tree))
                if time.perf_counter() - start > timeout:
                    proc.kill()
                time.sleep(interval)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        seconds = time.perf_counter() - start
        log.seek(0)
        output = log.read().decode(errors="replace")[-3000:]
    return TreeMemory(rss / 1024, pss / 1024, anon / 1024, procs, proc.returncode, seconds, output)


def train_command(shards: Path, run_dir: Path, image_size: int = 64, workers: int = 2) -> list[str]:
    """The ``train.py`` command of the memory figure: keras_cnn on ``shards``, one epoch, no validation or test.

    Args:
        shards: the prepared dataset.
        run_dir: the run's directory.
        image_size: the crop's side.
        workers: loader worker processes.

    Returns:
        list[str]: the command.
    """
    return [
        sys.executable,
        str(REPO / "train.py"),
        "data=streaming",
        f"data.root={shards}",
        "model=keras_cnn",
        f"data.image_size={image_size}",
        f"data.eval_resize={round(image_size * 72 / 64)}",
        "data.batch_size=64",
        f"data.num_workers={workers}",
        "data.val_size=0",
        "trainer.max_epochs=1",
        "test=false",
        "logger=csv",
        "~callbacks.progress_bar",
        "module.channels_last=false",  # auto would time both layouts in the first run only (then it is cached)
        f"hydra.run.dir={run_dir}",
    ]


def train_peak_mb(shards: Path, run_dir: Path, seen: list[TreeMemory], image_size: int = 64) -> float:
    """Run :func:`train_command` once and measure the peak memory of its process tree.

    Args:
        shards: the prepared dataset.
        run_dir: the run's directory (replaced).
        seen: what the run's measurement saw is appended here (its PSS peak, its processes).
        image_size: the crop's side.

    Returns:
        float: the peak of the summed resident sets, MB.

    Raises:
        RuntimeError: the run failed.
    """
    shutil.rmtree(run_dir, ignore_errors=True)
    mem = peak_tree_memory(train_command(shards, run_dir, image_size))
    if mem.returncode != 0:
        raise RuntimeError(f"train.py failed ({mem.returncode}):\n{mem.output}")
    seen.append(mem)
    return mem.peak_rss_mb


def memory_figure(info: SourceInfo, work: Path, n: int, repeats: int, image_size: int = 64) -> Figure:
    """Measure the peak memory of a training run on ``10 n`` training images against one on ``n``.

    Args:
        info: the generated folder (at least ``10 n`` training images).
        work: a folder for the two datasets and the runs.
        n: the smaller dataset's training images.
        repeats: runs of each.
        image_size: the crop's side.

    Returns:
        Figure: peak MB of the whole process tree (main process and loader workers); met when 10N's peak is at
        most 1.2 times N's.
    """
    from imgbench.data.shard_writer import CHUNK_BYTES

    val = min(info.val, n, max(CLASSES, n // 10))  # a class in val/ must be one of train/'s
    shards = {}
    for count in (n, 10 * n):
        source = subset_source(info.root, work / f"source-{count}", count, val)
        shards[count] = work / f"shards-{count}"
        prepare_rate(source, shards[count])
        shutil.rmtree(source)
    seen: dict[int, list[TreeMemory]] = {n: [], 10 * n: []}
    fig = Figure(
        "streaming",
        "peak memory of a train.py run: 10N vs N training images",
        f"{10 * n:,} images",
        f"{n:,} images",
        "MB",
        target="<= 1.2",
        note=f"the first {10 * n:,} and {n:,} training images of the generated folder ({info.describe()}), each "
        f"prepared; python train.py data=streaming model=keras_cnn data.image_size={image_size} "
        f"data.eval_resize={round(image_size * 72 / 64)} data.batch_size=64 data.num_workers=2 data.val_size=0 "
        "trainer.max_epochs=1 test=false logger=csv ~callbacks.progress_bar module.channels_last=false (its own "
        "torch threads); the peak of the summed VmRSS of the main process and its loader workers, polled every "
        "50 ms (pages the workers share with the main process count in each, and so do the pages of the chunk each "
        f"worker reads, which LitData memory-maps: up to one {CHUNK_BYTES} chunk per worker)",
    )
    side_by_side(
        fig,
        lambda: train_peak_mb(shards[10 * n], work / "run", seen[10 * n], image_size),
        lambda: train_peak_mb(shards[n], work / "run", seen[n], image_size),
        repeats,
    )
    pss = {k: [m.peak_pss_mb for m in v] for k, v in seen.items()}
    anon = {k: [m.peak_anon_mb for m in v] for k, v in seen.items()}
    procs = max(m.peak_processes for v in seen.values() for m in v)
    fig.note += f"; at most {procs} processes seen"
    for what, peaks in (("summed PSS (shared pages counted once)", pss), ("summed RssAnon (no mapped files)", anon)):
        big, small = statistics.median(peaks[10 * n]), statistics.median(peaks[n])
        fig.note += f"; {what}: {big:,.0f} MB vs {small:,.0f} MB ({big / small:.2f}x)"
    fig.extra.update(
        {
            "met": fig.ratio <= 1.2,
            "a_pss_mb": pss[10 * n],
            "b_pss_mb": pss[n],
            "a_anon_mb": anon[10 * n],
            "b_anon_mb": anon[n],
            "a_seconds": [m.seconds for m in seen[10 * n]],
            "b_seconds": [m.seconds for m in seen[n]],
            "processes": procs,
        }
    )
    return fig


# ---------------------------------------------------------------------------- the section


def run(sizes: Sizes) -> list[Figure]:
    """Write the image folder, then measure prepare, the training loader and a training run's memory.

    Args:
        sizes: the generated images, N of the memory figure, and the repetitions.

    Returns:
        list[Figure]: prepare (images per second), the loader against ImageFolder + DataLoader and against
        decoding alone (images per second), and the peak memory on 10N against N images (MB).
    """
    n = sizes.streaming_memory_images
    train = max(sizes.streaming_images, 10 * n)
    with tempfile.TemporaryDirectory(prefix="imgbench-streaming-") as tmp:
        work = Path(tmp)
        info = write_source(work / "source", train, max(CLASSES, train // 10))
        shards = work / "shards"
        figures = [prepare_figure(info, shards, sizes.repeats)]
        figures += loader_figures(info, shards, sizes.repeats)
        shutil.rmtree(shards)
        figures.append(memory_figure(info, work, n, sizes.repeats))
    return figures
