"""The board's CFDP class 1 receiver against independent implementations: files sent by
cfdp-py's source handler, PDUs built by spacepackets, and damaged or hostile PDUs."""

from __future__ import annotations

import random
import tempfile
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spacepackets.cfdp import (
    ChecksumType,
    ConditionCode,
    CrcFlag,
    LargeFileFlag,
    PduConfig,
    TransmissionMode,
)
from spacepackets.cfdp.pdu import EofPdu, FileDataPdu, MetadataParams, MetadataPdu
from spacepackets.cfdp.pdu.file_data import (
    FileDataParams,
    RecordContinuationState,
    SegmentMetadata,
)
from spacepackets.cfdp.pdu.finished import DeliveryCode, FileStatus, FinishedParams, FinishedPdu
from spacepackets.cfdp.pdu.prompt import PromptPdu, ResponseRequired
from spacepackets.cfdp.tlv import EntityIdTlv
from spacepackets.util import ByteFieldGenerator

from flight import events
from flight.crc import crc16_ccitt_false, crc32c
from flight.errors import CfdpError
from flight.link import cfdp
from flight.link.codes import FailureCode
from hil.link.cfdp_ground import file_pdus

GROUND = 1
BOARD = 2
INACTIVITY_S = 60.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_receiver(staging: Path, **kwargs: object) -> cfdp.CfdpReceiver:
    options: dict = {
        "entity_id": BOARD,
        "max_file_bytes": 1 << 20,
        "max_transactions": 4,
        "log": events.EventLog(),
        "clock": FakeClock(),
        "inactivity_s": INACTIVITY_S,
    }
    options.update(kwargs)
    return cfdp.CfdpReceiver(staging, **options)


def feed(receiver: cfdp.CfdpReceiver, pdus: list[bytes]) -> None:
    for pdu in pdus:
        receiver.handle(pdu)


def events_named(receiver: cfdp.CfdpReceiver, name: str) -> list[events.Event]:
    return [e for e in receiver._log.recent() if e.name == name]


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def sent_by_cfdp_py(tmp_path: Path, data: bytes, name: str = "model.fm", **kwargs) -> list[bytes]:
    source = tmp_path / "ground" / "source.bin"
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(data)
    kwargs.setdefault("segment_size", 256)
    return file_pdus(source, name, GROUND, BOARD, seq=kwargs.pop("seq", 7), **kwargs)


def staged_files(staging: Path) -> list[str]:
    return sorted(p.name for p in staging.iterdir()) if staging.exists() else []


def assert_counters_add_up(receiver: cfdp.CfdpReceiver) -> None:
    assert receiver.pdus == receiver.pdus_accepted + sum(receiver.pdus_rejected.values())


# -- spacepackets-built PDUs, for what cfdp-py's source handler never sends --------------------


def pdu_config(seq: int = 9, *, large: bool = False, crc: bool = False, acked: bool = False):
    return PduConfig(
        source_entity_id=ByteFieldGenerator.from_int(2, GROUND),
        dest_entity_id=ByteFieldGenerator.from_int(2, BOARD),
        transaction_seq_num=ByteFieldGenerator.from_int(2, seq),
        trans_mode=TransmissionMode.ACKNOWLEDGED if acked else TransmissionMode.UNACKNOWLEDGED,
        file_flag=LargeFileFlag.LARGE if large else LargeFileFlag.NORMAL,
        crc_flag=CrcFlag.WITH_CRC if crc else CrcFlag.NO_CRC,
    )


def sp_metadata(conf, size: int, name: str = "up.bin", checksum=ChecksumType.CRC_32) -> bytes:
    params = MetadataParams(False, checksum, size, "src.bin", name)
    return bytes(MetadataPdu(conf, params).pack())


def sp_file_data(conf, offset: int, data: bytes, segment_metadata=None) -> bytes:
    return bytes(FileDataPdu(conf, FileDataParams(data, offset, segment_metadata)).pack())


def sp_eof(conf, data: bytes, size: int | None = None, **kwargs) -> bytes:
    size = len(data) if size is None else size
    return bytes(EofPdu(conf, zlib.crc32(data), size, **kwargs).pack())


