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

import copy
import functools
import os
import struct
import tempfile
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

    def make(_run: int) -> Network:
        net = build(seed)
        if not isinstance(net, Network):
            raise TypeError(f"check_determinism: build(seed) must return a Network, got {net!r}")
        return net

    return _twice(make, until, keep)


def check_network(
    net: Network, until: float | None, keep: str | os.PathLike[str] | None
) -> Determinism:
    """:meth:`Network.check_determinism`: run ``net`` and a replica built from its
    recorded plan (hosts, links, captures, scheduled faults), and compare."""
    if net._state != "plan":
        raise RuntimeError(
            "check_determinism: this network has already run; call it instead of run() "
            "(it runs the network itself), or use sim.check_determinism(build, seed)"
        )
    if not net._hosts:
        raise ValueError("check_determinism: the network has no hosts (add them with host())")
    if until is not None and (isinstance(until, bool) or not until > 0):
        raise ValueError(f"check_determinism: until must be > 0 seconds or None, got {until!r}")
    twin = _replica(net)
    return _twice(lambda run: net if run == 1 else twin, until, keep)


def _twice(
    make: Callable[[int], Network], until: float | None, keep: str | os.PathLike[str] | None
) -> Determinism:
    with tempfile.TemporaryDirectory(prefix="miragekit-determinism-") as tmp:
        base = Path(keep) if keep is not None else Path(tmp)
        nets: list[Network] = []
        for i in (1, 2):
            net = make(i)
            net._capture_dir = str(base / f"run{i}")
            net.run(until=until)
            nets.append(net)
        return compare_runs(nets[0], nets[1], kept=keep is not None)


def _replica(net: Network) -> Network:
    """A fresh network with ``net``'s plan and seed. Programs and actions are called
    again, so they are deep-copied now, before the first run changes any state they
    hold (``main=node.serve``); one that refers to ``net`` itself is refused (the second
    run would act on the first network)."""
    hosts = list(net._hosts.values())
    programs: list[tuple[str, Any]] = [(f"host {h.name!r}'s main", h.main) for h in hosts]
    programs += [
        (f"the action scheduled at t={when:g}", args[0])
        for method, args, when in net._plan_calls
        if method == "at"
    ]
    for what, fn in programs:
        if fn is not None and _reaches(fn, net):
            raise ValueError(
                f"check_determinism: {what} ({_name(fn)}) refers to this Network, so a second "
                "run would act on the first one; build the scenario in a function and use "
                "sim.check_determinism(build, seed)"
            )
    try:
        copies: list[Any] = copy.deepcopy([fn for _, fn in programs])
    except Exception as e:  # deepcopy raises whatever an object's __reduce__ raises
        raise ValueError(
            f"check_determinism: the hosts' programs cannot be copied for a second run "
            f"({type(e).__name__}: {e}); build the scenario in a function and use "
            "sim.check_determinism(build, seed)"
        ) from None
    twin = Network(
        net.seed,
        subnet=str(net.subnet),
        subnet6=str(net.subnet6),
        link=net._link,
        idle_timeout=net._idle_timeout,
    )
    for h, main in zip(hosts, copies, strict=False):
        twin.host(
            h.name,
            main,
            ip=h.ip,
            ip6=h.ip6 is not None,
            link=h.link,
            pcap=h.pcap,
            clock_skew=h.skew,
            drift=h.drift,
        )
    twin._capture = net._capture
    actions = iter(copies[len(hosts) :])
    for method, args, when in net._plan_calls:
        if method == "at":
            twin.at(when, next(actions))
        else:
            getattr(twin, method)(*args, at=when)
    return twin


def _name(fn: object) -> str:
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    name = getattr(fn, "__qualname__", type(fn).__name__)
    return name if code is None else f"{name} at {code.co_filename}:{code.co_firstlineno}"


def _reaches(start: object, target: object, limit: int = 20_000) -> bool:
    """Whether ``target`` is reachable from callable ``start`` through what it holds:
    closures, defaults, globals its code names, bound objects, partials' arguments,
    containers and instances' attributes (modules and classes are not entered)."""
    seen: set[int] = set()
    todo: list[object] = [start]
    while todo and len(seen) < limit:
        obj = todo.pop()
        if obj is target:
            return True
        if id(obj) in seen or isinstance(obj, types.ModuleType | type | str | bytes | int):
            continue
        seen.add(id(obj))
        if isinstance(obj, types.FunctionType):
            todo += [c.cell_contents for c in obj.__closure__ or () if _filled(c)]
            todo += list(obj.__defaults__ or ()) + list((obj.__kwdefaults__ or {}).values())
            todo += [obj.__globals__[n] for n in _names(obj.__code__) if n in obj.__globals__]
        elif isinstance(obj, types.MethodType):
            todo += [obj.__self__, obj.__func__]
        elif isinstance(obj, functools.partial):
            todo += [obj.func, *obj.args, *obj.keywords.values()]
        elif isinstance(obj, list | tuple | set | frozenset):
            todo += list(obj)
        elif isinstance(obj, dict):
            todo += list(obj.values())
        else:
            attrs: Any = getattr(obj, "__dict__", None)
            if isinstance(attrs, dict):
                todo += list(attrs.values())
    return False


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def _names(code: types.CodeType) -> set[str]:
    """The global names a function's code (and the code nested in it) uses."""
    out = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            out |= _names(c)
    return out


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
