"""Watchdogs: ioctl numbers, the device protocol (fake and regular-file devices), the software
deadline (threaded and thread-less), the default exit, and progress-gated strokes."""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from flight import errors, events
from flight.watchdog import (
    EXIT_SOFTWARE_WATCHDOG,
    WDIOC_GETTIMEOUT,
    WDIOC_KEEPALIVE,
    WDIOC_SETTIMEOUT,
    HardwareWatchdog,
    SoftwareWatchdog,
    Watchdog,
    ioctl_number,
    make_watchdog,
)

# --- ioctl numbers ------------------------------------------------------------------------------


def test_ioctl_numbers_match_linux_headers():
    # values from <linux/watchdog.h> as compiled on x86-64 / arm64
    assert ioctl_number("r", "W", 5, 4, "x86_64") == 0x80045705
    assert ioctl_number("rw", "W", 6, 4, "aarch64") == 0xC0045706
    assert ioctl_number("r", "W", 7, 4, "armv7l") == 0x80045707
    assert ioctl_number("", "W", 0, 0, "x86_64") == 0x5700
    # powerpc / mips: 3 direction bits, READ=2, WRITE=4
    assert ioctl_number("r", "W", 7, 4, "ppc64le") == 0x40045707
    assert ioctl_number("rw", "W", 6, 4, "mips64") == 0xC0045706
    assert ioctl_number("w", "W", 6, 4, "mips") == 0x80045706
    with pytest.raises(ValueError):
        ioctl_number("r", "W", 1, 1 << 14, "x86_64")


def test_module_constants_for_this_machine():
    assert (WDIOC_KEEPALIVE & 0xFFFF, WDIOC_SETTIMEOUT & 0xFFFF, WDIOC_GETTIMEOUT & 0xFFFF) == (
        0x5705,
        0x5706,
        0x5707,
    )
    assert WDIOC_SETTIMEOUT >> 16 & 0x1FFF == 4  # sizeof(int)


# --- hardware watchdog over a fake device --------------------------------------------------------


class FakeDevice:
    """Records every system call; the driver rounds timeouts up to even seconds."""

    def __init__(self, *, set_error: int | None = None, get_error: int | None = None) -> None:
        self.calls: list[tuple] = []
        self.written = bytearray()
        self.timeout = 60
        self.set_error = set_error
        self.get_error = get_error
        self.write_error: int | None = None
        self.closed = False

    def open(self, path: str, flags: int) -> int:
        self.calls.append(("open", path, flags))
        return 42

    def write(self, fd: int, data: bytes) -> int:
        assert fd == 42 and not self.closed
        self.calls.append(("write", bytes(data)))
        if self.write_error is not None:
            raise OSError(self.write_error, os.strerror(self.write_error))
        self.written += data
        return len(data)

    def ioctl(self, fd: int, request: int, arg: bytes) -> bytes:
        assert fd == 42 and not self.closed
        (value,) = struct.unpack("i", arg)
        self.calls.append(("ioctl", request, value))
        if request == WDIOC_SETTIMEOUT:
            if self.set_error is not None:
                raise OSError(self.set_error, os.strerror(self.set_error))
            self.timeout = value + value % 2
            return struct.pack("i", self.timeout)
        if request == WDIOC_GETTIMEOUT:
            if self.get_error is not None:
                raise OSError(self.get_error, os.strerror(self.get_error))
            return struct.pack("i", self.timeout)
        if request == WDIOC_KEEPALIVE:
            return arg
        raise OSError(errno.ENOTTY, "bad ioctl")

    def ioctl_for_any_fd(self, fd: int, request: int, arg: bytes) -> bytes:
        """The ioctl half only, for a real file opened with the real os.open."""
        return self.ioctl(42, request, arg)

    def close(self, fd: int) -> None:
        assert fd == 42 and not self.closed
        self.calls.append(("close",))
        self.closed = True

    def options(self) -> dict:
        return {
            "open_fn": self.open,
            "write_fn": self.write,
            "ioctl_fn": self.ioctl,
            "close_fn": self.close,
        }


