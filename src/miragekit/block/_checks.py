"""Argument checks shared by every BLOCK implementation (programming errors raise).

This runs on every request, so the common buffers (``bytearray``, ``bytes``, a
``memoryview``) are measured without making a new view; only a bad request pays for
finding out exactly what is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..v1 import Buffer

_SINGLE = (bytes, bytearray, memoryview)


def check_request(
    sector_start: int,
    buffers: Sequence[Buffer],
    sector_size: int,
    size_sectors: int,
    *,
    writable: bool,
) -> int:
    """Validate a read/write request; return its length in sectors.

    Raises ``ValueError`` (naming the argument) for a negative or out-of-range sector and
    for a buffer that is not a whole number of sectors or not contiguous; ``TypeError``
    for a read into a read-only buffer or a single buffer passed instead of a list.
    Nothing has been touched when it raises.
    """
    if type(buffers) is not list and isinstance(buffers, _SINGLE):
        raise TypeError("buffers must be a list of buffers, not a single buffer")
    if sector_start < 0:
        raise ValueError(f"sector_start must be >= 0, got {sector_start}")
    total = 0
    for b in buffers:
        t = type(b)
        if t is bytearray:
            n = len(b)
        elif t is memoryview:
            mv: memoryview = b  # type: ignore[assignment]
            if (writable and mv.readonly) or not mv.c_contiguous:
                _explain(buffers, sector_size, writable)
            n = mv.nbytes
        elif t is bytes and not writable:
            n = len(b)
        else:
            with memoryview(b) as mv:
                if (writable and mv.readonly) or not mv.c_contiguous:
                    _explain(buffers, sector_size, writable)
                n = mv.nbytes
        if n % sector_size:
            _explain(buffers, sector_size, writable)
        total += n
    sectors = total // sector_size
    if sector_start + sectors > size_sectors:
        raise ValueError(
            f"sector_start {sector_start} + {sectors} sectors is beyond the device "
            f"({size_sectors} sectors)"
        )
    return sectors


def _explain(buffers: Sequence[Buffer], sector_size: int, writable: bool) -> None:
    """Raise the error that names the first bad buffer."""
    for i, b in enumerate(buffers):
        with memoryview(b) as mv:
            if writable and mv.readonly:
                raise TypeError(f"buffers[{i}] is read-only; read needs writable buffers")
            if not mv.c_contiguous:
                raise ValueError(f"buffers[{i}] is not contiguous memory")
            if mv.nbytes % sector_size:
                raise ValueError(
                    f"buffers[{i}] is {mv.nbytes} bytes, not a whole number of "
                    f"{sector_size}-byte sectors"
                )
    raise AssertionError("unreachable: no bad buffer found")  # pragma: no cover
