"""The mission's ``[link]`` keys (and the partition's ``max_model_bytes``) through a real
``flight run`` process, judged by what each changes: the packets in ``--tm-file`` and the
``link`` object of the ``--json`` summary. Runs are short (``--frames 20 --fast``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from boards import free_udp_pair, mission_text, write_keys

from hil.link.ground import read_tm_file

FRAMES = 20


def _run(
    tmp_path, link: str, *extra: str, **lines: str
) -> tuple[subprocess.CompletedProcess, list]:
    mission = tmp_path / "mission.toml"
    mission.write_text(mission_text(link, **lines))
    recording = tmp_path / "tm.bin"
    proc = subprocess.run(
        [sys.executable, "-m", "flight.cli", "run", "--mission", str(mission), "--frames",
         str(FRAMES), "--fast", "--json", "--state-dir", str(tmp_path / "state"),
         "--tm-file", str(recording), *extra],
        capture_output=True, text=True, timeout=300, cwd="/",
    )  # fmt: skip
    packets = list(read_tm_file(recording)) if recording.exists() else []
    return proc, packets


def _summary(proc) -> dict:
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _names(packets) -> list[str]:
    return [p.name for p in packets]


def test_housekeeping_frames_sets_how_often_housekeeping_goes_down(tmp_path):
    every_5 = _names(_run(tmp_path, "[link]\nhousekeeping_frames = 5\n")[1])
    every_10 = _names(_run(tmp_path, "[link]\nhousekeeping_frames = 10\n")[1])
    assert every_5.count("HOUSEKEEPING") == FRAMES // 5
    assert every_10.count("HOUSEKEEPING") == FRAMES // 10


def test_results_false_sends_no_results(tmp_path):
    assert _names(_run(tmp_path, "[link]\n")[1]).count("RESULT") == FRAMES
    assert _names(_run(tmp_path, "[link]\nresults = false\n")[1]).count("RESULT") == 0


def test_event_severity_filters_what_goes_down_not_what_is_counted(tmp_path):
    def events(severity: str) -> set[str]:
        proc, packets = _run(tmp_path, f'[link]\nevent_severity = "{severity}"\n')
        assert _summary(proc)["events"]["SCRUB_PASS_COMPLETED"] == FRAMES  # always counted
        return {p.values["severity"] for p in packets if p.name == "EVENT"}

    assert "DEBUG" in events("debug")
    assert events("warning") <= {"WARNING", "ERROR", "CRITICAL"}


def test_the_mission_url_is_the_link_without_a_flag(tmp_path):
    port = free_udp_pair()
    summary = _summary(_run(tmp_path, f'[link]\nurl = "udp://127.0.0.1:{port}"\n')[0])
    assert summary["link"]["tm_sent"] == summary["link"]["tm_created"] > 0
    assert summary["link"]["transport"]["tx_items"] == summary["link"]["tm_sent"]


def test_contact_and_downlink_budget_hold_packets_back(tmp_path):
    url = ("--link", f"udp://127.0.0.1:{free_udp_pair()}")
    closed = _summary(_run(tmp_path, '[link]\ncontact = "command"\n', *url)[0])["link"]
    assert closed["tm_sent"] == 0 and closed["tm_queued"] == closed["tm_created"]
    narrow = _summary(_run(tmp_path, "[link]\ndownlink_bytes_per_frame = 64\n", *url)[0])
    link = narrow["link"]
    assert 0 < link["tm_sent"] < link["tm_created"] and link["tm_queued"] > 0


def test_a_small_bulk_store_drops_its_oldest_results(tmp_path):
    text = '[link]\ncontact = "command"\nstore_bulk_bytes = 1024\n'
    link = _summary(_run(tmp_path, text)[0])["link"]
    assert link["store"]["dropped_bulk"] > 0 and link["tm_dropped"] > 0


@pytest.mark.parametrize(
    "link, lines, message",
    [
        ('[link]\nkey_file = "{keys}"\n', {}, "chmod 600"),  # a group-readable key file
        ('[link]\nurl = "http://x:1"\n', {}, "unknown scheme"),
        ("[link]\n", {"start_deadline_s": "start_deadline_s = 10\nmax_model_bytes = 4096"},
         "max_model_bytes"),
    ],
)  # fmt: skip
def test_bad_link_settings_stop_the_run_with_78(tmp_path, link, lines, message):
    keys = write_keys(tmp_path / "keys.toml", {1: "ab" * 32})
    keys.chmod(0o640)
    proc, _ = _run(tmp_path, link.format(keys=keys), **lines)
    assert proc.returncode == 78, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr
