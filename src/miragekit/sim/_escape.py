"""Code that escapes a simulation: found and named, not silently tolerated.

Why: a simulated host that starts a real thread, opens a real socket or times itself with
the host's clock runs outside virtual time and the seed; its run is then neither
reproducible nor a test of what it claims. While :meth:`Network.run
<miragekit.sim.Network.run>` runs, an :class:`EscapeWatch` notes each such call made on
the simulation's thread: ``threading.Thread.start`` (``asyncio.to_thread`` and executors
too), socket calls that reach the host's network (``socket.connect``, ``bind``,
``sendto``, ``sendmsg`` and name lookups, seen through an audit hook), and reads of
``time.time``/``time.monotonic``/``time.perf_counter`` (and their ``_ns`` forms) other
than the ``logging`` module's timestamps, and draws from the ``random`` module's shared
generator (``random.random()``, ``randint``, ``choice``, ...: not the seed's; use
:func:`miragekit.sim.rng`). Each is an :class:`Escape` naming the host
whose code made the call and the first line outside the standard library that led to it.
Code that took its own reference to a time function before the run (``from time import
time``) is not seen.
"""

from __future__ import annotations

import ipaddress
import os
import random
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

_STDLIB = os.path.normcase(sysconfig.get_paths()["stdlib"]) + os.sep
_LOGGING = os.path.dirname(os.path.normcase(__import__("logging").__file__ or "")) + os.sep
_TIME_FUNCS = ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns")
_RANDOM_FUNCS = tuple(
    n
    for n in random.__all__
    if getattr(getattr(random, n, None), "__self__", None) is getattr(random, "_inst", None)
    and n not in ("seed", "getstate", "setstate")
)
_SOCKET_EVENTS = {
    "socket.connect": "socket connect to {}",
    "socket.bind": "socket bind to {}",
    "socket.sendto": "socket sendto {}",
    "socket.sendmsg": "socket sendmsg to {}",
    "socket.getaddrinfo": "name lookup of {}",
    "socket.gethostbyname": "name lookup of {}",
    "socket.gethostbyaddr": "address lookup of {}",
}


class SimEscape(RuntimeError):
    """``Network.run(strict=True)``: code escaped the simulation (the message lists it)."""


@dataclass(frozen=True, slots=True)
class Escape:
    """One way code left the simulation: ``kind`` ("thread", "socket", "time" or
    "random"), the
    host whose code did it (``None``: code outside every host), what it did, where (the
    first source line outside the standard library), the virtual time of the first such
    call and how many times it happened there."""

    kind: str
    host: str | None
    what: str
    where: str
    time: float
    count: int = 1

    def __str__(self) -> str:
        who = self.host if self.host is not None else "(no host)"
        times = f", {self.count} times" if self.count > 1 else ""
        return f"{who}: {self.what} at {self.where} (t={self.time:.6f}{times})"


def _where(frame: FrameType | None) -> str:
    first = frame
    while frame is not None:
        if not os.path.normcase(frame.f_code.co_filename).startswith(_STDLIB):
            break
        frame = frame.f_back
    frame = frame or first
    if frame is None:
        return "?"
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


_active: EscapeWatch | None = None
_hooked = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    w = _active
    if w is None or not event.startswith("socket."):
        return
    form = _SOCKET_EVENTS.get(event)
    if form is None or threading.get_ident() != w.thread:
        return
    target = args[1] if event in ("socket.connect", "socket.bind", "socket.sendto") else None
    if event == "socket.sendmsg":
        target = args[1] if len(args) > 1 else None
    elif event.startswith("socket.get"):
        target = args[0]
        if isinstance(target, str | bytes):
            try:
                name = target.decode() if isinstance(target, bytes) else target
                ipaddress.ip_address(name.split("%")[0])
                return  # a number: nothing is looked up
            except ValueError:
                pass
    w.note("socket", form.format(target), sys._getframe(1))


class EscapeWatch:
    """Notes escapes on the calling thread between :meth:`start` and :meth:`stop`.

    ``context()`` says which host's code is running (and the virtual time), as
    ``(host, time)``."""

    def __init__(self, context: Callable[[], tuple[str | None, float]]) -> None:
        self._context = context
        self.thread = threading.get_ident()
        self._seen: dict[tuple[str, str | None, str, str], Escape] = {}
        self._saved: dict[str, Any] = {}

    @property
    def escapes(self) -> list[Escape]:
        """What escaped, in the order first seen."""
        return list(self._seen.values())

    def note(self, kind: str, what: str, frame: FrameType | None) -> None:
        host, now = self._context()
        where = _where(frame)
        key = (kind, host, what, where)
        old = self._seen.get(key)
        if old is None:
            self._seen[key] = Escape(kind, host, what, where, now)
        else:
            self._seen[key] = Escape(kind, host, what, where, old.time, old.count + 1)

    def start(self) -> None:
        global _active, _hooked
        if _active is not None:
            return  # another thread's simulation is watched: one at a time per process
        if not _hooked:
            sys.addaudithook(_audit)  # audit hooks stay for the process: it checks _active
            _hooked = True
        self.thread = threading.get_ident()
        _active = self
        start = threading.Thread.start
        self._saved["Thread.start"] = start

        def watched_start(thread: threading.Thread) -> None:
            if _active is self and threading.get_ident() == self.thread:
                self.note("thread", f"thread {thread.name!r} started", sys._getframe(1))
            start(thread)

        threading.Thread.start = watched_start  # type: ignore[method-assign,assignment]
        for name in _TIME_FUNCS:
            self._saved[name] = real = getattr(time, name)
            setattr(time, name, self._watched("time", f"time.{name}() read", real))
        for name in _RANDOM_FUNCS:
            self._saved[f"random.{name}"] = real = getattr(random, name)
            what = f"random.{name}() (the shared generator, not the seed's)"
            setattr(random, name, self._watched("random", what, real))

    def _watched(self, kind: str, what: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def watched(*args: Any, **kwargs: Any) -> Any:
            if _active is self and threading.get_ident() == self.thread:
                caller = sys._getframe(1)
                if not os.path.normcase(caller.f_code.co_filename).startswith(_LOGGING):
                    self.note(kind, what, caller)
            return real(*args, **kwargs)

        watched.__name__ = real.__name__
        return watched

    def stop(self) -> None:
        global _active
        if _active is not self:
            return
        _active = None
        threading.Thread.start = self._saved.pop("Thread.start")  # type: ignore[method-assign]
        for name in _TIME_FUNCS:
            setattr(time, name, self._saved.pop(name))
        for name in _RANDOM_FUNCS:
            setattr(random, name, self._saved.pop(f"random.{name}"))
