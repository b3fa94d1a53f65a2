"""Argument checks shared by every BLOCK implementation (programming errors raise)."""

from __future__ import annotations

from collections.abc import Sequence

from ..v1 import Buffer


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
    if isinstance(buffers, bytes | bytearray | memoryview):
        raise TypeError("buffers must be a list of buffers, not a single buffer")
    if sector_start < 0:
        raise ValueError(f"sector_start must be >= 0, got {sector_start}")
    total = 0
    for i, b in enumerate(buffers):
        mv = memoryview(b)
        if writable and mv.readonly:
            raise TypeError(f"buffers[{i}] is read-only; read needs writable buffers")
        if not mv.c_contiguous:
            raise ValueError(f"buffers[{i}] is not contiguous memory")
        n = mv.nbytes
        if n % sector_size:
            raise ValueError(
                f"buffers[{i}] is {n} bytes, not a whole number of {sector_size}-byte sectors"
            )
        total += n // sector_size
    if sector_start + total > size_sectors:
        raise ValueError(
            f"sector_start {sector_start} + {total} sectors is beyond the device "
            f"({size_sectors} sectors)"
        )
    return total
