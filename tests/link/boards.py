"""A real board on loopback for the link's end-to-end tests: ``flight run --link`` as its own
process, a key file, a state directory (the fixtures are in conftest.py)."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import flight
from hil.boards.local import free_udp_pair  # noqa: F401 (the fixtures' port pairs)

DATA = Path(flight.__file__).resolve().parent / "data"
DEFAULT_MISSION = (DATA / "default_mission.toml").read_text()
START_TIMEOUT = 240  # a cold numba cache on a loaded 2-core machine; never a measured margin


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_keys(path: Path, keys: dict[int, str], active: int = 1) -> Path:
    lines = [f"active = {active}"]
    for spi, secret in keys.items():
        lines += ["[[key]]", f"spi = {spi}", f'secret = "{secret}"']
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def mission_text(link: str = "", test_mode: bool = False, **replacements: str) -> str:
    """The default mission with absolute data paths, some lines replaced (by first word), and
    a [link] table appended."""
    text = DEFAULT_MISSION.replace('"digits_cnn.flm"', f'"{DATA / "digits_cnn.flm"}"')
    text = text.replace('"digits_test.npz"', f'"{DATA / "digits_test.npz"}"')
    lines = text.splitlines()
    if test_mode:
        replacements.setdefault("test_mode", "test_mode = true")
    for key, line in replacements.items():
        index = next(i for i, old in enumerate(lines) if old.split(" ")[0] == key)
        lines[index] = line
    return "\n".join(lines) + "\n" + link


class Board:
    """One ``flight run --link`` process and what it needs; restartable on the same state."""

    def __init__(self, tmp: Path, url: str, mission: Path, *extra: str) -> None:
        self.tmp, self.url, self.mission, self.extra = tmp, url, mission, extra
        self.state = tmp / "state"
        self.proc: subprocess.Popen | None = None
        self.summary: dict | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flight.cli", "run", "--mission", str(self.mission),
             "--link", self.url, "--forever", "--json", "--state-dir", str(self.state),
             *self.extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd="/",
        )  # fmt: skip

    def stop(self) -> dict:
        """SIGTERM, and the JSON summary it prints."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=120)
        assert self.proc.returncode == 0, err[-3000:]
        self.summary = json.loads(out.strip().splitlines()[-1])
        self.proc = None
        return self.summary

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=60)
        self.proc = None

    def ground(self, key_file=None, **kwargs):
        """A ground station on this board; over TCP it waits until the board listens."""
        from flight.errors import ConfigError
        from hil.link.ground import GroundStation

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                return GroundStation(self.url, key_file, **kwargs)
            except ConfigError:
                if not self.url.startswith("tcp:") or time.monotonic() > deadline:
                    raise
                assert self.proc is not None and self.proc.poll() is None, "the board died"
                time.sleep(0.1)

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        children = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                children += [int(c) for c in (task / "children").read_text().split()]
        return children


def wait_until(ground, predicate, timeout: float = START_TIMEOUT):
    """The first telemetry packet satisfying ``predicate`` (fails the test on timeout)."""
    tm = ground.wait_for(predicate, timeout=timeout)
    assert tm is not None, "the board sent no such telemetry in time"
    return tm


def wait_for_exit(proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)


class FakeTransport:
    """Hands out what a test queued; keeps what the service sent."""

    address = ("test", 0)

    def __init__(self) -> None:
        self.inbox: list[bytes] = []
        self.sent: list[bytes] = []
        self.closed = False

    def receive(self, max_items: int) -> list[bytes]:
        items, self.inbox = self.inbox[:max_items], self.inbox[max_items:]
        return items

    def send(self, raw: bytes) -> bool:
        self.sent.append(raw)
        return True

    def close(self) -> None:
        self.closed = True

    def counters(self) -> dict[str, int]:
        return {"tx_items": len(self.sent)}


class NullModem:
    """Two pseudo-terminals joined like two UARTs by a null-modem cable: what one slave
    writes, the other slave reads. ``board`` and ``ground`` are the two device paths."""

    def __init__(self) -> None:
        import os
        import threading

        self._fds = [os.openpty(), os.openpty()]
        self.board, self.ground = (os.ttyname(slave) for _, slave in self._fds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, daemon=True)

    def _relay(self) -> None:
        import os
        import select

        a, b = self._fds[0][0], self._fds[1][0]
        peer = {a: b, b: a}
        while not self._stop.is_set():
            ready, _, _ = select.select([a, b], [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # the slave side is not open yet (or any more)
                    continue
                os.write(peer[fd], data)

    def __enter__(self) -> NullModem:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import os

        self._stop.set()
        self._thread.join(timeout=5)
        for master, slave in self._fds:
            os.close(master)
            os.close(slave)
