"""A local emulated board: ``flight run --link`` in test mode as its own process on loopback,
restarted as the board's init system would restart it.

Each board gets a working directory with a generated key file (0600), the rig's mission
(:mod:`hil.boards.mission`), its state directory and the output of every start; a free UDP
port pair on 127.0.0.1 (so several boards run at once). The process runs in its own session:
when the supervisor dies, what is left of its process group (a stopped or orphaned worker) is
killed, as systemd kills what is left in a service's cgroup; a guard process
(:mod:`hil.boards.guard`) stops the board if the harness itself dies. Whether it is started
again is the documented unit's decision (:mod:`hil.boards.restart`); each exit and restart
is recorded with its wall-clock time, the same clock the board stamps its packets with, so a
campaign's recovery time includes the restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from hil.boards.board import Board, BoardUnreachable
from hil.boards.mission import board_mission
from hil.boards.restart import SYSTEMD_UNIT, RestartPolicy, StartLimiter, describe_status

__all__ = ["Exit", "LocalBoard", "free_udp_pair", "write_key_file"]

#: Anti-replay window of a rig's key: commands sent while a board restarts are lost, and each
#: lost one used a sequence number (a flight key keeps the default 64).
RIG_KEY_WINDOW = 4096


def free_udp_pair() -> int:
    """A port P with P and P + 1 free for UDP on loopback (the board's TC and TM ports)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise OSError("no free UDP port pair on loopback")


def write_key_file(path: str | os.PathLike[str], window: int = RIG_KEY_WINDOW) -> Path:
    """A new key file with one random 32-byte key (SPI 1), created mode 0600."""
    path = Path(path)
    text = f'active = 1\n[[key]]\nspi = 1\nsecret = "{secrets.token_hex(32)}"\nwindow = {window}\n'
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    return path


@dataclass(frozen=True)
class Exit:
    """One end of the supervisor process: when (wall clock), how, and whether the init system
    started it again (``restarted_at``, wall clock; None when it did not)."""

    exited_at: float
    returncode: int
    restarted_at: float | None
    reboot: bool
    why: str

    @property
    def status(self) -> str:
        return describe_status(self.returncode)


class LocalBoard(Board):
    """``flight run --mission M --link udp://127.0.0.1:P --forever --json --state-dir D`` in
    test mode, supervised like the documented systemd unit (module docstring).

    ``mission``: a mission file (default: the bundled demo). ``directory``: where the keys,
    mission, state and logs go (default: a new temporary directory, removed by :meth:`stop`).
    ``restart_budget``: widen the mission's restart budgets (campaigns of many crashes)."""

    def __init__(
        self,
        mission: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        directory: str | os.PathLike[str] | None = None,
        policy: RestartPolicy = SYSTEMD_UNIT,
        restart_budget: int | None = None,
        start: bool = True,
    ) -> None:
        self._own_directory = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="flight-board-"))
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            key_file = write_key_file(self.directory / "keys.toml")
            self.mission = self.directory / "mission.toml"
            self.mission.write_text(
                board_mission(mission, key_file, restart_budget=restart_budget), "utf-8"
            )
            self.state_dir = Path(state_dir) if state_dir else self.directory / "state"
            super().__init__(f"udp://127.0.0.1:{port or free_udp_pair()}", key_file)
        except BaseException:
            self._remove_directory()
            raise
        self.policy = policy
        self.exits: list[Exit] = []
        self.starts = 0
        self._limiter = StartLimiter(policy)
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._guard: subprocess.Popen[str] | None = None
        self.failed: Exit | None = None  # the exit the init system did not restart
        if start:
            self.start()

    # --- the process ------------------------------------------------------------------------
    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "flight.cli", "run", "--mission", str(self.mission),
            "--link", self.url, "--forever", "--json", "--state-dir", str(self.state_dir),
        ]  # fmt: skip

    def start(self) -> None:
        """Start the service (once; the watcher restarts it afterwards)."""
        with self._lock:
            if self._watcher is not None:
                raise RuntimeError(f"{self!r} was already started")
            self._guard = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hil.boards.guard",
                    *([str(self.directory)] if self._own_directory else []),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                text=True,
                cwd="/",
                env={**os.environ, "PYTHONSAFEPATH": "1"},
                start_new_session=True,
            )
            self._limiter.note_start(time.monotonic())
            self._watcher = threading.Thread(
                target=self._watch, name=f"board {self.url}", daemon=True
            )
            self._watcher.start()
            while self.starts == 0 and self._watcher.is_alive():
                self._lock.wait(1.0)

    def _spawn(self) -> None:
        index = self.starts
        self.starts += 1
        env = {**os.environ, "PYTHONSAFEPATH": "1"}
        with (
            open(self.directory / f"run-{index}.json", "wb") as out,
            open(self.directory / f"run-{index}.err", "wb") as err,
        ):
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd="/",
                env=env,
                start_new_session=True,
            )
        self._tell_guard(self._proc.pid)

    def _watch(self) -> None:
        """Start the service, then wait for each exit, clean up the process group, and
        restart as the unit would."""
        with self._lock:
            self._spawn()
            self._lock.notify_all()
        while True:
            proc = self._proc
            assert proc is not None
            returncode = proc.wait()
            exited_at = time.time()
            _kill_group(proc.pid)
            stopping = self._stopping.is_set()
            decision = None if stopping else self._limiter.decide(returncode, time.monotonic())
            if decision is None or not decision.restart:
                why = "stopped" if decision is None else decision.why
                with self._lock:
                    self.exits.append(Exit(exited_at, returncode, None, False, why))
                    if decision is not None:
                        self.failed = self.exits[-1]
                    self._lock.notify_all()
                return
            if self._stopping.wait(self.policy.restart_sec):
                with self._lock:
                    self.exits.append(Exit(exited_at, returncode, None, False, "stopped"))
                    self._lock.notify_all()
                return
            with self._lock:
                if self._stopping.is_set():
                    self.exits.append(Exit(exited_at, returncode, None, False, "stopped"))
                    self._lock.notify_all()
                    return
                self._spawn()
                self.exits.append(
                    Exit(exited_at, returncode, time.time(), decision.reboot, decision.why)
                )
                self._lock.notify_all()

    def _tell_guard(self, pgid: int) -> None:
        """The process group the guard stops if this process goes away (hil.boards.guard)."""
        guard = self._guard
        if guard is not None and guard.stdin is not None:
            with contextlib.suppress(OSError):
                guard.stdin.write(f"{pgid}\n")
                guard.stdin.flush()

    def _release_guard(self) -> None:
        """Stopped here: tell the guard there is nothing left to stop, and let it go."""
        self._tell_guard(0)
        guard, self._guard = self._guard, None
        if guard is not None and guard.stdin is not None:
            with contextlib.suppress(OSError):
                guard.stdin.close()
            guard.wait(30)

    @property
    def pid(self) -> int | None:
        """The supervisor's process ID while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def restarts(self) -> list[Exit]:
        """The exits the init system restarted, in order."""
        with self._lock:
            return [e for e in self.exits if e.restarted_at is not None]

    @property
    def running(self) -> bool:
        """Up or about to be restarted (not stopped, not left failed)."""
        return self._watcher is not None and self._watcher.is_alive()

    def check_alive(self) -> None:
        if not self.running:
            last = self.exits[-1] if self.exits else None
            why = f" ({last.status}: {last.why}; see {self.directory})" if last else ""
            raise BoardUnreachable(f"{self.url}: the board is down{why}")

    def wait_exits(self, count: int, timeout: float) -> list[Exit]:
        """Wait until at least ``count`` exits are recorded (or ``timeout``); the exits."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.exits) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
            return list(self.exits)

    def worker_pids(self) -> list[int]:
        """The supervisor's child processes (its partitions' workers)."""
        pid = self.pid
        if pid is None:
            return []
        children: list[int] = []
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    children += [int(c) for c in (task / "children").read_text().split()]
        return children

    def log(self, index: int = -1) -> str:
        """The standard error of start ``index`` (default the latest)."""
        index = index % max(self.starts, 1)
        path = self.directory / f"run-{index}.err"
        return path.read_text(errors="replace") if path.exists() else ""

    def summary(self, index: int = -1) -> dict | None:
        """The ``--json`` summary start ``index`` printed when it stopped, if it did."""
        index = index % max(self.starts, 1)
        path = self.directory / f"run-{index}.json"
        lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
        try:
            return json.loads(lines[-1]) if lines else None
        except json.JSONDecodeError:
            return None

    def stop(self, timeout: float = 120.0) -> dict | None:
        """Stop the service as ``systemctl stop`` does (SIGTERM, then SIGKILL after
        ``timeout``); returns the last run's summary. Removes a temporary directory."""
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait(30)
        if self._watcher is not None:
            self._watcher.join(60)
        self._release_guard()
        summary = self.summary() if self.starts else None
        self._remove_directory()
        return summary

    def close(self) -> None:
        self.stop()

    def _remove_directory(self) -> None:
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)


def _kill_group(pgid: int) -> None:
    """SIGKILL what is left of a process group (a service's leftovers)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
