"""A KV_RO conformance suite: run :func:`check_kv_ro` against any implementation.

The suite builds a store from a dict of key -> value with the caller's factory, then
checks sizes, reads at every interesting offset and length (page boundaries, the end,
past the end), nested keys, empty and large (> 1 MiB) values, unknown keys and the
programming errors, and that every value has exactly one key: other spellings (another
case, a trailing ``/``, ``./``, ``//``, ``..`` detours) are unknown keys. A failure raises
:class:`~miragekit.testing.ConformanceError` naming the check (:data:`KV_RO_CHECKS`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Collection, Mapping

from .. import io_page, v1
from ..result import Error, Ok, UnknownKey
from ._conformance import expect, fail, run_on_fresh

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
    if not isinstance(r, Ok):
        fail(f"read({key!r}, {offset}, {length}) gave {r!r}")
    expect(isinstance(r.value, list), f"read({key!r}) value is not a list: {r.value!r}")
    for b in r.value:
        expect(isinstance(b, memoryview), f"read({key!r}) gave a {type(b).__name__}")
    return b"".join(bytes(b) for b in r.value)


async def _unknown(store: v1.KVRO, key: str) -> None:
    r = await store.read(key, 0, 10)
    expect(r == Error(UnknownKey(key)), f"read of unknown key {key!r} gave {r!r}")
    s = await store.size(key)
    expect(s == Error(UnknownKey(key)), f"size of unknown key {key!r} gave {s!r}")


def _directories(keys: list[str]) -> set[str]:
    dirs: set[str] = set()
    for k in keys:
        parts = k.split("/")
        for i in range(1, len(parts)):
            dirs.add("/".join(parts[:i]))
    return dirs - set(keys)


def _aliases(key: str, data: Mapping[str, bytes]) -> list[str]:
    """Other spellings of ``key`` that must not name its value."""
    parts = key.split("/")
    cands = {key.upper(), key.lower(), key.swapcase(), key + "/", "./" + key, key + "/."}
    cands |= {"//" + key, key.replace("/", "//"), key.replace("/", "/./")}
    if len(parts) > 1:
        cands.add(f"{parts[0]}/../{key}")
        cands.add("/".join([*parts[:-1], "x", "..", parts[-1]]))
        cands.add("/".join([parts[0].upper(), *parts[1:]]))
    return sorted(c for c in cands if c != key and c != "/" + key and c not in data)


async def _sizes_and_values(store: v1.KVRO, data: dict[str, bytes]) -> None:
    for key, value in data.items():
        size = await store.size(key)
        expect(size == Ok(len(value)), f"size({key!r}) gave {size!r}, want Ok({len(value)})")
        expect(await _read(store, key, 0, len(value)) == value, f"read({key!r}) whole differs")


async def _boundary_reads(store: v1.KVRO, data: dict[str, bytes]) -> None:
    # Reads at every boundary, including past the end; never more than asked for.
    for key, value in data.items():
        n = len(value)
        for off in _offsets(n):
            lengths = _lengths(n) if n <= 2 * PAGE else [0, 1, PAGE, PAGE + 1, 1 << 40]
            for length in lengths:
                got = await _read(store, key, off, length)
                want = value[off : off + length]
                expect(
                    got == want,
                    f"read({key!r}, {off}, {length}): {len(got)} bytes, want {len(want)}",
                )


async def _chunked_reads(store: v1.KVRO, data: dict[str, bytes]) -> None:
    # Sequential reads in odd-sized chunks rebuild the value.
    for key, value in data.items():
        out = bytearray()
        while True:
            chunk = await _read(store, key, len(out), 1000)
            out += chunk
            if len(chunk) < 1000:
                break
        expect(bytes(out) == value, f"chunked read of {key!r} differs")


async def _concurrent_reads(store: v1.KVRO, data: dict[str, bytes]) -> None:
    keys = sorted(data)
    results = await asyncio.gather(*(_read(store, k, 0, len(data[k])) for k in keys))
    expect(list(results) == [data[k] for k in keys], "concurrent reads gave other values")


async def _unknown_keys(store: v1.KVRO, data: dict[str, bytes]) -> None:
    # Unknown keys, directories, escapes: UnknownKey carrying the key as given.
    keys = sorted(data)
    unknown = ["no-such-key", "hello.txt.bak", "", "/", "../escape", "../../etc/passwd"]
    unknown += sorted(_directories(keys))
    unknown += [f"{k}/child" for k in keys[:3]]
    unknown += [f"../{k}" for k in keys[:3]]
    for key in unknown:
        if key not in data:
            await _unknown(store, key)


async def _one_key_per_value(store: v1.KVRO, data: dict[str, bytes]) -> None:
    for key in sorted(data):
        for alias in _aliases(key, data):
            r = await store.size(alias)
            expect(
                r == Error(UnknownKey(alias)),
                f"{alias!r} is another spelling of {key!r} and must be unknown, got {r!r}",
            )
            await _unknown(store, alias)


async def _bad_arguments(store: v1.KVRO, data: dict[str, bytes]) -> None:
    # Programming errors raise ValueError naming the argument, and change nothing.
    keys = sorted(data)
    some = keys[0] if keys else "k"
    for off, length, name in ((-1, 1, "offset"), (0, -1, "length")):
        try:
            await store.read(some, off, length)
        except ValueError as e:
            expect(name in str(e), f"ValueError for bad {name} does not name it: {e}")
        else:
            fail(f"read with negative {name} did not raise ValueError")
    if keys:
        got = await _read(store, some, 0, len(data[some]))
        expect(got == data[some], f"read({some!r}) changed after refused reads")


async def _listing(store: v1.KVRO, data: dict[str, bytes]) -> None:
    # The listing extension, if offered, lists exactly the keys.
    keys = sorted(data)
    lister = getattr(store, "keys", None)
    if lister is not None and asyncio.iscoroutinefunction(lister):
        listed = await lister()
        expect(sorted(listed) == keys, f"keys() gave {sorted(listed)}, want {keys}")


_Check = Callable[[v1.KVRO, dict[str, bytes]], Awaitable[None]]

_CHECKS: dict[str, _Check] = {
    "sizes_and_values": _sizes_and_values,
    "boundary_reads": _boundary_reads,
    "chunked_reads": _chunked_reads,
    "concurrent_reads": _concurrent_reads,
    "unknown_keys": _unknown_keys,
    "one_key_per_value": _one_key_per_value,
    "bad_arguments": _bad_arguments,
    "listing": _listing,
}

KV_RO_CHECKS: tuple[str, ...] = tuple(_CHECKS)
"""The names of the checks :func:`check_kv_ro` runs, in order."""


async def check_kv_ro(
    make_store: MakeStore,
    contents: Mapping[str, bytes] | None = None,
    *,
    only: Collection[str] | None = None,
    timeout: float = 60.0,
) -> None:
    """Check a KV_RO implementation on ``contents`` (default: :func:`default_contents`).

    Keys must be ``/``-separated without empty, ``.`` or ``..`` components. Each check
    gets a store from ``make_store`` and disconnects it at the end.
    """
    data = default_contents() if contents is None else dict(contents)

    def with_data(check: _Check) -> Callable[[v1.KVRO], Awaitable[None]]:
        async def run(store: v1.KVRO) -> None:
            await check(store, data)

        return run

    async def disconnect(store: v1.KVRO) -> None:
        await store.disconnect()

    checks = {name: with_data(c) for name, c in _CHECKS.items()}
    await run_on_fresh(lambda: make_store(data), checks, disconnect, only, timeout)


__all__ = ["KV_RO_CHECKS", "MakeStore", "check_kv_ro", "default_contents"]
