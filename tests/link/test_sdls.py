"""Telecommand authentication: the sealed layout, each refusal and the order of the checks, the
anti-replay window at its edges, the CryptoLib #96 lock-out (a forgery must not move the
window), the persisted state across a reboot, interop with a TC built by `spacepackets`, and
hostile bytes that meet only AuthenticationError."""

from __future__ import annotations

import hashlib
import hmac
import json
import struct

import fastcrc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from spacepackets.ccsds.spacepacket import SpacePacket, SpacePacketHeader

from flight.errors import AuthenticationError, ConfigError, PacketError
from flight.link import packet
from flight.link.codes import Apid, FailureCode
from flight.link.keys import Key, KeyRing
from flight.link.sdls import SEQUENCE_MAX, Authenticated, Verifier, compute_mac, seal_command

KEY = Key(1, bytes.fromhex("00112233445566778899aabbccddeeff" * 2))
OTHER = Key(2, bytes(range(100, 132)), mac_bytes=8, window=4)
FORGER = Key(1, bytes(32))  # the right SPI, the wrong secret
BODY = b"\x00\x01" + b"\xca\xfe\xba\xbe"  # ping(token)


def ring(active: int = 1) -> KeyRing:
    return KeyRing({1: KEY, 2: OTHER}, active)


def tc(sequence: int, key: Key = KEY, body: bytes = BODY, seq_count: int = 0) -> bytes:
    """A sealed TC as verify takes it: without the CRC."""
    return seal_command(key, seq_count, sequence, body)[: -packet.CRC_LEN]


def refusal(verifier: Verifier, raw: bytes) -> FailureCode:
    with pytest.raises(AuthenticationError) as caught:
        verifier.verify(raw)
    assert caught.value.detail
    return FailureCode(caught.value.code)


# --- the sealed packet ------------------------------------------------------------------------


def test_a_sealed_command_is_a_tc_packet_with_header_body_mac_and_crc():
    raw = seal_command(KEY, 42, 7, BODY)
    p = packet.decode(raw)
    assert (p.type, p.apid, p.seq_count, p.sec_header) == (packet.TC, Apid.COMMAND, 42, False)
    assert p.data[:6] == struct.pack(">HI", 1, 7)
    assert p.data[6:-16] == BODY
    covered = raw[:6] + p.data[:-16]  # primary header as sent + security header + body
    assert p.data[-16:] == hmac.new(KEY.secret, covered, hashlib.sha256).digest()[:16]
    assert compute_mac(KEY, covered) == p.data[-16:]


def test_verify_returns_the_body_and_advances_the_window():
    verifier = Verifier(ring())
    assert verifier.verify(tc(0)) == Authenticated(1, 0, BODY)
    assert verifier.last == {1: 0} and verifier.state() == {"1": 0}


@pytest.mark.parametrize("mac_bytes", [8, 12, 32])
def test_any_mac_length_round_trips(mac_bytes):
    key = Key(1, KEY.secret, mac_bytes=mac_bytes)
    raw = tc(3, key)
    assert len(raw) == 6 + 6 + len(BODY) + mac_bytes
    assert Verifier(KeyRing({1: key}, 1)).verify(raw).body == BODY


def test_an_empty_body_round_trips():
    assert Verifier(ring()).verify(tc(0, body=b"")).body == b""


@pytest.mark.parametrize("sequence", [-1, SEQUENCE_MAX + 1])
def test_sealing_a_sequence_number_out_of_range_is_a_bug(sequence):
    with pytest.raises(ValueError):
        seal_command(KEY, 0, sequence, BODY)


# --- each refusal, and the order of the checks ------------------------------------------------


@pytest.mark.parametrize("length", range(12))
def test_a_packet_without_a_whole_security_header_is_malformed(length):
    assert refusal(Verifier(ring()), tc(0)[:length]) == FailureCode.MALFORMED


def test_an_unknown_spi_is_refused():
    stranger = Key(9, KEY.secret)
    assert refusal(Verifier(ring()), tc(0, stranger)) == FailureCode.UNKNOWN_KEY


def test_a_known_but_inactive_key_is_refused():
    assert refusal(Verifier(ring(active=1)), tc(0, OTHER)) == FailureCode.KEY_INACTIVE


def test_a_forged_mac_is_refused():
    assert refusal(Verifier(ring()), tc(0, FORGER)) == FailureCode.BAD_MAC


