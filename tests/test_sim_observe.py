"""Watching a ``sim.Network``: per-host pcaps that tshark reads, the event log, per-host
counters, per-host clock skew, code that escapes the simulation, and the determinism
check that names the first difference between two runs of one seed."""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, cast

import pytest
from tests.test_sim_cluster import upper_server

from miragekit import sim
from miragekit.link import LinkParams

tshark = shutil.which("tshark")


async def survivor() -> list[str]:
    """Talk to db, wait while it restarts (our connection is then reset), talk again."""
    out = []
    reader, writer = await asyncio.open_connection("db", 5432)
    for i in range(30):
        writer.write(f"line {i}\n".encode() * 20)
        await writer.drain()
        for _ in range(20):
            await reader.readline()
    await asyncio.sleep(10)
    writer.write(b"two\n")
    try:
        out.append((await reader.readline()).decode() or "EOF")
    except ConnectionResetError:
        out.append("reset")
    reader, writer = await asyncio.open_connection("db", 5432)
    writer.write(b"three\n")
    out.append((await reader.readline()).decode().split()[0])
    writer.close()
    return out


def restarting(tmp: Path, seed: int = 4) -> sim.Network:
    net = sim.Network(seed=seed, link=LinkParams(latency=0.002, loss=0.05))
    net.host("db", main=upper_server, pcap=tmp / "db.pcap")
    net.host("c", main=survivor)
    net.capture(tmp / "c.pcap", host="c")
    net.capture(tmp / "segment.pcap")
    net.restart("db", at=5)
    return net


def tshark_fields(pcap: Path, *fields: str, filter: str = "") -> list[list[str]]:
    assert tshark is not None, "tshark is required (apt-get install tshark)"
    cmd = [tshark, "-r", str(pcap), "-T", "fields"]
    for f in fields:
        cmd += ["-e", f]
    if filter:
        cmd += ["-Y", filter]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    return [line.split("\t") for line in proc.stdout.splitlines()]


def test_per_host_pcaps_beside_the_segment_capture_agree_with_the_counters(
    tmp_path: Path,
) -> None:
    report = restarting(tmp_path).run(until=60)
    assert report["c"].value == ["reset", "THREE"]
    for name in ("db", "c"):
        c = report[name].counters
        frames = tshark_fields(tmp_path / f"{name}.pcap", "frame.len")
        # Every frame the host's stacks sent or received, across the restart, in one file.
        assert len(frames) == c.frames_out + c.frames_in > 40
        assert sum(int(f[0]) for f in frames) == c.bytes_out + c.bytes_in
        resets = tshark_fields(tmp_path / f"{name}.pcap", "ip.src", filter="tcp.flags.reset==1")
        me = str(report[name].ip)
        assert sum(r[0] == me for r in resets) == c.tcp_resets_out
        assert sum(r[0] != me for r in resets) == c.tcp_resets_in
        # tshark sees retransmissions where we count them (loss 5%).
        retrans = tshark_fields(
            tmp_path / f"{name}.pcap", "ip.src", filter="tcp.analysis.retransmission"
        )
        assert (c.tcp_retransmits > 0) == any(r[0] == me for r in retrans)
    assert report["db"].counters.tcp_resets_out == 1 == report["c"].counters.tcp_resets_in
    assert report["db"].counters.stack["tcp"]["rst_sent"] == 1
    assert report["c"].counters.tcp_retransmits + report["db"].counters.tcp_retransmits > 0
    assert report["c"].counters.dropped > 0 and report["c"].counters.drops["loss"] > 0
    # The host files hold each host's view; the segment capture holds both hosts' frames.
    # (what reached the switch: frames lost on a sender's own link are not in it)
    seg = tshark_fields(tmp_path / "segment.pcap", "eth.src")
    sent = report["c"].counters.frames_out + report["db"].counters.frames_out
    received = report["c"].counters.frames_in + report["db"].counters.frames_in
    assert received <= len(seg) < sent
    assert len({s[0] for s in seg}) == 2


def test_the_event_log_has_connections_faults_and_hosts_as_text_lines(tmp_path: Path) -> None:
    net = restarting(tmp_path)
    report = net.run(until=60)
    assert net.events == report.events
    text = report.format_events()
    lines = text.splitlines()
    assert len(lines) == len(report.events) and text.endswith("\n")
    assert all(re.fullmatch(r" *\d+\.\d{6} \S.*", line) for line in lines)
    assert str(report.events[0]) == "    0.000000 start db"
    texts = [e.text for e in report.events]
    first = texts.index("c: connect c:57026 db:5432")
    assert texts[first + 1] == "db: accept db:5432 c:57026"
    assert texts.index("restart db") < texts.index("db gone") < texts.index("start db again")
    assert "db: reset sent (no connection) db:5432 c:57026" in texts
    assert "c: reset by peer c:57026 db:5432" in texts
    # The second connection is closed by both sides (c closes, then db's handler).
    assert "c: closed c:57027 db:5432" in texts and "db: closed db:5432 c:57027" in texts
    assert [e.time for e in report.events] == sorted(e.time for e in report.events)
    assert (5.0, "restart db") in report.events


def test_counters_count_drops_by_reason_across_a_partition() -> None:
    async def pinger() -> int:
        loop = asyncio.get_running_loop()
        got = 0

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                nonlocal got
                got += 1

        transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=("0.0.0.0", 9))
        for _ in range(40):
            transport.sendto(b"x" * 100, ("10.0.0.1", 7))
            await asyncio.sleep(0.1)
        return got

    async def echo() -> None:
        loop = asyncio.get_running_loop()

        class Proto(asyncio.DatagramProtocol):
            def connection_made(self, transport: Any) -> None:
                self.t = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                self.t.sendto(data, addr)

        await loop.create_datagram_endpoint(Proto, local_addr=("0.0.0.0", 7))
        await asyncio.sleep(10)

    net = sim.Network(seed=1)
    net.host("e", main=echo)
    net.host("p", main=pinger)
    net.partition(["p"], ["e"], at=1.05)
    net.heal(at=2.05)
    report = net.run()
    got = report["p"].value
    c = report["p"].counters
    assert got == 30  # 10 of 40 sent during the partition
    assert c.frames_out >= 40 and c.bytes_out >= 40 * 142
    assert report["e"].counters.drops == {"partition": 10}  # counted where they are lost
    assert report["e"].counters.dropped == 10 and c.dropped == 0
    assert c.stack["udp"]["tx_datagrams"] == 40


# -- clocks ------------------------------------------------------------------------------


def test_a_hosts_clock_is_skewed_and_drifts_while_loop_time_is_shared() -> None:
    async def look() -> tuple[float, float, float]:
        clock = sim.clock()
        await asyncio.sleep(1000)

        async def child() -> float:
            return sim.clock().time()  # a task the host started sees the host's clock

        return clock.time(), asyncio.get_running_loop().time(), await asyncio.create_task(child())

    net = sim.Network()
    net.host("fast", main=look, clock_skew=3600.0, drift=100.0)
    net.host("slow", main=look, clock_skew=-2.5)
    net.host("true", main=look)
    seen: list[float] = []
    net.at(500, lambda: seen.append(net.clock("fast").time() - net.clock("true").time()))
    report = net.run()
    base = sim.CLOCK_START + 1000
    fast = cast(tuple[float, float, float], report["fast"].value)
    assert fast[0] == pytest.approx(base + 3600 + 1000 * 100e-6) and fast[1] == 1000.0
    assert fast[2] == fast[0]
    assert cast(tuple[float, ...], report["slow"].value)[0] == pytest.approx(base - 2.5)
    assert report["true"].value == (base, 1000.0, base)
    assert seen == [pytest.approx(3600 + 500 * 100e-6)]


def test_bad_clock_parameters_name_the_host() -> None:
    net = sim.Network()
    with pytest.raises(ValueError, match=r"host 'a': clock_skew must be a number of seconds"):
        net.host("a", clock_skew=cast(Any, "1h"))
    with pytest.raises(ValueError, match=r"host 'a': drift must be within"):
        net.host("a", drift=2e6)
    net.host("a")
    with pytest.raises(RuntimeError, match="clock 'a': the network is not running"):
        net.clock("a")


# -- escapes ---------------------------------------------------------------------------


