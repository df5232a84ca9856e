"""The space link end to end: a real ``flight run --link`` on loopback, driven by a ground
station (:mod:`hil.link.ground`) the way an operator or the harness drives a board.

Each test starts its own board process (UDP on a free port pair) with its own state directory
and key file; every wait is bounded (a cold numba cache on a loaded machine takes a while, so
the bounds are generous and never a measured margin).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import time
from pathlib import Path

import pytest
from boards import DATA, NullModem, free_tcp_port, wait_until

from hil.link.ground import GroundStation

LINK = '[link]\nkey_file = "{keys}"\nhousekeeping_frames = 5\n'


def _stages(reports) -> list[tuple[str, str]]:
    return [(r.values["stage"], r.values["code"]) for r in reports]


def _up(ground) -> None:
    wait_until(ground, lambda tm: tm.name == "HOUSEKEEPING")


def _partition(ground, predicate=lambda v: True, timeout: float = 60):
    return wait_until(
        ground, lambda tm: tm.name == "PARTITION" and predicate(tm.values), timeout
    ).values


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_a_command_is_verified_in_stages_and_a_forged_one_is_refused(
    board_factory, keys, tmp_path, kind
):
    good, forged = keys
    url = None if kind == "udp" else f"tcp://127.0.0.1:{free_tcp_port()}"
    board = board_factory(LINK.format(keys=good), url=url)
    with board.ground(good) as ground:
        _up(ground)
        reports = ground.command("ping", token=7)
        assert _stages(reports) == [
            ("ACCEPTANCE_SUCCESS", "NONE"),
            ("START_SUCCESS", "NONE"),
            ("COMPLETION_SUCCESS", "NONE"),
        ]
        assert "token=7" in reports[-1].values["detail"]
    # a forger who knows the protocol sends a fresh sequence number, with the wrong key
    (tmp_path / "forger.seq").write_text("10\n")
    with board.ground(forged, sequence_file=tmp_path / "forger.seq") as forger:
        assert _stages(forger.command("ping", token=8)) == [("ACCEPTANCE_FAILURE", "BAD_MAC")]
    link = board.stop()["link"]
    assert link["tc_accepted"] == 1
    assert link["tc_rejected"] == {"BAD_MAC": 1}
    assert link["tm_sent"] > 0


def test_a_replayed_command_is_refused_also_after_the_board_restarts(board_factory, keys):
    good, _ = keys
    board = board_factory(LINK.format(keys=good))
    with GroundStation(board.url, good) as ground:
        _up(ground)
        recorded = ground.seal("ping", token=1)
        ground.send_raw(recorded)
        assert _stages(ground.follow(recorded))[-1] == ("COMPLETION_SUCCESS", "NONE")
        ground.send_raw(recorded)
        assert _stages(ground.follow(recorded)) == [("ACCEPTANCE_FAILURE", "REPLAY")]
    board.stop()
    board.start()
    with GroundStation(board.url, good) as ground:
        _up(ground)
        ground.send_raw(recorded)
        assert _stages(ground.follow(recorded)) == [("ACCEPTANCE_FAILURE", "REPLAY")]
        assert _stages(ground.command("ping", token=2))[-1] == ("COMPLETION_SUCCESS", "NONE")
    assert board.stop()["link"]["tc_rejected"] == {"REPLAY": 1}


def test_random_datagrams_are_refused_and_counted_while_frames_go_on(board_factory, keys):
    good, _ = keys
    board = board_factory(LINK.format(keys=good))
    port = int(board.url.rsplit(":", 1)[1])
    rng = random.Random(20261130)
    sent = 10_000
    with GroundStation(board.url, good) as ground:
        _up(ground)
        before = wait_until(ground, lambda tm: tm.name == "HOUSEKEEPING").values["frames"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood:
            for i in range(sent):
                flood.sendto(rng.randbytes(rng.randrange(0, 300)), ("127.0.0.1", port))
                if i % 50 == 49:  # ~2,500/s: the board takes 256 per 50 ms frame
                    time.sleep(0.02)
        after = wait_until(
            ground, lambda tm: tm.name == "HOUSEKEEPING" and tm.values["frames"] > before
        ).values
        # still obeys its ground after the flood
        assert _stages(ground.command("ping", token=3))[-1] == ("COMPLETION_SUCCESS", "NONE")
    summary = board.stop()
    link = summary["link"]
    refused = link["packets_rejected"] + sum(link["tc_rejected"].values())
    lost_in_kernel = link["transport"].get("rx_overflow", 0)
    assert refused + lost_in_kernel == sent, link
    assert refused > 0.9 * sent, link  # paced: the board itself saw nearly all of them
    assert link["tc_accepted"] == 1
    assert after["frames"] > before
    assert summary["watchdog"]["withheld"] == 0 and summary["exit_code"] == 0


def _crashing_at_once(board_factory, keys, ladder: str):
    """A board whose partition climbs ``ladder`` at its first crash, a ground on it, and that
    crash (the workers SIGKILLed, found as the supervisor's children)."""
    good, _ = keys
    board = board_factory(
        LINK.format(keys=good),
        max_restarts="max_restarts = 0",
        escalation=f"escalation = {ladder}",
    )
    ground = GroundStation(board.url, good)
    _up(ground)
    for pid in board.worker_pids():
        os.kill(pid, signal.SIGKILL)
    return ground


def test_a_partition_disabled_by_the_ladder_is_enabled_by_command(board_factory, keys):
    with _crashing_at_once(board_factory, keys, '["disable"]') as ground:
        _partition(ground, lambda v: v["state"] == "disabled")
        reports = ground.command("enable_partition", partition="classifier")
        assert _stages(reports)[-1] == ("COMPLETION_SUCCESS", "NONE"), _stages(reports)
        back = _partition(ground, lambda v: v["state"] == "nominal")
        later = _partition(ground, lambda v: v["delivered"] > back["delivered"])
        assert not later["disabled"]


def test_safe_mode_is_left_by_command(board_factory, keys):
    with _crashing_at_once(board_factory, keys, '["safe_mode", "reset"]') as ground:
        wait_until(ground, lambda tm: tm.name == "HOUSEKEEPING" and tm.values["safe_mode"])
        reports = ground.command("exit_safe_mode")
        assert _stages(reports)[-1] == ("COMPLETION_SUCCESS", "NONE"), _stages(reports)
        hk = wait_until(
            ground, lambda tm: tm.name == "HOUSEKEEPING" and not tm.values["safe_mode"]
        ).values
        assert hk["system_state"] == "nominal"


def test_an_uploaded_model_goes_live_and_a_corrupted_one_is_refused(board_factory, keys, tmp_path):
    good, _ = keys
    board = board_factory(LINK.format(keys=good))
    model = DATA / "digits_cnn.flm"
    with GroundStation(board.url, good) as ground:
        _up(ground)
        first = _partition(ground)
        # corrupted on the way (one byte), with the MAC of the genuine file
        damaged = tmp_path / "damaged.flm"
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0x10
        damaged.write_bytes(bytes(data))
        ground.send_file(damaged, "new.flm")
        wait_until(ground, lambda tm: tm.name == "EVENT" and tm.values["event_id"] == 709)
        sent = ground.send(
            "model_upload",
            partition="classifier",
            file="new.flm",
            mac=ground.file_mac(model),
            trial_frames=5,
        )
        assert _stages(ground.follow(sent))[-1] == ("COMPLETION_FAILURE", "BAD_MAC")
        still = _partition(ground, lambda v: v["delivered"] > first["delivered"])
        assert still["model"] == first["model"] == "digits_cnn.flm"

        reports = ground.upload_model(model, "classifier", dest_name="good.flm", trial_frames=5)
        assert _stages(reports)[-1] == ("COMPLETION_SUCCESS", "NONE"), _stages(reports)
        live = _partition(ground, lambda v: v["model"] != "digits_cnn.flm")
        assert live["model"].startswith("classifier-") and live["model_crc"] == first["model_crc"]
        serving = _partition(ground, lambda v: v["delivered"] > live["delivered"])
        assert serving["model"] == live["model"]
    board.stop()
    board.start()  # the uploaded model survives a supervisor restart
    with GroundStation(board.url, good) as ground:
        _up(ground)
        assert _partition(ground)["model"] == live["model"]
    summary = board.stop()
    assert summary["partitions"]["classifier"]["delivered"] > 0


def test_without_a_key_file_telemetry_flows_and_every_command_is_refused(board_factory, keys):
    good, _ = keys
    board = board_factory("")
    with GroundStation(board.url, good) as ground:
        hk = wait_until(ground, lambda tm: tm.name == "HOUSEKEEPING").values
        assert hk["active_spi"] == 0
        assert _stages(ground.command("ping", token=1)) == [("ACCEPTANCE_FAILURE", "NO_KEY")]
    link = board.stop()["link"]
    assert link["tc_rejected"] == {"NO_KEY": 1} and link["tc_accepted"] == 0


def test_the_tm_file_holds_every_packet_and_replays(board_factory, keys, tmp_path):
    from hil.link.ground import read_tm_file

    good, _ = keys
    recording = tmp_path / "tm.bin"
    board = board_factory(LINK.format(keys=good), "--tm-file", str(recording))
    with GroundStation(board.url, good) as ground:
        _up(ground)
        ground.command("ping", token=5)
        ground.command("dump_reset_log")
    link = board.stop()["link"]
    packets = list(read_tm_file(recording))
    assert all(not isinstance(p, Exception) for p in packets)
    assert len(packets) == link["tm_created"]
    names = {p.name for p in packets}
    assert {"HOUSEKEEPING", "PARTITION", "EVENT", "RESULT", "VERIFICATION", "DUMP"} <= names
    assert Path(recording).stat().st_size == sum(len(p.raw) for p in packets)

    # an independent implementation reads every packet the run emitted the same way
    from spacepackets.ccsds.spacepacket import PacketType, SpacePacketHeader
    from spacepackets.ecss import check_pus_crc

    counts: dict[int, int] = {}
    for p in packets:
        theirs = SpacePacketHeader.unpack(p.raw)
        assert theirs.packet_type == PacketType.TM and theirs.sec_header_flag
        assert (theirs.apid, theirs.seq_count) == (p.apid, p.seq_count)
        assert theirs.packet_len == len(p.raw) and check_pus_crc(p.raw)
        # sequence counts run per APID without gaps (nothing is dropped from the file)
        assert p.seq_count == counts.get(p.apid, 0)
        counts[p.apid] = p.seq_count + 1


def test_a_board_on_a_serial_line_is_commanded_over_cobs_frames(board_factory, keys):
    good, _ = keys
    with NullModem() as cable:
        board = board_factory(LINK.format(keys=good), url=f"serial://{cable.board}?baud=115200")
        with GroundStation(f"serial://{cable.ground}?baud=115200", good) as ground:
            _up(ground)
            reports = ground.command("ping", token=9)
            assert _stages(reports)[-1] == ("COMPLETION_SUCCESS", "NONE")
            results = wait_until(ground, lambda tm: tm.name == "RESULT").values
            assert results["status"] == "delivered"
        link = board.stop()["link"]
    assert link["tc_accepted"] == 1 and link["transport"]["framing_errors"] == 0