def test_a_packet_too_short_for_its_mac_is_malformed():
    raw = tc(0)[:12] + b"\x00" * 15  # the security header, then fewer than 16 bytes
    assert refusal(Verifier(ring()), raw) == FailureCode.MALFORMED


def test_the_window_is_checked_before_the_mac():
    verifier = Verifier(ring())
    verifier.verify(tc(0))
    # A replay that also has a bad MAC is reported as a replay: the window check comes first.
    assert refusal(verifier, tc(0, FORGER)) == FailureCode.REPLAY


def test_the_key_is_checked_before_the_window():
    verifier = Verifier(ring())
    verifier.verify(tc(0))
    assert refusal(verifier, tc(0, Key(9, KEY.secret))) == FailureCode.UNKNOWN_KEY
    verifier.keyring.switch(2)
    assert refusal(verifier, tc(0)) == FailureCode.KEY_INACTIVE  # not REPLAY


# --- anti-replay window -----------------------------------------------------------------------


def test_a_repeated_sequence_number_is_refused():
    verifier = Verifier(ring())
    verifier.verify(tc(5))
    assert refusal(verifier, tc(5)) == FailureCode.REPLAY
    assert refusal(verifier, tc(5, body=b"\x00\x07")) == FailureCode.REPLAY  # other command too
    assert verifier.last == {1: 5}


def test_window_edges():
    verifier = Verifier(ring())  # last -1, window 64: fresh is 0..63
    assert refusal(verifier, tc(64)) == FailureCode.REPLAY  # one beyond the window
    assert verifier.verify(tc(63)).sequence == 63  # the far edge
    assert refusal(verifier, tc(62)) == FailureCode.REPLAY  # older
    assert refusal(verifier, tc(63)) == FailureCode.REPLAY  # equal
    assert refusal(verifier, tc(63 + 65)) == FailureCode.REPLAY
    assert verifier.verify(tc(63 + 64)).sequence == 127  # skipping ahead within the window
    assert verifier.verify(tc(128)).sequence == 128  # the near edge


def test_the_first_command_may_be_sequence_number_zero():
    assert Verifier(ring()).verify(tc(0)).sequence == 0


def test_each_key_has_its_own_window():
    verifier = Verifier(ring())
    verifier.verify(tc(10))
    verifier.keyring.switch(2)
    assert verifier.verify(tc(0, OTHER)).sequence == 0  # key 2 starts from -1
    assert refusal(verifier, tc(5, OTHER)) == FailureCode.REPLAY  # its window is 4: 1..4
    assert verifier.verify(tc(4, OTHER)).sequence == 4
    assert verifier.last == {1: 10, 2: 4}


def test_a_key_at_the_last_sequence_number_accepts_nothing_more():
    verifier = Verifier(ring(), {1: SEQUENCE_MAX - 1})
    assert verifier.verify(tc(SEQUENCE_MAX)).sequence == SEQUENCE_MAX
    assert refusal(verifier, tc(SEQUENCE_MAX)) == FailureCode.REPLAY
    assert refusal(verifier, tc(0)) == FailureCode.REPLAY  # no wrap back to 0


# --- CryptoLib #96: a forgery must not move the window ----------------------------------------


def test_a_forged_command_does_not_advance_the_window():
    verifier = Verifier(ring())
    verifier.verify(tc(0))
    # The attacker sends the highest fresh sequence number with a bad MAC...
    assert refusal(verifier, tc(64, FORGER)) == FailureCode.BAD_MAC
    assert verifier.last == {1: 0}
    # ...and the real ground, one step on, is still heard.
    assert verifier.verify(tc(1)).sequence == 1


def test_a_flood_of_forgeries_does_not_lock_out_the_ground():
    verifier = Verifier(ring())
    for sequence in range(0, 64):
        assert refusal(verifier, tc(sequence, FORGER)) == FailureCode.BAD_MAC
    assert verifier.state() == {}
    assert verifier.verify(tc(0)).sequence == 0


# --- persisted state ---------------------------------------------------------------------------


def test_the_state_survives_a_reboot():
    verifier = Verifier(ring())
    verifier.verify(tc(5))
    stored = json.loads(json.dumps(verifier.state()))  # as the CDS keeps it
    rebooted = Verifier(ring(), stored)
    assert refusal(rebooted, tc(5)) == FailureCode.REPLAY
    assert refusal(rebooted, tc(4)) == FailureCode.REPLAY
    assert rebooted.verify(tc(6)).sequence == 6