def test_hardware_open_sets_and_reads_back_timeout():
    dev = FakeDevice()
    wd = HardwareWatchdog("/dev/watchdog1", 5, **dev.options())
    assert dev.calls[0] == ("open", "/dev/watchdog1", os.O_WRONLY | os.O_CLOEXEC)
    assert dev.calls[1] == ("ioctl", WDIOC_SETTIMEOUT, 5)
    assert dev.calls[2] == ("ioctl", WDIOC_GETTIMEOUT, 0)
    assert wd.requested_timeout_s == 5
    assert wd.timeout_s == 6  # what the driver chose
    assert wd.kind == "hardware" and not wd.closed


def test_hardware_keepalive_writes_one_non_magic_byte_and_magic_close_disarms():
    dev = FakeDevice()
    wd = HardwareWatchdog("/dev/watchdog", 2, **dev.options())
    assert wd.keepalive() and wd.keepalive()
    assert wd.close() is True
    assert bytes(dev.written) == b"\0\0V"
    assert dev.calls[-2:] == [("write", b"V"), ("close",)]
    assert wd.closed
    assert wd.close() is False  # idempotent, no second close
    assert dev.calls.count(("close",)) == 1
    with pytest.raises(ValueError, match="closed"):
        wd.keepalive()


def test_hardware_close_without_magic_leaves_it_armed():
    dev = FakeDevice()
    wd = HardwareWatchdog("/dev/watchdog", None, **dev.options())
    wd.keepalive()
    assert wd.close(magic=False) is False
    assert bytes(dev.written) == b"\0"
    assert ("write", b"V") not in dev.calls
    assert dev.closed


def test_hardware_ioctl_keepalive():
    dev = FakeDevice()
    wd = HardwareWatchdog("/dev/watchdog", None, ioctl_keepalive=True, **dev.options())
    assert wd.keepalive()
    assert ("ioctl", WDIOC_KEEPALIVE, 0) in dev.calls
    assert dev.written == b""
    assert wd.timeout_s == 60  # the driver's default, read back
    wd.close()


def test_hardware_failed_settimeout_disarms_and_raises():
    dev = FakeDevice(set_error=errno.EINVAL)
    with pytest.raises(errors.ConfigError, match=r"/dev/watchdog: cannot set a 7 s timeout"):
        HardwareWatchdog("/dev/watchdog", 7, **dev.options())
    assert bytes(dev.written) == b"V" and dev.closed


def test_hardware_timeout_unreadable_trusts_requested():
    dev = FakeDevice(get_error=errno.ENOTTY)
    assert HardwareWatchdog("/dev/watchdog", 4, **dev.options()).timeout_s == 4


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_hardware_timeout_must_be_whole_seconds(bad):
    with pytest.raises(errors.ConfigError, match="whole number of seconds"):
        HardwareWatchdog("/dev/watchdog", bad, **FakeDevice().options())


def test_hardware_missing_and_busy_device(tmp_path):
    with pytest.raises(errors.ConfigError, match="nope/watchdog: cannot open"):
        HardwareWatchdog(tmp_path / "nope" / "watchdog")

    def busy(path, flags):
        raise OSError(errno.EBUSY, "Device or resource busy")

    with pytest.raises(errors.ConfigError, match="another process has it open"):
        HardwareWatchdog("/dev/watchdog", 2, open_fn=busy)


def test_hardware_context_manager_disarms_only_on_clean_exit():
    dev = FakeDevice()
    with HardwareWatchdog("/dev/watchdog", 2, **dev.options()) as wd:
        wd.keepalive()
    assert bytes(dev.written) == b"\0V"

    dev = FakeDevice()
    with pytest.raises(RuntimeError), HardwareWatchdog("/dev/watchdog", 2, **dev.options()) as wd:
        wd.keepalive()
        raise RuntimeError("supervisor failed")
    assert bytes(dev.written) == b"\0" and dev.closed  # left armed: the board resets


