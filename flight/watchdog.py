"""Watchdogs: the last line of defence when the supervisor itself hangs.

The supervisor strokes a watchdog once per frame, but **only when every partition proved progress
that frame** (:meth:`Watchdog.stroke`). A stroke is a claim that the whole system is alive; a
supervisor that strokes while a partition is hung would hide the hang from the watchdog forever.
If strokes stop for longer than the timeout, the board is reset (hardware) or the process exits
for the init system to restart it (software).

Three kinds, chosen by the mission's ``[watchdog] kind``:

* ``hardware`` -- :class:`HardwareWatchdog`, the Linux watchdog API (``/dev/watchdog``): opening
  the device arms it, any write is a keepalive, ``WDIOC_SETTIMEOUT``/``WDIOC_GETTIMEOUT`` set and
  read the timeout (whole seconds), and writing ``'V'`` just before closing (the *magic close*)
  disarms it. Closing without the magic leaves it armed, so a supervisor that crashes or exits
  on a fatal error still gets the board reset. (A kernel built with ``CONFIG_WATCHDOG_NOWAYOUT``
  ignores the magic close; then nothing but a reset stops it, by design.)
* ``software`` -- :class:`SoftwareWatchdog`, a monotonic deadline checked by a daemon thread.
* ``none`` -- no watchdog; strokes are still gated and counted, so telemetry still shows frames
  in which some partition made no progress.

The :class:`Watchdog` facade (built by :func:`make_watchdog` from the mission's section) keeps
the counters that housekeeping telemetry reports (:meth:`Watchdog.counters`):
``attempted`` (frames in which a stroke was considered), ``confirmed`` (keepalives actually
delivered), ``withheld`` (frames in which some partition made no progress) and ``failed``
(keepalives the device refused).
"""

from __future__ import annotations

import errno
import math
import os
import platform
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from flight import errors, events

__all__ = [
    "EXIT_SOFTWARE_WATCHDOG",
    "WDIOC_GETTIMEOUT",
    "WDIOC_KEEPALIVE",
    "WDIOC_SETTIMEOUT",
    "HardwareWatchdog",
    "SoftwareWatchdog",
    "Watchdog",
    "WatchdogCounters",
    "WatchdogDevice",
    "WatchdogSettings",
    "exit_on_expire",
    "ioctl_number",
    "make_watchdog",
]

#: Exit status of a process killed by its software watchdog. 124 is what ``timeout(1)`` uses for
#: "timed out", so an init system or a HIL harness can tell a watchdog exit from a crash (signal)
#: or a processor-reset request.
EXIT_SOFTWARE_WATCHDOG = 124

# --- ioctl numbers ------------------------------------------------------------------------------
# Linux encodes an ioctl request as dir | size | type | nr. The generic layout (x86, arm, arm64,
# riscv, s390, ...) has 2 direction bits and 14 size bits; alpha, mips, powerpc and sparc have 3
# direction bits, 13 size bits and different direction values (asm/ioctl.h of each arch).
_GENERIC = (14, 0, 1, 2)  # size bits, NONE, WRITE, READ
_OTHER = (13, 1, 4, 2)
_OTHER_ARCHES = ("alpha", "mips", "ppc", "powerpc", "sparc")


def ioctl_number(direction: str, kind: str, nr: int, size: int, machine: str | None = None) -> int:
    """``_IOC(dir, type, nr, size)`` for this (or the named) machine; ``direction`` is one of
    ``""`` (_IO), ``"r"`` (_IOR), ``"w"`` (_IOW), ``"rw"`` (_IOWR)."""
    machine = (machine if machine is not None else platform.machine()).lower()
    size_bits, none, write, read = _OTHER if machine.startswith(_OTHER_ARCHES) else _GENERIC
    if not 0 <= size < 1 << size_bits:
        raise ValueError(f"ioctl argument size {size} does not fit in {size_bits} bits")
    value = {"": none, "r": read, "w": write, "rw": read | write}[direction]
    # nr in bits 0-7, type in 8-15, size from bit 16, direction above the size field
    return (value << (16 + size_bits)) | (size << 16) | (ord(kind) << 8) | nr


_INT = struct.calcsize("i")
#: ``_IOR('W', 5, int)``: keepalive without writing (linux/watchdog.h).
WDIOC_KEEPALIVE = ioctl_number("r", "W", 5, _INT)
#: ``_IOWR('W', 6, int)``: set the timeout in seconds; the driver writes back what it chose.
WDIOC_SETTIMEOUT = ioctl_number("rw", "W", 6, _INT)
#: ``_IOR('W', 7, int)``: read the timeout in seconds.
WDIOC_GETTIMEOUT = ioctl_number("r", "W", 7, _INT)

