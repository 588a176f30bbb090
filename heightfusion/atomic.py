"""Atomic file writes: a crash mid-write never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, suffix: str = "") -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path`` for binary writing; rename it over ``path`` on success.

    The temporary file ``.<name>.<random><suffix>.tmp`` lives in the same directory so that
    ``os.replace`` is an atomic rename: a reader (or a process killed at any moment) sees the old file
    or the new one, never a mix. The data is flushed to disk before the rename and the rename after
    it, so that a power cut cannot leave an empty file either. A crash may leave the temporary file,
    which no reader takes for ``path``. ``suffix`` is appended to the temporary name for writers that
    insist on an extension (``numpy.savez`` adds ``.npz`` to names without one when given a path; we
    pass a file object).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = _create_temporary(path, suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_directory(path.parent)


def _create_temporary(path: Path, suffix: str) -> tuple[int, str]:
    """(descriptor, name) of a new temporary file beside ``path``.

    Created with mode 0o666 so that the umask applies as for any new file (``tempfile.mkstemp`` makes
    0o600 files, which would leave every saved map unreadable to other users).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp_name = str(path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix}.tmp")
        try:
            return os.open(tmp_name, flags, 0o666), tmp_name
        except FileExistsError:  # another writer drew the same name: draw again
            continue


def _fsync_directory(folder: Path) -> None:
    """Flush ``folder``'s entries to disk, making a rename in it durable; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows: folders cannot be opened, and its renames need no such flush
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the rename itself is still atomic
        pass
    finally:
        os.close(fd)
