"""The socket stand-in every connection has: its options dict is made only when an
option is set (most connections are given none; at 10,000 connections the empty dicts
were 640 KB)."""

from __future__ import annotations

import socket

from miragekit.netloop._sock import StackSocket


class Conn:
    def __init__(self) -> None:
        self.nodelay: list[bool] = []

    def set_nodelay(self, on: bool) -> None:
        self.nodelay.append(on)


def test_no_options_dict_until_an_option_is_set() -> None:
    conn = Conn()
    s = StackSocket(socket.AF_INET, socket.SOCK_STREAM, ("10.0.0.1", 80), ("10.0.0.2", 9), conn)
    assert s._opts is None
    assert s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
    assert s._opts is None  # reading made nothing
    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
    assert s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
    assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0
    assert conn.nodelay == [False]