def test_a_clean_run_has_no_escapes(tmp_path: Path) -> None:
    report = restarting(tmp_path).run(until=60, strict=True)
    assert report.escapes == []


def test_a_host_thread_is_reported_with_the_host_and_the_line() -> None:
    async def threaded() -> int:
        t = threading.Thread(target=lambda: None, name="worker")
        t.start()
        t.join()
        return await asyncio.to_thread(lambda: 7)

    net = sim.Network()
    net.host("t", main=threaded)
    report = net.run()
    assert report["t"].value == 7
    kinds = [(e.kind, e.host, e.what) for e in report.escapes]
    assert ("thread", "t", "thread 'worker' started") in kinds
    assert any(k == "thread" and h == "t" and w != "thread 'worker' started" for k, h, w in kinds)
    where = report.escapes[0].where
    assert where.startswith(__file__) and where.endswith("in threaded")


def test_a_real_socket_is_reported() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    async def sneaky() -> str:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            return str(s.getpeername()[0])

    async def unix() -> str:
        try:
            await asyncio.open_unix_connection("/nonexistent/miragekit-sim.sock")
        except OSError as e:
            return type(e).__name__
        return "connected"

    try:
        net = sim.Network()
        net.host("s", main=sneaky)
        net.host("u", main=unix)
        report = net.run()
    finally:
        listener.close()
    assert report["s"].value == "127.0.0.1" and report["u"].value == "FileNotFoundError"
    texts = [str(e) for e in report.escapes]
    assert any(
        t.startswith(f"s: socket connect to ('127.0.0.1', {port}) at {__file__}:") for t in texts
    ), texts
    assert any(
        t.startswith("u: socket connect to /nonexistent/miragekit-sim.sock at") for t in texts
    ), texts
    assert {e.kind for e in report.escapes} == {"socket"}


def test_the_hosts_clock_used_for_a_timeout_is_reported_and_strict_raises() -> None:
    async def polls() -> int:
        deadline = time.monotonic() + 0.5
        n = 0
        while time.monotonic() < deadline and n < 3:
            n += 1
            await asyncio.sleep(1)
        return n

    def build() -> sim.Network:
        net = sim.Network()
        net.host("p", main=polls)
        return net

    report = build().run()
    assert report["p"].value == 3  # virtual seconds pass, real ones hardly
    first, loop = report.escapes  # one per line that reads the clock
    assert (first.kind, first.host, first.what, first.count) == (
        "time",
        "p",
        "time.monotonic() read",
        1,
    )
    assert first.where.startswith(__file__) and first.where.endswith("in polls")
    assert loop.count == 4 and loop.where != first.where and "4 times" in str(loop)
    with pytest.raises(sim.SimEscape, match=r"escaped the simulation:\n  p: time.monotonic\(\)"):
        build().run(strict=True)
    assert time.monotonic() > 0  # the real function is back


# -- determinism ---------------------------------------------------------------------------


def chatter(tmp: Path, *, shuffle: bool) -> Any:
    """A scenario; with ``shuffle`` its client waits a time from the global RNG."""

    async def client() -> str:
        if shuffle:
            await asyncio.sleep(random.random())
        reader, writer = await asyncio.open_connection("db", 5432)
        writer.write(b"hi\n")
        return (await reader.readline()).decode()

    def build(seed: int) -> sim.Network:
        net = sim.Network(seed=seed, link=LinkParams(latency=0.001, loss=0.02))
        net.host("db", main=upper_server, pcap=tmp / "mine.pcap")
        net.host("c", main=client)
        return net

    return build


def test_a_deterministic_scenario_passes_the_check(tmp_path: Path) -> None:
    result = sim.check_determinism(chatter(tmp_path, shuffle=False), seed=3, until=20)
    assert result.ok and bool(result) and str(result) == "deterministic"
    assert result.reports[0] == result.reports[1]
    assert not (tmp_path / "mine.pcap").exists()  # the check writes its own captures


