"""The link's fixed numbers: APIDs, PUS-1 verification stages and failure codes.

Declared once here; the ICD, the dictionaries and both ends of the link read them from here.
Never renumber, only add: ground systems decode these.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Apid", "FailureCode", "Stage"]


class Apid(IntEnum):
    """Application process identifiers, one per packet kind (11 bits)."""

    HOUSEKEEPING = 0x010  #: TM: counters every N frames
    EVENT = 0x011  #: TM: one runtime event
    RESULT = 0x012  #: TM: one inference result with its CRC-32C
    VERIFICATION = 0x013  #: TM: a telecommand's verification report (PUS service 1)
    DUMP = 0x014  #: TM: a chunk of a dump (CDS, reset log)
    PARTITION = 0x015  #: TM: one partition's housekeeping (mode, state, counters, model)
    INJECTION = 0x016  #: TM: what a test-mode injection did (bytes read back before/after)
    COMMAND = 0x100  #: TC: authenticated telecommand
    FILE = 0x101  #: TC: a CFDP PDU (file upload)
    IDLE = 0x7FF  #: idle packet (CCSDS): ignored


class Stage(IntEnum):
    """PUS service 1 report subtypes: TM[1,n]."""

    ACCEPTANCE_SUCCESS = 1
    ACCEPTANCE_FAILURE = 2
    START_SUCCESS = 3
    START_FAILURE = 4
    COMPLETION_SUCCESS = 7
    COMPLETION_FAILURE = 8


class FailureCode(IntEnum):
    """Why a telecommand (or a packet carrying one) was refused or failed."""

    NONE = 0
    BAD_MAC = 1  #: the MAC does not verify under the named key
    REPLAY = 2  #: sequence number outside the anti-replay window (old, repeated or too far)
    MALFORMED = 3  #: packet, security header or argument block cannot be parsed
    UNKNOWN_OPCODE = 4
    INVALID_ARGUMENT = 5  #: an argument is out of range or names nothing known
    NOT_ALLOWED = 6  #: not allowed in this mode (test-mode command, safe mode, ...)
    BUSY = 7  #: the target is busy (an upload on trial, a restart in progress, ...)
    EXECUTION_FAILED = 8
    UNKNOWN_KEY = 9  #: the security parameter index names no key
    KEY_INACTIVE = 10  #: the key exists but is not the one commands are accepted under
    NO_KEY = 11  #: the board has no key file: every telecommand is refused
