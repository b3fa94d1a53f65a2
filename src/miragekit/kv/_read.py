"""Reading a value's bytes into page-aligned buffers (what KV_RO.read returns)."""

from __future__ import annotations

import os
from typing import Protocol

from .. import io_page


class _Reader(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def pread_pages(fd: int, pos: int, n: int) -> list[memoryview]:
    """Up to ``n`` bytes of ``fd`` from ``pos`` in one page-aligned buffer (``[]`` if none)."""
    if n <= 0:
        return []
    buf = io_page.get(io_page.round_to_page_size(n) // io_page.PAGE_SIZE)
    got = 0
    while got < n:
        k = os.preadv(fd, [buf[got:n]], pos + got)
        if k == 0:
            break
        got += k
    return [buf[:got]] if got else []


def stream_pages(f: _Reader, n: int) -> list[memoryview]:
    """Up to ``n`` bytes read from a file object into one page-aligned buffer."""
    if n <= 0:
        return []
    buf = io_page.get(io_page.round_to_page_size(n) // io_page.PAGE_SIZE)
    got = 0
    while got < n:
        chunk = f.read(min(n - got, 1 << 20))
        if not chunk:
            break
        buf[got : got + len(chunk)] = chunk
        got += len(chunk)
    return [buf[:got]] if got else []
