"""Is a scenario deterministic? Run it twice and name the first difference.

Why: a simulation is only worth its seed if the same seed gives the same run. A
:class:`~miragekit.sim.Network` runs once and its hosts' ``main``s are usually closures,
so the scenario is given as a builder, ``build(seed) -> Network``; it is built and run
twice with the same seed, every capture going to a directory of the check's own, and the
runs are compared in the order that explains a difference best: the event log line by
line, then each host's outcome, then every pcap frame by frame (same bytes, same
timestamps). What escaped the simulation in either run (:class:`~miragekit.sim.Escape`)
is named beside the difference: it is the usual cause.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ._escape import Escape
from ._network import Network, Report

_FILE_HEADER = 24
_RECORD = struct.Struct("<IIII")


@dataclass(frozen=True, slots=True)
class Determinism:
    """What :func:`check_determinism` found: ``ok``, and if not, ``difference`` (one
    paragraph naming the first difference); the two reports; escapes seen in either run."""

    ok: bool
    difference: str
    reports: tuple[Report, Report]
    escapes: list[Escape] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return "deterministic" if self.ok else self.difference


def pcap_frames(path: str | os.PathLike[str]) -> Iterator[tuple[int, int, bytes]]:
    """The records of a classic pcap file: ``(seconds, fraction, frame bytes)``."""
    data = Path(path).read_bytes()
    at = _FILE_HEADER
    while at + _RECORD.size <= len(data):
        sec, frac, incl, _orig = _RECORD.unpack_from(data, at)
        at += _RECORD.size
        yield sec, frac, data[at : at + incl]
        at += incl


def _first_frame_difference(a: str, b: str) -> str | None:
    fa, fb = pcap_frames(a), pcap_frames(b)
    n = 0
    while True:
        n += 1
        ra, rb = next(fa, None), next(fb, None)
        if ra == rb:
            if ra is None:
                return None
            continue
        if ra is None or rb is None:
            longer = "second" if ra is None else "first"
            return f"frame {n}: only the {longer} run has it (one run sent more)"
        what = "bytes" if ra[2] != rb[2] else "timestamps"
        return f"frame {n} ({what} differ): t={ra[0]}.{ra[1]:06d} vs t={rb[0]}.{rb[1]:06d}"


def _describe(report: Report) -> list[str]:
    return [
        f"{n}: {h.state} {h.value!r} {h.error!r} restarts={h.restarts} {h.counters!r}"
        for n, h in report.hosts.items()
    ]


def check_determinism(
    build: Callable[[int], Network],
    seed: int = 0,
    *,
    until: float | None = None,
    keep: str | os.PathLike[str] | None = None,
) -> Determinism:
    """Build (``build(seed)``) and run the scenario twice, up to ``until``, and compare.

    Captures go under ``keep`` (``run1/``, ``run2/``; kept) or a temporary directory
    (removed). The scenario's own capture paths are not written."""
    with tempfile.TemporaryDirectory(prefix="miragekit-determinism-") as tmp:
        base = Path(keep) if keep is not None else Path(tmp)
        nets: list[Network] = []
        for i in (1, 2):
            net = build(seed)
            if not isinstance(net, Network):
                raise TypeError(
                    f"check_determinism: build(seed) must return a Network, got {net!r}"
                )
            net._capture_dir = str(base / f"run{i}")
            net.run(until=until)
            nets.append(net)
        return compare_runs(nets[0], nets[1], kept=keep is not None)


def compare_runs(first: Network, second: Network, *, kept: bool = True) -> Determinism:
    """Compare two networks that have run the same scenario with the same seed (their
    captures redirected with ``_capture_dir``); ``kept``: name the capture files."""
    one, two = first.report, second.report
    if one is None or two is None:
        raise RuntimeError("compare_runs: both networks must have run")
    escapes = list(
        {(e.kind, e.host, e.what, e.where): e for r in (one, two) for e in r.escapes}.values()
    )
    diff = _difference(one, two, first._capture_files, second._capture_files, kept)
    if diff is None:
        return Determinism(True, "", (one, two), escapes)
    text = f"seed {one.seed} is not deterministic: {diff}"
    if escapes:
        text += "; code escaped the simulation: " + "; ".join(str(e) for e in escapes)
    return Determinism(False, text, (one, two), escapes)


def _difference(
    one: Report, two: Report, caps1: dict[str, str], caps2: dict[str, str], kept: bool
) -> str | None:
    for i, (a, b) in enumerate(zip(one.events, two.events, strict=False)):
        if a != b:
            return f"event {i + 1} differs: first run {str(a).strip()!r}, second run {str(b).strip()!r}"
    if len(one.events) != len(two.events):
        n = min(len(one.events), len(two.events))
        longer, extra = (
            ("first", one.events[n]) if len(one.events) > n else ("second", two.events[n])
        )
        return f"event {n + 1} is only in the {longer} run: {str(extra).strip()!r}"
    for x, y in zip(_describe(one), _describe(two), strict=True):
        if x != y:
            return f"host outcomes differ: first run {x}, second run {y}"
    for what, path in caps1.items():
        diff = _first_frame_difference(path, caps2[what])
        if diff is not None:
            where = f" ({path} vs {caps2[what]})" if kept else ""
            return f"capture of {what}: {diff}{where}"
    if one.time != two.time:
        return f"the runs ended at different times: {one.time} vs {two.time}"
    return None
