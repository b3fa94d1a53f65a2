"""CHANNEL over FLOW: every function, CRLF, split lines, limits, flow failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miragekit import channel as channel_module
from miragekit import v1
from miragekit.channel import Channel, ChannelError, LineTooLong, OutputFull
from miragekit.result import EOF, Eof, Error, Ok, Unknown
from miragekit.testing import MemoryFlow, flow_pair

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def lines_model(data: bytes) -> list[bytes]:
    """What successive read_line calls must return for ``data``, by the mapping's rules."""
    out = []
    rest = data
    while rest:
        i = rest.find(b"\n")
        if i < 0:
            out.append(rest)
            break
        line = rest[:i]
        out.append(line[:-1] if line.endswith(b"\r") else line)
        rest = rest[i + 1 :]
    return out


def with_channel(
    pieces: Sequence[bytes],
    body: Callable[[Channel], Awaitable[T]],
    *,
    max_line: int = 1 << 20,
    **kw: Any,
) -> T:
    async def main() -> T:
        a, b = flow_pair(**kw)
        ch = Channel.create(b, max_line=max_line)

        async def writer() -> None:
            for p in pieces:
                r = await a.write(p)
                if not isinstance(r, Ok):
                    return
            await a.close()

        task = asyncio.ensure_future(writer())
        try:
            return await body(ch)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return run(main())


async def all_lines(ch: Channel) -> list[bytes]:
    out = []
    while parts := await ch.read_line():
        out.append(b"".join(parts))
    return out


# --- the signature ---------------------------------------------------------------------


def test_static_conformance_and_exports() -> None:
    check: type[v1.Channel] = Channel
    assert check is Channel
    assert issubclass(LineTooLong, ValueError) and issubclass(OutputFull, ValueError)
    assert set(channel_module.__all__) >= {"Channel", "ChannelError", "LineTooLong"}


def test_create_and_to_flow() -> None:
    a, b = flow_pair()
    ch = Channel.create(a)
    assert isinstance(ch, Channel) and ch.to_flow() is a
    assert Channel.create(b, max_line=5).max_line == 5


@pytest.mark.parametrize(
    ("kw", "arg"),
    [
        ({"max_line": 0}, "max_line"),
        ({"flush_threshold": 0}, "flush_threshold"),
        ({"flush_threshold": 10, "max_buffer": 5}, "max_buffer"),
    ],
)
def test_bad_limits(kw: dict[str, Any], arg: str) -> None:
    a, _ = flow_pair()
    with pytest.raises(ValueError, match=arg):
        Channel.create(a, **kw)


# --- read_char, read_some, read_stream, read_until -------------------------------------


def test_read_char_to_eof() -> None:
    async def body(ch: Channel) -> None:
        got = [await ch.read_char() for _ in range(5)]
        assert got == [b"a", b"b", b"c", b"d", b"e"]
        with pytest.raises(EOFError):
            await ch.read_char()
        with pytest.raises(EOFError):
            await ch.read_char()

    with_channel([b"ab", b"c", b"de"], body)


def test_read_some() -> None:
    async def body(ch: Channel) -> None:
        assert bytes(await ch.read_some(2)) == b"he"
        assert bytes(await ch.read_some()) == b"llo"  # what is buffered, no more
        assert bytes(await ch.read_some(100)) == b"world"
        assert bytes(await ch.read_some()) == b""
        assert bytes(await ch.read_some(3)) == b""
        for bad in (0, -1):
            with pytest.raises(ValueError, match="len"):
                await ch.read_some(bad)

    with_channel([b"hello", b"world"], body)


def test_read_stream() -> None:
    async def body(ch: Channel) -> list[bytes]:
        return [bytes(v) async for v in ch.read_stream(3)]

    got = with_channel([b"abcdefg", b"hi"], body)
    assert got == [b"abc", b"def", b"g", b"hi"]

    async def whole(ch: Channel) -> list[bytes]:
        return [bytes(v) async for v in ch.read_stream()]

    assert b"".join(with_channel([b"x" * 1000] * 50, whole)) == b"x" * 50_000

    async def bad(ch: Channel) -> None:
        with pytest.raises(ValueError, match="len"):
            async for _ in ch.read_stream(0):
                pass

    with_channel([b"x"], bad)


