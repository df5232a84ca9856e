"""The link service in process: a fake transport, a real CDS, real keys and codecs.

What a board does with what it hears (acceptance, refusals and their counts, the replay
window persisted before execution), and what it says (events, results checked against the
voter's CRC-32C, housekeeping, the priority of the store).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from boards import FakeTransport

from flight import events
from flight.cds import CriticalDataStore
from flight.crc import crc32c
from flight.link import catalog, packet
from flight.link.codes import Apid
from flight.link.contact import ContactConfig
from flight.link.keys import Key, KeyRing
from flight.link.sdls import seal_command
from flight.link.service import LinkService
from flight.mission import LinkConfig
from hil.link.ground import decode_telemetry

KEY = Key(1, bytes(range(32)))
OTHER = Key(2, bytes(range(32, 64)))


def make_service(tmp_path, *, keys=True, test_mode=False, **config):
    log = events.EventLog()
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    cds = CriticalDataStore(state, log=log)
    cds.load()
    transport = FakeTransport()
    ring = KeyRing({1: KEY, 2: OTHER}, 1) if keys else None
    service = LinkService(
        LinkConfig(**config),
        transport,
        log=log,
        cds=cds,
        staging_dir=state / "uploads",
        keyring=ring,
        test_mode=test_mode,
    )
    return service, transport, log, cds


def command(name: str, sequence: int, key: Key = KEY, **args) -> bytes:
    body = catalog.COMMANDS_BY_NAME[name].encode(args)
    return seal_command(key, sequence & 0x3FFF, sequence, body)


def reports(transport) -> list[tuple[str, str]]:
    out = []
    for raw in transport.sent:
        tm = decode_telemetry(raw)
        if tm.apid == Apid.VERIFICATION:
            out.append((tm.values["stage"], tm.values["code"]))
    return out


def drain(service) -> None:
    service.frame_end(1, lambda: {}, lambda: [])


def test_an_authentic_command_is_accepted_and_its_window_is_on_disk_before_it_runs(tmp_path):
    service, transport, _log, _cds = make_service(tmp_path)
    transport.inbox.append(command("ping", 5, token=9))
    accepted = service.poll()
    assert [c.name for c in accepted] == ["ping"] and accepted[0].args == {"token": 9}
    # persisted already: a fresh store on the same directory sees the window
    fresh = CriticalDataStore(tmp_path / "state")
    assert fresh.load().last_good_state["link_replay"] == {"1": 5}
    drain(service)
    assert reports(transport) == [("ACCEPTANCE_SUCCESS", "NONE")]
    assert service.counters.tc_accepted == 1


@pytest.mark.parametrize(
    "raw, code",
    [
        (command("ping", 1, key=Key(1, bytes(32)), token=1), "BAD_MAC"),
        (command("ping", 1, key=OTHER, token=1), "KEY_INACTIVE"),
        (command("ping", 1, key=Key(7, bytes(range(32))), token=1), "UNKNOWN_KEY"),
        (seal_command(KEY, 0, 1, b"\x7f\x7f"), "UNKNOWN_OPCODE"),
        (seal_command(KEY, 0, 1, catalog.COMMANDS_BY_NAME["ping"].encode({"token": 1})[:-1]),
         "MALFORMED"),
        (command("test_flip_bit", 1, partition="p", copy=0, byte_offset=0, bit=0), "NOT_ALLOWED"),
    ],
)  # fmt: skip
def test_each_refusal_is_reported_and_counted_under_its_code(tmp_path, raw, code):
    service, transport, log, _ = make_service(tmp_path)
    transport.inbox.append(raw)
    assert service.poll() == []
    drain(service)
    assert reports(transport) == [("ACCEPTANCE_FAILURE", code)]
    assert dict(service.counters.tc_rejected) == {code: 1}
    assert log.count(events.TC_REJECTED) == 1


def test_a_replay_is_refused_and_a_forgery_does_not_move_the_window(tmp_path):
    service, transport, _, _ = make_service(tmp_path)
    forged = command("ping", 60, key=Key(1, bytes(32)), token=1)  # high sequence, wrong key
    good = command("ping", 1, token=1)
    transport.inbox += [forged, good, good]
    assert [c.sequence for c in service.poll()] == [1]
    assert dict(service.counters.tc_rejected) == {"BAD_MAC": 1, "REPLAY": 1}


def test_without_keys_every_command_is_refused(tmp_path):
    service, transport, _, _ = make_service(tmp_path, keys=False)
    transport.inbox.append(command("ping", 1, token=1))
    assert service.poll() == []
    assert dict(service.counters.tc_rejected) == {"NO_KEY": 1}


def test_garbage_is_counted_with_one_event_per_poll(tmp_path):
    service, transport, log, _ = make_service(tmp_path, max_packets_per_frame=100)
    rng = random.Random(3)
    transport.inbox += [rng.randbytes(rng.randrange(0, 200)) for _ in range(250)]
    for _ in range(3):
        service.poll()
    assert service.counters.packets_rejected == 250
    assert log.count(events.LINK_PACKET_REJECTED) == 250
    assert len([e for e in log if e.definition is events.LINK_PACKET_REJECTED]) == 3


def test_a_result_whose_bytes_changed_after_the_vote_is_withheld(tmp_path):
    service, transport, log, _ = make_service(tmp_path)
    output = np.arange(10, dtype=np.float32)
    crc = crc32c(output)
    assert service.result("classifier", 1, output, crc, True, 9) is True
    output.view(np.uint8)[5] ^= 0x04  # an upset between the vote and the downlink
    assert service.result("classifier", 2, output, crc, True, 9) is False
    drain(service)
    results = [decode_telemetry(r).values for r in transport.sent]
    results = [v for v in results if "status" in v]
    assert [(v["sequence"], v["status"]) for v in results] == [(1, "delivered"), (2, "withheld")]
    assert results[0]["output"] == np.arange(10, dtype=np.float32).tobytes()
    assert results[0]["crc32c"] == crc and results[1]["output"] == b""
    assert log.count(events.RESULT_CORRUPTED) == 1 and service.counters.results_withheld == 1


def test_every_event_becomes_an_event_packet_with_its_count(tmp_path):
    service, transport, log, _ = make_service(tmp_path)
    log.emit(events.VOTE_CORRECTED, 3, partition="classifier", replica=1, words=4)
    drain(service)
    tm = [decode_telemetry(r) for r in transport.sent]
    (event,) = [
        t.values
        for t in tm
        if t.apid == Apid.EVENT and t.values["event_id"] == events.VOTE_CORRECTED.id
    ]
    assert event["event_id"] == events.VOTE_CORRECTED.id and event["count"] == 3
    assert event["severity"] == "INFO"
    assert event["args"] == "partition=classifier replica=1 words=4"


def test_urgent_packets_leave_before_bulk_ones(tmp_path):
    service, transport, log, _ = make_service(tmp_path)
    output = np.zeros(4, np.float32)
    for i in range(5):
        service.result("p", i, output, crc32c(output), True)
    log.emit(events.KEY_SWITCHED, old=1, new=2)
    drain(service)
    apids = [packet.decode(r).apid for r in transport.sent]
    assert apids[0] == Apid.EVENT and apids.count(Apid.RESULT) == 5


def test_nothing_leaves_while_the_contact_is_closed(tmp_path):
    service, transport, log, _ = make_service(tmp_path, contact=ContactConfig("command"))
    log.emit(events.KEY_SWITCHED, old=1, new=2)
    drain(service)
    assert transport.sent == []
    service.contact.open_for(60, service.clock())
    drain(service)
    assert transport.sent


def test_pending_results_survive_a_restart(tmp_path):
    service, _transport, _, _ = make_service(tmp_path, contact=ContactConfig("command"))
    output = np.ones(4, np.float32)
    service.result("p", 7, output, crc32c(output), True)
    service.close()
    again, transport2, _, _ = make_service(tmp_path, contact=ContactConfig("always"))
    drain(again)
    values = [decode_telemetry(r).values for r in transport2.sent]
    assert [v["sequence"] for v in values if "status" in v] == [7]


def test_every_declared_command_has_a_handler():
    from flight.commanding import HANDLERS

    assert set(HANDLERS) == set(catalog.COMMANDS_BY_NAME)


def test_a_packet_bigger_than_a_frames_share_still_goes_down(tmp_path):
    service, transport, _, _ = make_service(tmp_path, downlink_bytes_per_frame=64)
    output = np.zeros(64, np.float32)  # a 256-byte output: four frames' share
    service.result("p", 1, output, crc32c(output), True)
    frames = 0
    while not any(packet.decode(r).apid == Apid.RESULT for r in transport.sent):
        service.frame_end(frames, lambda: {}, lambda: [])
        frames += 1
        assert frames < 20, "the result never left"
    assert frames >= 4  # it waited for the credit, it did not jump the budget


def test_events_below_the_mission_s_severity_are_counted_not_sent(tmp_path):
    service, transport, log, _ = make_service(tmp_path, event_severity="warning")
    log.emit(events.SCRUB_PASS_COMPLETED)  # debug
    log.emit(events.TC_ACCEPTED, command="ping")  # info
    log.emit(events.TM_DROPPED, priority="bulk")  # warning
    drain(service)
    sent = [decode_telemetry(r).values for r in transport.sent]
    assert [v["event_id"] for v in sent if "event_id" in v] == [events.TM_DROPPED.id]
    assert log.count(events.SCRUB_PASS_COMPLETED) == 1
