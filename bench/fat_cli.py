"""The ``miragekit fat`` command beside mtools: put and get of many small files and of one
large file, synced and not.

Run: .venv/bin/python bench/fat_cli.py [--files 2000] [--large 200M] [--repeat 3]

Every contender is a process started the way a user starts it (``python -m miragekit fat``,
``mcopy``), timed by wall clock from start to exit, on a fresh ``mkfs.fat`` image of
``--image-size`` in a temporary directory on the disk (``--dir``, default the system's).
Cases:
* put of ``--files`` files of 1 KiB (one directory, recursively; 8.3 names, or long names
  with ``--names long``: mcopy's cost then grows with the square of the file count) and
  of one ``--large`` file:
  ``miragekit fat put`` (each write on disk before the next: ``O_DSYNC``), the same with
  ``--no-sync`` (page cache, one ``fsync`` at the end), ``mcopy`` (page cache, never synced)
  and ``mcopy`` followed by ``sync IMAGE`` (the same bytes made durable once);
* get of the same files out of the image: ``miragekit fat get`` and ``mcopy`` (nothing is
  synced on the host side by either).
Runs go round-robin over the contenders ``--repeat`` times, the best of each is kept. The
load average is recorded at the start and the end. Prints a table and writes
bench/results/fat_cli.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from miragekit.cli.fat import parse_size  # noqa: E402

MiB = 1 << 20
ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "LANG": "C.UTF-8", "PYTHONPATH": str(ROOT / "src")}
OURS = [sys.executable, "-m", "miragekit", "fat"]

Cmds = list[list[str]]


def mkfs(path: Path, size: int) -> None:
    with path.open("wb") as f:
        f.truncate(size)
    subprocess.run(["mkfs.fat", str(path)], check=True, capture_output=True)


def timed(cmds: Cmds) -> float:
    """Run ``cmds`` one after the other; their wall time."""
    t0 = time.perf_counter()
    for c in cmds:
        subprocess.run(c, check=True, env=ENV, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def put_cmds(img: Path, src: Path, large: bool) -> dict[str, Cmds]:
    """Copy ``src`` (a directory, or the large file) to the image's root."""
    i = str(img)
    mc = ["mcopy", "-i", i, str(src), "::/"] if large else ["mcopy", "-s", "-i", i, str(src), "::/"]
    return {
        "miragekit put": [[*OURS, "put", i, str(src), "/"]],
        "miragekit put --no-sync": [[*OURS, "put", "--no-sync", i, str(src), "/"]],
        "mcopy": [mc],
        "mcopy, then sync IMAGE": [mc, ["sync", i]],
    }


def get_cmds(img: Path, name: str, out: Path, large: bool) -> dict[str, Cmds]:
    i = str(img)
    mc = ["mcopy", "-i", i, f"::/{name}", str(out)]
    if not large:
        mc.insert(1, "-s")
    return {"miragekit get": [[*OURS, "get", i, f"/{name}", str(out)]], "mcopy": [mc]}


def run_case(
    work: Path, src: Path, image_size: int, large: bool, repeat: int
) -> dict[str, dict[str, float]]:
    """Best seconds of each contender, for put then get of ``src``."""
    best: dict[str, dict[str, float]] = {"put": {}, "get": {}}
    filled = work / "filled.img"
    for r in range(repeat):
        for name, cmds in put_cmds(work / "x.img", src, large).items():
            img = work / "x.img"
            mkfs(img, image_size)
            subprocess.run(["sync", str(img)], check=True)
            print(f"put {'large' if large else 'small'}: {name} ...", file=sys.stderr, flush=True)
            t = timed(cmds)
            best["put"][name] = min(t, best["put"].get(name, t))
            if r == 0 and name == "miragekit put":
                shutil.copyfile(img, filled)
        for name, cmds in get_cmds(filled, src.name, work / "out", large).items():
            shutil.rmtree(work / "out", ignore_errors=True)
            (work / "out").unlink(missing_ok=True)
            if not large:
                (work / "out").mkdir()
            print(f"get {'large' if large else 'small'}: {name} ...", file=sys.stderr, flush=True)
            t = timed(cmds)
            best["get"][name] = min(t, best["get"].get(name, t))
        shutil.rmtree(work / "out", ignore_errors=True)
        (work / "out").unlink(missing_ok=True)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--large", type=parse_size, default=200 * MiB)
    ap.add_argument("--image-size", type=parse_size, default=320 * MiB)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--names",
        choices=("short", "long"),
        default="short",
        help="small files named f00001.bin (8.3) or 'small file 00001.bin' (long names)",
    )
    ap.add_argument("--dir", default=None, help="where the images go (a disk, not tmpfs)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "fat_cli.json"))
    args = ap.parse_args(argv)
    load_start = os.getloadavg()
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="fatcli-", dir=args.dir) as tmp:
        work = Path(tmp)
        small = work / "small"
        small.mkdir()
        payload = os.urandom(1024)
        for i in range(args.files):
            name = f"f{i:05}.bin" if args.names == "short" else f"small file {i:05}.bin"
            (small / name).write_bytes(payload)
        big = work / "large.bin"
        big.write_bytes(os.urandom(args.large))
        results["small"] = run_case(work, small, args.image_size, False, args.repeat)
        results["large"] = run_case(work, big, args.image_size, True, args.repeat)
    load_end = os.getloadavg()

    mb = args.large / MiB
    print(f"\nload average at start {load_start[0]:.2f}, at end {load_end[0]:.2f}")
    print(f"{'case':44} {'contender':26} {'seconds':>8} {'rate':>14} {'x mcopy':>8}")
    table: list[dict[str, object]] = []
    small_what = f"{args.files} x 1 KiB ({args.names} names)"
    for case, what in (("small", small_what), ("large", f"1 x {mb:.0f} MiB")):
        for op in ("put", "get"):
            ref = results[case][op]["mcopy"]
            for name, secs in results[case][op].items():
                rate = (
                    f"{args.files / secs:.0f} files/s"
                    if case == "small"
                    else f"{mb / secs:.1f} MiB/s"
                )
                row = {"case": f"{op} {what}", "contender": name, "seconds": secs, "rate": rate}
                row["vs_mcopy"] = secs / ref
                table.append(row)
                print(f"{op + ' ' + what:44} {name:26} {secs:8.2f} {rate:>14} {secs / ref:8.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "args": {k: v for k, v in vars(args).items() if k != "out"},
                "load_start": load_start,
                "load_end": load_end,
                "rows": table,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
