"""The chunked send buffer: views, spans across chunks, consumption, coalescing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miragekit.tcp._sendbuf import _NO_CHUNKS, SendBuffer


def test_views_are_zero_copy_and_stable() -> None:
    sb = SendBuffer()
    big = bytes(range(256)) * 400
    sb.append(big)
    v = sb.slice(100, 1000)
    assert isinstance(v, memoryview) and v.obj is big
    sb.consume(50_000)  # acknowledged; the view a segment holds stays valid
    assert bytes(v) == big[100:1100]


def test_a_whole_chunk_is_the_chunk_itself() -> None:
    """A reply that is one whole chunk goes out as its bytes, no view made; a part of
    a chunk, or the rest after a consume, is still a view."""
    sb = SendBuffer()
    reply = b"HTTP/1.1 200 OK\r\n" * 10
    sb.append(reply)
    assert sb.slice(0, len(reply)) is sb._chunks[0]
    assert isinstance(sb.slice(0, 10), memoryview)
    sb.consume(5)
    part = sb.slice(0, len(reply) - 5)
    assert isinstance(part, memoryview) and bytes(part) == reply[5:]


def test_span_and_consume_and_bounds() -> None:
    sb = SendBuffer()
    sb.append(b"a" * 5000)
    sb.append(b"b" * 5000)
    assert bytes(sb.slice(4990, 20)) == b"a" * 10 + b"b" * 10
    sb.consume(4995)
    assert len(sb) == 5005
    assert bytes(sb.slice(0, 10)) == b"aaaaabbbbb"
    with pytest.raises(ValueError, match="off/n"):
        sb.slice(5000, 10)


def test_small_writes_coalesce() -> None:
    sb = SendBuffer()
    for _ in range(1000):
        sb.append(b"xy")
    assert len(sb._chunks) == 1 and len(sb) == 2000


@given(st.lists(st.binary(max_size=7000), max_size=20), st.data())
def test_matches_a_plain_bytearray(writes: list[bytes], data: st.DataObject) -> None:
    sb = SendBuffer()
    ref = bytearray()
    for w in writes:
        sb.append(memoryview(w))
        ref += w
        if ref and data.draw(st.booleans()):
            n = data.draw(st.integers(0, len(ref)))
            sb.consume(n)
            del ref[:n]
        if ref:
            off = data.draw(st.integers(0, len(ref) - 1))
            n = data.draw(st.integers(0, len(ref) - off))
            assert bytes(sb.slice(off, n)) == ref[off : off + n]
    assert len(sb) == len(ref)


def test_mutable_data_is_copied_bytes_kept_as_they_are() -> None:
    """``append`` keeps ``bytes`` themselves (immutable) and copies anything mutable: the
    application may reuse its bytearray or the memory under its view at once."""
    sb = SendBuffer()
    data = b"reply" * 1000  # above the coalescing size: a chunk of its own
    sb.append(data)
    assert sb.slice(0, len(data)) is data
    mutable = bytearray(b"x" * 5000)
    view = memoryview(bytearray(b"y" * 5000))
    sb.append(mutable)
    sb.append(view)
    mutable[:] = b"z" * 5000
    view[:] = b"z" * 5000
    assert bytes(sb.slice(len(data), 10000)) == b"x" * 5000 + b"y" * 5000


def test_an_emptied_buffer_holds_no_deque_of_its_own() -> None:
    """Everything acknowledged (or the buffer cleared), the buffer goes back to the shared
    empty deque: an idle connection holds no 760-byte deque; the next append makes one."""
    sb = SendBuffer()
    assert sb._chunks is _NO_CHUNKS
    sb.append(b"x" * 100)
    assert sb._chunks is not _NO_CHUNKS
    sb.consume(100)
    assert sb._chunks is _NO_CHUNKS and len(sb) == 0
    sb.append(b"y" * 10)
    assert bytes(sb.slice(0, 10)) == b"y" * 10
    sb.clear()
    assert sb._chunks is _NO_CHUNKS and not len(_NO_CHUNKS)