def test_the_check_names_the_first_differing_event_and_the_cause(tmp_path: Path) -> None:
    random.seed()
    result = sim.check_determinism(chatter(tmp_path, shuffle=True), seed=3, until=20)
    assert not result.ok
    assert re.match(
        r"seed 3 is not deterministic: event 3 differs: first run '\d\.\d{6} c: connect "
        r"c:\d+ db:5432', second run '\d\.\d{6} c: connect c:\d+ db:5432'; code escaped the "
        r"simulation: c: random\.random\(\) \(the shared generator, not the seed's\) at "
        + re.escape(__file__)
        + r":\d+ in client \(t=0\.000000\)",
        result.difference,
    ), result.difference
    assert [e.kind for e in result.escapes] == ["random"]


def test_the_check_names_the_first_differing_frame(tmp_path: Path) -> None:
    """A difference only on the wire (same events): the pcap comparison finds it."""

    def build(seed: int) -> sim.Network:
        async def say() -> None:
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=("10.0.0.1", 9)
            )
            await asyncio.sleep(0.5)
            transport.sendto(b"ok")
            transport.sendto(str(time.time_ns()).encode())  # host time on the wire
            await asyncio.sleep(0.5)

        net = sim.Network(seed=seed)
        net.host("sink")
        net.host("say", main=say)
        return net

    result = sim.check_determinism(build, keep=tmp_path)
    assert not result.ok
    assert re.fullmatch(
        r"seed 0 is not deterministic: capture of the segment: frame \d+ \(bytes differ\): "
        r"t=0\.500000 vs t=0\.500000 \(\S+run1/segment\.pcap vs \S+run2/segment\.pcap\); "
        r"code escaped the simulation: say: time.time_ns\(\) read at .*",
        result.difference,
    ), result.difference
    assert (tmp_path / "run1" / "segment.pcap").exists()


# -- bad input ---------------------------------------------------------------------------


def test_bad_input_is_refused_naming_the_culprit_before_anything_runs(tmp_path: Path) -> None:
    net = sim.Network()
    net.host("a", pcap=tmp_path / "a.pcap")
    with pytest.raises(
        ValueError, match=r"host 'b': .*a\.pcap' is already the capture of host 'a'"
    ):
        net.host("b", pcap=tmp_path / "a.pcap")
    with pytest.raises(ValueError, match=r"host 'b': cannot write '/nonexistent/b.pcap': there is"):
        net.host("b", pcap="/nonexistent/b.pcap")
    with pytest.raises(ValueError, match=r"no host named 'zz' \(hosts: a\)"):
        net.capture(tmp_path / "z.pcap", host="zz")
    with pytest.raises(ValueError, match=r"capture: .*a\.pcap' is already the capture of host 'a'"):
        net.capture(tmp_path / "a.pcap")
    with pytest.raises(ValueError, match=r"no host named 'zz'"):
        net.block("a", "zz", at=1)
    with pytest.raises(ValueError, match=r"no host named 'zz'"):
        net.restart("zz", at=1)
    net.capture(tmp_path / "seg.pcap")
    net.capture(tmp_path / "seg.pcap")  # the same again: fine
    with pytest.raises(ValueError, match=r"host 'b': .*seg\.pcap' is already the capture of the"):
        net.host("b", pcap=tmp_path / "seg.pcap")
    with pytest.raises(ValueError, match=r"capture of host 'a': .*seg\.pcap' is already the"):
        net.capture(tmp_path / "seg.pcap", host="a")
    with pytest.raises(ValueError, match=r"capture: cannot write '/nonexistent/s.pcap'"):
        net.capture("/nonexistent/s.pcap")
    assert net._capture == str(tmp_path / "seg.pcap")  # refused: nothing changed
    assert net._hosts["a"].pcap == str(tmp_path / "a.pcap")
    with pytest.raises(TypeError, match=r"Network: seed must be an int, got '7'"):
        sim.Network(seed=cast(Any, "7"))
    assert "b" not in [h for h in net._hosts]  # nothing was added by the refused calls
    assert not (tmp_path / "a.pcap").exists()  # nothing ran


def test_a_host_added_while_running_is_refused_by_name() -> None:
    net = sim.Network()

    async def grow() -> None:
        net.host("late")

    net.host("a", main=grow)
    report = net.run()
    err = report.errors()["a"]
    assert isinstance(err, RuntimeError)
    assert str(err) == (
        "host 'late': cannot be added while the network runs; hosts are added before run()"
    )
    assert [h.name for h in report.hosts.values()] == ["a"]
