"""The HIL agent (flight.agent) on a real supervisor (forked workers, real CDS), commanded
through a fake transport: every site changes the bytes it says it did (read back here, from the
site itself), the INJECTION packet carries the bytes before and after, hangs and crashes are
detected and recovered, and nothing happens without test mode."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from link.boards import FakeTransport, write_keys

from flight import agent, errors, events, inject
from flight.cds import HEADER
from flight.link import catalog
from flight.link.codes import Apid
from flight.link.keys import load_keys
from flight.link.sdls import seal_command
from flight.mission import load_mission
from flight.model import load as load_model
from flight.supervisor import Supervisor
from hil.link.ground import decode_telemetry

MISSION = """
[mission]
name = "agent"
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
placement = "{placement}"
heartbeat_timeout_ms = 1000
max_restarts = 3
restart_period_s = 3600
escalation = ["degrade", "disable"]

[scrub]
bytes_per_frame = 12288  # one block of each copy a frame: the last is reached late

[watchdog]
kind = "none"

[cds]
directory = "{cds}"

[link]
key_file = "{keys}"
contact = "always"
"""
SECRET = {1: "33" * 32}
PARTITION = "classifier"
INJECT = {"partition": PARTITION, "copy": 0, "offset": 0, "bit": 0, "fault": "seu",
          "cluster": 0, "node": ""}  # fmt: skip


class Board:
    """A supervisor with a link over a fake transport; commands sealed like a ground's."""

    def __init__(self, tmp_path, test_mode=True, placement="time"):
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        keys = write_keys(tmp_path / "keys.toml", SECRET)
        text = MISSION.format(
            test_mode=str(test_mode).lower(), placement=placement, cds=state, keys=keys
        )
        (tmp_path / "mission.toml").write_text(text)
        self.mission = load_mission(tmp_path / "mission.toml")
        self.keys = load_keys(keys)
        self.transport = FakeTransport()
        self.sup = Supervisor(self.mission, realtime=False, link_transport=self.transport)
        self.p = None
        self.sequence = 0
        self.seen = 0

    def send(self, name: str, **args) -> int:
        """Queue a command; returns its request_seq."""
        self.sequence += 1
        body = catalog.COMMANDS_BY_NAME[name].encode(args)
        raw = seal_command(self.keys.keys[1], self.sequence, self.sequence, body)
        self.transport.inbox.append(raw)
        return int.from_bytes(raw[2:4], "big")

    def step(self, frames: int = 1) -> list:
        """Run frames; the telemetry sent meanwhile, decoded."""
        for _ in range(frames):
            self.report = self.sup.step()
        new = self.transport.sent[self.seen :]
        self.seen = len(self.transport.sent)
        return [decode_telemetry(raw) for raw in new]

    def command(self, name: str, frames: int = 1, **args) -> tuple[list, list]:
        """Send, run; (its verification reports (stage, code, detail), its INJECTION packets)."""
        request = self.send(name, **args)
        tm = self.step(frames)
        self.tm = tm
        reports = [
            (t.values["stage"], t.values["code"], t.values["detail"])
            for t in tm
            if t.apid == Apid.VERIFICATION and t.values["request_seq"] == request
        ]
        acks = [
            t.values for t in tm if t.apid == Apid.INJECTION and t.values["request_seq"] == request
        ]
        return reports, acks


@pytest.fixture
def board(tmp_path):
    made = []

    def make(**kwargs) -> Board:
        b = Board(tmp_path / str(len(made)), **kwargs)
        made.append(b)
        b.sup.start()
        b.p = b.sup.by_name[PARTITION]
        return b

    (tmp_path / "0").mkdir()
    (tmp_path / "1").mkdir()
    yield make
    for b in made:
        b.sup.shutdown()


def _done(reports) -> str:
    stages = [r[0] for r in reports]
    assert stages == ["ACCEPTANCE_SUCCESS", "START_SUCCESS", "COMPLETION_SUCCESS"], reports
    return reports[-1][2]


