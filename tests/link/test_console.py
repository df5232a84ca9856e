"""``hil link``, the ground console, as an operator runs it: real ``hil`` processes against a
real ``flight run --link`` board on loopback, judged by their output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from boards import DATA, wait_until

from hil.link.console import parse_arguments
from hil.link.ground import GroundStation

LINK = '[link]\nkey_file = "{keys}"\nhousekeeping_frames = 5\n'


def _hil(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hil.cli", "link", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
    )


def test_send_listen_upload_and_replay_against_a_board(board_factory, keys, tmp_path):
    good, forged = keys
    recording = tmp_path / "tm.bin"
    board = board_factory(LINK.format(keys=good), "--tm-file", str(recording))
    with GroundStation(board.url) as ground:  # wait until it is up, then let go of the port
        wait_until(ground, lambda tm: tm.name == "HOUSEKEEPING")

    sent = _hil("send", "ping", "token=41", "--to", board.url, "--key", str(good))
    assert sent.returncode == 0, sent.stderr
    lines = sent.stdout.splitlines()
    assert [line.split()[3] for line in lines] == [
        "ACCEPTANCE_SUCCESS",
        "START_SUCCESS",
        "COMPLETION_SUCCESS",
    ]
    assert lines[0].startswith("TC ping #") and "token=41" in lines[-1]

    (tmp_path / "forged.toml.seq").write_text("10\n")  # fresh, inside the window
    refused = _hil("send", "ping", "token=1", "--to", board.url, "--key", str(forged), "--json")
    assert refused.returncode == 1, refused.stderr
    (report,) = [json.loads(line) for line in refused.stdout.splitlines()]
    assert (report["stage"], report["code"]) == ("ACCEPTANCE_FAILURE", "BAD_MAC")

    listened = _hil("listen", "--from", board.url, "--json", "--count", "20")
    assert listened.returncode == 0, listened.stderr
    packets = [json.loads(line) for line in listened.stdout.splitlines()]
    assert len(packets) == 20
    assert {"HOUSEKEEPING", "RESULT"} <= {p["packet"] for p in packets}

    uploaded = _hil("upload", str(DATA / "digits_cnn.flm"), "--partition", "classifier",
                    "--trial-frames", "3", "--to", board.url, "--key", str(good))  # fmt: skip
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    assert "COMPLETION_SUCCESS" in uploaded.stdout.splitlines()[-1]

    link = board.stop()["link"]
    assert link["tc_accepted"] == 2 and link["tc_rejected"] == {"BAD_MAC": 1}
    replayed = _hil("replay", str(recording))
    assert replayed.returncode == 0, replayed.stderr
    shown = replayed.stdout.splitlines()
    assert len(shown) == link["tm_created"]
    assert any(line.startswith("TC ping") and "COMPLETION_SUCCESS" in line for line in shown)
    assert any("MODEL_COMMITTED" in line for line in shown)


def test_a_cut_recording_replays_what_it_holds_and_says_what_it_could_not(tmp_path):
    from flight.link import catalog, packet
    from flight.link.codes import Apid

    values = {"event_id": 700, "severity": "WARNING", "count": 3, "args": "x=1"}
    one = packet.encode_tm(Apid.EVENT, 0, catalog.TELEMETRY[Apid.EVENT].encode(values), 0.0)
    damaged = bytearray(one)
    damaged[10] ^= 0xFF
    (tmp_path / "tm.bin").write_bytes(one + bytes(damaged) + one[:9])
    replayed = _hil("replay", str(tmp_path / "tm.bin"), "--json")
    assert replayed.returncode == 1
    (event,) = [json.loads(line) for line in replayed.stdout.splitlines()]
    assert event["packet"] == "EVENT" and event["count"] == 3
    assert "undecodable packet" in replayed.stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ping", "tokn=1"], "bad argument 'tokn=1'"),
        (["ping"], "missing token"),
        (["ping", "token=x"], "token='x' is not a valid"),
        (["launch"], "unknown command 'launch'"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_78(argv, message, tmp_path):
    proc = _hil("send", *argv, "--to", "udp://127.0.0.1:9", "--key", str(tmp_path / "k.toml"))
    assert proc.returncode == 78
    assert message in proc.stderr and proc.stderr.count("\n") == 1


def test_arguments_are_typed_by_the_declaration():
    assert parse_arguments(
        "model_upload",
        ["partition=classifier", "file=a.flm", "mac=" + "ab" * 32, "trial_frames=0x10"],
    ) == {"partition": "classifier", "file": "a.flm", "mac": b"\xab" * 32, "trial_frames": 16}
    assert parse_arguments("set_redundancy", ["partition=p", "mode=dwc"])["mode"] == "dwc"