def test_read_until() -> None:
    async def body(ch: Channel) -> None:
        found, v = await ch.read_until(b",")
        assert found and bytes(v) == b"alpha"
        found, v = await ch.read_until(b",")
        assert found and bytes(v) == b""  # empty field; the comma is consumed
        found, v = await ch.read_until(b",")
        assert found and bytes(v) == b"beta gamma"  # spans three reads
        found, v = await ch.read_until(b",")
        assert not found and bytes(v) == b"tail"  # EOF first: all that was left
        found, v = await ch.read_until(b",")
        assert not found and bytes(v) == b""

    with_channel([b"alpha,,be", b"ta ", b"gamma,tail"], body)


@pytest.mark.parametrize("ch", [b"", b"ab", "a", 44])
def test_read_until_bad_char(ch: Any) -> None:
    async def body(chan: Channel) -> None:
        with pytest.raises(ValueError, match="ch"):
            await chan.read_until(ch)
        assert bytes(await chan.read_some()) == b"a,b"  # nothing consumed

    with_channel([b"a,b"], body)


# --- read_line -------------------------------------------------------------------------


def test_read_line_lf_crlf_and_eof() -> None:
    data = b"one\ntwo\r\n\r\n\nthree\rstill three\r\nlast\r"
    got = with_channel([data], all_lines)
    assert got == [b"one", b"two", b"", b"", b"three\rstill three", b"last\r"]
    assert got == lines_model(data)


def test_read_line_returns_empty_list_at_eof() -> None:
    async def body(ch: Channel) -> None:
        assert [bytes(v) for v in await ch.read_line()] == [b"x"]
        assert await ch.read_line() == []
        assert await ch.read_line() == []

    with_channel([b"x\n"], body)
    with_channel([], lambda ch: _expect_eof_line(ch))


async def _expect_eof_line(ch: Channel) -> None:
    assert await ch.read_line() == []


def test_eof_in_the_middle_of_a_line() -> None:
    assert with_channel([b"complete\npart", b"ial"], all_lines) == [b"complete", b"partial"]


@pytest.mark.parametrize(
    "data",
    [b"ab\r\ncd\nef\r\n\r\ngh", b"\r\n\n\r\r\nx\r", b"a" * 40 + b"\r\n" + b"b" * 3 + b"\n"],
)
def test_lines_split_at_every_byte_boundary(data: bytes) -> None:
    want = lines_model(data)
    for k in range(len(data) + 1):
        assert with_channel([data[:k], data[k:]], all_lines) == want, k
    for k in range(len(data) + 1):
        for j in range(k, min(k + 4, len(data)) + 1):
            assert with_channel([data[:k], data[k:j], data[j:]], all_lines) == want, (k, j)


@pytest.mark.parametrize("max_chunk", [1, 2, 3, 7])
def test_lines_through_the_chunking_flow(max_chunk: int) -> None:
    data = b"".join(b"line %d%s\n" % (i, b"\r" if i % 3 else b"") for i in range(300))
    for seed in range(3):
        got = with_channel([data], all_lines, max_chunk=max_chunk, seed=seed)
        assert got == lines_model(data)


def test_lines_with_a_yield_on_every_read() -> None:
    data = b"a\r\nbb\nccc\r\n" * 50
    assert with_channel([data[i : i + 5] for i in range(0, len(data), 5)], all_lines, delay=0) == (
        lines_model(data)
    )


def test_lines_are_zero_copy_and_stay_valid() -> None:
    async def body(ch: Channel) -> None:
        first = await ch.read_line()
        assert len(first) == 1 and first[0].readonly
        assert isinstance(first[0].obj, bytes)  # a slice of the received piece
        rest = await all_lines(ch)
        assert bytes(first[0]) == b"first" and len(rest) == 1001

    with_channel([b"first\n" + b"more\n" * 1000, b"x" * 70_000], body, capacity=100_000)


