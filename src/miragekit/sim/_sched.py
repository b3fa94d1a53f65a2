"""The hot part of the simulator's loop: its ready queue, its timers and its clock.

Why a class of its own: :class:`~miragekit.sim.SimLoop` subclasses asyncio's loop, which
mypyc cannot compile natively. :class:`Scheduler` is a plain class that the optional
compiled build makes native; the loop binds its ``call_at``, ``call_later`` and
``timer_cancelled`` (and, when compiled, ``time``, ``create_future`` and ``is_running``)
to itself (instance attributes), so the stacks, links, asyncio's futures and
``asyncio.sleep`` reach them without a frame of the loop's (compiled: without a Python
frame at all), and :meth:`Scheduler.run_batches` is the loop's inner loop. ``call_soon``
stays the loop's: made by compiled code a handle costs seven generic attribute stores,
more than an interpreted frame.

Timers: a list per deadline (its timers in the order they were scheduled) in a dict, and
the distinct deadlines in a calendar: slots of 1/64 s (a dict of unsorted lists, and a
heap of the slot numbers), and the current slot's deadlines sorted, taken in order. Why
not one heap of deadlines: in a large simulation each deadline is a float object made
about a second before it is due, cold in every cache by then, and a heap's pop compares
two of them at each of its ~14 levels. The calendar touches each once when its slot's
list is sorted, and its heap holds the few slots of the next second or two. Timers
sharing a deadline cost one entry, and the run order is exactly that of ``(deadline,
scheduling order)``. A timer for the present instant skips even
that: it waits in ``due_now`` and runs after the due buckets at the next batch, which is
where its deadline and scheduling order put it.

Handles scheduled again (:meth:`Scheduler.rearm`, :meth:`Scheduler.requeue`, the loop's
``call_at_again`` and ``call_soon_again``): a timer that fired, or a callback that ran,
is in no queue, so the same object can go where a new one would, in the same order,
for a few slot stores instead of a new handle's nine (a link's drain, a TCP driver's
timer and flush: five timers and five callbacks an echo of a simulated cluster). A timer
still queued can move (:meth:`Scheduler.replace`): a cancelled stand-in keeps its old
place, so the queue holds what ``cancel()`` and a new timer would have left.
"""

from __future__ import annotations

from asyncio import Future, format_helpers
from bisect import insort
from collections import deque
from collections.abc import Callable
from contextvars import Context, copy_context
from heapq import heappop, heappush
from typing import Any, Final

# Purge cancelled timers in bulk when they are this many and this large a share.
PURGE_MIN: Final = 100
PURGE_FRACTION: Final = 0.5

_INF: Final = float("inf")

# The calendar's slots: a deadline's slot is int(deadline * SLOTS_PER_SECOND) (never
# smaller for a later deadline); infinities and NaN go to the slots beyond FAR.
SLOTS_PER_SECOND: Final = 64.0
FAR: Final = 1e18
_FAR_SLOT: Final = 10**18

# Context.run itself, called with the context first: compiled code calls a method by
# name with a look-up of "run" in the context's type at every call (about 800
# instructions, some fifteen times an echo of a simulated cluster), this one directly.
_run_in: Final = Context.run

# Timers are made with object.__new__ and their slots set here: asyncio's __init__ is a
# Python call, and a simulation makes a timer for every frame on a link with latency,
# TCP timer and sleep (a test checks they hold what asyncio's own hold).
_new: Any = object.__new__


def report(handle: Any, exc: BaseException) -> None:
    """What ``asyncio.Handle._run`` does when its callback raised: the loop runs
    callbacks itself (one call fewer each), so it reports their exceptions here."""
    cb = format_helpers._format_callback_source(handle._callback, handle._args)
    context: dict[str, Any] = {
        "message": f"Exception in callback {cb}",
        "exception": exc,
        "handle": handle,
    }
    tb = handle._source_traceback
    if tb:
        context["source_traceback"] = tb
    handle._loop.call_exception_handler(context)


