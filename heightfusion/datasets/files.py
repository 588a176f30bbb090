"""Reading the files a dataset names without trusting them.

An index file may name any path (a FIFO, ``/dev/zero``, a folder) and a folder may hold names that are
not valid UTF-8; image files may be empty, truncated or claim billions of pixels. These helpers turn
each of those into an ``OSError`` or a ``None`` that the readers count, never a hang or a crash.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import cv2
import numpy as np


def read_file(path: Path) -> bytes:
    """The bytes of the regular file ``path``; OSError when it is anything else or cannot be read.

    The file is opened without blocking and checked after opening (no race with a swap in between), so
    that a FIFO cannot stall the reader and a device such as ``/dev/zero`` cannot fill the memory.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except ValueError as exc:  # an embedded NUL: not a name any file can have
        raise OSError(str(exc)) from None
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file")
        return f.read()


def read_text(path: Path) -> str:
    """The text of the regular file ``path`` (see :func:`read_file`); OSError when it cannot be read.

    Decoded as UTF-8 without a byte-order mark; an undecodable byte becomes U+FFFD, which garbles the
    line it is on (counted by the readers) rather than the whole file.
    """
    return read_file(path).decode("utf-8-sig", errors="replace")


def decode_image(data: bytes, flags: int) -> np.ndarray | None:
    """The image encoded in ``data`` as ``cv2.imdecode`` reads it with ``flags``, or None when it cannot.

    Decoding from memory avoids ``cv2.imread``, which crashes the process on a file name that is not
    valid UTF-8. ``cv2.imdecode`` raises instead of returning None for an empty buffer and for a header
    claiming more pixels than OpenCV allows; both are an undecodable image here.
    """
    if not data:
        return None
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        return None


def opencv_path(path: Path) -> str:
    """``path`` as a string for OpenCV's file functions; OSError for a name that is not valid UTF-8.

    OpenCV crashes the process (segmentation fault) on such a name instead of reporting an error.
    """
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise OSError("the file name is not valid UTF-8, which OpenCV cannot open; rename the file") from None
    return name
