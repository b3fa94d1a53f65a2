"""IO_PAGE: every val of the seed, real page alignment, argument checks."""

from __future__ import annotations

import ctypes
import itertools
import mmap

import pytest

from miragekit import io_page, v1
from miragekit.io_page import PAGE_SIZE


def address(mv: memoryview) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(mv))


def test_module_conforms() -> None:
    m: v1.IOPage = io_page
    assert m.round_to_page_size(1) == PAGE_SIZE
    assert PAGE_SIZE == mmap.PAGESIZE


@pytest.mark.parametrize("n", [1, 2, 3, 17])
def test_get_is_page_aligned_zeroed_writable(n: int) -> None:
    t = io_page.get(n)
    assert io_page.length(t) == n * PAGE_SIZE
    assert address(t) % PAGE_SIZE == 0
    assert not t.readonly
    assert t.format == "B"
    assert bytes(t) == bytes(n * PAGE_SIZE)
    t[0] = 0xAB
    t[-1] = 0xCD
    assert t[0] == 0xAB and t[-1] == 0xCD


def test_blocks_are_independent() -> None:
    a, b = io_page.get(1), io_page.get(1)
    a[:4] = b"abcd"
    assert bytes(b[:4]) == bytes(4)


def test_get_zero_is_empty() -> None:
    assert io_page.length(io_page.get(0)) == 0
    assert io_page.pages(0) == []


def test_memory_outlives_other_references() -> None:
    t = io_page.get(2)
    t[PAGE_SIZE:] = b"z" * PAGE_SIZE
    pages = io_page.to_pages(t)
    del t
    assert bytes(pages[1]) == b"z" * PAGE_SIZE


def test_get_order() -> None:
    for i in range(4):
        t = io_page.get_order(i)
        assert io_page.length(t) == (1 << i) * PAGE_SIZE
        assert address(t) % PAGE_SIZE == 0


def test_pages_and_pages_order() -> None:
    ps = io_page.pages(5)
    assert len(ps) == 5
    for p in ps:
        assert io_page.length(p) == PAGE_SIZE
        assert address(p) % PAGE_SIZE == 0
    assert len({address(p) for p in ps}) == 5
    assert len(io_page.pages_order(3)) == 8


def test_to_pages_shares_memory() -> None:
    t = io_page.get(3)
    ps = io_page.to_pages(t)
    assert [address(p) for p in ps] == [address(t) + i * PAGE_SIZE for i in range(3)]
    ps[2][0] = 7
    assert t[2 * PAGE_SIZE] == 7


def test_to_pages_needs_whole_pages() -> None:
    t = io_page.get(2)
    with pytest.raises(ValueError, match="t is"):
        io_page.to_pages(t[:100])


def test_to_cstruct_and_to_string() -> None:
    t = io_page.get(1)
    t[:5] = b"hello"
    c = io_page.to_cstruct(t)
    assert isinstance(c, memoryview)
    assert address(c) == address(t)  # same memory
    s = io_page.to_string(t)
    assert isinstance(s, bytes)
    assert s[:5] == b"hello" and len(s) == PAGE_SIZE
    t[0] = ord("j")
    assert s[0] == ord("h")  # a copy


def test_string_blit() -> None:
    t = io_page.get(1)
    io_page.string_blit("xxhello", 2, t, 10, 5)
    assert bytes(t[8:17]) == b"\0\0hello\0\0"
    io_page.string_blit(b"abc", 0, t, PAGE_SIZE - 3, 3)
    assert bytes(t[-3:]) == b"abc"
    io_page.string_blit(bytearray(b"q"), 0, t, 0, 0)  # zero length is fine
    assert t[0] == 0
    io_page.string_blit("é", 0, t, 0, 2)  # str counts UTF-8 bytes
    assert bytes(t[:2]) == "é".encode()


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((-1, 0, 1), "srcoff"),
        ((0, -1, 1), "dstoff"),
        ((0, 0, -1), "len"),
        ((2, 0, 4), "srcoff"),
        ((0, PAGE_SIZE - 2, 3), "dstoff"),
    ],
)
def test_string_blit_out_of_range_changes_nothing(args: tuple[int, int, int], name: str) -> None:
    t = io_page.get(1)
    srcoff, dstoff, n = args
    with pytest.raises(ValueError, match=name):
        io_page.string_blit(b"hello", srcoff, t, dstoff, n)
    assert bytes(t) == bytes(PAGE_SIZE)


def test_string_blit_to_read_only_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="dst"):
        io_page.string_blit(b"a", 0, memoryview(b"xyz"), 0, 1)


def test_blit() -> None:
    a, b = io_page.get(2), io_page.get(2)
    a[:] = bytes(range(256)) * (2 * PAGE_SIZE // 256)
    io_page.blit(a, b)
    assert bytes(a) == bytes(b)
    io_page.blit(a[:10], b[100:110])
    assert bytes(b[100:110]) == bytes(range(10))


def test_blit_length_mismatch_changes_nothing() -> None:
    a, b = io_page.get(1), io_page.get(2)
    a[:] = b"x" * PAGE_SIZE
    with pytest.raises(ValueError, match="t2"):
        io_page.blit(a, b)
    assert bytes(b) == bytes(2 * PAGE_SIZE)


@pytest.mark.parametrize(
    ("n", "rounded"),
    [(0, 0), (1, PAGE_SIZE), (PAGE_SIZE, PAGE_SIZE), (PAGE_SIZE + 1, 2 * PAGE_SIZE)],
)
def test_round_to_page_size(n: int, rounded: int) -> None:
    assert io_page.round_to_page_size(n) == rounded


@pytest.mark.parametrize(
    ("fn", "arg", "name"),
    [
        (io_page.get, -1, "n"),
        (io_page.pages, -2, "n"),
        (io_page.get_order, -1, "i"),
        (io_page.pages_order, -1, "i"),
        (io_page.get_order, 64, "i"),
        (io_page.round_to_page_size, -1, "n"),
    ],
)
def test_negative_counts(fn: object, arg: int, name: str) -> None:
    assert callable(fn)
    with pytest.raises(ValueError, match=f"^{name} "):
        fn(arg)


def test_non_int_count_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="n must"):
        io_page.get(1.0)  # type: ignore[arg-type]


def test_small_blocks_share_few_mappings_and_stay_apart() -> None:
    """Small blocks are carved from shared mappings (one mmap for many blocks, the cost
    of a small KV read), yet each is page-aligned, zeroed and its own memory, also when
    taken from several threads at once; a large block gets a mapping of its own."""
    import threading

    blocks: list[memoryview] = []
    lock = threading.Lock()

    def take() -> None:
        mine = [io_page.get(1 + i % 3) for i in range(200)]
        with lock:
            blocks.extend(mine)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans = sorted((address(b), address(b) + len(b)) for b in blocks)
    assert all(a % PAGE_SIZE == 0 for a, _ in spans)
    assert all(end <= nxt for (_, end), (nxt, _) in itertools.pairwise(spans))
    assert all(bytes(b) == bytes(len(b)) for b in blocks)
    for i, b in enumerate(blocks):
        b[0] = i % 251
    assert all(b[0] == i % 251 for i, b in enumerate(blocks))
    mappings = {id(b.obj) for b in blocks}
    assert len(mappings) < len(blocks) // 10
    big = io_page.get(64)
    assert len(big.obj) == 64 * PAGE_SIZE  # type: ignore[arg-type]