def _refused(reports) -> tuple[str, str]:
    return reports[-1][0], reports[-1][1]


def _at(buffer, ack) -> bytes:
    """The site's bytes now, where the ack says it wrote."""
    view = inject.as_bytes(buffer)
    return view[ack["address"] : ack["address"] + len(ack["new"])].tobytes()


# --- weights and CRC tables (now) ------------------------------------------------------------
@pytest.mark.parametrize(
    "site, fault, cluster, mask",
    [
        ("weights", "seu", 0, 0x08),  # bit 3 of the byte
        ("weights", "mbu", 3, 0x38),  # bits 3, 4, 5
        ("crc_table", "seu", 0, 0x08),
    ],
)
def test_a_weight_or_crc_table_flip_changes_the_bytes_it_reports(board, site, fault, cluster, mask):
    b = board()
    region = b.p.job.weights
    size = region.raw(0).nbytes if site == "weights" else region.crc_table(0).nbytes
    sites = [
        inject.as_bytes(region.raw(i) if site == "weights" else region.crc_table(i))
        for i in range(3)
    ]
    before = [s.copy() for s in sites]
    byte = size - 7  # offset taken modulo the site: asking for size + byte hits byte
    reports, acks = b.command(
        "inject", site=site, partition=PARTITION, copy=2, offset=size + byte, bit=3,
        fault=fault, cluster=cluster, node="",
    )  # fmt: skip
    detail = _done(reports)
    (ack,) = acks
    assert ack["site"] == site and ack["applied"] and ack["address"] == byte and ack["bit"] == 3
    assert ack["old"] == before[2][byte : byte + 1].tobytes()
    assert ack["new"] == bytes([before[2][byte] ^ mask])
    # read back from the site itself; the other copies untouched (the scrubber has not come by:
    # one 4 KiB block per frame, and this is the last block)
    assert _at(sites[2], ack) == ack["new"]
    changed = np.flatnonzero(sites[2] != before[2])
    assert changed.tolist() == [byte]
    assert all(np.array_equal(sites[i], before[i]) for i in (0, 1))
    assert ack["new"].hex() in detail


def test_a_stuck_at_bit_already_at_its_value_reports_no_change(board):
    b = board()
    raw = b.p.job.weights.raw(1)
    byte = int(np.flatnonzero(raw & 0x01)[-1])  # a byte whose bit 0 is set
    _, (ack,) = b.command(
        "inject", site="weights", partition=PARTITION, copy=1, offset=byte, bit=0,
        fault="stuck1", cluster=0, node="",
    )  # fmt: skip
    assert ack["old"] == ack["new"] == raw[byte : byte + 1].tobytes()


# --- outputs and activations (armed) ---------------------------------------------------------
def _spy_outputs(b: Board) -> list:
    """Record copies of the replicas' outputs as the supervisor votes on them."""
    seen: list = []
    decide = b.sup._decide

    def spy(p, unsafe):
        seen.append([o.copy() for o in p.job.outputs])
        return decide(p, unsafe)

    b.sup._decide = spy
    return seen


