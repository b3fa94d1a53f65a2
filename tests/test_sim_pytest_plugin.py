"""The pytest plugin (``miragekit.sim.pytest_plugin``, registered by the package's entry
point), run on small inner test files: seeds, the replay command and captures of a
failing seed, ``--sim-seed``, and ``--sim-check-determinism``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import miragekit.netloop
import miragekit.stack

# The inner runs are in this process, and pytester forgets the modules they import: the
# stack and the loop they use are imported here once, as a program would have them.
assert miragekit.netloop and miragekit.stack
pytest_plugins = ["pytester"]

SERVER = """
import asyncio, random
import pytest
from miragekit import sim


async def upper() -> None:
    async def handle(reader, writer):
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, None, 5432)
    await server.serve_forever()


def client(lines):
    async def main():
        reader, writer = await asyncio.open_connection("db", 5432)
        got = []
        for line in lines:
            writer.write(line.encode() + b"\\n")
            got.append((await reader.readline()).decode().strip())
        writer.close()
        return got
    return main
"""


def test_seeds_parametrize_and_a_failing_seed_prints_its_replay(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_inner=SERVER
        + """

@pytest.mark.sim(seeds=range(6))
def test_cluster(sim_network, sim_seed):
    sim_network.host("db", main=upper)
    sim_network.host("c", main=client(["a", "b"]))
    sim_network.link("c", loss=0.05)
    report = sim_network.run(until=30)
    assert report["c"].value == ["A", "B"]
    assert sim_seed != 4, "seed 4 is unlucky"


def test_default_seed(sim_seed):
    assert sim_seed == 0


@pytest.mark.sim(seeds=[1, 2])
def test_marker_only():
    pass
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=8, failed=1)
    result.stdout.fnmatch_lines(
        ["*test_default_seed[[]seed=0[]] PASSED*", "*test_marker_only[[]seed=2[]] PASSED*"]
    )
    result.stdout.fnmatch_lines(
        [
            "*- miragekit.sim -*",
            "seed 4 failed; replay just this seed with:",
            "  pytest 'test_inner.py::test_cluster[[]seed=4[]]'",
            "  pytest 'test_inner.py::test_cluster' --sim-seed=4",
            "capture of the segment: */sim-seed4.pcap",
            "events:",
            "  * start db",
            "  * c: connect c:* db:5432",
        ]
    )
    text = result.stdout.str()
    pcap = re.search(r"capture of the segment: (\S+)", text)
    assert pcap is not None and Path(pcap.group(1)).stat().st_size > 500  # kept
    # The printed commands replay seed 4 alone, and it fails again.
    again = pytester.runpytest("-p", "no:cacheprovider", "test_inner.py::test_cluster[seed=4]")
    again.assert_outcomes(failed=1)
    forced = pytester.runpytest(
        "-p", "no:cacheprovider", "test_inner.py::test_cluster", "--sim-seed=4", "-v"
    )
    forced.assert_outcomes(failed=1)
    forced.stdout.fnmatch_lines(["*test_cluster[[]seed=4[]] FAILED*"])


def test_an_unrun_network_is_run_after_the_test_and_a_raising_host_fails_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_inner=SERVER
        + """

@pytest.mark.sim(seeds=[1, 2], until=20)
def test_builds_only(sim_network):
    sim_network.host("db", main=upper)
    sim_network.host("c", main=client(["x"]))


def test_host_raises(sim_network):
    async def bad():
        await asyncio.sleep(1)
        raise KeyError("lost write")

    sim_network.host("bad", main=bad)
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_builds_only[[]seed=1[]] PASSED*",
            "*test_builds_only[[]seed=2[]] PASSED*",
            "a simulated host raised: bad: KeyError: 'lost write'",
            "seed 0 failed; replay just this seed with:",
            "  * bad raised KeyError",
        ]
    )
    assert "pytest_plugin.py" not in result.stdout.str()  # the message, not our traceback


def test_check_determinism_passes_a_deterministic_test_and_names_a_difference(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_inner=SERVER
        + """

