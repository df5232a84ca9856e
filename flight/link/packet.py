"""CCSDS Space Packets (133.0-B-2) with CRC-16 packet error control: the link's framing.

Big-endian throughout. Primary header (6 bytes): version 0, type (0 TM, 1 TC), secondary header
flag, APID (11 bits); sequence flags (always 0b11, unsegmented) and a 14-bit count per APID;
data length = bytes in the data field - 1. The data field ends with CRC-16/CCITT-FALSE over
everything before it. TM data fields start with a CUC time code (:mod:`flight.link.timecode`).

Encoding a packet out of range is a bug (ValueError); decoding bytes from the link never raises
anything but :class:`flight.errors.PacketError`: the bytes are hostile or damaged, not wrong code.
"""

from __future__ import annotations

import binascii
import re
import struct
import time
from dataclasses import dataclass

from flight.errors import PacketError
from flight.link.codes import FailureCode
from flight.link.timecode import CUC_LEN, cuc_decode, cuc_encode

__all__ = [
    "CRC_LEN",
    "MAX_DATA_LEN",
    "MAX_PACKET_LEN",
    "MIN_PACKET_LEN",
    "PRIMARY_HEADER_LEN",
    "SEQ_COUNT_MODULO",
    "TC",
    "TM",
    "Packet",
    "SequenceCounters",
    "StreamDecoder",
    "crc16",
    "decode",
    "encode",
    "encode_tm",
    "primary_header",
    "split_tm",
]

TM = 0
TC = 1
PRIMARY_HEADER_LEN = 6
CRC_LEN = 2
#: The shortest packet decode accepts: a header and a data field holding just the CRC.
MIN_PACKET_LEN = PRIMARY_HEADER_LEN + CRC_LEN
#: The data length field is 16 bits: a data field of at most 65536 bytes, CRC included.
MAX_DATA_LEN = 65536 - CRC_LEN
MAX_PACKET_LEN = PRIMARY_HEADER_LEN + 65536
SEQ_COUNT_MODULO = 1 << 14
MAX_APID = 0x7FF
_UNSEGMENTED = 0b11

_HEADER = struct.Struct(">HHH")
_CRC = struct.Struct(">H")
_crc_hqx = binascii.crc_hqx


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no xorout)."""
    return _crc_hqx(data, 0xFFFF)


@dataclass(frozen=True, slots=True)
class Packet:
    """A decoded space packet. ``data`` is the data field without the trailing CRC (for TM it
    still starts with the CUC time code)."""

    type: int
    apid: int
    seq_count: int
    sec_header: bool
    data: bytes

    @property
    def packet_id(self) -> int:
        """The first header word (version, type, secondary header flag, APID): PUS-1's request
        ID of a telecommand."""
        return (self.type << 12) | (self.sec_header << 11) | self.apid

    @property
    def sequence_control(self) -> int:
        """The second header word (sequence flags, count): PUS-1's request sequence."""
        return (_UNSEGMENTED << 14) | self.seq_count


def primary_header(type_: int, apid: int, seq_count: int, data_len: int, sec_header: bool) -> bytes:
    """The 6-byte primary header of a packet whose data field, *without* its CRC, is
    ``data_len`` bytes long (what a MAC over the header as sent covers). ValueError when a
    field is out of range (a bug)."""
    if type_ not in (TM, TC):
        raise ValueError(f"packet type {type_!r}: expected 0 (TM) or 1 (TC)")
    if not 0 <= apid <= MAX_APID:
        raise ValueError(f"APID {apid!r} outside 0..{MAX_APID}")
    if not 0 <= seq_count < SEQ_COUNT_MODULO:
        raise ValueError(f"sequence count {seq_count!r} outside 0..{SEQ_COUNT_MODULO - 1}")
    if not 0 <= data_len <= MAX_DATA_LEN:
        raise ValueError(f"data field of {data_len} bytes: at most {MAX_DATA_LEN} before the CRC")
    return _HEADER.pack(
        (type_ << 12) | (bool(sec_header) << 11) | apid,
        (_UNSEGMENTED << 14) | seq_count,
        data_len + CRC_LEN - 1,
    )


def encode(type_: int, apid: int, seq_count: int, data: bytes, sec_header: bool) -> bytes:
    """A whole packet: header, ``data``, CRC-16. ValueError for out-of-range fields (a bug)."""
    head = primary_header(type_, apid, seq_count, len(data), sec_header)
    crc = _crc_hqx(data, _crc_hqx(head, 0xFFFF))
    return b"".join((head, data, _CRC.pack(crc)))


def encode_tm(apid: int, seq_count: int, user_data: bytes, time_s: float | None = None) -> bytes:
    """A TM packet: CUC secondary header (board time now, or ``time_s``), user data, CRC."""
    stamp = cuc_encode(time.time() if time_s is None else time_s)
    return encode(TM, apid, seq_count, stamp + user_data, True)


