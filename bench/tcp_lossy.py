"""Two sans-I/O TCP connections over a simulated lossy wire: 100 MB byte-exact.

The wire (tests/tcp_harness.py) serializes every segment with its checksum, and drops,
reorders, duplicates and corrupts from a seeded RNG; time is simulated (1 ms one-way
delay, 100 MB/s links). Reports the simulated goodput, the CPU time it took, and the
retransmission counts; the loss-free run is the reference beside the lossy ones.

Run: .venv/bin/python bench/tcp_lossy.py [--mb 100]
Writes bench/results/tcp_lossy.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.tcp_harness import Harness, WireModel, bulk_transfer  # noqa: E402

from miragekit.tcp import Config  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=int, default=100)
    args = ap.parse_args()
    size = args.mb * 1_000_000
    rows = []
    for loss, cc in (
        (0.0, "newreno"),
        (0.01, "newreno"),
        (0.05, "newreno"),
        (0.01, "cubic"),
        (0.05, "cubic"),
    ):
        cfg = Config(congestion=cc, recv_buffer=1 << 20, send_buffer=1 << 20)
        model = WireModel(
            loss=loss,
            reorder=0.01 if loss else 0.0,
            duplicate=0.005 if loss else 0.0,
            corrupt=0.001 if loss else 0.0,
            delay=0.001,
        )
        h = Harness(cfg, cfg, model, seed=42)
        t0 = time.process_time()
        sent, got, sim = bulk_transfer(h, size, time_limit=36000)
        cpu = time.process_time() - t0
        rows.append(
            {
                "loss": loss,
                "congestion": cc,
                "sha256_equal": sent == got,
                "sim_seconds": sim,
                "sim_goodput_MB_per_s": size / sim / 1e6,
                "cpu_seconds": cpu,
                "retransmits": h.a.stats["retransmits"],
                "fast_retransmits": h.a.stats["fast_retransmits"],
                "rto": h.a.stats["rto"],
                "corrupted_dropped": h.stats.bad_checksum,
            }
        )
        r = rows[-1]
        print(
            f"loss {loss:4.0%} {cc:8} sha256 {'OK' if r['sha256_equal'] else 'MISMATCH'} "
            f"sim {sim:7.2f}s goodput {r['sim_goodput_MB_per_s']:6.1f} MB/s cpu {cpu:6.1f}s "
            f"rexmit {r['retransmits']} (fast {r['fast_retransmits']}, rto {r['rto']}) "
            f"corrupt-dropped {r['corrupted_dropped']}",
            flush=True,
        )
    out = ROOT / "bench" / "results" / "tcp_lossy.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"megabytes": args.mb, "rows": rows}, indent=2))
    print(f"wrote {out}")
    if not all(r["sha256_equal"] for r in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