def sp_transfer(conf, data: bytes, segment: int = 100, name: str = "up.bin") -> list[bytes]:
    pieces = [sp_file_data(conf, o, data[o : o + segment]) for o in range(0, len(data), segment)]
    return [sp_metadata(conf, len(data), name), *pieces, sp_eof(conf, data)]


# -- files sent by cfdp-py arrive whole ---------------------------------------------------------


@pytest.mark.parametrize("checksum", ["modular", "crc32c", "crc32", "null"])
@pytest.mark.parametrize("size", [0, 1, 255, 256, 257, 3000])
def test_a_file_sent_by_cfdp_py_is_staged_byte_identical(tmp_path, checksum, size):
    data = payload(size, seed=size)
    pdus = sent_by_cfdp_py(tmp_path, data, checksum=checksum)
    assert len(pdus) == 2 + -(-size // 256)  # Metadata, one File Data per segment, EOF
    staging = tmp_path / "uploads"
    receiver = make_receiver(staging)
    feed(receiver, pdus)
    assert receiver.staged == {"model.fm": staging / "model.fm"}
    assert (staging / "model.fm").read_bytes() == data
    assert staged_files(staging) == ["model.fm"]  # no temporary file left beside it
    assert receiver.files_received == 1 and not receiver.files_rejected
    assert receiver.pdus_accepted == receiver.pdus == len(pdus)
    assert receiver.open_transactions == 0
    (received,) = events_named(receiver, "FILE_RECEIVED")
    assert received.fields["name"] == "model.fm" and received.fields["size"] == size


@pytest.mark.parametrize(
    ("entity_bytes", "seq_bits", "pdu_crc"), [(1, 8, False), (4, 32, True), (8, 16, True)]
)
def test_header_field_widths_and_the_pdu_crc_from_cfdp_py(
    tmp_path, entity_bytes, seq_bits, pdu_crc
):
    data = payload(1000)
    pdus = sent_by_cfdp_py(
        tmp_path, data, entity_bytes=entity_bytes, seq_bits=seq_bits, pdu_crc=pdu_crc, seq=200
    )
    header, _ = cfdp.decode_header(pdus[0])
    assert (header.entity_id_length, header.seq_length) == (entity_bytes, seq_bits // 8)
    assert (header.source_entity, header.dest_entity, header.seq) == (GROUND, BOARD, 200)
    assert header.crc is pdu_crc and not header.acknowledged and not header.towards_sender
    receiver = make_receiver(tmp_path / "uploads")
    feed(receiver, pdus)
    assert (tmp_path / "uploads" / "model.fm").read_bytes() == data


def test_file_data_out_of_order_and_repeated_is_assembled(tmp_path):
    data = payload(5000)
    metadata, *segments, eof = sent_by_cfdp_py(tmp_path, data, checksum="crc32c")
    shuffled = segments + segments[::3]
    random.Random(1).shuffle(shuffled)
    receiver = make_receiver(tmp_path / "uploads")
    feed(receiver, [shuffled[0], metadata, *shuffled[1:], eof])  # data even before Metadata
    assert (tmp_path / "uploads" / "model.fm").read_bytes() == data
    assert receiver.files_received == 1


def test_two_transactions_interleaved_from_cfdp_py(tmp_path):
    a, b = payload(700, 1), payload(900, 2)
    pdus_a = sent_by_cfdp_py(tmp_path, a, "a.fm", seq=1)
    pdus_b = sent_by_cfdp_py(tmp_path, b, "b.fm", seq=2)
    receiver = make_receiver(tmp_path / "uploads")
    for pair in zip(pdus_a, pdus_b, strict=False):
        feed(receiver, list(pair))
    feed(receiver, pdus_b[len(pdus_a) :])
    assert (tmp_path / "uploads" / "a.fm").read_bytes() == a
    assert (tmp_path / "uploads" / "b.fm").read_bytes() == b


def test_large_file_flag_and_segment_metadata_from_spacepackets(tmp_path):
    """cfdp-py's source handler sets the large-file flag only for files over 4 GiB and never
    sends segment metadata: spacepackets builds those PDUs (8-byte sizes and offsets)."""
    data = payload(300)
    conf = pdu_config(large=True, crc=True)
    segment = SegmentMetadata(RecordContinuationState.START_AND_END, b"rec")
    pdus = [
        sp_metadata(conf, len(data)),
        sp_file_data(conf, 200, data[200:], segment),
        sp_file_data(conf, 0, data[:200]),
        sp_eof(conf, data),
    ]
    header, body = cfdp.decode_pdu(pdus[1])
    assert header.large_file and header.segment_metadata and header.crc
    assert body == cfdp.FileData(200, data[200:], RecordContinuationState.START_AND_END, b"rec")
    assert cfdp.decode_pdu(pdus[0])[1].file_size == 300
    receiver = make_receiver(tmp_path / "uploads")
    feed(receiver, pdus)
    assert (tmp_path / "uploads" / "up.bin").read_bytes() == data


@settings(max_examples=60)
@given(
    entity_bytes=st.sampled_from([1, 2, 4, 8]),
    seq_bytes=st.sampled_from([1, 2, 4, 8]),
    values=st.tuples(*[st.integers(0, 255)] * 3),
    large=st.booleans(),
    crc=st.booleans(),
    acked=st.booleans(),
    offset=st.integers(0, 2**32 - 1),
    data=st.binary(max_size=40),
)
def test_headers_decode_as_spacepackets_encodes_them(
    entity_bytes, seq_bytes, values, large, crc, acked, offset, data
):
    source, dest, seq = values
    conf = PduConfig(
        source_entity_id=ByteFieldGenerator.from_int(entity_bytes, source),
        dest_entity_id=ByteFieldGenerator.from_int(entity_bytes, dest),
        transaction_seq_num=ByteFieldGenerator.from_int(seq_bytes, seq),
        trans_mode=TransmissionMode.ACKNOWLEDGED if acked else TransmissionMode.UNACKNOWLEDGED,
        file_flag=LargeFileFlag.LARGE if large else LargeFileFlag.NORMAL,
        crc_flag=CrcFlag.WITH_CRC if crc else CrcFlag.NO_CRC,
    )
    raw = sp_file_data(conf, offset, data)
    header, body = cfdp.decode_pdu(raw)
    assert header.version == cfdp.CFDP_VERSION and header.file_data
    assert (header.source_entity, header.dest_entity, header.seq) == (source, dest, seq)
    assert (header.entity_id_length, header.seq_length) == (entity_bytes, seq_bytes)
    assert (header.large_file, header.crc, header.acknowledged) == (large, crc, acked)
    assert header.length + header.data_field_length == len(raw)
    assert body == cfdp.FileData(offset, data)


# -- damaged, incomplete and refused transfers --------------------------------------------------


@pytest.mark.parametrize("checksum", ["modular", "crc32c", "crc32"])
def test_a_corrupted_file_data_pdu_fails_the_checksum_and_nothing_is_staged(tmp_path, checksum):
    pdus = sent_by_cfdp_py(tmp_path, payload(1000), checksum=checksum)
    damaged = bytearray(pdus[2])
    damaged[-10] ^= 0x04  # a bit of the file data (no PDU CRC: only the file checksum sees it)
    pdus[2] = bytes(damaged)
    staging = tmp_path / "uploads"
    receiver = make_receiver(staging)
    feed(receiver, pdus)
    assert receiver.files_rejected == {"checksum": 1} and receiver.files_received == 0
    assert receiver.staged == {} and staged_files(staging) == []
    (rejected,) = events_named(receiver, "FILE_REJECTED")
    assert rejected.fields["reason"] == "checksum" and rejected.fields["name"] == "model.fm"


def test_null_checksum_accepts_what_the_file_mac_must_catch(tmp_path):
    """Checksum type 15 verifies nothing: the uploaded model's own MAC protects it."""
    data = payload(600)
    pdus = sent_by_cfdp_py(tmp_path, data, checksum="null")
    damaged = bytearray(pdus[1])
    damaged[-1] ^= 0xFF
    pdus[1] = bytes(damaged)
    receiver = make_receiver(tmp_path / "uploads")
    feed(receiver, pdus)
    assert receiver.files_received == 1
    assert (tmp_path / "uploads" / "model.fm").read_bytes() != data


def test_a_damaged_pdu_with_a_crc_is_malformed_and_its_file_then_incomplete(tmp_path):
    pdus = sent_by_cfdp_py(tmp_path, payload(1000), pdu_crc=True)
    damaged = bytearray(pdus[2])
    damaged[20] ^= 0x80
    receiver = make_receiver(tmp_path / "uploads")
    feed(receiver, pdus[:2])
    with pytest.raises(CfdpError, match="CRC") as caught:
        receiver.handle(bytes(damaged))
    assert caught.value.code == FailureCode.MALFORMED
    feed(receiver, pdus[3:])
    assert receiver.pdus_rejected == {"malformed": 1}
    assert receiver.files_rejected == {"missing_data": 1}
    assert staged_files(tmp_path / "uploads") == []
    assert_counters_add_up(receiver)


def test_a_missing_segment_rejects_the_file_at_eof(tmp_path):
    pdus = sent_by_cfdp_py(tmp_path, payload(1000))
    receiver = make_receiver(tmp_path / "uploads")
    feed(receiver, pdus[:2] + pdus[3:])
    assert receiver.files_rejected == {"missing_data": 1}
    (rejected,) = events_named(receiver, "FILE_REJECTED")
    assert "256 of 1000 bytes" in rejected.fields["detail"]
    assert staged_files(tmp_path / "uploads") == [] and receiver.open_transactions == 0


def test_a_missing_last_segment_rejects_the_file(tmp_path):
    pdus = sent_by_cfdp_py(tmp_path, payload(1000))
    receiver = make_receiver(tmp_path / "uploads")
    feed(receiver, pdus[:-2] + pdus[-1:])
    assert receiver.files_rejected == {"missing_data": 1}


def test_an_oversize_file_is_refused_at_metadata_and_never_buffered(tmp_path):
    pdus = sent_by_cfdp_py(tmp_path, payload(3000))
    receiver = make_receiver(tmp_path / "uploads", max_file_bytes=2999)
    receiver.handle(pdus[0])
    assert receiver.files_rejected == {"too_large": 1}
    assert receiver.open_transactions == 0
    feed(receiver, pdus[1:])
    assert receiver.pdus_rejected == {"closed": len(pdus) - 1}  # stragglers, not buffered
    assert staged_files(tmp_path / "uploads") == []


def test_a_file_of_exactly_the_limit_is_accepted(tmp_path):
    data = payload(3000)
    receiver = make_receiver(tmp_path / "uploads", max_file_bytes=3000)
    feed(receiver, sent_by_cfdp_py(tmp_path, data))
    assert receiver.files_received == 1


def test_data_before_metadata_is_bounded_by_the_file_limit(tmp_path):
    conf = pdu_config()
    receiver = make_receiver(tmp_path / "uploads", max_file_bytes=1000)
    receiver.handle(sp_file_data(conf, 999, b"xy"))
    assert receiver.files_rejected == {"too_large": 1} and receiver.open_transactions == 0


@pytest.mark.parametrize(
    "name", ["../x", "/etc/passwd", ".hidden", "a/b", "..", "x" * 65, "a b", "tab\there", "ok\n"]
)
def test_bad_destination_names_are_rejected(tmp_path, name):
    staging = tmp_path / "uploads"
    receiver = make_receiver(staging)
    feed(receiver, sent_by_cfdp_py(tmp_path, payload(100), name))
    assert receiver.files_rejected == {"bad_name": 1} and receiver.staged == {}
    assert staged_files(staging) == [] and not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", ["model.fm", "A-b_c.1", "x" * 64, "a..b", "_", "-"])
def test_good_destination_names(name):
    assert cfdp.is_valid_name(name.encode())


def test_idle_transactions_expire_on_the_injected_clock(tmp_path):
    pdus = sent_by_cfdp_py(tmp_path, payload(1000))
    clock = FakeClock()
    receiver = make_receiver(tmp_path / "uploads", clock=clock)
    feed(receiver, pdus[:2])
    clock.now += 50
    receiver.handle(pdus[2])  # activity restarts the inactivity timer
    clock.now += INACTIVITY_S - 1
    receiver.poll()
    assert receiver.open_transactions == 1 and not receiver.files_rejected
    receiver.poll(clock.now + 1)
    assert receiver.files_rejected == {"timeout": 1} and receiver.open_transactions == 0
    (rejected,) = events_named(receiver, "FILE_REJECTED")
    assert rejected.fields["reason"] == "timeout"
    feed(receiver, pdus[3:])  # the rest arrives too late: ignored, nothing staged
    assert receiver.pdus_rejected == {"closed": len(pdus) - 3}
    assert staged_files(tmp_path / "uploads") == []


def test_a_new_upload_reusing_a_closed_transaction_id_starts_over(tmp_path):
    data = payload(500)
    pdus = sent_by_cfdp_py(tmp_path, data)
    receiver = make_receiver(tmp_path / "uploads")
    feed(receiver, pdus[:-2] + pdus[-1:])
    assert receiver.files_rejected == {"missing_data": 1}
    feed(receiver, pdus)
    assert receiver.files_received == 1
    assert (tmp_path / "uploads" / "model.fm").read_bytes() == data


def test_pdus_for_another_entity_are_ignored_and_counted(tmp_path):
    receiver = make_receiver(tmp_path / "uploads", entity_id=BOARD + 1)
    pdus = sent_by_cfdp_py(tmp_path, payload(100))
    feed(receiver, pdus)
    assert receiver.pdus_rejected == {"not_for_us": len(pdus)}
    assert receiver.open_transactions == 0 and not receiver.files_rejected


def test_class_2_is_refused_and_other_directives_ignored(tmp_path):
    receiver = make_receiver(tmp_path / "uploads")
    feed(receiver, sp_transfer(pdu_config(acked=True), payload(150)))
    assert receiver.pdus_rejected == {"class2": 4}
    assert receiver.files_rejected == {"class2": 1} and receiver.open_transactions == 0
    prompt = bytes(PromptPdu(pdu_config(), ResponseRequired.KEEP_ALIVE).pack())
    finished = FinishedParams(ConditionCode.NO_ERROR, DeliveryCode.DATA_COMPLETE, FileStatus(0))
    receiver.handle(prompt)
    receiver.handle(bytes(FinishedPdu(pdu_config(), finished).pack()))
    assert receiver.pdus_rejected["unsupported"] == 2
    assert_counters_add_up(receiver)


def test_too_many_open_transactions_refuse_new_ones(tmp_path):
    receiver = make_receiver(tmp_path / "uploads", max_transactions=2)
    transfers = [
        sp_transfer(pdu_config(seq), payload(150, seq), name=f"f{seq}") for seq in (1, 2, 3)
    ]
    feed(receiver, [t[0] for t in transfers])
    assert receiver.open_transactions == 2
    assert receiver.files_rejected == {"busy": 1} and receiver.pdus_rejected == {"busy": 1}
    for transfer in transfers[:2]:
        feed(receiver, transfer[1:])
    assert receiver.files_received == 2 and sorted(receiver.staged) == ["f1", "f2"]


@pytest.mark.parametrize(
    ("pdus", "reason"),
    [
        (
            lambda c, d: [sp_metadata(c, 150, checksum=ChecksumType.CRC_32_PROXIMITY_1)],
            "unsupported_checksum",
        ),
        (lambda c, d: [sp_metadata(c, 150), sp_metadata(c, 151)], "metadata_mismatch"),
        (lambda c, d: [sp_file_data(c, 0, d), sp_metadata(c, 100)], "beyond_size"),
        (lambda c, d: [sp_metadata(c, 100), sp_file_data(c, 0, d)], "beyond_size"),
        (
            lambda c, d: [sp_metadata(c, 150), sp_file_data(c, 0, d), sp_eof(c, d, 151)],
            "size_mismatch",
        ),
        (lambda c, d: [sp_file_data(c, 0, d), sp_eof(c, d)], "no_metadata"),
        (
            lambda c, d: [
                sp_metadata(c, 150),
                sp_eof(
                    c,
                    d,
                    condition_code=ConditionCode.CANCEL_REQUEST_RECEIVED,
                    fault_location=EntityIdTlv(GROUND.to_bytes(2, "big")),
                ),
            ],
            "cancelled",
        ),
    ],
)
def test_transactions_fail_with_their_reason(tmp_path, pdus, reason):
    receiver = make_receiver(tmp_path / "uploads")
    feed(receiver, pdus(pdu_config(), payload(150)))
    assert receiver.files_rejected == {reason: 1}
    assert staged_files(tmp_path / "uploads") == [] and receiver.open_transactions == 0


def test_scattered_fragments_are_bounded(tmp_path):
    conf = pdu_config()
    receiver = make_receiver(tmp_path / "uploads")
    receiver.handle(sp_metadata(conf, 4 * cfdp.MAX_FRAGMENTS + 4))
    feed(receiver, [sp_file_data(conf, 4 * i, b"x") for i in range(cfdp.MAX_FRAGMENTS)])
    assert receiver.open_transactions == 1
    receiver.handle(sp_file_data(conf, 4 * cfdp.MAX_FRAGMENTS, b"x"))
    assert receiver.files_rejected == {"fragmented": 1} and receiver.open_transactions == 0


def test_a_failed_write_rejects_the_file(tmp_path):
    blocker = tmp_path / "uploads"
    blocker.write_bytes(b"a file where the staging directory should be")
    receiver = make_receiver(blocker)
    feed(receiver, sent_by_cfdp_py(tmp_path, payload(10)))
    assert receiver.files_rejected == {"storage": 1} and receiver.staged == {}


# -- the decoders: specific errors, then fuzzing ------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda p: p[:3], "shorter than a header"),
        (lambda p: bytes([p[0] & 0x1F]) + p[1:], "version"),  # CFDP version 1 (727.0-B-4)
        (lambda p: p + b"\0", "header says"),
        (lambda p: p[:-1], "header says"),
        (lambda p: p[:10] + b"\x0b" + p[11:], "unknown file directive"),
        (lambda p: p[:1] + b"\0\0" + p[3:10], "without a directive code"),
        (lambda p: bytes([p[0] | 0x02]) + b"\0\1" + p[3:11], "cannot hold a CRC"),
    ],
)
def test_malformed_pdus_raise_cfdp_error(tmp_path, mutate, match):
    metadata = sent_by_cfdp_py(tmp_path, payload(10))[0]
    receiver = make_receiver(tmp_path / "uploads")
    with pytest.raises(CfdpError, match=match) as caught:
        receiver.handle(mutate(metadata))
    assert caught.value.code == FailureCode.MALFORMED
    assert receiver.pdus_rejected == {"malformed": 1}