def test_regular_file_as_device_real_syscalls(tmp_path: Path):
    path = tmp_path / "watchdog"
    path.write_bytes(b"")
    wd = HardwareWatchdog(path)  # no timeout: only GETTIMEOUT, which a file refuses (ENOTTY)
    assert wd.timeout_s is None
    assert wd.keepalive() and wd.keepalive() and wd.keepalive()
    assert wd.close(magic=True)
    assert path.read_bytes() == b"\0\0\0V"

    path.write_bytes(b"")
    wd = HardwareWatchdog(path)
    wd.keepalive()
    assert wd.close(magic=False) is False
    assert path.read_bytes() == b"\0"


def test_regular_file_refuses_settimeout(tmp_path: Path):
    path = tmp_path / "watchdog"
    path.write_bytes(b"")
    with pytest.raises(errors.ConfigError, match="WDIOC_SETTIMEOUT"):
        HardwareWatchdog(path, 3)
    assert path.read_bytes() == b"V"  # the real ioctl failed, so it was disarmed at once


REAL_DEVICE = os.environ.get("FLIGHT_TEST_WATCHDOG_DEVICE", "")


@pytest.mark.skipif(
    not REAL_DEVICE or not os.path.exists(REAL_DEVICE),
    reason="set FLIGHT_TEST_WATCHDOG_DEVICE=/dev/watchdogN (e.g. softdog, nowayout=0) to test "
    "a real device; this VM has no watchdog device and no loadable modules",
)
def test_real_device_set_get_keepalive_magic_close():
    wd = HardwareWatchdog(REAL_DEVICE, 30)
    try:
        assert wd.timeout_s is not None and wd.timeout_s >= 1
        for _ in range(3):
            assert wd.keepalive()
    finally:
        assert wd.close(magic=True)


# --- software watchdog --------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_software_check_fires_once_per_missed_deadline_and_rearms():
    clock = FakeClock()
    fired: list[float] = []
    wd = SoftwareWatchdog(2.0, fired.append, clock=clock, start=False)
    clock.now = 101.9
    assert not wd.check()
    clock.now = 102.5
    assert wd.check() and fired == [pytest.approx(0.5)]
    assert not wd.check(103.0)  # once per deadline
    assert wd.keepalive()
    assert wd.deadline == pytest.approx(104.5)
    assert not wd.check(104.4)
    assert wd.check(105.0) and wd.expirations == 2
    assert wd.close()
    with pytest.raises(ValueError):
        wd.keepalive()


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "1"])
def test_software_timeout_validated(bad):
    with pytest.raises(errors.ConfigError):
        SoftwareWatchdog(bad, lambda s: None, start=False)


class FakeTime:
    """A clock and a ``wait`` for the software watchdog's thread: time moves only when the test
    calls :meth:`advance`, and :meth:`settle` returns once the thread has seen the latest time
    and gone back to sleep. The thread runs for real; only the clock is fake, so nothing depends
    on how fast a loaded machine schedules it."""

    def __init__(self) -> None:
        self.now = 100.0
        self._cond = threading.Condition()
        self._generation = 0  # bumped by advance()
        self._seen = -1  # the generation the sleeping thread last saw; -1: not sleeping

    def __call__(self) -> float:
        return self.now

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        with self._cond:
            until = self.now + seconds
            while not stop.is_set() and self.now < until:
                self._seen = self._generation
                self._cond.notify_all()
                self._cond.wait(0.01)  # close() sets stop without telling us: poll it
            self._seen = -1
            return stop.is_set()

    def advance(self, seconds: float) -> None:
        with self._cond:
            self.now += seconds
            self._generation += 1
            self._cond.notify_all()

    def settle(self) -> None:
        with self._cond:
            settled = self._cond.wait_for(lambda: self._seen == self._generation, timeout=60)
        assert settled, "the watchdog thread never went back to sleep"


def _software(timeout_s: float, on_expire, time_: FakeTime) -> SoftwareWatchdog:
    wd = SoftwareWatchdog(timeout_s, on_expire, clock=time_, wait=time_.wait)
    time_.settle()
    return wd


