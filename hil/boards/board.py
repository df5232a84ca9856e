"""What every board is to the harness: a link URL and a key file, a ground station on it, and
a ping that proves the board answers (its round trip).

A board is reached only through its link (docs/link.md). Over UDP the telemetry port has one
listener at a time, so a board hands out ground stations (:meth:`Board.ground`) and the
caller keeps one open per board; :meth:`Board.ping` takes that station when it has one.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING

from flight import errors

if TYPE_CHECKING:
    from hil.link.ground import GroundStation

__all__ = [
    "START_TIMEOUT",
    "Board",
    "BoardError",
    "BoardUnreachable",
    "RemoteBoard",
    "SerialBoard",
    "open_board",
]

#: Seconds a board may take to answer after it starts: a cold numba cache on a loaded 2-core
#: machine compiles for a while. A bound, never a measured margin.
START_TIMEOUT = 240.0


class BoardError(RuntimeError):
    """The board answered, but not as a working rig does (a ping refused: wrong key, a board
    without a key file, a flight mission)."""


class BoardUnreachable(BoardError):
    """The board did not answer in time (down, dead, or the wrong address)."""


class Board:
    """A board at ``url`` commanded with the keys in ``key_file``."""

    def __init__(self, url: str, key_file: str | os.PathLike[str]) -> None:
        from flight.link.transport import parse_url

        parse_url(url)  # ConfigError now for a URL that cannot name a board
        self.url = url
        self.key_file = Path(key_file)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def check_alive(self) -> None:
        """Raise BoardUnreachable when the board is known to be down (a local board's process
        stopped for good); remote boards cannot tell."""

    def ground(self, timeout: float = START_TIMEOUT) -> GroundStation:
        """A ground station on this board (the caller closes it). Over TCP it connects,
        retrying until the board listens or ``timeout`` passes."""
        from hil.link.ground import GroundStation

        deadline = time.monotonic() + timeout
        while True:
            try:
                return GroundStation(self.url, self.key_file)
            except errors.ConfigError:
                if not self.url.startswith("tcp:") or time.monotonic() > deadline:
                    raise
                self.check_alive()
                time.sleep(0.1)

    def ping(self, ground: GroundStation | None = None, timeout: float = 10.0) -> float:
        """Seconds from sending a ``ping`` to its completion report. BoardUnreachable when no
        final report comes within ``timeout``; BoardError when the ping is refused."""
        if ground is None:
            with self.ground(timeout) as own:
                return self.ping(own, timeout)
        token = secrets.randbits(32)
        started = time.monotonic()
        sent = ground.send("ping", token=token)
        for report in ground.follow(sent, timeout):
            stage, code = report.values["stage"], report.values["code"]
            if stage == "COMPLETION_SUCCESS":
                return time.monotonic() - started
            if stage.endswith("FAILURE"):
                raise BoardError(f"{self.url}: ping refused: {stage} {code}")
        raise BoardUnreachable(f"{self.url}: no answer to a ping within {timeout:g} s")

    def wait_ready(self, ground: GroundStation, timeout: float = START_TIMEOUT) -> float:
        """Wait until the board sends telemetry and answers a ping; returns the ping's round
        trip. Commands go up only once telemetry shows the board listens: a command lost
        while it starts would still use up a sequence number."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            left = deadline - time.monotonic()
            if left <= 0:
                raise BoardUnreachable(f"{self.url}: not ready within {timeout:g} s")
            if ground.wait_for(lambda tm: True, timeout=min(1.0, left)) is None:
                continue
            try:
                return self.ping(ground, timeout=min(5.0, max(0.5, left)))
            except BoardUnreachable:
                continue

    def close(self) -> None:
        """Release what the harness holds for this board (a remote board keeps running)."""

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RemoteBoard(Board):
    """A board running ``flight run --link`` elsewhere (a Raspberry-Pi-class board on the rig's
    network): ``udp://HOST:PORT`` or ``tcp://HOST:PORT``."""

    def __init__(self, url: str, key_file: str | os.PathLike[str]) -> None:
        if not url.startswith(("udp://", "tcp://")):
            raise errors.ConfigError(
                f"remote board {url!r}: expected udp://HOST:PORT or tcp://HOST:PORT"
            )
        super().__init__(url, key_file)


class SerialBoard(Board):
    """A board on a serial line (COBS frames): ``serial:///dev/ttyX?baud=N``, a bare
    ``/dev/...`` path, or ``serial+URL`` for any pyserial URL."""

    def __init__(self, url: str, key_file: str | os.PathLike[str]) -> None:
        if not url.startswith(("serial:", "serial+", "/dev/")):
            raise errors.ConfigError(
                f"serial board {url!r}: expected serial:///dev/ttyX?baud=N or /dev/..."
            )
        super().__init__(url, key_file)


def open_board(url: str, key_file: str | os.PathLike[str]) -> Board:
    """The board at ``url``: serial or remote, by its scheme."""
    if url.startswith(("serial:", "serial+", "/dev/")):
        return SerialBoard(url, key_file)
    return RemoteBoard(url, key_file)
