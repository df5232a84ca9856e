"""Boards the harness drives through their space link: a local emulated board (spawned,
restarted as its init system would), a remote one at host:port, one on a serial line."""
