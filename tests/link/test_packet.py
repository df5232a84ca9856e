"""Space packets: the layout bit for bit, every refusal of decode, interop with the independent
`spacepackets` library in both directions, and hostile bytes (random, truncated, bit-flipped)
that meet only PacketError."""

from __future__ import annotations

import itertools
import struct

import fastcrc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from spacepackets.ccsds.spacepacket import (
    PacketId,
    PacketType,
    SequenceFlags,
    SpacePacket,
    SpacePacketHeader,
    parse_space_packets,
)
from spacepackets.ecss import check_pus_crc

from flight.errors import PacketError
from flight.link import packet
from flight.link.codes import Apid, FailureCode
from flight.link.packet import (
    Packet,
    SequenceCounters,
    StreamDecoder,
    crc16,
    decode,
    encode,
    encode_tm,
    split_tm,
)

TM_APIDS = [
    Apid.HOUSEKEEPING,
    Apid.EVENT,
    Apid.RESULT,
    Apid.VERIFICATION,
    Apid.DUMP,
    Apid.PARTITION,
]
T0 = 1_795_000_000.25  # a board time in 2026, a whole number of 2^-16 s

apids = st.integers(0, packet.MAX_APID)
seq_counts = st.integers(0, packet.SEQ_COUNT_MODULO - 1)
payloads = st.binary(max_size=300)


def rejected(fn, data) -> PacketError | None:
    """None if ``fn(data)`` returns; the PacketError if it refuses. Anything else escapes and
    fails the test."""
    try:
        fn(data)
    except PacketError as exc:
        assert isinstance(exc.code, int) and FailureCode(exc.code) is FailureCode.MALFORMED
        assert exc.detail
        return exc
    return None


def with_crc(without_crc: bytes) -> bytes:
    return without_crc + struct.pack(">H", crc16(without_crc))


def header(word1: int, word2: int, length: int) -> bytes:
    return struct.pack(">HHH", word1, word2, length)


# --- CRC and layout --------------------------------------------------------------------------


def test_crc16_is_ccitt_false():
    assert crc16(b"123456789") == 0x29B1  # the catalogue's check value
    assert crc16(b"") == 0xFFFF


@given(st.binary(max_size=2000))
def test_crc16_agrees_with_fastcrc(data):
    assert crc16(data) == fastcrc.crc16.ibm_3740(data)


def test_encode_lays_out_the_header_bit_for_bit():
    raw = encode(packet.TC, 0x101, 5, b"\x01\x02", False)
    # type 1, no secondary header, APID 0x101 | flags 0b11, count 5 | 4 data bytes - 1
    assert raw[:6] == bytes([0x11, 0x01, 0xC0, 0x05, 0x00, 0x03])
    assert raw[6:8] == b"\x01\x02"
    assert raw[8:] == struct.pack(">H", crc16(raw[:8]))
    raw = encode(packet.TM, 0x7FF, 16383, b"", True)
    assert raw[:6] == bytes([0x0F, 0xFF, 0xFF, 0xFF, 0x00, 0x01])
    assert decode(raw) == Packet(packet.TM, 0x7FF, 16383, True, b"")


def test_packet_id_and_sequence_control_are_the_header_words():
    raw = encode(packet.TC, Apid.COMMAND, 77, b"abc", False)
    p = decode(raw)
    assert (p.packet_id, p.sequence_control) == struct.unpack(">HH", raw[:4])


@pytest.mark.parametrize(
    "args",
    [
        (2, 0x10, 0, b"", True),
        (packet.TM, 0x800, 0, b"", True),
        (packet.TM, -1, 0, b"", True),
        (packet.TM, 0x10, 16384, b"", True),
        (packet.TM, 0x10, -1, b"", True),
        (packet.TM, 0x10, 0, bytes(65535), True),
    ],
)
def test_encode_out_of_range_is_a_bug(args):
    with pytest.raises(ValueError):
        encode(*args)


def test_the_largest_data_field_fits():
    raw = encode(packet.TM, 0x10, 0, bytes(65534), True)
    assert len(raw) == packet.MAX_PACKET_LEN
    assert raw[4:6] == b"\xff\xff"
    assert decode(raw).data == bytes(65534)


