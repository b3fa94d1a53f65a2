"""Each conformance suite rejects deliberately broken devices ("mutants"), quickly and
with a message naming the check that caught them.

Every mutant breaks one promise of its signature in a way the suites once let through;
the test names the check expected to catch it and bounds the time it may take (a
failure must come from the check, not from the 60 s "no progress" limit).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from miragekit.testing import ConformanceError, check_flow
from miragekit.testing._flow import MemoryFlow, _Pipe, _wake

QUICK = 15.0  # seconds a suite may take to reject a mutant


def rejects(suite: Awaitable[None], check: str, detail: str = "") -> None:
    """``suite`` raises ConformanceError from ``check`` (message matching ``detail``)."""
    t0 = time.monotonic()
    with pytest.raises(ConformanceError) as info:
        asyncio.run(asyncio.wait_for(suite, QUICK * 2))
    took = time.monotonic() - t0
    err = info.value
    assert err.check == check, f"caught by {err.check!r}, expected {check!r}: {err}"
    assert str(err).startswith(f"{check}: "), str(err)
    assert re.search(detail, err.detail), f"{err.detail!r} does not match {detail!r}"
    assert "no progress" not in err.detail, str(err)
    assert took < QUICK, f"took {took:.1f} s to reject the mutant"


# --- FLOW -----------------------------------------------------------------------------


class _CloseTellsOnlyThePeer(MemoryFlow):
    """close() signals the peer but leaves this end's own waiters hanging."""

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._tx.closed = True
        self._rx.gone = True
        _wake(self._tx.readers)


class _CloseForgetsWriters(MemoryFlow):
    """close() wakes readers but not a write blocked on back-pressure."""

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._tx.closed = True
        self._rx.gone = True
        for pipe in (self._tx, self._rx):
            _wake(pipe.readers)


def _pair(cls: type[MemoryFlow], capacity: int = 1 << 16) -> Callable[[], tuple[Any, Any]]:
    def make() -> tuple[Any, Any]:
        ab, ba = _Pipe(capacity), _Pipe(capacity)
        return cls(ba, ab), MemoryFlow(ab, ba)

    return make


@pytest.mark.parametrize(
    ("mutant", "check", "detail"),
    [
        (_CloseTellsOnlyThePeer, "close_wakes_local_reader", "pending .* when close.* ran"),
        (_CloseForgetsWriters, "close_wakes_blocked_writer", "blocked on back-pressure"),
    ],
    ids=["close_leaves_reader", "close_leaves_writer"],
)
def test_flow_mutant(mutant: type[MemoryFlow], check: str, detail: str) -> None:
    rejects(check_flow(_pair(mutant)), check, detail)


def test_flow_mutant_whose_reset_is_a_close() -> None:
    class ResetIsClose(MemoryFlow):
        def abort(self) -> None:
            asyncio.ensure_future(self.close())

    rejects(check_flow(_pair(ResetIsClose)), "abort_resets_peer", "expected Error")


def test_flow_mutant_that_raises_in_a_method() -> None:
    class Raises(MemoryFlow):
        async def writev(self, bufs: Any) -> Any:
            raise AttributeError("no writev here")

    rejects(check_flow(_pair(Raises)), "bytes_like_inputs", "AttributeError: no writev")
