"""Two sans-I/O TCP connections over a simulated lossy wire, byte-exact, against Mathis.

The wire (tests/tcp_harness.py) serializes every segment with its checksum, and drops
(both directions), reorders, duplicates and corrupts from a seeded RNG; time is
simulated (100 MB/s links). For each RTT it runs a loss-free transfer, then 1% and 5%
random loss with NewReno and CUBIC, and prints beside each lossy row the Mathis figure
1.22·MSS/(RTT·√p), the rule of thumb for a Reno sender, as the reference. The lossy wire
also reorders 1% of segments (4 ms late), duplicates 0.5% and corrupts 0.1%, unless
``--loss-only`` (random loss alone, the model Mathis's figure assumes).

Run: .venv/bin/python bench/tcp_lossy.py [--mb 100] [--rtt-ms 2 20] [--loss-only]
Writes bench/results/tcp_lossy.json (tcp_lossy_loss_only.json with --loss-only).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.tcp_harness import Harness, WireModel, bulk_transfer  # noqa: E402

from miragekit.tcp import Config  # noqa: E402


def lossy_path(rtt_ms: float, loss: float, cc: str, loss_only: bool) -> tuple[Config, WireModel]:
    """Both ends' configuration and the wire of one row: buffers of at least four
    loss-free bandwidth-delay products; with loss, the full wire also reorders,
    duplicates and corrupts, unless ``loss_only``."""
    rtt = rtt_ms / 1000
    buf = max(1 << 20, 1 << math.ceil(math.log2(4 * 100e6 * rtt)))
    cfg = Config(congestion=cc, recv_buffer=buf, send_buffer=buf)
    extra = loss > 0 and not loss_only
    model = WireModel(
        loss=loss,
        reorder=0.01 if extra else 0.0,
        duplicate=0.005 if extra else 0.0,
        corrupt=0.001 if extra else 0.0,
        delay=rtt / 2,
    )
    return cfg, model


def mathis(mss: int, rtt: float, loss: float) -> float:
    """Bytes per second a Reno flow reaches at this random loss rate (Mathis et al. 1997)."""
    return 1.22 * mss / (rtt * math.sqrt(loss))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=int, default=100, help="megabytes per transfer")
    ap.add_argument("--rtt-ms", type=float, nargs="+", default=[2.0, 20.0], help="RTTs")
    ap.add_argument("--loss", type=float, nargs="+", default=[0.01, 0.05], help="loss rates")
    ap.add_argument(
        "--congestion", nargs="+", default=["newreno", "cubic"], choices=["newreno", "cubic"]
    )
    ap.add_argument("--no-reference", action="store_true", help="skip the loss-free rows")
    ap.add_argument(
        "--loss-only",
        action="store_true",
        help="random loss alone: no reordering, duplicates or corruption (Mathis's model)",
    )
    args = ap.parse_args()
    size = args.mb * 1_000_000
    rows = []
    cases = []
    for rtt_ms in args.rtt_ms:
        if not args.no_reference:
            cases.append((rtt_ms, 0.0, "newreno"))
        cases += [(rtt_ms, loss, cc) for loss in args.loss for cc in args.congestion]
    for rtt_ms, loss, cc in cases:
        rtt = rtt_ms / 1000
        cfg, model = lossy_path(rtt_ms, loss, cc, args.loss_only)
        h = Harness(cfg, cfg, model, seed=42)
        t0 = time.process_time()
        sent, got, sim = bulk_transfer(h, size, time_limit=36000)
        cpu = time.process_time() - t0
        ref = mathis(h.a.mss, rtt, loss) / 1e6 if loss else None
        rows.append(
            {
                "rtt_ms": rtt_ms,
                "loss": loss,
                "congestion": cc,
                "sha256_equal": sent == got,
                "sim_seconds": sim,
                "sim_goodput_MB_per_s": size / sim / 1e6,
                "mathis_MB_per_s": ref,
                "cpu_seconds": cpu,
                "retransmits": h.a.stats["retransmits"],
                "fast_retransmits": h.a.stats["fast_retransmits"],
                "rto": h.a.stats["rto"],
                "tail_loss_probes": h.a.stats["tail_loss_probes"],
                "undos": h.a.stats["undos"],
                "corrupted_dropped": h.stats.bad_checksum,
            }
        )
        r = rows[-1]
        vs = f" mathis {ref:6.2f} ({r['sim_goodput_MB_per_s'] / ref:4.2f}x)" if ref else ""
        print(
            f"rtt {rtt_ms:4.0f}ms loss {loss:4.0%} {cc:8} "
            f"{'OK' if r['sha256_equal'] else 'MISMATCH'} "
            f"sim {sim:7.2f}s goodput {r['sim_goodput_MB_per_s']:6.2f} MB/s{vs} "
            f"cpu {cpu:5.1f}s rexmit {r['retransmits']} (fast {r['fast_retransmits']}, "
            f"rto {r['rto']}, tlp {r['tail_loss_probes']}, undo {r['undos']})",
            flush=True,
        )
    out = (
        ROOT
        / "bench"
        / "results"
        / ("tcp_lossy_loss_only.json" if args.loss_only else "tcp_lossy.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"megabytes": args.mb, "loss_only": args.loss_only, "rows": rows}, indent=2)
    )
    print(f"wrote {out}")
    if not all(r["sha256_equal"] for r in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
