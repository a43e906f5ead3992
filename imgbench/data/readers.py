"""Readers of the official dataset formats, each returning one split as :class:`ImageArrays`.

Formats: the npz files of ``shared/datasets`` (``images``, ``labels``, ``classes``), torchvision's MNIST and
Fashion-MNIST files, and the official CIFAR-10/100 python pickles (read by a restricted unpickler that cannot
run code). torchvision is imported lazily, only where its dataset classes read or download files.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .arrays import ImageArrays, check_labels, to_nchw

# --------------------------------------------------------------------------- npz


def load_npz(path: str | os.PathLike) -> ImageArrays:
    """Read one split from an npz file.

    Args:
        path: an npz with ``images`` (uint8 ``N,H,W`` or ``N,H,W,C``), ``labels`` (int ``N``) and, optionally,
            ``classes`` (the names; without them the classes are ``0..max(label)``).

    Returns:
        The split.

    Raises:
        DataError: the file is unreadable, lacks a key, or holds arrays of the wrong type or shape.
    """
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
        raise DataError(
            f"{path} is not a readable npz file ({type(e).__name__}: {e}); replace it with a good copy"
        ) from None
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3)):
        raise DataError(
            f"{path}: 'images' must be uint8 of shape (N, H, W) or (N, H, W, 1|3), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{path}: 'labels' must be integers of shape ({len(images)},), got {labels.dtype} {labels.shape}"
        )
    labels_t = torch.as_tensor(labels.astype(np.int64))
    if classes is None:
        classes = [str(i) for i in range(int(labels.max()) + 1 if len(labels) else 0)]
    check_labels(labels_t, len(classes), str(path))
    return ImageArrays(to_nchw(images), labels_t, classes)


# --------------------------------------------------------------------------- MNIST-style IDX (torchvision)


def load_torchvision_mnist(kind: str, root: Path, train: bool, download: bool) -> ImageArrays | None:
    """Read torchvision's MNIST or FashionMNIST files under ``root/<MNIST|FashionMNIST>/raw``.

    Args:
        kind: ``mnist`` or ``fashion_mnist``.
        root: the data folder.
        train: the training split (else the test split).
        download: fetch the files through torchvision when they are absent (needs a network).

    Returns:
        The split, or None when the files are absent (or torchvision cannot read or fetch them).
    """
    from torchvision import datasets  # lazy: torchvision's dataset classes are only needed here

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
    """Unpickles only plain containers and numpy arrays.

    The CIFAR batches need no more, and a crafted file cannot run code.
    """

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
    """Read one CIFAR batch file.

    Args:
        path: the batch (or meta) file.

    Returns:
        Its dictionary, with str keys.

    Raises:
        DataError: the file is unreadable or does not hold a dictionary.
    """
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as e:
        raise DataError(
            f"{path} is not a readable CIFAR batch ({type(e).__name__}: {e}); replace it with a good copy"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} does not hold a CIFAR batch dictionary")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


CIFAR_LAYOUT = {
    # kind: (folder, train files, test files, meta file, label key, names key)
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "batches.meta",
        "labels",
        "label_names",
    ),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}


def load_cifar(kind: str, root: Path, train: bool, label_type: str = "fine") -> ImageArrays | None:
    """Read the official CIFAR python pickles under ``root/cifar-10-batches-py`` or ``root/cifar-100-python``.

    Args:
        kind: ``cifar10`` or ``cifar100``.
        root: the data folder.
        train: the training split (else the test split).
        label_type: CIFAR-100's 100 ``fine`` or 20 ``coarse`` labels (ignored for CIFAR-10).

    Returns:
        The split, or None if the folder is absent.

    Raises:
        DataError: the folder lacks a file, or a file is unreadable or not an official CIFAR batch.
    """
    folder, train_files, test_files, meta_file, label_key, names_key = CIFAR_LAYOUT[kind]
    if kind == "cifar100" and label_type == "coarse":
        label_key, names_key = "coarse_labels", "coarse_label_names"
    base = root / folder
    if not base.is_dir():
        return None
    files = [base / f for f in (train_files if train else test_files)]
    missing = [str(f) for f in [*files, base / meta_file] if not f.is_file()]
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
    """Fetch and extract the official CIFAR archive through torchvision (needs a network).

    Args:
        kind: ``cifar10`` or ``cifar100``.
        root: the data folder the archive is extracted into.
    """
    # lazy: torchvision's dataset classes (and their download helper) are only needed to download
    from torchvision import datasets
    from torchvision.datasets.utils import download_and_extract_archive

    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[kind]
    download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
