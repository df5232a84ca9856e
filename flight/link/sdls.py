"""Telecommand authentication, like CCSDS SDLS (355.0-B-2) in authentication mode.

A TC packet's data field is a security header (SPI u16: the key; sequence number u32), the body,
a MAC trailer and the packet's CRC. The MAC is HMAC-SHA256 under the key's secret over the
primary header as sent, the security header and the body, truncated to the key's ``mac_bytes``.

Anti-replay: per SPI the last accepted sequence number ``last`` (-1 before the first); a sequence
number ``s`` is fresh iff ``last < s <= last + window``. The lesson of NASA's CryptoLib (#96,
fixed by PR #108): the window is checked *read-only* before the MAC and advanced only after the
MAC verifies, so a forged packet with a high sequence number cannot move the window past the
real ground and lock it out. The caller persists :meth:`Verifier.state` (in the CDS) before it
executes an accepted command and gives it back at boot, so a reboot does not reopen the window.
A key whose window reached 2^32 - 1 accepts nothing more: switch to another key.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from flight.errors import AuthenticationError, ConfigError
from flight.link import packet
from flight.link.codes import Apid, FailureCode
from flight.link.keys import Key, KeyRing

__all__ = [
    "SECURITY_HEADER_LEN",
    "SEQUENCE_MAX",
    "Authenticated",
    "Verifier",
    "compute_mac",
    "seal_command",
]

SECURITY_HEADER_LEN = 6
SEQUENCE_MAX = 0xFFFF_FFFF
_SECURITY_HEADER = struct.Struct(">HI")
_BODY_START = packet.PRIMARY_HEADER_LEN + SECURITY_HEADER_LEN


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A telecommand whose MAC verified under ``spi`` with a fresh ``sequence``."""

    spi: int
    sequence: int
    body: bytes


def compute_mac(key: Key, covered: bytes) -> bytes:
    """HMAC-SHA256 of ``covered`` (primary header + security header + body) under ``key``,
    truncated to its ``mac_bytes``."""
    return hmac.digest(key.secret, covered, "sha256")[: key.mac_bytes]


def seal_command(key: Key, seq_count: int, sequence: int, body: bytes) -> bytes:
    """The ground side: a whole TC packet (APID COMMAND) carrying ``body`` under ``key`` with
    anti-replay ``sequence``. ValueError for out-of-range numbers (a bug)."""
    if not 0 <= sequence <= SEQUENCE_MAX:
        raise ValueError(f"sequence number {sequence!r} outside 0..{SEQUENCE_MAX}")
    security = _SECURITY_HEADER.pack(key.spi, sequence)
    data_len = SECURITY_HEADER_LEN + len(body) + key.mac_bytes
    header = packet.primary_header(packet.TC, Apid.COMMAND, seq_count, data_len, False)
    mac = compute_mac(key, header + security + body)
    return packet.encode(packet.TC, Apid.COMMAND, seq_count, security + body + mac, False)


class Verifier:
    """Authenticates telecommands under a key ring and keeps each key's anti-replay window.

    ``last`` is the persisted state (SPI -> last accepted sequence number; keys may be ints or
    their decimal strings, as :meth:`state` gives them); SPIs the key ring does not hold are kept,
    so a key that comes back keeps its window.
    """

    def __init__(self, keyring: KeyRing, last: Mapping[int | str, int] | None = None) -> None:
        self.keyring = keyring
        self._last: dict[int, int] = _checked_state(last or {})

    @property
    def last(self) -> dict[int, int]:
        """SPI -> last accepted sequence number (a copy)."""
        return dict(self._last)

    def state(self) -> dict[str, int]:
        """The window state as JSON-like data, for ``cds.set_state("link_replay", ...)``."""
        return {str(spi): last for spi, last in self._last.items()}

    def verify(self, raw: bytes) -> Authenticated:
        """Authenticate a TC packet without its CRC (primary header, security header, body, MAC).

        Checks, in this order: the security header parses (MALFORMED), its SPI names a key
        (UNKNOWN_KEY) and the active one (KEY_INACTIVE), the sequence number is in the window,
        read-only (REPLAY), the MAC verifies (MALFORMED if there is none, BAD_MAC); only then
        does the window advance. Raises :class:`AuthenticationError`, never anything else.
        """
        if len(raw) < _BODY_START:
            raise AuthenticationError(
                FailureCode.MALFORMED,
                f"telecommand of {len(raw)} bytes has no security header "
                f"(at least {_BODY_START} before the MAC)",
            )
        spi, sequence = _SECURITY_HEADER.unpack_from(raw, packet.PRIMARY_HEADER_LEN)
        key = self.keyring.keys.get(spi)
        if key is None:
            raise AuthenticationError(FailureCode.UNKNOWN_KEY, f"SPI {spi} names no key")
        if spi != self.keyring.active:
            raise AuthenticationError(
                FailureCode.KEY_INACTIVE,
                f"SPI {spi} is not the active key (commands are accepted under SPI "
                f"{self.keyring.active})",
            )
        last = self._last.get(spi, -1)
        if not last < sequence <= last + key.window:  # read-only: a forgery must not move it
            raise AuthenticationError(
                FailureCode.REPLAY,
                f"SPI {spi}: sequence number {sequence} outside the window "
                f"{last + 1}..{last + key.window}",
            )
        mac_start = len(raw) - key.mac_bytes
        if mac_start < _BODY_START:
            raise AuthenticationError(
                FailureCode.MALFORMED,
                f"telecommand of {len(raw)} bytes cannot hold a {key.mac_bytes}-byte MAC",
            )
        expected = compute_mac(key, raw[:mac_start])
        if not hmac.compare_digest(expected, raw[mac_start:]):
            raise AuthenticationError(
                FailureCode.BAD_MAC, f"SPI {spi}: sequence number {sequence}: MAC does not verify"
            )
        self._last[spi] = sequence  # only an authentic command advances the window
        return Authenticated(spi, sequence, bytes(raw[_BODY_START:mac_start]))


def _checked_state(last: Mapping[int | str, int]) -> dict[int, int]:
    """The window state from the CDS as {SPI: last}; ConfigError if it is not one (a CDS record
    that passed its CRC but holds something else is a bug or a foreign record)."""
    checked: dict[int, int] = {}
    for spi, value in last.items():
        number = spi if isinstance(spi, int) and not isinstance(spi, bool) else None
        if isinstance(spi, str) and spi.isascii() and spi.isdecimal():
            number = int(spi)
        if (
            number is None
            or not 1 <= number <= 0xFFFF
            or not isinstance(value, int)
            or isinstance(value, bool)
            or not -1 <= value <= SEQUENCE_MAX
        ):
            raise ConfigError(
                f"anti-replay state {{{spi!r}: {value!r}}}: expected an SPI 1..65535 and a last "
                f"sequence number -1..{SEQUENCE_MAX}"
            )
        checked[number] = value
    return checked