class ReusingFlow:
    """A flow whose reads return views of one reused buffer (as a NIC ring might)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self.buf = bytearray(64)

    async def read(self) -> Ok[memoryview] | Eof | Error[Unknown]:
        if not self.pieces:
            return EOF
        p = self.pieces.pop(0)
        self.buf[: len(p)] = p
        return Ok(memoryview(self.buf)[: len(p)])

    async def write(self, buf: v1.Buffer) -> Ok[None] | Eof | Error[Unknown]:
        return Ok(None)

    async def writev(self, bufs: v1.Buffers) -> Ok[None] | Eof | Error[Unknown]:
        return Ok(None)

    async def close(self) -> None:
        pass


def test_flow_reusing_its_read_buffer() -> None:
    async def main() -> None:
        flow = ReusingFlow([b"abc\nde", b"f\nghi\n", b"XYZ\n"])
        ch = Channel.create(flow)
        lines = [await ch.read_line() for _ in range(4)]
        assert [b"".join(parts) for parts in lines] == [b"abc", b"def", b"ghi", b"XYZ"]

    run(main())


def test_mixed_reads() -> None:
    async def body(ch: Channel) -> None:
        assert await ch.read_char() == b"G"
        found, v = await ch.read_until(b" ")
        assert found and bytes(v) == b"ET"
        assert b"".join(await ch.read_line()) == b"/index.html HTTP/1.1"
        assert b"".join(await ch.read_line()) == b"Host: x"
        assert await ch.read_line() == [memoryview(b"")]
        assert bytes(await ch.read_some(4)) == b"body"

    with_channel([b"GET /index", b".html HTTP/1.1\r\nHost: x\r", b"\n\r\nbody"], body)


# --- bounded memory --------------------------------------------------------------------


@pytest.mark.parametrize("max_chunk", [None, 1, 4])
def test_line_too_long_leaves_the_data(max_chunk: int | None) -> None:
    async def body(ch: Channel) -> None:
        assert b"".join(await ch.read_line()) == b"x" * 10  # exactly max_line: fine
        assert b"".join(await ch.read_line()) == b"y" * 10  # max_line + CRLF: fine
        with pytest.raises(LineTooLong, match="max_line=10"):
            await ch.read_line()
        with pytest.raises(LineTooLong):  # the refused call changed nothing
            await ch.read_line()
        drained = bytearray()
        while len(drained) < 12:
            drained += await ch.read_some(12 - len(drained))
        assert drained == b"z" * 11 + b"\n"
        assert b"".join(await ch.read_line()) == b"ok"

    data = b"x" * 10 + b"\n" + b"y" * 10 + b"\r\n" + b"z" * 11 + b"\nok\n"
    with_channel([data], body, max_line=10, max_chunk=max_chunk)


def test_read_until_too_long() -> None:
    async def body(ch: Channel) -> None:
        found, v = await ch.read_until(b";")
        assert found and bytes(v) == b"12345"
        with pytest.raises(LineTooLong):
            await ch.read_until(b";")
        assert bytes(await ch.read_some(6)) == b"123456"

    with_channel([b"12345;1234", b"56;"], body, max_line=5)


def test_endless_line_is_refused_without_reading_it_all() -> None:
    async def main() -> None:
        a, b = flow_pair(capacity=64 * 1024)
        ch = Channel.create(b, max_line=100_000)
        sent = 0

        async def writer() -> None:
            nonlocal sent
            while sent < 50_000_000:
                assert isinstance(await a.write(b"x" * 65_536), Ok)
                sent += 65_536

        task = asyncio.ensure_future(writer())
        with pytest.raises(LineTooLong):
            await ch.read_line()
        await asyncio.sleep(0.01)
        assert not task.done() and sent < 1_000_000  # back-pressure held, memory bounded
        task.cancel()

    run(main())


# --- flow failures ---------------------------------------------------------------------


def test_read_error_after_data() -> None:
    async def main() -> None:
        a, b = flow_pair()
        ch = Channel.create(b)
        await a.write(b"good\npart")
        a.fail(Unknown("reset"))
        assert b"".join(await ch.read_line()) == b"good"
        with pytest.raises(ChannelError) as e:
            await ch.read_line()
        assert e.value.error == Unknown("reset") and "reset" in str(e.value)
        assert bytes(await ch.read_some()) == b"part"  # received data is not lost
        with pytest.raises(ChannelError):
            await ch.read_some()  # the failure is remembered
        with pytest.raises(ChannelError):
            await ch.read_char()

    run(main())


def test_cancelled_read_line_loses_nothing() -> None:
    async def main() -> None:
        a, b = flow_pair()
        ch = Channel.create(b)
        await a.write(b"hal")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ch.read_line(), 0.01)
        await a.write(b"f\r\nnext\n")
        assert b"".join(await ch.read_line()) == b"half"
        assert b"".join(await ch.read_line()) == b"next"

    run(main())


# --- writing ---------------------------------------------------------------------------


async def drain(flow: MemoryFlow) -> bytes:
    got = bytearray()
    while isinstance(r := await flow.read(), Ok):
        got += r.value
    return bytes(got)


def test_writes_are_buffered_until_flush() -> None:
    async def main() -> None:
        a, b = flow_pair()
        ch = Channel.create(a)
        ch.write_char(b"<")
        ch.write_string("héllo wörld", 1, 4)
        ch.write_string(b"0123456789", 2, 3)
        ch.write_string(memoryview(b"abc"), 3, 0)
        ch.write_buffer(b"|")
        ch.write_buffer(bytearray(b"ba"))
        ch.write_buffer(memoryview(b"xmvx")[1:3])
        ch.write_line("line")
        ch.write_line(b"bytes line")
        await asyncio.sleep(0)
        assert a.queued == 0  # nothing sent before flush
        await ch.flush()
        await ch.close()
        assert await drain(b) == "<éllo".encode() + b"234|bamvline\nbytes line\n"

    run(main())


@pytest.mark.parametrize(
    ("s", "off", "n", "arg"),
    [("abc", -1, 1, "off"), ("abc", 4, 0, "off"), ("abc", 1, 3, "len"), (b"abc", 0, -1, "len")],
)
def test_write_string_bad_range(s: str | bytes, off: int, n: int, arg: str) -> None:
    async def main() -> None:
        a, b = flow_pair()
        ch = Channel.create(a)
        with pytest.raises(ValueError, match=arg):
            ch.write_string(s, off, n)
        await ch.close()
        assert await drain(b) == b""  # a refused call wrote nothing

    run(main())


def test_bad_write_arguments() -> None:
    a, _ = flow_pair()
    ch = Channel.create(a)
    with pytest.raises(ValueError, match="ch"):
        ch.write_char(b"ab")
    with pytest.raises(TypeError, match="buf"):
        ch.write_buffer(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="s"):
        ch.write_line(None)  # type: ignore[arg-type]


def test_background_flush_past_threshold() -> None:
    async def main() -> None:
        a, b = flow_pair()
        ch = Channel.create(a, flush_threshold=100, max_buffer=1000)
        ch.write_buffer(b"x" * 99)
        await asyncio.sleep(0)
        assert a.queued == 0
        ch.write_buffer(b"y")
        for _ in range(3):
            await asyncio.sleep(0)
        assert a.queued == 100  # sent without an explicit flush
        ch.write_line(b"tail")
        await ch.close()
        assert await drain(b) == b"x" * 99 + b"y" + b"tail\n"

    run(main())


def test_output_is_bounded() -> None:
    async def main() -> None:
        a, b = flow_pair(capacity=10)
        ch = Channel.create(a, flush_threshold=50, max_buffer=100)
        ch.write_buffer(b"a" * 60)  # past the threshold: a background flush starts
        with pytest.raises(OutputFull, match="max_buffer=100"):
            ch.write_buffer(b"b" * 41)
        with pytest.raises(OutputFull):
            ch.write_line(b"c" * 40)  # 40 + LF would not fit: neither part is written
        ch.write_buffer(b"d" * 40)
        reader = asyncio.ensure_future(drain(b))
        await ch.close()
        assert await reader == b"a" * 60 + b"d" * 40

    run(main())


def test_flush_to_a_closed_flow() -> None:
    async def main() -> None:
        a, b = flow_pair()
        ch = Channel.create(a)
        await b.close()
        ch.write_line("nobody listens")
        with pytest.raises(ChannelError) as e:
            await ch.flush()
        assert e.value.error is EOF
        with pytest.raises(ChannelError):
            await ch.close()  # close still closes the flow, then reports the failure
        assert a.closed

    run(main())


def test_flush_error_value() -> None:
    async def main() -> None:
        a, _ = flow_pair()
        ch = Channel.create(a)
        a.fail(Unknown("boom"))
        ch.write_char(b"x")
        with pytest.raises(ChannelError) as e:
            await ch.flush()
        assert e.value.error == Unknown("boom")

    run(main())


def test_close() -> None:
    async def main() -> None:
        a, b = flow_pair()
        ch = Channel.create(a)
        peer = Channel.create(b)
        await b.write(b"unread\n")
        ch.write_line("bye")
        await ch.close()
        await ch.close()  # twice is harmless
        assert a.closed
        assert b"".join(await peer.read_line()) == b"bye"
        assert await peer.read_line() == []
        assert await ch.read_line() == []  # after close, reads see the end
        with pytest.raises(EOFError):
            await ch.read_char()
        with pytest.raises(ValueError, match="closed"):
            ch.write_char(b"x")
        await ch.flush()  # nothing to do

    run(main())


def test_echo_between_two_channels() -> None:
    async def main() -> None:
        a, b = flow_pair(capacity=1000, max_chunk=50)
        client, server = Channel.create(a), Channel.create(b)

        async def serve() -> None:
            while parts := await server.read_line():
                server.write_line(b"".join(parts).upper())
                await server.flush()
            await server.close()

        async def send() -> None:
            for i in range(200):
                client.write_line(f"message {i}")
            await client.flush()

        async def receive() -> list[bytes]:
            return [b"".join(await client.read_line()) for _ in range(200)]

        # Both directions at once: small queues would deadlock a send-all-then-read client.
        task = asyncio.ensure_future(serve())
        got, _ = await asyncio.wait_for(asyncio.gather(receive(), send()), 10)
        assert got == [f"MESSAGE {i}".encode() for i in range(200)]
        await client.close()
        await task

    run(main())


# --- properties ------------------------------------------------------------------------

_pieces = st.lists(
    st.sampled_from([b"a", b"bc", b"\n", b"\r", b"\r\n", b"xyz" * 5, b"\x00", b"\xff"]),
    max_size=60,
).map(b"".join)


@settings(max_examples=150, deadline=None)
@given(data=_pieces | st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=8))
def test_property_lines_reconstruct_the_data(data: bytes, cuts: list[int]) -> None:
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[i:j] for i, j in zip([0, *points], [*points, len(data)], strict=True)]
    got = with_channel(pieces, all_lines)
    assert got == lines_model(data)
    # Re-terminating each line gives the data back, up to the CRs the LFs took with them.
    rebuilt = b"\n".join(got) + (b"\n" if data.endswith(b"\n") else b"")
    assert rebuilt == b"\n".join(
        line[:-1] if line.endswith(b"\r") and k < data.count(b"\n") else line
        for k, line in enumerate(data.split(b"\n"))
    )


@settings(max_examples=100, deadline=None)
@given(
    data=_pieces,
    max_chunk=st.integers(1, 20),
    seed=st.integers(0, 1000),
    max_line=st.integers(1, 30),
)
def test_property_limit_and_drain(data: bytes, max_chunk: int, seed: int, max_line: int) -> None:
    """Lines within the limit come out as the model says; a longer one is refused and
    can be skipped with read_some, after which reading carries on."""

    async def body(ch: Channel) -> list[bytes]:
        out: list[bytes] = []
        while True:
            try:
                parts = await ch.read_line()
            except LineTooLong:
                out.append(b"<long>")
                if not await skip_line(ch):
                    return out
                continue
            if not parts:
                return out
            out.append(b"".join(parts))

    got = with_channel([data], body, max_chunk=max_chunk, seed=seed, max_line=max_line)
    want = [line if len(line) <= max_line else b"<long>" for line in lines_model(data)]
    assert got == want


async def skip_line(ch: Channel) -> bool:
    """Skip through the next LF with public calls; False if the flow ended first."""
    while True:
        try:
            if await ch.read_char() == b"\n":
                return True
        except EOFError:
            return False


_ops = st.lists(
    st.one_of(
        st.just(("line", 0)),
        st.just(("char", 0)),
        st.just(("until", 0)),
        st.tuples(st.just("some"), st.integers(1, 8)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(data=_pieces, ops=_ops, max_chunk=st.integers(1, 16), seed=st.integers(0, 99))
def test_property_mixed_reads_follow_the_model(
    data: bytes, ops: list[tuple[str, int]], max_chunk: int, seed: int
) -> None:
    """Any interleaving of the read calls consumes the stream exactly as the model does."""

    async def body(ch: Channel) -> None:
        p = 0
        for op, n in ops:
            if op == "char":
                if p == len(data):
                    with pytest.raises(EOFError):
                        await ch.read_char()
                else:
                    assert await ch.read_char() == data[p : p + 1]
                    p += 1
            elif op == "some":
                got = bytes(await ch.read_some(n))
                assert (got == b"") == (p == len(data)) and len(got) <= n
                assert got == data[p : p + len(got)]
                p += len(got)
            elif op == "until":
                found, v = await ch.read_until(b"\r")
                i = data.find(b"\r", p)
                assert found == (i >= 0)
                assert bytes(v) == (data[p:i] if found else data[p:])
                p = i + 1 if found else len(data)
            else:
                got_line = b"".join(await ch.read_line())
                want = lines_model(data[p:])[:1]
                assert [got_line] == want or (not want and got_line == b"")
                i = data.find(b"\n", p)
                p = i + 1 if i >= 0 else len(data)

    with_channel([data], body, max_chunk=max_chunk, seed=seed)


def test_background_flush_failure_is_reported_by_flush() -> None:
    async def main() -> None:
        a, _ = flow_pair()
        ch = Channel.create(a, flush_threshold=10)
        a.fail(Unknown("down"))
        ch.write_buffer(b"x" * 20)  # starts a background flush, which fails
        for _ in range(3):
            await asyncio.sleep(0)
        with pytest.raises(ChannelError) as e:
            await ch.flush()
        assert e.value.error == Unknown("down")

    run(main())
