"""A simulation's timers cancel in one frame of their own: what asyncio's
``TimerHandle.cancel`` and ``Handle.cancel`` do (the loop counts a scheduled timer, debug
mode keeps the repr), without them (``asyncio.sleep`` cancels its fired timer on every
return)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from miragekit import sim
from miragekit.sim import SimLoop

SLOTS = ("_cancelled", "_callback", "_args", "_repr", "_scheduled", "_when", "_context")


def _state(timer: Any) -> tuple[Any, ...]:
    return tuple(getattr(timer, name) for name in SLOTS)


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("fired", [False, True])
def test_cancel_leaves_what_asyncio_s_cancel_leaves(debug: bool, fired: bool) -> None:
    loop = SimLoop()
    try:
        ours, theirs = loop.call_at(5.0, print, 1), loop.call_at(5.0, print, 1)
        assert type(ours).__name__ == "_Timer"
        if fired:  # what the loop does when a timer falls due
            ours._scheduled = theirs._scheduled = False  # type: ignore[attr-defined]
        loop.set_debug(debug)
        before = loop._timer_cancelled_count
        ours.cancel()
        counted = loop._timer_cancelled_count - before
        asyncio.TimerHandle.cancel(theirs)
        assert loop._timer_cancelled_count - before == 2 * counted
        assert counted == (0 if fired else 1)
        assert _state(ours) == _state(theirs)
        assert ours._cancelled and ours._callback is None  # type: ignore[attr-defined]
        assert (ours._repr is not None) is debug  # type: ignore[attr-defined]
        ours.cancel()  # a second cancel changes nothing, as asyncio's
        asyncio.TimerHandle.cancel(theirs)
        assert loop._timer_cancelled_count - before == 2 * counted
        assert _state(ours) == _state(theirs)
    finally:
        loop.set_debug(False)
        loop.close()


def test_sleep_cancels_its_timer_without_asyncio_s_cancel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(self: Any) -> None:
        raise AssertionError("asyncio's TimerHandle.cancel was called")

    monkeypatch.setattr(asyncio.TimerHandle, "cancel", refuse)

    async def main() -> float:
        for _ in range(3):
            await asyncio.sleep(0.5)
        return asyncio.get_running_loop().time()

    assert sim.run(main()) == 1.5
