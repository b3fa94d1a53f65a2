"""examples/echo through the runner on host sockets, driven by socat."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.netns import require_root

ROOT = Path(__file__).resolve().parent.parent

# Ports 7 and 9 on the host need root, as CI runs: a missing privilege fails, not skips.
pytestmark = pytest.mark.kernel


@pytest.fixture
def echo_server() -> object:
    require_root()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "miragekit",
            "run",
            "examples/echo",
            "--net",
            "socket",
            "--ip",
            "127.0.0.1",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "echo: TCP+UDP echo on 127.0.0.1 port 7" in line, (
        line,
        proc.stderr.read() if proc.poll() is not None and proc.stderr else "",
    )
    try:
        yield proc
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


@pytest.mark.usefixtures("echo_server")
def test_tcp_and_udp_echo_with_socat() -> None:
    assert shutil.which("socat"), "socat is installed by .ci/run"
    data = os.urandom(200_000)
    tcp = subprocess.run(
        ["socat", "-t", "5", "-", "TCP:127.0.0.1:7"],
        input=data,
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert tcp.stdout == data
    udp = subprocess.run(
        ["socat", "-t", "2", "-", "UDP:127.0.0.1:7"],
        input=b"hello over udp",
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert udp.stdout == b"hello over udp"
    start = time.monotonic()
    discard = subprocess.run(
        ["socat", "-t", "1", "-", "TCP:127.0.0.1:9"],
        input=data,
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert discard.stdout == b"" and time.monotonic() - start < 20


def test_tcp_echo_and_discard_on_the_direct_stack_through_forward(tmp_path: Path) -> None:
    """socat on the host -> --forward -> the host's stack -> virtual switch -> the app's stack.

    socat half-closes after its input and waits for the echo: the FIN travels through the
    forwarder and both stacks, and the echoed bytes still come back.
    """
    from tests.apprun import running, sh

    pcap = tmp_path / "echo.pcap"
    args = ["--net", "vnet", "--forward", "0:7", "--forward", "0:9", "--pcap", str(pcap)]
    with running("examples/echo", *args, ready="echo: TCP\\+UDP echo on 10.0.0.2 port 7") as r:
        echo_port, discard_port = r.forwarded()
        data = os.urandom(300_000)
        assert sh("socat", "-t", "10", "-", f"TCP:127.0.0.1:{echo_port}", input=data) == data
        start = time.monotonic()
        assert sh("socat", "-t", "1", "-", f"TCP:127.0.0.1:{discard_port}", input=data) == b""
        assert time.monotonic() - start < 20
    # The capture holds the app's side of both conversations (and was closed cleanly).
    cap = pcap.read_bytes()
    assert len(cap) > 2 * len(data) and cap[:4] == b"\xd4\xc3\xb2\xa1"
