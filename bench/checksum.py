"""Internet checksum: ``int.from_bytes`` modulo 0xFFFF against ``sum(memoryview.cast("H"))``.

Run: ``python bench/checksum.py``. Prints a table and writes bench/results/checksum.json.
The library uses the first (see miragekit/wire/_checksum.py); this keeps the evidence.
"""

from __future__ import annotations

import json
import os
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from miragekit.wire import ones_sum


def sum_cast(data: memoryview) -> int:
    """The alternative: native-order word sum, folded and byte-swapped."""
    n = len(data)
    s = sum(data[: n & ~1].cast("H"))
    if n & 1:
        s += data[n - 1]
    r = s % 0xFFFF
    if r == 0 and s:
        r = 0xFFFF
    return ((r & 0xFF) << 8) | (r >> 8)


def main() -> None:
    rows = []
    for size in (64, 1500, 1501, 65536):
        data = memoryview(bytearray(os.urandom(size)))
        assert ones_sum(data) == sum_cast(data)
        n = max(200, 2_000_000 // size)
        t_int = min(timeit.repeat(lambda d=data: ones_sum(d), number=n, repeat=5)) / n
        t_sum = min(timeit.repeat(lambda d=data: sum_cast(d), number=n, repeat=5)) / n
        rows.append({"bytes": size, "from_bytes_us": t_int * 1e6, "cast_sum_us": t_sum * 1e6})
    print(f"{'bytes':>7} {'int.from_bytes %':>17} {'sum(cast(H))':>13} {'GB/s (ours)':>12}")
    for r in rows:
        gbs = r["bytes"] / r["from_bytes_us"] / 1e3
        print(
            f"{r['bytes']:>7} {r['from_bytes_us']:>15.2f}us {r['cast_sum_us']:>11.2f}us {gbs:>12.2f}"
        )
    out = Path(__file__).resolve().parent / "results" / "checksum.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
