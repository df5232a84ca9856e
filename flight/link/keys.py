"""The telecommand key file: which keys authenticate commands, and which one is active.

A TOML file that the mission names (``[link] key_file``), never the mission itself, so missions
can be shared and reviewed without their secrets::

    active = 1            # the SPI telecommands are accepted under
    [[key]]
    spi = 1               # 1..65535
    secret = "hex..."     # >= 32 hex digits (16 bytes); 32 bytes recommended
    mac_bytes = 16        # HMAC-SHA256 truncated to this, 8..32
    window = 64           # anti-replay window, 1..65536

Every key authenticates: a key without a secret (an anti-replay window on an unauthenticated
key, CryptoLib #536) is refused, as are unknown fields (a typo must not silently drop a check)
and a file that the group or others can read (like ssh; ``FLIGHT_KEYS_INSECURE=1`` allows it on
a bench). Every refusal is a :class:`flight.errors.ConfigError` that names the file and the key.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flight.errors import CommandError, ConfigError
from flight.link.codes import FailureCode

__all__ = [
    "DEFAULT_MAC_BYTES",
    "DEFAULT_WINDOW",
    "INSECURE_ENV",
    "Key",
    "KeyRing",
    "load_keys",
]

DEFAULT_MAC_BYTES = 16
DEFAULT_WINDOW = 64
MIN_SECRET_BYTES = 16
MAC_BYTES_RANGE = (8, 32)
WINDOW_RANGE = (1, 65536)
SPI_RANGE = (1, 65535)
#: Set to "1" to accept a key file that the group or others may read (benches, CI).
INSECURE_ENV = "FLIGHT_KEYS_INSECURE"
_TOP_FIELDS = frozenset({"active", "key"})
_KEY_FIELDS = frozenset({"spi", "secret", "mac_bytes", "window"})


@dataclass(frozen=True)
class Key:
    """One authentication key: its security parameter index, HMAC-SHA256 secret, MAC length
    and anti-replay window."""

    spi: int
    secret: bytes = field(repr=False)
    mac_bytes: int = DEFAULT_MAC_BYTES
    window: int = DEFAULT_WINDOW

    def __post_init__(self) -> None:
        # Keys built in code (tests, hil) get the same checks as keys from a file.
        problem = (
            _range_problem(self.spi, SPI_RANGE)
            or _range_problem(self.mac_bytes, MAC_BYTES_RANGE)
            or _range_problem(self.window, WINDOW_RANGE)
        )
        if problem or not isinstance(self.secret, bytes) or len(self.secret) < MIN_SECRET_BYTES:
            raise ValueError(f"invalid key {self!r}: {problem or 'secret shorter than 16 bytes'}")


@dataclass
class KeyRing:
    """The keys of a key file by SPI, and the SPI commands are accepted under (``switch_key``
    changes it at run time)."""

    keys: dict[int, Key]
    active: int

    def __post_init__(self) -> None:
        if self.active not in self.keys:
            raise ValueError(f"active SPI {self.active} names none of {sorted(self.keys)}")

    @property
    def active_key(self) -> Key:
        return self.keys[self.active]

    def switch(self, spi: int) -> None:
        """Accept commands under ``spi`` from now on (the ``switch_key`` command)."""
        if spi not in self.keys:
            raise CommandError(
                FailureCode.INVALID_ARGUMENT,
                f"switch_key: SPI {spi} names no key (known: {sorted(self.keys)})",
            )
        self.active = spi


def load_keys(path: str | os.PathLike[str]) -> KeyRing:
    """Read and check a key file; ConfigError (naming the file and the key) when it is unsafe
    or invalid."""
    path = Path(path)
    where = f"key file {path}"
    try:
        with open(path, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            raw = file.read()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    if stat.S_IMODE(mode) & 0o077 and os.environ.get(INSECURE_ENV) != "1":
        raise ConfigError(
            f"{where}: mode {stat.S_IMODE(mode):04o} gives the group or others access to the "
            f"secrets; chmod 600 it (or set {INSECURE_ENV}=1 on a bench)"
        )
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    return _keyring(document, where)


def _keyring(document: dict[str, Any], where: str) -> KeyRing:
    unknown = sorted(set(document) - _TOP_FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)} (expected active, key)")
    entries = document.get("key")
    tables = isinstance(entries, list) and all(isinstance(e, dict) for e in entries)
    if not tables or not entries:
        raise ConfigError(f"{where}: no keys: expected one or more [[key]] tables")
    keys: dict[int, Key] = {}
    for number, entry in enumerate(entries, start=1):
        key = _key(entry, f"{where}: [[key]] #{number}")
        if key.spi in keys:
            raise ConfigError(f"{where}: [[key]] #{number}: spi = {key.spi} is used twice")
        keys[key.spi] = key
    if "active" not in document:
        raise ConfigError(f"{where}: no 'active' SPI (the key commands are accepted under)")
    active = document["active"]
    if not _is_int(active) or active not in keys:
        raise ConfigError(f"{where}: active = {active!r} names none of the keys {sorted(keys)}")
    return KeyRing(keys, active)


def _key(entry: dict[str, Any], where: str) -> Key:
    if "spi" not in entry:
        raise ConfigError(f"{where}: no spi (the key's security parameter index, 1..65535)")
    spi = entry["spi"]
    if _range_problem(spi, SPI_RANGE):
        raise ConfigError(f"{where}: spi = {spi!r}: {_range_problem(spi, SPI_RANGE)}")
    where = f"{where} (spi = {spi})"
    unknown = sorted(set(entry) - _KEY_FIELDS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field(s) {', '.join(unknown)} (expected spi, secret, mac_bytes, "
            "window)"
        )
    secret = _secret(entry, where)
    mac_bytes = entry.get("mac_bytes", DEFAULT_MAC_BYTES)
    problem = _range_problem(mac_bytes, MAC_BYTES_RANGE)
    if problem:
        raise ConfigError(f"{where}: mac_bytes = {mac_bytes!r}: {problem}")
    window = entry.get("window", DEFAULT_WINDOW)
    problem = _range_problem(window, WINDOW_RANGE)
    if problem:
        raise ConfigError(f"{where}: window = {window!r}: {problem}")
    return Key(spi, secret, mac_bytes, window)


def _secret(entry: dict[str, Any], where: str) -> bytes:
    text = entry.get("secret")
    if text is None or text == "":
        window = f"window = {entry['window']} but " if "window" in entry else ""
        raise ConfigError(
            f"{where}: {window}no secret: a key that does not authenticate is refused, with or "
            "without an anti-replay window (CryptoLib #536)"
        )
    if not isinstance(text, str):
        raise ConfigError(f"{where}: secret must be a string of hex digits")
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"{where}: secret is not hex digits (an even number of 0-9a-f)") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"{where}: secret of {len(secret)} bytes: at least {MIN_SECRET_BYTES} "
            f"({2 * MIN_SECRET_BYTES} hex digits), 32 recommended"
        )
    return secret


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _range_problem(value: object, bounds: tuple[int, int]) -> str:
    """'' when ``value`` is an integer within ``bounds``, else what is wrong with it."""
    low, high = bounds
    if _is_int(value) and low <= value <= high:  # type: ignore[operator]
        return ""
    return f"expected an integer {low}..{high}"
