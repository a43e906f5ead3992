"""imgbench's shard format: LitData chunks of ``{"image": JPEG bytes, "label": int, "index": int}`` per split.

A prepared dataset is ``<root>/imgbench.json`` (classes, split sizes, channel statistics) and one LitData
dataset folder per split (``<root>/train``, ``<root>/test``, optionally ``<root>/val``). JPEGs are stored as
they are; gray and CMYK JPEGs and every other format are converted once to RGB JPEG at quality
:data:`JPEG_QUALITY`. Training images are written in an order shuffled by a fixed seed, so every chunk mixes
the classes (LitData shuffles chunks, then items within a window of them) and any contiguous stretch is a
random sample (the validation carve takes the last ``val_size``).

The writer is ours, not ``litdata.optimize``: optimize's workers write chunks in the order they finish, so the
same source gives different shards from run to run; here a process pool decodes and checks the images and
one :class:`~litdata.streaming.writer.BinaryWriter` writes them in a fixed order.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from litdata.streaming.downloader import get_downloader
from PIL import Image, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

from ..errors import DataError

META_FILE = "imgbench.json"
INDEX_FILE = "index.json"  # LitData's index of a split's chunks
FORMAT = 1
JPEG_QUALITY = 95  # converted images only: what TF's and fb.resnet.torch's ImageNet scripts do, near-lossless
STATS_STRIDE = 4  # channel statistics from every 4th row and column: the same numbers to 3 decimals, 16x cheaper
PREPARE_HINT = "make one with: python -m imgbench.prepare <source folder> <output dir>"


@dataclass
class Encoded:
    """One source image, ready to store (or why it cannot be).

    Attributes:
        data: the JPEG bytes to store (None for an unreadable file).
        converted: whether the image was re-encoded (not an RGB JPEG).
        sums: per-channel sums of the sampled pixels (float64, 0..255 units), with ``squares`` and ``count``.
        error: why the file cannot be read.
    """

    data: bytes | None = None
    converted: bool = False
    sums: np.ndarray | None = None
    squares: np.ndarray | None = None
    count: int = 0
    error: str = ""


def _stats(image: torch.Tensor, out: Encoded) -> Encoded:
    x = image[:, ::STATS_STRIDE, ::STATS_STRIDE].reshape(3, -1).double()
    out.sums, out.squares, out.count = x.sum(1).numpy(), (x * x).sum(1).numpy(), x.shape[1]
    return out


def encode_image(path: str | Path) -> Encoded:
    """Read one image file and check that it decodes completely (a truncated JPEG does not).

    Args:
        path: the image file.

    Returns:
        The bytes to store and the image's channel sums, or the reason it cannot be read.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        return Encoded(error=f"cannot be read ({e.strerror})")
    if raw[:3] == b"\xff\xd8\xff":
        buf = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
        try:
            image = decode_jpeg(buf, mode=ImageReadMode.UNCHANGED)
            if image.shape[0] == 3:
                return _stats(image, Encoded(raw))
            image = decode_jpeg(buf, mode=ImageReadMode.RGB)  # gray or CMYK
        except RuntimeError:
            return Encoded(error="is not a complete JPEG (truncated or corrupt)")
    else:
        try:
            with Image.open(path) as im:
                im.load()
                rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            return Encoded(error=f"is not a readable image ({e})")
        image = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    data = encode_jpeg(image, quality=JPEG_QUALITY).numpy().tobytes()
    return _stats(image, Encoded(data, converted=True))


@dataclass
class ShardMeta:
    """``imgbench.json``: what a prepared dataset holds.

    Attributes:
        name: the dataset's name (the source folder's, unless given).
        classes: class folder names (ILSVRC: wnids); label ``i`` is ``classes[i]``.
        class_names: readable class names.
        splits: split -> image count.
        mean: per-channel mean of the training images, in [0, 1] units.
        std: per-channel standard deviation of the training images, in [0, 1] units.
        extra: the rest (source, seed, conversions, skipped files).
    """

    name: str
    classes: list[str]
    class_names: list[str]
    splits: dict[str, int]
    mean: list[float]
    std: list[float]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The file's contents."""
        return {
            "format": FORMAT,
            "name": self.name,
            "classes": self.classes,
            "class_names": self.class_names,
            "splits": self.splits,
            "mean": self.mean,
            "std": self.std,
            **self.extra,
        }


