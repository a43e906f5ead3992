"""Readers for the on-disk formats imgbench accepts. Each returns :class:`ImageArrays`: every image of
one split as a single uint8 tensor ``(N, C, H, W)`` with int64 labels and the class names.

Formats: the npz files of ``shared/datasets`` (``images``, ``labels``, ``classes``), torchvision's MNIST
and Fashion-MNIST files, the official CIFAR-10/100 python pickles, and image folders
(``<split>/<class>/<image>``), plain or packed in a tar/zip archive that is extracted once, safely.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


@dataclass
class ImageArrays:
    """One split held in memory."""

    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)
    classes: list[str]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DataError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise DataError(f"{len(self.labels)} labels for {self.images.shape[0]} images")

    def __len__(self) -> int:
        return self.images.shape[0]


def to_nchw(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, H, W) gray or (N, H, W, C) channel-last arrays -> contiguous uint8 (N, C, H, W)."""
    x = torch.as_tensor(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.ndim == 4:
        x = x.permute(0, 3, 1, 2)
    else:
        raise DataError(f"expected (N, H, W) or (N, H, W, C) images, got shape {tuple(x.shape)}")
    return x.contiguous()


def check_labels(labels: torch.Tensor, num_classes: int, where: str) -> None:
    """Labels must index into the class list."""
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(
            f"{where}: labels range {int(labels.min())}..{int(labels.max())} but there are {num_classes} "
            f"classes; fix the labels or the class list"
        )


# --------------------------------------------------------------------------- npz


def load_npz(path: str | os.PathLike) -> ImageArrays:
    """Read an npz with ``images`` (uint8 N,H,W or N,H,W,C), ``labels`` (int N) and ``classes``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = {"images", "labels"} - set(z.files)
            if missing:
                raise DataError(
                    f"{path} lacks the key(s) {sorted(missing)} (has {sorted(z.files)}); an imgbench npz holds "
                    f"'images' (uint8 N,H,W[,C]), 'labels' (int N) and 'classes'"
                )
            images, labels = z["images"], z["labels"]
            classes = [str(c) for c in z["classes"]] if "classes" in z.files else None
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path} is not a readable npz file ({type(e).__name__}: {e}); replace it with a good copy")
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3)):
        raise DataError(
            f"{path}: 'images' must be uint8 of shape (N, H, W) or (N, H, W, 1|3), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: 'labels' must be integers of shape ({len(images)},), got {labels.dtype} {labels.shape}")
    labels_t = torch.as_tensor(labels.astype(np.int64))
    if classes is None:
        classes = [str(i) for i in range(int(labels.max()) + 1 if len(labels) else 0)]
    check_labels(labels_t, len(classes), str(path))
    return ImageArrays(to_nchw(images), labels_t, classes)


# --------------------------------------------------------------------------- MNIST-style IDX (torchvision)


def load_torchvision_mnist(kind: str, root: Path, train: bool, download: bool) -> ImageArrays | None:
    """torchvision's MNIST or FashionMNIST files under ``root/<MNIST|FashionMNIST>/raw``; None if absent."""
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}[kind]
    folder = root / cls.__name__ / "raw"
    if not download and not folder.is_dir():
        return None
    try:
        ds = cls(str(root), train=train, download=download)
    except RuntimeError:
        return None
    return ImageArrays(to_nchw(ds.data), ds.targets.to(torch.int64), list(ds.classes))


