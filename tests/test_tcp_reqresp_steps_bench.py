"""``bench/tcp_reqresp_steps.py`` measures what it says: every request of its loop is
answered, and by the request/response path it is meant to count (header prediction on
the way in, the writer's one-segment reply on the way out), not the general walk."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

from miragekit import aio

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("tcp_reqresp_steps")


def test_the_loop_counts_the_request_response_path(steps: ModuleType) -> None:
    res = aio.run(steps.serve(3, 10, "bytecodes"))
    assert res["requests"] == 30
    calls = res["functions"]
    # One pass of each fast step per request (bytecodes per request, so at least one).
    for name in ("tcp/_conn.py:Connection.handle_next", "tcp/_conn.py:Connection.data_now",
                 "net/_tcp.py:TcpSender._data_head"):  # fmt: skip
        assert calls[name] > 0, name
    assert "tcp/_conn.py:Connection.segments_to_send" not in calls  # not the general walk
    assert "tcp/_conn.py:Connection.handle_segment" not in calls
    # A reply goes from its fields to its frame: no TCPRepr made and taken apart again.
    for name in ("tcp/_conn.py:Connection.segment_of", "wire/tcp.py:plain_segment",
                 "wire/tcp.py:plain_fields", "net/_tcp.py:TcpSender.frame"):  # fmt: skip
        assert name not in calls, name
    assert 1000 < res["bytecodes_per_request"] < 10000
