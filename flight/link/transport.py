"""Transports of the space link: UDP, TCP and serial (COBS), board side and ground side.

A transport moves whole space packets and nothing else: it does not decode, authenticate or
judge them (the link service does). Board rule: a transport never blocks a frame. ``receive`` and
``send`` return at once; what the peer or the OS refuses is counted (``counters()``), never
raised, and outgoing bytes wait in bounded buffers that drop whole packets when full.

URLs (docs/link.md):

- ``udp://HOST:PORT[?tm=HOST:PORT]``: the board binds HOST:PORT for telecommands and sends
  telemetry to HOST:PORT+1 (or to ``tm``); the ground sends to PORT and binds PORT+1 (or ``tm``).
- ``tcp://HOST:PORT``: the board listens and serves any number of ground clients (TM to every
  one); the ground connects. Packets travel back to back, cut by their length field
  (:class:`flight.link.packet.StreamDecoder`).
- ``serial:///dev/ttyX?baud=115200``, a bare ``/dev/...`` path, or ``serial+URL`` for any
  pyserial URL (``serial+loop://``): one COBS frame per packet (:mod:`flight.link.framing`).

Port 0 binds any free port (tests); the bound address is ``transport.address``.
"""

from __future__ import annotations

import io
import os
import select
import socket
import sys
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from flight.errors import ConfigError
from flight.link.framing import CobsDeframer, import_serial_extra
from flight.link.packet import StreamDecoder

__all__ = [
    "COUNTERS",
    "UDP_RECEIVE_BUFFER_BYTES",
    "Endpoint",
    "GroundTransport",
    "SerialTransport",
    "TcpClientTransport",
    "TcpServerTransport",
    "Transport",
    "UdpTransport",
    "open_board_transport",
    "open_ground_transport",
    "parse_url",
]

#: Counters every transport reports (rx_overflow stays 0 where the OS does not tell).
COUNTERS = (
    "rx_items",  # packets received (datagrams, cut packets, COBS frames)
    "rx_bytes",
    "tx_items",  # packets handed to the OS (TCP: queued for at least one client)
    "tx_bytes",
    "tx_failed",  # packets not sent: no peer, buffer full, the OS refused
    "framing_errors",  # TCP: bytes skipped to resynchronise, truncated packets; serial: bad frames
    "rx_overflow",  # UDP on Linux: datagrams the kernel dropped because the socket queue was full
    "rx_errors",  # failed reads (a reset connection, a hung-up serial port, ...)
)

DEFAULT_BAUD = 115200
_DATAGRAM_BYTES = 65536  # larger than any UDP payload: a datagram is never truncated
_CHUNK_BYTES = 65536  # one recv from a TCP peer
_SERIAL_CHUNK_BYTES = 4096
_SERIAL_READS_PER_CALL = 4
_ACCEPTS_PER_CALL = 16
#: The UDP receive queue asked for: a burst between two frames (a file upload's PDUs, ~100 KB
#: for the demo model) must not overflow the kernel's default (~200 KB of small datagrams).
#: Linux caps it at net.core.rmem_max, which a board image should raise to match.
UDP_RECEIVE_BUFFER_BYTES = 1 << 20
#: Linux's SO_RXQ_OVFL (socket(7)); Python's socket module does not export it.
_SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)


# --- URLs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A parsed link URL. ``kind`` is "udp", "tcp" or "serial"."""

    kind: str
    host: str = ""
    port: int = 0
    tm: tuple[str, int] | None = None  # UDP: the telemetry address (board: to, ground: bound)
    device: str = ""  # serial: a device path or a pyserial URL
    baud: int = DEFAULT_BAUD


_FORMS = "udp://HOST:PORT[?tm=HOST:PORT], tcp://HOST:PORT, serial:///dev/ttyX[?baud=N], /dev/..."


