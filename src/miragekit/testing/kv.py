"""A KV_RO conformance suite: run :func:`check_kv_ro` against any implementation.

The suite builds a store from a dict of key -> value with the caller's factory, then
checks sizes, reads at every interesting offset and length (page boundaries, the end,
past the end), nested keys, empty and large (> 1 MiB) values, unknown keys and the
programming errors. It raises ``AssertionError`` on the first difference.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping

from .. import io_page, v1
from ..result import Error, Ok, UnknownKey

MakeStore = Callable[[Mapping[str, bytes]], Awaitable[v1.KVRO]]
"""Build a store holding exactly the given keys and values."""

PAGE = io_page.PAGE_SIZE


def default_contents() -> dict[str, bytes]:
    """The store the suite checks unless the caller gives its own."""
    rng = random.Random(0x4B56)
    return {
        "hello.txt": b"Hello, world!\n",
        "empty": b"",
        "one": b"x",
        "page.bin": rng.randbytes(PAGE),
        "page_plus_one.bin": rng.randbytes(PAGE + 1),
        "a/b/c.txt": b"nested value",
        "a/d.bin": bytes(range(256)) * 17,
        "a/b/empty": b"",
        "large.bin": rng.randbytes(3 * (1 << 19) + 123),  # > 1 MiB, not whole pages
    }


def _offsets(n: int) -> list[int]:
    cands = {0, 1, 2, n // 2, n - 1, n, n + 1, n + 4096, PAGE - 1, PAGE, PAGE + 1}
    cands |= {2 * PAGE - 1, 2 * PAGE, (1 << 20) - 1, 1 << 20, (1 << 20) + 1}
    return sorted(o for o in cands if 0 <= o <= n + 4096)


def _lengths(n: int) -> list[int]:
    cands = {0, 1, 7, PAGE - 1, PAGE, PAGE + 1, n, n + 1, 1 << 40}
    return sorted(c for c in cands if c >= 0)


async def _read(store: v1.KVRO, key: str, offset: int, length: int) -> bytes:
    r = await store.read(key, offset, length)
    assert isinstance(r, Ok), f"read({key!r}, {offset}, {length}) gave {r!r}"
    assert isinstance(r.value, list), f"read({key!r}) value is not a list: {r.value!r}"
    for b in r.value:
        assert isinstance(b, memoryview), f"read({key!r}) gave a {type(b).__name__}"
    return b"".join(bytes(b) for b in r.value)


async def _unknown(store: v1.KVRO, key: str) -> None:
    r = await store.read(key, 0, 10)
    assert r == Error(UnknownKey(key)), f"read of unknown key {key!r} gave {r!r}"
    s = await store.size(key)
    assert s == Error(UnknownKey(key)), f"size of unknown key {key!r} gave {s!r}"


def _directories(keys: list[str]) -> set[str]:
    dirs: set[str] = set()
    for k in keys:
        parts = k.split("/")
        for i in range(1, len(parts)):
            dirs.add("/".join(parts[:i]))
    return dirs - set(keys)


async def check_kv_ro(make_store: MakeStore, contents: Mapping[str, bytes] | None = None) -> None:
    """Check a KV_RO implementation on ``contents`` (default: :func:`default_contents`).

    Keys must be ``/``-separated without ``.``/``..`` components. The store is
    disconnected at the end.
    """
    data = default_contents() if contents is None else dict(contents)
    store = await make_store(data)
    try:
        await _check(store, data)
    finally:
        await store.disconnect()


async def _check(store: v1.KVRO, data: dict[str, bytes]) -> None:
    # Sizes and whole values.
    for key, value in data.items():
        assert await store.size(key) == Ok(len(value)), f"size({key!r})"
        assert await _read(store, key, 0, len(value)) == value, f"read({key!r}) whole"

    # Reads at every boundary, including past the end; never more than asked for.
    for key, value in data.items():
        n = len(value)
        for off in _offsets(n):
            lengths = _lengths(n) if n <= 2 * PAGE else [0, 1, PAGE, PAGE + 1, 1 << 40]
            for length in lengths:
                got = await _read(store, key, off, length)
                want = value[off : off + length]
                assert got == want, (
                    f"read({key!r}, {off}, {length}): {len(got)} bytes, want {len(want)}"
                )

    # Sequential reads in odd-sized chunks rebuild the value.
    for key, value in data.items():
        out = bytearray()
        while True:
            chunk = await _read(store, key, len(out), 1000)
            out += chunk
            if len(chunk) < 1000:
                break
        assert bytes(out) == value, f"chunked read of {key!r}"

    # Concurrent reads see consistent values.
    keys = sorted(data)
    results = await asyncio.gather(*(_read(store, k, 0, len(data[k])) for k in keys))
    assert list(results) == [data[k] for k in keys], "concurrent reads"

    # Unknown keys, directories, escapes: UnknownKey carrying the key as given.
    unknown = ["no-such-key", "hello.txt.bak", "", "/", "../escape", "../../etc/passwd"]
    unknown += sorted(_directories(keys))
    unknown += [f"{k}/child" for k in keys[:3]]
    unknown += [f"../{k}" for k in keys[:3]]
    for key in unknown:
        if key in data:
            continue
        await _unknown(store, key)

    # Programming errors raise ValueError naming the argument, and change nothing.
    some = keys[0] if keys else "k"
    for off, length, name in ((-1, 1, "offset"), (0, -1, "length")):
        try:
            await store.read(some, off, length)
        except ValueError as e:
            assert name in str(e), f"ValueError for bad {name} does not name it: {e}"
        else:
            raise AssertionError(f"read with negative {name} did not raise ValueError")
    if keys:
        assert await _read(store, some, 0, len(data[some])) == data[some]

    # The listing extension, if offered, lists exactly the keys.
    lister = getattr(store, "keys", None)
    if lister is not None and asyncio.iscoroutinefunction(lister):
        listed = await lister()
        assert sorted(listed) == keys, f"keys() gave {sorted(listed)}, want {keys}"


__all__ = ["MakeStore", "check_kv_ro", "default_contents"]
