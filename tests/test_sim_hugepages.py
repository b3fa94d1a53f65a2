"""The simulator puts its heap on 2 MB pages while it runs (where Linux allows it), turns
off with ``MIRAGEKIT_HUGE_PAGES=0``, cleans up after itself, and changes nothing a
seeded run does."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import gc
import itertools
import os
from pathlib import Path

import pytest
from tests.test_sim_observe import restarting

from miragekit import sim
from miragekit.sim import _hugepages
from miragekit.sim import _loop as sim_loop
from miragekit.sim._hugepages import HUGE, anonymous_writable, huge_span

MAPS = """\
55d0c0a00000-55d0c0a21000 r--p 00000000 08:01 131 /usr/bin/python3.11
55d0c1000000-55d0c1400000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000600000 rw-p 00000000 00:00 0
7f0000600000-7f0000700000 rw-s 00000000 00:05 9 /dev/zero (deleted)
7f0000700000-7f0000800000 ---p 00000000 00:00 0
7f0000800000-7f0000900000 r--p 00000000 00:00 0
7f0000900000-7f0000a00000 rw-p 00001000 08:01 77 /usr/lib/libc.so.6
7ffc00000000-7ffc00400000 rw-p 00000000 00:00 0 [stack]
"""


def test_only_private_writable_anonymous_mappings_and_the_heap_are_chosen() -> None:
    assert anonymous_writable(MAPS) == [
        (0x55D0C1000000, 0x55D0C1400000),
        (0x7F0000000000, 0x7F0000600000),
    ]


def test_the_span_is_the_whole_2mb_pages_inside_a_mapping() -> None:
    assert huge_span(0, 3 * HUGE) == (0, 3 * HUGE)
    assert huge_span(4096, 3 * HUGE + 4096) == (HUGE, 3 * HUGE)
    assert huge_span(4096, 2 * HUGE + 8192) == (HUGE, 2 * HUGE)
    assert huge_span(4096, 2 * HUGE - 4096) is None  # no whole 2 MB page inside
    assert huge_span(HUGE, HUGE + 1024 * 1024) is None


def anon_huge_kb() -> int:
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("AnonHugePages:"):
                return int(line.split()[1])
    raise AssertionError("no AnonHugePages line in /proc/self/smaps_rollup")


async def grow() -> int:
    """Make ~80 MB of small objects, as a cluster's start-up does, and keep them."""
    junk = [[i, str(i)] for i in range(700_000)]
    await asyncio.sleep(1)
    return anon_huge_kb() if len(junk) else 0


def test_a_growing_simulation_is_put_on_2mb_pages_and_cleans_up() -> None:
    assert gc.isenabled()
    callbacks = list(gc.callbacks)
    fds = len(os.listdir("/proc/self/fd"))
    huge_kb = sim.run(grow())
    stats = sim.huge_page_stats()
    assert stats.scans >= 1 and stats.advised >= 16 << 20
    if _hugepages.system_mode() in ("always", "madvise"):
        assert stats.unavailable == ""
        assert stats.collapsed >= 16 << 20, stats
        assert huge_kb * 1024 >= stats.collapsed // 2, (huge_kb, stats)
        assert stats.seconds < 5
    else:  # the kernel said no: the run went on without them
        assert stats.collapsed == 0 and stats.unavailable, stats
    assert gc.callbacks == callbacks
    assert len(os.listdir("/proc/self/fd")) == fds


def test_it_is_off_with_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIRAGEKIT_HUGE_PAGES", "0")
    callbacks = list(gc.callbacks)
    sim.run(grow())
    stats = sim.huge_page_stats()
    assert (stats.scans, stats.advised, stats.collapsed) == (0, 0, 0)
    assert stats.unavailable == "MIRAGEKIT_HUGE_PAGES=0"
    assert gc.callbacks == callbacks


def test_a_small_simulation_does_not_look_at_its_mappings() -> None:
    async def small() -> int:
        await asyncio.sleep(5)
        return 1

    assert sim.run(small()) == 1
    assert sim.huge_page_stats().scans == 0


async def hoard() -> None:
    """Keep objects made all through the run: the collector runs now and then."""
    kept = []
    for _ in range(100):
        kept.append([[i] for i in range(2000)])
        await asyncio.sleep(0.5)


