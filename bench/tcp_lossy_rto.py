"""Every retransmission timeout of the lossy simulated transfers, classified.

Runs ``bench/tcp_lossy.py``'s transfer (the same wire, buffers and seeds) with the wire's
record of every segment and ACK it dropped or corrupted, and at each timeout of the
sender looks at what was lost: the ACKs of data the receiver has, the segment at SND.UNA
(its original, or its retransmission), and the probe sent for it (the probe itself, or
its ACKs), with the sender's state (open, in recovery, after a timeout).

Run: .venv/bin/python bench/tcp_lossy_rto.py [--mb 100] [--rtt-ms 2 20] [--loss 0.05]
     [--congestion cubic] [--seeds 1 2 3 42] [--loss-only]
Writes bench/results/tcp_lossy_rto.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tcp_lossy import lossy_path  # noqa: E402
from tests.tcp_harness import Harness, bulk_transfer  # noqa: E402

from miragekit.tcp import Connection  # noqa: E402
from miragekit.wire.tcp import TCPRepr  # noqa: E402

M = 0xFFFFFFFF


class RecordingHarness(Harness):
    """The harness, with a record of each segment: (time, direction, seq, length, lost)."""

    def __init__(self, *a: Any, **k: Any) -> None:
        super().__init__(*a, **k)
        self.log: list[tuple[float, int, int, int, bool]] = []

    def _transmit_one(self, direction: int, seg: TCPRepr) -> None:
        d0, c0 = self.stats.dropped, self.stats.corrupted
        super()._transmit_one(direction, seg)
        lost = self.stats.dropped != d0 or self.stats.corrupted != c0
        self.log.append((self.now, direction, seg.seq, len(seg.payload), lost))


def classify(h: RecordingHarness, c: Connection, probes: list[list[Any]], now: float) -> str:
    una = c._snd_una
    u = una & M
    assert h.b is not None
    tx = [(t, lost) for t, d, seq, n, lost in h.log if d == 0 and n and ((u - seq) & M) < n]
    if h.b._rcv_nxt > una:
        what = "ACKs of delivered data lost"
    elif c._retries > 0:
        what = "repeated timeout"
    elif len(tx) >= 2:
        what = "retransmission of SND.UNA lost"
    else:
        what = "original at SND.UNA lost, never resent"
    state = "in recovery" if c._in_recovery else "after a timeout" if c._rto_recovery else "open"
    last = tx[-1][0] if tx else 0.0
    mine = [p for p in probes if p[0] >= last]
    if not mine:
        return f"{what}, {state}, no probe"
    t, end, resent = mine[-1]
    sent = [e for e in h.log if e[0] == t and e[1] == 0 and ((e[2] + e[3]) & M) in (end, end - 1)]
    acks = [e for e in h.log if e[1] == 1 and e[0] > t]
    if sent and sent[-1][4]:
        probe = "probe lost"
    elif acks and all(e[4] for e in acks):
        probe = "probe's ACKs lost"
    else:
        probe = "probe answered"
    return f"{what}, {state}, {probe} ({'resent' if resent else 'new data'})"


def run(rtt_ms: float, loss: float, cc: str, mb: int, seed: int, loss_only: bool) -> dict[str, Any]:
    cfg, model = lossy_path(rtt_ms, loss, cc, loss_only)
    h = RecordingHarness(cfg, cfg, model, seed=seed)
    probes: list[list[Any]] = []
    found: list[str] = []
    send_probe = Connection._send_probe
    on_rto = Connection._on_rto

    def probe_hook(self: Connection, now: float, *a: Any) -> None:
        send_probe(self, now, *a)
        if self is h.a and self._tlp_end is not None:
            probes.append([now, self._tlp_end & M, self._tlp_rxt])

    def rto_hook(self: Connection, now: float) -> None:
        if self is h.a and h.b is not None and self._snd_max > self._snd_una:
            found.append(classify(h, self, probes, now))
        on_rto(self, now)

    Connection._send_probe = probe_hook  # type: ignore[method-assign]
    Connection._on_rto = rto_hook  # type: ignore[method-assign]
    try:
        size = mb * 1_000_000
        sent, got, sim = bulk_transfer(h, size, time_limit=36000)
    finally:
        Connection._send_probe = send_probe  # type: ignore[method-assign]
        Connection._on_rto = on_rto  # type: ignore[method-assign]
    return {
        "seed": seed,
        "sha256_equal": sent == got,
        "goodput_MB_per_s": size / sim / 1e6,
        "rto": h.a.stats["rto"],
        "classes": found,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--rtt-ms", type=float, nargs="+", default=[2.0, 20.0])
    ap.add_argument("--loss", type=float, default=0.05)
    ap.add_argument("--congestion", default="cubic", choices=["newreno", "cubic"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 42])
    ap.add_argument("--loss-only", action="store_true")
    args = ap.parse_args()
    rows = []
    for rtt_ms in args.rtt_ms:
        runs = [
            run(rtt_ms, args.loss, args.congestion, args.mb, s, args.loss_only) for s in args.seeds
        ]
        total = collections.Counter(k for r in runs for k in r["classes"])
        print(
            f"rtt {rtt_ms:g} ms loss {args.loss:.0%} {args.congestion} "
            f"{'loss only' if args.loss_only else 'full wire'}: goodput "
            + " ".join(f"{r['goodput_MB_per_s']:.2f}" for r in runs)
            + f" MB/s, {sum(r['rto'] for r in runs)} timeouts"
        )
        for k, v in total.most_common():
            print(f"  {v:3} {k}")
        rows.append({"rtt_ms": rtt_ms, "runs": runs})
    out = ROOT / "bench" / "results" / "tcp_lossy_rto.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print(f"wrote {out}")
    if not all(r["sha256_equal"] for row in rows for r in row["runs"]):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