@given(st.sampled_from([packet.TM, packet.TC]), apids, seq_counts, payloads, st.booleans())
def test_encode_decode_round_trip(type_, apid, seq_count, data, sec_header):
    p = decode(encode(type_, apid, seq_count, data, sec_header))
    assert p == Packet(type_, apid, seq_count, sec_header, data)


# --- decode refuses, one check at a time (each packet is otherwise valid, CRC included) -------


@pytest.mark.parametrize("length", range(8))
def test_decode_refuses_a_packet_shorter_than_8_bytes(length):
    raw = encode(packet.TC, 0x100, 0, b"", False)[:length]
    assert "shorter" in str(rejected(decode, raw))


@pytest.mark.parametrize("version", range(1, 8))
def test_decode_refuses_a_version_other_than_0(version):
    raw = with_crc(header((version << 13) | 0x1100, 0xC000, 2) + b"x")
    assert "version" in str(rejected(decode, raw))


@pytest.mark.parametrize("delta", [-1, 1, 100])
def test_decode_refuses_a_length_field_that_does_not_match(delta):
    raw = with_crc(header(0x1100, 0xC000, 2 + delta) + b"x")
    assert "length field" in str(rejected(decode, raw))


@pytest.mark.parametrize("flags", [0b00, 0b01, 0b10])
def test_decode_refuses_segmented_packets(flags):
    raw = with_crc(header(0x1100, (flags << 14) | 5, 2) + b"x")
    assert "sequence flags" in str(rejected(decode, raw))


def test_decode_refuses_a_bad_crc():
    raw = bytearray(encode(packet.TC, 0x100, 0, b"hello", False))
    raw[-1] ^= 0x01
    assert "CRC" in str(rejected(decode, bytes(raw)))


def test_decode_accepts_any_bytes_like():
    raw = encode(packet.TC, 0x100, 3, b"hello", False)
    for form in (bytearray(raw), memoryview(raw)):
        p = decode(form)
        assert p.data == b"hello" and type(p.data) is bytes


# --- TM: secondary header ---------------------------------------------------------------------


def test_encode_tm_starts_the_data_field_with_the_time_code():
    raw = encode_tm(Apid.EVENT, 9, b"user", T0)
    p = decode(raw)
    assert (p.type, p.apid, p.seq_count, p.sec_header) == (packet.TM, Apid.EVENT, 9, True)
    assert p.data[0] == 0x1E and p.data[7:] == b"user"
    assert split_tm(p) == (T0, b"user")


def test_encode_tm_stamps_board_time_now(monkeypatch):
    monkeypatch.setattr(packet.time, "time", lambda: T0)
    assert split_tm(decode(encode_tm(Apid.EVENT, 0, b""))) == (T0, b"")


@pytest.mark.parametrize(
    ("p", "words"),
    [
        (Packet(packet.TC, 0x10, 0, True, bytes(20)), "not a TM packet"),
        (Packet(packet.TM, 0x10, 0, False, bytes(20)), "not a TM packet"),
        (Packet(packet.TM, 0x10, 0, True, b"\x1e" + bytes(5)), "cannot hold the time code"),
        (Packet(packet.TM, 0x10, 0, True, b"\x2e" + bytes(12)), "P-field"),
    ],
)
def test_split_tm_refuses_what_is_not_a_stamped_tm_packet(p, words):
    assert words in str(rejected(split_tm, p))


# --- sequence counters ------------------------------------------------------------------------


def test_sequence_counts_wrap_at_16384_per_apid():
    counters = SequenceCounters()
    assert [counters.next(0x10) for _ in range(3)] == [0, 1, 2]
    assert counters.next(0x11) == 0  # its own count
    for _ in range(16384 - 4):
        counters.next(0x10)
    assert counters.next(0x10) == 16383
    assert counters.next(0x10) == 0
    assert counters.next(0x11) == 1


@pytest.mark.parametrize("apid", [-1, 0x800])
def test_sequence_counter_of_an_apid_out_of_range_is_a_bug(apid):
    with pytest.raises(ValueError):
        SequenceCounters().next(apid)


# --- stream decoder ---------------------------------------------------------------------------