def test_software_thread_expires_when_not_stroked():
    time_ = FakeTime()
    overdue: list[float] = []
    wd = _software(2.0, overdue.append, time_)
    time_.advance(1.9)
    time_.settle()
    assert overdue == [] and wd.expirations == 0
    time_.advance(0.2)
    time_.settle()
    assert overdue == [pytest.approx(0.1)]
    time_.advance(10.0)
    time_.settle()
    assert wd.expirations == 1  # not again until re-armed
    wd.keepalive()  # re-armed: 2 s from now
    time_.advance(1.9)
    time_.settle()
    assert wd.expirations == 1
    time_.advance(0.5)
    time_.settle()
    assert wd.expirations == 2 and overdue[1] == pytest.approx(0.4)
    assert wd.close()
    assert not wd._thread.is_alive()


def test_software_thread_quiet_while_stroked_then_disarmed():
    time_ = FakeTime()
    fired: list[float] = []
    wd = _software(0.15, fired.append, time_)
    for _ in range(40):  # 0.4 s of frames, stroked every 10 ms
        wd.keepalive()
        time_.advance(0.01)
        time_.settle()
    assert fired == [] and wd.expirations == 0
    wd.keepalive()
    time_.advance(0.149)
    time_.settle()
    assert fired == []
    assert wd.close(magic=True)
    assert not wd._thread.is_alive()
    time_.advance(1.0)  # long past the deadline, with no thread left to notice
    assert fired == [] and wd.expirations == 0


def test_software_close_without_magic_keeps_timer_running():
    time_ = FakeTime()
    fired: list[float] = []
    wd = _software(0.05, fired.append, time_)
    assert wd.close(magic=False) is False
    with pytest.raises(ValueError):
        wd.keepalive()
    time_.advance(0.06)
    time_.settle()
    assert fired == [pytest.approx(0.01)] and wd._thread.is_alive()
    wd._stop.set()  # end the still-armed thread, which no public call may do
    wd._thread.join(timeout=60)


def test_software_thread_on_the_real_clock():
    """The defaults (monotonic clock, stop.wait) together: it fires, and close() stops it."""
    expired = threading.Event()
    overdue: list[float] = []

    def on_expire(late: float) -> None:
        overdue.append(late)
        expired.set()

    wd = SoftwareWatchdog(0.05, on_expire)
    assert expired.wait(60)
    assert overdue[0] >= 0 and wd.expirations >= 1
    assert wd.close()
    assert not wd._thread.is_alive()


