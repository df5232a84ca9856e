"""The CUC time code: the P-field, the TAI 1958 epoch, 2^-16 s fine time, and refusals."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flight.errors import PacketError
from flight.link.codes import FailureCode
from flight.link.timecode import CUC_LEN, P_FIELD, cuc_decode, cuc_encode

UNIX_MIN = -378_691_237.0  # TAI 1958-01-01T00:00:00
UNIX_MAX = UNIX_MIN + 0xFFFF_FFFF + 0.99


def cuc(coarse: int, fine: int, p_field: int = 0x1E) -> bytes:
    return struct.pack(">BIH", p_field, coarse, fine)


def test_the_p_field_says_level_1_tai_4_coarse_2_fine_octets():
    # 0 | 001 (level 1: TAI, 1958 epoch) | 11 (4 coarse octets) | 10 (2 fine octets)
    assert P_FIELD == 0b0_001_11_10
    assert cuc_encode(0.0)[0] == 0x1E and len(cuc_encode(0.0)) == CUC_LEN == 7


def test_coarse_seconds_count_tai_from_1958():
    tai_1970 = (datetime(1970, 1, 1, tzinfo=UTC) - datetime(1958, 1, 1, tzinfo=UTC)).days * 86400
    assert cuc_encode(0.0) == cuc(tai_1970 + 37, 0)
    new_year = datetime(2026, 1, 1, tzinfo=UTC)
    seconds = (new_year - datetime(1958, 1, 1, tzinfo=UTC)).total_seconds() + 37
    assert cuc_encode(new_year.timestamp()) == cuc(int(seconds), 0)
    assert cuc_encode(UNIX_MIN) == cuc(0, 0)


def test_fine_time_counts_2_to_the_minus_16_seconds():
    assert cuc_encode(0.5)[5:] == b"\x80\x00"
    assert cuc_encode(1 / 65536)[5:] == b"\x00\x01"
    assert cuc_decode(cuc(378_691_237, 0x4000)) == 0.25


def test_fine_time_that_rounds_up_to_a_whole_second_carries():
    assert cuc_encode(9.999999999) == cuc_encode(10.0)


@given(st.floats(UNIX_MIN, UNIX_MAX))
def test_decode_of_encode_is_within_half_a_fine_unit(unix_s):
    assert (
        abs(cuc_decode(cuc_encode(unix_s)) - unix_s) <= 2**-17 + 2**-20
    )  # half a unit, plus float rounding


@given(st.integers(0, 0xFFFF_FFFF), st.integers(0, 0xFFFF))
def test_encode_of_decode_is_exact(coarse, fine):
    assert cuc_encode(cuc_decode(cuc(coarse, fine))) == cuc(coarse, fine)


@pytest.mark.parametrize(
    "unix_s", [math.nan, math.inf, -math.inf, UNIX_MIN - 1, UNIX_MIN + 2**32, 1e300]
)
def test_encode_of_a_time_it_cannot_hold_is_a_bug(unix_s):
    with pytest.raises(ValueError):
        cuc_encode(unix_s)


@pytest.mark.parametrize(
    "raw",
    [b"", cuc(1, 2)[:6], cuc(1, 2) + b"\x00", cuc(1, 2, p_field=0x2E), cuc(1, 2, p_field=0x1F)],
)
def test_decode_refuses_a_wrong_length_or_p_field(raw):
    with pytest.raises(PacketError) as caught:
        cuc_decode(raw)
    assert caught.value.code == FailureCode.MALFORMED


@given(st.binary(max_size=12))
def test_random_bytes_meet_only_packet_error(raw):
    try:
        assert math.isfinite(cuc_decode(raw))
    except PacketError as exc:
        assert exc.code == FailureCode.MALFORMED


@given(st.integers(0, 0xFFFF_FFFF), st.integers(0, 0xFFFF), st.integers(0, 55), st.integers(0, 6))
def test_bit_flips_and_truncations_of_a_valid_code_meet_only_packet_error(coarse, fine, bit, cut):
    flipped = bytearray(cuc(coarse, fine))
    flipped[bit // 8] ^= 0x80 >> (bit % 8)
    for raw in (bytes(flipped), cuc(coarse, fine)[:cut]):
        try:
            assert math.isfinite(cuc_decode(raw))
            assert bit >= 8 and len(raw) == CUC_LEN  # only a flip of the time itself decodes
        except PacketError as exc:
            assert exc.code == FailureCode.MALFORMED
