"""A keep-alive request's path makes only the calls it needs: the driver hands the
segment to header prediction through ``TCP._deliver`` (once), and the endpoint asks the
connection one question after the input (``poll_at(quiet=True)``, not ``quiet()`` and
``poll_at()``) and writes ``_rearm`` out on both sides; and what the one question answers
is exactly what the two did."""

from __future__ import annotations

import asyncio
import importlib
import random
from pathlib import Path
from types import ModuleType

import pytest

from miragekit import aio
from miragekit.result import Ok
from miragekit.tcp import Config, Connection, State
from miragekit.wire.tcp import SYN, TCPRepr

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("tcp_reqresp_steps")


def test_a_request_and_its_reply_call_each_step_once(steps: ModuleType) -> None:
    res = aio.run(steps.serve(4, 20, "bytecodes"))
    calls = res["calls"]
    # Every request went the fast way in and out (one call of each step per request).
    for name in ("net/_tcp.py:TCP._deliver",
                 "tcp/_conn.py:Connection.handle_next", "tcp/_conn.py:Connection.data_now",
                 "tcp/_endpoint.py:TCPEndpoint.handle_next",
                 "tcp/_endpoint.py:TCPEndpoint.segment_now"):  # fmt: skip
        assert calls[name] == 1.0, name
    # Written out where they were called, once per request each.
    for name in ("tcp/_endpoint.py:TCPEndpoint._rearm", "tcp/_conn.py:Connection.quiet"):
        assert name not in calls, name
    # One deadline question after the request's input, one after the reply; the
    # driver's own (its runs, a few a round) come on top.
    assert 2.0 <= calls["tcp/_conn.py:Connection.poll_at"] < 2.1
    # The driver's timer is armed once a round (four requests), by the run that sends
    # the replies: the run that took the requests woke their readers, so a run follows
    # it in the same loop turn and arms it for what the replies leave.
    assert calls["net/_tcp.py:TCP._arm_timer"] == 0.25
    # A busy connection's timer entry is left where it is (a request's delayed ACK and
    # the reply's retransmission timer come after it): no entry made a request.
    assert "tcp/_endpoint.py:TCPEndpoint._arm" not in calls
    assert res["calls_per_request"] > 20


def _conn() -> Connection:
    syn = TCPRepr(1000, 80, 5, 0, SYN, 65535, b"", 1460, 7, True, (), (1, 0))
    conn = Connection.accept(Config(), syn, 100, 0.0)
    conn.state = State.ESTABLISHED
    return conn


def _quiet_as_it_was(conn: Connection) -> bool:
    """``Connection.quiet`` as it was written before it asked ``poll_at``."""
    st = conn.state
    return (
        (st is State.ESTABLISHED or st is State.CLOSE_WAIT)
        and not conn._ctl_out
        and not conn._ack_now
        and not conn._rexmit
        and not conn._tlp_probe
        and not conn._in_recovery
        and conn._snd_nxt >= conn._snd_buf_seq + conn._sndbuf.size + conn._fin_queued
    )


def test_poll_at_quiet_is_minus_one_exactly_when_not_quiet_else_poll_at() -> None:
    conn = _conn()
    rng = random.Random(11)
    deadlines = ("_rtx_at", "_ack_at", "_close_at", "_ka_at", "_tlp_at", "_rack_at")
    states = (State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1, State.LAST_ACK)
    una = conn._snd_una
    for _ in range(3000):
        for name in deadlines:
            setattr(conn, name, rng.choice((None, None, float(rng.randrange(1, 6)))))
        conn.state = rng.choice(states)
        conn._ctl_out = [] if rng.random() < 0.8 else [TCPRepr(80, 1000, 1, 1, 0x10, 1)]
        conn._ack_now = rng.random() < 0.2
        conn._rexmit = rng.random() < 0.1
        conn._tlp_probe = rng.random() < 0.1
        conn._in_recovery = rng.random() < 0.1
        conn._fin_queued = rng.random() < 0.1
        conn._snd_nxt = una + rng.choice((0, 0, 1))
        quiet = _quiet_as_it_was(conn)
        assert conn.quiet() is quiet
        got = conn.poll_at(True)
        assert got == (conn.poll_at() if quiet else -1.0)


