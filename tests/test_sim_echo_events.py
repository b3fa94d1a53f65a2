"""What one echo of ``bench/sim_cluster.py``'s workload costs the loop, event by event
(``bench/sim_echo_events.py``): a change that adds or removes a loop callback per echo
shows here, with the callback it concerns."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("sim_echo_events")


def test_one_echo_over_a_plain_link_costs_fourteen_callbacks(events: ModuleType) -> None:
    # Two hosts, one connection each way; a loss too small to lose anything keeps the
    # links plain (the switch's path of a lossy link) and the counts whole.
    r = events.count(2, 2, 5.0, 15.0, loss=1e-9)
    assert r["echoes"] == 20
    per_echo = {name: ran for name, (_scheduled, ran) in r["callbacks"].items()}
    assert per_echo == {
        # Three frames (the data, the echo with its ACK, the delayed ACK), each crossing
        # two directions of link: the uplink (no latency, nothing in flight) hands it to
        # the switch at once, the downlink by a loop timer due at once.
        "call_at _Direction.drain (_deliver)": 3.0,
        # A run per frame received but the delayed ACK (it only moves the server's
        # timers: taken at once, no run), one after the application wrote, one after
        # the tasks a run woke (the pinger's, which wrote nothing), per host.
        "call_soon TCP._flush": 5.0,
        # The client's delayed ACK; the server's retransmission timer, gone by then
        # (the delayed ACK acknowledged the reply) but armed on the loop already. (The
        # server's delayed ACK, which the reply carried in the same loop turn, arms
        # none: its entry followed the deadline the reply left.)
        "call_at TCP._on_timer": 2.0,
        # The echo handler woken by data, the pinger by the echo and by its sleep.
        "call_soon Task.task_wakeup": 3.0,
        "call_at _set_result_unless_cancelled": 1.0,
    }
    assert r["ran"] == 14.0
    # Every run sends or wakes something: the pinger's re-flush arms the loop's timer
    # for the client's delayed ACK (the run that woke the pinger leaves that to it).
    assert r["other"] == {
        "frames sent": 3.0,
        "TCP timer fires that found nothing due": 1.0,
    }


def test_with_more_connections_a_host_s_timer_seldom_fires_for_nothing(
    events: ModuleType,
) -> None:
    """Twenty connections a host: the entry of a retransmission timer that an ACK
    cancelled is gone when the host's loop timer comes to be armed for it (it waits for
    an earlier deadline of another connection first), so almost no fire finds nothing
    due (1.9 an echo when every entry stayed until it came up)."""
    r = events.count(8, 160, 5.0, 10.0, loss=1e-9)
    assert r["echoes"] == 800
    assert r["other"]["TCP timer fires that found nothing due"] < 0.2
    assert r["ran"] < 13.5
