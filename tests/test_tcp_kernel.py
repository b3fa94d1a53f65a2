"""Interop with the Linux kernel's TCP: our sans-I/O TCP behind a TUN device in a netns.

A TUN device carries bare IPv4 packets, so this needs no Ethernet/ARP: the test adds a
20-byte IPv4 header itself and drives a ``TCPEndpoint`` with the real clock. The kernel
side runs in a ``mk-`` network namespace (always deleted). These check the options,
window scaling, SACK, timestamps and close paths against an independent, real peer.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import select
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from tests.nstat import LOSSLESS_RESENDS, kernel_clean

from miragekit.tcp import Config, Connection, State, TCPEndpoint
from miragekit.wire._checksum import checksum_v

pytestmark = pytest.mark.kernel

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
KERNEL_IP = bytes([10, 77, 0, 1])
OUR_IP = bytes([10, 77, 0, 2])


def internet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    return checksum_v((data,), initial)


class TunStack:
    """A TUN fd plus a TCPEndpoint, pumped by ``run(until)`` on the real clock."""

    def __init__(self, fd: int, ep: TCPEndpoint) -> None:
        self.fd = fd
        self.ep = ep
        self.ident = 0
        self.loss = 0.0  # drop this share of packets in each direction
        self.rng = random.Random(1)
        self.dropped = 0

    def _send_ip(self, src: bytes, dst: bytes, tcp: bytes) -> None:
        if self.loss and self.rng.random() < self.loss:
            self.dropped += 1
            return
        self.ident = (self.ident + 1) & 0xFFFF
        hdr = bytearray(
            struct.pack(
                "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), self.ident, 0x4000, 64, 6, 0, src, dst
            )
        )
        hdr[10:12] = internet_checksum(hdr).to_bytes(2, "big")
        os.write(self.fd, bytes(hdr) + tcp)

    def pump(self) -> None:
        now = time.monotonic()
        while True:
            try:
                pkt = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if len(pkt) < 20 or pkt[0] >> 4 != 4 or pkt[9] != 6:
                continue
            if self.loss and self.rng.random() < self.loss:
                self.dropped += 1
                continue
            ihl = (pkt[0] & 0xF) * 4
            total = int.from_bytes(pkt[2:4], "big")
            self.ep.handle_packet(now, pkt[12:16], pkt[16:20], memoryview(pkt)[ihl:total])
        t = self.ep.poll_at()
        if t is not None and t <= now:
            self.ep.handle_timer(now)
        for src, dst, seg in self.ep.segments_to_send(now):
            self._send_ip(src, dst, bytes(seg.to_bytes(src, dst)))

    def run(self, step: Callable[[], bool], timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.pump()
            if step():
                self.pump()
                return
            t = self.ep.poll_at()
            wait = 0.05 if t is None else min(max(t - time.monotonic(), 0.0), 0.05)
            select.select([self.fd], [], [], wait)
        raise AssertionError("timed out")


@pytest.fixture
def netns() -> Iterator[tuple[str, TunStack]]:
    name = f"mk-tcp-{os.getpid()}"
    ifname = f"mktcp{os.getpid() % 100000}"
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", ifname.encode(), IFF_TUN | IFF_NO_PI))
        subprocess.run(["ip", "netns", "add", name], check=True)
        try:
            for cmd in (
                ["ip", "link", "set", ifname, "netns", name],
                ["ip", "-n", name, "addr", "add", "10.77.0.1/24", "dev", ifname],
                ["ip", "-n", name, "link", "set", ifname, "up"],
                ["ip", "-n", name, "link", "set", "lo", "up"],
            ):
                subprocess.run(cmd, check=True)
            ep = TCPEndpoint(Config(mss=1460), secret=os.urandom(16))
            yield name, TunStack(fd, ep)
        finally:
            subprocess.run(["ip", "netns", "delete", name], check=False)
    finally:
        os.close(fd)


def kernel_python(ns: str, code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


SIZE = 8_000_000


@pytest.mark.parametrize("loss", [0.0, 0.02])
def test_kernel_client_to_our_echo_server(netns: tuple[str, TunStack], loss: float) -> None:
    ns, stack = netns
    stack.loss = loss
    stack.ep.listen(7)
    client = kernel_python(
        ns,
        f"""
import hashlib, os, socket, threading
data = os.urandom({SIZE})
s = socket.create_connection(("10.77.0.2", 7), timeout=30)
t = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
t.start()
got = bytearray()
while True:
    b = s.recv(1 << 20)
    if not b:
        break
    got += b
