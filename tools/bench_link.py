"""Space link benchmarks: packets encoded and decoded per second (flight against the independent
`spacepackets` library on the same packets), telecommand verification time, the link's
overhead per inference result (bytes, and µs against the TMR inference itself), and the frame
time of a supervisor flooded with garbage against the same supervisor unflooded.

    python tools/bench_link.py [--quick]

As in tools/bench.py, each figure is the best of several repeats and the comparison is a ratio
measured in the same run: absolute numbers move on a shared machine, ratios mostly do not.
`spacepackets` is a ground-side extra (the test extra installs it); without it the comparison
figures are left out.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from contextlib import suppress

from flight.errors import AuthenticationError
from flight.link import packet
from flight.link.codes import Apid
from flight.link.keys import Key, KeyRing
from flight.link.sdls import Verifier, seal_command

BOARD_TIME = 1_795_000_000.5

# One packet of each telemetry kind, at a typical size of its user data (bytes).
TM_SIZES = {
    Apid.HOUSEKEEPING: 160,
    Apid.PARTITION: 140,
    Apid.EVENT: 60,
    Apid.VERIFICATION: 40,
    Apid.RESULT: 4096 + 80,  # a 1024-float output
    Apid.DUMP: 1040,
}


def _best(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of one call of ``fn`` over ``repeat`` rounds."""
    fn()  # warm up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _user_data() -> list[tuple[int, int, bytes]]:
    return [
        (apid, count, bytes((count + i) % 256 for i in range(size)))
        for count, (apid, size) in enumerate(TM_SIZES.items())
    ]


def _flight_codec(items: list[tuple[int, int, bytes]], rounds: int) -> tuple[Callable, Callable]:
    encode_tm, decode, split_tm = packet.encode_tm, packet.decode, packet.split_tm
    raws = [encode_tm(apid, count, user, BOARD_TIME) for apid, count, user in items]

    def encode_all() -> None:
        for _ in range(rounds):
            for apid, count, user in items:
                encode_tm(apid, count, user, BOARD_TIME)

    def decode_all() -> None:
        for _ in range(rounds):
            for raw in raws:
                split_tm(decode(raw))

    return encode_all, decode_all


def _spacepackets_codec(
    items: list[tuple[int, int, bytes]], rounds: int
) -> tuple[Callable, Callable] | None:
    """The same work with spacepackets: its header and packet classes, its CRC (fastcrc); the
    CUC secondary header as bytes (spacepackets has no CUC time provider)."""
    try:
        import struct

        from fastcrc import crc16
        from spacepackets.ccsds.spacepacket import SpacePacket, SpacePacketHeader
        from spacepackets.ecss import check_pus_crc
    except ImportError:
        return None
    from flight.link.timecode import cuc_decode, cuc_encode

    raws = [packet.encode_tm(apid, count, user, BOARD_TIME) for apid, count, user in items]

    def encode_all() -> None:
        for _ in range(rounds):
            for apid, count, user in items:
                stamp = cuc_encode(BOARD_TIME)
                header = SpacePacketHeader.tm(
                    apid, count, len(stamp) + len(user) + 1, sec_header_flag=True
                )
                raw = SpacePacket(header, stamp, user).pack()
                raw.extend(struct.pack(">H", crc16.ibm_3740(bytes(raw))))

    def decode_all() -> None:
        for _ in range(rounds):
            for raw in raws:
                header = SpacePacketHeader.unpack(raw)
                if header.packet_len != len(raw) or not check_pus_crc(raw):
                    raise AssertionError("spacepackets refused a flight packet")
                cuc_decode(raw[6:13])
                _user = raw[13:-2]

    return encode_all, decode_all


def bench_packets(quick: bool = False) -> dict[str, float]:
    """Telemetry packets encoded and decoded per second (one of each kind, typical sizes), by
    flight and by spacepackets, and flight's speed-up over it (>1: flight is faster)."""
    rounds, repeat = (200, 3) if quick else (2000, 5)
    items = _user_data()
    per_call = rounds * len(items)
    result: dict[str, float] = {}
    flight_encode, flight_decode = _flight_codec(items, rounds)
    result["flight_encode_per_s"] = per_call / _best(flight_encode, repeat)
    result["flight_decode_per_s"] = per_call / _best(flight_decode, repeat)
    theirs = _spacepackets_codec(items, rounds)
    if theirs is not None:
        result["spacepackets_encode_per_s"] = per_call / _best(theirs[0], repeat)
        result["spacepackets_decode_per_s"] = per_call / _best(theirs[1], repeat)
        result["encode_ratio"] = result["flight_encode_per_s"] / result["spacepackets_encode_per_s"]
        result["decode_ratio"] = result["flight_decode_per_s"] / result["spacepackets_decode_per_s"]
    return result