def test_a_short_body_behind_a_consistent_header_is_malformed(tmp_path):
    metadata = bytearray(sent_by_cfdp_py(tmp_path, payload(10))[0])
    metadata[2] -= 5  # data field length: the destination name LV now overruns the PDU
    with pytest.raises(CfdpError, match="Metadata PDU: needs"):
        cfdp.decode_pdu(bytes(metadata[:-5]))


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("modular", 0), ("crc32c", 2), ("crc32", 3)],
)
def test_file_checksums_match_their_definitions(kind, expected):
    data = b"123456789"
    assert (
        cfdp.file_checksum(expected, data)
        == {
            0: 0x31323334 + 0x35363738 + 0x39000000,
            2: crc32c(data),
            3: 0xCBF43926,
        }[expected]
    )


def _valid_pdus() -> list[bytes]:
    with tempfile.TemporaryDirectory() as ground:
        source = Path(ground) / "f.bin"
        source.write_bytes(payload(700))
        plain = file_pdus(source, "model.fm", GROUND, BOARD, 3, segment_size=300)
        crc = file_pdus(source, "model.fm", GROUND, BOARD, 4, "modular", 300, pdu_crc=True)
    large = sp_transfer(pdu_config(5, large=True), payload(250))
    return plain + crc + large


VALID_PDUS = _valid_pdus()


