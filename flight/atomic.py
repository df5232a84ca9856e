"""Atomic file replacement: the one writer for files that must never be seen half-written
(the critical data store's slots, model files).

Write a temporary file in the same directory, fsync it, rename it over the target, and fsync
the directory so that the rename itself survives a power cut. A crash at any point leaves the
old file or the new one.
"""

from __future__ import annotations

import contextlib
import os

__all__ = ["write_atomically"]


def write_atomically(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    tmp: str | os.PathLike[str] | None = None,
    strict_directory_sync: bool = True,
) -> None:
    """Replace ``path`` with ``data``, atomically and durably.

    ``tmp`` names the temporary file (default: a hidden per-process name beside ``path``); a
    write that fails with an OSError removes it (one cut short by death leaves it: readers
    ignore it, and the CDS removes it at its next commit). With ``strict_directory_sync`` an
    error syncing the directory raises (a store that must know its rename is durable);
    without, it is ignored (not every filesystem can sync a directory, and the file is in
    place either way).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if tmp is None:
        tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    tmp = os.fspath(tmp)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:  # a failed write (disk full, I/O error); a dying process leaves it
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        if strict_directory_sync:
            raise