def test_the_state_keeps_keys_the_ring_does_not_hold():
    verifier = Verifier(KeyRing({1: KEY}, 1), {"1": 3, "77": 12})
    verifier.verify(tc(4))
    assert verifier.state() == {"1": 4, "77": 12}


def test_the_caller_cannot_change_the_window_through_last():
    verifier = Verifier(ring(), {1: 5})
    verifier.last[1] = -1
    assert refusal(verifier, tc(5)) == FailureCode.REPLAY


@pytest.mark.parametrize(
    "state",
    [
        {"x": 1},
        {"0": 1},
        {"65536": 1},
        {"1": -2},
        {"1": SEQUENCE_MAX + 1},
        {"1": "5"},
        {"1": True},
        {True: 5},
        {" 1": 5},
    ],
)
def test_a_state_that_is_not_one_is_a_config_error(state):
    with pytest.raises(ConfigError):
        Verifier(ring(), state)


# --- interop: a TC built with spacepackets ----------------------------------------------------


@given(st.integers(0, 16383), st.integers(0, SEQUENCE_MAX), st.binary(max_size=64))
def test_flight_authenticates_a_tc_built_with_spacepackets(seq_count, sequence, body):
    data_len = 6 + len(body) + 16 + 2  # security header, body, MAC, CRC
    head = SpacePacketHeader.tc(apid=Apid.COMMAND, seq_count=seq_count, data_len=data_len - 1)
    security = struct.pack(">HI", KEY.spi, sequence)
    mac = hmac.new(KEY.secret, bytes(head.pack()) + security + body, hashlib.sha256).digest()
    without_crc = bytes(SpacePacket(head, None, security + body + mac[:16]).pack())
    raw = without_crc + struct.pack(">H", fastcrc.crc16.ibm_3740(without_crc))
    p = packet.decode(raw)
    assert (p.type, p.apid, p.seq_count) == (packet.TC, Apid.COMMAND, seq_count)
    authenticated = Verifier(ring(), {1: sequence - 1}).verify(raw[: -packet.CRC_LEN])
    assert authenticated == Authenticated(KEY.spi, sequence, body)
    assert raw == seal_command(KEY, seq_count, sequence, body)


# --- hostile bytes ----------------------------------------------------------------------------


def verified_or_refused(verifier: Verifier, raw: bytes) -> bool:
    """True if ``raw`` verified; False if refused with AuthenticationError. Anything else
    escapes and fails the test."""
    try:
        verifier.verify(raw)
    except AuthenticationError as exc:
        assert FailureCode(exc.code) is not FailureCode.NONE and exc.detail
        return False
    return True


@pytest.mark.timeout(120)
@given(st.binary(max_size=80))
def test_random_bytes_meet_only_authentication_error(raw):
    assert not verified_or_refused(Verifier(ring()), raw)


@pytest.mark.timeout(120)
@given(st.integers(0, 2**16 - 1), st.integers(0, 2**32 - 1), st.binary(max_size=40))
def test_random_security_headers_meet_only_authentication_error(spi, sequence, tail):
    raw = bytes(6) + struct.pack(">HI", spi, sequence) + tail
    assert not verified_or_refused(Verifier(ring()), raw)


@given(st.binary(max_size=40), st.data())
def test_every_truncation_is_refused(body, draw):
    raw = tc(0, body=body)
    cut = draw.draw(st.integers(0, len(raw) - 1))
    assert not verified_or_refused(Verifier(ring()), raw[:cut])


@given(st.binary(max_size=40), st.data())
def test_a_bit_flip_anywhere_in_a_tc_is_rejected(body, draw):
    raw = bytearray(seal_command(KEY, 3, 9, body))
    bit = draw.draw(st.integers(0, 8 * len(raw) - 1))
    raw[bit // 8] ^= 0x80 >> (bit % 8)
    with pytest.raises(PacketError):  # the CRC sees every single-bit error
        packet.decode(bytes(raw))
    # Even with the CRC made good again (an attacker, not noise), the MAC sees it.
    without_crc = bytes(raw[: -packet.CRC_LEN])
    if bit < 8 * len(without_crc):
        remade = without_crc + struct.pack(">H", packet.crc16(without_crc))
        try:
            packet.decode(remade)  # a flip in the version, flags or length: refused here
        except PacketError:
            return
        assert not verified_or_refused(Verifier(ring()), without_crc)