_KEEPALIVE_BYTE = b"\0"  # any byte but 'V' (a write without 'V' also cancels a pending magic)
_MAGIC_BYTE = b"V"


class WatchdogDevice(Protocol):
    """What the :class:`Watchdog` facade needs from a watchdog."""

    kind: str
    timeout_s: float | None

    @property
    def closed(self) -> bool: ...

    def keepalive(self) -> bool: ...

    def close(self, magic: bool = True) -> bool: ...


class WatchdogSettings(Protocol):
    """The mission's ``[watchdog]`` section (:class:`flight.mission.WatchdogConfig`)."""

    kind: str
    device: str
    timeout_s: float


def _default_ioctl(fd: int, request: int, arg: bytes) -> bytes:
    import fcntl  # Linux only; imported here so the module loads anywhere

    return fcntl.ioctl(fd, request, arg)


class HardwareWatchdog:
    """A Linux watchdog device (``/dev/watchdog``). Opening arms it.

    ``timeout_s`` (whole seconds) is set with ``WDIOC_SETTIMEOUT`` and read back with
    ``WDIOC_GETTIMEOUT``; drivers round to what the hardware supports, so :attr:`timeout_s` is
    the value the driver reports and :attr:`requested_timeout_s` what was asked. With
    ``timeout_s=None`` the driver's current timeout is kept (and read, if the driver can).

    The system calls are injectable (``open_fn``, ``write_fn``, ``ioctl_fn``, ``close_fn``, with
    the signatures of :func:`os.open`, :func:`os.write`, :func:`fcntl.ioctl`, :func:`os.close`)
    so the logic is tested without a device. The fd is opened ``O_CLOEXEC`` so exec'd partition
    processes do not hold the device open.
    """

    kind = "hardware"

    def __init__(
        self,
        path: str | os.PathLike[str] = "/dev/watchdog",
        timeout_s: int | None = None,
        *,
        ioctl_keepalive: bool = False,
        open_fn: Callable[[str, int], int] = os.open,
        write_fn: Callable[[int, bytes], int] = os.write,
        ioctl_fn: Callable[[int, int, bytes], bytes] = _default_ioctl,
        close_fn: Callable[[int], None] = os.close,
    ) -> None:
        if timeout_s is not None and (
            isinstance(timeout_s, bool) or not isinstance(timeout_s, int) or timeout_s < 1
        ):
            raise errors.ConfigError(
                f"watchdog {os.fspath(path)}: timeout_s must be a whole number of seconds >= 1 "
                f"(the Linux watchdog API takes an int), got {timeout_s!r}"
            )
        self.path = os.fspath(path)
        self.requested_timeout_s = timeout_s
        self.ioctl_keepalive = ioctl_keepalive
        self._write, self._ioctl, self._close = write_fn, ioctl_fn, close_fn
        try:
            self._fd: int | None = open_fn(self.path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            hint = " (another process has it open)" if exc.errno == errno.EBUSY else ""
            raise errors.ConfigError(
                f"watchdog device {self.path}: cannot open: {exc.strerror or exc}{hint}"
            ) from exc
        # From here the device is armed: if configuring it fails, disarm before raising.
        try:
            if timeout_s is not None:
                self._int_ioctl(WDIOC_SETTIMEOUT, timeout_s)
        except OSError as exc:
            self.close(magic=True)
            raise errors.ConfigError(
                f"watchdog device {self.path}: cannot set a {timeout_s} s timeout "
                f"(WDIOC_SETTIMEOUT): {exc.strerror or exc}"
            ) from exc
        try:
            self.timeout_s: float | None = self._int_ioctl(WDIOC_GETTIMEOUT, 0)
        except OSError:
            self.timeout_s = timeout_s  # some drivers cannot report it; trust what was set

    def _int_ioctl(self, request: int, value: int) -> int:
        assert self._fd is not None
        out = self._ioctl(self._fd, request, struct.pack("i", value))
        return struct.unpack("i", out[:_INT])[0]

    @property
    def closed(self) -> bool:
        return self._fd is None

    def keepalive(self) -> bool:
        """Stroke: write one byte (or ``WDIOC_KEEPALIVE``). True when the driver took it;
        ``OSError`` propagates (the facade counts it as a failed stroke)."""
        if self._fd is None:
            raise ValueError(f"watchdog {self.path} is closed")
        if self.ioctl_keepalive:
            self._int_ioctl(WDIOC_KEEPALIVE, 0)
            return True
        return self._write(self._fd, _KEEPALIVE_BYTE) == 1

    def close(self, magic: bool = True) -> bool:
        """Close the device; with ``magic`` write ``'V'`` first to disarm it. Returns True when
        the magic byte was written (the driver should now be disarmed). Closing twice is a no-op.
        """
        if self._fd is None:
            return False
        fd, self._fd = self._fd, None
        disarmed = False
        try:
            if magic:
                try:
                    disarmed = self._write(fd, _MAGIC_BYTE) == 1
                except OSError:
                    disarmed = False
        finally:
            self._close(fd)
        return disarmed

    def __enter__(self) -> HardwareWatchdog:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # Leave it armed when unwinding on an error: a failing supervisor should reset the board.
        self.close(magic=exc_type is None)


def exit_on_expire(overdue_s: float) -> None:
    """Default expiry action: one line to stderr, then ``os._exit(EXIT_SOFTWARE_WATCHDOG)``.

    It uses ``os.write`` on fd 2 and ``os._exit`` on purpose: the supervisor thread is hung and
    may hold the locks that ``logging``, ``print`` or atexit handlers would need, and the point
    is to get the process restarted, not to shut down cleanly.
    """
    message = f"flight: software watchdog expired ({overdue_s:.3f} s overdue); exiting\n"
    try:
        os.write(2, message.encode())
    finally:
        os._exit(EXIT_SOFTWARE_WATCHDOG)


def _wait_on_event(stop: threading.Event, seconds: float) -> bool:
    """The watchdog thread's default sleep: real time, cut short when ``stop`` is set."""
    return stop.wait(seconds)


class SoftwareWatchdog:
    """A monotonic deadline: ``on_expire(overdue_s)`` runs if :meth:`keepalive` is not called
    within ``timeout_s``. Used when the board has no watchdog device.

    The deadline is watched by a **daemon thread**, not from the supervisor loop: a check in the
    loop cannot fire when the loop is what hangs. The thread only sleeps and compares floats, and
    a keepalive is a single attribute store (no lock), so a hung supervisor cannot block it,
    except one hung in native code that holds the GIL; that case needs the hardware watchdog or
    the init system's own watchdog. ``start=False`` gives a thread-less watchdog that only
    fires from :meth:`check` (deterministic tests, or a host that provides its own thread).

    ``clock`` and ``wait`` go together: the thread reads the time from ``clock`` and sleeps with
    ``wait(stop, seconds)``, which sleeps ``seconds`` of that clock's time and returns early
    once the event ``stop`` is set (:meth:`close`). The defaults are the monotonic clock and
    ``stop.wait``; a test passes a fake clock and a ``wait`` that moves with it, so the thread
    runs without wall-clock margins.

    ``on_expire`` runs once per missed deadline; if it returns (tests), a later keepalive
    re-arms the watchdog. ``close(magic=False)`` keeps the timer running, like a hardware
    watchdog left armed.
    """

    kind = "software"

    def __init__(
        self,
        timeout_s: float,
        on_expire: Callable[[float], object] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[threading.Event, float], object] = _wait_on_event,
        start: bool = True,
    ) -> None:
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
            raise errors.ConfigError(
                f"software watchdog: timeout_s must be a number: {timeout_s!r}"
            )
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise errors.ConfigError(f"software watchdog: timeout_s must be > 0, got {timeout_s}")
        self.timeout_s: float | None = float(timeout_s)
        self._on_expire = on_expire if on_expire is not None else exit_on_expire
        self._clock = clock
        self._wait = wait
        self._deadline = clock() + self.timeout_s
        self._fired_deadline: float | None = None
        self._fire_lock = threading.Lock()  # between the thread and check(); never in keepalive
        self._stop = threading.Event()
        self._closed = False
        self.expirations = 0
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(
                target=self._run, name="flight-software-watchdog", daemon=True
            )
            self._thread.start()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def deadline(self) -> float:
        """Clock time after which the watchdog fires."""
        return self._deadline

    def keepalive(self) -> bool:
        if self._closed:
            raise ValueError("software watchdog is closed")
        self._deadline = self._clock() + self.timeout_s  # type: ignore[operator]
        return True

    def check(self, now: float | None = None) -> bool:
        """Fire if the deadline has passed (once per deadline). True when it fired now."""
        now = self._clock() if now is None else now
        deadline = self._deadline
        with self._fire_lock:
            if now < deadline or self._fired_deadline == deadline:
                return False
            self._fired_deadline = deadline
            self.expirations += 1
        self._on_expire(now - deadline)
        return True

    def _run(self) -> None:
        assert self.timeout_s is not None
        while not self._stop.is_set():
            remaining = self._deadline - self._clock()
            if remaining > 0:
                self._wait(self._stop, remaining)
            elif not self.check():
                # Already fired for this deadline: sleep until a keepalive can have moved it.
                self._wait(self._stop, self.timeout_s)

    def close(self, magic: bool = True) -> bool:
        """Stop the watchdog (``magic=True``), or only refuse further keepalives while the timer
        keeps running (``magic=False``). Returns True when disarmed."""
        if self._closed:
            return False
        self._closed = True
        if not magic:
            return False
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        return True


