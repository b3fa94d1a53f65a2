"""Stopping ``miragekit run`` with clients connected, on every backend.

The runner gets SIGINT or SIGTERM while examples/asyncio_echo serves two clients: one
idle (it read the greeting and waits), one mid-transfer (it keeps sending and never reads,
so the server is stuck on back-pressure). The runner must stop accepting, wait ``--grace``
for them, abort them, and exit with status 0 in bounded time, without a traceback or a
pending-task warning; the clients see their connection end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest
from tests.apprun import ROOT, app_namespace, loopback_ip, running

GRACE = 1.0
RUN = (sys.executable, "-m", "miragekit", "run")

#: A client: ``idle`` reads the greeting and waits; ``push`` sends without reading. It
#: prints ``ready`` once connected, and how its connection ended.
CLIENT = r"""
import socket, sys, time
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((host, port), timeout=30)
s.recv(100)
print("ready", flush=True)
end = time.monotonic() + 30
try:
    if mode == "push":
        s.settimeout(0.2)
        while time.monotonic() < end:
            try:
                s.send(b"x" * 65536 + b"\n")
            except TimeoutError:
                pass
    else:
        s.settimeout(30)
        while s.recv(65536):
            pass
    print("ended: eof", flush=True)
except OSError as e:
    print(f"ended: {type(e).__name__}", flush=True)
"""


def start_client(host: str, port: int, mode: str, netns: str | None) -> subprocess.Popen[str]:
    prefix: Sequence[str] = ("ip", "netns", "exec", netns) if netns else ()
    p = subprocess.Popen(
        [*prefix, sys.executable, "-c", CLIENT, host, str(port), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line.strip() == "ready", line
    return p


@contextmanager
def backend(kind: str) -> Iterator[tuple[list[str], str | None, str | None]]:
    """(runner arguments, namespace, the clients' address or None for --forward)."""
    if kind == "socket":
        ip = loopback_ip()
        yield ["--net", "socket", "--ip", ip], None, ip
    elif kind == "vnet":
        yield ["--net", "vnet", "--forward", "0:7007"], None, None
    else:
        with app_namespace("stop", "10.79.0.1") as ns:
            yield [f"--net=tap:{ns.tap}", "--ip", "10.79.0.2/24"], ns.name, "10.79.0.2"


@pytest.mark.parametrize(
    ("kind", "signum"),
    [
        ("socket", signal.SIGINT),
        ("socket", signal.SIGTERM),
        ("vnet", signal.SIGINT),
        pytest.param("tap", signal.SIGTERM, marks=pytest.mark.kernel),
    ],
)
def test_a_signal_with_clients_connected_stops_in_bounded_time(kind: str, signum: int) -> None:
    with backend(kind) as (args, netns, host):
        with running(
            "examples/asyncio_echo",
            *args,
            "--grace",
            str(GRACE),
            netns=netns,
            ready="asyncio_echo: an asyncio handler",
        ) as r:
            port = 7007 if host is not None else r.forwarded()[0]
            addr = host or "127.0.0.1"
            clients = [start_client(addr, port, mode, netns) for mode in ("idle", "push")]
            time.sleep(0.3)  # the pusher fills the buffers
            t0 = time.monotonic()
            r.proc.send_signal(signum)
            rc = r.proc.wait(timeout=GRACE + 10)
            took = time.monotonic() - t0
            r._thread.join(5)
        out = "\n".join(r.lines)
        assert rc == 0, out
        assert GRACE - 0.1 <= took < GRACE + 5, (took, out)
        assert "connections still open, waiting up to 1 s" in out, out
        assert "Traceback" not in out and "Task was destroyed" not in out, out
        if kind == "vnet":
            assert "forwarded 2 connections (0 completed, 2 aborted, 0 failed)" in out, out
        for c in clients:
            end, _ = c.communicate(timeout=10)
            assert end.startswith("ended: "), end


def test_clients_that_leave_during_the_grace_period_end_it_early() -> None:
    ip = loopback_ip()
    with running("examples/asyncio_echo", "--ip", ip, "--grace", "20", ready="asyncio_echo:") as r:
        client = start_client(ip, 7007, "idle", None)
        r.proc.send_signal(signal.SIGINT)
        r.wait_for("still open, waiting up to 20 s")
        with pytest.raises(ConnectionRefusedError):  # no longer accepting
            socket.create_connection((ip, 7007), timeout=5)
        t0 = time.monotonic()
        client.kill()
        client.wait()
        rc = r.proc.wait(timeout=10)
        assert time.monotonic() - t0 < 3
    assert rc == 0


def test_a_second_signal_skips_the_grace_period() -> None:
    ip = loopback_ip()
    with running("examples/asyncio_echo", "--ip", ip, "--grace", "30", ready="asyncio_echo:") as r:
        client = start_client(ip, 7007, "idle", None)
        r.proc.send_signal(signal.SIGINT)
        r.wait_for("still open")
        t0 = time.monotonic()
        r.proc.send_signal(signal.SIGINT)
        rc = r.proc.wait(timeout=10)
        assert time.monotonic() - t0 < 3
        client.kill()
        client.wait()
    assert rc == 0
    assert not any("Traceback" in line or "Task was destroyed" in line for line in r.lines)


def test_a_signal_during_start_up_exits_0() -> None:
    """Interrupted while the devices are being built (a DHCP stack that gets no lease)."""
    p = subprocess.Popen(
        [*RUN, "examples/echo", "--net", "vxlan:42@127.0.0.1:0", "--dhcp"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(2.0)
    assert p.poll() is None
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=10)
    assert p.returncode == 0, out
    assert "Traceback" not in out, out


@pytest.mark.parametrize("grace", ["-1", "nan", "x"])
def test_a_bad_grace_is_refused(grace: str) -> None:
    p = subprocess.run(
        [*RUN, "examples/hello", "--grace", grace],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 2 and "--grace" in p.stderr and "Traceback" not in p.stderr
