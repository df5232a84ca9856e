"""Boards the harness drives through their space link: a local emulated board (spawned,
restarted as its init system would), a remote one at host:port, one on a serial line."""

from hil.boards.board import (
    START_TIMEOUT,
    Board,
    BoardError,
    BoardUnreachable,
    RemoteBoard,
    SerialBoard,
    open_board,
)
from hil.boards.local import Exit, LocalBoard, free_udp_pair, write_key_file
from hil.boards.restart import SYSTEMD_UNIT, RestartPolicy

__all__ = [
    "START_TIMEOUT",
    "SYSTEMD_UNIT",
    "Board",
    "BoardError",
    "BoardUnreachable",
    "Exit",
    "LocalBoard",
    "RemoteBoard",
    "RestartPolicy",
    "SerialBoard",
    "free_udp_pair",
    "open_board",
    "write_key_file",
]