def test_data_is_told_to_an_on_readable_flow_without_a_python_call(steps: ModuleType) -> None:
    # The connection's reader is the driver's list's own append (TCP._told): the
    # callback is listed without a method of the flow in between.
    calls = aio.run(steps.serve(4, 20, "bytecodes"))["calls"]
    assert "net/_tcp.py:TCPFlow._data_in" not in calls
    assert calls["netloop/_transport_io.py:TransportIO.deliver"] == 1.0  # told once each


def test_a_task_reading_a_flow_with_on_readable_is_woken_by_data_too() -> None:
    from tests.test_flow_read_now import _accepted

    async def main() -> tuple[bytes, int]:
        c, s, client, server = await _accepted()
        told = 0

        def readable() -> None:
            nonlocal told
            told += 1

        server.on_readable(readable)
        reader = asyncio.ensure_future(server.read())
        await asyncio.sleep(0)  # waiting in read()
        await client.write(b"for the task")
        got = await asyncio.wait_for(reader, 5)
        assert isinstance(got, Ok)
        await c.disconnect()
        await s.disconnect()
        return bytes(got.value), told

    data, told = asyncio.run(main())
    assert data == b"for the task"
    assert told >= 1  # and the callback heard of it as well


def test_header_prediction_lists_its_connection_as_active_only_with_events() -> None:
    from tests.test_tcp_conn_costs import CPORT, SECRET, A, B, _accepted

    from miragekit.tcp import DataReceived, TCPEndpoint

    ep = TCPEndpoint(Config(timestamps=False), secret=SECRET)
    conn, our = _accepted(ep)
    ep.take_active()
    conn.take_events()  # the handshake's, drained as a driver would
    told: list[int] = []
    conn.set_reader(lambda: told.append(1))  # data told by a call (an on_readable flow)
    assert ep.handle_next(0.0, B, A, CPORT, 80, 1001, our, 64000, b"GET", None)
    assert told == [1]
    assert ep.take_active() == []  # no news for the driver's walk
    assert conn.receive() == b"GET"
    conn.set_reader(None)  # data as events again: the connection is listed for them
    assert ep.handle_next(0.01, B, A, CPORT, 80, 1004, our, 64000, b"again", None)
    assert ep.take_active() == [conn]
    assert conn.take_events() == [DataReceived()]


def test_the_general_way_asks_the_one_question_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_tcp_conn_costs import CPORT, SECRET, A, B, _accepted

    from miragekit.tcp import TCPEndpoint
    from miragekit.wire.tcp import ACK, FIN

    ep = TCPEndpoint(Config(timestamps=False), secret=SECRET)
    conn, our = _accepted(ep)
    asked: list[bool] = []
    real = Connection.poll_at

    def poll_at(self: Connection, quiet: bool = False) -> float | None:
        asked.append(quiet)
        return real(self, quiet)

    def quiet(self: Connection) -> bool:
        raise AssertionError("quiet() asked apart")

    monkeypatch.setattr(Connection, "poll_at", poll_at)
    monkeypatch.setattr(Connection, "quiet", quiet)
    ep.handle_segment(0.0, B, A, TCPRepr(CPORT, 80, 1001, our, ACK | FIN, 64000))
    assert conn.state == State.CLOSE_WAIT
    # Quiet (the FIN's ACK waits for the application's answer or close, as a delayed
    # ACK): one question gave the timer entry; the walk has nothing to do.
    assert asked == [True]
    monkeypatch.undo()
    t = conn.poll_at()
    assert t is not None and t > 0.0 and ep.poll_at() == t
    assert ep.segments_to_send(0.0) == []
