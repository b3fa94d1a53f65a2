"""Each conformance suite rejects deliberately broken devices ("mutants"), quickly and
with a message naming the check that caught them.

Every mutant breaks one promise of its signature in a way the suites once let through;
the test names the check expected to catch it and bounds the time it may take (a
failure must come from the check, not from the 60 s "no progress" limit).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Self

import pytest

from miragekit import v1
from miragekit.block import MemoryBlock
from miragekit.block._checks import check_request
from miragekit.fs import FatFS
from miragekit.link import VnetIf, VnetSwitch
from miragekit.macaddr import MacAddr
from miragekit.result import Error, Ok, UnknownKey
from miragekit.testing import (
    ConformanceError,
    check_block,
    check_flow,
    check_fs,
    check_kv_ro,
    check_network_pair,
)
from miragekit.testing._flow import MemoryFlow, _Pipe, _wake

QUICK = 15.0  # seconds a suite may take to reject a mutant


def rejects(suite: Awaitable[None], check: str, detail: str = "") -> None:
    """``suite`` raises ConformanceError from ``check`` (message matching ``detail``)."""
    t0 = time.monotonic()
    with pytest.raises(ConformanceError) as info:
        asyncio.run(asyncio.wait_for(suite, QUICK * 2))
    took = time.monotonic() - t0
    err = info.value
    assert re.fullmatch(check, err.check), f"caught by {err.check!r}, expected {check!r}: {err}"
    assert str(err).startswith(f"{err.check}: "), str(err)
    assert re.search(detail, err.detail), f"{err.detail!r} does not match {detail!r}"
    assert "no progress" not in err.detail, str(err)
    assert took < QUICK, f"took {took:.1f} s to reject the mutant"


# --- FLOW -----------------------------------------------------------------------------


class _CloseTellsOnlyThePeer(MemoryFlow):
    """close() signals the peer but leaves this end's own waiters hanging."""

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._tx.closed = True
        self._rx.gone = True
        _wake(self._tx.readers)


class _CloseForgetsWriters(MemoryFlow):
    """close() wakes readers but not a write blocked on back-pressure."""

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._tx.closed = True
        self._rx.gone = True
        for pipe in (self._tx, self._rx):
            _wake(pipe.readers)


def _pair(cls: type[MemoryFlow], capacity: int = 1 << 16) -> Callable[[], tuple[Any, Any]]:
    def make() -> tuple[Any, Any]:
        ab, ba = _Pipe(capacity), _Pipe(capacity)
        return cls(ba, ab), MemoryFlow(ab, ba)

    return make


@pytest.mark.parametrize(
    ("mutant", "check", "detail"),
    [
        (_CloseTellsOnlyThePeer, "close_wakes_local_reader", "pending .* when close.* ran"),
        (_CloseForgetsWriters, "close_wakes_blocked_writer", "blocked on back-pressure"),
    ],
    ids=["close_leaves_reader", "close_leaves_writer"],
)
def test_flow_mutant(mutant: type[MemoryFlow], check: str, detail: str) -> None:
    rejects(check_flow(_pair(mutant)), check, detail)


def test_flow_mutant_whose_reset_is_a_close() -> None:
    class ResetIsClose(MemoryFlow):
        async def abort(self) -> None:  # type: ignore[override]
            await self.close()

    rejects(check_flow(_pair(ResetIsClose)), "abort_resets_peer", "expected Error")


def test_flow_mutant_that_raises_in_a_method() -> None:
    class Raises(MemoryFlow):
        async def writev(self, bufs: Any) -> Any:
            raise AttributeError("no writev here")

    rejects(check_flow(_pair(Raises)), "bytes_like_inputs", "AttributeError: no writev")


# --- BLOCK ----------------------------------------------------------------------------