def test_default_expiry_exits_hung_process_with_documented_code():
    # The main thread spins in Python holding the GIL between switches: the thread still runs.
    script = textwrap.dedent(
        """
        from flight.watchdog import SoftwareWatchdog
        wd = SoftwareWatchdog(0.1)
        while True:
            pass
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == EXIT_SOFTWARE_WATCHDOG == 124
    assert "software watchdog expired" in proc.stderr


_SUPERVISOR = r"""
import sys, threading
from importlib.resources import files
from flight.mission import load_mission
from flight.watchdog import make_watchdog

# The bundled mission, with a shorter watchdog timeout (still longer than its 200 ms major frame)
text = (files("flight") / "data" / "default_mission.toml").read_text()
assert "\ntimeout_s = 2\n" in text
mission = load_mission(text.replace("\ntimeout_s = 2\n", "\ntimeout_s = 0.5\n"))
watchdog = make_watchdog(mission.watchdog)  # the supervisor's call, default expiry action
for _ in range(3):
    assert watchdog.stroke({"classifier": True})
print(watchdog.kind, watchdog.device.timeout_s, flush=True)
if sys.argv[1] == "hung":  # the supervisor hangs: no more strokes at all
    threading.Event().wait()
while True:  # the supervisor runs on, but a partition is hung: every stroke is withheld
    assert not watchdog.stroke({"classifier": False})
    threading.Event().wait(0.05)
"""


@pytest.mark.parametrize("how", ["hung", "withheld"])
def test_software_watchdog_ends_a_process_that_stops_stroking_with_exit_124(tmp_path, how):
    """A real process builds its watchdog from a mission's [watchdog] section, as the supervisor
    does, strokes it, then stops (hangs, or withholds every stroke): the software watchdog ends
    the process with EXIT_SOFTWARE_WATCHDOG, which init systems and the HIL harness read."""
    env = {**os.environ, "FLIGHT_STATE_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", _SUPERVISOR, how],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.stdout == "software 0.5\n", proc.stderr
    assert proc.returncode == EXIT_SOFTWARE_WATCHDOG == 124, proc.stderr
    assert "flight: software watchdog expired" in proc.stderr


# --- the facade ---------------------------------------------------------------------------------


class CountingDevice:
    kind = "fake"
    timeout_s = 3.0

    def __init__(self) -> None:
        self.strokes = 0
        self.fail: Exception | bool | None = None
        self.closed = False
        self.magic: bool | None = None

    def keepalive(self) -> bool:
        if isinstance(self.fail, Exception):
            raise self.fail
        if self.fail:
            return False
        self.strokes += 1
        return True

    def close(self, magic: bool = True) -> bool:
        self.closed, self.magic = True, magic
        return magic


def test_stroke_only_when_every_partition_progressed():
    log = events.EventLog()
    dev = CountingDevice()
    wd = Watchdog(dev, log)
    assert log.count(events.WATCHDOG_ARMED) == 1
    assert wd.stroke({"classifier": True, "imager": True})
    assert not wd.stroke({"classifier": True, "imager": False})
    assert not wd.stroke({"classifier": True, "imager": False})
    assert not wd.stroke({"classifier": False, "imager": False})
    assert wd.consecutive_withheld == 3
    assert wd.stroke({"classifier": True, "imager": True})
    assert dev.strokes == 2
    c = wd.totals
    assert (c.attempted, c.confirmed, c.withheld, c.failed) == (5, 2, 3, 0)
    # one event per change of laggards, not one per frame
    withheld = [e for e in log if e.definition is events.WATCHDOG_STROKE_WITHHELD]
    assert [e.fields["laggards"] for e in withheld] == [["imager"], ["classifier", "imager"]]
    assert wd.consecutive_withheld == 0 and wd.last_laggards == ()
    tm = wd.counters()
    assert tm["attempted"] == 5 and tm["confirmed"] == 2 and tm["withheld"] == 3
    assert tm["kind"] == "fake" and tm["timeout_s"] == 3.0


def test_stroke_with_no_partitions_counts_supervisor_liveness():
    dev = CountingDevice()
    assert Watchdog(dev).stroke({})
    assert dev.strokes == 1


def test_progress_values_are_truthiness():
    dev = CountingDevice()
    wd = Watchdog(dev)
    assert not wd.stroke({"a": 0, "b": 1})  # e.g. heartbeat deltas
    assert wd.last_laggards == ("a",)


def test_failed_keepalive_is_counted_not_raised():
    log = events.EventLog()
    dev = CountingDevice()
    wd = Watchdog(dev, log)
    dev.fail = OSError(errno.EIO, "I/O error")
    assert not wd.stroke({"a": True})
    dev.fail = True
    assert not wd.stroke({"a": True})
    assert (wd.totals.confirmed, wd.totals.failed, wd.totals.withheld) == (0, 2, 0)
    failures = [e for e in log if e.definition is events.WATCHDOG_STROKE_FAILED]
    assert [e.fields["error"] for e in failures] == ["I/O error", None]


def test_kind_none_gates_and_counts_but_never_strokes():
    log = events.EventLog()
    wd = make_watchdog(SimpleNamespace(kind="none", device="", timeout_s=2.0), log=log)
    assert wd.kind == "none"
    assert not wd.stroke({"a": True})
    assert not wd.stroke({"a": False})
    assert (wd.totals.attempted, wd.totals.confirmed, wd.totals.withheld) == (2, 0, 1)
    assert wd.close() is False
    assert log.count(events.WATCHDOG_ARMED) == 0
    assert wd.counters()["timeout_s"] is None


def test_close_events():
    log = events.EventLog()
    wd = Watchdog(CountingDevice(), log)
    assert wd.close(magic=False) is False
    assert wd.close() is False  # already closed: nothing more
    assert log.count(events.WATCHDOG_LEFT_ARMED) == 1
    assert log.count(events.WATCHDOG_DISARMED) == 0
    log2 = events.EventLog()
    assert Watchdog(CountingDevice(), log2).close()
    assert log2.count(events.WATCHDOG_DISARMED) == 1


def test_from_config_hardware_on_a_regular_file_arms_at_first_stroke(tmp_path: Path):
    path = tmp_path / "wd"
    path.write_bytes(b"")
    dev = FakeDevice()
    log = events.EventLog()
    config = SimpleNamespace(kind="hardware", device=str(path), timeout_s=2.0)
    wd = Watchdog.from_config(config, log=log, ioctl_fn=dev.ioctl_for_any_fd)
    assert wd.kind == "hardware" and not wd.armed and wd.device is None
    assert dev.calls == [] and log.count(events.WATCHDOG_ARMED) == 0
    assert wd.counters()["armed"] is False
    assert not wd.stroke({"classifier": False})  # arms even when withheld
    assert wd.armed and wd.device.timeout_s == 2
    assert ("ioctl", WDIOC_SETTIMEOUT, 2) in dev.calls
    assert wd.stroke({"classifier": True})
    assert wd.close()
    assert path.read_bytes() == b"\0V"
    armed = next(e for e in log if e.definition is events.WATCHDOG_ARMED)
    assert armed.fields == {"kind": "hardware", "device": str(path), "timeout_s": 2}
    with pytest.raises(ValueError, match="closed"):
        wd.stroke({"classifier": True})


def test_from_config_arm_now(tmp_path: Path):
    path = tmp_path / "wd"
    path.write_bytes(b"")
    config = SimpleNamespace(kind="hardware", device=str(path), timeout_s=2)
    wd = make_watchdog(config, arm=True, ioctl_fn=FakeDevice().ioctl_for_any_fd)
    assert wd.armed and wd.arm()  # idempotent
    assert wd.close(magic=False) is False
    assert path.read_bytes() == b""


def test_from_config_hardware_device_checked_before_arming(tmp_path: Path):
    config = SimpleNamespace(kind="hardware", device=str(tmp_path / "watchdog9"), timeout_s=2)
    with pytest.raises(errors.ConfigError, match="watchdog9 does not exist"):
        make_watchdog(config)


def test_close_before_arming_opens_nothing(tmp_path: Path):
    path = tmp_path / "wd"
    path.write_bytes(b"")
    config = SimpleNamespace(kind="hardware", device=str(path), timeout_s=2)
    wd = make_watchdog(config, ioctl_fn=FakeDevice().ioctl_for_any_fd)
    assert wd.close() is False and not wd.armed
    with pytest.raises(ValueError):
        wd.arm()


def test_from_config_software_arms_at_first_stroke_then_expires():
    log = events.EventLog()
    expired = threading.Event()
    config = SimpleNamespace(kind="software", device="/dev/watchdog", timeout_s=0.05)
    wd = Watchdog.from_config(config, log=log, on_expire=lambda s: expired.set())
    assert wd.kind == "software" and not wd.armed
    assert wd.device is None  # nothing runs yet: start-up may take longer than the timeout
    assert log.count(events.WATCHDOG_ARMED) == 0
    before = time.monotonic()
    assert wd.stroke({"classifier": True}) and wd.armed
    after = time.monotonic()
    assert before + 0.05 <= wd.device.deadline <= after + 0.05  # counted from the first stroke
    assert expired.wait(60)
    assert log.count(events.WATCHDOG_EXPIRED) == 1
    assert wd.close()


@pytest.mark.parametrize("timeout", [0, -1, float("nan")])
def test_from_config_software_timeout_checked_at_once(timeout):
    with pytest.raises(errors.ConfigError):
        make_watchdog(SimpleNamespace(kind="software", device="", timeout_s=timeout))


def test_from_config_rejects_unknown_kind():
    with pytest.raises(errors.ConfigError, match="kind"):
        Watchdog.from_config(SimpleNamespace(kind="hw", device="", timeout_s=1.0))