def is_remote(root: str) -> bool:
    """Whether ``root`` is an object-store URI (``s3://``, ``gs://``, ...) rather than a local folder."""
    return "://" in str(root) and not str(root).startswith("file://")


def _fetch_meta(root: str, cache_dir: Path) -> Path:
    """Download ``<root>/imgbench.json`` of a remote dataset into ``cache_dir``."""
    local = cache_dir / "streaming" / str(root).replace("://", "/").strip("/") / META_FILE
    local.parent.mkdir(parents=True, exist_ok=True)
    try:
        downloader = get_downloader(str(root), str(local.parent), [])
        downloader.download_file(f"{str(root).rstrip('/')}/{META_FILE}", str(local))
    except Exception as e:  # boto3/gcs raise their own types: credentials, missing keys, network
        raise DataError(
            f"cannot read {root}/{META_FILE} ({type(e).__name__}: {str(e).splitlines()[0][:160]}); "
            "check the URI and the storage credentials (e.g. AWS_PROFILE or AWS_ACCESS_KEY_ID)"
        ) from None
    return local


def read_meta(root: str | Path, cache_dir: Path) -> ShardMeta:
    """Read and check a prepared dataset's ``imgbench.json`` (and, for a local one, its splits' chunk files).

    Args:
        root: the prepared dataset (a folder or an ``s3://``/``gs://`` URI).
        cache_dir: where a remote dataset's files are cached.

    Returns:
        The dataset's description.

    Raises:
        DataError: not a prepared dataset, an unknown format, a split folder or chunk missing or truncated.
    """
    if is_remote(str(root)):
        path = _fetch_meta(str(root), cache_dir)
    else:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"prepared dataset {root} does not exist; {PREPARE_HINT}")
        path = root / META_FILE
        if not path.is_file():
            raise DataError(f"{root} is not a dataset prepared by imgbench (no {META_FILE}); {PREPARE_HINT}")
    try:
        data = json.loads(path.read_text())
        meta = ShardMeta(
            data["name"], data["classes"], data["class_names"], data["splits"], data["mean"], data["std"]
        )
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path} is not a valid {META_FILE} ({type(e).__name__}: {e}); prepare it again") from None
    if data.get("format") != FORMAT:
        raise DataError(f"{path} has format {data.get('format')!r}, this imgbench reads {FORMAT}; prepare it again")
    if not is_remote(str(root)):
        for split in meta.splits:
            check_split_folder(Path(root) / split)
    return meta


def check_split_folder(folder: Path) -> None:
    """Check that a local split folder has its LitData index and every chunk it lists, at full size.

    Args:
        folder: ``<root>/<split>``.

    Raises:
        DataError: the folder, its index or a chunk is missing, or a chunk is shorter than the index says.
    """
    index = folder / INDEX_FILE
    if not index.is_file():
        raise DataError(f"{folder} is missing or has no {INDEX_FILE}; prepare the dataset again ({PREPARE_HINT})")
    try:
        chunks = json.loads(index.read_text())["chunks"]
    except (ValueError, KeyError) as e:
        raise DataError(f"{index} is not a LitData index ({e}); prepare the dataset again") from None
    for chunk in chunks:
        path = folder / chunk["filename"]
        if not path.is_file():
            raise DataError(f"chunk {path} is missing; copy it again or prepare the dataset again")
        if os.path.getsize(path) < int(chunk["chunk_bytes"]):
            raise DataError(
                f"chunk {path} is truncated ({os.path.getsize(path)} of {chunk['chunk_bytes']} bytes); "
                "copy it again or prepare the dataset again"
            )
