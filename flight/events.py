"""Event IDs and the event log: how faults become data.

Every fault flight notices (an outvoted replica, a block the scrubber repaired, a missed
heartbeat) is an *event*: a stable numeric ID declared once here with a one-line cause, a
counter, and a bounded log of recent occurrences for telemetry. Programming errors are not
events; they raise (see :mod:`flight.errors`).

IDs are stable across releases (ground tools decode them); never renumber, only add.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

__all__ = ["EVENTS", "Event", "EventDef", "EventLog", "Severity", "by_id", "by_name"]


class Severity(IntEnum):
    DEBUG = 10
    INFO = 20
    WARNING = 30
    ERROR = 40
    CRITICAL = 50


@dataclass(frozen=True)
class EventDef:
    """Declaration of one event kind: stable ID, name, severity and its cause in one line."""

    id: int
    name: str
    severity: Severity
    cause: str


_REGISTRY: dict[int, EventDef] = {}
_BY_NAME: dict[str, EventDef] = {}


def _define(event_id: int, name: str, severity: Severity, cause: str) -> EventDef:
    if event_id in _REGISTRY or name in _BY_NAME:  # a bug in this file, caught at import
        raise AssertionError(f"duplicate event definition {event_id} {name}")
    definition = EventDef(event_id, name, severity, cause)
    _REGISTRY[event_id] = definition
    _BY_NAME[name] = definition
    return definition


# --- voting (1xx) -----------------------------------------------------------------------------
VOTE_CORRECTED = _define(
    100,
    "VOTE_CORRECTED",
    Severity.INFO,
    "A replica disagreed with the other two; the majority masked it.",
)
VOTE_NO_MAJORITY = _define(
    101,
    "VOTE_NO_MAJORITY",
    Severity.ERROR,
    "All three replicas differ in some word; the output is withheld as uncorrectable.",
)
DWC_MISMATCH = _define(
    102,
    "DWC_MISMATCH",
    Severity.WARNING,
    "The two copies of a duplicate-with-compare computation disagree.",
)
VOTE_SPLIT = _define(
    104,
    "VOTE_SPLIT",
    Severity.ERROR,
    "Fewer than two replicas computed the voted output whole (each lost words): withheld.",
)
VOTE_POINT_UNSAFE = _define(
    103,
    "VOTE_POINT_UNSAFE",
    Severity.WARNING,
    "A vote point wrote back no two replicas' whole tensor (a guess): inference withheld.",
)

# --- protected memory and scrubbing (2xx) -------------------------------------------------------
SCRUB_BLOCK_ERROR = _define(
    200,
    "SCRUB_BLOCK_ERROR",
    Severity.WARNING,
    "A block copy's CRC-32C does not match the block's stored CRC (a memory upset).",
)
SCRUB_BLOCK_REPAIRED = _define(
    201,
    "SCRUB_BLOCK_REPAIRED",
    Severity.INFO,
    "A corrupted block copy was rewritten from a copy proven good by CRC or majority vote.",
)
SCRUB_BLOCK_UNREPAIRABLE = _define(
    202,
    "SCRUB_BLOCK_UNREPAIRABLE",
    Severity.ERROR,
    "No copy of a block could be proven good; it is flagged, not repaired.",
)
SCRUB_CRC_TABLE_REPAIRED = _define(
    203,
    "SCRUB_CRC_TABLE_REPAIRED",
    Severity.INFO,
    "A copy of a region's CRC table disagreed with the others and was rewritten.",
)
SCRUB_PASS_COMPLETED = _define(
    204,
    "SCRUB_PASS_COMPLETED",
    Severity.DEBUG,
    "The scrubber finished a full pass over every region.",
)
REGION_REWRITTEN = _define(
    205,
    "REGION_REWRITTEN",
    Severity.INFO,
    "A protected region was rewritten from a golden image (all copies and CRCs).",
)

# --- critical data store (4xx) -----------------------------------------------------------------
CDS_COPY_CORRUPT = _define(
    400,
    "CDS_COPY_CORRUPT",
    Severity.WARNING,
    "A critical data store copy failed validation (magic, version, length, CRC or schema).",
)
CDS_RECOVERED_FROM_BACKUP = _define(
    401,
    "CDS_RECOVERED_FROM_BACKUP",
    Severity.WARNING,
    "One critical data store copy was unusable; the record was loaded from the other copy.",
)
CDS_COUNTER_COMPLEMENT_MISMATCH = _define(
    402,
    "CDS_COUNTER_COMPLEMENT_MISMATCH",
    Severity.ERROR,
    "A CRC-valid critical data store copy holds a counter that disagrees with its complement.",
)
CDS_FORMATTED = _define(
    403,
    "CDS_FORMATTED",
    Severity.WARNING,
    "No valid critical data store copy was found; the store starts fresh (boot count 0).",
)
CDS_WRITE_FAILED = _define(
    404,
    "CDS_WRITE_FAILED",
    Severity.ERROR,
    "Writing a critical data store copy failed (I/O error); the previous copies stay valid.",
)

# --- watchdog and mission (5xx) ------------------------------------------------------------------
WATCHDOG_ARMED = _define(
    500,
    "WATCHDOG_ARMED",
    Severity.INFO,
    "The watchdog (hardware device or software timer) was opened and armed with its timeout.",
)
WATCHDOG_STROKE_WITHHELD = _define(
    501,
    "WATCHDOG_STROKE_WITHHELD",
    Severity.WARNING,
    "Some partition proved no progress this frame, so the watchdog was deliberately not stroked.",
)
WATCHDOG_STROKE_FAILED = _define(
    502,
    "WATCHDOG_STROKE_FAILED",
    Severity.ERROR,
    "Writing the keepalive to the watchdog device failed; the board may reset at the timeout.",
)
WATCHDOG_EXPIRED = _define(
    503,
    "WATCHDOG_EXPIRED",
    Severity.CRITICAL,
    "The software watchdog was not stroked within its timeout (the supervisor is hung or late).",
)
WATCHDOG_DISARMED = _define(
    504,
    "WATCHDOG_DISARMED",
    Severity.INFO,
    "The watchdog was closed with the magic close: it no longer resets the board.",
)
WATCHDOG_LEFT_ARMED = _define(
    505,
    "WATCHDOG_LEFT_ARMED",
    Severity.WARNING,
    "The watchdog device was closed without the magic close: it stays armed and resets the board.",
)

# --- recovery state machine (3xx) ---------------------------------------------------------------
PARTITION_STARTED = _define(
    300,
    "PARTITION_STARTED",
    Severity.INFO,
    "A partition came up (first start or after a restart) and is supervised as running.",
)
PARTITION_HUNG = _define(
    301,
    "PARTITION_HUNG",
    Severity.WARNING,
    "A partition missed its heartbeat deadline; it is treated as hung and killed.",
)
PARTITION_CRASHED = _define(
    302,
    "PARTITION_CRASHED",
    Severity.WARNING,
    "A partition process died: abnormal exit status or killed by a signal.",
)
PARTITION_EXITED = _define(
    303,
    "PARTITION_EXITED",
    Severity.INFO,
    "A partition process exited normally (restarted only if its restart type is permanent).",
)
PARTITION_START_FAILED = _define(
    304,
    "PARTITION_START_FAILED",
    Severity.WARNING,
    "A (re)started partition did not come up, or not within its start deadline.",
)
PARTITION_RESTARTED = _define(
    305,
    "PARTITION_RESTARTED",
    Severity.INFO,
    "The recovery state machine ordered a partition restart (failure, sibling or escalation).",
)
PARTITION_STOPPED = _define(
    306,
    "PARTITION_STOPPED",
    Severity.INFO,
    "A partition ended and is not restarted: temporary, or transient after a normal exit.",
)
RESTART_INTENSITY_EXCEEDED = _define(
    307,
    "RESTART_INTENSITY_EXCEEDED",
    Severity.WARNING,
    "A partition failed more than R times in T seconds; its escalation ladder takes a step.",
)
REDUNDANCY_DEGRADED = _define(
    308,
    "REDUNDANCY_DEGRADED",
    Severity.WARNING,
    "A partition keeps failing; it now runs with less redundancy (TMR to DWC to simplex).",
)
PARTITION_DISABLED = _define(
    309,
    "PARTITION_DISABLED",
    Severity.ERROR,
    "A partition kept failing after escalation and is no longer restarted (until commanded).",
)
PARTITION_ENABLED = _define(
    310,
    "PARTITION_ENABLED",
    Severity.INFO,
    "A disabled or stopped partition was re-enabled by command and is being started again.",
)
REPLICA_VOTE_ALARM = _define(
    311,
    "REPLICA_VOTE_ALARM",
    Severity.WARNING,
    "A replica was outvoted (or a DWC pair or TMR triple disagreed) in a partition's output.",
)
REPLICA_REVERIFY_REQUESTED = _define(
    312,
    "REPLICA_REVERIFY_REQUESTED",
    Severity.INFO,
    "A replica kept losing votes; its weight copy is re-verified against the others first.",
)
REPLICA_RESTARTED = _define(
    313,
    "REPLICA_RESTARTED",
    Severity.WARNING,
    "A replica kept losing votes after its weights were re-verified; it is restarted.",
)
SAFE_MODE_ENTERED = _define(
    314,
    "SAFE_MODE_ENTERED",
    Severity.CRITICAL,
    "An escalation ladder reached safe mode: only partitions marked for safe mode keep running.",
)
SAFE_MODE_EXITED = _define(
    315,
    "SAFE_MODE_EXITED",
    Severity.INFO,
    "Safe mode was left by command; partitions suspended for it are started again.",
)
PARTITION_SUSPENDED = _define(
    316,
    "PARTITION_SUSPENDED",
    Severity.INFO,
    "A partition not marked for safe mode was stopped on entering safe mode.",
)
PROCESSOR_RESET_REQUESTED = _define(
    317,
    "PROCESSOR_RESET_REQUESTED",
    Severity.CRITICAL,
    "Recovery gave up in software: the supervisor exits with a reset code for the init system.",
)
RECOVERY_STALE_EVENT = _define(
    318,
    "RECOVERY_STALE_EVENT",
    Severity.DEBUG,
    "A report about a partition already restarting or stopped (e.g. a killed process's exit).",
)
RECOVERY_STATE_RESTORED = _define(
    319,
    "RECOVERY_STATE_RESTORED",
    Severity.INFO,
    "The supervisor restarted and took the recovery state (modes, ladders) from the CDS.",
)
RECOVERY_STATE_DISCARDED = _define(
    320,
    "RECOVERY_STATE_DISCARDED",
    Severity.WARNING,
    "The recovery state in the CDS does not fit the mission (changed, or damaged): fresh start.",
)
VOTE_ESCALATION_HELD = _define(
    321,
    "VOTE_ESCALATION_HELD",
    Severity.WARNING,
    "A replica kept losing votes during an upset storm: no partition restart or degradation.",
)

# --- test mode (6xx) -----------------------------------------------------------------------------
ORACLE_UPSET = _define(
    600,
    "ORACLE_UPSET",
    Severity.WARNING,
    "The fault-free reference (SDC oracle) was itself upset; that frame is not judged as SDC.",
)

# --- space link (7xx) -----------------------------------------------------------------------------
LINK_PACKET_REJECTED = _define(
    700,
    "LINK_PACKET_REJECTED",
    Severity.WARNING,
    "Received bytes that are not a valid packet (framing, length, CRC, APID): dropped, counted.",
)
TC_REJECTED = _define(
    701,
    "TC_REJECTED",
    Severity.WARNING,
    "A telecommand failed acceptance (bad MAC, replay, unknown key or opcode, bad argument).",
)
TC_ACCEPTED = _define(
    702,
    "TC_ACCEPTED",
    Severity.INFO,
    "An authenticated, valid telecommand was accepted and queued for the next frame boundary.",
)
TC_COMPLETED = _define(
    703,
    "TC_COMPLETED",
    Severity.INFO,
    "A telecommand was carried out.",
)
TC_FAILED = _define(
    704,
    "TC_FAILED",
    Severity.WARNING,
    "A telecommand was accepted but could not be carried out (mode, busy, execution failure).",
)
TM_DROPPED = _define(
    705,
    "TM_DROPPED",
    Severity.WARNING,
    "The downlink store was full for a priority class: its oldest packets were dropped.",
)
CONTACT_OPENED = _define(
    706,
    "CONTACT_OPENED",
    Severity.INFO,
    "A contact window opened (mission schedule or command): the downlink store drains.",
)
CONTACT_CLOSED = _define(
    707,
    "CONTACT_CLOSED",
    Severity.INFO,
    "A contact window closed: telemetry is kept in the downlink store until the next one.",
)
KEY_SWITCHED = _define(
    708,
    "KEY_SWITCHED",
    Severity.WARNING,
    "Telecommands are now authenticated under another key (security parameter index).",
)
FILE_RECEIVED = _define(
    709,
    "FILE_RECEIVED",
    Severity.INFO,
    "A CFDP transaction completed: the file is staged, its CFDP checksum verified.",
)
FILE_REJECTED = _define(
    710,
    "FILE_REJECTED",
    Severity.WARNING,
    "A CFDP transaction failed (bad PDU, checksum, size, name, too large, timed out): discarded.",
)
MODEL_ACTIVATED = _define(
    711,
    "MODEL_ACTIVATED",
    Severity.WARNING,
    "An uploaded model passed its checks and now serves a partition (on trial for a few frames).",
)
MODEL_REJECTED = _define(
    712,
    "MODEL_REJECTED",
    Severity.WARNING,
    "An uploaded model failed verification (MAC, CRCs, shape) before activation: not used.",
)
MODEL_ROLLED_BACK = _define(
    713,
    "MODEL_ROLLED_BACK",
    Severity.ERROR,
    "An activated model failed to load or its first frames failed: the previous model is back.",
)
RESULT_CORRUPTED = _define(
    714,
    "RESULT_CORRUPTED",
    Severity.ERROR,
    "A voted output no longer matches the CRC-32C taken at the vote: withheld from the downlink.",
)
LINK_TRANSPORT_ERROR = _define(
    715,
    "LINK_TRANSPORT_ERROR",
    Severity.WARNING,
    "The link's socket or serial port failed to send or receive; the runtime carries on.",
)
MODEL_COMMITTED = _define(
    716,
    "MODEL_COMMITTED",
    Severity.INFO,
    "An uploaded model passed its trial frames and is kept as the partition's model.",
)

#: Every declared event, by ID.
EVENTS: dict[int, EventDef] = _REGISTRY


def by_id(event_id: int) -> EventDef:
    return _REGISTRY[event_id]


def by_name(name: str) -> EventDef:
    return _BY_NAME[name]


@dataclass(frozen=True)
class Event:
    """One occurrence: what, when (monotonic seconds) and details (region, block, replica...)."""

    definition: EventDef
    time: float
    fields: dict[str, Any] = field(default_factory=dict)
    count: int = 1  #: occurrences this entry stands for (a burst reported once)

    @property
    def id(self) -> int:
        return self.definition.id

    @property
    def name(self) -> str:
        return self.definition.name


class EventLog:
    """Counters per event ID plus a bounded ring of recent events (memory stays fixed in
    orbit however many upsets arrive). Listeners see every event (telemetry, the recovery FSM).
    """

    def __init__(self, capacity: int = 256, clock: Callable[[], float] = time.monotonic) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._recent: deque[Event] = deque(maxlen=capacity)
        self._counts: dict[int, int] = {}
        self._clock = clock
        self._listeners: list[Callable[[Event], None]] = []

    def emit(self, definition: EventDef, count: int = 1, **fields: Any) -> Event:
        """Record ``count`` occurrences of an event (one log entry)."""
        event = Event(definition, self._clock(), fields, count)
        self._counts[definition.id] = self._counts.get(definition.id, 0) + count
        self._recent.append(event)
        for listener in self._listeners:
            listener(event)
        return event

    def count(self, definition: EventDef) -> int:
        return self._counts.get(definition.id, 0)

    def counts(self) -> dict[str, int]:
        """All non-zero counters by event name (for housekeeping telemetry)."""
        return {_REGISTRY[i].name: n for i, n in sorted(self._counts.items())}

    def recent(self) -> list[Event]:
        return list(self._recent)

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        self._listeners.append(listener)

    def __iter__(self) -> Iterator[Event]:
        return iter(list(self._recent))
