"""An asyncio event loop on virtual time.

Why: protocol tests (retransmission timers, ARP expiry, a lossy network of stacks) want
hours of protocol time in milliseconds, and the same run every time. ``SimLoop`` is a
selector event loop whose :meth:`~SimLoop.time` is a virtual clock. When no callback is
ready it still polls the real file descriptors, without blocking, and if none is ready it
jumps the clock to the next timer instead of sleeping. A pure simulation therefore never
waits on the wall clock.

Determinism: the ready queue is FIFO, timers with equal deadlines run in the order they
were scheduled (see :mod:`miragekit.sim._sched`), and :meth:`SimLoop.rng` is a
``random.Random`` seeded from the loop's seed. Leftover tasks are cancelled in creation
order when :func:`run` ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import math
import random
import threading
import types
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from contextvars import Context, copy_context
from types import EllipsisType
from typing import Any, TypeVar, TypeVarTuple, Unpack

from ..clock import Clock
from . import _hugepages
from ._sched import Scheduler

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

#: Where a simulation's wall clock starts unless told otherwise: 2000-01-01 00:00:00 UTC.
#: Fixed, so a run (and what an application prints of the date) depends only on the seed.
CLOCK_START = 946_684_800.0

#: :func:`run`'s default ``idle_timeout``: wall-clock seconds a simulation may wait with
#: nothing ready or scheduled (only real I/O or another thread could wake it) before
#: :class:`SimDeadlock` says it is stuck.
DEFAULT_IDLE_TIMEOUT = 10.0

#: Virtual seconds that tasks left over when ``main`` returns get to finish once cancelled
#: (a connection's close, a server's teardown); what still waits then is abandoned.
TEARDOWN_GRACE = 5.0
_TEARDOWN_ROUNDS = 10


class _TaskNote:
    """What the loop notes of a task: its creation rank (-1: not made by the loop's
    factory) and, in a simulated network, the host it runs for (see NetworkLoop.owner)."""

    __slots__ = ("host", "order")

    def __init__(self, order: int, host: str | None = None) -> None:
        self.order = order
        self.host = host


def _rank(note: _TaskNote | None) -> int:
    return -1 if note is None else note.order


class _Handle(asyncio.Handle):
    """A callback for the ready queue, made by :meth:`SimLoop.call_soon`."""

    __slots__ = ()


class _Timer(asyncio.TimerHandle):
    """A timer made by :meth:`SimLoop.call_at` (see :mod:`miragekit.sim._sched` for the
    queue: no ``__lt__`` call orders it)."""

    __slots__ = ()

    def cancel(self) -> None:
        """``TimerHandle.cancel`` and ``Handle.cancel`` in one frame: ``asyncio.sleep``
        cancels its timer once it has fired, every time it returns (two Python frames
        and a ``super()`` there, 2,980 instructions compiled; 1,560 here)."""
        if not self._cancelled:
            loop: Any = self._loop  # type: ignore[attr-defined]
            loop._timer_handle_cancelled(self)
            self._cancelled = True
            if loop.get_debug():
                self._repr = repr(self)
            self._callback = None
            self._args = None  # type: ignore[assignment]


# Handles are made with object.__new__ and their slots set by the loop: a Python
# __init__ is a call the interpreter cannot inline, and a simulation makes a handle for
# every frame, timer and task step (a test checks they hold what asyncio's own hold).
_new: Any = object.__new__


class SimDeadlock(RuntimeError):
    """Every task waits, nothing is scheduled, and no I/O came for ``idle_timeout``."""


class _TeardownStuck(Exception):
    """Leftover tasks wait on something that cannot come (or past the grace period)."""


# Whether the scheduler is compiled (mypyc): its methods are then no Python functions.
_COMPILED = not isinstance(Scheduler.__dict__["time"], types.FunctionType)

# What SimLoop binds to each loop (instance attributes, not methods): its scheduler's,
# reached without a Python frame of the loop's (compiled: without a Python frame at
# all). Each name: the scheduler's method, and whether only when it is compiled
# (interpreted, the class's method costs callers less: they find it on the type without
# a dict lookup, measured; or, asyncio's, it is one frame either way).
# Not call_soon: made by interpreted code, a handle costs fewer instructions than made by
# compiled code (seven generic attribute stores) even with the Python frame (measured
# again with the C futures' calls: bound from the compiled scheduler, 2,400 more
# instructions per echo; and per call, the handle's end included: 2,930 interpreted,
# 3,600 compiled with the stores, 3,400 compiled through Handle.__init__, 2,820 as a
# closure bound to the loop. Reusing handles that ran would save their allocation, but
# a handle kept for reuse must let go of its callback, arguments and context: three
# stores more, and compiled stores are what costs).
# create_future and is_running are asyncio's: the C futures and tasks, asyncio.sleep and
# the streams call the first, the virtual switch the second for every frame;
# _timer_handle_cancelled is what asyncio's TimerHandle.cancel calls.
_FAST = {
    "call_at": ("call_at", False),
    "call_later": ("call_later", False),
    "time": ("time", True),
    "create_future": ("create_future", True),
    "is_running": ("is_running", True),
    "_timer_handle_cancelled": ("timer_cancelled", False),
}

# The loop's methods that schedule a handle again, bound to the scheduler's in every mode.
_AGAIN = {
    "call_at_again": "rearm",
    "call_at_instead": "replace",
    "call_soon_again": "requeue",
}


class SimLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose clock is virtual and starts at ``start``.

    ``seed`` seeds :meth:`rng`. Real I/O still works: registered descriptors are polled
    with a zero timeout between every two batches of callbacks, and the loop blocks in the selector only when nothing at
    all is ready or scheduled (then only I/O or another thread can wake it). With
    ``idle_timeout`` (wall-clock seconds) such a wait that sees nothing raises
    :class:`SimDeadlock` instead of hanging: in a pure simulation it is a deadlock.

    The ready queue, the timers and the clock are a :class:`~miragekit.sim._sched.Scheduler`'s;
    outside debug mode the loop's ``call_at`` and ``call_later`` (and ``time`` when the
    scheduler is compiled) are the scheduler's own, unless a subclass overrides them.
    """

    # asyncio's private state that this loop drives (set by BaseEventLoop.__init__).
    _ready: deque[asyncio.Handle]
    _debug: bool
    _closed: bool
    _selector: Any

    def __init__(
        self,
        *,
        seed: int = 0,
        start: float = 0.0,
        idle_timeout: float | None = None,
        clock_start: float = CLOCK_START,
    ) -> None:
        # First: asyncio's __init__ sets the state the scheduler keeps (see below).
        self._sched = Scheduler(self, _Timer, float(start))
        super().__init__()
        self._sched.ready = self._ready  # asyncio's own code appends to it too
        if idle_timeout is not None and not idle_timeout > 0:
            self.close()
            raise ValueError(f"idle_timeout must be > 0 seconds or None, got {idle_timeout}")
        self._idle_timeout = idle_timeout
        self._wall_offset = float(clock_start) - float(start)
        self._seed = seed
        self._rng = random.Random(seed)
        self._task_seq = itertools.count()
        # Each task's creation rank and host (see _TaskNote): one weak map, one weak
        # reference per task.
        self._task_notes: weakref.WeakKeyDictionary[asyncio.Task[Any], _TaskNote] = (
            weakref.WeakKeyDictionary()
        )
        self.set_task_factory(self._make_task)
        self._bind()

    # asyncio's state that lives in the scheduler (its code reads and sets these).

    @property
    def _stopping(self) -> bool:
        return self._sched.stopping

    @_stopping.setter
    def _stopping(self, value: bool) -> None:
        self._sched.stopping = value

    @property
    def _timer_cancelled_count(self) -> int:
        return self._sched.cancelled

    @_timer_cancelled_count.setter
    def _timer_cancelled_count(self, value: int) -> None:
        self._sched.cancelled = value

    @property
    def _scheduled(self) -> list[asyncio.TimerHandle]:
        """The scheduled timers in the order they will run (a copy; a sorted list is a
        heap, as asyncio's is)."""
        return self._sched.scheduled()

    @_scheduled.setter
    def _scheduled(self, value: list[asyncio.TimerHandle]) -> None:
        if value:  # asyncio's __init__ sets an empty list: nothing else may
            raise ValueError("SimLoop's timers live in its scheduler")

    @property
    def _now(self) -> float:
        return self._sched.now

    @property
    def _real_io(self) -> bool:
        """Something other than the loop's self-pipe is in the selector (kept by the
        four methods that register descriptors, see _io_changed): real I/O to poll."""
        return self._sched.real_io

    @property
    def _teardown_until(self) -> float | None:
        until = self._sched.teardown_until
        return None if until == math.inf else until

    @_teardown_until.setter
    def _teardown_until(self, value: float | None) -> None:
        self._sched.teardown_until = math.inf if value is None else value

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        self._sched.timer_cancelled(handle)

    def _bind(self) -> None:
        """Outside debug mode, make the scheduler's methods the loop's own (instance
        attributes), except those a subclass (or a benchmark's patch) overrides, and
        ``get_debug`` the C callable ``bool`` (it returns False, as asyncio's does then:
        every future's creation and every handle's cancel ask); in debug mode the loop's
        methods run, with asyncio's checks."""
        attrs = self.__dict__
        cls = type(self)
        own = {name: getattr(cls, name) is _OWN[name] for name in _FAST}
        own["call_later"] = own["call_later"] and own["call_at"]  # asyncio's calls call_at
        for name, (theirs, compiled_only) in _FAST.items():
            if own[name] and not self._debug and (_COMPILED or not compiled_only):
                attrs[name] = getattr(self._sched, theirs)
            else:
                attrs.pop(name, None)
        # call_at_again and call_soon_again: the scheduler's in every mode (it falls back
        # to the loop's call_at and call_soon in debug mode, or when they are overridden).
        sched = self._sched
        sched.reuse_timers = own["call_at"] and not self._debug
        sched.reuse_handles = cls.call_soon is _OWN["call_soon"] and not self._debug
        for name, theirs in _AGAIN.items():
            if getattr(cls, name) is _OWN[name]:
                attrs[name] = getattr(sched, theirs)
            else:
                attrs.pop(name, None)
        if cls.get_debug is _OWN["get_debug"] and not self._debug:
            attrs["get_debug"] = bool
        else:
            attrs.pop("get_debug", None)

    def set_debug(self, enabled: bool) -> None:
        super().set_debug(enabled)
        self._bind()

    # --- the virtual clock --------------------------------------------------------------

    def time(self) -> float:
        """The virtual time, in seconds since the loop was created (plus ``start``)."""
        return self._sched.now

    def wall_time(self) -> float:
        """The simulated wall clock (seconds since 1970 UTC): ``clock_start`` when the loop
        was created, advancing with :meth:`time`. What a CLOCK device reads here."""
        return self._sched.now + self._wall_offset

    @property
    def seed(self) -> int:
        return self._seed

    def rng(self) -> random.Random:
        """The loop's seeded generator: draw impairments and jitter from it."""
        return self._rng

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (timers that fall due run next)."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        self._sched.advance(seconds)

    # --- scheduling ----------------------------------------------------------------------
    # Outside debug mode the scheduler's own methods are bound to the loop (see _bind);
    # these serve debug mode, subclasses that call them through super(), and patches.

    def call_at(
        self,
        when: float,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        if not self._debug:
            made: asyncio.TimerHandle = self._sched.call_at(when, callback, *args, context=context)
            return made
        if when is None:
            raise TypeError("when cannot be None")
        self._check_closed()  # type: ignore[attr-defined]
        self._check_thread()  # type: ignore[attr-defined]
        self._check_callback(callback, "call_at")  # type: ignore[attr-defined]
        timer = asyncio.TimerHandle(when, callback, args, self, context)
        self._sched.add(timer, when)
        return timer

    def call_later(
        self,
        delay: float,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        if delay is None or self._debug:
            return super().call_later(delay, callback, *args, context=context)
        # Through call_at, as asyncio's, for a subclass's; reads the clock without a call.
        return self.call_at(self._sched.now + delay, callback, *args, context=context)

    def call_soon(
        self,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: Context | None = None,
    ) -> asyncio.Handle:
        if self._debug:
            return super().call_soon(callback, *args, context=context)
        if self._closed:
            raise RuntimeError("Event loop is closed")
        # What Handle.__init__ sets (see _new).
        handle: Any = _new(_Handle)
        handle._context = copy_context() if context is None else context
        handle._loop = self
        handle._callback = callback
        handle._args = args
        handle._cancelled = False
        handle._repr = None
        handle._source_traceback = None
        self._ready.append(handle)
        made: asyncio.Handle = handle  # typed without typing.cast, a call per callback
        return made

    def call_at_again(
        self,
        timer: asyncio.TimerHandle | None,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...] = (),
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        """``call_at(when, callback, *args, context=context)``, scheduling ``timer``
        again instead of making a new timer: it runs where and when the new one would,
        and is returned. ``timer`` must have been made for that callback and those
        arguments (a tuple, as a handle holds them) and have fired (its callback has
        started: it is in no queue; the callback's owner knows, it is running).
        ``None``, debug mode, or a subclass that overrides ``call_at``: a new timer,
        made by ``call_at``. A cancelled timer raises ``ValueError`` (it may still wait
        in the queue until purged): pass ``None``.

        Why: a protocol's own timer (a link's delivery, a TCP driver's wake-up) fires
        again and again; scheduling the same handle saves making one each time.
        """
        again: asyncio.TimerHandle = self._sched.rearm(timer, when, callback, args, context)
        return again

    def call_at_instead(
        self,
        timer: asyncio.TimerHandle,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...] = (),
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        """``timer.cancel()`` then ``call_at(when, callback, *args, context=context)``,
        for a timer made for that callback and those arguments whose callback has not
        run yet: the same run, with ``timer`` itself scheduled at ``when`` while it is
        still in the queue (a cancelled stand-in takes its old place), and returned.
        Fired and waiting to run, debug mode, or an overridden ``call_at``: it is
        cancelled and a new timer made. A cancelled timer raises ``ValueError``."""
        again: asyncio.TimerHandle = self._sched.replace(timer, when, callback, args, context)
        return again

    def call_soon_again(
        self,
        handle: asyncio.Handle | None,
        callback: Callable[..., object],
        args: tuple[Any, ...] = (),
        context: Context | None = None,
    ) -> asyncio.Handle:
        """``call_soon(callback, *args, context=context)``, queueing ``handle`` (made for
        that callback and those arguments, and run) again instead of a new handle; the
        rules of :meth:`call_at_again` apply (``None``, debug mode or an overridden
        ``call_soon``: a new handle; a cancelled one raises ``ValueError``)."""
        again: asyncio.Handle = self._sched.requeue(handle, callback, args, context)
        return again

    def close(self) -> None:
        super().close()
        self._sched.closed = True
        self._sched.clear()  # as asyncio clears its ready queue and its heap

    def _make_task(
        self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any
    ) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, **kwargs)
        self._task_notes[task] = _TaskNote(next(self._task_seq), self._task_host(kwargs))
        return task

    def _task_host(self, kwargs: dict[str, Any]) -> str | None:
        """The host a task made with ``kwargs`` (``create_task``'s) belongs to: none here;
        a network's loop says."""
        return None

    def tasks_in_creation_order(self) -> list[asyncio.Task[Any]]:
        """The unfinished tasks of this loop, oldest first."""
        notes = self._task_notes
        tasks = [t for t in asyncio.all_tasks(self) if not t.done()]
        tasks.sort(key=lambda t: _rank(notes.get(t)))
        return tasks

    def _waiting(self) -> str:
        """The first few waiting tasks by coroutine name, for a deadlock report."""
        tasks = self.tasks_in_creation_order()
        names = []
        for t in tasks[:5]:
            name = getattr(t.get_coro(), "__qualname__", "?")
            if not t.get_name().startswith("Task-"):  # a name given: say it (a host's)
                name += f" [{t.get_name()}]"
            names.append(name)
        more = f" and {len(tasks) - 5} more" if len(tasks) > 5 else ""
        return (", ".join(names) or "no task") + more

    # --- real I/O ----------------------------------------------------------------------

    def _can_be_woken(self) -> bool:
        """Whether anything outside the simulation could still wake a blocked loop: a
        registered descriptor, another thread (executors, ``call_soon_threadsafe``), or a
        signal handler."""
        return (
            self._sched.real_io
            or threading.active_count() > 1
            or bool(getattr(self, "_signal_handlers", None))
        )

    def _io_changed(self) -> None:
        """Note whether descriptors other than the self-pipe are registered: the loop
        polls the selector between batches only then (asking the selector for its map
        on every iteration costs two Python calls)."""
        selector = self._selector
        self._sched.real_io = selector is not None and len(selector.get_map()) > 1

    def _add_reader(self, fd: Any, callback: Callable[..., object], *args: Any) -> Any:
        try:
            return super()._add_reader(fd, callback, *args)  # type: ignore[misc]
        finally:
            self._io_changed()

    def _remove_reader(self, fd: Any) -> bool:
        try:
            return bool(super()._remove_reader(fd))  # type: ignore[misc]
        finally:
            self._io_changed()

    def _add_writer(self, fd: Any, callback: Callable[..., object], *args: Any) -> Any:
        try:
            return super()._add_writer(fd, callback, *args)  # type: ignore[misc]
        finally:
            self._io_changed()

    def _remove_writer(self, fd: Any) -> bool:
        try:
            return bool(super()._remove_writer(fd))  # type: ignore[misc]
        finally:
            self._io_changed()

    # --- one iteration -------------------------------------------------------------------

    def _run_once(self) -> None:
        sched = self._sched
        sched.purge()
        if sched.pending() or sched.stopping:
            # Without real I/O nothing to poll while there is work (a thread's
            # call_soon_threadsafe is in ``ready`` already; the self-pipe only wakes a
            # blocking select, which then drains it).
            events = self._selector.select(0) if sched.real_io else None
        elif self._teardown_until is not None:
            events = self._selector.select(0)
            if not events:
                raise _TeardownStuck
        elif self._idle_timeout is not None and not self._can_be_woken():
            # A pure simulation at rest: nothing can ever wake it, so say so now rather
            # than after idle_timeout seconds of waiting.
            raise SimDeadlock(
                f"simulation deadlock at t={sched.now}: every task is waiting, nothing "
                "is scheduled, and nothing outside the simulation (no real I/O, no other "
                f"thread, no signal handler) can wake it (waiting: {self._waiting()})"
            )
        else:
            # Nothing can happen unless I/O or another thread wakes us: block like asyncio.
            events = self._selector.select(self._idle_timeout)
            if not events and not sched.pending() and self._idle_timeout is not None:
                raise SimDeadlock(
                    f"simulation deadlock at t={sched.now}: every task is waiting, nothing "
                    f"is scheduled, and no I/O arrived for {self._idle_timeout}s "
                    f"(waiting: {self._waiting()}; idle_timeout=None waits for ever)"
                )
        if events:
            self._process_events(events)  # type: ignore[attr-defined]
        del events
        # Without real I/O the batches of this instant, and the instants after it, run
        # there one after the other, as successive calls would run them, without
        # returning to run_forever in between: an echo of a simulated cluster is about
        # 20 callbacks in 16 batches at 3 instants.
        if sched.run_batches():
            raise _TeardownStuck


# The loop's own methods, which _bind replaces by the scheduler's when not overridden.
_OWN: dict[str, Any] = {
    name: getattr(SimLoop, name) for name in (*_FAST, *_AGAIN, "get_debug", "call_soon")
}


def _cancel_leftovers(loop: SimLoop) -> None:
    """Cancel what is left, give it :data:`TEARDOWN_GRACE` virtual seconds to finish, and
    abandon quietly what then still waits (a server's teardown waiting on a peer that will
    never answer must not turn a finished run into a deadlock). Tasks started while
    others stop (a stack serving one last segment) are cancelled in turn."""
    loop._teardown_until = loop.time() + TEARDOWN_GRACE
    seen: list[asyncio.Task[Any]] = []
    try:
        for _ in range(_TEARDOWN_ROUNDS):
            tasks = loop.tasks_in_creation_order()
            if not tasks:
                break
            seen += tasks
            for t in tasks:
                t.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    except _TeardownStuck:
        pass
    finally:
        loop._teardown_until = None
    for t in loop.tasks_in_creation_order():
        _abandon(t)
    for t in seen:
        if not t.done() or t.cancelled():
            continue
        exc = t.exception()
        if exc is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during miragekit.sim.run() shutdown",
                    "exception": exc,
                    "task": t,
                }
            )


