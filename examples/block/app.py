"""Write patterned sectors to a BLOCK device, read them back and verify them.

The region used is put back as it was, so the example is safe to run on an image that
matters. Every sector carries its own number, so a misdirected write shows up as a
mismatch naming the sector it landed in.
"""

from __future__ import annotations

from miragekit import v1
from miragekit.result import Error

SECTORS = 64
"""How many sectors the example writes (fewer on a smaller device)."""

CHUNK = 8
"""Sectors per buffer: each write and read is one request over a list of buffers."""


def sector_pattern(sector: int, sector_size: int) -> bytes:
    """The contents of ``sector``: its number, repeated to fill it."""
    text = f"miragekit block example, sector {sector:010d}\n".encode()
    return (text * (sector_size // len(text) + 1))[:sector_size]


def buffers(sectors: int, sector_size: int) -> list[bytearray]:
    """Fresh buffers covering ``sectors`` sectors, ``CHUNK`` sectors each (the last shorter)."""
    sizes = [min(CHUNK, sectors - i) for i in range(0, sectors, CHUNK)]
    return [bytearray(n * sector_size) for n in sizes]


async def start(console: v1.Console, block: v1.Block) -> None:
    info = await block.get_info()
    ss, size = info.sector_size, info.size_sectors
    await console.log_s(
        f"block {block.id()}: {size} sectors of {ss} bytes, "
        f"{'read-write' if info.read_write else 'read-only'}"
    )
    count = min(SECTORS, size)
    if count == 0:
        await console.log_s("block: the device is empty, nothing to do")
        return
    original = buffers(count, ss)
    if isinstance(res := await block.read(0, original), Error):
        await console.log_s(f"block: read failed: {res.error}")
        return
    if not info.read_write:
        await console.log_s(f"block: read {count} sectors; read-only, so not writing")
        return

    data = b"".join(sector_pattern(s, ss) for s in range(count))
    out = buffers(count, ss)
    pos = 0
    for b in out:
        b[:] = data[pos : pos + len(b)]
        pos += len(b)
    if isinstance(res := await block.write(0, out), Error):
        await console.log_s(f"block: write failed: {res.error}")
        return
    back = buffers(count, ss)
    if isinstance(res := await block.read(0, back), Error):
        await console.log_s(f"block: read back failed: {res.error}")
        return
    got = b"".join(back)
    bad = [s for s in range(count) if got[s * ss : (s + 1) * ss] != data[s * ss : (s + 1) * ss]]
    if bad:
        await console.log_s(f"block: MISMATCH in {len(bad)} of {count} sectors, first {bad[0]}")
    else:
        await console.log_s(
            f"block: wrote {count} sectors ({count * ss // 1024} KiB) in "
            f"{len(out)} buffers, read them back: all verified"
        )
    if isinstance(res := await block.write(0, original), Error):
        await console.log_s(f"block: restoring the original sectors failed: {res.error}")
        return
    await console.log_s("block: original contents restored")
