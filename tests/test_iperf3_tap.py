"""examples/iperf3 on miragekit's stack over a TAP device, measured by the kernel's iperf3.

The namespace holds a TAP device whose kernel side is 10.79.0.1/24; the runner attaches
to it with ``--net tap:NAME`` and gives our stack 10.79.0.2. ``iperf3 -c`` runs in the
namespace, so every byte crosses the kernel's TCP and ours.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.apprun import AppNs, Running, app_namespace, running
from tests.test_example_iperf3 import check_report, iperf3_json

pytestmark = pytest.mark.kernel

KERNEL_IP = "10.79.0.1"
APP_IP = "10.79.0.2"


Ns = AppNs


@pytest.fixture
def ns() -> Iterator[Ns]:
    with app_namespace("ip3", KERNEL_IP) as n:
        yield n


@pytest.fixture(params=[False, True], ids=["frames", "offload"])
def server(ns: Ns, request: pytest.FixtureRequest) -> Iterator[Running]:
    args = ["--net", f"tap:{ns.tap}", "--ip", f"{APP_IP}/24"]
    if request.param:  # 64 KiB TSO/GSO segments both ways, checksums left to the kernel
        args.append("--offload")
    ready = f"iperf3: server on {APP_IP} port 5201"
    with running("examples/iperf3", *args, netns=ns.name, ready=ready) as r:
        yield r


def test_kernel_iperf3_forward_and_reverse_over_tap(ns: Ns, server: Running) -> None:
    fwd = iperf3_json("-c", APP_IP, "-t", "2", netns=ns.name)
    sent, received = check_report(fwd, 1)
    assert received <= sent
    assert fwd["start"]["connected"][0]["remote_host"] == APP_IP
    rev = iperf3_json("-c", APP_IP, "-t", "2", "-R", netns=ns.name)
    sent, received = check_report(rev, 1)
    assert rev["start"]["test_start"]["reverse"] == 1
    # Our stack sent every byte the kernel's client counted (and no more than we queued).
    assert 0 < rev["end"]["sum_received"]["bytes"] <= sent
    server.wait_for(rf"test from {KERNEL_IP} done: 1 stream\(s\), received 0 B, sent [1-9]")


def test_kernel_iperf3_two_streams_and_bytes_over_tap(ns: Ns, server: Running) -> None:
    check_report(iperf3_json("-c", APP_IP, "-t", "1", "-P", "2", netns=ns.name), 2)
    n = 4 * 1024 * 1024
    rev = iperf3_json("-c", APP_IP, "-n", str(n), "-R", netns=ns.name)
    sent, received = check_report(rev, 1)
    assert sent >= n and received >= n
    # Several streams out of us, many blocks per write: still exactly the blocks asked for.
    rev = iperf3_json("-c", APP_IP, "-n", "3000000", "-l", "100K", "-P", "3", "-R", netns=ns.name)
    sent, received = check_report(rev, 3)
    assert sent == 30 * 102400 and 3000000 <= received <= sent
