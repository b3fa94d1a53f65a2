"""The one shape every conformance suite has: named checks, one error naming the check.

Why: a suite is useful only if its failure says what broke, inside or outside pytest, and
quickly. Every suite (FLOW, BLOCK, KV_RO, FS, NETWORK) is ``await check_x(factory, ...,
only=None, timeout=...)``: it runs its checks in order (or those named in ``only``), each
under ``timeout``, and raises :class:`ConformanceError` for the first that fails.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, NoReturn, TypeVar

D = TypeVar("D")


class ConformanceError(AssertionError):
    """An implementation broke its signature's contract in the check named ``check``."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"{check}: {detail}")
        self.check = check
        self.detail = detail


class CheckFailed(Exception):
    """Raised inside a check; :func:`run_checks` adds the check's name."""


def fail(detail: str) -> NoReturn:
    """Fail the running check with ``detail`` (what was expected and what happened)."""
    raise CheckFailed(detail)


def expect(cond: object, detail: str) -> None:
    """Fail the running check with ``detail`` unless ``cond`` holds."""
    if not cond:
        raise CheckFailed(detail)


async def within(seconds: float, what: str, aw: Awaitable[object]) -> object:
    """``await aw``, failing with ``what`` if it takes longer than ``seconds``.

    For operations that must finish promptly (a read woken by close, say), so a broken
    device fails at once with a precise message instead of at the check's time limit.
    """
    try:
        async with asyncio.timeout(seconds):
            return await aw
    except TimeoutError:
        fail(f"{what}: still blocked after {seconds:g} s")


def select(known: Collection[str], only: Collection[str] | None) -> tuple[str, ...]:
    """The checks to run: all of ``known`` or those in ``only`` (unknown names refused)."""
    if only is None:
        return tuple(known)
    names = tuple(only)
    for name in names:
        if name not in known:
            raise ValueError(f"only: unknown check {name!r}; known: {', '.join(known)}")
    return names


async def run_checks(
    checks: Mapping[str, Callable[[], Awaitable[None]]],
    only: Collection[str] | None,
    timeout: float,
) -> None:
    """Run the selected checks in order; turn a failure, a hang or an unexpected
    exception into :class:`ConformanceError` naming the check."""
    for name in select(checks, only):
        try:
            async with asyncio.timeout(timeout):
                await checks[name]()
        except CheckFailed as e:
            raise ConformanceError(name, str(e)) from None
        except ConformanceError:
            raise
        except TimeoutError:
            raise ConformanceError(name, f"no progress within {timeout:g} s") from None
        except Exception as e:  # a device raising where it should return a result
            raise ConformanceError(name, f"raised {type(e).__name__}: {e}") from e


def on_pair(check: Callable[[D, D], Awaitable[None]]) -> Callable[[tuple[D, D]], Awaitable[None]]:
    """``check(a, b)`` as a check of the pair ``(a, b)``."""

    async def run(pair: tuple[D, D]) -> None:
        await check(*pair)

    return run


async def run_on_fresh(
    make: Callable[[], Any],
    checks: Mapping[str, Callable[[D], Awaitable[None]]],
    release: Callable[[D], Awaitable[None]],
    only: Collection[str] | None,
    timeout: float,
) -> None:
    """:func:`run_checks` with each check on a fresh device (or pair) from ``make``
    (called, and awaited if it gives an awaitable), released afterwards."""

    def bind(check: Callable[[D], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            made = make()
            dev: D = await made if inspect.isawaitable(made) else made
            try:
                await check(dev)
            finally:
                await release(dev)

        return run

    await run_checks({name: bind(c) for name, c in checks.items()}, only, timeout)


__all__ = [
    "CheckFailed",
    "ConformanceError",
    "expect",
    "fail",
    "on_pair",
    "run_checks",
    "run_on_fresh",
    "select",
    "within",
]