def test_a_seeded_run_is_the_same_with_and_without_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Collect often, and look at the mappings after every collection (each one sees
    # the process a gigabyte larger), so that it happens all through the run.
    grown = itertools.count(0, 1 << 30)
    monkeypatch.setattr(_hugepages._Backer, "_resident", lambda self: next(grown))
    monkeypatch.setattr(sim_loop, "_GC_YOUNG", 700)
    runs = []
    for setting in ("1", "0"):
        monkeypatch.setenv("MIRAGEKIT_HUGE_PAGES", setting)
        out = tmp_path / setting
        out.mkdir()
        net = restarting(out)
        net.host("hoard", main=hoard)
        report = net.run(until=60)
        assert report.ok
        runs.append((report.format_events(), (out / "segment.pcap").read_bytes()))
        stats = sim.huge_page_stats()
        assert stats.scans > 20 if setting == "1" else stats.scans == 0, stats
    assert runs[0] == runs[1]
    assert len(runs[0][1]) > 10_000


def fake_madvise(fail: set[int], calls: list[tuple[int, int]]) -> object:
    """A madvise that fails with EINVAL for the advice in ``fail``, else succeeds."""

    def madvise(addr: int, length: int, advice: int) -> int:
        calls.append((advice, length))
        if advice in fail:
            ctypes.set_errno(errno.EINVAL)
            return -1
        return 0

    return madvise


def test_a_kernel_without_collapse_still_gets_the_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    madvise = fake_madvise({_hugepages.MADV_COLLAPSE}, calls)
    monkeypatch.setattr(_hugepages, "_madvise", lambda: madvise)
    sim.run(grow())
    stats = sim.huge_page_stats()
    assert stats.advised > 0 and stats.collapsed == 0 and stats.unavailable == ""
    # Collapse was tried once, then no more.
    assert [a for a, _ in calls].count(_hugepages.MADV_COLLAPSE) == 1
    assert [a for a, _ in calls].count(_hugepages.MADV_HUGEPAGE) >= 1


def test_a_kernel_that_refuses_the_advice_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    madvise = fake_madvise({_hugepages.MADV_HUGEPAGE, _hugepages.MADV_COLLAPSE}, calls)
    monkeypatch.setattr(_hugepages, "_madvise", lambda: madvise)
    sim.run(grow())
    stats = sim.huge_page_stats()
    assert stats.unavailable == "madvise(MADV_HUGEPAGE): Invalid argument"
    assert stats.scans == 1 and len(calls) == 1 and stats.advised == 0


@pytest.mark.parametrize("text", ["off", "NO", " false ", "0"])
def test_the_variable_says_off_in_the_usual_ways(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv("MIRAGEKIT_HUGE_PAGES", text)
    sim.run(grow())
    assert sim.huge_page_stats().scans == 0
    assert sim.huge_page_stats().unavailable == f"MIRAGEKIT_HUGE_PAGES={text}"


def test_a_variable_that_says_neither_is_refused_before_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MIRAGEKIT_HUGE_PAGES", "maybe")
    started = []

    async def main() -> None:
        started.append(1)

    coro = main()
    with pytest.raises(ValueError, match=r"MIRAGEKIT_HUGE_PAGES must be 0 or 1 .*'maybe'"):
        sim.run(coro)
    coro.close()
    assert started == []


def test_a_network_refuses_the_variable_before_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIRAGEKIT_HUGE_PAGES", "2")
    net = restarting(tmp_path)
    with pytest.raises(ValueError, match="MIRAGEKIT_HUGE_PAGES must be 0 or 1"):
        net.run(until=10)
    assert not (tmp_path / "segment.pcap").exists()
    monkeypatch.setenv("MIRAGEKIT_HUGE_PAGES", "1")
    assert net.run(until=10).ok  # nothing was started: the plan runs as it is


def test_the_system_setting_is_read_and_never_means_not_asking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setting = tmp_path / "enabled"
    setting.write_text("always madvise [never]\n")
    assert _hugepages.system_mode(str(setting)) == "never"
    setting.write_text("always [madvise] never\n")
    assert _hugepages.system_mode(str(setting)) == "madvise"
    assert _hugepages.system_mode(str(tmp_path / "absent")) == ""
    setting.write_text("always madvise [never]\n")
    monkeypatch.setattr(_hugepages, "THP_SETTING", str(setting))
    monkeypatch.setattr(_hugepages.system_mode, "__defaults__", (str(setting),))
    sim.run(grow())
    stats = sim.huge_page_stats()
    assert stats.scans == 0 and stats.unavailable == f"{setting}: never"