t.join()
s.close()
print(hashlib.sha256(data).hexdigest(), hashlib.sha256(got).hexdigest(), len(got))
""",
    )
    conns: list[Connection] = []
    pending: dict[int, bytearray] = {}

    def step() -> bool:
        if (c := stack.ep.accept(7)) is not None:
            conns.append(c)
            pending[id(c)] = bytearray()
        for c in conns:
            buf = pending[id(c)]
            if c.state in (State.ESTABLISHED, State.CLOSE_WAIT):
                buf += c.receive()
                if buf:
                    n = c.send(buf)
                    del buf[:n]
                if c.at_eof and not buf and c.state == State.CLOSE_WAIT:
                    c.close()
            stack.ep.wake(c)
        return client.poll() is not None

    with kernel_clean(ns, max_resent=None if loss else LOSSLESS_RESENDS):
        stack.run(step, timeout=120)
    out, err = client.communicate()
    assert client.returncode == 0, err
    sent, got, n = out.split()
    assert sent == got and int(n) == SIZE
    # Linux offered every option and we took them all.
    (c,) = conns
    assert c._ws_on and c._ts_on and c._sack_on and c.mss == 1460 - 12
    if loss:
        assert stack.dropped > 0 and c.stats["retransmits"] > 0
    stack.run(lambda: not stack.ep.connections, timeout=10)


def _to_kernel_hasher(
    ns: str,
    stack: TunStack,
    data: bytes,
    max_resent: int | None,
    *,
    port: int = 5001,
    rcvbuf: int = 0,
    pause: float = 0.0,
) -> Connection:
    """Our client sends ``data`` and closes; a kernel server (receive buffer ``rcvbuf``
    when given) reads nothing for ``pause`` s, then hashes all it reads and answers with
    the hash. Both ends' view is checked; the connection is returned."""
    server = kernel_python(
        ns,
        f"""
import hashlib, socket, time
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if {rcvbuf}:
    l.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, {rcvbuf})
l.bind(("10.77.0.1", {port})); l.listen(1)
print("ready", flush=True)
c, _ = l.accept()
time.sleep({pause})
h = hashlib.sha256(); n = 0
while b := c.recv(1 << 20):
    h.update(b); n += len(b)
c.sendall(h.hexdigest().encode())
c.close()
print(n, flush=True)
""",
    )
    assert server.stdout is not None
    assert server.stdout.readline().strip() == "ready"
    conn = stack.ep.connect(time.monotonic(), OUR_IP, KERNEL_IP, port)
    off = 0
    reply = bytearray()

    def step() -> bool:
        nonlocal off
        if conn.state == State.ESTABLISHED and off < len(data):
            off += conn.send(memoryview(data)[off : off + 262144])
            if off == len(data):
                conn.close()
        reply.extend(conn.receive())
        stack.ep.wake(conn)
        return conn.at_eof

    with kernel_clean(ns, max_resent=max_resent):
        stack.run(step, timeout=120)
    assert reply.decode() == hashlib.sha256(data).hexdigest()
    out, err = server.communicate(timeout=10)
    assert server.returncode == 0, err
    assert int(out.strip()) == len(data)
    return conn


@pytest.mark.parametrize("loss", [0.0, 0.02])
def test_our_client_to_kernel_server(netns: tuple[str, TunStack], loss: float) -> None:
    ns, stack = netns
    stack.loss = loss
    conn = _to_kernel_hasher(ns, stack, os.urandom(SIZE), None if loss else LOSSLESS_RESENDS)
    # We closed first: TIME_WAIT holds the 4-tuple for 2*MSL (not waited for here).
    assert conn.state == State.TIME_WAIT


def test_our_sender_probes_a_shut_kernel_window_and_goes_on_when_it_opens(
    netns: tuple[str, TunStack],
) -> None:
    """A kernel receiver with a small buffer that reads nothing for 2 s: its window
    shuts with our data queued; our persist timer probes it (an old sequence number, no
    data, which the kernel answers with an ACK); when it reads, the rest arrives whole."""
    ns, stack = netns
    data = os.urandom(200_000)
    conn = _to_kernel_hasher(ns, stack, data, LOSSLESS_RESENDS, port=5002, rcvbuf=4096, pause=2)
    assert conn.stats["window_probes"] >= 1
    assert conn.stats["rto"] == conn.stats["window_probes"]  # each timeout a probe only


def test_kernel_sees_rst_for_closed_port(netns: tuple[str, TunStack]) -> None:
    ns, stack = netns
    client = kernel_python(
        ns,
        """
import socket
try:
    socket.create_connection(("10.77.0.2", 9), timeout=10)
    print("connected")
except ConnectionRefusedError:
    print("refused")
""",
    )
    stack.run(lambda: client.poll() is not None, timeout=20)
    out, _ = client.communicate()
    assert out.strip() == "refused"
    assert stack.ep.stats["rst_sent"] >= 1


def test_our_connect_to_closed_kernel_port_is_refused(netns: tuple[str, TunStack]) -> None:
    _ns, stack = netns
    conn = stack.ep.connect(time.monotonic(), OUR_IP, KERNEL_IP, 5999)
    stack.run(lambda: conn.state == State.CLOSED, timeout=10)
    events = list(iter(conn.next_event, None))
    assert type(events[0]).__name__ == "ConnectionReset" and getattr(events[0], "refused", False)


def test_many_kernel_connections_open_and_close_cleanly(netns: tuple[str, TunStack]) -> None:
    ns, stack = netns
    stack.ep.listen(7, backlog=64)
    client = kernel_python(
        ns,
        """
import socket, concurrent.futures as cf
def one(i):
    s = socket.create_connection(("10.77.0.2", 7), timeout=30)
    s.sendall(bytes([i % 256]))
    b = s.recv(1)
    s.close()
    return b == bytes([i % 256])
with cf.ThreadPoolExecutor(32) as ex:
    ok = sum(ex.map(one, range(300)))
print(ok)
""",
    )
    served = 0
    live: list[Connection] = []

    def step() -> bool:
        nonlocal served
        while (c := stack.ep.accept(7)) is not None:
            live.append(c)
        for c in list(live):
            data = c.receive()
            if data:
                c.send(data)
            if c.at_eof and c.state == State.CLOSE_WAIT:
                c.close()
            if c.state == State.CLOSED:
                live.remove(c)
                served += 1
            stack.ep.wake(c)
        return client.poll() is not None and not live

    with kernel_clean(ns):
        stack.run(step, timeout=120)
    out, err = client.communicate()
    assert out.strip() == "300", err
    stack.run(lambda: not stack.ep.connections, timeout=10)
    assert served == 300 and stack.ep.stats["connections_removed"] == 300
