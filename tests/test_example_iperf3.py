"""examples/iperf3 measured by the kernel's unmodified ``iperf3 -c``, and its own client.

On ``--net socket`` (loopback, fast) the server runs on the host's TCP; the protocol is
the same on miragekit's stack (tests/test_iperf3_tap.py runs it over a TAP device). The
in-process tests run the example's client against its server between two of our stacks
on the virtual switch, and against the kernel's ``iperf3 -s``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address
from types import ModuleType
from typing import Any

import pytest
from tests.apprun import ROOT, Running, loopback_ip, running

from miragekit.link import VnetSwitch
from miragekit.result import Ok
from miragekit.stack import DirectStackV4, SocketStackV4, Static
from miragekit.v1 import StackConfig

pytestmark = pytest.mark.tools  # the kernel's iperf3 (.ci/run installs it)


@pytest.fixture(autouse=True)
def _iperf3_installed() -> None:
    if shutil.which("iperf3") is None:
        pytest.fail("iperf3 is not installed (.ci/run installs it: apt-get install iperf3)")


A = IPv4Address


def load_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("iperf3_app", ROOT / "examples/iperf3/app.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["iperf3_app"] = mod
    spec.loader.exec_module(mod)
    return mod


app = load_app()


def iperf3_json(*args: str, netns: str | None = None, timeout: float = 60) -> dict[str, Any]:
    """Run the kernel's ``iperf3 -J``; its parsed report (failing on an exit code != 0)."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    p = subprocess.run(
        [*prefix, "iperf3", "-J", *args], capture_output=True, timeout=timeout, check=False
    )
    report: dict[str, Any] = json.loads(p.stdout)
    assert p.returncode == 0 and "error" not in report, (p.returncode, report.get("error"))
    return report


def check_report(report: dict[str, Any], streams: int) -> tuple[int, int]:
    """The bytes the client counted and the bytes the server reported, both > 0."""
    end = report["end"]
    assert len(end["streams"]) == streams
    sent, received = end["sum_sent"]["bytes"], end["sum_received"]["bytes"]
    assert sent > 0 and received > 0
    return sent, received


@pytest.fixture
def socket_server() -> Iterator[tuple[Running, str]]:
    ip = loopback_ip()
    args = ["--net", "socket", "--ip", ip]
    with running("examples/iperf3", *args, ready=f"iperf3: server on {ip} port 5201") as r:
        yield r, ip


def test_forward_reverse_and_parallel_on_host_sockets(socket_server: tuple[Running, str]) -> None:
    r, ip = socket_server
    fwd = iperf3_json("-c", ip, "-t", "1")
    sent, received = check_report(fwd, 1)
    assert received <= sent  # the server's count: what arrived before TEST_END
    assert fwd["start"]["test_start"]["reverse"] == 0
    rev = iperf3_json("-c", ip, "-t", "1", "-R")
    sent, received = check_report(rev, 1)
    assert rev["start"]["test_start"]["reverse"] == 1
    par = iperf3_json("-c", ip, "-t", "1", "-P", "2")
    check_report(par, 2)
    par_rev = iperf3_json("-c", ip, "-t", "1", "-P", "3", "-R")
    check_report(par_rev, 3)
    r.wait_for(r"test from 127\.0\.0\.1 done: 3 stream\(s\), received 0 B, sent [1-9]")
    assert r.count(r"iperf3: test from .* done: ") == 4


def test_bytes_blocks_and_bidir_on_host_sockets(socket_server: tuple[Running, str]) -> None:
    _, ip = socket_server
    n = 5 * 1024 * 1024
    rev = iperf3_json("-c", ip, "-n", str(n), "-R")
    sent, received = check_report(rev, 1)
    assert sent >= n and received >= n  # we stop after n bytes (whole blocks)
    fwd = iperf3_json("-c", ip, "-k", "20", "-l", "64K")
    sent, received = check_report(fwd, 1)
    # The server counts what arrived before TEST_END (then closes, as iperf3's does).
    assert sent == 20 * 65536 and 0 < received <= sent
    bidir = iperf3_json("-c", ip, "-t", "1", "--bidir")
    check_report(bidir, 2)
    assert bidir["end"]["sum_sent_bidir_reverse"]["bytes"] > 0


