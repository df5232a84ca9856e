"""The board end of file uploads: a CFDP class 1 (unacknowledged) receiver, CCSDS 727.0-B-5.

Written by hand with the standard library: the ground's CFDP implementations are not flown.
A transaction (keyed by source entity and transaction sequence number) is a Metadata PDU, File
Data PDUs in any order and any number of times, and an EOF PDU. At EOF the file must be whole
(class 1 has no retransmission: a gap rejects it) and match its checksum; then it is written
atomically into the staging directory under its destination name. Everything is bounded: the
open transactions, the bytes per file (a declared size over the limit is refused at Metadata,
before any data is buffered) and the fragments per file; idle transactions expire in
:meth:`CfdpReceiver.poll`. The checksum is not authentication: the uploaded model carries its
own MAC, checked before it is used.

A PDU that cannot be parsed raises :class:`flight.errors.CfdpError` (``FailureCode.MALFORMED``),
counted; one that parses but is not for this receiver (another entity, class 2, a directive a
class 1 receiver does not take) is counted and ignored. A transaction that fails is a
FILE_REJECTED event with its reason, never an exception.
"""

from __future__ import annotations

import bisect
import re
import time
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import numpy as np

from flight import events
from flight.atomic import write_atomically
from flight.crc import crc16_ccitt_false, crc32c
from flight.errors import CfdpError
from flight.link.codes import FailureCode

__all__ = [
    "CFDP_VERSION",
    "CfdpReceiver",
    "ChecksumType",
    "Directive",
    "Eof",
    "FileData",
    "Metadata",
    "OtherDirective",
    "PduHeader",
    "decode_body",
    "decode_header",
    "decode_pdu",
    "file_checksum",
    "is_valid_name",
]

#: The version field of CCSDS 727.0-B-5 PDUs ("CFDP version 2", encoded 0b001).
CFDP_VERSION = 1
_FIXED_HEADER = 4
_CRC_BYTES = 2

#: A destination name: a bare file name, never a path, never hidden (first character not ".").
_NAME = re.compile(rb"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")

#: Disjoint byte ranges a file may arrive in before it is refused (a flood of tiny scattered
#: segments would otherwise cost more memory in bookkeeping than the file itself).
MAX_FRAGMENTS = 1024
#: Closed transactions remembered so that their stray File Data and EOF PDUs are ignored.
_CLOSED_MEMORY = 64


class Directive(IntEnum):
    """File directive codes (727.0-B-5 table 5-4)."""

    EOF = 0x04
    FINISHED = 0x05
    ACK = 0x06
    METADATA = 0x07
    NAK = 0x08
    PROMPT = 0x09
    KEEP_ALIVE = 0x0C


class ChecksumType(IntEnum):
    """Checksum type of the Metadata PDU (SANA checksum identifiers)."""

    MODULAR = 0
    PROXIMITY1_CRC32 = 1
    CRC32C = 2
    CRC32 = 3
    NULL = 15


_DIRECTIVE_CODES = frozenset(int(code) for code in Directive)
_METADATA_CODE = bytes([Directive.METADATA])

#: The checksum types this receiver verifies (proximity-1 is not one).
SUPPORTED_CHECKSUMS = frozenset(
    {ChecksumType.MODULAR, ChecksumType.CRC32C, ChecksumType.CRC32, ChecksumType.NULL}
)


@dataclass(frozen=True)
class PduHeader:
    """The fixed PDU header (727.0-B-5 5.1) as decoded; ``length`` is its size in bytes."""

    version: int
    file_data: bool  #: PDU type: False for a file directive, True for file data
    towards_sender: bool  #: direction
    acknowledged: bool  #: transmission mode: True for class 2
    crc: bool  #: the PDU ends with a CRC-16 (verified by decode_header)
    large_file: bool  #: file sizes and offsets are 8 bytes instead of 4
    data_field_length: int  #: as sent, the CRC included
    segmentation_control: bool
    segment_metadata: bool
    entity_id_length: int
    seq_length: int
    source_entity: int
    seq: int
    dest_entity: int
    length: int

    @property
    def fss(self) -> int:
        """Size in bytes of a file size or offset field."""
        return 8 if self.large_file else 4


@dataclass(frozen=True)
class Metadata:
    closure_requested: bool
    checksum_type: int
    file_size: int
    source_name: bytes
    dest_name: bytes
    options: tuple[tuple[int, bytes], ...]  #: (TLV type, value); none is acted on


@dataclass(frozen=True)
class FileData:
    offset: int
    data: bytes
    record_continuation: int | None = None  #: with segment metadata only
    segment_metadata: bytes | None = None


