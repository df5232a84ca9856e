"""The link service: what a running supervisor says and hears, once per frame.

It ties the link's parts together for one board: the transport (UDP, TCP, serial), the packet
codecs and the declarations (:mod:`flight.link.catalog`), telecommand authentication
(:mod:`flight.link.sdls`), CFDP uploads (:mod:`flight.link.cfdp`), the downlink store and the
contact schedule. The supervisor calls it at fixed points of its frame and never waits on it:

* :meth:`LinkService.poll` at the start of a frame: receive at most ``max_packets_per_frame``
  items, cut, check, authenticate and validate them, report acceptance (PUS-1), and hand back
  the accepted commands, which the supervisor carries out at this frame boundary, reporting
  start and completion through :meth:`start` and :meth:`complete`;
* :meth:`result` for every inference, :meth:`frame_end` at the end of each frame
  (housekeeping every N frames, and the drain while a contact window is open).

Every runtime event becomes an EVENT packet. Bad input is counted, reported and dropped, never
raised: the only exceptions out of here are bugs. The replay window is persisted in the CDS
*before* a command runs, so a reboot cannot reopen it.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from flight import errors, events
from flight.crc import crc32c
from flight.link import catalog, packet
from flight.link.codes import Apid, FailureCode, Stage
from flight.link.contact import ContactSchedule
from flight.link.downlink import DownlinkStore, Priority
from flight.link.schema import Str

# Free text is cut to its field's size ("..." marks a cut), never refused.
_EVENT_ARGS, _DETAIL, _REASON, _MODEL = Str(240), Str(200), Str(64), Str(64)

__all__ = ["Command", "LinkService", "NullTransport", "housekeeping_values"]

#: CDS state keys this service owns.
REPLAY_STATE = "link_replay"
ACTIVE_KEY_STATE = "link_active_spi"
#: Pending results (the BULK class) are kept across a supervisor restart in this file.
PENDING_FILE = "downlink-pending.bin"
#: RESULT's ``sample`` when the input came from no dataset.
NO_SAMPLE = 0xFFFFFFFF


@dataclass
class Command:
    """An accepted telecommand, waiting for (or in) execution."""

    definition: Any  # catalog.CommandDef
    args: dict[str, Any]
    spi: int
    sequence: int
    request_id: int  #: the TC's packet ID word (version, type, flag, APID)
    request_seq: int  #: the TC's sequence control word
    started: bool = False
    done: bool = False

    @property
    def name(self) -> str:
        return str(self.definition.name)


@dataclass(frozen=True)
class _Unknown:
    """The definition of a command refused before its opcode meant anything."""

    opcode: int
    name: str = "?"


class NullTransport:
    """No link: only the telemetry file (``flight run --tm-file`` without ``--link``)."""

    address = None

    def receive(self, max_items: int) -> list[bytes]:
        return []

    def send(self, packet: bytes) -> bool:
        return False

    def close(self) -> None:
        return None

    def counters(self) -> dict[str, int]:
        return {}


@dataclass
class LinkCounters:
    """What ``flight run --json`` reports as ``link``, and housekeeping carries."""

    tm_created: int = 0
    tm_sent: int = 0
    tm_bytes: int = 0
    tc_accepted: int = 0
    tc_rejected: Counter = field(default_factory=Counter)  # by FailureCode name
    tc_completed: int = 0
    tc_failed: int = 0
    packets_rejected: int = 0  # not a packet at all (framing, length, CRC, APID)
    results_withheld: int = 0  # RESULT_CORRUPTED: the CRC-32C no longer matched


class LinkService:
    """One board's end of the space link (see the module docstring)."""

    def __init__(
        self,
        config: Any,  # flight.mission.LinkConfig
        transport: Any,
        *,
        log: events.EventLog,
        cds: Any,
        staging_dir: Path,
        keyring: Any = None,  # flight.link.keys.KeyRing, None: every TC is refused (NO_KEY)
        test_mode: bool = False,
        clock: Callable[[], float] = time.time,
        tm_file: BinaryIO | None = None,
    ) -> None:
        from flight.link.cfdp import CfdpReceiver

        self.config = config
        self.transport = transport
        self.log = log
        self.cds = cds
        self.keyring = keyring
        self.test_mode = test_mode
        self.clock = clock
        self.tm_file = tm_file
        self.counters = LinkCounters()
        self.sequences = packet.SequenceCounters()
        self.store = DownlinkStore(
            {
                Priority.URGENT: config.store_urgent_bytes,
                Priority.HOUSEKEEPING: config.store_housekeeping_bytes,
                Priority.BULK: config.store_bulk_bytes,
            },
            log,
        )
        self._pending_path = Path(staging_dir).parent / PENDING_FILE
        self.store.load(self._pending_path)
        self.contact = ContactSchedule(config.contact, log)
        self.verifier = None
        if keyring is not None:
            from flight.link.sdls import Verifier

            active = cds.state(ACTIVE_KEY_STATE)
            if isinstance(active, int) and active in keyring.keys:
                keyring.switch(active)  # a switch_key outlives a restart
            # the CDS is CRC-checked and double-buffered: an unusable window here is a bug, and
            # Verifier raises rather than reopen it
            self.verifier = Verifier(keyring, cds.state(REPLAY_STATE, {}) or {})
        staging = Path(staging_dir)
        staging.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.cfdp = CfdpReceiver(
            staging,
            entity_id=1,
            max_file_bytes=config.upload_max_bytes,
            max_transactions=4,
            log=log,
            clock=time.monotonic,
        )
        self._frame = 0
        self._credit = 0  # downlink bytes this frame may still send (see _drain)
        self._min_severity = events.Severity[config.event_severity.upper()]
        self._in_event = False
        log.subscribe(self._on_event)

    # --- uplink -----------------------------------------------------------------------------
    def poll(self) -> list[Command]:
        """Receive what arrived (bounded), and return the commands accepted: authentic, valid
        and allowed. Everything else is counted and, when it was a telecommand, reported."""
        accepted: list[Command] = []
        try:
            items = self.transport.receive(self.config.max_packets_per_frame)
        except OSError as exc:  # a transport that fails must not stop the frames
            self.log.emit(events.LINK_TRANSPORT_ERROR, error=str(exc))
            items = []
        rejected = 0
        refused: Counter = Counter()
        for raw in items:
            try:
                tc = packet.decode(raw)
                if tc.type != packet.TC:
                    raise errors.PacketError(FailureCode.MALFORMED, "not a telecommand")
            except errors.PacketError:
                rejected += 1
                continue
            if tc.apid == Apid.FILE:
                self._file_pdu(tc.data)
            elif tc.apid == Apid.COMMAND:
                command = self._command(raw, tc, refused)
                if command is not None:
                    accepted.append(command)
            elif tc.apid != Apid.IDLE:
                rejected += 1
        if rejected:
            self.counters.packets_rejected += rejected
            self.log.emit(events.LINK_PACKET_REJECTED, count=rejected)
        for reason, n in refused.items():
            self.log.emit(events.TC_REJECTED, count=n, reason=reason)
        self.cfdp.poll()
        return accepted

    def _file_pdu(self, pdu: bytes) -> None:
        with contextlib.suppress(errors.CfdpError):  # counted by the receiver
            self.cfdp.handle(pdu)

    def _command(self, raw: bytes, tc: Any, refused: Counter) -> Command | None:
        request_id, request_seq = tc.packet_id, tc.sequence_control
        spi, sequence = _security_fields(tc.data)
        stub = Command(_Unknown(_opcode(tc.data)), {}, spi, sequence, request_id, request_seq)
        try:
            if self.verifier is None:
                raise errors.AuthenticationError(FailureCode.NO_KEY, "no key file: refused")
            auth = self.verifier.verify(raw[: -packet.CRC_LEN])
            self._persist_replay()
            definition, args = catalog.decode_command(auth.body)
            command = Command(definition, args, auth.spi, auth.sequence, request_id, request_seq)
            if definition.test_mode_only and not self.test_mode:
                raise errors.CommandError(
                    FailureCode.NOT_ALLOWED, f"{definition.name} needs a test-mode mission"
                )
        except errors.LinkError as exc:
            code = FailureCode(exc.code)
            self.counters.tc_rejected[code.name] += 1
            refused[code.name] += 1
            self._report(stub, Stage.ACCEPTANCE_FAILURE, code, exc.detail)
            return None
        self.counters.tc_accepted += 1
        self.log.emit(
            events.TC_ACCEPTED, command=command.name, spi=auth.spi, sequence=auth.sequence
        )
        self._report(command, Stage.ACCEPTANCE_SUCCESS)
        return command

    def _persist_replay(self) -> None:
        """The window moved: on disk before the command runs (a reboot must not reopen it)."""
        assert self.verifier is not None
        self.cds.set_state(REPLAY_STATE, self.verifier.state())
        self.cds.commit()

    # --- verification reports (PUS service 1) -------------------------------------------------
    def start(self, command: Command) -> None:
        command.started = True
        self._report(command, Stage.START_SUCCESS)

    def refuse(self, command: Command, code: FailureCode, detail: str) -> None:
        """The command could not start (mode, busy, bad target): a start failure."""
        command.done = True
        self.counters.tc_failed += 1
        self.log.emit(events.TC_FAILED, command=command.name, code=code.name, detail=detail)
        self._report(command, Stage.START_FAILURE, code, detail)

    def complete(
        self, command: Command, code: FailureCode = FailureCode.NONE, detail: str = ""
    ) -> None:
        command.done = True
        if code is FailureCode.NONE:
            self.counters.tc_completed += 1
            self.log.emit(events.TC_COMPLETED, command=command.name, detail=detail)
            self._report(command, Stage.COMPLETION_SUCCESS, code, detail)
        else:
            self.counters.tc_failed += 1
            self.log.emit(events.TC_FAILED, command=command.name, code=code.name, detail=detail)
            self._report(command, Stage.COMPLETION_FAILURE, code, detail)

    def _report(
        self,
        command: Command,
        stage: Stage,
        code: FailureCode = FailureCode.NONE,
        detail: str = "",
    ) -> None:
        values = {
            "stage": stage,
            "request_id": command.request_id,
            "request_seq": command.request_seq,
            "spi": command.spi,
            "sequence": command.sequence,
            "opcode": command.definition.opcode,
            "code": code,
            "detail": _DETAIL.fit(detail),
        }
        self._emit(Apid.VERIFICATION, values, Priority.URGENT)

    # --- key management -----------------------------------------------------------------------
    def switch_key(self, spi: int) -> FailureCode:
        """Accept telecommands under ``spi`` from now on (persisted)."""
        if self.keyring is None or spi not in self.keyring.keys:
            return FailureCode.INVALID_ARGUMENT
        old = self.keyring.active
        self.keyring.switch(spi)
        self.cds.set_state(ACTIVE_KEY_STATE, spi)
        self.cds.commit()
        self.log.emit(events.KEY_SWITCHED, old=old, new=spi)
        return FailureCode.NONE

    def key(self, spi: int) -> Any:
        """The key a command was authenticated under (uploads are checked with it)."""
        return None if self.keyring is None else self.keyring.keys.get(spi)

    def staged(self, name: str) -> Path | None:
        """A file received over CFDP, by its destination name."""
        return self.cfdp.staged.get(name)

    # --- downlink -----------------------------------------------------------------------------
    def _emit(self, apid: Apid, values: Mapping[str, Any], priority: Priority) -> None:
        user_data = catalog.TELEMETRY[apid].encode(values)
        raw = packet.encode_tm(apid, self.sequences.next(apid), user_data, self.clock())
        self.counters.tm_created += 1
        if self.tm_file is not None:
            self.tm_file.write(raw)
        self.store.put(priority, raw)

    def _on_event(self, event: events.Event) -> None:
        if self._in_event:  # an event raised while turning an event into a packet
            return
        if event.definition.severity < self._min_severity:
            return
        self._in_event = True
        try:
            args = " ".join(f"{k}={_text(v)}" for k, v in event.fields.items())
            values = {
                "event_id": event.id,
                "severity": event.definition.severity,
                "count": min(event.count, 2**32 - 1),
                "args": _EVENT_ARGS.fit(args),
            }
            self._emit(Apid.EVENT, values, Priority.URGENT)
        finally:
            self._in_event = False

    def result(
        self,
        partition: str,
        sequence: int,
        output: Any,
        crc: int | None,
        delivered: bool,
        top1: int = -1,
        sample: int | None = None,
    ) -> bool:
        """Downlink one inference. A delivered output is checked against the CRC-32C taken
        at the vote: a mismatch (an upset on the way here) withholds it, with an event.
        ``sample`` is the dataset index of the input (the ground compares with its own golden
        output for it). Returns whether it went down as delivered."""
        if not self.config.results:
            return delivered
        blob = b""
        if delivered:
            blob = memoryview(output).cast("B").tobytes()
            if crc is None or crc32c(blob) != crc:
                self.counters.results_withheld += 1
                self.log.emit(
                    events.RESULT_CORRUPTED, partition=partition, sequence=sequence, crc=crc
                )
                delivered, blob, top1 = False, b"", -1
        values = {
            "partition": partition,
            "frame": self._frame,
            "sequence": sequence,
            "status": "delivered" if delivered else "withheld",
            "top1": top1 if delivered else -1,
            "crc32c": (crc or 0) if delivered else 0,
            "output": blob,
            "sample": NO_SAMPLE if sample is None else sample,
        }
        self._emit(Apid.RESULT, values, Priority.BULK)
        return delivered

    def injection(self, command: Command, values: Mapping[str, Any]) -> None:
        """Test mode: what an injection command did (INJECTION; the HIL agent's record)."""
        self._emit(Apid.INJECTION, {"request_seq": command.request_seq, **values}, Priority.URGENT)

    def dump(self, what: str, document: Any) -> int:
        """Send a JSON document down in DUMP chunks; returns the number of chunks."""
        import json

        text = json.dumps(document, sort_keys=True, default=str).encode()
        size = 1024
        parts = max(1, -(-len(text) // size))
        for part in range(parts):
            chunk = text[part * size : (part + 1) * size]
            values = {"what": what, "part": part, "parts": parts, "data": chunk}
            self._emit(Apid.DUMP, values, Priority.BULK)
        return parts

    def housekeeping(self, summary: Mapping[str, Any], partitions: list[Mapping[str, Any]]) -> None:
        """One housekeeping packet and one PARTITION packet per partition, now."""
        self._emit(Apid.HOUSEKEEPING, housekeeping_values(summary, self), Priority.HOUSEKEEPING)
        for values in partitions:
            values = {**values, "model": _MODEL.fit(values["model"])}
            self._emit(Apid.PARTITION, values, Priority.HOUSEKEEPING)

    def frame_end(
        self,
        frame: int,
        summary: Callable[[], Mapping[str, Any]],
        partitions: Callable[[], list[Mapping[str, Any]]],
    ) -> None:
        """Housekeeping every N frames; drain the store while the contact window is open."""
        self._frame = frame
        if frame % self.config.housekeeping_frames == 0:
            self.housekeeping(summary(), partitions())
        now = self.clock()
        self.contact.update(now)
        if self.contact.is_open(now):
            self._drain(self.config.downlink_bytes_per_frame)

    def _drain(self, budget: int) -> None:
        """Send what this frame's share of the downlink allows. Unused budget carries over
        while the next packet needs more than one frame's share (a large result must not wait
        forever), and is dropped once it went out (a burst cannot be saved up)."""
        self._credit = min(self._credit + budget, max(budget, self.store.head_bytes))
        sent = self.store.drain(self._credit)
        self._credit -= sum(len(raw) for raw in sent)
        if not self.store.head_bytes:
            self._credit = 0
        for raw in sent:
            if self.transport.send(raw):
                self.counters.tm_sent += 1
                self.counters.tm_bytes += len(raw)
            # a packet the transport could not take is lost like a frame lost in the air:
            # the transport counts it (tx_failed), the ground sees the sequence gap

    def save(self) -> None:
        """Keep pending results across a supervisor restart."""
        self.store.save(self._pending_path)

    def close(self) -> None:
        """Last drain (if in contact), save what is pending, close the transport."""
        now = self.clock()
        if self.contact.is_open(now):
            self._drain(self.config.downlink_bytes_per_frame)
        self.save()
        if self.tm_file is not None:
            self.tm_file.flush()
        self.transport.close()

    def summary(self) -> dict[str, Any]:
        """The ``link`` object of ``flight run --json``."""
        c = self.counters
        store = self.store.counters()
        return {
            "tm_created": c.tm_created,
            "tm_sent": c.tm_sent,
            "tm_bytes": c.tm_bytes,
            "tm_dropped": sum(self.store.dropped.values()),
            "tm_queued": len(self.store),
            "tc_accepted": c.tc_accepted,
            "tc_rejected": dict(c.tc_rejected),
            "tc_completed": c.tc_completed,
            "tc_failed": c.tc_failed,
            "packets_rejected": c.packets_rejected,
            "results_withheld": c.results_withheld,
            "files_received": self.cfdp.files_received,
            "contact_open": self.contact.is_open(self.clock()),
            "active_spi": None if self.keyring is None else self.keyring.active,
            "store": store,
            "transport": self.transport.counters(),
            "cfdp": self.cfdp.counters(),
        }


def housekeeping_values(summary: Mapping[str, Any], link: LinkService) -> dict[str, Any]:
    """The HOUSEKEEPING packet's values from the supervisor's summary and the link."""
    watchdog = summary.get("watchdog", {})
    event_counts = summary.get("events", {})
    c = link.counters
    values = {
        key: int(summary.get(key) or 0)
        for key in (
            "frames",
            "inferences",
            "delivered",
            "withheld",
            "corrected",
            "unavailable",
            "scrub_repairs",
            "scrub_unrepairable",
            "scrub_passes",
            "golden_reloads",
            "restarts",
            "escalations",
            "deadline_misses",
            "boot_count",
        )
    }
    values.update(
        {
            "system_state": summary.get("system_state", "nominal"),
            "safe_mode": bool(summary.get("safe_mode", False)),
            "last_reset_reason": _REASON.fit(str(summary.get("last_reset_reason", ""))),
            "watchdog_attempted": int(watchdog.get("attempted", 0)),
            "watchdog_withheld": int(watchdog.get("withheld", 0)),
            "watchdog_failed": int(watchdog.get("failed", 0)),
            "cds_write_failures": int(event_counts.get("CDS_WRITE_FAILED", 0)),
            "cds_copies_corrupt": int(event_counts.get("CDS_COPY_CORRUPT", 0)),
            "events_total": sum(int(n) for n in event_counts.values()),
            "tm_sent": c.tm_sent,
            "tm_dropped": sum(link.store.dropped.values()),
            "tc_accepted": c.tc_accepted,
            "tc_rejected": sum(c.tc_rejected.values()),
            "packets_rejected": c.packets_rejected,
            "files_received": min(link.cfdp.files_received, 0xFFFF),
            "contact_open": link.contact.is_open(link.clock()),
            "active_spi": 0 if link.keyring is None else int(link.keyring.active),
            "downlink_queued": len(link.store),
        }
    )
    return {
        k: (v & 0xFFFFFFFF if isinstance(v, int) and not isinstance(v, bool) else v)
        for k, v in values.items()
    }


def _security_fields(data: bytes) -> tuple[int, int]:
    """SPI and sequence number as sent, for the report of a refused command (0 if short)."""
    if len(data) < 6:
        return 0, 0
    return int.from_bytes(data[0:2], "big"), int.from_bytes(data[2:6], "big")


def _opcode(data: bytes) -> int:
    return int.from_bytes(data[6:8], "big") if len(data) >= 8 else 0


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace(" ", "_")
