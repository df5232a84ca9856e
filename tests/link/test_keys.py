"""The key file: a good one loads with its defaults; every bad one is a ConfigError that names
the file and the key; a file others can read is refused unless the bench says otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from flight.errors import CommandError, ConfigError
from flight.link.codes import FailureCode
from flight.link.keys import INSECURE_ENV, Key, KeyRing, load_keys

SECRET_1 = "00112233445566778899aabbccddeeff" * 2  # 32 bytes
SECRET_2 = "f0e1d2c3b4a5968778695a4b3c2d1e0f"  # 16 bytes: the shortest allowed


@pytest.fixture(autouse=True)
def _secure_by_default(monkeypatch):
    monkeypatch.delenv(INSECURE_ENV, raising=False)


def key_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


GOOD = f"""
active = 2
[[key]]
spi = 1
secret = "{SECRET_1}"
mac_bytes = 32
window = 8
[[key]]
spi = 2
secret = "{SECRET_2}"
"""


def test_a_good_file_loads_with_the_defaults(tmp_path):
    ring = load_keys(key_file(tmp_path, GOOD))
    assert ring.active == 2 and sorted(ring.keys) == [1, 2]
    assert ring.keys[1] == Key(1, bytes.fromhex(SECRET_1), 32, 8)
    assert ring.keys[2] == Key(2, bytes.fromhex(SECRET_2), 16, 64)
    assert ring.active_key is ring.keys[2]


def test_the_secret_stays_out_of_reprs(tmp_path):
    ring = load_keys(key_file(tmp_path, GOOD))
    assert SECRET_1 not in repr(ring) and "secret" not in repr(ring.keys[1])


def one_key(**fields: object) -> str:
    lines = ["active = 1", "[[key]]"]
    lines += [f"{name} = {value}" for name, value in fields.items()]
    return "\n".join(lines) + "\n"


S1 = f'"{SECRET_1}"'


@pytest.mark.parametrize(
    ("text", "names", "words"),
    [
        (one_key(spi=1, secret='"' + "ab" * 15 + '"'), "spi = 1", "secret of 15 bytes"),
        (one_key(spi=1, window=64), "spi = 1", "window = 64 but no secret"),
        (one_key(spi=1), "spi = 1", "no secret"),
        (one_key(spi=1, secret='""', window=4), "spi = 1", "#536"),
        (one_key(spi=1, secret='"' + "zz" * 16 + '"'), "spi = 1", "not hex"),
        (one_key(spi=1, secret='"' + "a" * 33 + '"'), "spi = 1", "not hex"),
        (one_key(spi=1, secret=12345), "spi = 1", "string of hex"),
        (one_key(spi=1, secret=S1, mac_bytes=7), "spi = 1", "mac_bytes = 7"),
        (one_key(spi=1, secret=S1, mac_bytes=33), "spi = 1", "mac_bytes = 33"),
        (one_key(spi=1, secret=S1, mac_bytes='"16"'), "spi = 1", "mac_bytes = '16'"),
        (one_key(spi=1, secret=S1, mac_bytes="true"), "spi = 1", "mac_bytes = True"),
        (one_key(spi=1, secret=S1, window=0), "spi = 1", "window = 0"),
        (one_key(spi=1, secret=S1, window=65537), "spi = 1", "window = 65537"),
        (one_key(spi=1, secret=S1, window="true"), "spi = 1", "window = True"),
        (one_key(spi="true", secret=S1), "#1", "spi = True"),
        (one_key(spi=0, secret=S1), "#1", "spi = 0"),
        (one_key(spi=65536, secret=S1), "#1", "spi = 65536"),
        (one_key(secret=S1), "#1", "no spi"),
        (one_key(spi=1, secret=S1, mac=16), "spi = 1", "unknown field(s) mac"),
        (
            one_key(spi=1, secret=S1) + f"[[key]]\nspi = 1\nsecret = {S1}\n",
            "#2",
            "spi = 1 is used twice",
        ),
        (one_key(spi=1, secret=S1).replace("active = 1", "active = 3"), "active = 3", "none"),
        (one_key(spi=1, secret=S1).replace("active = 1", 'active = "1"'), "active = '1'", ""),
        (one_key(spi=1, secret=S1).replace("active = 1", "active = true"), "active = True", ""),
        (one_key(spi=1, secret=S1).replace("active = 1\n", ""), "no 'active'", ""),
        (one_key(spi=1, secret=S1) + "version = 2\n", "unknown field(s) version", ""),
        ("active = 1\n", "no keys", ""),
        ("active = 1\nkey = 5\n", "no keys", ""),
        ("active = 1\n[[key]\n", "not valid TOML", ""),
    ],
)
def test_a_bad_file_is_a_config_error_naming_the_file_and_the_key(tmp_path, text, names, words):
    path = key_file(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_keys(path)
    message = str(caught.value)
    assert str(path) in message
    assert names in message and words in message


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_bytes(b"active = 1\n\xff\xfe")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_keys(path)


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_keys(tmp_path / "absent.toml")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o601])
def test_a_file_the_group_or_others_can_touch_is_refused(tmp_path, mode):
    path = key_file(tmp_path, GOOD, mode)
    with pytest.raises(ConfigError) as caught:
        load_keys(path)
    assert str(path) in str(caught.value) and f"{mode:04o}" in str(caught.value)


def test_the_bench_may_allow_a_readable_file(tmp_path, monkeypatch):
    path = key_file(tmp_path, GOOD, 0o644)
    monkeypatch.setenv(INSECURE_ENV, "1")
    assert load_keys(path).active == 2
    monkeypatch.setenv(INSECURE_ENV, "yes")  # only "1" opens the door
    with pytest.raises(ConfigError):
        load_keys(path)


def test_owner_only_modes_are_accepted(tmp_path):
    assert load_keys(key_file(tmp_path, GOOD, 0o400)).active == 2


def test_switching_the_active_key():
    ring = KeyRing({1: Key(1, bytes(16)), 2: Key(2, bytes(16))}, 1)
    ring.switch(2)
    assert ring.active == 2
    with pytest.raises(CommandError) as caught:
        ring.switch(3)
    assert caught.value.code == FailureCode.INVALID_ARGUMENT and ring.active == 2


@pytest.mark.parametrize(
    "args",
    [
        (0, bytes(16)),
        (1, bytes(15)),
        (1, "00" * 16),
        (1, bytes(16), 7),
        (1, bytes(16), 16, 0),
    ],
)
def test_keys_built_in_code_get_the_same_checks(args):
    with pytest.raises(ValueError):
        Key(*args)


def test_a_key_ring_must_hold_its_active_key():
    with pytest.raises(ValueError):
        KeyRing({1: Key(1, bytes(16))}, 2)
