"""The simulated switch vouches for the checksums of the frames its stacks send, and the
receivers then skip them: until a port nobody vouches for sends, or a link corrupts.

A run where the switch vouches must look exactly like one where every receiver verifies
(the skipped frames were all valid), and corrupted or hand-made frames must still be
caught and counted.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import sys
from collections.abc import Callable
from typing import Any, cast

import pytest

from miragekit import sim
from miragekit.link import CSUM_VALID, ImpairedLink, LinkParams, VnetSwitch
from miragekit.net import _icmp, _ipv4, _tcp
from miragekit.sim._hostport import HostPort
from miragekit.sim._observe import HostObserver
from miragekit.wire import checksum, ipv4_sums_to_zero
from miragekit.wire.tcp import TCPRepr

HOSTS = ("a", "b", "c")
SECONDS = 12.0


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


def host_main(i: int) -> Callable[[], Any]:
    """Echo server on 7000; one connection to the next host, 100 bytes every 0.1 s."""

    async def main() -> int:
        server = await asyncio.start_server(echo, None, 7000)
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.01 * i)
        reader, writer = await asyncio.open_connection(HOSTS[(i + 1) % len(HOSTS)], 7000)
        echoes = 0
        while loop.time() < SECONDS:
            writer.write(bytes([i]) * 100)
            assert await reader.readexactly(100) == bytes([i]) * 100
            echoes += 1
            await asyncio.sleep(0.1)
        writer.close()
        server.close()
        return echoes

    return main


class Run:
    """One seeded run of three echoing hosts: its digest, and what the test looked at."""

    def __init__(
        self, seed: int, link: LinkParams, setup: Callable[[sim.Network, Run], None] | None = None
    ) -> None:
        net = sim.Network(seed=seed, link=link)
        for i, name in enumerate(HOSTS):
            net.host(name, main=host_main(i))
        self.net = net
        self.vouched: dict[float, int] = {}  # time: rx_vouched summed over the hosts
        self.trusted: dict[float, bool] = {}
        self.corrupted = 0  # frames the links corrupted, by the last look
        for t in (1.0, 4.0, 6.0, 8.0, SECONDS - 0.5):
            net.at(t, functools.partial(self.look, t))
        if setup is not None:
            setup(net, self)
        report = net.run(until=SECONDS + 5)
        assert report.ok, report.format_events()
        self.report = report
        sha = hashlib.sha256(report.format_events().encode())
        for name, o in report.hosts.items():
            sha.update(repr((name, o.state, o.value, repr(o.error), o.counters)).encode())
        self.digest = sha.hexdigest()
        self.echoes = sum(cast(int, o.value) for o in report.hosts.values())

    def look(self, t: float) -> None:
        self.vouched[t] = sum(self.net.stack(n).ipv4().rx_vouched for n in HOSTS)
        self.trusted[t] = self.net.switch.trusted
        self.corrupted = sum(p.counters.corrupted for p in self.net.switch.interfaces())

    def stack_counter(self, layer: str, name: str) -> int:
        return sum(o.counters.stack.get(layer, {}).get(name, 0) for o in self.report.hosts.values())


def run_without_vouching(seed: int, link: LinkParams, setup: Any = None) -> Run:
    """The same run on a switch that never vouches: every receiver verifies every frame
    (the behaviour before the switch vouched)."""

    def distrust(net: sim.Network, run: Run) -> None:
        net.at(0.0, lambda: net.switch.distrust())
        if setup is not None:
            setup(net, run)

    return Run(seed, link, distrust)


def test_stacks_on_plain_lossy_links_skip_every_receive_checksum() -> None:
    link = LinkParams(loss=0.02, latency=0.001)
    run = Run(1, link)
    assert run.echoes > 250
    assert all(run.trusted.values())
    last = run.vouched[SECONDS - 0.5]
    assert run.vouched[1.0] > 0 and last > run.vouched[8.0] > run.vouched[1.0]
    assert last > 2 * run.echoes  # each echo: the data there and back, and acknowledgements
    assert run.report.hosts["a"].counters.drops["loss"] > 0
    # The same run, every frame verified: the same events, outcomes and counters.
    before = run_without_vouching(1, link)
    assert before.digest == run.digest
    assert not any(before.vouched.values()) and not any(before.trusted.values())


def test_no_checksum_is_computed_on_receive(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spies on module globals: the pure build only (PURE_ONLY in test_compiled)."""
    calls = {"sums": 0, "ip": 0, "icmp": 0, "parse": 0}
    receivers = {"_frame_input", "_parse_packet", "input"}  # not the checksums sent

    def spy(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            if sys._getframe(1).f_code.co_name in receivers:
                calls[name] += 1
            return fn(*args, **kwargs)

        return counted

    monkeypatch.setattr(_tcp, "ipv4_sums_to_zero", spy("sums", ipv4_sums_to_zero))
    monkeypatch.setattr(_ipv4, "checksum", spy("ip", checksum))
    monkeypatch.setattr(_icmp, "checksum", spy("icmp", checksum))
    parse = TCPRepr.parse

    def parse_spy(data: Any, src: bytes | None = None, dst: bytes | None = None) -> TCPRepr:
        if src is not None:
            calls["parse"] += 1
        return parse(data, src, dst)

    monkeypatch.setattr(TCPRepr, "parse", parse_spy)
    link = LinkParams(loss=0.02)
    run = Run(2, link)
    assert run.vouched[SECONDS - 0.5] > 2 * run.echoes
    assert calls == {"sums": 0, "ip": 0, "icmp": 0, "parse": 0}
    # The spies see the checksums of a run where nobody vouches.
    before = run_without_vouching(2, link)
    assert before.digest == run.digest
    assert calls["sums"] > 2 * before.echoes


def corruption_stats(run: Run) -> tuple[int, int, int]:
    return (
        run.corrupted,
        run.stack_counter("ipv4", "rx_bad_checksum"),
        run.stack_counter("tcp", "bad_checksum"),
    )


def test_a_corrupting_link_from_the_start_verifies_every_frame() -> None:
    link = LinkParams(loss=0.01, corrupt=0.02)
    run = Run(3, link)
    corrupted, bad_ip, bad_tcp = corruption_stats(run)
    assert corrupted > 10 and bad_ip + bad_tcp > 0
    assert not any(run.vouched.values()) and not any(run.trusted.values())
    before = run_without_vouching(3, link)
    assert before.digest == run.digest


def test_corruption_switched_on_mid_run_ends_the_vouching() -> None:
    def fault(net: sim.Network, run: Run) -> None:
        net.at(5.0, lambda: net.link("b", corrupt=0.05))

    link = LinkParams(loss=0.01)
    run = Run(4, link, fault)
    assert run.trusted[4.0] and not run.trusted[6.0]
    assert run.vouched[4.0] > 0
    # Frames sent before the fault may still arrive vouched for; none after that.
    assert run.vouched[6.0] == run.vouched[SECONDS - 0.5]
    corrupted, bad_ip, bad_tcp = corruption_stats(run)
    assert corrupted > 5 and bad_ip + bad_tcp > 0
    before = run_without_vouching(4, link, fault)
    assert before.digest == run.digest
    assert corruption_stats(before) == (corrupted, bad_ip, bad_tcp)


def test_a_corrupting_link_changed_directly_is_seen_too() -> None:
    """Not through ``net.link``: the port's own ``LinkParams`` changed in place."""

    def fault(net: sim.Network, run: Run) -> None:
        def on() -> None:
            net.switch.interface("c").link.corrupt = 0.05

        net.at(5.0, on)

    run = Run(5, LinkParams(latency=0.002), fault)
    assert run.trusted[4.0] and not run.trusted[6.0]
    assert run.vouched[6.0] == run.vouched[SECONDS - 0.5]
    corrupted, bad_ip, bad_tcp = corruption_stats(run)
    assert corrupted > 5 and bad_ip + bad_tcp > 0


def bad_tcp_frame(
    src_mac: bytes, dst_mac: bytes, src_ip: bytes, dst_ip: bytes, *, ts: bool
) -> bytes:
    """A SYN to port 7000 with a right IPv4 header checksum and a wrong TCP checksum;
    with ``ts``, timestamps its only option (the shape TCP's whole-frame shortcut takes)."""
    opts = b"\x01\x01\x08\x0a" + bytes(8) if ts else b""
    tl = 40 + len(opts)
    ip = bytearray(
        bytes([0x45, 0, 0, tl, 0, 1, 0x40, 0, 64, 6, 0, 0]) + src_ip + dst_ip
    )  # fmt: skip
    s = sum(int.from_bytes(ip[i : i + 2], "big") for i in range(0, 20, 2))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    ip[10:12] = (~s & 0xFFFF).to_bytes(2, "big")
    tcp = (4000).to_bytes(2, "big") + (7000).to_bytes(2, "big") + bytes(8)
    off = (20 + len(opts)) << 2
    tcp += bytes([off, 0x02, 0xFF, 0xFF]) + b"\x12\x34" + bytes(2) + opts  # checksum 0x1234
    return dst_mac + src_mac + b"\x08\x00" + bytes(ip) + tcp


def test_a_raw_port_sending_a_bad_frame_ends_the_vouching() -> None:
    sent: list[int] = []

    def raw(net: sim.Network, run: Run) -> None:
        def inject() -> None:
            sw = net.switch
            port = sw.add_interface("raw")
            port.set_receiver(lambda frame: None)
            dst = sw.interface("a")
            ip_a = net.address("a").packed
            for ts in (False, True, True):
                frame = bad_tcp_frame(
                    port.mac().packed, dst.mac().packed, b"\x0a\0\0\x63", ip_a, ts=ts
                )
                port.send(frame)
            sent.append(3)

        net.at(5.0, inject)

    run = Run(6, LinkParams(), raw)
    assert sent == [3]
    assert run.trusted[4.0] and not run.trusted[6.0]
    assert run.vouched[4.0] > 0 and run.vouched[6.0] == run.vouched[SECONDS - 0.5]
    assert run.report.hosts["a"].counters.stack["tcp"]["bad_checksum"] == 3


def test_the_switch_flags_frames_only_for_receivers_that_ask() -> None:
    async def main() -> list[tuple[str, int]]:
        sw = VnetSwitch(seed=1)
        a, b, c = (sw.add_interface(n) for n in "abc")
        a.vouch()
        got: list[tuple[str, int]] = []
        b.set_receiver_flags(lambda f, flags: got.append(("b", flags)))
        c.set_receiver(lambda f: got.append(("c", -1)))
        a.send(b"\xff" * 6 + bytes(a.mac().packed) + b"\x08\x00" + bytes(46))
        await asyncio.sleep(0.01)
        c.send(b"\xff" * 6 + bytes(c.mac().packed) + b"\x08\x00" + bytes(46))  # no vouching
        assert not sw.trusted
        await asyncio.sleep(0.01)
        b.set_receiver(lambda f: got.append(("b", -1)))
        a.send(b"\xff" * 6 + bytes(a.mac().packed) + b"\x08\x00" + bytes(46))
        await asyncio.sleep(0.01)
        return got

    got = sim.run(main(), seed=1)
    assert got == [("b", CSUM_VALID), ("c", -1), ("b", 0), ("b", -1), ("c", -1)]


def test_a_host_port_vouches_and_passes_the_flags_only_for_a_switch_port() -> None:
    async def main() -> list[tuple[str, int]]:
        sw = VnetSwitch(seed=1)
        a, b, c = (sw.add_interface(n) for n in "abc")
        got: list[tuple[str, int]] = []
        direct = HostPort(a, HostObserver("a", lambda text: None, {}, None))
        direct.set_receiver_flags(lambda f, flags: got.append(("a", flags)))
        # Behind a wrapper without the flags (nor a tap, nor vouch): plain frames, flags 0.
        wrapped = HostPort(ImpairedLink(b), HostObserver("b", lambda text: None, {}, None))
        wrapped.set_receiver_flags(lambda f, flags: got.append(("b", flags)))
        c.vouch()
        c.send(b"\xff" * 6 + bytes(c.mac().packed) + b"\x08\x00" + bytes(46))
        await asyncio.sleep(0.01)
        assert sw.trusted  # a: vouched by its HostPort; b sent nothing
        direct.send(b"\xff" * 6 + bytes(a.mac().packed) + b"\x08\x00" + bytes(46))
        await asyncio.sleep(0.01)
        assert sw.trusted
        wrapped.send(b"\xff" * 6 + bytes(b.mac().packed) + b"\x08\x00" + bytes(46))
        await asyncio.sleep(0.01)
        assert not sw.trusted  # b's port: nothing vouched for it
        return got

    got = sim.run(main(), seed=1)
    assert got == [("a", CSUM_VALID), ("b", 0), ("b", 0), ("a", 0)]


def test_distrust_holds_from_before_the_first_frame() -> None:
    async def main() -> list[int]:
        sw = VnetSwitch(seed=1)
        sw.distrust()  # before the switch binds to the loop at the first frame
        a, b = sw.add_interface("a"), sw.add_interface("b")
        a.vouch()
        got: list[int] = []
        b.set_receiver_flags(lambda f, flags: got.append(flags))
        a.send(b"\xff" * 6 + bytes(a.mac().packed) + b"\x08\x00" + bytes(46))
        await asyncio.sleep(0.01)
        return got

    assert sim.run(main(), seed=1) == [0]
