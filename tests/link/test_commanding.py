"""Every telecommand carried out by a real supervisor (forked workers, real CDS), fed through a
fake transport: what each one changes, and the verification stages it reports.

The end-to-end tests (test_end_to_end.py) show the same path over UDP against ``flight run``;
here each command's effect is checked on the supervisor's own objects, frame by frame.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal

import pytest
from boards import DATA, FakeTransport, write_keys

from flight import events
from flight.link import catalog
from flight.link.codes import Apid
from flight.link.keys import load_keys
from flight.link.sdls import seal_command
from flight.mission import load_mission
from flight.supervisor import Supervisor
from hil.link.ground import decode_telemetry

MISSION = """
[mission]
name = "commands"
seed = 1
test_mode = {test_mode}

[schedule]
minor_frame_ms = 20
minor_frames_per_major = 5

[[partition]]
name = "classifier"
job = "model"
model = "digits_cnn.flm"
dataset = "digits_test.npz"
redundancy = "tmr"
heartbeat_timeout_ms = 5000
max_restarts = 3
restart_period_s = 3600
escalation = ["degrade", "disable"]

[scrub]
bytes_per_frame = {scrub_bytes}

[watchdog]
kind = "none"

[cds]
directory = "{cds}"

[link]
key_file = "{keys}"
contact = "{contact}"
"""
SECRETS = {1: "11" * 32, 2: "22" * 32}


class Board:
    """A supervisor with a link over a fake transport, and a ground that seals commands."""

    def __init__(self, tmp_path, test_mode=False, scrub_bytes=294912, contact="always"):
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        keys = write_keys(tmp_path / "keys.toml", SECRETS)
        text = MISSION.format(
            test_mode=str(test_mode).lower(),
            scrub_bytes=scrub_bytes,
            cds=state,
            keys=keys,
            contact=contact,
        )
        (tmp_path / "mission.toml").write_text(text)
        self.mission = load_mission(tmp_path / "mission.toml")
        self.keys = load_keys(keys)
        self.transport = FakeTransport()
        self.sup = Supervisor(self.mission, realtime=False, link_transport=self.transport)
        self.sequence = 0
        self.seen = 0

    def send(self, name: str, key: int = 1, **args) -> bytes:
        self.sequence += 1
        body = catalog.COMMANDS_BY_NAME[name].encode(args)
        raw = seal_command(self.keys.keys[key], self.sequence, self.sequence, body)
        self.transport.inbox.append(raw)
        return raw

    def telemetry(self) -> list:
        """What was sent since the last call, decoded."""
        new = self.transport.sent[self.seen :]
        self.seen = len(self.transport.sent)
        return [decode_telemetry(raw) for raw in new]

    def run(self, name: str, frames: int = 3, key: int = 1, **args) -> list[tuple[str, str, str]]:
        """Send a command, run some frames, return its reports (stage, code, detail)."""
        raw = self.send(name, key=key, **args)
        for _ in range(frames):
            self.sup.step()
        request = int.from_bytes(raw[2:4], "big")
        self.last = self.telemetry()  # all that went down meanwhile
        return [
            (t.values["stage"], t.values["code"], t.values["detail"])
            for t in self.last
            if t.apid == Apid.VERIFICATION and t.values["request_seq"] == request
        ]

    def close(self) -> None:
        self.sup.shutdown()


@pytest.fixture
def board(tmp_path):
    made = []

    def make(**kwargs) -> Board:
        b = Board(tmp_path, **kwargs)
        made.append(b)
        b.sup.start()
        return b

    yield make
    for b in made:
        b.close()


def _final(reports) -> tuple[str, str]:
    assert reports, "no verification report"
    return reports[-1][0], reports[-1][1]


def test_set_redundancy_changes_the_running_mode(board):
    b = board()
    p = b.sup.by_name["classifier"]
    assert _final(b.run("set_redundancy", partition="classifier", mode="dwc")) == (
        "COMPLETION_SUCCESS",
        "NONE",
    )
    assert p.mode == "dwc" and b.sup.fsm.mode("classifier") == "dwc"
    before = p.stats.delivered
    b.run("send_housekeeping", frames=2)
    assert p.stats.delivered > before
    (part,) = [t.values for t in b.last if t.apid == Apid.PARTITION][-1:]
    assert part["mode"] == "dwc" and part["state"] == "degraded"
    assert _final(b.run("set_redundancy", partition="nowhere", mode="tmr")) == (
        "START_FAILURE",
        "INVALID_ARGUMENT",
    )


def test_restart_disable_and_enable_by_command(board):
    b = board()
    p = b.sup.by_name["classifier"]
    pids = [w.pid for w in p.workers]
    assert _final(b.run("restart_partition", partition="classifier")) == (
        "COMPLETION_SUCCESS",
        "NONE",
    )
    assert [w.pid for w in p.workers] != pids and p.stats.restarts["commanded"] == 1
    assert _final(b.run("disable_partition", partition="classifier")) == (
        "COMPLETION_SUCCESS",
        "NONE",
    )
    unavailable = p.stats.unavailable
    b.run("ping", token=1)
    assert p.disabled and p.stats.unavailable > unavailable
    # a disabled partition cannot be restarted; it is enabled
    assert _final(b.run("restart_partition", partition="classifier")) == (
        "START_FAILURE",
        "NOT_ALLOWED",
    )
    assert _final(b.run("enable_partition", partition="classifier")) == (
        "COMPLETION_SUCCESS",
        "NONE",
    )
    delivered = p.stats.delivered
    b.run("ping", token=2)
    assert not p.disabled and p.stats.delivered > delivered


def test_scrub_now_repairs_what_the_budget_has_not_reached(board):
    b = board(scrub_bytes=3 * 4096)  # one block per frame: the last block waits a while
    region = b.sup.by_name["classifier"].job.weights
    offset = region.nbytes - 5
    before = int(region.raw(1)[offset])
    region.raw(1)[offset] ^= 0x40
    reports = b.run("scrub_now", frames=1)
    assert _final(reports) == ("COMPLETION_SUCCESS", "NONE")
    assert "repaired=1" in reports[-1][2]
    assert int(region.raw(1)[offset]) == before


def test_dumps_go_down_in_chunks_of_json(board):
    b = board()
    assert _final(b.run("dump_cds")) == ("COMPLETION_SUCCESS", "NONE")
    chunks = [t.values for t in b.last if t.apid == Apid.DUMP]
    b.run("dump_reset_log")
    chunks += [t.values for t in b.last if t.apid == Apid.DUMP]
    for what in ("cds", "reset_log"):
        parts = sorted((c for c in chunks if c["what"] == what), key=lambda c: c["part"])
        assert parts and len(parts) == parts[0]["parts"]
        document = json.loads(b"".join(c["data"] for c in parts))
        if what == "cds":
            assert document["boot_count"] == b.sup.boot
            assert "link_replay" in document["state"]
        else:
            assert document[-1]["action"] == "boot"


def test_contact_windows_by_command(board):
    b = board(contact="command")
    b.send("ping", token=1)
    for _ in range(3):
        b.sup.step()
    assert b.transport.sent == []  # closed: everything waits in the store
    b.send("open_contact", duration_s=600)
    b.sup.step()
    first = b.telemetry()
    stages = [t.values["stage"] for t in first if t.apid == Apid.VERIFICATION]
    # the ping's reports, kept while closed, go down first (urgent, oldest first)
    assert stages[:3] == ["ACCEPTANCE_SUCCESS", "START_SUCCESS", "COMPLETION_SUCCESS"]
    b.send("close_contact")
    b.sup.step()
    b.telemetry()
    for _ in range(3):
        b.sup.step()
    assert b.telemetry() == []


def test_switch_key_moves_commands_to_the_new_key_and_outlives_a_restart(board, tmp_path):
    b = board()
    assert _final(b.run("switch_key", spi=2)) == ("COMPLETION_SUCCESS", "NONE")
    assert _final(b.run("ping", token=1)) == ("ACCEPTANCE_FAILURE", "KEY_INACTIVE")
    assert _final(b.run("ping", key=2, token=1)) == ("COMPLETION_SUCCESS", "NONE")
    b.close()
    again = Board(tmp_path)
    try:
        again.sup.start()
        again.sequence = b.sequence  # the ground carries on from where it was
        assert _final(again.run("ping", token=1)) == ("ACCEPTANCE_FAILURE", "KEY_INACTIVE")
        assert _final(again.run("ping", key=2, token=1)) == ("COMPLETION_SUCCESS", "NONE")
    finally:
        again.close()


def test_the_test_mode_bit_flip_reports_the_bytes_before_and_after(board):
    b = board(test_mode=True, scrub_bytes=3 * 4096)
    region = b.sup.by_name["classifier"].job.weights
    offset = region.nbytes - 9
    value = int(region.raw(2)[offset])
    reports = b.run(
        "test_flip_bit", frames=1, partition="classifier", copy=2, byte_offset=offset, bit=3
    )
    assert _final(reports) == ("COMPLETION_SUCCESS", "NONE")
    assert f"before={value:02x} after={value ^ 0x08:02x}" in reports[-1][2]
    assert int(region.raw(2)[offset]) == value ^ 0x08


def _stage_upload(b, tmp_path, name: str, data: bytes) -> bytes:
    """Put a file where CFDP would have staged it (CFDP itself: test_cfdp, end to end)."""
    staged = tmp_path / "state" / "uploads" / name
    staged.write_bytes(data)
    b.sup.link.cfdp.staged[name] = staged
    return hmac.new(bytes.fromhex(SECRETS[1]), data, hashlib.sha256).digest()


def test_an_upload_that_crashes_on_trial_is_rolled_back(board, tmp_path):
    b = board()
    p = b.sup.by_name["classifier"]
    old_job = p.job
    data = (DATA / "digits_cnn.flm").read_bytes()
    mac = _stage_upload(b, tmp_path, "new.flm", data)
    b.send("model_upload", partition="classifier", file="new.flm", mac=mac, trial_frames=50)
    b.sup.step()
    assert p.job is not old_job and "classifier" in b.sup.trials
    for worker in p.workers:
        os.kill(worker.pid, signal.SIGKILL)
    for _ in range(5):
        b.sup.step()
    assert p.job is old_job and not b.sup.trials
    assert b.sup.log.count(events.MODEL_ROLLED_BACK) == 1
    reports = [
        (t.values["stage"], t.values["code"]) for t in b.telemetry() if t.apid == Apid.VERIFICATION
    ]
    assert reports[-1] == ("COMPLETION_FAILURE", "EXECUTION_FAILED")
    delivered = p.stats.delivered
    b.run("ping", token=1)
    assert p.stats.delivered > delivered  # the old model serves
    assert p.stats.restarts["crash"] == 0  # the upload's fault, not the partition's budget


def test_an_upload_that_passes_its_trial_serves_after_a_restart(board, tmp_path):
    b = board()
    data = (DATA / "digits_cnn.flm").read_bytes()
    mac = _stage_upload(b, tmp_path, "next.flm", data)
    reports = b.run(
        "model_upload", frames=6, partition="classifier", file="next.flm", mac=mac, trial_frames=3
    )
    assert _final(reports) == ("COMPLETION_SUCCESS", "NONE")
    p = b.sup.by_name["classifier"]
    assert p.spec.model_path.parent.name == "models" and not b.sup.trials
    assert b.sup.log.count(events.MODEL_COMMITTED) == 1
    b.close()
    again = Board(tmp_path)
    try:
        again.sup.start()
        assert again.sup.by_name["classifier"].spec.model_path == p.spec.model_path
    finally:
        again.close()


@pytest.mark.parametrize(
    "mangle, code",
    [
        (lambda data, mac: (data, bytes(32)), "BAD_MAC"),
        (lambda data, mac: (data[:-10], None), "EXECUTION_FAILED"),  # its own CRCs fail
    ],
)
def test_a_bad_upload_is_refused_and_the_old_model_keeps_serving(board, tmp_path, mangle, code):
    b = board()
    p = b.sup.by_name["classifier"]
    old_job = p.job
    data, mac = mangle((DATA / "digits_cnn.flm").read_bytes(), None)
    good_mac = _stage_upload(b, tmp_path, "bad.flm", data)
    reports = b.run(
        "model_upload",
        partition="classifier",
        file="bad.flm",
        mac=mac if mac is not None else good_mac,
        trial_frames=3,
    )
    assert _final(reports) == ("COMPLETION_FAILURE", code)
    assert p.job is old_job and b.sup.log.count(events.MODEL_REJECTED) == 1
    assert not (tmp_path / "state" / "models").exists() or not any(
        (tmp_path / "state" / "models").iterdir()
    )


def test_a_model_of_another_shape_is_refused(board, tmp_path):
    b = board()
    data = (DATA / "warmup.flm").read_bytes()
    mac = _stage_upload(b, tmp_path, "other.flm", data)
    reports = b.run("model_upload", partition="classifier", file="other.flm", mac=mac,
                    trial_frames=3)  # fmt: skip
    assert _final(reports) == ("COMPLETION_FAILURE", "INVALID_ARGUMENT")
    assert "shapes" in reports[-1][2]
    shutil.rmtree(tmp_path / "state" / "uploads")


def test_an_upload_whose_trial_frame_is_withheld_is_rolled_back(board, tmp_path):
    b = board(test_mode=True, scrub_bytes=3 * 4096)  # the scrubber reaches the last block late
    p = b.sup.by_name["classifier"]
    old_job = p.job
    mac = _stage_upload(b, tmp_path, "new.flm", (DATA / "digits_cnn.flm").read_bytes())
    b.send("model_upload", partition="classifier", file="new.flm", mac=mac, trial_frames=20)
    b.sup.step()
    assert "classifier" in b.sup.trials
    end = p.job.weights.nbytes
    # two replicas hit in different weights of the last layer (an exponent bit each): their
    # outputs differ from each other and from the third, the vote splits, the frame is withheld
    b.send("test_flip_bit", partition="classifier", copy=0, byte_offset=end - 1, bit=6)
    b.send("test_flip_bit", partition="classifier", copy=1, byte_offset=end - 5, bit=6)
    withheld = p.stats.withheld
    b.sup.step()
    assert p.stats.withheld == withheld + 1
    b.sup.step()
    assert p.job is old_job and not b.sup.trials
    assert b.sup.log.count(events.MODEL_ROLLED_BACK) == 1
    finals = [
        (t.values["stage"], t.values["code"], t.values["detail"])
        for t in b.telemetry()
        if t.apid == Apid.VERIFICATION and t.values["stage"] == "COMPLETION_FAILURE"
    ]
    assert finals[-1][:2] == ("COMPLETION_FAILURE", "EXECUTION_FAILED")
    assert "withheld" in finals[-1][2]
