"""Boards of the HIL rig (:mod:`hil.boards`): the init system's restart decisions, the rig's
mission and keys, and real ``flight run --link`` processes on loopback: spawned, pinged,
killed and restarted like the systemd unit does, two at once, one on a serial line, and the
``hil board`` command line.

Every wait is bounded by a generous bound (a cold numba cache on a loaded machine), never a
measured margin; every board is stopped at the end of its test.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from hil.boards import (
    START_TIMEOUT,
    SYSTEMD_UNIT,
    BoardUnreachable,
    LocalBoard,
    RestartPolicy,
    SerialBoard,
    open_board,
    write_key_file,
)
from hil.boards.mission import board_mission, dumps_toml
from hil.boards.restart import StartLimiter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "link"))
from boards import Board, NullModem, mission_text  # tests/link/boards.py

KILLED = -signal.SIGKILL


# --- the init system's decisions (no processes) -----------------------------------------------
@pytest.mark.parametrize(
    ("returncode", "restarts"),
    [
        (0, False),  # a clean or commanded shutdown
        (78, False),  # invalid configuration: RestartPreventExitStatus=78
        (124, True),  # the software watchdog
        (70, True),  # processor-reset requests
        (71, True),
        (72, True),
        (1, True),  # a bug
        (75, True),  # the state directory was busy: it frees
        (-signal.SIGKILL, True),
        (-signal.SIGSEGV, True),
        (-signal.SIGABRT, True),
        (-signal.SIGTERM, False),  # systemd counts SIGTERM/SIGINT/SIGHUP/SIGPIPE as clean
        (-signal.SIGINT, False),
    ],
)
def test_the_unit_restarts_failures_and_crashes_but_not_success_or_bad_config(returncode, restarts):
    assert SYSTEMD_UNIT.restarts(returncode) is restarts


def test_the_start_limit_turns_the_sixth_start_in_five_minutes_into_a_reboot():
    limiter = StartLimiter(SYSTEMD_UNIT)
    limiter.note_start(0.0)  # the first start counts
    decisions = [limiter.decide(KILLED, t) for t in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)]
    assert [d.restart for d in decisions] == [True] * 6
    assert [d.reboot for d in decisions] == [False, False, False, False, True, False]
    # starts older than the interval no longer count
    later = StartLimiter(SYSTEMD_UNIT)
    for t in (0.0, 100.0, 200.0, 290.0, 299.0):
        later.note_start(t)
    assert not later.decide(KILLED, 400.0).reboot
    # without a start-limit action the unit stays failed
    strict = StartLimiter(RestartPolicy(start_limit_action="none", start_limit_burst=1))
    strict.note_start(0.0)
    assert not strict.decide(KILLED, 1.0).restart
    assert not StartLimiter(SYSTEMD_UNIT).decide(78, 0.0).restart


def test_the_rig_mission_is_the_users_in_test_mode_with_the_rigs_keys(tmp_path):
    keys = write_key_file(tmp_path / "keys.toml")
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert keys.read_text() != write_key_file(tmp_path / "other.toml").read_text()
    user = tmp_path / "user" / "mission.toml"
    user.parent.mkdir()
    user.write_text(
        mission_text(
            '[link]\nurl = "udp://127.0.0.1:9"\nkey_file = "theirs.toml"\ncontact = "windows"\n'
            '[[link.window]]\nstart = "2026-12-01T10:00:00Z"\nduration_s = 60\n'
        )
    )
    text = board_mission(user, keys, restart_budget=500)
    doc = tomllib.loads(text)
    assert doc["mission"]["test_mode"] is True
    assert doc["link"]["key_file"] == str(keys.resolve()) and "url" not in doc["link"]
    assert doc["link"]["window"] == [{"start": "2026-12-01T10:00:00Z", "duration_s": 60}]
    (partition,) = doc["partition"]
    assert Path(partition["model"]).is_absolute() and Path(partition["dataset"]).is_file()
    assert partition["max_restarts"] == 500 and doc["recovery"]["processor_reset_max"] == 5000
    assert "cds" not in doc
    # flight itself accepts it, from another directory
    from flight.mission import load_mission

    elsewhere = tmp_path / "rig" / "mission.toml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(text)
    assert load_mission(elsewhere).test_mode
    # without a budget the user's budgets stand
    assert tomllib.loads(board_mission(None, keys))["partition"][0]["max_restarts"] == 3


def test_dumps_toml_round_trips_what_tomllib_reads():
    doc = {
        "a": 1,
        "b": 'x "quoted" \\ é\n',
        "c": [1.5, float("inf"), True],
        "odd key": False,
        "t": {"u": {"v": []}, "w": [{"x": 1}, {"x": 2, "y": {"z": "q"}}]},
    }
    assert tomllib.loads(dumps_toml(doc)) == doc


def test_a_url_is_a_remote_or_serial_board_by_its_scheme(tmp_path):
    from flight.errors import ConfigError

    keys = tmp_path / "keys.toml"
    assert type(open_board("udp://127.0.0.1:9000", keys)).__name__ == "RemoteBoard"
    assert type(open_board("tcp://127.0.0.1:9000", keys)).__name__ == "RemoteBoard"
    assert type(open_board("serial:///dev/ttyS1?baud=9600", keys)) is SerialBoard
    with pytest.raises(ConfigError):
        open_board("http://example.org", keys)
    with pytest.raises(ConfigError):
        SerialBoard("udp://127.0.0.1:9000", keys)


# --- real boards --------------------------------------------------------------------------------
def _up(board, ground) -> float:
    return board.wait_ready(ground, START_TIMEOUT)


def _housekeeping(ground, predicate=lambda v: True):
    tm = ground.wait_for(lambda t: t.name == "HOUSEKEEPING" and predicate(t.values), 60)
    assert tm is not None, "no housekeeping in time"
    return tm.values


def _gone(pids: list[int], timeout: float = 60) -> bool:
    """Have these processes ended (not even zombies left) within ``timeout``?"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z":
                alive.append(pid)
        if not alive:
            return True
        time.sleep(0.1)
    for pid in alive:  # leave nothing behind, whatever the assertion says
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return False


