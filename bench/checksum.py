"""Internet checksum: ``int.from_bytes`` modulo 0xFFFF against ``sum(memoryview.cast("H"))``,
and the ways to verify a received segment's sum.

Run: ``python bench/checksum.py``. Prints two tables and writes bench/results/checksum.json.
The library uses the first (see miragekit/wire/_checksum.py); this keeps the evidence.
The second table times verifying a received sum (is it zero?) over the sizes TCP's
fast path sees (addresses + 32-byte header + data: 1488 bytes at MTU 1500, an odd
1487, a small 140) for each candidate, best of ``--rounds`` rounds that take turns:
``residue`` (big-endian, three folds: what verification used before), the same with a
fourth fold, ``sums_to_zero`` (little-endian, four folds: what it uses now), little-endian
with three folds, the plain remainder, and the word sum over ``memoryview.cast``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from miragekit.wire import ones_sum, residue, sums_to_zero
from miragekit.wire._checksum import FOLD_FROM, FOLD_WIDE, MASK1, MASK2, MASK3, MASK4


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


def _folded(v: int, n: int, four: bool) -> int:
    if FOLD_FROM < n < FOLD_WIDE:
        v = (v >> 5760) + (v & MASK1)
        v = (v >> 2880) + (v & MASK2)
        v = (v >> 1440) + (v & MASK3)
        if four:
            v = (v >> 720) + (v & MASK4)
    return v


def big_three(d: memoryview, extra: int) -> bool:
    """Before: ``residue`` (big-endian, three folds) plus the pseudo-header terms."""
    return not (residue(d) + extra) % 0xFFFF


def big_four(d: memoryview, extra: int) -> bool:
    v = _folded(int.from_bytes(d, "big"), len(d), True)
    return not ((v << 8 if len(d) & 1 else v) + extra) % 0xFFFF


def little_three(d: memoryview, extra: int) -> bool:
    return not (_folded(int.from_bytes(d, "little"), len(d), False) + (extra << 8)) % 0xFFFF


def plain_remainder(d: memoryview, extra: int) -> bool:
    v = int.from_bytes(d, "big")
    return not ((v << 8 if len(d) & 1 else v) + extra) % 0xFFFF


def cast_words(d: memoryview, extra: int) -> bool:
    return not (sum_cast(d) + extra) % 0xFFFF


VERIFIERS: dict[str, Callable[[memoryview, int], bool]] = {
    "residue (big, 3 folds; before)": big_three,
    "big-endian, 4 folds": big_four,
    "sums_to_zero (little, 4 folds; now)": sums_to_zero,
    "little-endian, 3 folds": little_three,
    "plain remainder": plain_remainder,
    "sum(cast('H'))": cast_words,
}


def verify_table(rounds: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    ring = bytearray(os.urandom(8192))
    for size in (1488, 1487, 140):
        data = memoryview(ring)[102 : 102 + size]  # a frame in a ring, at an even offset
        # Make the sum zero with the pseudo-header's remaining terms: a leading word
        # (at an even offset, so the rest keeps its place) chosen for it.
        extra = 6 + size - 8
        data[:2] = b"\0\0"
        s = ones_sum(data) + extra
        while s > 0xFFFF:
            s = (s & 0xFFFF) + (s >> 16)
        data[:2] = (~s & 0xFFFF).to_bytes(2, "big")
        best = dict.fromkeys(VERIFIERS, float("inf"))
        for fn in VERIFIERS.values():
            assert fn(data, extra), "a correct sum must verify"
        for _ in range(rounds):  # the candidates take turns, so that load weighs on all
            for name, fn in VERIFIERS.items():
                t = min(timeit.repeat(partial(fn, data, extra), number=4000, repeat=3))
                best[name] = min(best[name], t / 4000)
        ref = best["residue (big, 3 folds; before)"]
        for name, t in best.items():
            rows.append({"bytes": size, "candidate": name, "ns": t * 1e9, "vs_before": t / ref})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    load = os.getloadavg()
    rows: list[dict[str, float]] = []
    for size in (64, 1500, 1501, 65536):
        data = memoryview(bytearray(os.urandom(size)))
        assert ones_sum(data) == sum_cast(data)
        n = max(200, 2_000_000 // size)
        t_int = min(timeit.repeat(partial(ones_sum, data), number=n, repeat=5)) / n
        t_sum = min(timeit.repeat(partial(sum_cast, data), number=n, repeat=5)) / n
        rows.append({"bytes": size, "from_bytes_us": t_int * 1e6, "cast_sum_us": t_sum * 1e6})
    print(f"{'bytes':>7} {'int.from_bytes %':>17} {'sum(cast(H))':>13} {'GB/s (ours)':>12}")
    for r in rows:
        gbs = r["bytes"] / r["from_bytes_us"] / 1e3
        print(
            f"{r['bytes']:>7} {r['from_bytes_us']:>15.2f}us {r['cast_sum_us']:>11.2f}us {gbs:>12.2f}"
        )
    verify = verify_table(args.rounds)
    print(f"\nverifying a received sum: {'bytes':>5} {'candidate':38} {'ns':>7} {'vs before':>9}")
    for v in verify:
        print(f"{'':26}{v['bytes']:>5} {v['candidate']:38} {v['ns']:>7.0f} {v['vs_before']:>9.2f}")
    print(f"load average (1, 5, 15 min) at start {load}, at end {os.getloadavg()}")
    out = Path(__file__).resolve().parent / "results" / "checksum.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps({"sum": rows, "verify": verify, "loadavg": [load, os.getloadavg()]}, indent=2)
        + "\n"
    )


if __name__ == "__main__":
    main()
