"""The send buffer: immutable chunks, so segments can carry views without copying.

``send`` copies the application's bytes once into a ``bytes`` chunk; a segment's payload
is a ``memoryview`` slice of one chunk (a copy only when it spans two), which stays valid
for as long as anyone holds it because the chunk never changes. Acknowledged chunks are
dropped from the front. Small writes are coalesced so the chunk list stays short.
The chunk deque is made at the first ``append``: an empty deque costs 760 bytes, and
many connections (idle ones, a server that only reads) never send. Emptied (everything
acknowledged), the buffer drops its deque for the shared empty one: a deque's ``clear()``
frees its block and allocates a fresh one anyway, so an idle connection would hold 760
bytes that the next ``append`` can make as cheaply.
``size`` is the byte count as a plain attribute: the connection reads it about ten times
per short connection, where ``len()`` would call ``__len__`` in Python each time.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from ..v1 import Buffer

__all__ = ["SendBuffer"]

_COALESCE: Final = 4096
# Shared by every buffer that has not sent yet; maxlen 0, so it can never hold a chunk.
_NO_CHUNKS: Final[deque[bytes]] = deque(maxlen=0)


class SendBuffer:
    __slots__ = ("_chunks", "_head", "size")

    def __init__(self) -> None:
        self._chunks: deque[bytes] = _NO_CHUNKS
        self._head = 0  # bytes of the first chunk already consumed
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def append(self, data: Buffer) -> None:
        n = len(data)
        if not n:
            return
        chunks = self._chunks
        if chunks is _NO_CHUNKS:
            chunks = self._chunks = deque()
        if n < _COALESCE and chunks and len(chunks[-1]) < _COALESCE:
            chunks[-1] += bytes(data)
        else:
            # bytes as they are (immutable: no copy needed), saving the type call that
            # ``bytes()`` of them costs even though it gives the same object back.
            chunks.append(data if type(data) is bytes else bytes(data))
        self.size += n

    def consume(self, n: int) -> None:
        """Drop ``n`` bytes from the front (they were acknowledged)."""
        if n >= self.size:
            self.clear()
            return
        self.size -= n
        chunks = self._chunks
        head = self._head + n
        while head >= len(chunks[0]):
            head -= len(chunks.popleft())
        self._head = head

    def clear(self) -> None:
        self._chunks = _NO_CHUNKS
        self._head = 0
        self.size = 0

    def slice(self, off: int, n: int) -> memoryview | bytes:
        """``n`` bytes from ``off`` (relative to the front), as a view when possible."""
        if off < 0 or n < 0 or off + n > self.size:
            raise ValueError("off/n: beyond the buffered data")
        chunks = self._chunks
        pos = self._head + off
        if not pos and n == len(chunks[0]):
            return chunks[0]  # one whole chunk (a short reply): the bytes themselves
        i = 0
        while pos >= len(chunks[i]):
            pos -= len(chunks[i])
            i += 1
        chunk = chunks[i]
        if pos + n <= len(chunk):
            return memoryview(chunk)[pos : pos + n]
        parts = [memoryview(chunk)[pos:]]
        need = n - (len(chunk) - pos)
        while need:
            i += 1
            chunk = chunks[i]
            take = min(need, len(chunk))
            parts.append(memoryview(chunk)[:take])
            need -= take
        return b"".join(parts)