def test_two_boards_at_once_and_a_killed_supervisor_is_restarted_like_systemd():
    first, second = LocalBoard(restart_budget=100), LocalBoard()
    try:
        assert first.url != second.url and first.key_file != second.key_file
        with first.ground() as a, second.ground() as b:
            assert _up(first, a) > 0 and _up(second, b) > 0
            assert first.ping(a) > 0 and second.ping(b) > 0
            assert _housekeeping(a)["boot_count"] == 1
            killed, workers = first.pid, first.worker_pids()
            for pid in workers:  # hung workers outlive their supervisor unless cleaned up
                os.kill(pid, signal.SIGSTOP)
            os.kill(killed, signal.SIGKILL)
            (gone,) = first.wait_exits(1, START_TIMEOUT)
            assert gone.returncode == KILLED and gone.status == "signal SIGKILL"
            assert gone.restarted_at is not None and gone.restarted_at >= gone.exited_at
            assert first.pid not in (None, killed)
            assert _up(first, a) > 0  # the same URL and keys, the same state directory
            assert _housekeeping(a, lambda v: v["boot_count"] == 2)["last_reset_reason"]
            assert second.ping(b) > 0 and second.exits == []  # the other board is untouched
            assert workers and _gone(workers)  # killed with the rest of the service
        assert len(first.restarts) == 1
        directory = first.directory
        summary = first.stop()
        assert summary["exit_code"] == 0 and summary["link"]["tc_accepted"] >= 1  # since restart
        assert first.exits[-1].restarted_at is None and not first.running
        assert not directory.exists()
        with pytest.raises(BoardUnreachable):
            first.check_alive()
    finally:
        first.stop()
        second.stop()


def test_a_board_that_exits_78_is_not_restarted():
    board = LocalBoard(start=False)
    try:
        board.key_file.chmod(0o644)  # a key file others can read: flight refuses it (78)
        board.start()
        (record,) = board.wait_exits(1, START_TIMEOUT)
        assert record.returncode == 78 and record.restarted_at is None
        assert "key file" in board.log()
        time.sleep(3 * SYSTEMD_UNIT.restart_sec)  # what a restart would have taken
        assert board.starts == 1 and board.failed == record and not board.running
        with pytest.raises(BoardUnreachable, match="exit 78"):
            board.check_alive()
    finally:
        board.stop()


