"""The image-folder DataModule: ``<root>/<split>/<class>/<image>``, as a folder or an archive.

An archive is extracted once into ``cache_dir``; decoded splits are cached there as tensors, keyed by the
files' names, sizes and modification times and the decoding options, so later runs skip decoding.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, DataError
from ..io import atomic_open
from .archives import extract_archive, is_archive
from .arrays import ImageArrays
from .checks import check_bool, check_path, size_pair
from .folders import FolderStats, find_split_root, fit_image, folder_fingerprint, load_image_folder
from .in_memory import InMemoryDataModule

log = logging.getLogger(__name__)


class ImageFolderDataModule(InMemoryDataModule):
    """Images in ``<root>/train/<class>/*`` and ``<root>/test/<class>/*`` (or ``val/`` as the test split).

    ``root`` may be a folder or an archive (.tar.gz, .tgz, .tar, .zip), extracted once into ``cache_dir``.
    When both ``val/`` and ``test/`` exist, ``val/`` is the validation split. Decoded splits are cached in
    ``cache_dir`` as tensors, keyed by the files' names, sizes and times, so later runs start at once.

    Args:
        root: the folder or archive (relative paths are taken from ``data_dir``).
        name: the dataset's name in logs and reports.
        channels: 3 (RGB) or 1 (gray); other image modes are converted.
        image_size: ``[H, W]`` (or one int) to bring every image to; required when sizes differ.
        resize: how: ``stretch`` to exactly that size, or ``center_crop``: scale the shorter side to it and
            cut the centre (AlexNet's 256x256 images).
        skip_corrupt: skip unreadable files (counted in the log) instead of stopping.
        cache_dir: where archives are extracted and decoded tensors cached (default ``<data_dir>/.cache``).
        **kwargs: the arguments of :class:`~imgbench.data.InMemoryDataModule`.

    Raises:
        ConfigError: an argument that cannot work (a one-line message naming ``data.<key>``).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        name: str = "imagefolder",
        channels: int = 3,
        image_size: list[int] | tuple[int, int] | int | None = None,
        resize: str = "stretch",
        skip_corrupt: bool = False,
        cache_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(channels, bool) or channels not in (1, 3):
            raise ConfigError(f"data.channels must be 1 or 3, got {channels}")
        check_path("root", root)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"data.name must be a non-empty name, got {name!r}")
        check_bool("skip_corrupt", skip_corrupt)
        check_path("cache_dir", cache_dir, optional=True)
        self.name = name
        self.root = Path(root).expanduser()
        if not self.root.is_absolute():
            self.root = self.data_dir / self.root
        self.channels = channels
        self.image_size = size_pair("image_size", image_size)
        if resize not in ("stretch", "center_crop"):
            raise ConfigError(f"data.resize must be stretch or center_crop, got '{resize}'")
        self.resize = resize
        self.skip_corrupt = skip_corrupt
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else self.data_dir / ".cache"
        self.folder_stats: dict[str, FolderStats] = {}
        self._folder: Path | None = None

    def declared_inputs(self) -> dict[str, Any]:
        """What the model will see, from the arguments alone (no file or folder is looked at).

        Returns:
            ``{"num_classes": None, "in_channels": channels, "image_size": (h, w) | None}``: the number of
            classes is known only from the folders; ``image_size`` is ``crop_size`` when set, else
            ``image_size`` when set, else None (the images' own size).
        """
        return self._declared(None, self.channels, self.image_size)

    def prepare_image(self, image: torch.Tensor) -> torch.Tensor:
        """Bring one image to the stored size as the folders were brought to it (``resize``: stretch or centre crop).

        Args:
            image: uint8 ``(C, H, W)``.

        Returns:
            uint8 ``(C, *stored_size)``.
        """
        return fit_image(image, self.stored_size, self.resize)

    def _split_root(self) -> Path:
        if self._folder is None:
            if not self.root.exists():
                raise DataError(
                    f"{self.name}: {self.root} does not exist; set data.root (or IMGBENCH_DATA_DIR) to the image "
                    f"folder or archive"
                )
            folder = extract_archive(self.root, self.cache_dir) if is_archive(self.root) else self.root
            self._folder = find_split_root(folder)
            if not (self._folder / "train").is_dir():
                raise DataError(f"{self.name}: no train/ folder under {folder}; expected <root>/train/<class>/<images>")
            if not any((self._folder / s).is_dir() for s in ("test", "val")):
                raise DataError(f"{self.name}: no test/ or val/ folder under {self._folder}; add the test split")
        return self._folder

    def _split_dir(self, split: str) -> Path:
        root = self._split_root()
        if split == "test":
            return root / "test" if (root / "test").is_dir() else root / "val"
        return root / split

    def load_split(self, split: str) -> ImageArrays:
        """Decode (or read from the cache) one split's folder.

        Args:
            split: ``train`` or ``test`` (``test/``, or ``val/`` when there is no ``test/``).

        Returns:
            The split.

        Raises:
            DataError: the root, a split folder or the images are missing or unreadable.
        """
        return self._load_folder(self._split_dir(split), split)

    def load_val_split(self) -> ImageArrays | None:
        """The ``val/`` folder when ``test/`` exists too, else None (``val_size`` images are carved from train)."""
        root = self._split_root()
        if (root / "test").is_dir() and (root / "val").is_dir():
            return self._load_folder(root / "val", "val")
        return None

    def _load_folder(self, split_dir: Path, split: str) -> ImageArrays:
        key = folder_fingerprint(split_dir, self.channels, self.image_size, self.resize, self.skip_corrupt)
        cache = self.cache_dir / "decoded" / f"{self.name}-{split}-{key}.pt"
        if cache.is_file():
            try:
                d = torch.load(cache, weights_only=True)
                return ImageArrays(d["images"], d["labels"], list(d["classes"]))
            except Exception:  # a damaged cache is rebuilt, never trusted
                log.warning("ignoring unreadable cache %s", cache)
        arrays, stats = load_image_folder(split_dir, self.channels, self.image_size, self.skip_corrupt, self.resize)
        self.folder_stats[split] = stats
        if stats.skipped:
            log.warning("%s %s: skipped %d unreadable files", self.name, split, len(stats.skipped))
        if stats.converted or stats.resized:
            log.info("%s %s: converted %d, resized %d images", self.name, split, stats.converted, stats.resized)
        with atomic_open(cache, "wb") as f:
            torch.save({"images": arrays.images, "labels": arrays.labels, "classes": arrays.classes}, f)
        return arrays