class Scheduler:
    """A :class:`~miragekit.sim.SimLoop`'s ready queue (asyncio's own deque), timers and
    virtual clock, and the loop's batches of callbacks.

    ``timer_type`` is the ``asyncio.TimerHandle`` subclass it makes (without calling its
    ``__init__``); the loop makes the handles of ``call_soon`` itself.
    """

    def __init__(self, loop: Any, timer_type: type, now: float) -> None:
        self.loop: Any = loop
        self.timer_type: Any = timer_type
        self.ready: deque[Any] = deque()  # the loop puts its own deque here
        # The keys of buckets, in a calendar (see the module's text): the deadlines of
        # slots up to cur_slot sorted in cur (taken from cur_i on), the later ones in
        # their slot's list, the slot numbers of those lists in a heap (restart() sets
        # them). Its reads are written out where they are made, as add()'s body is: a
        # method would put a Python call on every frame of the pure build.
        self.cur: list[float] = []
        self.cur_i = 0
        self.cur_slot = 0
        self.slots: dict[int, list[float]] = {}
        self.slot_heap: list[int] = []
        self.restart([])
        self.buckets: dict[float, list[Any]] = {}
        self.due_now: list[Any] = []  # timers made for the present instant
        self.timers = 0  # in buckets, cancelled ones included (asyncio's len(_scheduled))
        self.cancelled = 0  # asyncio's _timer_cancelled_count
        self.now = now
        self.closed = False
        self.stopping = False
        self.real_io = False  # descriptors other than the self-pipe are registered
        self.teardown_until = _INF  # no deadline past this while tearing down
        # Whether rearm and requeue reschedule the handle they are given (the loop's
        # _bind says: not in debug mode, nor when a subclass overrides call_at or
        # call_soon, which then make every handle) or ask the loop for a new one.
        self.reuse_timers = True
        self.reuse_handles = True
        # What takes the place of a timer moved by replace(): cancelled, as the timer
        # itself would be after cancel(), so the queue and its purges see what they
        # would have seen.
        gone = _new(timer_type)
        gone._context = None
        gone._loop = loop
        gone._callback = None
        gone._args = None
        gone._cancelled = True
        gone._repr = None
        gone._source_traceback = None
        gone._when = 0.0
        gone._scheduled = False
        self.gone: Any = gone

    # --- the clock and scheduling ---------------------------------------------------------

    def time(self) -> float:
        """The virtual time."""
        return self.now

    def call_at(
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: Context | None = None,
    ) -> Any:
        """``loop.call_at`` (asyncio's signature, not in debug mode)."""
        if when is None:
            raise TypeError("when cannot be None")
        if self.closed:
            raise RuntimeError("Event loop is closed")
        # The body of add() written out: a call fewer per timer in the pure build.
        timer = _new(self.timer_type)  # what TimerHandle.__init__ sets
        timer._context = copy_context() if context is None else context
        timer._loop = self.loop
        timer._callback = callback
        timer._args = args
        timer._cancelled = False
        timer._repr = None
        timer._source_traceback = None
        timer._when = when
        timer._scheduled = True
        if when == self.now:
            self.due_now.append(timer)
            return timer
        bucket = self.buckets.get(when)
        if bucket is None:
            self.buckets[when] = [timer]
            self.push(when)
        else:
            bucket.append(timer)
        self.timers += 1
        return timer

    def rearm(
        self,
        timer: Any,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...] = (),
        context: Context | None = None,
    ) -> Any:
        """``loop.call_at_again``: ``call_at(when, callback, *args, context=context)``
        with ``timer`` (made for that callback and those arguments, and fired: it is in
        no queue) scheduled again instead of a new timer, where the new one would go.
        ``timer`` None makes a new one; a cancelled timer is refused (it may still sit in
        a bucket until purged). When reuse is off the loop's ``call_at`` makes it. The
        arguments are a tuple, as a handle holds them: positional arguments only, which
        compiled callers pass without the general argument parsing (measured)."""
        if not self.reuse_timers:
            return self.loop.call_at(when, callback, *args, context=context)
        if timer is None:
            return self.call_at(when, callback, *args, context=context)
        if timer._cancelled or timer._scheduled:
            raise ValueError("only a timer that has fired and is not cancelled is rearmed")
        if self.closed:
            raise RuntimeError("Event loop is closed")
        timer._context = copy_context() if context is None else context
        timer._when = when
        # The body of add() written out, as in call_at: a call fewer per frame in the pure
        # build (tests/test_sim_speed.py counts them).
        timer._scheduled = True
        if when == self.now:
            self.due_now.append(timer)
            return timer
        bucket = self.buckets.get(when)
        if bucket is None:
            self.buckets[when] = [timer]
            self.push(when)
        else:
            bucket.append(timer)
        self.timers += 1
        return timer

    def replace(
        self,
        timer: Any,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...] = (),
        context: Context | None = None,
    ) -> Any:
        """``loop.call_at_instead``: ``timer.cancel()`` then ``call_at(when, callback,
        *args, context=context)``, for a timer made for that callback and those
        arguments whose callback has not run. Still in the queue, the timer itself goes
        where the new one would, and a cancelled stand-in where it was (counted as
        cancelled: the purges run as they would). Fired and waiting in the ready queue,
        it is cancelled there and a new timer made."""
        if timer._cancelled:
            raise ValueError("a cancelled timer is not scheduled again")
        if not self.reuse_timers or not timer._scheduled:
            timer.cancel()
            return self.rearm(None, when, callback, args, context)
        old: float = timer._when
        gone = self.gone
        bucket = self.buckets.get(old)
        found = False
        if bucket is not None:
            for i in range(len(bucket)):
                if bucket[i] is timer:
                    bucket[i] = gone
                    found = True
                    break
        if not found:
            due_now = self.due_now
            for i in range(len(due_now)):
                if due_now[i] is timer:
                    due_now[i] = gone
                    found = True
                    break
        if not found:  # not where its deadline says: leave it to asyncio's cancel
            timer.cancel()
            return self.rearm(None, when, callback, args, context)
        self.cancelled += 1  # what timer_cancelled counts for a scheduled timer
        timer._scheduled = False
        return self.rearm(timer, when, callback, args, context)

    def requeue(
        self,
        handle: Any,
        callback: Callable[..., object],
        args: tuple[Any, ...] = (),
        context: Context | None = None,
    ) -> Any:
        """``loop.call_soon_again``: ``call_soon(callback, *args, context=context)`` with
        ``handle`` (made for that callback and those arguments, and run: it is in no
        queue) queued again instead of a new handle. ``handle`` None, or reuse off: the
        loop's ``call_soon`` makes one; a cancelled handle is refused."""
        if handle is None or not self.reuse_handles:
            return self.loop.call_soon(callback, *args, context=context)
        if handle._cancelled:
            raise ValueError("a cancelled handle is not queued again")
        if self.closed:
            raise RuntimeError("Event loop is closed")
        handle._context = copy_context() if context is None else context
        self.ready.append(handle)
        return handle

    def call_later(
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: Context | None = None,
    ) -> Any:
        """``loop.call_later`` (asyncio's signature, not in debug mode)."""
        return self.call_at(self.now + delay, callback, *args, context=context)

    def create_future(self) -> Any:
        """``loop.create_future`` (what asyncio's makes: a future on the loop)."""
        return Future(loop=self.loop)

    def is_running(self) -> bool:
        """``loop.is_running`` (asyncio's test: a thread runs the loop)."""
        return self.loop._thread_id is not None

    def add(self, timer: Any, when: float) -> None:
        """Schedule ``timer`` (made elsewhere: debug mode's) for ``when``."""
        timer._scheduled = True
        if when == self.now:
            self.due_now.append(timer)
            return
        bucket = self.buckets.get(when)
        if bucket is None:
            self.buckets[when] = [timer]
            self.push(when)
        else:
            bucket.append(timer)
        self.timers += 1

    def timer_cancelled(self, timer: Any) -> None:
        """``loop._timer_handle_cancelled``: count a scheduled timer cancelled."""
        if timer._scheduled:
            self.cancelled += 1

    def advance(self, seconds: float) -> None:
        """Move the clock forward; the timers made for the old present join its bucket
        (after the timers already there, as they were scheduled after them)."""
        due_now = self.due_now
        if due_now:
            now = self.now
            bucket = self.buckets.get(now)
            if bucket is None:
                self.buckets[now] = due_now.copy()
                self.push(now)
            else:
                bucket.extend(due_now)
            self.timers += len(due_now)
            due_now.clear()
        self.now += seconds

    # --- the calendar of deadlines ---------------------------------------------------------

    def push(self, when: float) -> None:
        """Put a new deadline (one with no bucket yet) into the calendar."""
        x = when * SLOTS_PER_SECOND
        slot = int(x) if -FAR < x < FAR else (-_FAR_SLOT if x < 0 else _FAR_SLOT)
        if slot <= self.cur_slot:
            insort(self.cur, when, self.cur_i)  # among the current slot's, in order
            return
        pending = self.slots.get(slot)
        if pending is None:
            self.slots[slot] = [when]
            heappush(self.slot_heap, slot)
        else:
            pending.append(when)

    def turn(self) -> float:
        """The current slot's deadlines are all taken: the next slot's become current
        (sorted); its first deadline. Only when ``slot_heap`` is not empty."""
        slot = heappop(self.slot_heap)
        cur = self.slots.pop(slot)
        cur.sort()
        self.cur = cur
        self.cur_i = 0
        self.cur_slot = slot
        return cur[0]

    def restart(self, deadlines: list[float]) -> None:
        """Put these deadlines (distinct, in any order) in an empty calendar."""
        self.cur = []
        self.cur_i = 0
        self.cur_slot = -_FAR_SLOT - 1
        self.slots = {}
        self.slot_heap = []
        for when in deadlines:
            self.push(when)

    def scheduled(self) -> list[Any]:
        """Every scheduled timer, in the order they would run (cancelled ones too)."""
        out: list[Any] = []
        now_placed = False
        for when in sorted(self.buckets):
            if not now_placed and when > self.now:
                out += self.due_now
                now_placed = True
            out += self.buckets[when]
        if not now_placed:
            out += self.due_now
        return out

    def clear(self) -> None:
        """Forget every timer (the loop is closed)."""
        self.restart([])
        self.buckets.clear()
        self.due_now.clear()
        self.timers = 0

    def pending(self) -> bool:
        """Whether a callback is ready or a timer scheduled."""
        return bool(self.ready or self.cur_i < len(self.cur) or self.slot_heap or self.due_now)

    # --- running ---------------------------------------------------------------------------

    def purge(self) -> None:
        """asyncio's purge of cancelled timers: all of them when they are many, else the
        earliest deadlines' when none of their timers is alive (so the clock never jumps
        to a deadline where nothing runs)."""
        n = self.timers
        if n > PURGE_MIN and self.cancelled > n * PURGE_FRACTION:
            kept: dict[float, list[Any]] = {}
            total = 0
            for when, bucket in self.buckets.items():
                live: list[Any] = []
                for timer in bucket:
                    if timer._cancelled:
                        timer._scheduled = False
                    else:
                        live.append(timer)
                if live:
                    kept[when] = live
                    total += len(live)
            self.buckets = kept
            self.restart(list(kept))
            self.timers = total
            self.cancelled = 0
            return
        buckets = self.buckets
        while True:
            if self.cur_i < len(self.cur):
                when = self.cur[self.cur_i]
            elif self.slot_heap:
                when = self.turn()
            else:
                return
            bucket = buckets[when]
            for timer in bucket:
                if not timer._cancelled:
                    return
            del buckets[when]
            self.cur_i += 1
            self.timers -= len(bucket)
            self.cancelled -= len(bucket)
            for timer in bucket:
                timer._scheduled = False

    def run_batches(self) -> bool:
        """Run batch after batch of ready callbacks: the due timers join the ready queue,
        then the callbacks ready at that moment run (those they schedule wait for the
        next batch). Without real I/O this goes on instant after instant, jumping the
        clock to the next deadline, until nothing is left or the loop stops; with real
        I/O it returns after one batch (the caller polls). True: while tearing down, the
        next deadline is past the grace period."""
        ready = self.ready
        due_now = self.due_now
        popleft = ready.popleft
        while True:
            buckets = self.buckets
            if not ready and not self.stopping and not due_now:
                # Idle: jump to the next deadline instead of sleeping.
                if self.cur_i < len(self.cur):
                    when = self.cur[self.cur_i]
                elif self.slot_heap:
                    when = self.turn()
                else:
                    when = -_INF
                if when > self.now:
                    if when > self.teardown_until:
                        return True
                    self.now = when
            now = self.now
            while True:
                while True:
                    cur = self.cur
                    i = self.cur_i
                    if i < len(cur):
                        when = cur[i]
                    elif self.slot_heap:
                        when = self.turn()
                        i = 0
                    else:
                        break
                    if when > now:
                        break
                    self.cur_i = i + 1
                    bucket = buckets.pop(when)
                    self.timers -= len(bucket)
                    for timer in bucket:
                        timer._scheduled = False
                    ready.extend(bucket)
                if due_now:
                    for timer in due_now:
                        timer._scheduled = False
                    ready.extend(due_now)
                    due_now.clear()
                n = len(ready)
                if not n:
                    break  # this instant is done
                for _ in range(n):
                    handle: Any = popleft()
                    if handle._cancelled:
                        continue
                    # What handle._run() does, without its frame; report() does what it
                    # does on an exception. The usual arities are called without
                    # building a tuple of the arguments.
                    args: Any = handle._args
                    try:
                        if not args:
                            _run_in(handle._context, handle._callback)
                        elif len(args) == 1:
                            _run_in(handle._context, handle._callback, args[0])
                        else:
                            _run_in(handle._context, handle._callback, *args)
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as exc:
                        report(handle, exc)
                    handle = args = None  # no cycle through a traceback
                if self.real_io or self.stopping:
                    return False  # the caller polls the selector, or stops
                if self.now != now:
                    break  # advance(): on from the new present
            if self.real_io or self.stopping:
                return False
            self.purge()  # what the caller would do before the next instant
            if not ready and self.cur_i >= len(self.cur) and not self.slot_heap and not due_now:
                return False  # nothing left: the caller blocks (or says deadlock)
