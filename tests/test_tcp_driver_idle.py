"""The TCP driver's runs that find nothing to do (``TCP._run``, ``TCP._on_timer``) and
the endpoint's kept deadline (``TCPEndpoint.poll_at``): an idle run only arms the timer,
a timer whose connection deadline moved later arms it again without a run, a run that
accepts nothing does not look at the listeners, and the wire is the same as when every
run walks everything."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
from typing import Any

import pytest
from tests.test_tcp_endpoint import A, B, Net

from miragekit import sim
from miragekit.link import LinkParams, VnetSwitch
from miragekit.net import TCP, IPv4Stack
from miragekit.result import Ok
from miragekit.tcp import Config, Connection, TCPEndpoint
from miragekit.tcp._fastopen import CookieJar

# -- the endpoint's kept answer ------------------------------------------------------------


class _LossyNet(Net):
    """:class:`Net` whose wire loses each segment with probability ``loss``."""

    def __init__(self, cfg: Config, rng: random.Random, loss: float) -> None:
        super().__init__(cfg)
        self.rng = rng
        self.loss = loss

    def pump(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            moved = False
            for ep in self.eps.values():
                for laddr, raddr, seg in ep.segments_to_send(self.now):
                    moved = True
                    if self.rng.random() >= self.loss and raddr not in self.drop_to:
                        self.wire.append((laddr, raddr, bytes(seg.to_bytes(laddr, raddr))))
            wire, self.wire = self.wire, []
            for src, dst, raw in wire:
                self.eps[dst].handle_packet(self.now, src, dst, raw)
            if not moved and not wire:
                return

    def advance(self, seconds: float) -> None:
        """As :meth:`Net.advance`, but only an endpoint with a deadline due handles
        its timers (as each stack's driver does): the other keeps its answer."""
        end = self.now + seconds
        while True:
            due = {a: t for a, ep in self.eps.items() if (t := ep.poll_at()) is not None}
            t = min(due.values(), default=None)
            if t is None or t > end:
                break
            self.now = max(self.now, t)
            for a, ep in self.eps.items():
                if a in due and due[a] <= self.now:
                    ep.handle_timer(self.now)
            self.pump()
        self.now = end


def _walked(ep: TCPEndpoint) -> float | None:
    """What poll_at answers when it walks the timer queues (its kept answer dropped)."""
    ep._next_ok = False
    return ep.poll_at()


@pytest.mark.parametrize("seed", range(6))
def test_the_kept_deadline_is_always_what_a_walk_gives(seed: int) -> None:
    """Connections open, exchange data with losses, close (TIME-WAIT, its wait
    restarted by a FIN sent again), time out and are refused, in random order; after
    every step each endpoint's poll_at (kept answer) equals a fresh walk of its queues."""
    rng = random.Random(seed)
    net = _LossyNet(Config(msl=1.0, recv_buffer=8192, send_buffer=8192), rng, 0.1)
    server = net.eps[B]
    server.listen(7, backlog=64)
    clients: list[Connection] = []
    accepted: list[Connection] = []

    def check() -> None:
        for ep in net.eps.values():
            assert ep.poll_at() == _walked(ep)

    for _ in range(300):
        op = rng.random()
        if op < 0.15 and len(clients) < 40:
            clients.append(net.eps[A].connect(net.now, A, B, rng.choice((7, 7, 7, 8))))
        elif op < 0.45 and clients:
            c = rng.choice(clients)
            with contextlib.suppress(ValueError):  # reset, or refused (port 8)
                c.send(b"x" * rng.randrange(1, 3000))
            net.eps[A].wake(c)
        elif op < 0.55 and accepted:
            a = rng.choice(accepted)
            a.receive()
            with contextlib.suppress(ValueError):
                a.send(b"y" * rng.randrange(1, 500))
                if rng.random() < 0.3:
                    a.close()
            server.wake(a)
        elif op < 0.62 and clients:
            c = clients.pop(rng.randrange(len(clients)))
            c.close() if rng.random() < 0.8 else c.abort()
            net.eps[A].wake(c)
        elif op < 0.7:
            net.drop_to = {rng.choice((A, B))} if rng.random() < 0.5 else set()
        for ep in net.eps.values():
            ep.poll_at()  # keep an answer across what comes next
        if rng.random() < 0.5:
            net.pump(rounds=rng.randrange(1, 4))
        else:
            net.advance(rng.choice((0.001, 0.04, 0.2, 1.0)))
        check()
        while (s := server.accept(7)) is not None:
            accepted.append(s)
    # Everything closes (the server first, often) over the lossy wire: TIME-WAIT
    # records, their waits restarted by FINs sent again, end last.
    net.drop_to = set()
    for conn in accepted + clients:
        with contextlib.suppress(ValueError):
            conn.close()
        net.eps[B if conn in accepted else A].wake(conn)
        net.pump(rounds=1)
        check()
    for _ in range(60):
        net.advance(rng.choice((0.01, 0.1, 0.3)))
        check()
    assert accepted
    assert server.stats["connections_removed"] > 0


def test_the_kept_deadline_forgets_a_time_wait_record_that_ends_early() -> None:
    """A TIME-WAIT record ended before its 2 MSL (its address lost; a newer SYN reuses
    its 4-tuple likewise) takes its expiry out of poll_at's answer."""
    net = Net(Config(msl=60.0))
    server = net.eps[B]
    server.listen(80)
    client = net.eps[A].connect(net.now, A, B, 80)
    net.pump()
    conn = server.accept(80)
    assert conn is not None
    conn.close()  # the server closes first: it keeps TIME-WAIT
    server.wake(conn)
    net.pump()
    client.close()
    net.eps[A].wake(client)
    net.pump()
    net.advance(5.0)  # every connection timer is over: only the record's expiry is left
    assert len(server.time_wait) == 1
    assert server.poll_at() == _walked(server) == 120.0
    assert server.address_lost(B) == 1
    assert server.poll_at() is None
    assert _walked(server) is None


def test_poll_at_walks_only_when_an_entry_may_have_gone() -> None:
    net = Net()
    net.eps[B].listen(7)
    c = net.eps[A].connect(net.now, A, B, 7)
    net.pump()
    ep = net.eps[A]
    assert ep.poll_at() == _walked(ep)
    walk = TCPEndpoint._due_walk
    calls = [0]

    def counting(self: TCPEndpoint) -> float | None:
        calls[0] += 1
        r: float | None = walk(self)
        return r

    TCPEndpoint._due_walk = counting  # type: ignore[method-assign]
    try:
        for _ in range(5):
            ep.poll_at()
        assert calls == [0]  # nothing changed: the kept answer
        c.send(b"x")
        ep.wake(c)
        net.pump()  # an RTO armed and cancelled by the ACK, a delayed ACK: entries
        ep.poll_at()
        ep.handle_timer(net.now)  # timers handled: walk again
        ep.poll_at()
        ep.poll_at()
        assert calls[0] == 1
    finally:
        TCPEndpoint._due_walk = walk  # type: ignore[method-assign]


# -- accept_ready ----------------------------------------------------------------------------


def test_accept_ready_is_set_by_every_way_into_the_accept_queue() -> None:
    # A handshake.
    net = Net()
    server = net.eps[B]
    server.listen(7)
    assert not server.accept_ready
    net.eps[A].connect(net.now, A, B, 7)
    net.pump()
    assert server.accept_ready
    server.accept_ready = False
    assert server.accept(7) is not None and not server.accept_ready
    # A SYN cookie's ACK (the backlog full).
    net = Net()
    server = net.eps[B]
    server.listen(7, backlog=1)
    net.eps[A].connect(net.now, A, B, 7)
    net.eps[A].connect(net.now, A, B, 7)
    net.pump()
    assert server.stats["syn_cookies_accepted"] == 1
    assert server.accept_ready
    # A Fast Open SYN with a valid cookie: queued at once.
    net = Net()
    server = net.eps[B]
    server.listen(80, fastopen=True)
    cookie = CookieJar(b"0123456789abcdefx").server_cookie(A)
    net.eps[A]._cookies.learn(B, cookie, 1460)
    c = net.eps[A].connect(net.now, A, B, 80, fastopen=True)
    c.send(b"hello")
    for _, _, seg in net.eps[A].segments_to_send(net.now):
        server.handle_packet(net.now, A, B, seg.to_bytes(A, B))
    assert server.stats["fastopen_accepted"] == 1
    assert server.accept_ready


# -- the driver --------------------------------------------------------------------------------


def _always_walking(monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver and endpoint as before: every run and every timer walks everything."""
    poll_at = TCPEndpoint.poll_at

    def walking(self: TCPEndpoint) -> float | None:
        self._next_ok = False
        return poll_at(self)

    monkeypatch.setattr(TCPEndpoint, "poll_at", walking)
    monkeypatch.setattr(TCPEndpoint, "has_work", lambda self: True)
    accept = TCPEndpoint.accept

    def accepting(self: TCPEndpoint, port: int) -> Connection | None:
        self.accept_ready = True  # the driver looks at its listeners on every run
        return accept(self, port)

    monkeypatch.setattr(TCPEndpoint, "accept", accepting)


def _cluster(counts: dict[str, int]) -> list[bytes]:
    """Every frame of 4 stacks on a lossy switch, each serving an echo and pinging
    the others over 3 connections each, for 20 simulated seconds; driver calls into
    ``counts``."""
    frames: list[bytes] = []
    for name in ("_run", "_on_timer", "segments_to_send", "take_active", "accept"):
        counts[name] = 0

    def counting(cls: Any, name: str) -> None:
        orig = getattr(cls, name)

        def wrapped(*a: Any) -> Any:
            counts[name] += 1
            return orig(*a)

        setattr(cls, name, wrapped)

    async def main() -> None:
        sw = VnetSwitch()
        sw.add_interface("mon", mirror=True).set_receiver(lambda f: frames.append(bytes(f)))
        link = LinkParams(loss=0.05, latency=0.002)
        tcps = []
        for h in range(4):
            s = await IPv4Stack.connect(
                sw.add_interface(f"h{h}", link=link), cidr=f"10.0.0.{h + 1}/24"
            )
            tcps.append(TCP(s.ipv4))

        async def echo(flow: Any) -> None:
            while isinstance(r := await flow.read(), Ok):
                if not isinstance(await flow.write(r.value), Ok):
                    return

        for t in tcps:
            t.listen(7, echo)
        loop = asyncio.get_running_loop()
        until = loop.time() + 20.0

        async def ping(h: int, d: int, phase: float) -> None:
            await asyncio.sleep(phase)
            r = await tcps[h].create_connection((ipaddress.IPv4Address(f"10.0.0.{d + 1}"), 7))
            assert isinstance(r, Ok)
            while loop.time() < until:
                assert await r.value.write(b"p" * 100) == Ok(None)
                got = 0
                while got < 100:
                    x = await r.value.read()
                    assert isinstance(x, Ok)
                    got += len(x.value)
                await asyncio.sleep(0.5)
            await r.value.close()

        await asyncio.gather(
            *(ping(h, d, 0.07 * (h + d)) for h in range(4) for d in range(4) if d != h)
        )
        await asyncio.sleep(5.0)

    saved = {n: getattr(cls, n) for cls, n in ((TCP, "_run"), (TCP, "_on_timer"))}
    saved_ep = {n: getattr(TCPEndpoint, n) for n in ("segments_to_send", "take_active", "accept")}
    counting(TCP, "_run")
    counting(TCP, "_on_timer")
    for n in saved_ep:
        counting(TCPEndpoint, n)
    try:
        sim.run(main(), seed=3)
    finally:
        for n, f in saved.items():
            setattr(TCP, n, f)
        for n, f in saved_ep.items():
            setattr(TCPEndpoint, n, f)
    return frames


def test_idle_runs_and_timers_leave_the_wire_as_when_every_run_walks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now_counts: dict[str, int] = {}
    now = _cluster(now_counts)
    before_counts: dict[str, int] = {}
    _always_walking(monkeypatch)
    before = _cluster(before_counts)
    assert len(now) > 500
    assert now == before
    # The same timer fires, fewer runs (a timer with nothing due makes none), far
    # fewer walks of output, news and listeners.
    assert now_counts["_on_timer"] == before_counts["_on_timer"]
    assert now_counts["_run"] < before_counts["_run"]
    assert before_counts["segments_to_send"] >= before_counts["_run"]
    # (Three quarters: with timer entries that follow deadlines gone or moved later,
    # few timers fire for nothing, so both ways make fewer runs than they did.)
    assert now_counts["segments_to_send"] < 0.75 * before_counts["segments_to_send"]
    assert now_counts["take_active"] < 0.75 * before_counts["take_active"]
    # Accepts: 12 connections, each listener looked at only when one came.
    assert now_counts["accept"] < 0.1 * before_counts["accept"]


def test_a_timer_whose_deadline_moved_later_arms_again_without_a_run() -> None:
    """A request answered at once: the server's delayed-ACK entry goes stale (the reply
    carries the ACK), the client's RTO/TLP entry too (the reply acknowledges the
    request). Their timers fire, find nothing due, and re-arm without a run."""
    runs_from_timer = [0]
    fires = [0]
    run = TCP._run
    on_timer = TCP._on_timer
    in_timer = [False]

    def counting_run(self: TCP[Any]) -> bool:
        if in_timer[0]:
            runs_from_timer[0] += 1
        return run(self)

    def counting_timer(self: TCP[Any]) -> None:
        fires[0] += 1
        in_timer[0] = True
        try:
            on_timer(self)
        finally:
            in_timer[0] = False

    armed: list[tuple[float | None, float | None]] = []

    async def main() -> None:
        sw = VnetSwitch()
        sa = await IPv4Stack.connect(sw.add_interface("a"), cidr="10.0.0.1/24")
        sb = await IPv4Stack.connect(sw.add_interface("b"), cidr="10.0.0.2/24")
        client, server = TCP(sa.ipv4), TCP(sb.ipv4)

        async def echo(flow: Any) -> None:
            while isinstance(r := await flow.read(), Ok):
                await flow.write(r.value)

        server.listen(7, echo)
        r = await client.create_connection((ipaddress.IPv4Address("10.0.0.2"), 7))
        assert isinstance(r, Ok)
        for _ in range(5):
            assert await r.value.write(b"q") == Ok(None)
            assert await r.value.read() == Ok(memoryview(b"q"))
            await asyncio.sleep(2.0)  # every stale entry fires meanwhile
            for t in (client, server):
                # Armed for what the endpoint says is next (a walk's answer).
                armed.append((t._timer_at, _walked(t.endpoint)))

    TCP._run = counting_run  # type: ignore[method-assign]
    TCP._on_timer = counting_timer  # type: ignore[method-assign]
    try:
        sim.run(main(), seed=1)
    finally:
        TCP._run = run  # type: ignore[method-assign]
        TCP._on_timer = on_timer  # type: ignore[method-assign]
    assert fires[0] >= 10
    assert runs_from_timer[0] < fires[0] / 2, (runs_from_timer, fires)
    assert all(at == due for at, due in armed), armed
