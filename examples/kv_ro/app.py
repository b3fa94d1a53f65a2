"""kv_ro: list a read-only store and print each key with its size and (text) content.

Listing is not in the KV_RO signature: a store that offers it (``miragekit.kv`` stores
do, see ``KVListable``) is listed; any other is asked for the key ``secret``, as
MirageOS's kv_ro example does.
"""

from __future__ import annotations

from miragekit import v1
from miragekit.kv import KVListable
from miragekit.result import Error, Ok

SHOW_LIMIT = 4096
"""Values up to this size that are UTF-8 text are printed; others only sized."""


async def _show(console: v1.Console, kv: v1.KVRO, key: str) -> None:
    match await kv.size(key):
        case Ok(size):
            pass
        case Error(err):
            await console.log_s(f"{key}: error {err}")
            return
    await console.log_s(f"{key} ({size} bytes)")
    if size > SHOW_LIMIT:
        return
    match await kv.read(key, 0, size):
        case Ok(bufs):
            data = b"".join(bytes(b) for b in bufs)
        case Error(err):
            await console.log_s(f"  error {err}")
            return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        await console.log_s("  <binary>")
        return
    for line in text.splitlines():
        await console.log_s(f"  {line}")


async def start(console: v1.Console, kv: v1.KVRO) -> None:
    keys = await kv.keys() if isinstance(kv, KVListable) else ["secret"]
    await console.log_s(f"{len(keys)} key(s)")
    for key in keys:
        await _show(console, kv, key)