def parse_url(url: str) -> Endpoint:
    """Parse a link URL; ConfigError naming the URL and the problem if it is not one."""
    if not isinstance(url, str) or not url:
        raise ConfigError(f"link URL must be a non-empty string ({_FORMS}), got {url!r}")
    if url.startswith("/"):
        return Endpoint("serial", device=url)
    if url.startswith("serial+"):
        device = url[len("serial+") :]
        if "://" not in device:
            raise ConfigError(f"link URL {url!r}: serial+ must be followed by a pyserial URL")
        return Endpoint("serial", device=device)
    try:
        split = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket: "udp://["
        raise ConfigError(f"link URL {url!r}: {exc} ({_FORMS})") from None
    scheme = split.scheme.lower()
    query = _query(url, split.query)
    if scheme == "serial":
        if split.netloc or not split.path:
            raise ConfigError(f"link URL {url!r}: expected serial:///dev/ttyX[?baud=N]")
        _only(url, query, {"baud"})
        baud = _integer(url, "baud", query.get("baud", str(DEFAULT_BAUD)), 1, 100_000_000)
        return Endpoint("serial", device=split.path, baud=baud)
    if scheme not in ("udp", "tcp"):
        raise ConfigError(f"link URL {url!r}: unknown scheme {split.scheme!r} ({_FORMS})")
    if split.path not in ("", "/"):
        raise ConfigError(f"link URL {url!r}: unexpected path {split.path!r}")
    host, port = _host_port(url, split.netloc)
    if scheme == "tcp":
        _only(url, query, set())
        return Endpoint("tcp", host=host, port=port)
    _only(url, query, {"tm"})
    tm = _host_port(url, query["tm"]) if "tm" in query else None
    return Endpoint("udp", host=host, port=port, tm=tm)


