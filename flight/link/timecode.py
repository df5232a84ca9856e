"""CCSDS unsegmented time code (CUC, CCSDS 301.0-B-4), the TM secondary header.

Level 1 (TAI, epoch 1958-01-01), 4 coarse octets (seconds), 2 fine octets (units of 2^-16 s),
with its P-field: 7 bytes in all. Board time is Unix time shifted to the 1958 epoch plus the
fixed TAI-UTC offset; the offset is a constant here (no leap-second table flies), so a ground
system that applies a different offset is off by whole seconds, never by fractions.
"""

from __future__ import annotations

import math
import struct

from flight.errors import PacketError
from flight.link.codes import FailureCode

__all__ = [
    "CUC_LEN",
    "EPOCH_1958_TO_1970",
    "P_FIELD",
    "TAI_MINUS_UTC",
    "cuc_decode",
    "cuc_encode",
]

#: P-field: no extension (0), time code ID 001 (level 1, TAI 1958 epoch), 3+1 = 4 coarse
#: octets (11), 2 fine octets (10): 0b0_001_11_10.
P_FIELD = 0x1E
CUC_LEN = 7
#: Seconds from 1958-01-01 to 1970-01-01 (4383 days).
EPOCH_1958_TO_1970 = 378_691_200
#: TAI - UTC since 2017-01-01 (IERS Bulletin C): fixed, see the module docstring.
TAI_MINUS_UTC = 37
_OFFSET = EPOCH_1958_TO_1970 + TAI_MINUS_UTC
_FINE_UNITS = 1 << 16
_CUC = struct.Struct(">BIH")


def cuc_encode(unix_s: float) -> bytes:
    """The 7-byte CUC of a Unix time, rounded to the nearest 2^-16 s.

    A time outside what 4 coarse octets hold (before 1958, after 2094) is a bug: ValueError.
    """
    if not math.isfinite(unix_s):
        raise ValueError(f"cuc_encode: time {unix_s!r} is not finite")
    whole = math.floor(unix_s)
    fine = round((unix_s - whole) * _FINE_UNITS)  # exact: the subtraction loses no bits
    if fine == _FINE_UNITS:
        whole, fine = whole + 1, 0
    coarse = whole + _OFFSET
    if not 0 <= coarse <= 0xFFFF_FFFF:
        raise ValueError(f"cuc_encode: time {unix_s!r} is outside the 4-octet TAI range")
    return _CUC.pack(P_FIELD, coarse, fine)


def cuc_decode(b: bytes) -> float:
    """The Unix time of a 7-byte CUC; PacketError(MALFORMED) on a wrong length or P-field."""
    if len(b) != CUC_LEN:
        raise PacketError(FailureCode.MALFORMED, f"time code of {len(b)} bytes, expected {CUC_LEN}")
    p_field, coarse, fine = _CUC.unpack(b)
    if p_field != P_FIELD:
        raise PacketError(
            FailureCode.MALFORMED, f"time code P-field 0x{p_field:02X}, expected 0x{P_FIELD:02X}"
        )
    return (coarse - _OFFSET) + fine / _FINE_UNITS