def test_an_armed_output_flip_changes_one_replica_for_one_frame_and_tmr_corrects_it(board):
    b = board()
    b.step(2)
    seen = _spy_outputs(b)
    lost = list(b.p.stats.lost)
    reports, acks = b.command(
        "inject", site="output", partition=PARTITION, copy=1, offset=4 * 3 + 3, bit=6,
        fault="seu", cluster=0, node="",
    )  # fmt: skip
    _done(reports)
    (ack,) = acks
    assert ack["address"] == 15 and ack["bit"] == 6 and ack["applied"]
    assert ack["new"] == bytes([ack["old"][0] ^ 0x40])
    (outs,) = seen
    assert np.array_equal(outs[0], outs[2])
    hit, clean = inject.as_bytes(outs[1]), inject.as_bytes(outs[0])
    assert np.flatnonzero(hit != clean).tolist() == [15]
    assert hit[15:16].tobytes() == ack["new"] and clean[15:16].tobytes() == ack["old"]
    assert b.p.stats.lost[1] == lost[1] + 1 and b.p.stats.lost[0] == lost[0]
    (result,) = [t.values for t in b.tm if t.apid == Apid.RESULT]
    assert result["status"] == "delivered" and result["output"] == outs[0].tobytes()
    b.step(1)  # one frame only: the next one is clean
    assert np.array_equal(seen[1][1], seen[1][0]) and b.p.stats.lost[1] == lost[1] + 1


def test_an_activation_flip_lands_at_the_named_node_in_one_replica(board):
    b = board()
    b.step(1)
    seen = _spy_outputs(b)
    node, element = "relu2.out", 100
    reports, acks = b.command(
        "inject", site="activation", partition=PARTITION, copy=0, offset=4 * element, bit=30,
        fault="seu", cluster=0, node=node,
    )  # fmt: skip
    _done(reports)
    (ack,) = acks
    assert ack["applied"] and ack["address"] == 4 * element + 3 and ack["bit"] == 6
    # the bytes the worker read back are that activation's, on this frame's input
    golden = {}
    reference = load_model(b.p.spec.model_path, copies=1).replica(0)
    reference.run(np.asarray(b.p.job.input), after={node: lambda a: golden.update(a=a.copy())})
    expected = golden["a"].view(np.uint8).reshape(-1)[4 * element + 3]
    assert ack["old"] == bytes([expected]) and ack["new"] == bytes([expected ^ 0x40])
    (outs,) = seen  # it reached the output of replica 0 only, and the vote masked it
    assert np.array_equal(outs[1], outs[2]) and not np.array_equal(outs[0], outs[1])
    assert b.p.stats.lost[0] > 0 and b.p.stats.lost[1] == b.p.stats.lost[2] == 0
    b.step(1)
    assert np.array_equal(seen[1][0], seen[1][1])  # armed for one inference only


def test_an_armed_activation_whose_worker_restarted_first_reports_not_applied(board):
    b = board()
    b.step(1)
    args = {**INJECT, "site": "activation", "node": "logits"}
    _, (applied,) = b.command("inject", **args)  # one that lands, on the same worker
    assert applied["applied"] and applied["old"] != applied["new"]
    request = b.send(
        "inject", site="activation", partition=PARTITION, copy=0, offset=0, bit=0,
        fault="seu", cluster=0, node="logits",
    )  # fmt: skip
    b.send("restart_partition", partition=PARTITION)  # clears the control block
    tm = b.step(1)
    (ack,) = [t.values for t in tm if t.apid == Apid.INJECTION]
    assert ack["request_seq"] == request
    assert not ack["applied"] and ack["old"] == ack["new"] == b""


# --- hangs and crashes ------------------------------------------------------------------------
def test_a_hung_worker_is_seen_as_a_hang_and_the_partition_restarted(board):
    b = board(placement="space")
    b.step(1)
    pids = [w.pid for w in b.p.workers]
    reports, (ack,) = b.command("hang_partition", partition=PARTITION, replica=1)
    assert "STOP" in _done(reports)
    assert ack["site"] == "partition" and ack["address"] == pids[1]
    assert ack["old"] in (b"S", b"R") and ack["new"] == b"T"
    assert any("hang" in f for f in b.report.faults)
    assert b.p.stats.restarts["hang"] == 1
    assert all(w.alive for w in b.p.workers) and pids[1] not in [w.pid for w in b.p.workers]
    delivered = b.p.stats.delivered
    b.step(1)
    assert b.p.stats.delivered == delivered + 1


