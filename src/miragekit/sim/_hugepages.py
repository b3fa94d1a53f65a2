"""Back a simulation's heap with 2 MB pages where Linux allows it.

Why: a simulated cluster of hundreds of hosts holds hundreds of megabytes of Python
objects, and it touches each connection's objects about once a simulated second, after
all the others. Each of those accesses misses the caches and, with 4 KB pages, the
processor's address-translation cache too (a few thousand entries cover about 10 MB),
so the processor walks the page tables as well. With 2 MB pages some 150 entries cover
the whole heap: at 500 hosts an echo costs 10-15% less CPU.

Linux backs a process's memory with 2 MB pages by itself ("transparent huge pages")
only when ``/sys/kernel/mm/transparent_hugepage/enabled`` says ``always``; Debian's
default, ``madvise``, does it only for memory the process asks for, and Python's
allocator never asks. So while a simulation runs, every time the process has grown by
:data:`GROWTH` bytes since it last looked or last shrank (looked at after each run of the garbage collector, which runs as
objects are made), the writable anonymous mappings of ``/proc/self/maps`` are advised
(``MADV_HUGEPAGE``) and collapsed now (``MADV_COLLAPSE``, Linux 6.1 and later) rather
than by the kernel's background thread over minutes. No object moves and nothing is
scheduled, so a seeded run is the same run. ``MIRAGEKIT_HUGE_PAGES=0`` (or ``off``) turns it off;
where the calls are missing (not Linux, an older kernel, ``never``) it does nothing.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

#: ``<sys/mman.h>`` on Linux.
MADV_HUGEPAGE: Final = 14
MADV_COLLAPSE: Final = 25

#: The size of a huge page on x86-64 and arm64 with 4 KB base pages.
HUGE: Final = 2 << 20

#: How much the process grows between two looks at its mappings.
GROWTH: Final = 16 << 20

#: The environment variable that turns it off (``0``).
ENV: Final = "MIRAGEKIT_HUGE_PAGES"

#: Where Linux says whether it backs memory with huge pages at all.
THP_SETTING: Final = "/sys/kernel/mm/transparent_hugepage/enabled"


@dataclass
class HugePageStats:
    """What a run did: how many times it looked at the mappings, the bytes advised
    (a mapping that grew is counted again) and collapsed onto 2 MB pages, the CPU
    seconds that took, and why it did not ask or stopped asking (``""``: it did not)."""

    scans: int = 0
    advised: int = 0
    collapsed: int = 0
    seconds: float = 0.0
    unavailable: str = ""


#: The last (or current) run's figures.
last_run = HugePageStats()


def huge_page_stats() -> HugePageStats:
    """What the last (or the current) run did to put its heap on 2 MB pages."""
    return last_run


def _madvise() -> Any:
    """libc's ``madvise``, or ``None`` where there is none to call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (ImportError, OSError, AttributeError):  # a Python without ctypes, no libc
        return None
    fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


def system_mode(path: str = THP_SETTING) -> str:
    """The system's setting (``always``, ``madvise`` or ``never``), ``""`` if unknown."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return ""
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else ""


def anonymous_writable(maps: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` of each writable private mapping with no file behind it
    (or the ``[heap]``), from the text of ``/proc/self/maps``, in its order."""
    out: list[tuple[int, int]] = []
    for line in maps.splitlines():
        parts = line.split()
        if len(parts) < 5 or not parts[1].startswith("rw") or parts[1][3:4] != "p":
            continue
        if len(parts) > 5 and parts[5] != "[heap]":
            continue  # a file, the stack, vdso...
        start, _, end = parts[0].partition("-")
        out.append((int(start, 16), int(end, 16)))
    return out


def huge_span(start: int, end: int) -> tuple[int, int] | None:
    """The part of ``[start, end)`` made of whole 2 MB pages, or ``None`` if it has none."""
    a = (start + HUGE - 1) & ~(HUGE - 1)
    b = end & ~(HUGE - 1)
    return (a, b) if b - a >= HUGE else None


class _Backer:
    """Advises and collapses the heap's mappings as the process grows (one run)."""

    def __init__(self, madvise: Any, stats: HugePageStats) -> None:
        import ctypes

        self._errno = ctypes.get_errno
        self._madvise = madvise
        self._stats = stats
        self._done: set[tuple[int, int]] = set()
        self._collapse = True
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._statm = os.open("/proc/self/statm", os.O_RDONLY)
        self._seen = self._resident()

    def close(self) -> None:
        os.close(self._statm)

    def _resident(self) -> int:
        return int(os.pread(self._statm, 64, 0).split()[1]) * self._page

    def after_collection(self, phase: str, info: dict[str, int]) -> None:
        if phase != "stop" or self._stats.unavailable:
            return
        try:
            now = self._resident()
            if now < self._seen:
                self._seen = now  # it shrank: growth counts from here
            elif now - self._seen >= GROWTH:
                self._seen = now
                self.scan()
        except OSError as e:  # /proc went away (a sandbox): stop asking, quietly
            self._stats.unavailable = f"/proc/self: {e.strerror}"

    def scan(self) -> None:
        t0 = time.process_time()
        stats = self._stats
        stats.scans += 1
        with open("/proc/self/maps") as f:
            maps = f.read()
        for start, end in anonymous_writable(maps):
            span = huge_span(start, end)
            if span is None or span in self._done:
                continue
            self._done.add(span)
            a, b = span
            if self._madvise(start, end - start, MADV_HUGEPAGE) != 0:
                stats.unavailable = f"madvise(MADV_HUGEPAGE): {os.strerror(self._errno())}"
                break
            stats.advised += end - start
            if self._collapse:
                if self._madvise(a, b - a, MADV_COLLAPSE) == 0:
                    stats.collapsed += b - a
                elif self._errno() == errno.EINVAL:  # a kernel without it
                    self._collapse = False
        stats.seconds += time.process_time() - t0


_ON: Final = {"1": True, "on": True, "yes": True, "true": True}
_OFF: Final = {"0": False, "off": False, "no": False, "false": False}


def wanted_by_environment() -> bool:
    """What :data:`ENV` says (unset or empty: yes); ``ValueError`` naming it when it
    says something else than 0/1, off/on, no/yes or false/true."""
    text = os.environ.get(ENV, "").strip().lower()
    if not text:
        return True
    try:
        return {**_ON, **_OFF}[text]
    except KeyError:
        raise ValueError(
            f"{ENV} must be 0 or 1 (or off/on, no/yes, false/true), got {os.environ[ENV]!r}"
        ) from None


@contextlib.contextmanager
def backing() -> Iterator[HugePageStats]:
    """Ask for 2 MB pages under the heap while the block runs (see the module's text);
    yields the run's :class:`HugePageStats` (also :data:`last_run`)."""
    global last_run
    wanted = wanted_by_environment()
    stats = last_run = HugePageStats()
    if not wanted:
        stats.unavailable = f"{ENV}={os.environ[ENV]}"
        yield stats
        return
    madvise = _madvise()
    mode = system_mode()
    if madvise is None or mode == "never":
        stats.unavailable = (
            "no madvise on this system" if madvise is None else f"{THP_SETTING}: never"
        )
        yield stats
        return
    try:
        backer = _Backer(madvise, stats)
    except OSError as e:
        stats.unavailable = f"/proc/self/statm: {e.strerror}"
        yield stats
        return
    gc.callbacks.append(backer.after_collection)
    try:
        yield stats
    finally:
        gc.callbacks.remove(backer.after_collection)
        backer.close()
