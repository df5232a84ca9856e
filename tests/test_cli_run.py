"""`flight run` as the init system sees it: real processes, their exit codes and their summary.

The exit codes are documented in docs/operations.md ("Exit codes"); systemd's unit relies on
78 meaning "invalid configuration, do not restart" (RestartPreventExitStatus=78).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import flight
from flight.recovery import ExitCode
from flight.watchdog import EXIT_SOFTWARE_WATCHDOG

DATA = Path(flight.__file__).resolve().parent / "data"
DEFAULT_MISSION = (DATA / "default_mission.toml").read_text()
TIMEOUT = 300  # generous: other test runs share this machine; never a margin on a measurement


def _flight(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flight.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
    )


def _mission(tmp_path: Path, **replacements: str) -> Path:
    """The default mission with the model and dataset given by absolute path and some lines
    replaced (each key names the first word of the line to replace)."""
    text = DEFAULT_MISSION.replace('"digits_cnn.flm"', f'"{DATA / "digits_cnn.flm"}"')
    text = text.replace('"digits_test.npz"', f'"{DATA / "digits_test.npz"}"')
    lines = text.splitlines()
    for key, line in replacements.items():
        index = next(i for i, old in enumerate(lines) if old.split(" ")[0] == key)
        lines[index] = line
    path = tmp_path / "mission.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _one_line_error(proc: subprocess.CompletedProcess, name: str) -> None:
    assert proc.stderr.startswith(f"flight: {name}: "), proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_config_exit_code_is_the_documented_one():
    assert ExitCode.CONFIG == os.EX_CONFIG == 78


def test_an_invalid_mission_exits_78(tmp_path):
    mission = tmp_path / "mission.toml"
    mission.write_text('[mission]\nname = "no-schedule"\n')
    proc = _flight("run", "--mission", str(mission), "--frames", "3", "--fast",
                   "--state-dir", str(tmp_path / "state"))  # fmt: skip
    assert proc.returncode == 78, proc.stderr
    _one_line_error(proc, "ConfigError")
    assert "[schedule] is required" in proc.stderr


def test_a_missing_mission_file_exits_78(tmp_path):
    proc = _flight("run", "--mission", str(tmp_path / "nowhere.toml"), "--frames", "3", "--fast",
                   "--state-dir", str(tmp_path / "state"))  # fmt: skip
    assert proc.returncode == 78, proc.stderr
    _one_line_error(proc, "ConfigError")


def test_a_mission_naming_a_corrupt_model_exits_78(tmp_path):
    corrupt = bytearray((DATA / "digits_cnn.flm").read_bytes())
    corrupt[len(corrupt) // 2] ^= 0x10  # one upset in the stored model: its CRC must catch it
    model = tmp_path / "corrupt.flm"
    model.write_bytes(bytes(corrupt))
    mission = _mission(tmp_path, model=f'model = "{model}"')
    proc = _flight("run", "--mission", str(mission), "--frames", "3", "--fast",
                   "--state-dir", str(tmp_path / "state"))  # fmt: skip
    assert proc.returncode == 78, proc.stdout + proc.stderr
    _one_line_error(proc, "ModelChecksumError")


def test_a_mission_naming_a_bad_dataset_exits_78(tmp_path):
    dataset = tmp_path / "broken.npz"
    dataset.write_bytes(b"not a zip archive")
    mission = _mission(tmp_path, dataset=f'dataset = "{dataset}"')
    proc = _flight("run", "--mission", str(mission), "--frames", "3", "--fast",
                   "--state-dir", str(tmp_path / "state"))  # fmt: skip
    assert proc.returncode == 78, proc.stdout + proc.stderr
    _one_line_error(proc, "ConfigError")


def test_simulated_radiation_needs_a_test_mode_mission_file(tmp_path):
    """The bundled demo is switched into test mode for --environment; a mission file is not:
    a flown configuration never gets fault injection from a command-line flag."""
    flown = _mission(tmp_path)
    proc = _flight("run", "--mission", str(flown), "--environment", "saa", "--frames", "3",
                   "--fast", "--state-dir", str(tmp_path / "state"))  # fmt: skip
    assert proc.returncode == 78, proc.stdout + proc.stderr
    _one_line_error(proc, "ConfigError")
    assert "test_mode = false" in proc.stderr
    rig = _mission(tmp_path, test_mode="test_mode = true")
    proc = _flight("run", "--mission", str(rig), "--environment", "saa", "--frames", "3",
                   "--fast", "--json", "--state-dir", str(tmp_path / "state"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["sdc"] == 0


def test_a_bug_keeps_its_traceback_and_exits_1():
    """A broken invariant is not bad input: no one-line message, no 78 (which would stop the
    init system from restarting a board over a bug it might survive)."""
    script = textwrap.dedent(
        """
        import sys
        from flight import cli, errors, selftest

        def broken(**kwargs):
            raise errors.NativeStatusError("unknown native status 99")

        selftest.run_selftest = broken
        sys.exit(cli.main(["selftest"]))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=TIMEOUT, cwd="/"
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" in proc.stderr and "NativeStatusError: unknown native status 99" in (
        proc.stderr
    )


