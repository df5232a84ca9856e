"""CRC-32C (hardware and portable) and CRC-16/CCITT-FALSE against the standard catalogue."""

from __future__ import annotations

import binascii
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flight import crc, errors
from flight.native import lib

ROOT = Path(__file__).resolve().parent.parent


def _bitwise_crc32c(data: bytes) -> int:
    """Textbook bit-at-a-time CRC-32C, independent of every table in the project."""
    c = 0xFFFFFFFF
    for byte in data:
        c ^= byte
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    return c ^ 0xFFFFFFFF


def test_check_values():
    assert crc.crc32c(b"123456789") == 0xE3069283
    assert crc.crc32c_portable(b"123456789") == 0xE3069283
    assert crc.crc16_ccitt_false(b"123456789") == 0x29B1
    assert crc.crc32c(b"") == 0


def test_implementation_uses_the_cpu_crc_unit_when_present():
    kind = lib.flight_crc32c_hw_kind()
    forced = os.environ.get("FLIGHT_CRC32C", "auto")
    if kind and forced != "portable":
        assert crc.IMPLEMENTATION in ("sse4.2", "armv8-crc")
    else:
        assert crc.IMPLEMENTATION == "portable"


@given(st.binary(max_size=3000), st.integers(0, 7))
def test_hardware_portable_and_bitwise_agree(data, offset):
    holder = np.zeros(len(data) + 8, np.uint8)
    holder[offset : offset + len(data)] = np.frombuffer(data, np.uint8)
    view = holder[offset : offset + len(data)]
    expected = _bitwise_crc32c(data)
    assert crc.crc32c_portable(view) == expected
    assert crc.crc32c(view) == expected
    if lib.flight_crc32c_hw_kind():
        assert lib.flight_crc32c_hw(0, crc.ffi.from_buffer(view), len(data)) == expected


@given(st.binary(max_size=500), st.binary(max_size=500))
def test_running_value_continues_like_zlib(a, b):
    assert crc.crc32c(b, crc.crc32c(a)) == crc.crc32c(a + b)
    assert crc.crc32c_portable(b, crc.crc32c_portable(a)) == crc.crc32c(a + b)


@given(st.binary(max_size=5000), st.sampled_from([8, 64, 100, 4096]))
def test_blocks_equal_per_block_crcs(data, block_size):
    expected = [crc.crc32c(data[i : i + block_size]) for i in range(0, len(data), block_size)]
    assert crc.crc32c_blocks(data, block_size).tolist() == expected
    assert crc.crc32c_blocks(data, block_size, portable=True).tolist() == expected


def test_blocks_rejects_bad_arguments():
    with pytest.raises(errors.ConfigError):
        crc.crc32c_blocks(b"abc", 0)
    with pytest.raises(errors.SizeMismatchError):
        crc.crc32c_blocks(b"abcdefgh", 4, out=np.zeros(3, np.uint32))
    with pytest.raises(errors.BufferTypeError):
        crc.crc32c(12)
    with pytest.raises(errors.NotContiguousError):
        crc.crc32c(np.zeros(10)[::2])


@given(st.binary(max_size=1000))
def test_crc16_matches_binascii(data):
    assert crc.crc16_ccitt_false(data) == binascii.crc_hqx(data, 0xFFFF)
    assert crc.crc16_ccitt_false(bytearray(data)) == binascii.crc_hqx(data, 0xFFFF)


def test_crcmod_without_extension_fails_loudly(monkeypatch):
    monkeypatch.setattr(sys.modules["crcmod.crcmod"], "_usingExtension", False)
    with pytest.raises(errors.CrcExtensionMissingError, match="C extension"):
        crc._crcmod_crc16()


def test_crc_table_header_is_generated():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gen_crc32c_table
    finally:
        sys.path.pop(0)
    assert (ROOT / "native" / "crc32c_table.h").read_text() == gen_crc32c_table.render()


def _implementation_with(env_value: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, FLIGHT_CRC32C=env_value)
    return subprocess.run(
        [sys.executable, "-c", "import flight.crc as c; print(c.IMPLEMENTATION)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )


def test_portable_can_be_forced_and_bad_values_are_rejected():
    forced = _implementation_with("portable")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.strip() == "portable"
    bad = _implementation_with("fastest")
    assert bad.returncode != 0 and "ConfigError" in bad.stderr


def test_zlib_is_not_what_we_compute():
    # guards against a wiring mistake that would hand out CRC-32 (zlib) instead of CRC-32C
    assert crc.crc32c(b"123456789") != zlib.crc32(b"123456789")
