"""The ground end of the space link: authenticated commands, their verification, telemetry,
file uploads. What ``hil link`` runs, and what the harness drives boards with.

It speaks only what a board speaks (:mod:`flight.link`): CCSDS packets over UDP, TCP or a
serial line; commands sealed with a key from the same key file the board reads; models sent as
CFDP class 1 (built by cfdp-py, an independent implementation) and activated by an
authenticated ``model_upload`` naming the file's MAC.

The telecommand sequence number must grow from one command to the next, across invocations
(the board keeps its anti-replay window across reboots), so the last one used is kept in a
small file next to the key file (``KEYS.toml.seq``) unless another is named.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flight import errors
from flight.link import catalog, packet
from flight.link.codes import Apid, Stage

__all__ = ["GroundStation", "Telemetry", "decode_telemetry", "read_tm_file"]

FINAL_STAGES = frozenset(
    {
        Stage.ACCEPTANCE_FAILURE,
        Stage.START_FAILURE,
        Stage.COMPLETION_SUCCESS,
        Stage.COMPLETION_FAILURE,
    }
)


@dataclass
class Telemetry:
    """One decoded telemetry packet."""

    apid: int
    name: str
    seq_count: int
    time: float
    values: dict[str, Any] = field(default_factory=dict)
    raw: bytes = b""

    def to_json(self) -> dict[str, Any]:
        values = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in self.values.items()}
        return {
            "apid": self.apid,
            "packet": self.name,
            "seq": self.seq_count,
            "time": round(self.time, 6),
            **values,
        }

    def describe(self) -> str:
        """One human-readable line."""
        from flight import events

        v = self.values
        if self.apid == Apid.EVENT:
            try:
                name = events.by_id(v["event_id"]).name
            except KeyError:
                name = f"event {v['event_id']}"
            count = f" x{v['count']}" if v["count"] != 1 else ""
            return f"EVENT {v['severity']} {name}{count} {v['args']}"
        if self.apid == Apid.VERIFICATION:
            code = "" if v["code"] == "NONE" else f" {v['code']}"
            detail = f" ({v['detail']})" if v["detail"] else ""
            opcode = catalog.COMMANDS.get(v["opcode"])
            what = opcode.name if opcode is not None else f"opcode {v['opcode']}"
            return f"TC {what} #{v['sequence']} {v['stage']}{code}{detail}"
        if self.apid == Apid.RESULT:
            return (
                f"RESULT {v['partition']} #{v['sequence']} {v['status']} top1={v['top1']} "
                f"crc={v['crc32c']:08x} ({len(v['output'])} B)"
            )
        if self.apid == Apid.DUMP:
            return f"DUMP {v['what']} {v['part'] + 1}/{v['parts']} ({len(v['data'])} B)"
        shown = " ".join(f"{k}={val}" for k, val in v.items())
        return f"{self.name} {shown}"


def decode_telemetry(raw: bytes) -> Telemetry:
    """Decode one TM packet through the catalog; raises :class:`flight.errors.PacketError`."""
    from flight.link.codes import FailureCode

    p = packet.decode(raw)
    if p.type != 0:
        raise errors.PacketError(FailureCode.MALFORMED, "not a telemetry packet")
    definition = catalog.TELEMETRY.get(p.apid)
    if definition is None:
        raise errors.PacketError(FailureCode.MALFORMED, f"unknown APID {p.apid:#x}")
    when, user_data = packet.split_tm(p)
    return Telemetry(p.apid, definition.name, p.seq_count, when, definition.decode(user_data), raw)


def read_tm_file(path: str | os.PathLike[str]) -> Iterator[Telemetry | errors.PacketError]:
    """The packets of a ``flight run --tm-file`` recording (back to back), decoded; what does
    not decode is yielded as its error (a recording may end mid-packet)."""
    data = Path(path).read_bytes()
    cutter = packet.StreamDecoder()
    for raw in cutter.feed(data):
        try:
            yield decode_telemetry(raw)
        except errors.PacketError as exc:
            yield exc


class GroundStation:
    """A ground station on one board's link (see the module docstring)."""

    def __init__(
        self,
        url: str,
        key_file: str | os.PathLike[str] | None = None,
        *,
        spi: int | None = None,
        sequence_file: str | os.PathLike[str] | None = None,
    ) -> None:
        from flight.link.transport import open_ground_transport

        self.url = url
        self.transport = open_ground_transport(url)
        self.sequences = packet.SequenceCounters()
        self.keyring = None
        self.key = None
        self.sequence_file: Path | None = None
        if key_file is not None:
            from flight.link.keys import load_keys

            self.keyring = load_keys(key_file)
            chosen = self.keyring.active if spi is None else spi
            if chosen not in self.keyring.keys:
                raise errors.ConfigError(f"{key_file}: no key with SPI {chosen}")
            self.key = self.keyring.keys[chosen]
            self.sequence_file = Path(sequence_file or f"{key_file}.seq")
        self.backlog: list[Telemetry] = []
        self.rejected = 0  # received items that did not decode

    # --- sending ------------------------------------------------------------------------------
    def next_sequence(self) -> int:
        """The next telecommand sequence number for this key (persisted before use)."""
        assert self.sequence_file is not None and self.key is not None
        try:
            last = int(self.sequence_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            last = 0
        sequence = last + 1
        tmp = self.sequence_file.with_suffix(self.sequence_file.suffix + ".tmp")
        tmp.write_text(f"{sequence}\n")
        os.replace(tmp, self.sequence_file)
        return sequence

    def seal(self, name: str, sequence: int | None = None, **args: Any) -> bytes:
        """A complete, authenticated TC packet for command ``name``."""
        from flight.link.sdls import seal_command

        if self.key is None:
            raise errors.ConfigError("sending commands needs a key file (--key)")
        definition = catalog.COMMANDS_BY_NAME.get(name)
        if definition is None:
            known = ", ".join(sorted(catalog.COMMANDS_BY_NAME))
            raise errors.ConfigError(f"unknown command {name!r}; known: {known}")
        body = definition.encode(args)
        if sequence is None:
            sequence = self.next_sequence()
        return seal_command(self.key, self.sequences.next(Apid.COMMAND), sequence, body)

    def send_raw(self, raw: bytes) -> bool:
        return self.transport.send(raw)

    def send(self, name: str, **args: Any) -> bytes:
        """Seal and send a command; returns the packet sent (to match its reports)."""
        raw = self.seal(name, **args)
        self.transport.send(raw)
        return raw

    # --- receiving ----------------------------------------------------------------------------
    def receive(self, timeout: float = 0.5, max_items: int = 1024) -> list[Telemetry]:
        """What arrives within ``timeout`` seconds (decoded; the rest counted in rejected)."""
        result = []
        for raw in self.transport.receive(max_items, timeout):
            try:
                result.append(decode_telemetry(raw))
            except errors.PacketError:
                self.rejected += 1
        return result

    def follow(self, sent: bytes, timeout: float = 10.0) -> Iterator[Telemetry]:
        """The verification reports of the command ``sent``, as they arrive, until its final
        stage (or the timeout); other telemetry is kept in :attr:`backlog`."""
        header = packet.decode(sent)
        request_id, request_seq = header.packet_id, header.sequence_control
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for tm in self.receive(timeout=min(0.2, max(0.0, deadline - time.monotonic()))):
                v = tm.values
                if (
                    tm.apid == Apid.VERIFICATION
                    and v["request_id"] == request_id
                    and v["request_seq"] == request_seq
                ):
                    yield tm
                    if Stage[v["stage"]] in FINAL_STAGES:
                        return
                else:
                    self.backlog.append(tm)

    def command(self, name: str, timeout: float = 10.0, **args: Any) -> list[Telemetry]:
        """Send a command and collect its verification reports up to the final one."""
        return list(self.follow(self.send(name, **args), timeout))

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> Telemetry | None:
        """The first telemetry packet (backlog first) for which ``predicate`` holds."""
        for i, tm in enumerate(self.backlog):
            if predicate(tm):
                del self.backlog[i]
                return tm
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for tm in self.receive(timeout=0.2):
                if predicate(tm):
                    return tm
                self.backlog.append(tm)
        return None

    # --- files --------------------------------------------------------------------------------
    def send_file(
        self,
        path: str | os.PathLike[str],
        dest_name: str,
        *,
        checksum: str = "crc32",
        transaction: int | None = None,
        burst: int = 64,
        pause_s: float = 0.02,
    ) -> int:
        """Send a file as CFDP class 1 PDUs (cfdp-py) in FILE packets; returns PDUs sent.

        Class 1 has no retransmission, so the sender paces itself: ``burst`` PDUs, then a
        ``pause_s`` rest (3.2 MB/s with 1 KiB segments by default), below what a board takes
        per frame (``max_packets_per_frame``) and what its socket queue holds."""
        from hil.link.cfdp_ground import file_pdus

        seq = transaction if transaction is not None else int(time.time()) & 0xFFFF
        pdus = file_pdus(
            path, dest_name, source_entity=2, dest_entity=1, seq=seq, checksum=checksum
        )
        for i, pdu in enumerate(pdus):
            raw = packet.encode(1, Apid.FILE, self.sequences.next(Apid.FILE), pdu, False)
            if not self.transport.send(raw):  # a full TCP or serial queue: let it drain once
                self.transport.flush(5.0)
                if not self.transport.send(raw):
                    raise errors.LinkError(0, f"the link took no more data after {i} PDUs")
            if i % burst == burst - 1:
                time.sleep(pause_s)
        self.transport.flush(10.0)
        return len(pdus)

    def file_mac(self, path: str | os.PathLike[str]) -> bytes:
        """HMAC-SHA256 of a whole file under this station's key (what model_upload names)."""
        if self.key is None:
            raise errors.ConfigError("a file MAC needs a key file (--key)")
        return hmac.new(self.key.secret, Path(path).read_bytes(), hashlib.sha256).digest()

    def upload_model(
        self,
        path: str | os.PathLike[str],
        partition: str,
        *,
        dest_name: str | None = None,
        trial_frames: int = 10,
        timeout: float = 60.0,
    ) -> list[Telemetry]:
        """Send a model over CFDP, wait until the board has it, then activate it; the
        verification reports of the ``model_upload`` command (completion after its trial)."""
        name = dest_name or Path(path).name
        self.send_file(path, name)
        received = self.wait_for(
            lambda tm: tm.apid == Apid.EVENT and tm.values["event_id"] in (709, 710),
            timeout=timeout,
        )
        if received is None or received.values["event_id"] != 709:
            why = "no FILE_RECEIVED event" if received is None else received.values["args"]
            raise errors.LinkError(0, f"upload of {name} failed: {why}")
        sent = self.send(
            "model_upload",
            partition=partition,
            file=name,
            mac=self.file_mac(path),
            trial_frames=trial_frames,
        )
        return list(self.follow(sent, timeout))

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> GroundStation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
