"""The ground end of a CFDP class 1 upload, done by cfdp-py (an independent implementation).

The board's receiver (:mod:`flight.link.cfdp`) is written by hand; sending through cfdp-py's own
source handler is what shows that a standard ground system can talk to it. This wrapper only
configures cfdp-py and collects the PDUs its state machine emits.
"""

from __future__ import annotations

import os
from pathlib import Path

from cfdppy import (
    CfdpState,
    CfdpUserBase,
    IndicationConfig,
    LocalEntityConfig,
    PutRequest,
    RemoteEntityConfig,
    RemoteEntityConfigTable,
)
from cfdppy.handler.source import SourceHandler
from cfdppy.mib import CheckTimerProvider, DefaultFaultHandlerBase
from spacepackets.cfdp import ChecksumType, TransmissionMode
from spacepackets.countdown import Countdown
from spacepackets.seqcount import ProvidesSeqCount
from spacepackets.util import ByteFieldGenerator

__all__ = ["CHECKSUMS", "file_pdus"]

#: Checksum names accepted by :func:`file_pdus` -> the CFDP checksum type cfdp-py computes.
CHECKSUMS = {
    "modular": ChecksumType.MODULAR,
    "crc32c": ChecksumType.CRC_32C,
    "crc32": ChecksumType.CRC_32,
    "null": ChecksumType.NULL_CHECKSUM,
}

#: Room for the PDU header, offset and CRC around a segment (cfdp-py derives the segment
#: length from the maximum packet length; the smaller of the two wins).
_PDU_OVERHEAD = 64


class _FixedSeq(ProvidesSeqCount):
    """Hands cfdp-py the one transaction sequence number the caller chose."""

    def __init__(self, seq: int, bits: int) -> None:
        self._seq = seq
        self._bits = bits

    @property
    def max_bit_width(self) -> int:
        return self._bits

    @max_bit_width.setter
    def max_bit_width(self, width: int) -> None:
        self._bits = width

    def get_and_increment(self) -> int:
        return self._seq


class _User(CfdpUserBase):
    """cfdp-py requires a user; a one-shot sender has nothing to tell it."""

    def _ignore(self, *_args: object) -> None:
        pass

    transaction_indication = eof_sent_indication = transaction_finished_indication = _ignore
    metadata_recv_indication = file_segment_recv_indication = report_indication = _ignore
    suspended_indication = resumed_indication = fault_indication = _ignore
    abandoned_indication = eof_recv_indication = _ignore


class _Faults(DefaultFaultHandlerBase):
    """Class 1 without closure raises no fault on the sending side; any would be a bug here."""

    def notice_of_suspension_cb(self, transaction_id, cond, progress) -> None:
        raise RuntimeError(f"cfdp-py suspended {transaction_id}: {cond!r}")

    def notice_of_cancellation_cb(self, transaction_id, cond, progress) -> None:
        raise RuntimeError(f"cfdp-py cancelled {transaction_id}: {cond!r}")

    def abandoned_cb(self, transaction_id, cond, progress) -> None:
        raise RuntimeError(f"cfdp-py abandoned {transaction_id}: {cond!r}")

    def ignore_cb(self, transaction_id, cond, progress) -> None:
        pass


class _NoCheckTimer(CheckTimerProvider):
    def provide_check_timer(self, local_entity_id, remote_entity_id, entity_type) -> Countdown:
        return Countdown.from_seconds(5.0)


def file_pdus(
    path: str | os.PathLike[str],
    dest_name: str,
    source_entity: int,
    dest_entity: int,
    seq: int,
    checksum: str = "crc32",
    segment_size: int = 1024,
    *,
    pdu_crc: bool = False,
    entity_bytes: int = 2,
    seq_bits: int = 16,
) -> list[bytes]:
    """The PDUs (Metadata, File Data..., EOF) cfdp-py's source handler emits to send ``path``
    to ``dest_name`` at entity ``dest_entity`` in class 1 (unacknowledged, no closure).

    ``checksum`` is a key of :data:`CHECKSUMS`; ``pdu_crc`` sets the PDU CRC flag;
    ``entity_bytes`` and ``seq_bits`` (8, 16 or 32) size the header's ID fields.
    """
    if checksum not in CHECKSUMS:
        raise ValueError(f"checksum {checksum!r}: expected one of {sorted(CHECKSUMS)}")
    source_id = ByteFieldGenerator.from_int(entity_bytes, source_entity)
    dest_id = ByteFieldGenerator.from_int(entity_bytes, dest_entity)
    remote = RemoteEntityConfig(
        entity_id=dest_id,
        max_file_segment_len=segment_size,
        max_packet_len=segment_size + _PDU_OVERHEAD,
        closure_requested=False,
        crc_on_transmission=pdu_crc,
        default_transmission_mode=TransmissionMode.UNACKNOWLEDGED,
        crc_type=CHECKSUMS[checksum],
    )
    handler = SourceHandler(
        cfg=LocalEntityConfig(source_id, IndicationConfig(), _Faults()),
        user=_User(),
        remote_cfg_table=RemoteEntityConfigTable([remote]),
        check_timer_provider=_NoCheckTimer(),
        seq_num_provider=_FixedSeq(seq, seq_bits),
    )
    request = PutRequest(
        destination_id=dest_id,
        source_file=Path(path),
        dest_file=Path(dest_name),
        trans_mode=TransmissionMode.UNACKNOWLEDGED,
        closure_requested=False,
    )
    if not handler.put_request(request):
        raise RuntimeError("cfdp-py's source handler refused the put request")
    pdus: list[bytes] = []
    while True:
        handler.state_machine()
        while (holder := handler.get_next_packet()) is not None:
            pdus.append(bytes(holder.pdu.pack()))  # PduHolder.pack() warns (deprecated)
        if handler.state == CfdpState.IDLE:
            return pdus
