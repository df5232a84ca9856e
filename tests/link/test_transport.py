"""The link's transports on loopback: UDP, TCP and serial (a pseudo-terminal pair, loop://).

Every socket is bound to 127.0.0.1 with port 0 (or the port a board just got). Waits are
bounded by a count of polls, never measured: a loaded machine makes them slower, not wrong.
"""

from __future__ import annotations

import binascii
import contextlib
import itertools
import os
import select
import socket
import struct
import sys
import threading
import time

import pytest
from cobs import cobs
from hypothesis import given
from hypothesis import strategies as st

from flight.errors import ConfigError
from flight.link.framing import CobsDeframer, cobs_frame
from flight.link.transport import (
    UDP_RECEIVE_BUFFER_BYTES,
    Endpoint,
    GroundTransport,
    TcpServerTransport,
    Transport,
    open_board_transport,
    open_ground_transport,
    parse_url,
)

LOCAL = "127.0.0.1"


def packet(apid: int = 0x100, seq: int = 0, payload: bytes = b"payload", tc: bool = True) -> bytes:
    """A CCSDS space packet with its CRC-16, built here independently of flight.link.packet."""
    data_len = len(payload) + 2
    header = struct.pack(">HHH", (int(tc) << 12) | apid, 0xC000 | seq, data_len - 1)
    crc = binascii.crc_hqx(header + payload, 0xFFFF)
    return header + payload + crc.to_bytes(2, "big")


def collect(transport, count: int, polls: int = 2000) -> list[bytes]:
    """Poll a board transport until ``count`` packets came (or ``polls`` waits of <= 10 ms)."""
    items: list[bytes] = []
    for _ in range(polls):
        items += transport.receive(count - len(items))
        if len(items) >= count:
            break
        fds = transport._readable_fds()
        if fds:
            select.select(fds, [], [], 0.01)
        else:
            time.sleep(0.005)
    return items


def poll_until(transport, done, polls: int = 2000) -> None:
    """Poll a board transport (receiving nothing meant for the test) until ``done()``."""
    for _ in range(polls):
        if done():
            return
        collect(transport, 1, polls=1)
    pytest.fail("the transport never got there")


def ground_collect(ground, count: int) -> list[bytes]:
    items: list[bytes] = []
    for _ in range(200):
        items += ground.receive(count - len(items), timeout=0.05)
        if len(items) >= count:
            break
    return items


