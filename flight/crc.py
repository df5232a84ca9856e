"""Checksums: CRC-32C for memory blocks and files, CRC-16/CCITT-FALSE for CCSDS packets.

CRC-32C runs on the CPU's CRC instructions where it has them (SSE4.2 on x86-64, the ARMv8 CRC
extension on aarch64), chosen once at import; elsewhere a portable slicing-by-8 implementation.
``FLIGHT_CRC32C=portable`` in the environment forces the portable one (for tests and for boards
whose CRC unit is suspect). CRC-16 comes from crcmod, whose C extension is required: crcmod
silently falls back to pure Python (about 40x slower) when it was built without a compiler, so
importing this module fails loudly instead.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from flight import errors
from flight.native import check_status, ffi, lib

__all__ = [
    "IMPLEMENTATION",
    "crc16_ccitt_false",
    "crc32c",
    "crc32c_blocks",
    "crc32c_portable",
]

_HW_NAMES = {0: "portable", 1: "sse4.2", 2: "armv8-crc"}


def _choose_crc32c() -> tuple[str, Any, Any]:
    forced = os.environ.get("FLIGHT_CRC32C", "").strip().lower()
    if forced not in ("", "auto", "portable", "hardware"):
        raise errors.ConfigError(
            f"FLIGHT_CRC32C={forced!r}: expected 'auto', 'hardware' or 'portable'"
        )
    kind = lib.flight_crc32c_hw_kind()
    if forced == "hardware" and kind == 0:
        raise errors.ConfigError("FLIGHT_CRC32C=hardware but this CPU has no CRC-32C instructions")
    if kind and forced != "portable":
        return _HW_NAMES[kind], lib.flight_crc32c_hw, lib.flight_crc32c_blocks_hw
    return "portable", lib.flight_crc32c_sw, lib.flight_crc32c_blocks_sw


#: Which CRC-32C implementation runs: "sse4.2", "armv8-crc" or "portable".
IMPLEMENTATION, _crc32c_fn, _crc32c_blocks_fn = _choose_crc32c()


def _bytes_view(data: Any) -> Any:
    try:
        return ffi.from_buffer(data)
    except TypeError as exc:
        raise errors.BufferTypeError(f"data does not expose a buffer: {exc}") from exc
    except (ValueError, BufferError) as exc:
        raise errors.NotContiguousError(f"data is not contiguous: {exc}") from exc


def crc32c(data: Any, crc: int = 0) -> int:
    """CRC-32C of a bytes-like object or C-contiguous array; ``crc`` continues a running value
    (like ``zlib.crc32``). Check value: ``crc32c(b"123456789") == 0xE3069283``."""
    view = _bytes_view(data)
    return _crc32c_fn(crc, view, len(view))


def crc32c_portable(data: Any, crc: int = 0) -> int:
    """The portable implementation, whatever the CPU has (to cross-check the hardware one)."""
    view = _bytes_view(data)
    return lib.flight_crc32c_sw(crc, view, len(view))


def crc32c_blocks(
    data: Any, block_size: int, out: np.ndarray | None = None, *, portable: bool = False
) -> np.ndarray:
    """CRC-32C of every ``block_size``-byte block of ``data`` (the last may be shorter).

    Returns (or fills) a uint32 array of ``ceil(len / block_size)`` entries. One native call for
    the whole range, so scrubbing a large region costs no Python per block.
    """
    if block_size <= 0:
        raise errors.ConfigError(f"block_size must be positive, got {block_size}")
    view = _bytes_view(data)
    count = -(-len(view) // block_size)
    if out is None:
        out = np.empty(count, dtype=np.uint32)
    elif out.dtype != np.uint32 or out.shape != (count,) or not out.flags.c_contiguous:
        raise errors.SizeMismatchError(f"out must be a contiguous uint32 array of {count} entries")
    fn = lib.flight_crc32c_blocks_sw if portable else _crc32c_blocks_fn
    check_status(
        fn(view, len(view), block_size, ffi.from_buffer("uint32_t[]", out, require_writable=True))
    )
    return out


def _crcmod_crc16() -> Any:
    import crcmod.predefined

    if not getattr(sys.modules["crcmod.crcmod"], "_usingExtension", False):
        raise errors.CrcExtensionMissingError(
            "crcmod is installed without its C extension and would run ~40x slower in pure "
            "Python. Reinstall it with a C compiler and the Python headers available: "
            "pip install --force-reinstall --no-binary crcmod crcmod"
        )
    return crcmod.predefined.mkPredefinedCrcFun("crc-ccitt-false")


_crc16 = _crcmod_crc16()


def crc16_ccitt_false(data: Any) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), the CCSDS packet error control field.
    Check value: ``crc16_ccitt_false(b"123456789") == 0x29B1``."""
    return _crc16(bytes(data) if not isinstance(data, bytes) else data)
