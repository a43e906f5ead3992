"""The built-in datasets: MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 DataModules.

Each split is read from ``<data_dir>/<name>-<split>.npz`` when that file exists, else from the dataset's
official format under ``data_dir`` (torchvision's MNIST files, the CIFAR python pickles), downloaded through
torchvision with ``download=true``. Their classes, channels and image size are known without reading a file
(:meth:`~imgbench.data.InMemoryDataModule.declared_inputs`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from .arrays import ImageArrays
from .in_memory import InMemoryDataModule
from .readers import CIFAR_LAYOUT, download_cifar, load_cifar, load_npz, load_torchvision_mnist


class _BuiltinDataModule(InMemoryDataModule):
    """A dataset found as ``<data_dir>/<name>-<split>.npz`` or in its official format under ``data_dir``.

    Subclasses set ``name``, what the model will see (``declared_classes``, ``declared_channels``,
    ``declared_size``) and implement :meth:`load_official`.
    """

    official_hint = ""
    declared_classes: int | None = None
    declared_channels: int | None = None
    declared_size: tuple[int, int] | None = None

    def declared_inputs(self) -> dict[str, Any]:
        """What the model will see, from the dataset's official shape (no file is read).

        Returns:
            ``{"num_classes": int, "in_channels": int, "image_size": (h, w)}``; ``image_size`` is ``crop_size``
            when that is set.
        """
        return self._declared(self.declared_classes, self.declared_channels, self.declared_size)

    def load_split(self, split: str) -> ImageArrays:
        """Read the npz file of ``split``, else its official files (downloaded with ``download=true``).

        Args:
            split: ``train`` or ``test``.

        Returns:
            The split.

        Raises:
            DataError: ``data_dir`` is missing, or neither the npz nor the official files are there (the message
                names every place searched).
        """
        if not self.data_dir.is_dir() and not self.download:
            raise DataError(
                f"data directory {self.data_dir} does not exist; set IMGBENCH_DATA_DIR or paths.data_dir to the folder "
                f"that holds {self.name}, or add data.download=true on a machine with internet"
            )
        npz = self.data_dir / f"{self.name}-{split}.npz"
        searched = [str(npz)]
        if npz.is_file():
            return load_npz(npz)
        found, where = self.load_official(split == "train", download=False)
        searched.append(where)
        if found is not None:
            return found
        if self.download:
            found, _ = self.load_official(split == "train", download=True)
            if found is not None:
                return found
        extra = f"; {self.official_hint}" if self.official_hint else ""
        raise DataError(
            f"{self.name} {split} data not found (looked for {' and '.join(searched)}); set IMGBENCH_DATA_DIR or "
            f"paths.data_dir to the folder that holds it, or add data.download=true on a machine with internet{extra}"
        )

    def load_official(self, train: bool, download: bool) -> tuple[ImageArrays | None, str]:
        """Read (or, with ``download``, fetch and read) the official files of one split.

        Args:
            train: the training split (else the test split).
            download: fetch the files when they are absent.

        Returns:
            The split (None when the files are absent) and where they were looked for.
        """
        raise NotImplementedError


class MNISTDataModule(_BuiltinDataModule):
    """MNIST: 60,000 training and 10,000 test digits, 28x28 gray, 10 classes."""

    name = "mnist"
    _folder = "MNIST"
    declared_classes = 10
    declared_channels = 1
    declared_size = (28, 28)

    def load_official(self, train: bool, download: bool) -> tuple[ImageArrays | None, str]:
        """Read the torchvision files under ``<data_dir>/MNIST/raw`` (``FashionMNIST/raw`` for Fashion-MNIST).

        Args:
            train: the training split (else the test split).
            download: fetch the files when they are absent.

        Returns:
            The split (None when the files are absent) and where they were looked for.
        """
        where = str(self.data_dir / self._folder / "raw")
        return load_torchvision_mnist(self.name, self.data_dir, train, download), where


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST: 60,000 training and 10,000 test clothing images, 28x28 gray, 10 classes."""

    name = "fashion_mnist"
    _folder = "FashionMNIST"


class CIFAR10DataModule(_BuiltinDataModule):
    """CIFAR-10: 50,000 training and 10,000 test images, 32x32 RGB, 10 classes (official python pickles)."""

    name = "cifar10"
    official_hint = "a lossy JPEG stand-in is available offline as data=cifar10_jpeg"
    declared_classes = 10
    declared_channels = 3
    declared_size = (32, 32)

    def load_official(self, train: bool, download: bool) -> tuple[ImageArrays | None, str]:
        """Read the python pickles under ``<data_dir>/cifar-10-batches-py`` (or ``cifar-100-python``).

        Args:
            train: the training split (else the test split).
            download: fetch the archive when the folder is absent.

        Returns:
            The split (None when the files are absent) and where they were looked for.
        """
        where = str(self.data_dir / CIFAR_LAYOUT[self.name][0])
        if download and not Path(where).is_dir():
            download_cifar(self.name, self.data_dir)
        return load_cifar(self.name, self.data_dir, train, **self._cifar_kwargs()), where

    def _cifar_kwargs(self) -> dict[str, Any]:
        return {}


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100: 50,000 training and 10,000 test images, 32x32 RGB, 100 fine (or 20 coarse) classes.

    Args:
        *args: see :class:`~imgbench.data.InMemoryDataModule`.
        label_type: ``fine`` (100 classes) or ``coarse`` (20 superclasses).
        **kwargs: see :class:`~imgbench.data.InMemoryDataModule`.

    Raises:
        ConfigError: an argument that cannot work.
    """

    name = "cifar100"
    official_hint = ""
    declared_classes = 100

    def __init__(self, *args: Any, label_type: str = "fine", **kwargs: Any) -> None:
        if label_type not in ("fine", "coarse"):
            raise ConfigError(f"data.label_type must be fine or coarse, got '{label_type}'")
        self.label_type = label_type
        super().__init__(*args, **kwargs)

    def declared_inputs(self) -> dict[str, Any]:
        """As for CIFAR-10, with 100 classes, or 20 with ``label_type=coarse``."""
        inputs = super().declared_inputs()
        if self.label_type == "coarse":
            inputs["num_classes"] = 20
        return inputs

    def _cifar_kwargs(self) -> dict[str, Any]:
        return {"label_type": self.label_type}