@dataclass(frozen=True)
class Eof:
    condition_code: int
    checksum: int
    file_size: int
    fault_location: bytes | None = None  #: the entity ID TLV's value, when present


@dataclass(frozen=True)
class OtherDirective:
    """A directive a class 1 receiver does not take (Finished, ACK, NAK, Prompt, Keep Alive)."""

    code: int


Pdu = Metadata | FileData | Eof | OtherDirective


def _malformed(detail: str) -> CfdpError:
    return CfdpError(FailureCode.MALFORMED, detail)


class _Reader:
    """Bounds-checked big-endian reads over a PDU's data field: a short read is malformed."""

    def __init__(self, data: bytes, what: str, position: int = 0) -> None:
        self._data = data
        self._pos = position
        self._what = what

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def take(self, n: int) -> bytes:
        if n > self.remaining:
            raise _malformed(f"{self._what}: needs {n} more bytes, {self.remaining} left")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def lv(self) -> bytes:
        return self.take(self.uint(1))

    def tlv(self) -> tuple[int, bytes]:
        kind = self.uint(1)
        return kind, self.lv()

    def rest(self) -> bytes:
        return self.take(self.remaining)

    def end(self) -> None:
        if self.remaining:
            raise _malformed(f"{self._what}: {self.remaining} trailing bytes")


def decode_header(pdu: bytes) -> tuple[PduHeader, bytes]:
    """Decode and check a PDU's header; returns it and the data field without the CRC.

    The PDU must be exactly the header plus its declared data field (it is the whole payload of
    a space packet), and its CRC must verify when the CRC flag is set.
    """
    pdu = bytes(pdu)
    if len(pdu) < _FIXED_HEADER:
        raise _malformed(f"PDU of {len(pdu)} bytes is shorter than a header")
    first, data_field_length, fourth = pdu[0], int.from_bytes(pdu[1:3], "big"), pdu[3]
    version = first >> 5
    if version != CFDP_VERSION:
        raise _malformed(f"CFDP version field {version}, expected {CFDP_VERSION} (727.0-B-5)")
    entity_id_length = ((fourth >> 4) & 0b111) + 1
    seq_length = (fourth & 0b111) + 1
    length = _FIXED_HEADER + 2 * entity_id_length + seq_length
    if len(pdu) != length + data_field_length:
        raise _malformed(
            f"PDU of {len(pdu)} bytes, header says {length} + {data_field_length} data field"
        )
    crc = bool(first & 0b10)
    data = pdu[length:]
    if crc:
        if data_field_length < _CRC_BYTES:
            raise _malformed("CRC flag set but the data field cannot hold a CRC")
        expected = crc16_ccitt_false(pdu[:-_CRC_BYTES])
        received = int.from_bytes(pdu[-_CRC_BYTES:], "big")
        if expected != received:
            raise _malformed(f"PDU CRC {received:#06x}, computed {expected:#06x}")
        data = data[:-_CRC_BYTES]
    position = _FIXED_HEADER
    source = int.from_bytes(pdu[position : position + entity_id_length], "big")
    position += entity_id_length
    seq = int.from_bytes(pdu[position : position + seq_length], "big")
    position += seq_length
    dest = int.from_bytes(pdu[position : position + entity_id_length], "big")
    header = PduHeader(
        version=version,
        file_data=bool(first & 0b1_0000),
        towards_sender=bool(first & 0b1000),
        acknowledged=not first & 0b100,
        crc=crc,
        large_file=bool(first & 0b1),
        data_field_length=data_field_length,
        segmentation_control=bool(fourth & 0b1000_0000),
        segment_metadata=bool(fourth & 0b1000),
        entity_id_length=entity_id_length,
        seq_length=seq_length,
        source_entity=source,
        seq=seq,
        dest_entity=dest,
        length=length,
    )
    return header, data


def decode_body(header: PduHeader, data: bytes) -> Pdu:
    """Decode the data field (CRC removed) of a PDU whose header is ``header``."""
    if header.file_data:
        return _decode_file_data(header, data)
    if not data:
        raise _malformed("file directive PDU without a directive code")
    code = data[0]
    if code == Directive.METADATA:
        return _decode_metadata(header, _Reader(data, "Metadata PDU", 1))
    if code == Directive.EOF:
        return _decode_eof(header, _Reader(data, "EOF PDU", 1))
    if code in _DIRECTIVE_CODES:
        return OtherDirective(code)
    raise _malformed(f"unknown file directive code {code:#04x}")


