"""CPU cost per TCP segment of our process, bulk over TAP without offload (MTU 1500).

Run (root): .venv/bin/python bench/tap_segcost.py [--mb N] [--repeat R]
            [--links tap packet2 packet3]

Wall-clock throughput on a shared machine moves with other load; the CPU time our
process spends per segment does not (much). This runs the two plain (no offload) TAP
transfers of ``bench/tap_datapath.py`` and reports, for each, user and system CPU
microseconds of this process per MSS-sized segment (``getrusage`` around the run; the
kernel's receive path for the frames we write runs in our thread and shows as system
time), beside the throughput. The best of ``--repeat`` runs is reported, all runs are
listed. ``--without-shortcut`` also runs each case with TCP's whole-frame shortcut
(``IPv4.frame_input``) off, taking turns with it on. ``--links`` adds our stack on a veth end through a ring-mapped packet socket
(``PacketNetif``, TPACKET_V2 or V3 rings; the kernel's end with transmit checksum offload
off), each direction run for every link in turn. ``--baseline DIR [DIR ...]`` also runs
every case with the ``miragekit`` of other checkouts (``DIR/src``, e.g. a worktree of main;
each named by its directory's name), taking turns with this one: before and after in
one run. Each case then runs in a child
process (the CPU time is the child's own). Writes bench/results/tap_segcost.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

if __name__ == "__main__" and len(sys.argv) > 2 and sys.argv[1] == "--child":
    # A child of --baseline: the miragekit of the given checkout, imported first.
    sys.path.insert(0, sys.argv[2])
    import miragekit  # noqa: F401

import tap_datapath as td  # noqa: E402
from proc_cpu import child_result, run_child  # noqa: E402

MSS = 1448  # 1500 - 20 - 20 - 12 (timestamps)


def one(link: str, shortcut: bool, direction: str, total: int) -> dict[str, float]:
    td.LINK = link
    td.FRAME_SHORTCUT = shortcut
    t0 = resource.getrusage(resource.RUSAGE_SELF)
    mbs = td.run_tap(direction, False, total, None)
    t1 = resource.getrusage(resource.RUSAGE_SELF)
    segs = total / MSS
    user = (t1.ru_utime - t0.ru_utime) / segs * 1e6
    sys_ = (t1.ru_stime - t0.ru_stime) / segs * 1e6
    return {"MB/s": round(mbs, 1), "user_us": round(user, 2), "sys_us": round(sys_, 2)}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _, _, src, link, direction, total = sys.argv
        assert td.PacketNetif.__module__.startswith("miragekit")
        child_result(src, one(link, True, direction, int(total)))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--links", nargs="+", choices=("tap", "packet2", "packet3"), default=["tap"])
    ap.add_argument(
        "--without-shortcut",
        action="store_true",
        help="also run each link with TCP's whole-frame shortcut off, taking turns",
    )
    ap.add_argument(
        "--baseline",
        type=Path,
        nargs="+",
        default=[],
        help="checkouts whose src/miragekit run every case too, taking turns (children)",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/tap_segcost.py needs root (namespaces and TAP devices)")
    total = args.mb * 1_000_000
    load_start = os.getloadavg()
    rows: list[dict[str, Any]] = []
    names = {"tap": "TAP", "packet2": "veth, V2 rings", "packet3": "veth, V3 rings"}
    # (link, shortcut, source tree: "" for this one, else a baseline's src)
    cases = [(link, True, "") for link in args.links]
    if args.without_shortcut:
        cases += [(link, False, "") for link in args.links]
    ours = str(HERE.parent / "src")
    label = {ours: "this tree"}
    if args.baseline:
        bases = [str(b.resolve() / "src") for b in args.baseline]
        label.update(
            {str(b.resolve() / "src"): f"baseline {b.resolve().name}" for b in args.baseline}
        )
        cases = [(link, True, src) for link in args.links for src in (*bases, ours)]
    for direction in ("us->kernel", "kernel->us"):
        runs: dict[tuple[str, bool, str], list[dict[str, float]]] = {c: [] for c in cases}
        for _ in range(args.repeat):  # the cases take turns, so that load weighs on all
            for link, shortcut, src in cases:
                if src:
                    r = run_child(__file__, src, link, direction, total)
                else:
                    r = one(link, shortcut, direction, total)
                runs[link, shortcut, src].append(r)
        for link, shortcut, src in cases:
            rs = runs[link, shortcut, src]
            best = min(rs, key=lambda r: r["user_us"] + r["sys_us"])
            path = f"{direction} over {names[link]}" + ("" if shortcut else ", no shortcut")
            if args.baseline:
                path += f", {label[src]}"
            rows.append({"path": path, **best, "runs": rs})
    width = max(len(str(r["path"])) for r in rows) + 1
    print(
        f"{'path':{width}} {'user us/seg':>12} {'sys us/seg':>11} {'MB/s':>7}"
        "  runs (user+sys, MB/s)"
    )
    for row in rows:
        listed = ", ".join(f"{x['user_us'] + x['sys_us']:.1f}/{x['MB/s']}" for x in row["runs"])
        print(
            f"{row['path']:{width}} {row['user_us']:>12.2f} {row['sys_us']:>11.2f}"
            f" {row['MB/s']:>7.1f}  {listed}"
        )
    out = Path(__file__).resolve().parent / "results" / "tap_segcost.json"
    out.parent.mkdir(exist_ok=True)
    load = {"start": load_start, "end": os.getloadavg()}
    print(f"load average (1, 5, 15 min) at start {load['start']}, at end {load['end']}")
    out.write_text(
        json.dumps(
            {
                "megabytes": args.mb,
                "baselines": [str(b) for b in args.baseline],
                "rows": rows,
                "loadavg": load,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
