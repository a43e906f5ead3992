"""Images to predict (``predict.py``): one file, a folder, a glob or an archive, read as the run's data was read.

Listing: a folder is searched recursively, a glob (``photos/**/*.jpg``) is expanded, an archive (.zip, .tar.gz, ...)
is extracted with :mod:`~imgbench.data.archives`' safe extraction; in folders, globs and archives only files with an
image suffix (any Pillow or torchvision reads) count, hidden files and ``__MACOSX`` aside. Each file keeps a name
relative to the input, which is how predictions.csv names it.

Reading: each file is decoded as image folders are for training (:func:`~imgbench.data.folders.decode_image_file`:
torchvision's decoders, Pillow for the rest; gray, RGBA, CMYK, palette and 16-bit images converted to the run's
channels) and brought to the size of the run's stored images by the DataModule itself
(:meth:`~imgbench.data.BatchedDataModule.prepare_image`); unreadable files are set aside, not fatal.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import torch
from PIL import Image

from ..errors import ConfigError, DataError
from .archives import extract_archive, is_archive
from .batched import BatchedDataModule
from .folders import IMAGE_EXTENSIONS, decode_image_file

_GLOB_MAGIC = re.compile(r"[*?\[]")
_SKIPPED_FOLDERS = ("__MACOSX",)  # macOS zips carry a resource-fork copy of every file there


def image_suffixes() -> frozenset[str]:
    """The file suffixes of the images Pillow opens and torchvision decodes (lower case, with the dot)."""
    Image.init()
    readable = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    return frozenset(readable | set(IMAGE_EXTENSIONS))


@dataclass
class InputFiles:
    """The files an input names.

    Attributes:
        files: the image files, sorted by name.
        names: each file's name relative to the input (POSIX separators; a single file: its own name).
        ignored: files that are not images by their suffix (names relative to the input).
    """

    files: list[Path] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def check_input(spec: str) -> None:
    """Check that ``input`` names something, without reading or extracting it.

    Args:
        spec: an image or archive file, a folder, or a glob.

    Raises:
        ConfigError: nothing exists there and, for a glob, nothing matches.
    """
    if not spec:
        raise ConfigError("input is empty; pass input=<image, folder, glob or .zip/.tar.gz archive>")
    if Path(spec).expanduser().exists():
        return
    if _GLOB_MAGIC.search(spec):
        if next(iter(glob.iglob(os.path.expanduser(spec), recursive=True)), None) is None:
            raise ConfigError(f"input='{spec}' matches no file; check the pattern (quote it so the shell leaves it)")
        return
    raise ConfigError(f"input={spec} does not exist; pass an image, a folder, a glob or a .zip/.tar.gz archive")


def list_inputs(spec: str, scratch: Path) -> InputFiles:
    """List the images ``input`` names.

    Args:
        spec: an image file (always tried, whatever its suffix), a folder (searched recursively), a glob
            (``**`` spans folders; names are taken from the part before the first wildcard) or an archive.
        scratch: an empty folder an archive is extracted into.

    Returns:
        The files and their names.

    Raises:
        ConfigError: the input does not exist (see :func:`check_input`).
        DataError: an unreadable archive.
    """
    check_input(spec)
    path = Path(spec).expanduser()
    if path.is_file() and is_archive(path):
        return _listed(_walk(extract_archive(path, scratch)))
    if path.is_file():
        return InputFiles([path], [path.name])
    if path.is_dir():
        return _listed(_walk(path))
    pattern = os.path.expanduser(spec)
    root = _glob_root(pattern)
    matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
    return _listed([(p, p.relative_to(root).as_posix()) for p in matches if p.is_file() and not _hidden(p.name)])


def _walk(root: Path) -> list[tuple[Path, str]]:
    """Every file under ``root`` (hidden ones and macOS resource folders aside) with its name relative to it."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _hidden(d) and d not in _SKIPPED_FOLDERS)
        for name in sorted(files):
            if not _hidden(name):
                path = Path(folder) / name
                found.append((path, path.relative_to(root).as_posix()))
    return found


def _listed(found: list[tuple[Path, str]]) -> InputFiles:
    suffixes = image_suffixes()
    listed = InputFiles()
    for path, name in sorted(found, key=lambda item: item[1]):
        if path.suffix.lower() in suffixes:
            listed.files.append(path)
            listed.names.append(name)
        else:
            listed.ignored.append(name)
    return listed


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _glob_root(pattern: str) -> Path:
    """The folder a glob's matches are named from: its components before the first wildcard."""
    fixed = []
    for part in Path(pattern).parts:
        if _GLOB_MAGIC.search(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path()


def folder_labels(names: Sequence[str], vocabularies: Sequence[Sequence[str]]) -> list[int] | None:
    """Each file's class, when the files lie in class folders named after the run's classes.

    The class is the first folder of a file's name, or the second when every file is in one wrapping folder (as
    archives often have). Every file must be in such a folder, and every folder a class of one of ``vocabularies``.

    Args:
        names: the files' names relative to the input.
        vocabularies: lists of the run's class names, label ``i`` is entry ``i`` (the data's folder names or wnids
            first, then the readable names); an earlier list wins where a name is in two.

    Returns:
        The labels, or None when the input is not a folder of class folders.
    """
    index: dict[str, int] = {}
    for vocabulary in reversed(vocabularies):
        index.update({str(name): i for i, name in enumerate(vocabulary)})
    parts = [PurePosixPath(name).parts for name in names]
    for depth in (0, 1):
        if not parts or any(len(p) <= depth + 1 for p in parts):
            return None
        if depth and len({p[0] for p in parts}) != 1:
            return None
        folders = [p[depth] for p in parts]
        if all(f in index for f in folders):
            return [index[f] for f in folders]
    return None


def load_images(
    files: Sequence[Path], names: Sequence[str], dm: BatchedDataModule
) -> tuple[torch.Tensor | None, list[int], list[tuple[int, str]]]:
    """Decode ``files`` and bring each to the run's stored size, as its evaluation data was.

    Args:
        files: the image files.
        names: their names (for the reasons of failures).
        dm: the run's DataModule (restored from its checkpoint): its channels and :meth:`prepare_image`.

    Returns:
        The readable images as uint8 ``(n, C, *stored_size)`` (None when none is), the positions in ``files`` they
        come from, and ``(position, reason)`` for every unreadable file.
    """
    channels = dm.image_shape[0]
    images, kept, failed = [], [], []
    for i, (path, name) in enumerate(zip(files, names)):
        try:
            image, _ = decode_image_file(Path(name), path.read_bytes(), channels)
        except DataError as e:
            failed.append((i, str(e)))
            continue
        except OSError as e:
            failed.append((i, f"{name} cannot be read ({e.strerror or e})"))
            continue
        images.append(dm.prepare_image(image))
        kept.append(i)
    return (torch.stack(images) if images else None), kept, failed