def some_packets() -> list[bytes]:
    return [encode_tm(apid, i, bytes([i]) * (i * 7), T0) for i, apid in enumerate(TM_APIDS)] + [
        encode(packet.TC, Apid.COMMAND, 1, b"x" * 30, False)
    ]


@given(st.lists(st.integers(0, 600), max_size=12))
def test_stream_decoder_cuts_back_to_back_packets_whatever_the_chunks(cuts):
    packets = some_packets()
    stream = b"".join(packets)
    bounds = sorted({0, len(stream), *(min(c, len(stream)) for c in cuts)})
    decoder = StreamDecoder()
    out = []
    for start, end in itertools.pairwise(bounds):
        out += decoder.feed(stream[start:end])
    assert out == packets
    assert decoder.pending == 0 and decoder.skipped_bytes == 0


def test_stream_decoder_skips_and_counts_bytes_that_cannot_start_a_packet():
    packets = some_packets()
    garbage = bytes([0xFF, 0x20, 0xE0, 0x41, 0x99])  # each has a version != 0
    decoder = StreamDecoder()
    assert decoder.feed(garbage + packets[0] + garbage) == [packets[0]]
    assert decoder.feed(packets[1]) == [packets[1]]
    assert decoder.skipped_bytes == 2 * len(garbage)


def test_stream_decoder_holds_back_only_bytes_that_can_start_a_header():
    decoder = StreamDecoder()
    assert decoder.feed(b"\xff\x20\xe0") == []  # shorter than a header, none can start one
    assert (decoder.skipped_bytes, decoder.pending) == (3, 0)
    assert decoder.feed(b"\x10\xff") == []  # 0x10 can: it and what follows wait
    assert (decoder.skipped_bytes, decoder.pending) == (3, 2)


def test_stream_decoder_does_not_start_a_packet_at_a_segmented_header():
    unsegmented = with_crc(header(0x0810, 0xC000, 2) + b"x")
    assert StreamDecoder().feed(unsegmented) == [unsegmented]
    segmented = with_crc(header(0x0810, 0x4000, 2) + b"x")
    decoder = StreamDecoder()
    assert decoder.feed(segmented) == []
    assert decoder.skipped_bytes >= 1


def test_stream_decoder_buffer_is_bounded_by_the_longest_packet():
    decoder = StreamDecoder(max_packet_len=9000)
    too_long = header(0x0FFF, 0xC0FF, 0xFFFF)  # announces 65542 bytes; only byte 0 is < 0x20
    assert decoder.feed(too_long) == []
    assert decoder.skipped_bytes == 6 and decoder.pending == 0
    good = encode(packet.TM, 0x10, 0, bytes(8992), True)  # 9000 bytes: the limit
    assert decoder.feed(good[:-1]) == [] and decoder.pending == 8999
    assert decoder.feed(good[-1:]) == [good]
    assert decoder.pending == 0 and decoder.skipped_bytes == 6


@given(st.lists(st.binary(max_size=200), max_size=20))
def test_stream_decoder_eats_garbage_without_escape_and_stays_bounded(chunks):
    decoder = StreamDecoder(max_packet_len=300)
    for chunk in chunks:
        for cut in decoder.feed(chunk):
            assert 7 <= len(cut) <= 300
            rejected(decode, cut)
        assert decoder.pending < 300
    assert decoder.skipped_bytes <= sum(map(len, chunks))