def decode_pdu(pdu: bytes) -> tuple[PduHeader, Pdu]:
    """Decode a whole PDU: :func:`decode_header` then :func:`decode_body`."""
    header, data = decode_header(pdu)
    return header, decode_body(header, data)


def _decode_metadata(header: PduHeader, reader: _Reader) -> Metadata:
    flags = reader.uint(1)
    file_size = reader.uint(header.fss)
    source_name = reader.lv()
    dest_name = reader.lv()
    options = []
    while reader.remaining > 0:
        options.append(reader.tlv())
    return Metadata(
        closure_requested=bool(flags & 0b0100_0000),
        checksum_type=flags & 0b1111,
        file_size=file_size,
        source_name=source_name,
        dest_name=dest_name,
        options=tuple(options),
    )


def _decode_eof(header: PduHeader, reader: _Reader) -> Eof:
    condition_code = reader.uint(1) >> 4
    checksum = reader.uint(4)
    file_size = reader.uint(header.fss)
    fault_location = None
    if reader.remaining > 0:
        kind, fault_location = reader.tlv()
        if condition_code == 0 or kind != 0x06:  # entity ID TLV, only with an error condition
            raise _malformed(f"EOF PDU: unexpected TLV {kind:#04x} (condition {condition_code})")
        reader.end()
    return Eof(condition_code, checksum, file_size, fault_location)


def _decode_file_data(header: PduHeader, data: bytes) -> FileData:
    reader = _Reader(data, "File Data PDU")
    continuation = segment_metadata = None
    if header.segment_metadata:
        first = reader.uint(1)
        continuation = first >> 6
        segment_metadata = reader.take(first & 0b11_1111)
    offset = reader.uint(header.fss)
    return FileData(offset, reader.rest(), continuation, segment_metadata)


def _modular_checksum(data: bytes) -> int:
    """The CFDP modular checksum: the sum, modulo 2**32, of the file's big-endian 32-bit words
    (aligned from the file's start, the last one padded with zeros)."""
    padded = data + bytes(-len(data) % 4)
    words = np.frombuffer(padded, dtype=">u4")
    return int(words.sum(dtype=np.uint64)) & 0xFFFF_FFFF


def file_checksum(checksum_type: int, data: bytes) -> int:
    """The file checksum CFDP sends in the EOF PDU, for a supported ``checksum_type``."""
    if checksum_type == ChecksumType.MODULAR:
        return _modular_checksum(data)
    if checksum_type == ChecksumType.CRC32C:
        return crc32c(data)
    if checksum_type == ChecksumType.CRC32:
        return zlib.crc32(data)
    if checksum_type == ChecksumType.NULL:
        return 0
    raise ValueError(f"checksum type {checksum_type} is not supported")


def is_valid_name(name: bytes) -> bool:
    """A destination name the board stages under: a bare, visible file name of 1-64 bytes."""
    return _NAME.fullmatch(name) is not None


@dataclass
class _Transaction:
    source: int
    seq: int
    last_activity: float
    metadata: Metadata | None = None
    data: bytearray = field(default_factory=bytearray)
    starts: list[int] = field(default_factory=list)  #: disjoint received ranges [start, end)
    ends: list[int] = field(default_factory=list)

    @property
    def received_end(self) -> int:
        return self.ends[-1] if self.ends else 0

    @property
    def received_bytes(self) -> int:
        return sum(self.ends) - sum(self.starts)

    def add(self, offset: int, chunk: bytes) -> None:
        end = offset + len(chunk)
        if len(self.data) < offset:
            self.data.extend(bytes(offset - len(self.data)))
        self.data[offset:end] = chunk
        lo = bisect.bisect_left(self.ends, offset)  # first range ending at or after offset
        hi = bisect.bisect_right(self.starts, end)  # past the last range starting by end
        if lo < hi:
            offset, end = min(offset, self.starts[lo]), max(end, self.ends[hi - 1])
        self.starts[lo:hi] = [offset]
        self.ends[lo:hi] = [end]

    def complete(self, size: int) -> bool:
        if size == 0:
            return not self.starts
        return self.starts == [0] and self.ends == [size]


