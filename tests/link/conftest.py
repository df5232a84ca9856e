"""Fixtures of the link tests: key files and boards on loopback (see boards.py)."""

from __future__ import annotations

import secrets

import pytest
from boards import Board, free_udp_pair, mission_text, write_keys


@pytest.fixture
def keys(tmp_path):
    """A key file with two keys (SPI 1 active) and a forger's file: SPI 1, another secret."""
    good = write_keys(tmp_path / "keys.toml", {1: secrets.token_hex(32), 2: secrets.token_hex(32)})
    forged = write_keys(tmp_path / "forged.toml", {1: secrets.token_hex(32)})
    return good, forged


@pytest.fixture
def board_factory(tmp_path):
    """Start boards (UDP on a free port pair unless told), always stopped at the end."""
    boards: list[Board] = []

    def make(link_table: str, *extra: str, url: str | None = None, **mission_lines) -> Board:
        mission = tmp_path / f"mission{len(boards)}.toml"
        mission.write_text(mission_text(link_table, **mission_lines))
        board = Board(tmp_path, url or f"udp://127.0.0.1:{free_udp_pair()}", mission, *extra)
        boards.append(board)
        board.start()
        return board

    yield make
    for board in boards:
        board.kill()