@pytest.mark.parametrize(
    ("make_error", "code"),
    [
        (lambda: __import__("flight.errors").errors.ConfigError("bad"), 78),
        (lambda: FileNotFoundError(2, "No such file or directory", "x.npy"), 78),
        (lambda: PermissionError(13, "Permission denied", "/var/lib/flight"), 78),
        (lambda: OSError(28, "No space left on device"), 74),
    ],
)
def test_input_and_io_errors_are_one_line_with_their_code(monkeypatch, capsys, make_error, code):
    from flight import cli, selftest

    def failing(**kwargs):
        raise make_error()

    monkeypatch.setattr(selftest, "run_selftest", failing)
    assert cli.main(["selftest"]) == code
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize(
    "error", ["RecoveryError", "RegionError", "CdsUsageError", "OverlapError", "NativeStatusError"]
)
def test_invariant_errors_propagate(monkeypatch, error):
    from flight import cds, cli, errors, recovery, selftest

    exc_type = getattr(errors, error, None) or getattr(recovery, error, None) or getattr(cds, error)

    def failing(**kwargs):
        raise exc_type("a bug")

    monkeypatch.setattr(selftest, "run_selftest", failing)
    with pytest.raises(exc_type):
        cli.main(["selftest"])


def test_human_summary_is_tables_not_reprs(tmp_path):
    proc = _flight("run", "--frames", "5", "--fast", "--state-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    summary = proc.stdout.split("flight run: summary\n", 1)[1]
    for mark in ("{", "}", "'", "[", "]"):
        assert mark not in summary, (mark, summary)
    lines = [line.split() for line in summary.splitlines()]
    assert ["frames", "5"] in lines and ["exit_code", "0", "(OK)"] in lines
    header = lines.index(["partitions"]) + 1
    assert lines[header][:3] == ["partition", "mode", "placement"]
    assert lines[header + 1][:3] == ["classifier", "tmr", "time"]
    header = lines.index(["recovery"]) + 1
    assert lines[header][:3] == ["partition", "state", "mode"]
    assert lines[header + 1][:3] == ["classifier", "nominal", "tmr"]
    watchdog = lines.index(["watchdog"]) + 1
    assert lines[watchdog] == ["kind", "software"]
    assert ["PARTITION_STARTED", "1"] in lines[lines.index(["events"]) :]


def test_json_summary_stays_machine_readable(tmp_path):
    proc = _flight("run", "--frames", "5", "--fast", "--json", "--state-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["frames"] == 5 and summary["exit_code"] == 0
    assert summary["partitions"]["classifier"]["mode"] == "tmr"
    assert summary["recovery"]["classifier"]["state"] == "nominal"


def _children(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return children


def _read_until(proc: subprocess.Popen, marker: str, timeout: float) -> str:
    """stdout up to the first line containing ``marker`` (fails on exit or after ``timeout``)."""
    seen = []
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not selector.select(timeout=1.0):
                continue
            line = proc.stdout.readline()
            assert line, f"flight run ended before {marker!r}: {''.join(seen)}"
            seen.append(line)
            if marker in line:
                return "".join(seen)
    raise AssertionError(f"no {marker!r} within {timeout} s: {''.join(seen)}")


def test_a_ladder_reaching_reset_exits_70(tmp_path):
    """max_restarts = 0 and a ladder of just "reset": the first crash of the partition's worker
    (SIGKILL from here) asks for a processor reset, which the process reports as exit 70."""
    mission = _mission(
        tmp_path, max_restarts="max_restarts = 0", escalation='escalation = ["reset"]'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "flight.cli", "run", "--mission", str(mission), "--forever",
         "--fast", "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
    )  # fmt: skip
    try:
        _read_until(proc, "frame ", TIMEOUT)  # the partition is up and delivering
        workers = _children(proc.pid)
        assert len(workers) == 1, workers  # placement "time": one worker process
        os.kill(workers[0], signal.SIGKILL)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == ExitCode.ESCALATION == 70, err
    lines = [line.split() for line in out.splitlines()]
    assert ["exit_code", "70", "(ESCALATION)"] in lines
    assert ["system_state", "reset"] in lines


def _run_patched(patch: str, *args: str) -> subprocess.CompletedProcess:
    """``flight run`` through the real entry point, in a process where ``patch`` ran first."""
    script = f"import sys\nfrom flight import cli\n{patch}\nsys.exit(cli.main({list(args)!r}))\n"
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=TIMEOUT, cwd="/"
    )


def test_a_hung_supervisor_is_ended_by_its_software_watchdog_with_124(tmp_path):
    """The supervisor's main loop hangs after a few frames (its progress callback spins, in the
    main thread, with the GIL released now and then as any Python loop does); the default
    mission's software watchdog (2 s) ends the process with 124, which is not a restart
    request (70-72) and not a configuration error (78)."""
    patch = textwrap.dedent(
        """
        def printer(frames, duration):
            def spin_after_three(report, supervisor):
                if supervisor.summary(brief=True)["frames"] >= 3:
                    while True:
                        pass
            return spin_after_three
        cli._progress_printer = printer
        """
    )
    proc = _run_patched(patch, "run", "--forever", "--fast", "--state-dir", str(tmp_path))
    assert proc.returncode == EXIT_SOFTWARE_WATCHDOG == 124, proc.stderr
    assert "software watchdog expired" in proc.stderr


def test_a_missing_native_extension_is_one_line_and_78(tmp_path):
    """A broken installation cannot be fixed by a restart: 78, the reason on one line."""
    patch = textwrap.dedent(
        """
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "flight._native":
                    raise ImportError("simulated: extension not built")
        sys.meta_path.insert(0, Block())
        """
    )
    proc = _run_patched(patch, "run", "--frames", "3", "--fast", "--state-dir", str(tmp_path))
    assert proc.returncode == 78, proc.stderr
    _one_line_error(proc, "NativeBuildError")