@pytest.mark.parametrize("signal", ["SIGSEGV", "SIGKILL"])
def test_a_crashed_worker_is_seen_as_a_crash_and_the_partition_restarted(board, signal):
    b = board(placement="space")
    b.step(1)
    pids = [w.pid for w in b.p.workers]
    reports, (ack,) = b.command("crash_partition", partition=PARTITION, replica=2, signal=signal)
    _done(reports)
    assert ack["address"] == pids[2] and ack["new"] in (b"Z", b"X", b"")
    assert ack["old"] != ack["new"]
    assert any(f"crash (signal {signal})" in f for f in b.report.faults), b.report.faults
    assert b.p.stats.restarts["crash"] == 1
    assert pids[2] not in [w.pid for w in b.p.workers]
    delivered = b.p.stats.delivered
    b.step(1)
    assert b.p.stats.delivered == delivered + 1


# --- process memory ---------------------------------------------------------------------------
def _mapping_of(pid: int, address: int, size: int) -> tuple[str, str]:
    """(permissions, name) of the line of /proc/PID/maps holding [address, address + size)."""
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        span, perms, *rest = line.split()
        start, end = (int(x, 16) for x in span.split("-"))
        if start <= address and address + size <= end:
            return perms, rest[3] if len(rest) > 3 else ""
    raise AssertionError(f"{address:#x} is in no mapping of {pid}")


def test_a_process_memory_flip_lands_in_a_writable_mapping_of_a_worker(board):
    b = board(placement="space")
    b.step(1)
    pid = b.p.workers[0].pid
    reports, (ack,) = b.command(
        "flip_memory", target="partition", partition=PARTITION, replica=0, draw=12345, bits=2
    )
    _done(reports)
    assert ack["site"] == "process-memory" and f"pid {pid}" in ack["target"]
    assert _mapping_of(pid, ack["address"], len(ack["new"])) in (("rw-p", ""), ("rw-p", "[heap]"))
    old = int.from_bytes(ack["old"], "little")
    new = int.from_bytes(ack["new"], "little")
    assert bin(old ^ new).count("1") == 2 and (old ^ new) >> ack["bit"] == 0b11
    # read back from the worker itself (it is idle: nothing there has run since)
    assert inject.read_process_memory(pid, ack["address"], len(ack["new"])) == ack["new"]
    # every draw picks private writable memory, anonymous or heap, weighted by size
    picks = [agent.choose_address(agent.writable_mappings(pid), d, 8) for d in range(300)]
    assert {_mapping_of(pid, a, 4) for _, a, _ in picks} <= {("rw-p", ""), ("rw-p", "[heap]")}
    b.step(3)  # whatever it hit, the board carries on (a crash or hang would be restarted)
    assert all(w.alive for w in b.p.workers)


def test_a_process_memory_flip_lands_in_the_supervisors_own_memory(board):
    b = board()
    # the supervisor is this process: give the draw somewhere harmless to land, a buffer of our
    # own, and find a draw that picks it (the choice is a function of the maps and the draw)
    target = np.zeros(64 << 20, dtype=np.uint8)
    start = target.ctypes.data
    mappings = agent.writable_mappings(os.getpid())
    draw = next(
        d
        for d in range(10000)
        if start <= agent.choose_address(mappings, d, 1)[1] < start + target.nbytes - 4
    )
    record = agent.flip_memory(b.sup, "supervisor", draw=draw, bits=1)
    if not start <= record.byte_offset < start + target.nbytes:  # the maps moved meanwhile
        fd = os.open("/proc/self/mem", os.O_RDWR)
        os.pwrite(fd, record.old, record.byte_offset)  # put it back before anything uses it
        os.close(fd)
        pytest.fail("the draw no longer picked the test's buffer")
    assert record.site.startswith(f"supervisor pid {os.getpid()}")
    offset = record.byte_offset - start
    assert record.old == b"\x00" and record.new == target[offset : offset + 1].tobytes()
    assert np.flatnonzero(target).tolist() == [offset]
    assert bin(target[offset]).count("1") == 1