def _abandon(task: asyncio.Task[Any]) -> None:
    """Drop a task that will never finish without a word: no "Task was destroyed but it
    is pending!", and its coroutine closed now (its ``finally`` may need the loop, which
    is still there) rather than by the garbage collector."""
    task._log_destroy_pending = False  # type: ignore[attr-defined]
    with contextlib.suppress(BaseException):
        task.get_coro().close()


def run(
    main: Coroutine[Any, Any, T],
    *,
    seed: int = 0,
    start: float = 0.0,
    idle_timeout: float | EllipsisType | None = ...,
    debug: bool | None = None,
    clock_start: float = CLOCK_START,
) -> T:
    """Run ``main`` to completion on a fresh :class:`SimLoop`, like :func:`asyncio.run`.

    The clock starts at ``start`` (0.0), the simulated wall clock (:meth:`SimLoop.wall_time`,
    what :func:`clock` reads) at ``clock_start`` (:data:`CLOCK_START`); ``idle_timeout``
    (:data:`DEFAULT_IDLE_TIMEOUT`, ``None`` waits for ever) turns a deadlock into
    :class:`SimDeadlock` (see :class:`SimLoop`). Tasks still running when ``main`` returns
    or raises are cancelled, oldest first, and get :data:`TEARDOWN_GRACE` virtual seconds
    to finish; then async generators and the default executor are shut down and the loop
    is closed.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("miragekit.sim.run() cannot be called from a running event loop")
    if not asyncio.iscoroutine(main):
        raise TypeError(f"main must be a coroutine, got {main!r}")
    if isinstance(idle_timeout, EllipsisType):
        idle_timeout = DEFAULT_IDLE_TIMEOUT
    _hugepages.wanted_by_environment()  # a bad MIRAGEKIT_HUGE_PAGES, before anything
    loop = SimLoop(seed=seed, start=start, idle_timeout=idle_timeout, clock_start=clock_start)
    if debug is not None:
        loop.set_debug(debug)
    return run_on(loop, main)


def run_on(loop: SimLoop, main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on ``loop`` as :func:`run` does (then clean up and close ``loop``)."""
    # The collector's settings come back once the loop is closed: a collection that
    # finalises a forgotten StreamWriter then starts nothing on this loop.
    with _collector_for_simulation(), _hugepages.backing():
        asyncio.set_event_loop(loop)
        try:
            return loop.run_until_complete(main)
        finally:
            try:
                _cancel_leftovers(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
                for t in loop.tasks_in_creation_order():
                    _abandon(t)  # started during those last steps (a connection accepted late)
            finally:
                asyncio.set_event_loop(None)
                loop.close()


#: Young-generation threshold of the cyclic garbage collector during a run.
_GC_YOUNG = 100_000


@contextlib.contextmanager
def _collector_for_simulation() -> Iterator[None]:
    """Tune Python's cyclic garbage collector for the length of a run.

    Why: a simulation holds a large heap that changes slowly (stacks, connections,
    tasks) and makes a stream of objects that live for a while of virtual time (frames
    on the wire, timers, the futures of sleeping tasks). They reach the oldest
    generation and trigger full collections, each of which walks the whole heap again:
    at 500 hosts that was a third of the run. During a run young collections come less
    often, and what survives a full collection is frozen (:func:`gc.freeze`), so the
    next one walks only newer objects (cyclic garbage among frozen objects waits for
    the end of the run). When the run ends everything is unfrozen and the thresholds
    are restored. Nothing changes when the collector is disabled or something else
    froze objects already.
    """
    if not gc.isenabled() or gc.get_freeze_count():
        yield
        return
    old = gc.get_threshold()
    froze = False

    def freeze(phase: str, info: dict[str, int]) -> None:
        nonlocal froze
        if phase == "stop" and info["generation"] == 2:
            gc.freeze()
            froze = True

    gc.set_threshold(max(old[0], _GC_YOUNG), old[1], old[2])
    gc.callbacks.append(freeze)
    try:
        yield
    finally:
        gc.callbacks.remove(freeze)
        gc.set_threshold(*old)
        if froze:
            gc.unfreeze()  # the next collections see them again


def _running_sim() -> SimLoop:
    loop = asyncio.get_running_loop()
    if not isinstance(loop, SimLoop):
        raise RuntimeError("not running on a miragekit.sim.SimLoop")
    return loop


def now() -> float:
    """The running loop's time: virtual on a :class:`SimLoop`, monotonic otherwise."""
    return asyncio.get_running_loop().time()


def rng() -> random.Random:
    """The running :class:`SimLoop`'s seeded generator (``RuntimeError`` elsewhere)."""
    return _running_sim().rng()


def clock() -> Clock:
    """A CLOCK on the running :class:`SimLoop`'s simulated wall clock."""
    return Clock(_running_sim().wall_time)


def current() -> SimLoop | None:
    """The running :class:`SimLoop`, or ``None`` if the running loop is not simulated."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return loop if isinstance(loop, SimLoop) else None
