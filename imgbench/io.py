"""Safe file writing: every result file is written to a temporary file and renamed into place.

A kill during a write leaves the previous good file (or none), never half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success, fsync and rename it onto ``path``.

    On an error the temporary file is removed and ``path`` is left as it was.

    Args:
        path: the file to write (its folder is created).
        mode: the ``open`` mode (``w`` or ``wb``).
        **kwargs: passed on to ``open`` (``encoding``, ``newline``, ...).

    Yields:
        The open temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give results the usual permissions
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically.

    Args:
        path: the file.
        data: JSON-serialisable data (numpy and torch scalars and paths are converted).
    """
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` atomically.

    Args:
        path: the file.
        text: its whole content.
    """
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy and torch scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