def test_choose_address_is_a_function_of_the_draw_weighted_by_size():
    mappings = [agent.Mapping(0x1000, 0x2000, ""), agent.Mapping(0x100000, 0x900000, "[heap]")]
    picks = [agent.choose_address(mappings, d, 3) for d in range(400)]
    assert picks == [agent.choose_address(mappings, d, 3) for d in range(400)]
    assert all(m.start <= a and a + 4 <= m.end and a % 4 == 0 and 0 <= bit <= 29
               for m, a, bit in picks)  # fmt: skip
    small = sum(m.name == "" for m, _, _ in picks)
    assert small < 20  # 1/2049 of the space: a uniform pick of mapping would give ~200
    with pytest.raises(agent.AgentError):
        agent.choose_address([], 1, 1)


# --- the CDS ----------------------------------------------------------------------------------
def test_a_cds_flip_is_found_at_the_next_load_which_recovers_from_the_other_slot(board):
    b = board()
    b.step(6)  # the boot's and a major frame's commits: both slots on disk
    boot = b.sup.cds.boot_count
    reports, (ack,) = b.command(
        "inject", site="cds", partition="", copy=0, offset=30, bit=1, fault="seu",
        cluster=0, node="",
    )  # fmt: skip
    _done(reports)
    newest = b.sup.cds.slot_path(int(ack["target"].rsplit(".", 1)[1]))
    committed = b.sup.cds.record.sequence  # the last commit: the command's own replay window
    assert HEADER.unpack(newest.read_bytes()[: HEADER.size])[3] == committed  # it hit that one
    assert ack["address"] == 30
    assert newest.read_bytes()[30:31] == ack["new"] == bytes([ack["old"][0] ^ 0x02])
    corrupt = b.sup.log.count(events.CDS_COPY_CORRUPT)
    b.sup.cds.load()
    assert b.sup.log.count(events.CDS_COPY_CORRUPT) == corrupt + 1
    assert b.sup.log.count(events.CDS_RECOVERED_FROM_BACKUP) >= 1
    bad = int(newest.name.rsplit(".", 1)[1])
    assert b.sup.cds.last_load.slots[bad].startswith("corrupt")
    assert b.sup.cds.last_load.slots[1 - bad] == "ok" and b.sup.cds.last_load.source == 1 - bad
    assert b.sup.cds.boot_count == boot and b.sup.cds.record.sequence == committed - 1


# --- bad requests and the gate ------------------------------------------------------------------
COMMANDS = [
    ("inject", {**INJECT, "site": "weights"}),
    ("hang_partition", {"partition": PARTITION, "replica": 0}),
    ("crash_partition", {"partition": PARTITION, "replica": 0, "signal": "SIGKILL"}),
    ("flip_memory", {"target": "supervisor", "partition": "", "replica": 0, "draw": 1,
                     "bits": 1}),
]  # fmt: skip


def test_without_test_mode_every_command_is_refused_at_acceptance(board):
    b = board(test_mode=False)
    weights = b.p.job.weights.raw(0).copy()
    pids = [w.pid for w in b.p.workers]
    for name, args in COMMANDS:
        reports, acks = b.command(name, **args)
        assert reports == [("ACCEPTANCE_FAILURE", "NOT_ALLOWED", f"{name} needs a test-mode "
                            "mission")] and acks == []  # fmt: skip
    assert np.array_equal(b.p.job.weights.raw(0), weights)
    assert [w.pid for w in b.p.workers] == pids and b.p.stats.restarts.total() == 0


