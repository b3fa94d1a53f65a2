"""What a correct Reno or CUBIC sender can reach against the Mathis figure, by round-trip model.

The Mathis figure 1.22·MSS/(RTT·√p) is derived for a window that halves on a loss every
1/p segments and grows continuously in between. ``bench/tcp_lossy.py`` drops segments at
random (Bernoulli, each with probability p). This model sends round trip by round trip:
a window of W segments (whole segments, or W as a fluid), each lost with probability p
(or, "periodic", exactly one in 1/p); a round without loss grows W, a round with a loss
reduces it. Reno (RFC 5681, byte counting) grows one segment a round and halves; CUBIC
(RFC 9438) takes the larger of its cubic function of the time since the recovery and
its Reno-friendly estimate (alpha 0.53 until the window before the last reduction, then
1), and multiplies by β = 0.7 with fast convergence; its cubic part depends on the RTT
in seconds, so it runs at each of ``--rtt-ms``. Two variants of each: "ideal" goes on
growing from the reduced window at once (no cost for the recovery); "with the recovery
round" spends one round trip at ssthresh without growth, as RFC 5681, RFC 6937 (PRR) and
Linux do while the retransmission is outstanding, and a loss in that round starts the
next recovery after it. "+early" lets the ACKs of the segments sent before a round's
first loss grow the window before the reduction, as a sender that grows per ACK does
(the round model otherwise grows nothing in a round with a loss). Goodput is segments delivered per round trip, against Mathis's
1.22/√p.

Run: .venv/bin/python bench/reno_model.py [--rounds 300000] [--loss 0.01 0.05] [--rtt-ms 2 20]
Writes bench/results/reno_model.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import random
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class _Wire:
    """Which of n segments are lost: Bernoulli per segment, or one in every 1/p."""

    def __init__(self, p: float, periodic: bool, seed: int) -> None:
        self.p = p
        self.periodic = periodic
        self.rng = random.Random(seed)
        self.acc = 0.0
        self.share = 1.0
        self.pos = random.Random(seed + 1)

    def lost(self, n: float) -> int:
        """How many of ``n`` segments are lost; ``share`` is then the part of the round
        sent before the first of them (1 without a loss)."""
        self.share = 1.0
        if self.periodic:
            before = self.acc
            self.acc += n
            k = int(self.acc * self.p)
            self.acc -= k / self.p
            if k:
                self.share = (1 / self.p - before) / n
            return k
        if n == int(n):
            k = 0
            for i in range(int(n)):
                if self.rng.random() < self.p:
                    if not k:
                        self.share = i / n
                    k += 1
            return k
        # A fluid window: the count of losses among W segments is Poisson(p·W).
        lam = self.p * n
        k, term, u = 0, math.exp(-lam), self.rng.random()
        total = term
        while u > total:
            k += 1
            term *= lam / k
            total += term
        if k:
            # The first of k losses placed uniformly in the round (its own stream, so
            # the counts are the same as without it).
            self.share = 1 - self.pos.random() ** (1 / k)
        return k


class Reno:
    """RFC 5681: one segment per round trip without loss, half the window on a loss."""

    def __init__(self) -> None:
        self.w = 10.0

    def grow(self, n: float, share: float = 1.0) -> None:
        """The ACKs of ``share`` of a round of ``n`` segments: one segment a round."""
        self.w += share

    def reduce(self) -> None:
        self.w = max(self.w / 2, 2.0)


# RFC 9438's constants (as src/miragekit/tcp/congestion/cubic.py).
C = 0.4
BETA = 0.7
ALPHA = 3 * (1 - BETA) / (1 + BETA)


class Cubic:
    """RFC 9438 per round trip of ``rtt`` seconds: W_cubic(t) = C(t-K)^3 + W_max with
    t from the first round after the recovery (4.2), the Reno-friendly estimate growing
    by alpha = 3(1-β)/(1+β) a round until it reaches cwnd_prior, then 1 (4.3), cwnd the
    larger of the two, the cubic target clamped to 1.5·cwnd (4.4-4.5); on a loss β = 0.7
    and fast convergence (4.6-4.7)."""

    def __init__(self, rtt: float) -> None:
        self.rtt = rtt
        self.w = 10.0
        self.w_max = 0.0
        self.prior = 0.0
        self.w_est = 0.0
        self.k = 0.0
        self.t: float | None = None  # None: the next round starts an epoch

    def grow(self, n: float, share: float = 1.0) -> None:
        """The ACKs of ``share`` of a round of ``n`` segments (one a segment)."""
        w = self.w
        if self.t is None:
            self.t = 0.0
            self.k = ((self.w_max - w) / C) ** (1 / 3) if w < self.w_max else 0.0
            if w >= self.w_max:
                self.w_max = w
            self.w_est = w
        self.t += self.rtt * share
        alpha = 1.0 if self.w_est >= self.prior else ALPHA
        self.w_est += alpha * n * share / w
        cubic = C * (self.t - self.k) ** 3 + self.w_max
        if cubic < self.w_est:
            self.w = max(self.w_est, w)
        else:
            self.w = w + (max(min(cubic, 1.5 * w), w) - w) * share

    def reduce(self) -> None:
        w = self.w
        self.prior = w
        self.w_max = w * (1 + BETA) / 2 if w < self.w_max else w
        self.w = max(w * BETA, 2.0)
        self.t = None


def run(
    p: float,
    cc: Reno | Cubic,
    *,
    recovery_round: bool,
    early: bool,
    whole: bool,
    periodic: bool,
    rounds: int,
) -> float:
    """Segments delivered per round trip by the window ``cc`` under loss rate ``p``: a
    round with a loss reduces it, one without grows it; "with the recovery round", the
    round after a reduction neither grows it (the retransmission outstanding) and a loss
    in it starts the next recovery after it; ``early``: the ACKs of the segments sent
    before the first loss of a round grow the window before it is reduced (as they do
    in a sender that grows per ACK)."""
    wire = _Wire(p, periodic, seed=1)
    delivered = 0.0
    recovering = False
    for _ in range(rounds):
        n = math.floor(cc.w) if whole else cc.w
        lost = wire.lost(n)
        delivered += n - lost
        if recovering:
            recovering = False  # the recovery round: no growth
            if lost:
                cc.reduce()
                recovering = recovery_round
            continue
        if lost:
            if early and wire.share > 0:
                cc.grow(n, wire.share)
            cc.reduce()
            recovering = recovery_round
        else:
            cc.grow(n)
    return delivered / rounds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=300_000, help="round trips per case")
    ap.add_argument("--loss", type=float, nargs="+", default=[0.01, 0.05], help="loss rates")
    ap.add_argument("--rtt-ms", type=float, nargs="+", default=[2.0, 20.0], help="CUBIC's RTTs")
    args = ap.parse_args()
    senders: list[tuple[str, Callable[[], Reno | Cubic]]] = [("Reno", Reno)]
    for ms in args.rtt_ms:
        senders.append((f"CUBIC {ms:g} ms", functools.partial(Cubic, ms / 1000)))
    rows = []
    variants = {
        "ideal": (False, False),
        "ideal_early": (False, True),
        "recovery_round": (True, False),
        "recovery_round_early": (True, True),
    }
    print(
        f"{'loss':>4} {'loss model':10} {'window':6} {'sender':13} {'Mathis':>6} "
        f"{'ideal':>13} {'+early':>13} {'recovery':>13} {'+early':>13}"
        "   (segments per round trip)"
    )
    for p in args.loss:
        ref = 1.22 / math.sqrt(p)
        for periodic in (True, False):
            for whole in (False, True):
                for name, make in senders:
                    got = {
                        key: run(
                            p,
                            make(),
                            recovery_round=r,
                            early=e,
                            whole=whole,
                            periodic=periodic,
                            rounds=args.rounds,
                        )
                        for key, (r, e) in variants.items()
                    }
                    rows.append(
                        {
                            "loss": p,
                            "loss_model": "periodic" if periodic else "bernoulli",
                            "window": "whole" if whole else "fluid",
                            "sender": name,
                            "mathis": ref,
                            **got,
                        }
                    )
                    cells = " ".join(f"{v:6.2f} ({v / ref:4.2f}x)" for v in got.values())
                    print(
                        f"{p:4.0%} {'periodic' if periodic else 'Bernoulli':10} "
                        f"{'whole' if whole else 'fluid':6} {name:13} {ref:6.2f} {cells}"
                    )
    out = ROOT / "bench" / "results" / "reno_model.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rounds": args.rounds, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
