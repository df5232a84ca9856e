"""COBS framing for the serial link: one space packet per frame, frames ended by a 0x00 byte.

A UART has no packet boundaries. Consistent Overhead Byte Stuffing removes every 0x00 from the
packet, so a 0x00 can end each frame and a receiver that joins mid-stream (or after line noise)
resynchronises at the next delimiter, losing at most the frame it was in.

The ``cobs`` package is an optional extra (``flight[serial]``): it is imported when a framer is
built, never at module level, so a board without a serial link does not need it.
"""

from __future__ import annotations

from types import ModuleType

from flight.errors import ConfigError

__all__ = [
    "MAX_FRAME_BYTES",
    "MAX_PACKET_BYTES",
    "CobsDeframer",
    "cobs_frame",
    "import_serial_extra",
]

#: The longest CCSDS space packet: 6 header bytes + 65536 data bytes.
MAX_PACKET_BYTES = 6 + 65536
#: The longest COBS encoding of such a packet (one code byte per 254 data bytes, plus one).
MAX_FRAME_BYTES = MAX_PACKET_BYTES + MAX_PACKET_BYTES // 254 + 1

DELIMITER = b"\x00"


def import_serial_extra(name: str) -> ModuleType:
    """Import ``serial`` or ``cobs`` (the serial link's optional extra), or say how to get it."""
    try:
        if name == "cobs":
            from cobs import cobs

            return cobs
        if name == "serial":
            import serial

            return serial
    except ImportError as exc:
        raise ConfigError(
            f"the serial link needs the {name!r} package: install the serial extra "
            "(pip install 'flight[serial]')"
        ) from exc
    raise ValueError(f"not a package of the serial extra: {name!r}")


def cobs_frame(packet: bytes) -> bytes:
    """One frame on the wire: the COBS encoding of ``packet`` followed by the 0x00 delimiter."""
    return import_serial_extra("cobs").encode(packet) + DELIMITER


class CobsDeframer:
    """Cuts a byte stream into COBS frames and decodes them; bad frames are counted, never raised.

    The buffer is bounded: a peer that never sends 0x00 makes the deframer discard what it has
    (one framing error) and skip to the next delimiter, instead of growing memory forever.
    Empty frames (two delimiters in a row) are ignored: senders use a leading 0x00 to flush noise.
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < 2:
            raise ValueError(f"max_frame_bytes must be >= 2, got {max_frame_bytes}")
        self._cobs = import_serial_extra("cobs")
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._skipping = False  # an over-long frame was dropped: skip to the next delimiter
        self.framing_errors = 0
        self.frames = 0

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for a delimiter (always <= max_frame_bytes)."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[bytes]:
        """Decoded packets of every frame that ``chunk`` completes, in order."""
        packets: list[bytes] = []
        start = 0
        while True:
            end = chunk.find(DELIMITER, start)
            if end < 0:
                self._hold(chunk, start, len(chunk))
                return packets
            self._hold(chunk, start, end)
            self._complete(packets)  # nothing to complete if an over-long frame ends here
            self._skipping = False
            self._buffer.clear()
            start = end + 1

    def _hold(self, chunk: bytes, start: int, end: int) -> None:
        if self._skipping or start == end:
            return
        if len(self._buffer) + (end - start) > self.max_frame_bytes:
            self.framing_errors += 1
            self._buffer.clear()
            self._skipping = True
            return
        self._buffer += chunk[start:end]

    def _complete(self, packets: list[bytes]) -> None:
        if not self._buffer:
            return
        try:
            packet = self._cobs.decode(bytes(self._buffer))
        except self._cobs.DecodeError:
            self.framing_errors += 1
            return
        if not packet:
            self.framing_errors += 1
            return
        self.frames += 1
        packets.append(packet)