class _Block:
    """A BLOCK over a MemoryBlock's storage; subclasses break one promise."""

    def __init__(self, store: MemoryBlock) -> None:
        self.store = store
        self.writes = 0

    @classmethod
    async def connect(cls, id: str) -> Ok[Self]:
        return Ok(cls(MemoryBlock(id, 2048)))

    def id(self) -> str:
        return "mutant"

    async def disconnect(self) -> None:
        await self.store.disconnect()

    async def get_info(self) -> v1.Info:
        return await self.store.get_info()

    async def read(self, sector_start: int, buffers: Any) -> Any:
        return await self.store.read(sector_start, buffers)

    async def write(self, sector_start: int, buffers: Any) -> Any:
        self.writes += 1
        return await self.store.write(sector_start, buffers)


class _DropsMiddleSingles(_Block):
    async def write(self, sector_start: int, buffers: Any) -> Any:
        n = sum(len(memoryview(b)) for b in buffers) // 512
        if n == 1 and 0 < sector_start < 2047:
            return Ok(None)
        return await super().write(sector_start, buffers)


class _DropsAfter20(_Block):
    async def write(self, sector_start: int, buffers: Any) -> Any:
        if self.writes >= 20:
            return Ok(None)
        return await super().write(sector_start, buffers)


class _WriteBackCache(_Block):
    """Keeps writes in a cache it never flushes: lost on disconnect."""

    def __init__(self, store: MemoryBlock) -> None:
        super().__init__(store)
        self.cache: dict[int, bytes] = {}

    async def write(self, sector_start: int, buffers: Any) -> Any:
        check_request(sector_start, buffers, 512, 2048, writable=False)
        data = b"".join(bytes(b) for b in buffers)
        r = await self.store.read(sector_start, [bytearray(len(data))])
        if isinstance(r, Ok):
            for i in range(len(data) // 512):
                self.cache[sector_start + i] = data[i * 512 : (i + 1) * 512]
        return r

    async def read(self, sector_start: int, buffers: Any) -> Any:
        r = await self.store.read(sector_start, buffers)
        if isinstance(r, Ok):
            s = sector_start
            for b in buffers:
                view = memoryview(b)
                for off in range(0, len(view), 512):
                    if s in self.cache:
                        view[off : off + 512] = self.cache[s]
                    s += 1
        return r


@pytest.mark.parametrize(
    ("mutant", "check", "detail"),
    [
        (_DropsMiddleSingles, "single_sectors", r"sector \d+ did not read back"),
        (_DropsAfter20, "single_sectors", r"sector \d+ did not read back"),
        (_WriteBackCache, "durable", "written before disconnect reads differently"),
    ],
    ids=["drops_middle_single_sectors", "drops_writes_after_20", "write_back_cache"],
)
def test_block_mutant(mutant: type[_Block], check: str, detail: str) -> None:
    async def make() -> v1.Block:
        return mutant(MemoryBlock("m", 2048))

    async def reconnect(old: v1.Block) -> v1.Block:
        assert isinstance(old, _Block)
        store = MemoryBlock("m", 2048)
        store.data[:] = old.store.data
        return mutant(store)

    rejects(check_block(make, reconnect=reconnect), check, detail)


def test_block_mutant_dropping_after_many_writes() -> None:
    class DropsAfter100(_Block):
        async def write(self, sector_start: int, buffers: Any) -> Any:
            if self.writes >= 100:
                return Ok(None)
            return await super().write(sector_start, buffers)

    async def make() -> v1.Block:
        return DropsAfter100(MemoryBlock("m", 2048))

    rejects(check_block(make, reconnect=lambda old: make()), "many_writes", r"write 101 of 300")


# --- FS -------------------------------------------------------------------------------


class _FS:
    """An FS delegating to FatFS; subclasses break one promise."""

    def __init__(self, inner: FatFS) -> None:
        self.inner = inner

    @classmethod
    async def connect(cls, id: v1.Block) -> Ok[Self] | Error[Any]:
        r = await FatFS.connect(id)
        return Ok(cls(r.value)) if isinstance(r, Ok) else r

    def id(self) -> v1.Block:
        return self.inner.id()

    async def disconnect(self) -> None:
        await self.inner.disconnect()

    async def read(self, path: str, offset: int, length: int) -> Any:
        return await self.inner.read(path, offset, length)

    async def size(self, path: str) -> Any:
        return await self.inner.size(path)

    async def format(self, size: int) -> Any:
        return await self.inner.format(size)

    async def create(self, path: str) -> Any:
        return await self.inner.create(path)

    async def mkdir(self, path: str) -> Any:
        return await self.inner.mkdir(path)

    async def destroy(self, path: str) -> Any:
        return await self.inner.destroy(path)

    async def stat(self, path: str) -> Any:
        return await self.inner.stat(path)

    async def listdir(self, path: str) -> Any:
        return await self.inner.listdir(path)

    async def write(self, path: str, offset: int, data: Any) -> Any:
        return await self.inner.write(path, offset, data)


class _CutsListdirAt64(_FS):
    async def listdir(self, path: str) -> Any:
        r = await self.inner.listdir(path)
        return Ok(r.value[:64]) if isinstance(r, Ok) else r


class _HidesUpperShortNames(_FS):
    async def listdir(self, path: str) -> Any:
        r = await self.inner.listdir(path)
        if not isinstance(r, Ok):
            return r
        short = re.compile(r"^[A-Z0-9_]{1,8}(\.[A-Z0-9_]{1,3})?$")
        return Ok([n for n in r.value if not short.match(n)])


class _StatSizeZero(_FS):
    async def stat(self, path: str) -> Any:
        r = await self.inner.stat(path)
        return Ok(dataclasses.replace(r.value, size=0)) if isinstance(r, Ok) else r


class _DropsMetadataWrites(MemoryBlock):
    """A block device that, once armed, drops writes below the first data sector (the
    FATs and the root directory): FatFS's caches hide it until the volume is remounted."""

    protect = 0

    async def write(self, sector_start: int, buffers: Any) -> Any:
        if sector_start < self.protect:
            return Ok(None)
        return await super().write(sector_start, buffers)


@pytest.mark.parametrize(
    ("mutant", "check", "detail"),
    [
        (_CutsListdirAt64, "many_entries", "of 150 entries gave 64"),
        (_HidesUpperShortNames, "names_kept", "listdir / gave"),
        (_StatSizeZero, "create_is_empty|sizes", r"size.*got 0"),
    ],
    ids=["listdir_cut_at_64", "hides_upper_case_8.3_names", "stat_size_0"],
)
def test_fs_mutant(mutant: type[_FS], check: str, detail: str) -> None:
    async def make() -> v1.FS:
        fs = mutant((await FatFS.connect(MemoryBlock("m", 8192))).unwrap())
        (await fs.format(8192 * 512)).unwrap()
        return fs

    async def remount(old: v1.FS) -> v1.FS:
        assert isinstance(old, _FS)
        return mutant((await FatFS.connect(old.id())).unwrap())

    rejects(check_fs(make, reconnect=remount), check, detail)


def test_fs_mutant_dropping_metadata_writes() -> None:
    async def make() -> v1.FS:
        blk = _DropsMetadataWrites("m", 8192)
        fs = (await FatFS.connect(blk)).unwrap()
        (await fs.format(8192 * 512)).unwrap()
        bs = fs.boot_sector
        assert bs is not None
        blk.protect = bs.first_data_sector
        return fs

    async def remount(old: v1.FS) -> v1.FS:
        return (await FatFS.connect(old.id())).unwrap()

    rejects(check_fs(make, reconnect=remount), "durable", "after remount")


# --- KV_RO ----------------------------------------------------------------------------


class _DictKV:
    """A KV_RO over a dict that looks keys up through ``norm`` (the mutation)."""

    def __init__(self, data: Mapping[str, bytes], norm: Callable[[str], str]) -> None:
        self.data, self.norm = dict(data), norm

    @classmethod
    async def connect(cls, id: Mapping[str, bytes]) -> Ok[Self]:
        return Ok(cls(id, lambda k: k))

    def id(self) -> str:
        return "dict"

    async def disconnect(self) -> None:
        pass

    def _find(self, key: str) -> bytes | None:
        want = self.norm(key)
        for k, v in self.data.items():
            if self.norm(k) == want:
                return v
        return None

    async def read(self, key: str, offset: int, length: int) -> Any:
        if offset < 0 or length < 0:
            raise ValueError("offset" if offset < 0 else "length")
        v = self._find(key)
        if v is None:
            return Error(UnknownKey(key))
        return Ok([memoryview(v[offset : offset + length])])

    async def size(self, key: str) -> Any:
        v = self._find(key)
        return Error(UnknownKey(key)) if v is None else Ok(len(v))


@pytest.mark.parametrize(
    "norm",
    [
        str.lower,
        lambda k: k.removesuffix("/"),
        lambda k: k.removeprefix("./"),
        lambda k: re.sub("/+", "/", k),
    ],
    ids=["case_insensitive", "trailing_slash", "dot_slash", "double_slash"],
)
def test_kv_ro_mutant(norm: Callable[[str], str]) -> None:
    async def make(contents: Mapping[str, bytes]) -> v1.KVRO:
        return _DictKV(contents, norm)

    asyncio.run(check_kv_ro(make, only=["sizes_and_values"]))  # otherwise sound
    rejects(check_kv_ro(make), "one_key_per_value", "another spelling of")


# --- NETWORK --------------------------------------------------------------------------


class _Net:
    """A NETWORK over a virtual switch port whose transmit path breaks one promise."""

    def __init__(self, port: VnetIf) -> None:
        self.port = port
        self.sent = 0

    @classmethod
    async def connect(cls, id: VnetIf) -> Ok[Self]:
        return Ok(cls(id))

    def id(self) -> str:
        return "mutant"

    async def disconnect(self) -> None:
        await self.port.disconnect()

    async def write(self, buf: v1.Buffer) -> None:
        frame = self.mutate(bytes(buf))
        self.sent += 1
        if frame is not None:
            await self.port.write(frame)

    async def writev(self, bufs: v1.Buffers) -> None:
        await self.write(b"".join(bufs))

    def mutate(self, frame: bytes) -> bytes | None:
        return frame

    async def listen(self, fn: v1.FrameCallback) -> None:
        await self.port.listen(fn)

    def mac(self) -> MacAddr:
        return self.port.mac()

    def get_stats_counters(self) -> v1.Stats:
        return self.port.get_stats_counters()

    def reset_stats_counters(self) -> None:
        self.port.reset_stats_counters()


class _Truncates100(_Net):
    def mutate(self, frame: bytes) -> bytes | None:
        return frame[:100]


class _Drops1000(_Net):
    def mutate(self, frame: bytes) -> bytes | None:
        return None if len(frame) > 1000 else frame


class _DropsAfter10(_Net):
    def mutate(self, frame: bytes) -> bytes | None:
        return None if self.sent >= 10 else frame


@pytest.mark.parametrize(
    ("mutant", "check", "detail"),
    [
        (_Truncates100, "frame_sizes", "a frame of 101 bytes arrived as 100 bytes"),
        (_Drops1000, "frame_sizes", r"frames of \[1001, 1200, 1513, 1514\] bytes never arrived"),
        (_DropsAfter10, "frame_sizes|many_frames", r"never arrived|of \d+ frames arrived"),
    ],
    ids=["truncates_over_100", "drops_over_1000", "drops_after_10"],
)
def test_network_mutant(mutant: type[_Net], check: str, detail: str) -> None:
    async def make() -> tuple[v1.Network, v1.Network]:
        sw = VnetSwitch(seed=1)
        return mutant(sw.add_interface("a")), sw.add_interface("b")

    rejects(check_network_pair(make), check, detail)