def _fuzz(pdus: list[bytes]) -> cfdp.CfdpReceiver:
    """Feed ``pdus``; only CfdpError may escape, and each one is counted."""
    with tempfile.TemporaryDirectory() as staging:
        receiver = make_receiver(Path(staging), max_transactions=3, max_file_bytes=4096)
        raised = 0
        for pdu in pdus:
            try:
                receiver.handle(pdu)
            except CfdpError as error:
                assert error.code == FailureCode.MALFORMED
                raised += 1
        receiver.poll(receiver._clock() + INACTIVITY_S)
        assert receiver.pdus == len(pdus)
        assert receiver.pdus_rejected["malformed"] == raised
        assert_counters_add_up(receiver)
        assert receiver.open_transactions == 0
        assert all(cfdp.is_valid_name(name.encode()) for name in receiver.staged)
        assert sorted(receiver.staged) == staged_files(Path(staging))
        assert receiver.files_received == len(events_named(receiver, "FILE_RECEIVED"))
        rejected = sum(receiver.files_rejected.values())
        assert rejected == len(events_named(receiver, "FILE_REJECTED"))
    return receiver


@pytest.mark.timeout(120)
@given(st.lists(st.binary(max_size=80), max_size=20))
def test_fuzz_random_bytes(pdus):
    _fuzz(pdus)