def _query(url: str, text: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError as exc:
        raise ConfigError(f"link URL {url!r}: bad query {text!r}") from exc
    query = dict(pairs)
    if len(query) != len(pairs):
        raise ConfigError(f"link URL {url!r}: a query key is repeated")
    return query


def _only(url: str, query: dict[str, str], allowed: set[str]) -> None:
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise ConfigError(
            f"link URL {url!r}: unknown option {unknown[0]!r} "
            f"(allowed: {', '.join(sorted(allowed)) or 'none'})"
        )


def _integer(url: str, name: str, text: str, low: int, high: int) -> int:
    # ASCII digits only, and few of them: int() takes "²" and "١" and refuses 5000 digits
    if not (text.isascii() and text.isdigit() and len(text) <= 10 and low <= int(text) <= high):
        raise ConfigError(f"link URL {url!r}: {name} must be an integer {low}..{high}: {text!r}")
    return int(text)


def _host_port(url: str, text: str) -> tuple[str, int]:
    """HOST:PORT or [IPv6]:PORT."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or "[" in host or "]" in host:
        raise ConfigError(f"link URL {url!r}: expected HOST:PORT, got {text!r}")
    return host, _integer(url, "port", port, 0, 65535)


def _next_port(url: str, port: int) -> int:
    if port >= 65535:
        raise ConfigError(f"link URL {url!r}: port {port} has no PORT+1; give ?tm=HOST:PORT")
    return port + 1


def _resolve(url: str, host: str, port: int, kind: socket.SocketKind) -> tuple[int, Any]:
    """(family, sockaddr), resolved once so that sending never waits for a name lookup."""
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=kind)[0]
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"link URL {url!r}: cannot resolve {host!r}: {exc}") from exc
    return family, sockaddr


# --- the interface ----------------------------------------------------------------------------


class Transport:
    """What the link service sees: non-blocking ``receive``, best-effort ``send``, counters."""

    def __init__(self) -> None:
        self._counts = dict.fromkeys(COUNTERS, 0)

    @property
    def address(self) -> Any:
        """The bound address ((host, port) for sockets, the device for serial)."""
        raise NotImplementedError

    def receive(self, max_items: int) -> list[bytes]:
        """At most ``max_items`` packets that have arrived; never waits."""
        raise NotImplementedError

    def send(self, packet: bytes) -> bool:
        """Send one packet without waiting; False (and counted) when it could not."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def fileno(self) -> int:
        """A descriptor that turns readable when telecommands may be waiting, for select."""
        raise io.UnsupportedOperation(f"{type(self).__name__} has no file descriptor")

    def counters(self) -> dict[str, int]:
        return dict(self._counts)

    def _readable_fds(self) -> list[int]:
        """Every descriptor whose readability means ``receive`` may return something."""
        return []

    def _queued_bytes(self) -> int:
        """Bytes accepted by ``send`` that the OS has not taken yet."""
        return 0

    def _push(self) -> bool:
        """Hand queued bytes to the OS now, without waiting; False once the link is gone."""
        return True

    def _writable_fds(self) -> list[int]:
        return []

    def _received(self, items: list[bytes], packet: bytes) -> None:
        items.append(packet)
        self._counts["rx_items"] += 1
        self._counts["rx_bytes"] += len(packet)

    def _sent(self, packet: bytes) -> bool:
        self._counts["tx_items"] += 1
        self._counts["tx_bytes"] += len(packet)
        return True

    def _failed(self) -> bool:
        self._counts["tx_failed"] += 1
        return False

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- UDP --------------------------------------------------------------------------------------


class UdpTransport(Transport):
    """One datagram per packet. Receives from anyone (authentication is the service's job) and
    sends to ``peer``. On Linux the kernel's count of datagrams dropped on a full receive queue
    (SO_RXQ_OVFL, delivered with each datagram) is reported as ``rx_overflow``."""

    def __init__(
        self,
        family: int,
        bind: Any,
        peer: Any | None,
        url: str = "",
        receive_buffer_bytes: int = UDP_RECEIVE_BUFFER_BYTES,
    ) -> None:
        super().__init__()
        self.peer = peer
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._sock.setblocking(False)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
            self._sock.bind(bind)
        except OSError as exc:
            self._sock.close()
            raise ConfigError(f"link URL {url!r}: cannot bind UDP {bind}: {exc}") from exc
        self._cmsg_bytes = _enable_overflow_count(self._sock)
        self._address = self._sock.getsockname()[:2]

    @property
    def address(self) -> tuple[str, int]:
        return self._address

    def fileno(self) -> int:
        return self._sock.fileno()

    def _readable_fds(self) -> list[int]:
        return [self._sock.fileno()]

    def receive(self, max_items: int) -> list[bytes]:
        items: list[bytes] = []
        while len(items) < max_items:
            try:
                data, ancillary, _, _ = self._sock.recvmsg(_DATAGRAM_BYTES, self._cmsg_bytes)
            except BlockingIOError:
                break
            except OSError:
                self._counts["rx_errors"] += 1
                break
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == _SO_RXQ_OVFL and len(value) >= 4:
                    self._counts["rx_overflow"] = int.from_bytes(value[:4], sys.byteorder)
            self._received(items, data)
        return items

    def send(self, packet: bytes) -> bool:
        if self.peer is None:
            return self._failed()
        try:
            self._sock.sendto(packet, self.peer)
        except OSError:  # queue full (would block), too long, unreachable, ...
            return self._failed()
        return self._sent(packet)

    def close(self) -> None:
        self._sock.close()


def _enable_overflow_count(sock: socket.socket) -> int:
    """Ask Linux to attach its drop counter to each datagram; the ancillary space, or 0."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RXQ_OVFL, 1)
    except OSError:
        return 0
    return socket.CMSG_SPACE(4)


# --- TCP --------------------------------------------------------------------------------------


class _Connection:
    """One TCP peer: its socket, the packets cut from what it sent, and a bounded queue of
    outgoing bytes that only ever holds whole packets (a full queue refuses the packet)."""

    def __init__(self, sock: socket.socket, out_limit: int) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.decoder = StreamDecoder()
        self.incoming: deque[bytes] = deque()
        self.outgoing = bytearray()
        self.out_limit = out_limit

    def queue(self, packet: bytes) -> bool:
        if len(self.outgoing) + len(packet) > self.out_limit:
            return False
        self.outgoing += packet
        return True

    def flush(self) -> None:
        """Write what the socket takes now; OSError when the peer is gone."""
        while self.outgoing:
            try:
                sent = self.sock.send(self.outgoing, socket.MSG_NOSIGNAL)
            except BlockingIOError:
                return
            del self.outgoing[:sent]

    def read(self) -> bytes | None:
        """One recv: the bytes, b"" at end of stream, None when nothing waits. OSError if reset."""
        try:
            return self.sock.recv(_CHUNK_BYTES)
        except BlockingIOError:
            return None


class _StreamTransport(Transport):
    """What the TCP server and client share: taking packets from connections."""

    def __init__(self) -> None:
        super().__init__()
        self._counts.update(disconnects=0)

    def _take(self, conn: _Connection, items: list[bytes], max_items: int) -> bool:
        """Move packets from ``conn`` into ``items`` (one recv at most); False if it is gone."""
        if not conn.incoming:
            try:
                data = conn.read()
            except OSError:
                self._counts["rx_errors"] += 1
                return False
            if data == b"":
                return False
            if data:
                skipped = conn.decoder.skipped_bytes
                conn.incoming.extend(conn.decoder.feed(data))
                self._counts["framing_errors"] += conn.decoder.skipped_bytes - skipped
        while conn.incoming and len(items) < max_items:
            self._received(items, conn.incoming.popleft())
        return True

    def _flush(self, conn: _Connection) -> bool:
        try:
            conn.flush()
        except OSError:
            return False
        return True

    def _drop(self, conn: _Connection) -> None:
        if conn.decoder.pending:
            self._counts["framing_errors"] += 1  # a packet cut short by the disconnect
        self._counts["disconnects"] += 1
        conn.sock.close()


class TcpServerTransport(_StreamTransport):
    """Board side: listens, accepts any number of ground clients (up to ``max_clients``) while
    polled, takes telecommands from all and sends telemetry to each. A client that does not read
    fills only its own bounded queue; then its packets are dropped and counted (client_drops)."""

    def __init__(
        self,
        family: int,
        bind: Any,
        url: str = "",
        max_clients: int = 32,
        client_buffer_bytes: int = 256 * 1024,
    ) -> None:
        super().__init__()
        self._counts.update(clients=0, accepted=0, refused=0, client_drops=0)
        self.max_clients = max_clients
        self.client_buffer_bytes = client_buffer_bytes
        self._clients: list[_Connection] = []
        self._turn = 0
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(bind)
            self._listener.listen(8)
            self._listener.setblocking(False)
        except OSError as exc:
            self._listener.close()
            raise ConfigError(f"link URL {url!r}: cannot listen on TCP {bind}: {exc}") from exc
        self._address = self._listener.getsockname()[:2]

    @property
    def address(self) -> tuple[str, int]:
        return self._address

    def fileno(self) -> int:
        return self._listener.fileno()

    def _readable_fds(self) -> list[int]:
        return [self._listener.fileno()] + [c.sock.fileno() for c in self._clients]

    def counters(self) -> dict[str, int]:
        counts = super().counters()
        counts["clients"] = len(self._clients)
        return counts

    def receive(self, max_items: int) -> list[bytes]:
        self._accept()
        items: list[bytes] = []
        first = self._turn % max(1, len(self._clients))  # take turns at being read first
        self._turn += 1
        gone = []
        for conn in self._clients[first:] + self._clients[:first]:
            if len(items) < max_items and not self._take(conn, items, max_items):
                gone.append(conn)
        self._remove(gone)
        self._flush_all()
        return items

    def send(self, packet: bytes) -> bool:
        queued = 0
        for conn in self._clients:
            if conn.queue(packet):
                queued += 1
            else:
                self._counts["client_drops"] += 1
        self._flush_all()
        return self._sent(packet) if queued else self._failed()

    def close(self) -> None:
        self._remove(list(self._clients))
        self._listener.close()

    def _accept(self) -> None:
        for _ in range(_ACCEPTS_PER_CALL):
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            except OSError:  # aborted before accept, out of descriptors, ...
                self._counts["rx_errors"] += 1
                return
            if len(self._clients) >= self.max_clients:
                self._counts["refused"] += 1
                sock.close()
                continue
            self._counts["accepted"] += 1
            self._clients.append(_Connection(sock, self.client_buffer_bytes))

    def _flush_all(self) -> None:
        self._remove([c for c in self._clients if not self._flush(c)])

    def _remove(self, gone: Iterable[_Connection]) -> None:
        for conn in gone:
            if conn in self._clients:
                self._clients.remove(conn)
                self._drop(conn)


class TcpClientTransport(_StreamTransport):
    """Ground side: one connection to the board. After the board hangs up, ``send`` is False."""

    def __init__(self, family: int, peer: Any, url: str = "", connect_timeout: float = 5.0) -> None:
        super().__init__()
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(connect_timeout)
            sock.connect(peer)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"link URL {url!r}: cannot connect to {peer}: {exc}") from exc
        self._conn: _Connection | None = _Connection(sock, out_limit=4 * 1024 * 1024)
        self._address = sock.getsockname()[:2]

    @property
    def address(self) -> tuple[str, int]:
        return self._address

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def fileno(self) -> int:
        if self._conn is None:
            return super().fileno()
        return self._conn.sock.fileno()

    def _readable_fds(self) -> list[int]:
        return [] if self._conn is None else [self._conn.sock.fileno()]

    def receive(self, max_items: int) -> list[bytes]:
        items: list[bytes] = []
        conn = self._conn
        if conn is not None and not (self._flush(conn) and self._take(conn, items, max_items)):
            self._hang_up()
        return items

    def send(self, packet: bytes) -> bool:
        conn = self._conn
        if conn is None or not conn.queue(packet):
            return self._failed()
        if not self._flush(conn):
            self._hang_up()
        return self._sent(packet)

    def close(self) -> None:
        self._hang_up()

    def _queued_bytes(self) -> int:
        return 0 if self._conn is None else len(self._conn.outgoing)

    def _push(self) -> bool:
        if self._conn is not None and not self._flush(self._conn):
            self._hang_up()
        return self._conn is not None

    def _writable_fds(self) -> list[int]:
        return self._readable_fds()

    def _hang_up(self) -> None:
        if self._conn is not None:
            self._drop(self._conn)
            self._conn = None


# --- serial -----------------------------------------------------------------------------------


class SerialTransport(Transport):
    """One COBS frame per packet over a pyserial port (a UART, a pty, ``loop://``).

    The port is opened non-blocking; frames wait in a bounded output queue (whole frames only)
    and are written as the port takes them. A leading 0x00 is sent first so that the peer's
    deframer starts clean after line noise.
    """

    def __init__(self, device: str, baud: int = DEFAULT_BAUD, out_limit: int = 256 * 1024) -> None:
        super().__init__()
        self._counts.update(tx_errors=0)
        serial = import_serial_extra("serial")
        self._cobs = import_serial_extra("cobs")
        self._deframer = CobsDeframer()
        self._serial_errors: tuple[type[BaseException], ...] = (serial.SerialException, OSError)
        self._timeout_error = serial.SerialTimeoutException
        self._device = device
        try:
            self._port = serial.serial_for_url(device, baudrate=baud, timeout=0, write_timeout=0)
        except (serial.SerialException, ValueError, OSError) as exc:
            raise ConfigError(f"cannot open serial link {device!r}: {exc}") from exc
        self._loop_room = _loop_room(self._port)
        if self._loop_room is not None:
            self._port.write_timeout = None  # loop:// refuses any write under a zero timeout
        self._incoming: deque[bytes] = deque()
        self._outgoing = bytearray(b"\x00")
        self._out_limit = out_limit

    @property
    def address(self) -> str:
        return self._device

    def fileno(self) -> int:
        fd = getattr(self._port, "fd", None)
        return fd if isinstance(fd, int) else super().fileno()

    def _readable_fds(self) -> list[int]:
        fd = getattr(self._port, "fd", None)
        return [fd] if isinstance(fd, int) else []

    def counters(self) -> dict[str, int]:
        counts = super().counters()
        counts["framing_errors"] = self._deframer.framing_errors
        return counts

    def receive(self, max_items: int) -> list[bytes]:
        self._flush()
        items: list[bytes] = []
        for _ in range(_SERIAL_READS_PER_CALL):
            while self._incoming and len(items) < max_items:
                self._received(items, self._incoming.popleft())
            if len(items) >= max_items:
                break
            try:
                data = self._port.read(_SERIAL_CHUNK_BYTES)
            except self._serial_errors:
                self._counts["rx_errors"] += 1
                break
            if not data:
                break
            self._incoming.extend(self._deframer.feed(data))
        return items

    def send(self, packet: bytes) -> bool:
        frame = self._cobs.encode(packet) + b"\x00"
        if len(self._outgoing) + len(frame) > self._out_limit:
            self._flush()
            if len(self._outgoing) + len(frame) > self._out_limit:
                return self._failed()
        self._outgoing += frame
        self._flush()
        return self._sent(packet)

    def close(self) -> None:
        self._port.close()

    def _queued_bytes(self) -> int:
        return len(self._outgoing)

    def _push(self) -> bool:
        self._flush()
        return True

    def _writable_fds(self) -> list[int]:
        return self._readable_fds()

    def _flush(self) -> None:
        while self._outgoing:
            try:
                written = self._write_some(self._outgoing)
            except self._serial_errors:
                self._counts["tx_errors"] += 1
                return
            if not written:
                return
            del self._outgoing[:written]

    def _write_some(self, data: bytearray) -> int:
        """Write what the port takes without waiting; the number of bytes written."""
        fd = getattr(self._port, "fd", None)
        if isinstance(fd, int):  # POSIX port opened O_NONBLOCK: pyserial's write would spin
            try:
                return os.write(fd, data)
            except BlockingIOError:
                return 0
        if self._loop_room is not None:
            room = self._loop_room()
            return self._port.write(bytes(data[:room])) if room > 0 else 0
        try:
            return self._port.write(bytes(data)) or 0
        except self._timeout_error:
            return 0


def _loop_room(port: Any) -> Any:
    """For pyserial's ``loop://`` (a bounded queue, no descriptor): a function telling how many
    bytes fit without blocking; None for other ports."""
    queue = getattr(port, "queue", None)
    size = getattr(port, "buffer_size", None)
    if queue is None or not isinstance(size, int):
        return None
    return lambda: size - queue.qsize()


# --- ground side ------------------------------------------------------------------------------


class GroundTransport:
    """The ground's view of a transport: ``receive`` may wait up to ``timeout`` seconds (the
    console waits for verification reports); everything else is the board's transport."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner

    @property
    def address(self) -> Any:
        return self.inner.address

    def receive(self, max_items: int, timeout: float = 0.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while True:
            items = self.inner.receive(max_items)
            remaining = deadline - time.monotonic()
            if items or remaining <= 0:
                return items
            fds = self.inner._readable_fds()
            if fds:
                select.select(fds, [], [], remaining)
            else:
                time.sleep(min(remaining, 0.01))

    def send(self, packet: bytes) -> bool:
        """As the board's: False at once when the queue is full (then ``flush`` and retry)."""
        return self.inner.send(packet)

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for everything sent to leave; True if it has."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.inner._push():
                return False  # the link is gone, and what was queued with it
            if not self.inner._queued_bytes():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            fds = self.inner._writable_fds()
            if fds:
                select.select([], fds, [], remaining)
            else:
                time.sleep(min(remaining, 0.01))

    def close(self, linger_s: float = 2.0) -> None:
        """Close after giving what is still queued up to ``linger_s`` seconds to leave."""
        self.flush(linger_s)
        self.inner.close()

    def fileno(self) -> int:
        return self.inner.fileno()

    def counters(self) -> dict[str, int]:
        return self.inner.counters()

    def __enter__(self) -> GroundTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- opening ----------------------------------------------------------------------------------


def open_board_transport(url: str) -> Transport:
    """The board's end of the link named by ``url`` (see the module docstring)."""
    endpoint = parse_url(url)
    if endpoint.kind == "serial":
        return SerialTransport(endpoint.device, endpoint.baud)
    kind = socket.SOCK_DGRAM if endpoint.kind == "udp" else socket.SOCK_STREAM
    family, bind = _resolve(url, endpoint.host, endpoint.port, kind)
    if endpoint.kind == "tcp":
        return TcpServerTransport(family, bind, url)
    transport = UdpTransport(family, bind, peer=None, url=url)
    try:
        if endpoint.tm is not None:
            _, peer = _resolve(url, *endpoint.tm, kind)
        else:
            _, peer = _resolve(url, endpoint.host, _next_port(url, transport.address[1]), kind)
    except ConfigError:
        transport.close()
        raise
    transport.peer = peer
    return transport


def open_ground_transport(url: str) -> GroundTransport:
    """The ground's end of the link named by ``url``: it sends where the board listens."""
    endpoint = parse_url(url)
    if endpoint.kind == "serial":
        return GroundTransport(SerialTransport(endpoint.device, endpoint.baud))
    if endpoint.port == 0:
        raise ConfigError(f"link URL {url!r}: the ground needs the board's port, not 0")
    kind = socket.SOCK_DGRAM if endpoint.kind == "udp" else socket.SOCK_STREAM
    family, peer = _resolve(url, endpoint.host, endpoint.port, kind)
    if endpoint.kind == "tcp":
        return GroundTransport(TcpClientTransport(family, peer, url))
    tm_host, tm_port = endpoint.tm or (endpoint.host, _next_port(url, endpoint.port))
    family, bind = _resolve(url, tm_host, tm_port, kind)
    return GroundTransport(UdpTransport(family, bind, peer=peer, url=url))
