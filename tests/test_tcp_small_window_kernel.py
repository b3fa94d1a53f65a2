"""Our sender into a kernel receiver whose buffer is pinned small (``tcp_rmem=4096``).

The kernel then offers about 1.5 KB of window: one full segment and a sliver. Sender
silly-window avoidance (RFC 9293 3.8.6.2.1) must keep the sliver unsent while a full
segment is in flight: into such a window, a runt in every round trip halves the bytes
per round trip (measured: 9-23 MB/s with runts, 21-30 without, against the kernel's
50-55 MB/s over veth, in docs/performance.md). The kernel's own counters show what it
received: the bytes in full-sized segments, nothing dropped for lack of window.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.apprun import AppNs, Running, app_namespace, running
from tests.nstat import snapshot
from tests.test_example_iperf3 import check_report, iperf3_json

pytestmark = pytest.mark.kernel

KERNEL_IP = "10.79.9.1"
APP_IP = "10.79.9.2"
MSS = 1448  # 1500 - 40 - the timestamp option


@pytest.fixture
def ns() -> Iterator[AppNs]:
    with app_namespace("sw", KERNEL_IP) as n:
        n.run("sysctl", "-qw", "net.ipv4.tcp_rmem=4096 4096 4096")
        yield n


@pytest.fixture
def server(ns: AppNs) -> Iterator[Running]:
    args = ["--net", f"tap:{ns.tap}", "--ip", f"{APP_IP}/24"]
    with running(
        "examples/iperf3", *args, netns=ns.name, ready=f"iperf3: server on {APP_IP} port 5201"
    ) as r:
        yield r


def test_our_sender_fills_a_pinned_small_kernel_window_in_full_segments(
    ns: AppNs, server: Running
) -> None:
    n = 4 * 1024 * 1024
    before = snapshot(ns.name)
    rev = iperf3_json("-c", APP_IP, "-n", str(n), "-R", netns=ns.name)
    after = snapshot(ns.name)
    sent, received = check_report(rev, 1)
    assert received >= n and received <= sent
    d = {k: v - before.get(k, 0) for k, v in after.items()}
    # Nothing beyond the window: no data dropped for want of receive room.
    assert d.get("TcpExtTCPRcvQDrop", 0) == 0 and d.get("TcpExtTCPZeroWindowDrop", 0) == 0, d
    # Full segments: the data took no more segments than whole MSS pieces of it, plus
    # the control connection's and the handshakes' few (runts would nearly double it).
    assert d["TcpInSegs"] <= received // MSS * 1.05 + 200, (d["TcpInSegs"], received)
    # Nothing was resent or arrived twice.
    assert d.get("TcpExtTCPDSACKOldSent", 0) == 0 and d.get("TcpExtTCPOFOQueue", 0) == 0, d