def _pdu(first: int, width: int, seq: bytes, dest: int, body: bytes) -> bytes:
    """A PDU whose header is consistent (version, lengths, CRC), whatever its body."""
    crc = first & 0x02
    length = len(body) + (2 if crc else 0)
    ids = GROUND.to_bytes(width, "big") + seq + dest.to_bytes(width, "big")
    fourth = (width - 1) << 4 | (len(seq) - 1)
    raw = bytes([first, length >> 8, length & 0xFF, fourth]) + ids + body
    return raw + crc16_ccitt_false(raw).to_bytes(2, "big") if crc else raw


@pytest.mark.timeout(120)
@given(
    st.lists(
        st.builds(
            _pdu,
            st.one_of(
                st.integers(0, 0x1F),  # any type, direction, mode, CRC and large-file flag
                st.sampled_from([0x04, 0x05, 0x06, 0x07, 0x14, 0x15, 0x16, 0x17]),  # class 1
            ).map(lambda flags: cfdp.CFDP_VERSION << 5 | flags),
            st.sampled_from([1, 2, 8]),
            st.binary(min_size=1, max_size=2),
            st.sampled_from([BOARD, BOARD, BOARD, 9]),
            st.one_of(
                st.binary(max_size=40),
                st.tuples(st.sampled_from([4, 5, 7, 8, 9, 12]), st.binary(max_size=40)).map(
                    lambda code_rest: bytes([code_rest[0]]) + code_rest[1]
                ),
            ),
        ),
        max_size=12,
    )
)
def test_fuzz_valid_headers_with_random_bodies(pdus):
    _fuzz(pdus)


@pytest.mark.timeout(120)
@given(st.data())
def test_fuzz_truncations_and_bit_flips_of_valid_pdus(data):
    pdus = list(VALID_PDUS)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(pdus) - 1))
        pdu = bytearray(pdus[i])
        if data.draw(st.booleans()):
            pdu = pdu[: data.draw(st.integers(0, len(pdu)))]
        elif pdu:
            for _ in range(data.draw(st.integers(1, 3))):
                bit = data.draw(st.integers(0, 8 * len(pdu) - 1))
                pdu[bit // 8] ^= 1 << (bit % 8)
        pdus[i] = bytes(pdu)
    if data.draw(st.booleans()):
        data.draw(st.randoms()).shuffle(pdus)
    _fuzz(pdus)