def bench_verify(quick: bool = False) -> dict[str, float]:
    """Microseconds per telecommand verification (security header, window, HMAC-SHA256 with a
    16-byte MAC), on a fresh verifier per round so every command is accepted."""
    count, repeat = (2000, 3) if quick else (20000, 5)
    key = Key(1, bytes(range(32)))
    keyring = KeyRing({1: key}, 1)
    body = b"\x00\x01\xca\xfe\xba\xbe"  # ping(token)
    commands = [seal_command(key, i % 16384, i, body)[: -packet.CRC_LEN] for i in range(count)]
    forged = seal_command(Key(1, bytes(32)), 0, 0, body)[: -packet.CRC_LEN]

    def accept_all() -> None:
        verify = Verifier(keyring).verify
        for raw in commands:
            verify(raw)

    def refuse_all() -> None:
        verifier = Verifier(keyring)
        for _ in range(count):
            with suppress(AuthenticationError):  # the refusal is what is timed
                verifier.verify(forged)

    return {
        "verify_us": _best(accept_all, repeat) / count * 1e6,
        "verify_forged_us": _best(refuse_all, repeat) / count * 1e6,
    }


def _service(tmp: str, **config):
    """A link service over a transport that drops everything (the cost is the board's)."""
    from pathlib import Path

    from flight import events
    from flight.cds import CriticalDataStore
    from flight.link.service import LinkService, NullTransport
    from flight.mission import LinkConfig

    log = events.EventLog()
    cds = CriticalDataStore(tmp, log=log)
    cds.load()
    return LinkService(
        LinkConfig(**config), NullTransport(), log=log, cds=cds, staging_dir=Path(tmp) / "up"
    )


def bench_result_overhead(quick: bool = False) -> dict[str, float]:
    """What downlinking one inference result costs: bytes on the wire besides the output, and
    µs per result (CRC-32C check, RESULT encode, packet, store) against one TMR inference of
    the demo CNN measured in the same run."""
    import tempfile

    import numpy as np

    from flight.crc import crc32c
    from flight.mission import default_mission
    from flight.model import load
    from flight.redundancy import RedundantRunner

    count, repeat = (500, 3) if quick else (5000, 5)
    spec = default_mission().partitions[0]
    runner = RedundantRunner(load(spec.model_path), "tmr")
    x = np.zeros(runner.model.shapes[runner.model.input_names[0]], np.float32)
    runner.run(x)  # compile
    output = runner.run(x).output
    crc = crc32c(output)
    with tempfile.TemporaryDirectory() as tmp:
        service = _service(tmp, store_bulk_bytes=256 << 20)

        def results() -> None:
            for i in range(count):
                service.result("classifier", i, output, crc, True, 3)

        per_result = _best(results, repeat) / count
        packets = service.store.drain(1 << 30)
    inference = _best(lambda: runner.run(x), repeat)
    return {
        "result_packet_bytes": float(len(packets[-1])),
        "result_overhead_bytes": float(len(packets[-1]) - output.nbytes),
        "result_us": per_result * 1e6,
        "tmr_inference_us": inference * 1e6,
        "result_over_inference": per_result / inference,
    }


def bench_flood(quick: bool = False) -> dict[str, float]:
    """Median frame time of the demo mission (fast mode) with 256 garbage datagrams arriving
    every frame (the per-frame cap), against the same mission with a quiet link."""
    import random
    import tempfile
    from pathlib import Path

    from flight.link.service import NullTransport
    from flight.mission import default_mission, parse_mission
    from flight.supervisor import Supervisor

    frames = 60 if quick else 300

    class Flood(NullTransport):
        def __init__(self, per_frame: int) -> None:
            rng = random.Random(1)
            self.batch = [rng.randbytes(rng.randrange(0, 300)) for _ in range(per_frame)]

        def receive(self, max_items: int) -> list[bytes]:
            return self.batch[:max_items]

    def median_frame(per_frame: int) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(default_mission().source)
            text = source.read_text() + f'\n[cds]\ndirectory = "{tmp}"\n'
            mission = parse_mission(text, base_dir=source.parent)
            sup = Supervisor(mission, realtime=False, fresh_recovery=True,
                             link_transport=Flood(per_frame))  # fmt: skip
            sup.start()
            times = []
            try:
                for _ in range(frames):
                    started = time.perf_counter()
                    sup.step()
                    times.append(time.perf_counter() - started)
            finally:
                sup.shutdown()
            times = sorted(times[frames // 5 :])
            return times[len(times) // 2]

    quiet = median_frame(0)
    flooded = median_frame(256)
    return {
        "frame_ms_quiet": quiet * 1e3,
        "frame_ms_flooded_256_per_frame": flooded * 1e3,
        "flooded_over_quiet": flooded / quiet,
    }


def bench_link(quick: bool = False) -> dict[str, float]:
    """Every figure above, flat (tools/bench.py's ``link`` section)."""
    out: dict[str, float] = {}
    for name, fn in (
        ("packets", bench_packets),
        ("verify", bench_verify),
        ("result", bench_result_overhead),
        ("flood", bench_flood),
    ):
        out.update({f"{name}.{k}": v for k, v in fn(quick).items()})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    results = {
        "packets": bench_packets(args.quick),
        "verify": bench_verify(args.quick),
        "result": bench_result_overhead(args.quick),
        "flood": bench_flood(args.quick),
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for section, figures in results.items():
        for name, value in figures.items():
            print(f"{section:8} {name:28} {value:14,.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