@dataclass
class WatchdogCounters:
    """Totals since the watchdog was opened (housekeeping telemetry)."""

    attempted: int = 0  # frames in which a stroke was considered
    confirmed: int = 0  # keepalives delivered to the watchdog
    withheld: int = 0  # frames in which some partition proved no progress
    failed: int = 0  # keepalives the watchdog refused or that raised


class Watchdog:
    """The supervisor's watchdog: progress-gated strokes over an optional device.

    ``device=None`` (without ``opener``) is the ``none`` kind: nothing is stroked and
    :meth:`stroke` always returns False, but gating and counters work the same.

    **Arming is deferred** when built with an ``opener`` (as :meth:`from_config` does): the
    device is opened by :meth:`arm` or, at the latest, by the first :meth:`stroke` call, whether
    or not that stroke is withheld. Opening arms the timer, and the supervisor's start-up (model
    loading, numba warm-up, forking and waiting for workers) can take longer than a 2 s timeout;
    start-up hangs are the recovery state machine's start deadlines' business.

    The WATCHDOG_STROKE_WITHHELD event is emitted when a withholding episode starts or its
    laggards change, not on every frame (a hung partition would otherwise flood the event ring
    at the frame rate); ``totals.withheld`` counts every frame.
    """

    def __init__(
        self,
        device: WatchdogDevice | None = None,
        log: events.EventLog | None = None,
        *,
        opener: Callable[[], WatchdogDevice] | None = None,
        kind: str | None = None,
    ) -> None:
        if device is not None and opener is not None:
            raise ValueError("give a device or an opener, not both")
        self.device = device
        self.log = log if log is not None else events.EventLog()
        self.totals = WatchdogCounters()
        self.consecutive_withheld = 0
        self.last_laggards: tuple[str, ...] = ()
        self._opener = opener
        self._kind = kind or (device.kind if device is not None else "none")
        self._closed = False
        if device is not None:
            self._armed_event()

    def _armed_event(self) -> None:
        assert self.device is not None
        self.log.emit(
            events.WATCHDOG_ARMED,
            kind=self.device.kind,
            device=getattr(self.device, "path", None),
            timeout_s=self.device.timeout_s,
        )

    @classmethod
    def from_config(
        cls,
        config: WatchdogSettings,
        *,
        log: events.EventLog | None = None,
        on_expire: Callable[[float], object] | None = None,
        arm: bool = False,
        **hardware_options: Any,
    ) -> Watchdog:
        """The watchdog a mission's ``[watchdog]`` section asks for, armed now (``arm``) or at
        the first stroke.

        A hardware device that does not exist or is not writable is a ConfigError here, before
        arming. ``on_expire`` replaces the software watchdog's default (exit); when given, expiry
        also emits WATCHDOG_EXPIRED (from the watchdog thread). The default action emits
        nothing: it must not wait on event listeners a hung supervisor may be blocking; the exit
        status :data:`EXIT_SOFTWARE_WATCHDOG` records the cause. ``hardware_options`` go to
        :class:`HardwareWatchdog` (e.g. injected system calls).
        """
        log = log if log is not None else events.EventLog()
        opener: Callable[[], WatchdogDevice]
        if config.kind == "none":
            return cls(None, log)
        if config.kind == "hardware":
            path = config.device
            timeout = config.timeout_s
            if isinstance(timeout, float) and timeout.is_integer():
                timeout = int(timeout)
            if "open_fn" not in hardware_options and not os.access(path, os.W_OK):
                reason = "does not exist" if not os.path.exists(path) else "is not writable"
                raise errors.ConfigError(f"watchdog device {path} {reason}")

            def opener() -> WatchdogDevice:
                return HardwareWatchdog(path, timeout, **hardware_options)

        elif config.kind == "software":
            timeout_s = config.timeout_s
            SoftwareWatchdog(timeout_s, start=False)  # validate now, not at arming
            handler: Callable[[float], object] = exit_on_expire
            if on_expire is not None:
                user = on_expire

                def handler(overdue_s: float) -> None:
                    log.emit(events.WATCHDOG_EXPIRED, overdue_s=overdue_s)
                    user(overdue_s)

            def opener() -> WatchdogDevice:
                return SoftwareWatchdog(timeout_s, handler)

        else:
            raise errors.ConfigError(
                f"watchdog kind must be 'none', 'software' or 'hardware', not {config.kind!r}"
            )
        watchdog = cls(None, log, opener=opener, kind=config.kind)
        if arm:
            watchdog.arm()
        return watchdog

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def armed(self) -> bool:
        return self.device is not None and not self.device.closed

    def arm(self) -> bool:
        """Open (and so arm) the watchdog if not yet done. True when a device is armed."""
        if self._closed:
            raise ValueError("watchdog is closed")
        if self.device is None and self._opener is not None:
            self.device = self._opener()
            self._armed_event()
        return self.armed

    def stroke(self, progress: Mapping[str, bool]) -> bool:
        """Stroke only if every partition in ``progress`` proved progress this frame.

        ``progress`` names the partitions expected to progress this frame (the supervisor leaves
        out disabled ones); an empty mapping means there are none, and the supervisor's own
        liveness is enough. Arms the watchdog on the first call. True when a keepalive was
        delivered.
        """
        self.arm()
        self.totals.attempted += 1
        laggards = tuple(sorted(name for name, ok in progress.items() if not ok))
        if laggards:
            self.totals.withheld += 1
            if laggards != self.last_laggards:
                self.log.emit(
                    events.WATCHDOG_STROKE_WITHHELD,
                    laggards=list(laggards),
                    consecutive=self.consecutive_withheld + 1,
                )
            self.consecutive_withheld += 1
            self.last_laggards = laggards
            return False
        self.consecutive_withheld = 0
        self.last_laggards = ()
        if self.device is None:
            return False
        error = None
        try:
            delivered = self.device.keepalive()
        except OSError as exc:
            delivered, error = False, exc.strerror or str(exc)
        if delivered:
            self.totals.confirmed += 1
        else:
            self.totals.failed += 1
            self.log.emit(events.WATCHDOG_STROKE_FAILED, kind=self.kind, error=error)
        return delivered

    def close(self, magic: bool = True) -> bool:
        """Close the device (``magic``: disarm it). True when disarmed. A watchdog never armed
        is just marked closed; closing twice does nothing."""
        if self._closed:
            return False
        self._closed = True
        if self.device is None or self.device.closed:
            return False
        disarmed = self.device.close(magic)
        if disarmed:
            self.log.emit(events.WATCHDOG_DISARMED, kind=self.kind)
        else:
            self.log.emit(events.WATCHDOG_LEFT_ARMED, kind=self.kind)
        return disarmed

    def counters(self) -> dict[str, Any]:
        """Counters and state for housekeeping telemetry (``totals`` holds the raw counters)."""
        c = self.totals
        return {
            "kind": self.kind,
            "armed": self.armed,
            "timeout_s": None if self.device is None else self.device.timeout_s,
            "attempted": c.attempted,
            "confirmed": c.confirmed,
            "withheld": c.withheld,
            "failed": c.failed,
            "consecutive_withheld": self.consecutive_withheld,
            "laggards": list(self.last_laggards),
        }


def make_watchdog(
    config: WatchdogSettings,
    *,
    log: events.EventLog | None = None,
    on_expire: Callable[[float], object] | None = None,
    arm: bool = False,
    **hardware_options: Any,
) -> Watchdog:
    """The supervisor's watchdog for a mission's ``[watchdog]`` section
    (:meth:`Watchdog.from_config`; armed at the first stroke unless ``arm``)."""
    return Watchdog.from_config(config, log=log, on_expire=on_expire, arm=arm, **hardware_options)