@pytest.mark.sim(seeds=[3, 5])
def test_steady(sim_network):
    sim_network.host("db", main=upper)
    sim_network.host("c", main=client(["a"]))
    sim_network.link("c", loss=0.1)
    assert sim_network.run(until=30)["c"].value == ["A"]


def test_wobbly(sim_network):
    async def late():
        await asyncio.sleep(random.random())  # the global RNG: not the seed's
        return await client(["a"])()

    sim_network.host("db", main=upper)
    sim_network.host("c", main=late)
    sim_network.run(until=30)
"""
    )
    plain = pytester.runpytest("-p", "no:cacheprovider")
    plain.assert_outcomes(passed=3)
    result = pytester.runpytest("-p", "no:cacheprovider", "--sim-check-determinism", "-v")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_steady[[]seed=3[]] PASSED*",
            "*test_steady[[]seed=5[]] PASSED*",
            "*test_wobbly[[]seed=0[]] FAILED*",
            "--sim-check-determinism: seed 0 is not deterministic: event 3 differs: "
            "first run '* c: connect c:*', second run '* c: connect c:*'; code escaped the "
            "simulation: c: random.random() (the shared generator, not the seed's) at "
            "*test_inner.py:* in late (t=0.000000)",
            "capture of the segment: */run1/segment.pcap",
        ]
    )
    assert "pytest_plugin.py" not in result.stdout.str()


def test_bad_seeds_are_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_inner="""
import pytest

@pytest.mark.sim(seeds=["one"])
def test_x(sim_seed):
    pass
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR collecting test_inner.py*",
            "test_inner.py::test_x: @pytest.mark.sim seeds must be ints, got 'one'",
        ]
    )
    assert "pytest_plugin.py" not in result.stdout.str()  # one clear line, no traceback


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("seeds=5", "seeds must be an iterable of ints (e.g. range(5)), got 5"),
        ("seed=3", "has no argument 'seed' (known: seeds, until)"),
        ("range(3)", "takes keyword arguments only (seeds=..., until=...), got (range(0, 3),)"),
        ("seeds='012'", "seeds must be an iterable of ints, got '012'"),
    ],
)
def test_a_misused_marker_is_one_line_naming_the_test(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    pytester.makepyfile(
        test_inner=f"""
import pytest

@pytest.mark.sim({marker})
def test_x(sim_seed):
    pass
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"test_inner.py::test_x: @pytest.mark.sim {message}"])
    assert "pytest_plugin.py" not in result.stdout.str()  # one clear line, no traceback


def test_an_unrun_network_with_a_server_and_no_until_says_to_give_until(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_inner=SERVER
        + """

def test_left_unrun(sim_network):
    sim_network._idle_timeout = 0.1  # quick even if a thread is left alive in this process
    sim_network.host("db", main=upper)
    sim_network.host("c", main=client(["a"]))
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*the test left its network for the plugin to run: @pytest.mark.sim(until=SECONDS)*"]
    )
    assert "pytest_plugin.py" not in result.stdout.str()


def test_the_documented_plugin_example_runs(pytester: pytest.Pytester) -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "simulation.md").read_text()
    section = page[page.index("## The pytest plugin") :]
    example = section[section.index("```python\n") + 10 : section.index("\n```\n")]
    mains = """
import asyncio
from tests_helpers import upper as db


async def api():
    reader, writer = await asyncio.open_connection("db", 5432)
    for i in range(12):  # across the partition: TCP retransmits until it heals
        writer.write(b"ok\\n")
        assert (await reader.readline()) == b"OK\\n"
        await asyncio.sleep(1)
    return "ok"
"""
    pytester.makepyfile(tests_helpers=SERVER, test_doc=mains + example)
    result = pytester.runpytest("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=50)