class _Rejected(Exception):
    """A transaction fails (internal: turned into FILE_REJECTED by the receiver)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class CfdpReceiver:
    """Class 1 destination entity ``entity_id``: assembles files and stages them.

    Decisions where the standard leaves room: File Data may precede its Metadata (bounded by
    ``max_file_bytes`` until the size is known); the EOF is the end (no check-limit wait: data
    still missing then rejects the file); the EOF size must equal the Metadata size; closure
    requests get no Finished PDU (this receiver sends nothing); a class 2 Metadata PDU is
    refused with FILE_REJECTED. Stray File Data and EOF of a recently closed transaction are
    ignored ("closed"); a new Metadata PDU reopens its transaction ID (a ground that restarts
    its sequence numbers can upload again).

    ``staged`` maps each destination name received whole to its file under ``staging_dir``
    (a later file of the same name replaces it). Counters: ``pdus`` handed to :meth:`handle`,
    ``pdus_accepted``, ``pdus_rejected`` by reason (their sum and ``pdus_accepted`` add up to
    ``pdus``), ``files_received``, ``files_rejected`` by reason.
    """

    def __init__(
        self,
        staging_dir: str | Path,
        entity_id: int,
        max_file_bytes: int,
        max_transactions: int,
        log: events.EventLog,
        clock: Callable[[], float] = time.monotonic,
        inactivity_s: float = 60.0,
    ) -> None:
        if entity_id < 0 or max_file_bytes < 0 or max_transactions < 1 or inactivity_s <= 0:
            raise ValueError(
                f"CfdpReceiver: entity_id {entity_id}, max_file_bytes {max_file_bytes}, "
                f"max_transactions {max_transactions}, inactivity_s {inactivity_s}"
            )
        self.staging_dir = Path(staging_dir)
        self.entity_id = entity_id
        self.max_file_bytes = max_file_bytes
        self.max_transactions = max_transactions
        self.inactivity_s = inactivity_s
        self._log = log
        self._clock = clock
        self._open: dict[tuple[int, int], _Transaction] = {}
        self._closed: OrderedDict[tuple[int, int], None] = OrderedDict()
        self.staged: dict[str, Path] = {}
        self.pdus = 0
        self.pdus_accepted = 0
        self.pdus_rejected: Counter[str] = Counter()
        self.files_received = 0
        self.files_rejected: Counter[str] = Counter()

    @property
    def open_transactions(self) -> int:
        return len(self._open)

    def counters(self) -> dict[str, object]:
        return {
            "pdus": self.pdus,
            "pdus_accepted": self.pdus_accepted,
            "pdus_rejected": dict(self.pdus_rejected),
            "files_received": self.files_received,
            "files_rejected": dict(self.files_rejected),
            "open_transactions": len(self._open),
        }

    def handle(self, pdu: bytes) -> None:
        """Take one PDU. Raises CfdpError (MALFORMED) for a PDU that cannot be parsed."""
        self.pdus += 1
        try:
            header, data = decode_header(pdu)
            reason = self._refusal(header)
            if reason is None:
                body = decode_body(header, data)
        except CfdpError:
            self.pdus_rejected["malformed"] += 1
            raise
        if reason is None:
            reason = self._dispatch(header, body)
        elif reason == "class2" and not header.file_data and data[:1] == _METADATA_CODE:
            key = (header.source_entity, header.seq)
            self._file_rejected(key, b"", reason, "class 2 (acknowledged) transfers are refused")
        if reason is None:
            self.pdus_accepted += 1
        else:
            self.pdus_rejected[reason] += 1

    def poll(self, now: float | None = None) -> None:
        """Reject the transactions idle for ``inactivity_s`` (class 1 has no other way to learn
        that the rest of a file is not coming)."""
        now = self._clock() if now is None else now
        for key, transaction in list(self._open.items()):
            idle = now - transaction.last_activity
            if idle >= self.inactivity_s:
                self._reject(key, "timeout", f"no PDU for {idle:.1f} s")

    # -- policy ---------------------------------------------------------------------------------

    def _refusal(self, header: PduHeader) -> str | None:
        if header.dest_entity != self.entity_id:
            return "not_for_us"
        if header.towards_sender:
            return "unsupported"
        if header.acknowledged:
            return "class2"
        return None

    def _dispatch(self, header: PduHeader, body: Pdu) -> str | None:
        key = (header.source_entity, header.seq)
        if isinstance(body, OtherDirective):
            return "unsupported"
        transaction = self._open.get(key)
        if transaction is None:
            if key in self._closed and not isinstance(body, Metadata):
                return "closed"  # a straggler of a finished transaction
            if len(self._open) >= self.max_transactions:
                if isinstance(body, Metadata):
                    self._file_rejected(key, body.dest_name, "busy", "too many open transfers")
                return "busy"
            self._closed.pop(key, None)
            transaction = self._open[key] = _Transaction(*key, last_activity=self._clock())
        transaction.last_activity = self._clock()
        try:
            if isinstance(body, Metadata):
                self._on_metadata(transaction, body)
            elif isinstance(body, FileData):
                self._on_file_data(transaction, body)
            else:
                self._on_eof(key, transaction, body)
        except _Rejected as rejected:
            self._reject(key, rejected.reason, rejected.detail)
        return None

    def _on_metadata(self, transaction: _Transaction, metadata: Metadata) -> None:
        if transaction.metadata is not None:
            if metadata != transaction.metadata:
                raise _Rejected("metadata_mismatch", "a second, different Metadata PDU")
            return
        transaction.metadata = metadata
        if not is_valid_name(metadata.dest_name):
            raise _Rejected("bad_name", f"destination name {metadata.dest_name[:80]!r}")
        if metadata.checksum_type not in SUPPORTED_CHECKSUMS:
            raise _Rejected("unsupported_checksum", f"checksum type {metadata.checksum_type}")
        if metadata.file_size > self.max_file_bytes:
            raise _Rejected(
                "too_large", f"{metadata.file_size} bytes > limit {self.max_file_bytes}"
            )
        if transaction.received_end > metadata.file_size:
            raise _Rejected(
                "beyond_size", f"data up to {transaction.received_end} > {metadata.file_size}"
            )

    def _on_file_data(self, transaction: _Transaction, file_data: FileData) -> None:
        end = file_data.offset + len(file_data.data)
        limit = self.max_file_bytes
        if transaction.metadata is not None:
            limit = transaction.metadata.file_size
            if end > limit:
                raise _Rejected("beyond_size", f"data up to {end} > file size {limit}")
        elif end > limit:
            raise _Rejected("too_large", f"data up to {end} > limit {limit}")
        if not file_data.data:
            return
        transaction.add(file_data.offset, file_data.data)
        if len(transaction.starts) > MAX_FRAGMENTS:
            raise _Rejected("fragmented", f"more than {MAX_FRAGMENTS} disjoint pieces")

    def _on_eof(self, key: tuple[int, int], transaction: _Transaction, eof: Eof) -> None:
        metadata = transaction.metadata
        if eof.condition_code != 0:
            raise _Rejected("cancelled", f"EOF condition code {eof.condition_code}")
        if metadata is None:
            raise _Rejected("no_metadata", "EOF before any Metadata PDU")
        if eof.file_size != metadata.file_size:
            raise _Rejected(
                "size_mismatch", f"EOF size {eof.file_size}, Metadata size {metadata.file_size}"
            )
        if not transaction.complete(eof.file_size):
            missing = eof.file_size - transaction.received_bytes
            raise _Rejected("missing_data", f"{missing} of {eof.file_size} bytes never arrived")
        data = bytes(transaction.data)
        if metadata.checksum_type != ChecksumType.NULL:
            computed = file_checksum(metadata.checksum_type, data)
            if computed != eof.checksum:
                raise _Rejected(
                    "checksum",
                    f"{ChecksumType(metadata.checksum_type).name} {eof.checksum:#010x}, "
                    f"computed {computed:#010x}",
                )
        name = metadata.dest_name.decode("ascii")
        path = self.staging_dir / name
        try:
            self.staging_dir.mkdir(parents=True, exist_ok=True)
            write_atomically(path, data)
        except OSError as exc:
            raise _Rejected("storage", f"{path}: {exc}") from exc
        self._close(key)
        self.staged[name] = path
        self.files_received += 1
        self._log.emit(
            events.FILE_RECEIVED,
            name=name,
            size=len(data),
            source=key[0],
            seq=key[1],
            checksum=ChecksumType(metadata.checksum_type).name,
        )

    # -- bookkeeping ----------------------------------------------------------------------------

    def _close(self, key: tuple[int, int]) -> _Transaction | None:
        transaction = self._open.pop(key, None)
        self._closed[key] = None
        self._closed.move_to_end(key)
        while len(self._closed) > _CLOSED_MEMORY:
            self._closed.popitem(last=False)
        return transaction

    def _reject(self, key: tuple[int, int], reason: str, detail: str) -> None:
        transaction = self._close(key)
        metadata = transaction.metadata if transaction is not None else None
        self._file_rejected(key, metadata.dest_name if metadata else b"", reason, detail)

    def _file_rejected(self, key: tuple[int, int], name: bytes, reason: str, detail: str) -> None:
        self.files_rejected[reason] += 1
        self._log.emit(
            events.FILE_REJECTED,
            reason=reason,
            name=name[:64].decode("ascii", "replace"),
            source=key[0],
            seq=key[1],
            detail=detail,
        )