# --------------------------------------------------------------------------- CIFAR pickles


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: the CIFAR batches need no more, and a crafted
    file cannot run code."""

    _allowed = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
        ("copy_reg", "_reconstructor"),
        ("copyreg", "_reconstructor"),
        ("__builtin__", "object"),
        ("builtins", "object"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"{path} is not a readable CIFAR batch ({type(e).__name__}: {e}); replace it with a good copy")
    if not isinstance(obj, dict):
        raise DataError(f"{path} does not hold a CIFAR batch dictionary")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


CIFAR_LAYOUT = {
    # kind: (folder, train files, test files, meta file, label key, names key)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
                "labels", "label_names"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}


def load_cifar(kind: str, root: Path, train: bool, label_type: str = "fine") -> ImageArrays | None:
    """The official CIFAR python pickles under ``root/cifar-10-batches-py`` or ``root/cifar-100-python``.

    ``label_type`` chooses CIFAR-100's 100 fine or 20 coarse labels. None if the folder is absent.
    """
    folder, train_files, test_files, meta_file, label_key, names_key = CIFAR_LAYOUT[kind]
    if kind == "cifar100" and label_type == "coarse":
        label_key, names_key = "coarse_labels", "coarse_label_names"
    base = root / folder
    if not base.is_dir():
        return None
    files = [base / f for f in (train_files if train else test_files)]
    missing = [str(f) for f in files + [base / meta_file] if not f.is_file()]
    if missing:
        raise DataError(f"{base} is incomplete: missing {', '.join(missing)}; re-download or re-extract it")
    meta = _read_pickle(base / meta_file)
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta[names_key]]
    images, labels = [], []
    for f in files:
        batch = _read_pickle(f)
        if "data" not in batch or label_key not in batch:
            raise DataError(f"{f} lacks 'data' or '{label_key}'; it is not an official CIFAR batch")
        data = np.asarray(batch["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataError(f"{f}: 'data' must be (N, 3072) uint8, got {data.shape}")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    labels_t = torch.from_numpy(np.concatenate(labels))
    check_labels(labels_t, len(classes), str(base))
    return ImageArrays(torch.from_numpy(np.concatenate(images)).contiguous(), labels_t, classes)


def download_cifar(kind: str, root: Path) -> None:
    """Fetch and extract the official archive through torchvision (needs a network)."""
    from torchvision import datasets
    from torchvision.datasets.utils import download_and_extract_archive

    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[kind]
    download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)


# --------------------------------------------------------------------------- archives


ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".zip")


def is_archive(path: Path) -> bool:
    return path.name.endswith(ARCHIVE_SUFFIXES)


def archive_stem(path: Path) -> str:
    for s in ARCHIVE_SUFFIXES:
        if path.name.endswith(s):
            return path.name[: -len(s)]
    return path.stem


def _safe_target(name: str, root: Path) -> Path:
    """Where member ``name`` goes under ``root``; an error for absolute paths or ``..`` escapes.

    A pure path check suffices because extraction writes no links, so no path can be redirected.
    """
    rel = os.path.normpath(name.replace("\\", "/"))
    if os.path.isabs(rel) or rel == ".." or rel.startswith("../") or ":" in rel.split("/")[0]:
        raise DataError(f"archive member '{name}' would be written outside {root}; refusing to extract the archive")
    return root / rel


def _extract_members(archive: Path, root: Path) -> int:
    """Write the archive's regular files under ``root`` (streamed, one pass); returns how many were skipped.

    Only regular files and folders are written, without their owners or permission bits; links, devices
    and fifos are skipped, and a link that points outside ``root`` is refused like any escaping path.
    """
    skipped = 0
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                dest = _safe_target(info.filename, root)
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
        return skipped
    made: set[Path] = set()
    with tarfile.open(archive, "r|*") as t:
        for m in t:
            dest = _safe_target(m.name, root)
            if m.issym() or m.islnk():
                link = m.linkname if m.islnk() else os.path.join(os.path.dirname(m.name), m.linkname)
                _safe_target(link, root)
                skipped += 1
            elif m.isdir():
                dest.mkdir(parents=True, exist_ok=True)
            elif m.isfile():
                if dest.parent not in made:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    made.add(dest.parent)
                src = t.extractfile(m)
                assert src is not None
                with open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
            else:
                skipped += 1
    return skipped


def extract_archive(archive: Path, cache_dir: Path) -> Path:
    """Extract ``archive`` once into ``cache_dir/<stem>`` and return that folder.

    Extraction goes to a temporary folder that is renamed into place when complete, so an interrupted
    extraction is redone, never used half-done. A member whose path (or link target) would land outside
    the target makes it fail without writing anything outside.
    """
    target = cache_dir / archive_stem(archive)
    if target.is_dir():
        return target
    if not archive.is_file():
        raise DataError(f"archive {archive} does not exist; check the data path")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=cache_dir))
    try:
        skipped = _extract_members(archive, tmp.resolve())
        if skipped:
            log.warning("%s: skipped %d links or special files", archive, skipped)
        os.replace(tmp, target)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise DataError(f"{archive} is not a readable archive ({type(e).__name__}: {e}); replace it with a good copy")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def find_split_root(folder: Path, splits: tuple[str, ...] = ("train",)) -> Path:
    """The folder that holds ``train/`` (an archive often wraps everything in one top folder)."""
    if all((folder / s).is_dir() for s in splits):
        return folder
    subdirs = [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if len(subdirs) == 1:
        return find_split_root(subdirs[0], splits)
    return folder


# --------------------------------------------------------------------------- image folders


@dataclass
class FolderStats:
    """What :func:`load_image_folder` did beyond plain decoding (reported in the logs and metrics)."""

    converted: int = 0  # images whose mode (gray, RGBA, CMYK, palette) was converted
    resized: int = 0
    skipped: list[str] | None = None


def list_image_folder(split_dir: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Sorted class names and (file, label) pairs of ``split_dir/<class>/<file>``."""
    if not split_dir.is_dir():
        raise DataError(f"image folder {split_dir} does not exist; expected <root>/<split>/<class>/<image files>")
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{split_dir} has no class subfolders; expected {split_dir}/<class>/<image files>")
    samples: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        files = sorted(
            p for p in (split_dir / name).iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not files:
            raise DataError(f"class folder {split_dir / name} holds no images; remove it or add images")
        samples += [(p, label) for p in files]
    return classes, samples


def _decode(path: Path, data: bytes, channels: int) -> tuple[torch.Tensor, bool]:
    """Decode one image to uint8 (C, H, W) with ``channels`` channels; returns (image, converted)."""
    from torchvision.io import ImageReadMode, decode_image

    mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
    try:
        buf = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        img = decode_image(buf, mode=ImageReadMode.UNCHANGED)
        if img.shape[0] == channels:
            return img, False
        return decode_image(buf, mode=mode), True
    except (RuntimeError, ValueError):
        pass
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            converted = im.mode != ("RGB" if channels == 3 else "L")
            im = im.convert("RGB" if channels == 3 else "L")
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path} is not a readable image ({e})") from None
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr)), converted


