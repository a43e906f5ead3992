"""Safe, one-time extraction of tar and zip archives (an image folder may come packed in one).

An archive is extracted once into a cache folder, through a temporary folder renamed into place when
complete. Only regular files and folders are written; a member whose path or link target would land outside
the target is refused before anything is written outside.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

from ..errors import DataError

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".zip")


def is_archive(path: Path) -> bool:
    """Whether ``path`` names an archive this module extracts (by its suffix).

    Args:
        path: a file or folder path.

    Returns:
        True for the suffixes of ``ARCHIVE_SUFFIXES``.
    """
    return path.name.endswith(ARCHIVE_SUFFIXES)


def archive_stem(path: Path) -> str:
    """The archive's name without its (possibly double) suffix: ``pets.tar.gz`` -> ``pets``.

    Args:
        path: the archive.

    Returns:
        The name the extracted folder gets.
    """
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
    """Extract ``archive`` once into ``cache_dir/<stem>``.

    Extraction goes to a temporary folder that is renamed into place when complete, so an interrupted
    extraction is redone, never used half-done. A member whose path (or link target) would land outside
    the target makes it fail without writing anything outside.

    Args:
        archive: a .tar.gz, .tgz, .tar, .tar.bz2, .tar.xz or .zip file.
        cache_dir: the folder that receives the extracted folder.

    Returns:
        The extracted folder (at once, if an earlier run extracted it).

    Raises:
        DataError: the archive is missing or unreadable, or a member would be written outside the target.
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
        raise DataError(
            f"{archive} is not a readable archive ({type(e).__name__}: {e}); replace it with a good copy"
        ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
