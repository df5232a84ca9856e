"""Memory shared between the supervisor and the partitions it forks.

Partitions are forked from the supervisor, so an anonymous ``MAP_SHARED`` mapping created before
the fork is seen by both: weight copies the supervisor scrubs while a partition computes with
them, activation arenas the radiation simulator can reach, output slots the supervisor votes.
No names in /dev/shm, nothing to clean up after a crash, and no pickling on the hot path.
"""

from __future__ import annotations

import mmap

import numpy as np

__all__ = ["shared_bytes", "shared_zeros"]

_PAGE = mmap.PAGESIZE


def shared_bytes(nbytes: int) -> np.ndarray:
    """A zeroed uint8 array of ``nbytes`` in a fresh anonymous shared mapping (page aligned)."""
    if nbytes < 0:
        raise ValueError(f"negative size {nbytes}")
    size = max(_PAGE, -(-nbytes // _PAGE) * _PAGE)
    mapping = mmap.mmap(-1, size, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    return np.frombuffer(mapping, dtype=np.uint8, count=nbytes)


def shared_zeros(shape: tuple[int, ...] | int, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """A zeroed array in shared memory."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    count = int(np.prod(shape, dtype=np.int64))
    return shared_bytes(count * dtype.itemsize).view(dtype).reshape(shape)