# --- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("udp://127.0.0.1:5000", Endpoint("udp", host="127.0.0.1", port=5000)),
        (
            "udp://127.0.0.1:5000?tm=10.0.0.2:6000",
            Endpoint("udp", host="127.0.0.1", port=5000, tm=("10.0.0.2", 6000)),
        ),
        ("udp://[::1]:0?tm=[::1]:7", Endpoint("udp", host="::1", port=0, tm=("::1", 7))),
        ("tcp://localhost:0", Endpoint("tcp", host="localhost", port=0)),
        ("serial:///dev/ttyS1?baud=9600", Endpoint("serial", device="/dev/ttyS1", baud=9600)),
        ("serial:///dev/ttyUSB0", Endpoint("serial", device="/dev/ttyUSB0", baud=115200)),
        ("/dev/ttyACM0", Endpoint("serial", device="/dev/ttyACM0")),
        ("serial+loop://", Endpoint("serial", device="loop://")),
    ],
)
def test_parse_url_accepts_the_documented_forms(url: str, endpoint: Endpoint) -> None:
    assert parse_url(url) == endpoint


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("", "non-empty"),
        ("http://127.0.0.1:80", "unknown scheme"),
        ("udp://127.0.0.1", "HOST:PORT"),
        ("udp://:5000", "HOST:PORT"),
        ("udp://127.0.0.1:70000", "port must be"),
        ("udp://127.0.0.1:5²", "port must be"),
        ("udp://127.0.0.1:" + "9" * 5000, "port must be"),
        ("udp://127.0.0.1:5000?tm=10.0.0.2", "HOST:PORT"),
        ("udp://127.0.0.1:5000?tx=10.0.0.2:1", "unknown option 'tx'"),
        ("udp://127.0.0.1:5000?tm=a:1&tm=b:2", "repeated"),
        ("udp://127.0.0.1:5000/path", "unexpected path"),
        ("tcp://127.0.0.1:5000?tm=a:1", "unknown option 'tm'"),
        ("serial:///dev/ttyS1?baud=fast", "baud must be"),
        ("serial:///dev/ttyS1?baud=0", "baud must be"),
        ("serial://host/dev/ttyS1", "serial:///dev/ttyX"),
        ("serial+loop", "pyserial URL"),
        ("udp://[", "Invalid IPv6 URL"),
    ],
)
def test_parse_url_refuses_bad_urls_naming_the_problem(url: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        parse_url(url)


def test_the_ground_needs_the_boards_port_and_port_plus_one_must_exist() -> None:
    with pytest.raises(ConfigError, match="board's port"):
        open_ground_transport("udp://127.0.0.1:0")
    with pytest.raises(ConfigError, match="PORT\\+1"):
        open_ground_transport("udp://127.0.0.1:65535")


def test_opening_what_cannot_be_opened_is_a_config_error_naming_the_url() -> None:
    with (
        open_board_transport(f"udp://{LOCAL}:0") as udp,
        open_board_transport(f"tcp://{LOCAL}:0") as tcp,
    ):
        with pytest.raises(ConfigError, match="cannot bind UDP"):
            open_board_transport(f"udp://{LOCAL}:{udp.address[1]}")
        with pytest.raises(ConfigError, match="cannot listen on TCP"):
            open_board_transport(f"tcp://{LOCAL}:{tcp.address[1]}")
    with pytest.raises(ConfigError, match="cannot connect"):
        open_ground_transport(f"tcp://{LOCAL}:{tcp.address[1]}")  # closed: refused
    with pytest.raises(ConfigError, match="cannot resolve"):
        open_board_transport("udp://no-such-host.invalid:5000")
    with pytest.raises(ConfigError, match="cannot open serial link '/dev/no-such-tty'"):
        open_board_transport("/dev/no-such-tty")


# --- UDP --------------------------------------------------------------------------------------


def udp_pair():
    """A board on a free port and a ground on the board's PORT+1 (the default rule). Retries
    when another process holds PORT+1."""
    for _ in range(50):
        board = open_board_transport(f"udp://{LOCAL}:0")
        try:
            return board, open_ground_transport(f"udp://{LOCAL}:{board.address[1]}")
        except ConfigError:
            board.close()
    pytest.fail("no free UDP port pair")


def test_udp_round_trip_both_ways_with_telemetry_to_port_plus_one() -> None:
    board, ground = udp_pair()
    with board, ground:
        assert ground.address == (LOCAL, board.address[1] + 1)
        tc = [packet(seq=i) for i in range(3)]
        assert all(ground.send(p) for p in tc)
        assert collect(board, 3) == tc
        tm = packet(apid=0x010, tc=False, payload=b"hk" * 50)
        assert board.send(tm)
        assert ground_collect(ground, 1) == [tm]
        assert board.counters()["rx_items"] == 3
        assert board.counters()["rx_bytes"] == sum(map(len, tc))
        assert board.counters()["tx_items"] == 1
        assert ground.counters()["tx_bytes"] == sum(map(len, tc))


def test_udp_telemetry_goes_to_the_tm_address() -> None:
    first = open_board_transport(f"udp://{LOCAL}:0")
    port = first.address[1]
    with open_ground_transport(f"udp://{LOCAL}:{port}?tm={LOCAL}:0") as ground:
        first.close()  # reopen the board on the same port, now told where the ground listens
        with open_board_transport(f"udp://{LOCAL}:{port}?tm={LOCAL}:{ground.address[1]}") as b:
            assert b.send(packet(tc=False))
            assert ground_collect(ground, 1) == [packet(tc=False)]
            assert ground.send(packet())
            assert collect(b, 1) == [packet()]


def test_ground_receive_waits_for_what_arrives_within_its_timeout() -> None:
    board, ground = udp_pair()
    with board, ground:
        later = threading.Timer(0.2, board.send, args=(packet(tc=False),))
        later.start()
        try:
            assert ground.receive(1, timeout=60) == [packet(tc=False)]
        finally:
            later.cancel()


class _Silent(Transport):
    """A transport that never receives anything, on a pipe that never turns readable."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        self.calls = 0

    def receive(self, max_items: int) -> list[bytes]:
        self.calls += 1
        return []

    def _readable_fds(self) -> list[int]:
        return [self.fd]


def test_ground_receive_sleeps_in_select_instead_of_spinning() -> None:
    read_end, write_end = os.pipe()
    try:
        silent = _Silent(read_end)
        assert GroundTransport(silent).receive(1, timeout=0.3) == []
        assert silent.calls <= 3  # before the wait, after it (and one spare for a signal)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_udp_receive_takes_at_most_max_items_per_call() -> None:
    board, ground = udp_pair()
    with board, ground:
        for i in range(25):
            ground.send(packet(seq=i))
        got = collect(board, 10)
        assert len(got) == 10
        assert len(board.receive(10)) == 10
        assert collect(board, 5) == [packet(seq=i) for i in range(20, 25)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_RXQ_OVFL is Linux's")
def test_udp_reports_the_datagrams_the_kernel_dropped() -> None:
    board = open_board_transport(f"udp://{LOCAL}:0")
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with board, sender:
        board._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a tiny queue
        flood = packet(payload=bytes(1400))
        for _ in range(500):
            sender.sendto(flood, board.address)
        while board.receive(1000):
            pass
        sender.sendto(packet(), board.address)  # the counter travels with the next datagram
        assert collect(board, 1) == [packet()]
        assert board.counters()["rx_overflow"] > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's buffer accounting")
def test_udp_asks_for_a_receive_queue_that_holds_a_burst() -> None:
    with open("/proc/sys/net/core/rmem_max") as f:
        cap = int(f.read())
    with open_board_transport(f"udp://{LOCAL}:0") as board:
        got = board._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert got == 2 * min(UDP_RECEIVE_BUFFER_BYTES, cap)  # Linux doubles what it grants


def test_udp_send_failures_are_counted_not_raised() -> None:
    board, ground = udp_pair()
    with board, ground:
        assert not board.send(bytes(70000))  # longer than any datagram: EMSGSIZE
        assert board.counters()["tx_failed"] == 1
        assert board.counters()["tx_items"] == 0


# --- TCP --------------------------------------------------------------------------------------


def tcp_board() -> TcpServerTransport:
    return open_board_transport(f"tcp://{LOCAL}:0")


def test_tcp_round_trips_with_every_client_getting_telemetry() -> None:
    with tcp_board() as board:
        url = f"tcp://{LOCAL}:{board.address[1]}"
        with open_ground_transport(url) as one, open_ground_transport(url) as two:
            assert one.send(packet(seq=1)) and two.send(packet(seq=2))
            assert sorted(collect(board, 2)) == sorted([packet(seq=1), packet(seq=2)])
            assert board.counters()["clients"] == 2
            tm = [packet(apid=0x011, seq=i, tc=False, payload=bytes(300)) for i in range(5)]
            assert all(board.send(p) for p in tm)
            assert ground_collect(one, 5) == tm
            assert ground_collect(two, 5) == tm
        poll_until(board, lambda: board.counters()["disconnects"] == 2)
        counts = board.counters()
        assert counts["disconnects"] == 2
        assert counts["clients"] == 0
        assert not board.send(packet(tc=False))  # nobody to send to
        assert board.counters()["tx_failed"] == 1


def test_tcp_ground_send_fails_after_the_board_hangs_up() -> None:
    board = tcp_board()
    ground = open_ground_transport(f"tcp://{LOCAL}:{board.address[1]}")
    with ground:
        poll_until(board, lambda: board.counters()["clients"] == 1)
        board.close()
        for _ in range(200):
            assert ground.receive(1, timeout=0.05) == []
            if ground.counters()["disconnects"]:
                break
        assert ground.counters()["disconnects"] == 1
        assert not ground.send(packet())
        assert ground.counters()["tx_failed"] == 1


def test_tcp_ground_flush_and_close_wait_for_queued_telecommands() -> None:
    with tcp_board() as board:
        # small socket buffers on both ends, so that most of what is sent waits in the queue
        board._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ground = open_ground_transport(f"tcp://{LOCAL}:{board.address[1]}")
        ground.inner._conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        got: list[bytes] = []

        def read_until_the_ground_hangs_up() -> None:
            for _ in range(100_000):
                got.extend(collect(board, 100, polls=1))
                if board.counters()["disconnects"]:
                    return

        reader = threading.Thread(target=read_until_the_ground_hangs_up)
        pdus = [packet(apid=0x101, seq=i, payload=bytes([i]) * 20000) for i in range(60)]
        sent = [ground.send(p) for p in pdus[:30]]
        assert ground.inner._queued_bytes() > 100_000  # the test's premise: bytes are waiting
        reader.start()
        try:
            flushed = ground.flush(timeout=60)
            sent += [ground.send(p) for p in pdus[30:]]
        finally:
            ground.close(linger_s=60)
            reader.join()
        assert flushed
        assert all(sent)
        assert got == pdus


def test_tcp_ground_flush_is_false_when_the_board_is_gone() -> None:
    board = tcp_board()
    ground = open_ground_transport(f"tcp://{LOCAL}:{board.address[1]}")
    with ground:
        poll_until(board, lambda: board.counters()["clients"] == 1)
        board.close()
        for _ in range(200):
            ground.receive(1, timeout=0.05)
            if ground.counters()["disconnects"]:
                break
        assert not ground.flush(timeout=1)


@pytest.mark.timeout(120)
def test_tcp_client_that_never_reads_does_not_block_the_board() -> None:
    with tcp_board() as board:
        stuck = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(board.address)
        reader = open_ground_transport(f"tcp://{LOCAL}:{board.address[1]}")
        with stuck, reader:
            poll_until(board, lambda: board.counters()["clients"] == 2)
            tm = packet(tc=False, payload=bytes(1000))
            received = 0
            for _ in range(8000):  # 8 MB: far more than the stuck client's socket and queue
                assert board.send(tm)  # the reading client always has room
                received += len(reader.receive(100))
            for _ in range(2000):
                if received == 8000:
                    break
                board.receive(1)  # keeps flushing the reader's queue
                received += len(reader.receive(100, timeout=0.01))
            assert received == 8000
            assert board.counters()["client_drops"] > 0
            assert board.counters()["tx_failed"] == 0


def test_tcp_clients_take_turns_at_being_read_first() -> None:
    with tcp_board() as board:
        url = f"tcp://{LOCAL}:{board.address[1]}"
        with open_ground_transport(url) as one, open_ground_transport(url) as two:
            poll_until(board, lambda: board.counters()["clients"] == 2)
            for i in range(5):
                one.send(packet(apid=0x101, seq=i))
                two.send(packet(apid=0x102, seq=i))
            got = []
            for _ in range(2000):
                got += board.receive(1)
                if len(got) == 10:
                    break
            apids = [int.from_bytes(p[:2], "big") & 0x7FF for p in got]
            assert sorted(apids) == [0x101] * 5 + [0x102] * 5
            assert set(apids[:2]) == {0x101, 0x102}  # one flooding client cannot starve another


def test_tcp_garbage_is_skipped_and_counted_and_partial_packets_wait() -> None:
    with tcp_board() as board:
        peer = socket.create_connection(board.address)
        with peer:
            peer.sendall(b"\xff" * 100 + packet(seq=1))
            assert collect(board, 1) == [packet(seq=1)]
            assert board.counters()["framing_errors"] == 100
            whole = packet(seq=2, payload=bytes(500))
            peer.sendall(whole[:5])  # not even a whole header
            assert collect(board, 1, polls=5) == []
            peer.sendall(whole[5:300])
            assert collect(board, 1, polls=5) == []
            peer.sendall(whole[300:] + packet(seq=3))
            assert collect(board, 2) == [whole, packet(seq=3)]
            peer.sendall(packet(seq=4)[:9])  # cut short by the hang-up
        poll_until(board, lambda: board.counters()["disconnects"] == 1)
        counts = board.counters()
        assert counts["framing_errors"] == 101
        assert counts["disconnects"] == 1
        assert counts["rx_items"] == 3


def test_tcp_clients_beyond_the_limit_are_refused() -> None:
    board = TcpServerTransport(socket.AF_INET, (LOCAL, 0), max_clients=1)
    with board:
        first = socket.create_connection(board.address)
        second = socket.create_connection(board.address)
        with first, second:
            poll_until(board, lambda: board.counters()["refused"] == 1)
            assert board.counters()["accepted"] == 1
            assert board.counters()["refused"] == 1


# --- serial -----------------------------------------------------------------------------------


@pytest.fixture
def pty_board():
    """A board on the slave of a pseudo-terminal; the test speaks on the master."""
    master, slave = os.openpty()
    name = os.ttyname(slave)
    board = open_board_transport(name)
    os.close(slave)  # pyserial holds its own descriptor
    os.set_blocking(master, False)
    yield board, master
    board.close()
    with contextlib.suppress(OSError):  # a test closed it
        os.close(master)


def read_master(master: int, frames: int) -> bytes:
    """What the board wrote, read on the master side until ``frames`` frames came."""
    data = b""
    for _ in range(500):
        if data.count(b"\x00") > frames:  # the board's leading 0x00, then one per frame
            break
        select.select([master], [], [], 0.01)
        with contextlib.suppress(BlockingIOError):
            data += os.read(master, 65536)
    return data


def test_serial_through_a_pty_both_ways(pty_board) -> None:
    board, master = pty_board
    tm = [packet(apid=0x010, seq=i, tc=False, payload=bytes(range(256)) * 2) for i in range(3)]
    assert all(board.send(p) for p in tm)
    wire = read_master(master, 3)
    assert wire.startswith(b"\x00")  # ends whatever noise the ground's deframer holds
    assert [cobs.decode(f) for f in wire.split(b"\x00") if f] == tm  # the cobs package's view
    tc = [packet(seq=i, payload=b"\x00\x00zero" * i) for i in range(4)]
    os.write(master, b"".join(cobs.encode(p) + b"\x00" for p in tc))
    assert collect(board, 4) == tc
    assert board.counters()["framing_errors"] == 0
    assert board.counters()["rx_items"] == 4
    assert board.counters()["tx_items"] == 3


def test_serial_garbage_frames_are_counted_and_the_link_resynchronises(pty_board) -> None:
    board, master = pty_board
    # a code byte pointing past the frame's end, then an empty frame (ignored), then a good one
    os.write(master, b"\x09abc\x00" + b"\x00" + cobs_frame(packet(seq=7)))
    assert collect(board, 1) == [packet(seq=7)]
    assert board.counters()["framing_errors"] == 1


def test_serial_ground_url_and_baud_through_a_pty() -> None:
    master, slave = os.openpty()
    try:
        with open_ground_transport(f"serial://{os.ttyname(slave)}?baud=9600") as ground:
            assert ground.address == os.ttyname(slave)
            os.write(master, cobs_frame(packet(seq=3)))
            assert ground_collect(ground, 1) == [packet(seq=3)]
            assert ground.receive(1, timeout=0.05) == []
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.timeout(60)
def test_serial_send_never_blocks_on_a_port_nobody_drains(pty_board) -> None:
    board, _master = pty_board  # the master never reads: the pty's buffer fills
    frame = packet(tc=False, payload=bytes(range(1, 256)) * 8)
    results = [board.send(frame) for _ in range(2000)]  # ~4 MB, far beyond the pty and queue
    assert results[0]
    assert not results[-1]
    assert board.counters()["tx_failed"] == results.count(False)


def test_serial_hang_up_is_counted_not_raised(pty_board) -> None:
    board, master = pty_board
    os.close(master)
    assert board.receive(10) == []
    assert board.counters()["rx_errors"] >= 1


def test_serial_loop_url_hears_itself_and_ground_receive_times_out() -> None:
    with open_board_transport("serial+loop://") as board:
        tm = [packet(tc=False, seq=i, payload=bytes(2000)) for i in range(4)]  # > loop's 4 KiB
        assert all(board.send(p) for p in tm)
        assert collect(board, 4) == tm
        small = [packet(seq=i) for i in range(4)]
        assert all(board.send(p) for p in small)
        assert board.receive(2) == small[:2]  # the other two wait for the next call
        assert board.receive(2) == small[2:]
    with open_ground_transport("serial+loop://") as ground:
        assert ground.receive(5, timeout=0.05) == []
        # loop:// has no descriptor: the ground waits by polling. The timer writes to the port
        # itself (a thread-safe queue), not through the transport, which is single-threaded.
        later = threading.Timer(0.2, ground.inner._port.write, args=(cobs_frame(packet()),))
        later.start()
        try:
            assert ground.receive(5, timeout=60) == [packet()]
        finally:
            later.cancel()


@pytest.mark.parametrize("missing", ["serial", "cobs"])
def test_serial_without_its_extra_names_the_extra(monkeypatch, missing: str) -> None:
    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(ConfigError, match=r"flight\[serial\]"):
        open_board_transport("serial+loop://")


# --- the COBS deframer ------------------------------------------------------------------------


@given(st.lists(st.binary(min_size=0, max_size=600), max_size=20))
def test_cobs_deframer_never_raises_and_stays_bounded(chunks) -> None:
    deframer = CobsDeframer(max_frame_bytes=256)
    for chunk in chunks:
        for frame in deframer.feed(chunk):
            assert 0 < len(frame) <= 256
        assert deframer.buffered <= 256


@given(
    packets=st.lists(st.binary(min_size=1, max_size=700), max_size=10),
    cuts=st.lists(st.integers(min_value=0, max_value=8000), max_size=12),
)
def test_cobs_deframer_rebuilds_packets_from_any_chunking(packets, cuts) -> None:
    stream = b"".join(cobs_frame(p) for p in packets)
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    deframer = CobsDeframer()
    got = []
    for start, end in itertools.pairwise(bounds):
        got += deframer.feed(stream[start:end])
    assert got == packets
    assert deframer.framing_errors == 0


@given(noise=st.binary(min_size=1, max_size=500), good=st.binary(min_size=1, max_size=100))
def test_cobs_deframer_recovers_after_any_noise(noise, good) -> None:
    deframer = CobsDeframer(max_frame_bytes=200)
    deframer.feed(noise)
    assert deframer.feed(b"\x00" + cobs_frame(good))[-1] == good


def test_cobs_deframer_drops_an_endless_frame_once_and_resynchronises() -> None:
    deframer = CobsDeframer(max_frame_bytes=64)
    for _ in range(100):
        assert deframer.feed(b"\x05" * 50) == []  # never a delimiter
        assert deframer.buffered <= 64
    assert deframer.framing_errors == 1
    # the end of the dropped frame (b"\x02x" would decode to b"x") is skipped, not decoded
    assert deframer.feed(b"\x02x\x00" + cobs_frame(b"after")) == [b"after"]
    assert deframer.framing_errors == 1


def test_cobs_deframer_counts_a_frame_that_decodes_to_nothing() -> None:
    deframer = CobsDeframer()
    assert deframer.feed(b"\x01\x00\x00\x00") == []  # b"\x01" encodes the empty packet
    assert deframer.framing_errors == 1  # the empty frames between delimiters are not errors
