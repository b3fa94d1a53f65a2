"""One rule for the buffers a signature accepts: any bytes-like object, strided or not.

Why: a ``memoryview`` slice with a step (``view[::2]``) is a valid buffer, but casting or
writing it to a socket needs contiguous memory. Every backend passes what it is given
through :func:`flat`, so such a buffer is copied once instead of raising ``TypeError``
on some backends and not others.
"""

from __future__ import annotations

from .v1 import Buffer


def flat(buf: Buffer) -> memoryview:
    """``buf`` as a one-dimensional byte view; non-contiguous memory is copied."""
    mv = memoryview(buf)
    if not mv.c_contiguous:
        return memoryview(mv.tobytes())
    return mv if mv.ndim == 1 and mv.format == "B" else mv.cast("B")
