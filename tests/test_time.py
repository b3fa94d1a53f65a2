"""TIME on asyncio: real sleeps on the running loop, argument checks."""

from __future__ import annotations

import asyncio
import time

import pytest

from miragekit import v1
from miragekit.time import Time


def test_conforms() -> None:
    t: v1.Time = Time()
    assert callable(t.sleep)


async def _elapsed(seconds: float) -> float:
    start = time.monotonic()
    await Time().sleep(seconds)
    return time.monotonic() - start


def test_sleep_waits_at_least_the_duration() -> None:
    took = asyncio.run(_elapsed(0.05))
    assert 0.05 <= took < 1.0


def test_sleep_zero_yields_to_other_tasks() -> None:
    order: list[str] = []

    async def other() -> None:
        order.append("other")

    async def main() -> None:
        task = asyncio.create_task(other())
        await Time().sleep(0)
        order.append("main")
        await task

    asyncio.run(main())
    assert order == ["other", "main"]


def test_sleep_uses_the_running_loop_clock() -> None:
    """The wake-up is scheduled on the running loop: its clock decides."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await Time().sleep(0.02)
        return loop.time() - start

    assert asyncio.run(main()) >= 0.02


def test_concurrent_sleeps_overlap() -> None:
    async def main() -> float:
        start = time.monotonic()
        await asyncio.gather(*(Time().sleep(0.1) for _ in range(10)))
        return time.monotonic() - start

    assert asyncio.run(main()) < 0.5


@pytest.mark.parametrize("bad", [-1, -0.001, float("nan")])
def test_negative_or_nan_is_a_value_error(bad: float) -> None:
    with pytest.raises(ValueError, match="seconds"):
        asyncio.run(Time().sleep(bad))


def test_non_number_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="seconds"):
        asyncio.run(Time().sleep("1"))  # type: ignore[arg-type]