@pytest.mark.parametrize(
    "act",
    [
        lambda sup: agent.inject_fault(sup, "weights", PARTITION),
        lambda sup: agent.inject_fault(sup, "crc_table", PARTITION),
        lambda sup: agent.inject_fault(sup, "output", PARTITION),
        lambda sup: agent.inject_fault(sup, "activation", PARTITION, node="logits"),
        lambda sup: agent.inject_fault(sup, "cds"),
        lambda sup: agent.hang_partition(sup, PARTITION, 0),
        lambda sup: agent.crash_partition(sup, PARTITION, 0, "SIGKILL"),
        lambda sup: agent.flip_memory(sup, "partition", PARTITION, 0, 1, 1),
        lambda sup: agent.flip_memory(sup, "supervisor", draw=1),
    ],
    ids=["weights", "crc", "output", "activation", "cds", "hang", "crash", "mem", "self"],
)
def test_the_library_refuses_every_injection_without_test_mode(board, act):
    b = board(test_mode=False)
    weights = b.p.job.weights.raw(0).copy()
    pids = [w.pid for w in b.p.workers]
    with pytest.raises(errors.ConfigError, match="test-mode feature"):
        act(b.sup)
    assert np.array_equal(b.p.job.weights.raw(0), weights) and not b.sup.before_vote
    assert [w.pid for w in b.p.workers] == pids and all(w.alive for w in b.p.workers)


@pytest.mark.parametrize(
    "name, args, code, words",
    [
        ("inject", {**INJECT, "site": "weights", "partition": "nowhere"}, "INVALID_ARGUMENT",
         "no partition"),
        ("inject", {**INJECT, "site": "weights", "copy": 3}, "INVALID_ARGUMENT", "copies"),
        ("inject", {**INJECT, "site": "crc_table", "fault": "mbu", "cluster": 4, "bit": 30},
         "INVALID_ARGUMENT", "crosses"),
        ("inject", {**INJECT, "site": "weights", "fault": "mbu", "cluster": 9},
         "INVALID_ARGUMENT", "2..8"),
        ("inject", {**INJECT, "site": "activation", "node": "input"}, "INVALID_ARGUMENT",
         "no activation"),
        ("hang_partition", {"partition": PARTITION, "replica": 2}, "BUSY", "no running worker"),
    ],
    ids=["partition", "copy", "window", "cluster", "node", "dead-worker"],
)  # fmt: skip
def test_bad_requests_are_refused_at_start_naming_why(board, name, args, code, words):
    b = board()
    if name == "hang_partition":
        b.p.workers[0].kill()  # time placement: one worker computes every replica
    reports, acks = b.command(name, **args)
    assert _refused(reports) == ("START_FAILURE", code) and acks == []
    assert words in reports[-1][2]


def test_one_armed_upset_per_partition_and_site(board):
    b = board()
    first = b.send("inject", **{**INJECT, "site": "output"})
    reports, _ = b.command("inject", **{**INJECT, "site": "output", "copy": 1})
    assert _refused(reports) == ("START_FAILURE", "BUSY")
    assert [t.values["request_seq"] for t in b.tm if t.apid == Apid.INJECTION] == [first]


# --- RESULT.sample ----------------------------------------------------------------------------
def test_results_name_the_dataset_sample_of_their_input(board):
    b = board()
    dataset = b.p.job.dataset
    samples = []
    for _ in range(3):
        (result,) = [t.values for t in b.step(1) if t.apid == Apid.RESULT]
        samples.append(result["sample"])
        assert np.array_equal(np.asarray(b.p.job.input).reshape(-1),
                              dataset.x[result["sample"]].reshape(-1))  # fmt: skip
    assert samples == [0, 1, 2]
    b.sup.link.result(PARTITION, 99, np.zeros(10, np.float32), None, False)
    b.sup.link.frame_end(b.sup.frame, b.sup.summary, b.sup.partition_telemetry)
    (result,) = [decode_telemetry(r).values for r in b.transport.sent[b.seen :]
                 if decode_telemetry(r).apid == Apid.RESULT]  # fmt: skip
    assert result["sample"] == 0xFFFFFFFF
