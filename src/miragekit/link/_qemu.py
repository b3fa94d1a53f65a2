"""NETWORK devices on QEMU's socket netdevs: ``-netdev stream`` and ``-netdev dgram``.

Why: a virtual machine plugs into the switch without TAP devices, root or a kernel
bridge. QEMU's ``stream`` netdev puts a 4-byte big-endian length before every frame on a
stream socket; its ``dgram`` netdev sends one frame per datagram. We take the server's
side of a unix socket at ``path``: the VM connects (stream) or sends from its own bound
path (dgram), and a VM that restarts simply connects again.

A frame handed to the receiver is a view of the device's receive buffer, valid only
during the call (the :class:`FrameLink` contract).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Self

from ..macaddr import MacAddr
from ..result import Error, NetworkError, Ok, Unknown
from ..v1 import Buffer, Network
from ._fd import FdLink
from ._frame import FrameLink

MAX_FRAME: Final = 65535 + 14 + 4
"""The largest frame either side may send (QEMU's own bound is 69632 bytes)."""
_LEN = struct.Struct(">I")
READ_BATCH: Final = 64
"""Reads per wake-up at most, so one busy VM cannot starve the loop."""


@dataclass(slots=True)
class QemuCounters:
    """What :class:`~miragekit.v1.Stats` does not count."""

    connects: int = 0  # connections accepted (stream), peers learned (dgram)
    rx_dropped: int = 0  # the async listen queue had no room
    rx_malformed: int = 0  # a length beyond MAX_FRAME: the connection was closed
    tx_dropped: int = 0  # no peer, queue full or a socket error
    tx_queued: int = 0  # waited for the socket to become writable
    tx_errors: int = 0


def claim_path(path: str) -> str | None:
    """Make ``path`` free for a unix socket: remove a stale socket nobody listens on.

    Returns why it cannot be used (another process listens there, or it is no socket),
    or None. Why check: binding over a live socket would silently steal it from its owner.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"{path}: {e.strerror}"
    if not stat.S_ISSOCK(st.st_mode):
        return f"{path}: exists and is not a socket"
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_UNIX, kind) as probe:
            try:
                probe.connect(path)
            except OSError:
                continue
            return f"{path}: socket in use by another process"
    os.unlink(path)
    return None


class _UnixPort(FdLink[bytes, QemuCounters]):
    """What both QEMU devices share: the socket bound at ``path`` (its fd is the one
    :class:`FdLink` watches while a receiver is installed), removed on disconnect."""

    def __init__(self, sock: socket.socket, path: str, *, mtu: int, mac: MacAddr, rbuf: int):
        super().__init__(
            sock.fileno(),
            loop=asyncio.get_running_loop(),
            mtu=mtu,
            mac=mac,
            counters=QemuCounters(),
            rbuf_size=rbuf,
            tx_queue_limit=1024,
            rx_queue_limit=1024,
        )
        self._sock = sock
        self._path = path

    def id(self) -> str:
        return self._path

    def _close_fd(self) -> None:
        self._sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self._path)

    def _on_writable(self) -> None:
        self._loop.remove_writer(self._fd)
        self._writing = False

    def send(self, frame: Buffer) -> None:
        self.sendv((frame,))


def _bind(path: str, kind: int) -> socket.socket:
    why = claim_path(path)
    if why is not None:
        raise OSError(why)
    sock = socket.socket(socket.AF_UNIX, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        sock.bind(path)
    except OSError as e:
        sock.close()
        raise OSError(f"{path}: {e.strerror}") from None
    return sock


class QemuStreamNetif(_UnixPort):
    """The server side of QEMU's ``-netdev stream,addr.type=unix,addr.path=PATH``.

    One VM at a time: a new connection replaces the current one (the VM restarted).
    Frames sent while no VM is connected are dropped and counted.
    """

    def __init__(self, sock: socket.socket, path: str, *, mtu: int, mac: MacAddr) -> None:
        super().__init__(sock, path, mtu=mtu, mac=mac, rbuf=4 * MAX_FRAME)
        self._conn: socket.socket | None = None
        self._have = 0
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._out_limit = 4 << 20

    @classmethod
    async def connect(
        cls, id: str, *, mtu: int = 1500, mac: MacAddr | str | None = None
    ) -> Ok[Self] | Error[NetworkError]:
        """Listen on unix socket path ``id`` for QEMU's connection."""
        try:
            sock = _bind(id, socket.SOCK_STREAM)
            sock.listen(1)
        except OSError as e:
            return Error(Unknown(str(e.args[-1])))
        m = MacAddr(mac) if isinstance(mac, str) else mac or MacAddr.local(os.urandom(6))
        return Ok(cls(sock, id, mtu=mtu, mac=m))

    @property
    def peer_connected(self) -> bool:
        """A VM is connected right now."""
        return self._conn is not None

    def _on_readable(self) -> None:
        """The listening socket: a VM connects (again)."""
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        self._drop_conn()
        conn.setblocking(False)
        self._conn = conn
        self.counters.connects += 1
        self._loop.add_reader(conn.fileno(), self._on_conn_readable)

    def _drop_conn(self) -> None:
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        self._loop.remove_reader(conn.fileno())
        if self._out:
            self._loop.remove_writer(conn.fileno())
            self.counters.tx_dropped += len(self._out)
        self._out = []
        self._out_bytes = 0
        self._have = 0
        conn.close()

    def _close_fd(self) -> None:
        self._drop_conn()
        super()._close_fd()

    def _on_conn_readable(self) -> None:
        conn, buf, view, st = self._conn, self._rbuf, self._rview, self._stats
        if conn is None:
            return
        for _ in range(READ_BATCH):
            have = self._have
            try:
                n = conn.recv_into(view[have:])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                n = 0
            if n == 0:
                self._drop_conn()  # the VM went away; wait for the next one
                return
            have += n
            pos = 0
            while have - pos >= 4:
                size = _LEN.unpack_from(buf, pos)[0]
                if size > MAX_FRAME:
                    self.counters.rx_malformed += 1
                    self._drop_conn()
                    return
                end = pos + 4 + size
                if end > have:
                    break
                st.rx_pkts += 1
                st.rx_bytes += size
                fn = self._receiver
                if fn is not None:
                    fn(view[pos + 4 : end])
                pos = end
                if self._conn is not conn:
                    return  # the receiver disconnected us
            if pos:
                buf[: have - pos] = buf[pos:have]
            self._have = have - pos

    def sendv(self, bufs: Sequence[Buffer]) -> None:
        conn = self._conn
        if conn is None:
            self.counters.tx_dropped += 1
            return
        n = 0
        for b in bufs:
            n += len(b) if type(b) is bytes else memoryview(b).nbytes
        head = _LEN.pack(n)
        if self._out:
            self._queue(head + b"".join(bufs))
            return
        try:
            sent = conn.sendmsg((head, *bufs))
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.counters.tx_dropped += 1
            return
        self._stats.tx_pkts += 1
        self._stats.tx_bytes += n
        if sent < n + 4:
            self._queue((head + b"".join(bufs))[sent:], partial=True)

    def _queue(self, data: bytes, *, partial: bool = False) -> None:
        conn = self._conn
        assert conn is not None
        if not partial and self._out_bytes + len(data) > self._out_limit:
            self.counters.tx_dropped += 1
            return
        if not partial:
            self._stats.tx_pkts += 1
            self._stats.tx_bytes += len(data) - 4
        if not self._out:
            self._loop.add_writer(conn.fileno(), self._on_conn_writable)
        self._out.append(data)
        self._out_bytes += len(data)
        self.counters.tx_queued += 1

    def _on_conn_writable(self) -> None:
        conn = self._conn
        if conn is None:
            return
        out = self._out
        while out:
            try:
                sent = conn.send(out[0])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._drop_conn()
                return
            self._out_bytes -= sent
            if sent < len(out[0]):
                out[0] = out[0][sent:]
                return
            out.pop(0)
        self._loop.remove_writer(conn.fileno())


class QemuDgramNetif(_UnixPort):
    """The other end of QEMU's ``-netdev dgram`` with unix addresses: we bind ``path``
    (QEMU's ``remote.path``) and answer the address the VM sends from (its
    ``local.path``), or ``remote`` given up front."""

    def __init__(
        self, sock: socket.socket, path: str, *, mtu: int, mac: MacAddr, remote: str | None
    ) -> None:
        super().__init__(sock, path, mtu=mtu, mac=mac, rbuf=MAX_FRAME + 1)
        self._peer = remote

    @classmethod
    async def connect(
        cls,
        id: str,
        *,
        remote: str | None = None,
        mtu: int = 1500,
        mac: MacAddr | str | None = None,
    ) -> Ok[Self] | Error[NetworkError]:
        """Bind unix datagram socket path ``id``; send to ``remote`` or the last sender."""
        try:
            sock = _bind(id, socket.SOCK_DGRAM)
        except OSError as e:
            return Error(Unknown(str(e.args[-1])))
        m = MacAddr(mac) if isinstance(mac, str) else mac or MacAddr.local(os.urandom(6))
        return Ok(cls(sock, id, mtu=mtu, mac=m, remote=remote))

    @property
    def peer(self) -> str | None:
        return self._peer

    def _on_readable(self) -> None:
        sock, view, st = self._sock, self._rview, self._stats
        for _ in range(READ_BATCH):
            try:
                n, addr = sock.recvfrom_into(view)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if addr and addr != self._peer:
                self._peer = addr
                self.counters.connects += 1
            if n > MAX_FRAME:
                self.counters.rx_malformed += 1
                continue
            st.rx_pkts += 1
            st.rx_bytes += n
            fn = self._receiver
            if fn is not None:
                fn(view[:n])

    def sendv(self, bufs: Sequence[Buffer]) -> None:
        peer = self._peer
        if peer is None or not self._connected:
            self.counters.tx_dropped += 1
            return
        try:
            n = self._sock.sendmsg(bufs, (), 0, peer)
        except OSError:
            # A full receive queue (EAGAIN) or a VM that is gone: datagrams may be lost.
            self.counters.tx_errors += 1
            self.counters.tx_dropped += 1
            return
        self._stats.tx_pkts += 1
        self._stats.tx_bytes += n


_check_stream: type[Network] = QemuStreamNetif
_check_dgram: type[Network] = QemuDgramNetif
_check_link: type[FrameLink] = QemuStreamNetif
