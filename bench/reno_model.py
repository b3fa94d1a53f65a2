"""What a correct Reno sender can reach against the Mathis figure, by round-trip model.

The Mathis figure 1.22·MSS/(RTT·√p) is derived for a window that halves on a loss every
1/p segments and grows continuously in between. ``bench/tcp_lossy.py`` drops segments at
random (Bernoulli, each with probability p). This model sends round trip by round trip:
a window of W segments (whole segments, or W as a fluid), each lost with probability p
(or, "periodic", exactly one in 1/p); a round without loss grows W by one segment
(RFC 5681 congestion avoidance, byte counting), a round with a loss halves it. Two
senders: "ideal" goes on growing from W/2 at once (no cost for the recovery); "with the
recovery round" spends one round trip at ssthresh = W/2 without growth, as RFC 5681,
RFC 6937 (PRR) and Linux do while the retransmission is outstanding, and a loss in that
round starts the next recovery after it. Goodput is segments delivered per round trip,
against Mathis's 1.22/√p.

Run: .venv/bin/python bench/reno_model.py [--rounds 300000] [--loss 0.01 0.05]
Writes bench/results/reno_model.json.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class _Wire:
    """Which of n segments are lost: Bernoulli per segment, or one in every 1/p."""

    def __init__(self, p: float, periodic: bool, seed: int) -> None:
        self.p = p
        self.periodic = periodic
        self.rng = random.Random(seed)
        self.acc = 0.0

    def lost(self, n: float) -> int:
        if self.periodic:
            self.acc += n
            k = int(self.acc * self.p)
            self.acc -= k / self.p
            return k
        if n == int(n):
            return sum(1 for _ in range(int(n)) if self.rng.random() < self.p)
        # A fluid window: the count of losses among W segments is Poisson(p·W).
        lam = self.p * n
        k, term, u = 0, math.exp(-lam), self.rng.random()
        total = term
        while u > total:
            k += 1
            term *= lam / k
            total += term
        return k


def reno(p: float, *, recovery_round: bool, whole: bool, periodic: bool, rounds: int) -> float:
    """Segments delivered per round trip by a Reno window under loss rate ``p``."""
    wire = _Wire(p, periodic, seed=1)
    w = 10.0
    delivered = 0.0
    recovering = False
    for _ in range(rounds):
        n = math.floor(w) if whole else w
        lost = wire.lost(n)
        delivered += n - lost
        if recovering:
            recovering = False  # the recovery round: no growth
            if lost:
                w = max(w / 2, 2.0)
                recovering = recovery_round
            continue
        if lost:
            w = max(w / 2, 2.0)
            recovering = recovery_round
        else:
            w += 1.0
    return delivered / rounds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=300_000, help="round trips per case")
    ap.add_argument("--loss", type=float, nargs="+", default=[0.01, 0.05], help="loss rates")
    args = ap.parse_args()
    rows = []
    print(
        f"{'loss':>4} {'loss model':10} {'window':6} {'Mathis':>7} "
        f"{'ideal Reno':>16} {'with recovery round':>20}   (segments per round trip)"
    )
    for p in args.loss:
        ref = 1.22 / math.sqrt(p)
        for periodic in (True, False):
            for whole in (False, True):
                ideal, rec = (
                    reno(p, recovery_round=r, whole=whole, periodic=periodic, rounds=args.rounds)
                    for r in (False, True)
                )
                rows.append(
                    {
                        "loss": p,
                        "loss_model": "periodic" if periodic else "bernoulli",
                        "window": "whole" if whole else "fluid",
                        "mathis": ref,
                        "ideal": ideal,
                        "recovery_round": rec,
                    }
                )
                print(
                    f"{p:4.0%} {'periodic' if periodic else 'Bernoulli':10} "
                    f"{'whole' if whole else 'fluid':6} {ref:7.2f} "
                    f"{ideal:7.2f} ({ideal / ref:4.2f}x) {rec:11.2f} ({rec / ref:4.2f}x)"
                )
    out = ROOT / "bench" / "results" / "reno_model.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rounds": args.rounds, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