def test_a_serial_board_answers_pings_through_a_pty_pair(tmp_path):
    keys = write_key_file(tmp_path / "keys.toml")
    mission = tmp_path / "mission.toml"
    mission.write_text(mission_text(f'[link]\nkey_file = "{keys}"\n', test_mode=True))
    with NullModem() as cable:
        process = Board(tmp_path, f"serial://{cable.board}?baud=115200", mission)
        process.start()
        try:
            board = SerialBoard(f"serial://{cable.ground}?baud=115200", keys)
            with board.ground() as ground:
                assert board.wait_ready(ground, START_TIMEOUT) > 0
                assert board.ping(ground) > 0
        finally:
            summary = process.stop()
    assert summary["link"]["tc_accepted"] >= 2
    assert summary["link"]["transport"]["framing_errors"] == 0


def test_a_board_does_not_outlive_the_harness_that_spawned_it(tmp_path):
    owner = subprocess.Popen(
        [
            sys.executable, "-c",
            "import time; from hil.boards import LocalBoard; "
            "b = LocalBoard(); print(b.pid, b.directory, flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        pid, directory = owner.stdout.readline().split()
    finally:
        owner.kill()
        owner.wait(60)
    assert _gone([int(pid)])
    deadline = time.monotonic() + 60
    while Path(directory).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(directory).exists()  # its temporary directory too


def test_a_remote_board_over_tcp_is_reached_once_it_listens(tmp_path):
    from boards import free_tcp_port

    keys = write_key_file(tmp_path / "keys.toml")
    mission = tmp_path / "mission.toml"
    mission.write_text(mission_text(f'[link]\nkey_file = "{keys}"\n', test_mode=True))
    url = f"tcp://127.0.0.1:{free_tcp_port()}"
    process = Board(tmp_path, url, mission)
    process.start()  # ground() is called at once: it connects when the board listens
    try:
        board = open_board(url, keys)
        with board.ground() as ground:
            assert board.wait_ready(ground, START_TIMEOUT) > 0
    finally:
        summary = process.stop()
    assert summary["link"]["tc_accepted"] >= 1


def _line(proc: subprocess.Popen, prefix: str, timeout: float = START_TIMEOUT) -> str:
    """The next line of ``proc``'s stdout that starts with ``prefix`` (bounded wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if not ready:
            assert proc.poll() is None, proc.stderr.read()
            continue
        line = proc.stdout.readline()
        assert line, f"output ended before {prefix!r}: {proc.stderr.read()}"
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    raise AssertionError(f"no {prefix!r} line in {timeout} s")


def _hil(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hil.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_hil_board_spawn_and_ping_as_processes(tmp_path):
    spawn = subprocess.Popen(
        [sys.executable, "-m", "hil.cli", "board", "spawn", "--state-dir", str(tmp_path / "s")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url, key = _line(spawn, "url:"), _line(spawn, "key:")
        assert url.startswith("udp://127.0.0.1:") and Path(key).is_file()
        _line(spawn, "ready:")
        pinged = _hil("board", "ping", url, "--key", key, "--count", "2")
        assert pinged.returncode == 0, pinged.stderr
        assert pinged.stdout.count(" ms") == 2 and url in pinged.stdout
        spawn.send_signal(signal.SIGINT)
        assert spawn.wait(120) == 0
        assert not Path(key).exists()  # its temporary directory went with it
        assert (tmp_path / "s" / "cds.lock").exists()  # the state directory named stays
    finally:
        if spawn.poll() is None:
            spawn.kill()
            spawn.wait(60)
    # nothing answers there any more: exit 1, and why
    missing = write_key_file(tmp_path / "keys.toml")
    silent = _hil("board", "ping", url, "--key", str(missing), "--timeout", "1")
    assert silent.returncode == 1 and "no answer" in silent.stderr
