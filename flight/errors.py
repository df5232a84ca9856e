"""One exception tree for flight.

Exceptions are for programming and configuration errors (bugs). Radiation effects are *not*
exceptions: they are counted events (see :mod:`flight.events`). The root, :class:`FlightError`,
is never raised directly, so ``except FlightError`` catches exactly flight's own errors.

Which are errors of the *input* (the mission, a model or file it names, the installation) and
which are broken invariants is decided in one table, ``flight.cli.ERROR_EXIT_CODES``: the
command line prints the first kind on one line and exits 78 (75 for ``cds.CdsBusyError``),
and lets the second kind (e.g. :class:`NativeStatusError`, :class:`RegionError`, the buffer
errors, ``RecoveryError``) end the process with its traceback (docs/operations.md, exit codes).
"""

from __future__ import annotations


class FlightError(Exception):
    """Root of every flight exception. Never raised directly."""


class NativeBuildError(FlightError, ImportError):
    """The compiled extension ``flight._native`` is missing or broken.

    There is deliberately no pure-Python fallback on the flown path: a board running a slow or
    subtly different voter must fail loudly at start-up, not in orbit.
    """


class CrcExtensionMissingError(FlightError, ImportError):
    """crcmod is installed without its C extension (it silently falls back to ~40x slower code)."""


class InvalidBufferError(FlightError):
    """Base for buffer argument errors of the native operations."""


class SizeMismatchError(InvalidBufferError, ValueError):
    """Buffers that must have the same size do not."""


class NotContiguousError(InvalidBufferError, ValueError):
    """A buffer is not C-contiguous; the native code works on raw contiguous bytes."""


class ReadOnlyBufferError(InvalidBufferError, ValueError):
    """A buffer that must be written (an ``out`` argument) is read-only."""


class BufferTypeError(InvalidBufferError, TypeError):
    """An argument does not expose the buffer protocol."""


class OverlapError(InvalidBufferError, ValueError):
    """``out`` partially overlaps an input (an exact alias of an input is allowed)."""


class WordSizeError(InvalidBufferError, ValueError):
    """Unsupported word size, or a buffer length that is not a multiple of it."""


class NativeStatusError(FlightError, RuntimeError):
    """The native code returned a status code the Python face does not know (a bug)."""


class ConfigError(FlightError, ValueError):
    """Invalid configuration: region parameters, scrub budgets, mission tables."""


class KernelPathError(ConfigError):
    """FLIGHT_KERNEL_ISA names a path the CPU lacks (or an unknown one), or it was set after
    numba started compiling: an installation/configuration error, not a fault."""


class RegionError(FlightError, ValueError):
    """Invalid use of a protected memory region (bad copy index, write out of bounds, ...)."""


class LinkError(FlightError):
    """Bytes from the space link were refused: a packet, a security header, a command, a CFDP
    PDU or a frame. Not a bug: hostile or damaged input, counted and reported to the ground.
    ``code`` is a :class:`flight.link.codes.FailureCode` (the PUS-1 failure code sent down)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class PacketError(LinkError, ValueError):
    """A space packet or transport frame is malformed (length, version, CRC, APID, framing)."""


class AuthenticationError(LinkError):
    """A telecommand failed authentication: unknown or inactive key, replay, bad MAC."""


class CommandError(LinkError, ValueError):
    """A telecommand is authentic but not valid: unknown opcode, bad or out-of-range argument."""


class CfdpError(LinkError, ValueError):
    """A CFDP PDU is malformed or a file transaction cannot complete."""