def decode(raw: bytes) -> Packet:
    """The packet in ``raw`` (exactly one); PacketError(MALFORMED) for a short packet, a version
    other than 0, a length field that does not match, segmented sequence flags, a bad CRC."""
    n = len(raw)
    if n < MIN_PACKET_LEN:
        raise PacketError(
            FailureCode.MALFORMED, f"packet of {n} bytes: shorter than {MIN_PACKET_LEN}"
        )
    word1, word2, length = _HEADER.unpack_from(raw)
    if word1 >> 13:
        raise PacketError(FailureCode.MALFORMED, f"packet version {word1 >> 13}, expected 0")
    if length != n - PRIMARY_HEADER_LEN - 1:
        raise PacketError(
            FailureCode.MALFORMED,
            f"length field says {length + 1} data bytes, the packet has {n - PRIMARY_HEADER_LEN}",
        )
    if word2 >> 14 != _UNSEGMENTED:
        raise PacketError(
            FailureCode.MALFORMED,
            f"sequence flags 0b{word2 >> 14:02b}: only unsegmented packets (0b11) are accepted",
        )
    if _crc_hqx(raw, 0xFFFF):  # the CRC over data and CRC leaves no residue
        sent = _CRC.unpack_from(raw, n - CRC_LEN)[0]
        raise PacketError(
            FailureCode.MALFORMED,
            f"CRC 0x{sent:04X} does not match 0x{_crc_hqx(raw[:-CRC_LEN], 0xFFFF):04X}",
        )
    return Packet(
        (word1 >> 12) & 1,
        word1 & MAX_APID,
        word2 & (SEQ_COUNT_MODULO - 1),
        bool(word1 & 0x0800),
        bytes(raw[PRIMARY_HEADER_LEN:-CRC_LEN]),
    )


def split_tm(p: Packet) -> tuple[float, bytes]:
    """(Unix time, user data) of a TM packet; PacketError(MALFORMED) when it is not a TM packet
    with a CUC secondary header."""
    if p.type != TM or not p.sec_header:
        raise PacketError(
            FailureCode.MALFORMED,
            f"APID 0x{p.apid:03X}: not a TM packet with a secondary header "
            f"(type {p.type}, secondary header flag {int(p.sec_header)})",
        )
    if len(p.data) < CUC_LEN:
        raise PacketError(
            FailureCode.MALFORMED,
            f"APID 0x{p.apid:03X}: data field of {len(p.data)} bytes cannot hold the time code",
        )
    return cuc_decode(p.data[:CUC_LEN]), p.data[CUC_LEN:]


class SequenceCounters:
    """The 14-bit source sequence count of each APID: 0, 1, ..., 16383, 0, ..."""

    def __init__(self) -> None:
        self._next: dict[int, int] = {}

    def next(self, apid: int) -> int:
        """The count for the next packet of ``apid`` (ValueError for an APID out of range)."""
        count = self._next.get(apid)
        if count is None:
            if not 0 <= apid <= MAX_APID:
                raise ValueError(f"APID {apid!r} outside 0..{MAX_APID}")
            count = 0
        self._next[apid] = (count + 1) % SEQ_COUNT_MODULO
        return count


# A byte that can start a packet has version 0: its top three bits are clear.
_HEADER_START = re.compile(rb"[\x00-\x1f]")


class StreamDecoder:
    """Cuts a byte stream (TCP) into packets by their length fields.

    A header that cannot start a packet (version != 0, segmented sequence flags, or a length
    beyond ``max_packet_len``) costs one byte, counted in ``skipped_bytes``, until the stream is
    in step again. The buffer never holds more than one incomplete packet (< ``max_packet_len``
    bytes) between calls. Packets are returned unchecked: :func:`decode` checks the CRC.
    """

    def __init__(self, max_packet_len: int = MAX_PACKET_LEN) -> None:
        if not PRIMARY_HEADER_LEN < max_packet_len <= MAX_PACKET_LEN:
            raise ValueError(
                f"max_packet_len {max_packet_len}: expected {PRIMARY_HEADER_LEN + 1}.."
                f"{MAX_PACKET_LEN}"
            )
        self.max_packet_len = max_packet_len
        self.skipped_bytes = 0
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back: the start of a packet whose end has not arrived yet."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[bytes]:
        """Append ``chunk``; return the packets it completed, in order."""
        buf = self._buffer
        buf += chunk
        end = len(buf)
        pos = 0
        packets: list[bytes] = []
        while end - pos >= PRIMARY_HEADER_LEN:
            word1, word2, length = _HEADER.unpack_from(buf, pos)
            total = length + PRIMARY_HEADER_LEN + 1
            if word1 >> 13 or word2 >> 14 != _UNSEGMENTED or total > self.max_packet_len:
                pos = self._skip(buf, pos + 1, pos)
                continue
            if end - pos < total:
                break
            packets.append(bytes(buf[pos : pos + total]))
            pos += total
        if pos < end and buf[pos] >> 5:  # a short tail that cannot start a header either
            pos = self._skip(buf, pos, pos)
        del buf[:pos]
        return packets

    def _skip(self, buf: bytearray, search_from: int, pos: int) -> int:
        """Drop the bytes from ``pos`` to the next one that can start a header; count them."""
        found = _HEADER_START.search(buf, search_from)
        resume = len(buf) if found is None else found.start()
        self.skipped_bytes += resume - pos
        return resume