def test_reverse_sends_exactly_the_blocks_asked_for(socket_server: tuple[Running, str]) -> None:
    """Our sender writes many blocks per call, yet stops where iperf3's own would: after the
    block that reaches ``-n`` bytes (counted over all streams), or after ``-k`` blocks."""
    _, ip = socket_server
    cases = (
        (("-n", "3000000", "-l", "100K", "-P", "3"), 3, 30 * 102400),
        (("-n", "5242880", "-l", "100000"), 1, 53 * 100000),
        (("-n", "5000000", "-P", "2"), 2, 39 * 131072),
    )
    for args, streams, want in cases:
        # The client ends once n bytes are in; the server has then taken every block.
        sent, received = check_report(iperf3_json("-c", ip, "-R", *args), streams)
        assert sent == want and want - 131072 < received <= sent, (args, sent, received)
    # iperf3's client counts its reads as blocks, so in reverse it may end the test before
    # k whole blocks arrived: the server never sends more than k, and reports what it sent.
    sent, received = check_report(iperf3_json("-c", ip, "-R", "-k", "30", "-l", "100K"), 1)
    assert 0 < received <= sent <= 30 * 102400


def test_udp_is_refused_with_a_server_error(socket_server: tuple[Running, str]) -> None:
    r, ip = socket_server
    p = subprocess.run(["iperf3", "-J", "-c", ip, "-u", "-t", "1"], capture_output=True,
                       timeout=30, check=False)  # fmt: skip
    assert json.loads(p.stdout)["error"] == "an option you are trying to set is not implemented yet"
    r.wait_for(r"refused a test from 127\.0\.0\.1 \(error 13\)")
    # ... and the server goes on serving.
    check_report(iperf3_json("-c", ip, "-t", "1"), 1)


def test_our_client_against_the_kernels_iperf3_server() -> None:
    ip = loopback_ip()
    port = 15201
    srv = subprocess.Popen(["iperf3", "-s", "-1", "-B", ip, "-p", str(port), "-J"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:

        async def main() -> Any:
            r = await SocketStackV4.connect()
            assert isinstance(r, Ok)
            tcp = r.value.tcpv4()
            for _ in range(50):  # until the server listens
                try:
                    params = app.Params(reverse=True, parallel=2, duration=1.0)
                    return await app.run_client(tcp, A(ip), params, port=port)
                except app.ProtocolError:
                    await asyncio.sleep(0.1)
            raise AssertionError("the kernel's iperf3 server never answered")

        result = asyncio.run(main())
        assert result.received > 0 and result.server_bytes() > 0
        out, _ = srv.communicate(timeout=30)
        report = json.loads(out)
        assert report["end"]["sum_sent"]["bytes"] == result.server_bytes()
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()


async def two_stacks() -> tuple[DirectStackV4, DirectStackV4]:
    sw = VnetSwitch()
    stacks = []
    for i, name in enumerate(("client", "server")):
        vif = sw.add_interface(name, mtu=9000)
        r = await DirectStackV4.connect(StackConfig(name, None, vif, Static(f"10.0.0.{i + 1}/24")))
        assert isinstance(r, Ok)
        stacks.append(r.value)
    return stacks[0], stacks[1]


def test_our_client_and_server_between_two_of_our_stacks() -> None:
    async def main() -> None:
        async with asyncio.timeout(60):
            client, server_stack = await two_stacks()
            server = app.Server()
            server_stack.listen_tcpv4(port=app.PORT, callback=server.handle)
            tcp = client.tcpv4()
            for params in (
                app.Params(duration=0.5),
                app.Params(reverse=True, parallel=2, duration=0.5),
                app.Params(nbytes=3_000_000, length=100_000),
                app.Params(reverse=True, nbytes=3_000_000),
            ):
                res = await app.run_client(tcp, A("10.0.0.2"), params)
                got = res.sent + res.received
                assert got > 0 and res.server_bytes() > 0, (params, res)
                if params.nbytes:
                    assert got >= params.nbytes
                    if not params.reverse:
                        assert res.server_bytes() == got
                assert len(res.server["streams"]) == params.parallel
            for _ in range(100):
                if len(server.summaries) == 4:
                    break
                await asyncio.sleep(0.01)
            assert [s.completed for s in server.summaries] == [True] * 4
            with pytest.raises(app.ProtocolError, match=r"server error \(6, 0\)"):
                await app.run_client(tcp, A("10.0.0.2"), app.Params(parallel=0))

    asyncio.run(main())


def test_params_refusals_and_stream_ids() -> None:
    assert app.Params.from_json({"udp": True}) == app.IEUNIMP
    assert app.Params.from_json({"tcp": True, "parallel": 129}) == app.IENUMSTREAMS
    assert app.Params.from_json({"tcp": True, "len": 0}) == app.IEBLOCKSIZE
    p = app.Params.from_json({"tcp": True, "reverse": True, "parallel": 2, "num": 7})
    assert p == app.Params(reverse=True, parallel=2, nbytes=7)
    assert [app.stream_id(i) for i in range(4)] == [1, 3, 4, 5]
    assert app.encode_json({"a": 1}) == b'\x00\x00\x00\x07{"a":1}'
    assert len(app.new_cookie()) == app.COOKIE_SIZE