@pytest.mark.timeout(120)
@given(st.data())
def test_stream_decoder_meets_a_damaged_stream_without_escape(draw):
    stream = bytearray(b"".join(some_packets()))
    for bit in draw.draw(st.lists(st.integers(0, 8 * len(stream) - 1), max_size=4)):
        stream[bit // 8] ^= 0x80 >> (bit % 8)
    cut = draw.draw(st.integers(0, len(stream)))
    decoder = StreamDecoder(max_packet_len=2000)
    out = decoder.feed(bytes(stream[:cut])) + decoder.feed(bytes(stream[cut:]))
    for piece in out:
        rejected(decode, piece)
    assert sum(map(len, out)) + decoder.skipped_bytes + decoder.pending == len(stream)


def test_stream_decoder_cuts_as_spacepackets_does():
    packets = some_packets()
    stream = b"".join(packets)
    ids = [PacketId(PacketType.TM, True, a) for a in TM_APIDS]
    ids.append(PacketId(PacketType.TC, False, Apid.COMMAND))
    theirs = parse_space_packets(stream, ids)
    assert [bytes(p) for p in theirs.tm_list] == StreamDecoder().feed(stream) == packets


# --- interop with spacepackets ----------------------------------------------------------------


@pytest.mark.parametrize("apid", TM_APIDS, ids=lambda a: a.name)
@pytest.mark.parametrize("size", [0, 1, 120, 65000])
@pytest.mark.parametrize("seq_count", [0, 1, 16383])
def test_spacepackets_decodes_every_tm_packet_kind(apid, size, seq_count):
    user = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    raw = encode_tm(apid, seq_count, user, T0)
    theirs = SpacePacketHeader.unpack(raw)
    assert theirs.ccsds_version == 0
    assert theirs.packet_type == PacketType.TM
    assert theirs.sec_header_flag is True
    assert theirs.apid == apid
    assert theirs.seq_count == seq_count
    assert theirs.seq_flags == SequenceFlags.UNSEGMENTED
    assert theirs.data_len == len(raw) - 7 and theirs.packet_len == len(raw)
    assert check_pus_crc(raw)
    broken = bytearray(raw)
    broken[len(raw) // 2] ^= 0x10
    assert not check_pus_crc(bytes(broken))
    assert rejected(decode, bytes(broken)) is not None


@given(apids, seq_counts, payloads, st.booleans())
def test_spacepackets_crc_check_agrees_with_decode(apid, seq_count, data, flip):
    raw = bytearray(encode(packet.TM, apid, seq_count, data, True))
    if flip:
        raw[-1 - len(data) // 2] ^= 0x80
    assert check_pus_crc(bytes(raw)) == (rejected(decode, bytes(raw)) is None)


@given(apids, seq_counts, payloads)
def test_flight_decodes_tc_packets_built_with_spacepackets(apid, seq_count, data):
    head = SpacePacketHeader.tc(apid=apid, seq_count=seq_count, data_len=len(data) + 1)
    without_crc = SpacePacket(head, sec_header=None, user_data=data).pack()
    raw = bytes(without_crc) + struct.pack(">H", fastcrc.crc16.ibm_3740(bytes(without_crc)))
    assert decode(raw) == Packet(packet.TC, apid, seq_count, False, data)
    assert raw == encode(packet.TC, apid, seq_count, data, False)


# --- hostile bytes: only PacketError, never a hang --------------------------------------------


def split(raw: bytes) -> tuple[float, bytes]:
    return split_tm(decode(raw))


@pytest.mark.timeout(120)
@given(st.binary(max_size=100))
def test_random_bytes_meet_only_packet_error(data):
    rejected(decode, data)
    rejected(split, data)
    StreamDecoder().feed(data)


@pytest.mark.timeout(120)
@given(st.binary(max_size=40), st.data())
def test_random_data_fields_with_a_valid_crc_meet_only_packet_error(data, draw):
    # A valid frame around hostile content reaches split_tm and the time code decoder.
    raw = encode(draw.draw(st.sampled_from([0, 1])), 0x10, 0, data, draw.draw(st.booleans()))
    rejected(split, raw)


@given(st.sampled_from(TM_APIDS), payloads, st.data())
def test_every_truncation_is_refused(apid, user, draw):
    raw = encode_tm(apid, 1, user, T0)
    cut = draw.draw(st.integers(0, len(raw) - 1))
    assert rejected(decode, raw[:cut]) is not None
    assert rejected(split, raw[:cut]) is not None


@given(st.sampled_from(TM_APIDS), payloads, st.data())
def test_every_single_bit_flip_is_refused(apid, user, draw):
    raw = bytearray(encode_tm(apid, 1, user, T0))
    bit = draw.draw(st.integers(0, 8 * len(raw) - 1))
    raw[bit // 8] ^= 0x80 >> (bit % 8)
    assert rejected(decode, bytes(raw)) is not None
    assert rejected(split, bytes(raw)) is not None
