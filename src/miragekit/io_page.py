"""IO_PAGE: page-aligned memory, the module itself implementing :class:`v1.IOPage`.

Every block comes from an anonymous ``mmap``, so it starts on a page boundary (the
kernel hands out whole pages) and can go straight to ``preadv``/``O_DIRECT``-style I/O.
Blocks are ``memoryview`` objects of format ``"B"``; the view keeps its mapping alive.

Small blocks (up to ``_SMALL`` pages) are carved, each page handed out once, from a
shared mapping of ``_ARENA`` pages made with its pages already present: a mapping of
its own per block cost an ``mmap``, a page fault per page and a ``munmap`` (measured
~30-80 µs per one-page block in this VM, most of a small web response's cost). The
price: a small block kept alive keeps its arena's 128 KiB mapped.
"""

from __future__ import annotations

import mmap
import threading

from . import v1

PAGE_SIZE: int = mmap.PAGESIZE
"""The host's page size in bytes (4096 on most machines)."""

_SMALL = 4
_ARENA = 32
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
_arena = memoryview(b"")
_arena_next = 0
_arena_lock = threading.Lock()  # blocks are taken from worker threads too (FileBlock)

_MAX_ORDER = 40


def _check_count(name: str, n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"{name} must be an int, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"{name} must be >= 0, got {n}")


def _order(i: int) -> int:
    _check_count("i", i)
    if i > _MAX_ORDER:
        raise ValueError(f"i must be <= {_MAX_ORDER}, got {i}")
    return 1 << i


def get(n: int) -> memoryview:
    """A fresh, zeroed block of ``n`` pages (``n == 0`` gives an empty block)."""
    _check_count("n", n)
    if n == 0:
        return memoryview(bytearray())
    if n > _SMALL:
        return memoryview(mmap.mmap(-1, n * PAGE_SIZE))
    global _arena, _arena_next
    size = n * PAGE_SIZE
    with _arena_lock:
        start = _arena_next
        if start + size > len(_arena):
            flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _POPULATE
            _arena = memoryview(mmap.mmap(-1, _ARENA * PAGE_SIZE, flags=flags))
            start = 0
        _arena_next = start + size
        return _arena[start : start + size]


def get_order(i: int) -> memoryview:
    """``get(2**i)``."""
    return get(_order(i))


def pages(n: int) -> list[memoryview]:
    """``n`` fresh pages, as one-page views into a single allocation."""
    return to_pages(get(n))


def pages_order(i: int) -> list[memoryview]:
    """``pages(2**i)``."""
    return pages(_order(i))


def length(t: memoryview) -> int:
    """The size of ``t`` in bytes."""
    return memoryview(t).nbytes


def to_cstruct(t: memoryview) -> memoryview:
    """``t`` as a byte buffer (the same memory, no copy)."""
    return memoryview(t).cast("B")


def to_string(t: memoryview) -> bytes:
    """A copy of ``t``'s bytes."""
    return bytes(t)


def to_pages(t: memoryview) -> list[memoryview]:
    """``t`` split into one-page views (no copy); ``t`` must be whole pages."""
    mv = memoryview(t).cast("B")
    if len(mv) % PAGE_SIZE:
        raise ValueError(f"t is {len(mv)} bytes, not a whole number of {PAGE_SIZE}-byte pages")
    return [mv[off : off + PAGE_SIZE] for off in range(0, len(mv), PAGE_SIZE)]


def string_blit(src: v1.Buffer | str, srcoff: int, dst: memoryview, dstoff: int, len: int) -> None:
    """Copy ``len`` bytes of ``src`` from ``srcoff`` into ``dst`` at ``dstoff``.

    A ``str`` is taken as its UTF-8 bytes (offsets count bytes). Nothing is copied when
    an argument is out of range.
    """
    data = memoryview(src.encode() if isinstance(src, str) else src).cast("B")
    out = memoryview(dst).cast("B")
    for name, v in (("srcoff", srcoff), ("dstoff", dstoff), ("len", len)):
        _check_count(name, v)
    if srcoff + len > data.nbytes:
        raise ValueError(f"srcoff {srcoff} + len {len} is beyond src ({data.nbytes} bytes)")
    if dstoff + len > out.nbytes:
        raise ValueError(f"dstoff {dstoff} + len {len} is beyond dst ({out.nbytes} bytes)")
    if out.readonly:
        raise TypeError("dst is read-only")
    out[dstoff : dstoff + len] = data[srcoff : srcoff + len]


def blit(t1: memoryview, t2: memoryview) -> None:
    """Copy all of ``t1`` into ``t2``; both must have the same length."""
    src = memoryview(t1).cast("B")
    dst = memoryview(t2).cast("B")
    if src.nbytes != dst.nbytes:
        raise ValueError(f"t2 is {dst.nbytes} bytes but t1 is {src.nbytes}: lengths must match")
    if dst.readonly:
        raise TypeError("t2 is read-only")
    dst[:] = src


def round_to_page_size(n: int) -> int:
    """The bytes allocated to hold ``n`` bytes: ``n`` rounded up to whole pages."""
    _check_count("n", n)
    return -(-n // PAGE_SIZE) * PAGE_SIZE


def _self_check() -> None:
    from . import io_page

    _check: v1.IOPage = io_page
    del _check


__all__ = [
    "PAGE_SIZE",
    "blit",
    "get",
    "get_order",
    "length",
    "pages",
    "pages_order",
    "round_to_page_size",
    "string_blit",
    "to_cstruct",
    "to_pages",
    "to_string",
]