def load_image_folder(
    split_dir: Path,
    channels: int = 3,
    image_size: tuple[int, int] | None = None,
    skip_corrupt: bool = False,
    resize: str = "stretch",
) -> tuple[ImageArrays, FolderStats]:
    """Decode every image under ``split_dir/<class>/`` into one uint8 tensor.

    Gray, RGBA, CMYK and palette images are converted to ``channels`` channels. Images of different sizes
    need ``image_size`` (they are then resized with antialiasing: ``stretch`` to that size, or ``center_crop``:
    shorter side scaled to it, then the centre cut out); without it that is an error.
    Unreadable files are an error, or skipped and counted with ``skip_corrupt``.
    """
    from torchvision.transforms.v2.functional import center_crop
    from torchvision.transforms.v2.functional import resize as resize_image

    classes, samples = list_image_folder(split_dir)
    stats = FolderStats(skipped=[])
    images: list[torch.Tensor] = []
    labels: list[int] = []
    first_size: tuple[int, int] | None = None
    for path, label in samples:
        try:
            data = path.read_bytes()
            img, converted = _decode(path, data, channels)
        except DataError as e:
            if not skip_corrupt:
                raise DataError(f"{e}; delete or replace it, or set data.skip_corrupt=true to skip such files") from None
            stats.skipped.append(str(path))
            continue
        stats.converted += converted
        size = (img.shape[1], img.shape[2])
        if image_size is not None and size != tuple(image_size):
            if resize == "center_crop":
                img = center_crop(resize_image(img, min(image_size), antialias=True), list(image_size))
            else:
                img = resize_image(img, list(image_size), antialias=True)
            stats.resized += 1
        elif image_size is None:
            if first_size is None:
                first_size = size
            elif size != first_size:
                raise DataError(
                    f"images in {split_dir} differ in size ({first_size[0]}x{first_size[1]} and "
                    f"{size[0]}x{size[1]} at {path}); set data.image_size=[H,W] to resize them"
                )
        images.append(img)
        labels.append(label)
    if not images:
        raise DataError(f"no readable images under {split_dir}")
    arrays = ImageArrays(torch.stack(images), torch.tensor(labels, dtype=torch.int64), classes)
    return arrays, stats


def folder_fingerprint(split_dir: Path, *extra: object) -> str:
    """A key that changes when files under ``split_dir`` are added, removed or modified."""
    h = hashlib.sha1(str(split_dir.resolve()).encode())
    for root, dirs, files in os.walk(split_dir):
        dirs.sort()
        rel = os.path.relpath(root, split_dir)
        for name in sorted(files):
            st = os.stat(os.path.join(root, name))
            h.update(f"{rel}/{name}:{st.st_size}:{st.st_mtime_ns};".encode())
    h.update(repr(extra).encode())
    return h.hexdigest()[:16]
