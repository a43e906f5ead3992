"""Image folders (``<split>/<class>/<image>``): listing, decoding into one uint8 tensor, and fingerprinting.

Decoding goes through torchvision's decoders, with Pillow as the fallback for what they cannot read; gray,
RGBA, CMYK and palette images are converted to the wanted channels. torchvision is imported lazily, where
an image is decoded or resized.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from .arrays import ImageArrays

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


@dataclass
class FolderStats:
    """What :func:`load_image_folder` did beyond plain decoding (reported in the logs and metrics).

    Attributes:
        converted: images whose mode (gray, RGBA, CMYK, palette) was converted.
        resized: images brought to ``image_size``.
        skipped: the unreadable files skipped (with ``skip_corrupt``).
    """

    converted: int = 0
    resized: int = 0
    skipped: list[str] | None = None


def find_split_root(folder: Path, splits: tuple[str, ...] = ("train",)) -> Path:
    """Find the folder that holds the split folders (an archive often wraps everything in one top folder).

    Args:
        folder: where to start looking.
        splits: the split folders that must be there.

    Returns:
        ``folder`` if it holds every split; else, if it has exactly one (non-hidden) subfolder, the result of
        the same search there; else ``folder``.
    """
    if all((folder / s).is_dir() for s in splits):
        return folder
    subdirs = [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if len(subdirs) == 1:
        return find_split_root(subdirs[0], splits)
    return folder


def list_image_folder(split_dir: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """List the images of ``split_dir/<class>/<file>``.

    Args:
        split_dir: one split's folder.

    Returns:
        The sorted class names, and the (file, label) pairs sorted by class, then file name.

    Raises:
        DataError: the folder is missing, has no class folders, or a class folder holds no images.
    """
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


def decode_image_file(path: Path, data: bytes, channels: int) -> tuple[torch.Tensor, bool]:
    """Decode one image file's bytes to uint8 ``(channels, H, W)``, as image folders are decoded for training.

    torchvision's decoders first; Pillow for what they cannot read (or not in ``channels`` channels: GIF, WebP).
    Gray, RGBA, CMYK, palette and 16-bit images are converted (16-bit values scaled to 8 bits).

    Args:
        path: the file (for the error message).
        data: its bytes.
        channels: 3 (RGB) or 1 (gray).

    Returns:
        The image and whether it was converted from another mode.

    Raises:
        DataError: not a readable image.
    """
    from torchvision.io import ImageReadMode, decode_image  # lazy: torchvision is a heavy import
    from torchvision.transforms.v2.functional import to_dtype

    mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
    try:
        buf = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        img = decode_image(buf, mode=ImageReadMode.UNCHANGED)
        converted = img.shape[0] != channels or img.dtype != torch.uint8 or _is_palette_png(data)
        if img.ndim == 3 and (img.shape[0] != channels or converted):  # unchanged, a palette PNG is its indices
            img = decode_image(buf, mode=mode)
        # GIF and WebP decoders ignore a gray mode, animated GIFs come as frames: Pillow reads those
        if img.ndim == 3 and img.shape[0] == channels:
            return to_dtype(img, torch.uint8, scale=True), converted  # 16-bit PNGs come as uint16
    except (RuntimeError, ValueError):
        pass
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            converted = im.mode != ("RGB" if channels == 3 else "L")
            if im.mode.startswith("I;16"):  # Pillow clips 16-bit values to 8 bits: scale them
                im = Image.fromarray((np.asarray(im).astype(np.uint16) >> 8).astype(np.uint8), "L")
            im = im.convert("RGB" if channels == 3 else "L")
            arr = np.array(im, dtype=np.uint8)  # a copy: torch wants a writable array
    except UnidentifiedImageError:
        raise DataError(f"{path} is not a readable image (no format torchvision or Pillow decodes)") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path} is not a readable image ({e})") from None
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr)), converted


def _is_palette_png(data: bytes) -> bool:
    """Whether ``data`` is a PNG of colour type 3 (palette): its IHDR chunk's colour-type byte, at offset 25."""
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 25 and data[25] == 3


def fit_image(image: torch.Tensor, size: tuple[int, int] | list[int], resize: str = "stretch") -> torch.Tensor:
    """Bring one image to ``size`` as image folders are (antialiased); an image of that size is kept as it is.

    Args:
        image: uint8 ``(C, H, W)``.
        size: ``(H, W)``.
        resize: ``stretch`` to ``size``, or ``center_crop``: the shorter side scaled to ``min(size)``, then the
            centre cut out.

    Returns:
        uint8 ``(C, *size)``.
    """
    # lazy: torchvision is a heavy import
    from torchvision.transforms.v2.functional import center_crop
    from torchvision.transforms.v2.functional import resize as resize_image

    if tuple(image.shape[1:]) == tuple(size):
        return image
    if resize == "center_crop":
        return center_crop(resize_image(image, min(size), antialias=True), list(size))
    return resize_image(image, list(size), antialias=True)


def load_image_folder(
    split_dir: Path,
    channels: int = 3,
    image_size: tuple[int, int] | None = None,
    skip_corrupt: bool = False,
    resize: str = "stretch",
) -> tuple[ImageArrays, FolderStats]:
    """Decode every image under ``split_dir/<class>/`` into one uint8 tensor.

    Gray, RGBA, CMYK and palette images are converted to ``channels`` channels. Images of different sizes
    need ``image_size`` (they are then resized with antialiasing); without it that is an error.

    Args:
        split_dir: one split's folder.
        channels: 3 (RGB) or 1 (gray).
        image_size: ``(H, W)`` to bring every image to; None keeps the images' own (common) size.
        skip_corrupt: skip unreadable files (counted in the stats) instead of stopping.
        resize: ``stretch`` to ``image_size``, or ``center_crop``: the shorter side scaled to it, then the
            centre cut out.

    Returns:
        The split and what was converted, resized or skipped.

    Raises:
        DataError: the folder is malformed, a file is unreadable (without ``skip_corrupt``), the sizes differ
            without ``image_size``, or no image is readable.
    """
    classes, samples = list_image_folder(split_dir)
    stats = FolderStats(skipped=[])
    images: list[torch.Tensor] = []
    labels: list[int] = []
    first_size: tuple[int, int] | None = None
    for path, label in samples:
        try:
            data = path.read_bytes()
            img, converted = decode_image_file(path, data, channels)
        except DataError as e:
            if not skip_corrupt:
                raise DataError(
                    f"{e}; delete or replace it, or set data.skip_corrupt=true to skip such files"
                ) from None
            stats.skipped.append(str(path))
            continue
        stats.converted += converted
        size = (img.shape[1], img.shape[2])
        if image_size is not None and size != tuple(image_size):
            img = fit_image(img, image_size, resize)
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
    """A cache key that changes when files under ``split_dir`` are added, removed or modified.

    Args:
        split_dir: the folder.
        *extra: further values the key depends on (the decoding options).

    Returns:
        16 hex digits of a hash of the folder's path, every file's relative name, size and modification
        time, and ``extra``.
    """
    h = hashlib.sha1(str(split_dir.resolve()).encode())
    for root, dirs, files in os.walk(split_dir):
        dirs.sort()
        rel = os.path.relpath(root, split_dir)
        for name in sorted(files):
            st = os.stat(os.path.join(root, name))
            h.update(f"{rel}/{name}:{st.st_size}:{st.st_mtime_ns};".encode())
    h.update(repr(extra).encode())
    return h.hexdigest()[:16]
