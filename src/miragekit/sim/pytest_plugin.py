"""pytest support for simulated clusters (registered through the package's entry point).

Why: a failure found by one seed out of fifty is only useful if it can be replayed
alone and looked at. This plugin gives:

* ``sim_network``: a fresh :class:`~miragekit.sim.Network` seeded with the test's seed,
  capturing the segment into the test's ``tmp_path``. The test adds hosts and calls
  ``run``; if it does not, the network is run after the test body and the test fails if
  a host's ``main`` raised (``@pytest.mark.sim(until=...)`` bounds that run).
* ``sim_seed``: the seed (an int).
* ``@pytest.mark.sim(seeds=range(50))``: the test runs once per seed, as
  ``test[seed=N]``. ``--sim-seed=N`` runs every simulation test with seed N only.
* A failing seed's report has a "miragekit.sim" section: the command that replays just
  that seed, the capture files (kept under pytest's temporary directory), the code that
  escaped the simulation and the end of the event log.
* ``--sim-check-determinism``: each test using ``sim_network`` runs twice per seed and
  fails naming the first difference between the runs (event, host outcome or frame).
"""

from __future__ import annotations

import inspect
from collections.abc import Generator, Iterable
from pathlib import Path

import pytest

from ._loop import SimDeadlock
from ._network import Network
from ._replay import compare_runs

_NET = pytest.StashKey[Network]()
_SEED = pytest.StashKey[int]()
_DIR = pytest.StashKey[Path]()
_SHOWN_EVENTS = 20


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("miragekit-sim", "miragekit simulated networks")
    group.addoption(
        "--sim-seed",
        type=int,
        default=None,
        metavar="N",
        help="run every simulation test with seed N only (replays a failing seed)",
    )
    group.addoption(
        "--sim-check-determinism",
        action="store_true",
        default=False,
        help="run each sim_network test twice per seed; fail naming the first difference",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sim(seeds=None, until=None): run a simulation test once per seed (default [0]); "
        "until bounds the run of a sim_network the test leaves unrun",
    )


_MARKER_ARGS = ("seeds", "until")


def _check_marker(metafunc: pytest.Metafunc) -> None:
    """A misspelt or misused ``@pytest.mark.sim`` is one line naming the test, never a
    silent default (``seed=3`` would otherwise run seed 0)."""
    marker = metafunc.definition.get_closest_marker("sim")
    if marker is None:
        return
    where = f"{metafunc.definition.nodeid}: @pytest.mark.sim"
    if marker.args:
        pytest.fail(
            f"{where} takes keyword arguments only (seeds=..., until=...), got {marker.args!r}",
            pytrace=False,
        )
    for k in marker.kwargs:
        if k not in _MARKER_ARGS:
            pytest.fail(
                f"{where} has no argument {k!r} (known: {', '.join(_MARKER_ARGS)})", pytrace=False
            )
    seeds = marker.kwargs.get("seeds")
    if seeds is not None and (isinstance(seeds, str) or not isinstance(seeds, Iterable)):
        pytest.fail(
            f"{where} seeds must be an iterable of ints (e.g. range({seeds!r})), got {seeds!r}"
            if isinstance(seeds, int) and not isinstance(seeds, bool)
            else f"{where} seeds must be an iterable of ints, got {seeds!r}",
            pytrace=False,
        )


def _seeds(metafunc: pytest.Metafunc) -> list[int]:
    _check_marker(metafunc)
    forced = metafunc.config.getoption("sim_seed")
    if forced is not None:
        return [forced]
    marker = metafunc.definition.get_closest_marker("sim")
    seeds: Iterable[int] = [0]
    if marker is not None and marker.kwargs.get("seeds") is not None:
        seeds = marker.kwargs["seeds"]
    out = list(seeds)
    for s in out:
        if isinstance(s, bool) or not isinstance(s, int):
            pytest.fail(
                f"{metafunc.definition.nodeid}: @pytest.mark.sim seeds must be ints, got {s!r}",
                pytrace=False,
            )
    if not out:
        pytest.fail(f"{metafunc.definition.nodeid}: @pytest.mark.sim seeds is empty", pytrace=False)
    return out


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marked = metafunc.definition.get_closest_marker("sim") is not None
    if "sim_seed" not in metafunc.fixturenames:
        if not marked:
            return
        metafunc.fixturenames.append("sim_seed")
    seeds = _seeds(metafunc)
    metafunc.parametrize("sim_seed", seeds, ids=[f"seed={s}" for s in seeds], indirect=True)


@pytest.fixture
def sim_seed(request: pytest.FixtureRequest) -> int:
    """The simulation seed of this test (``@pytest.mark.sim(seeds=...)``, ``--sim-seed``)."""
    seed = getattr(request, "param", None)
    if seed is None:
        seed = request.config.getoption("sim_seed") or 0
    request.node.stash[_SEED] = int(seed)
    return int(seed)


@pytest.fixture
def sim_network(request: pytest.FixtureRequest, sim_seed: int, tmp_path: Path) -> Network:
    """A fresh :class:`~miragekit.sim.Network` with this test's seed, capturing into
    ``tmp_path`` (see the module's docstring)."""
    net = Network(seed=sim_seed)
    _prepare(request.node, net, tmp_path, 1)
    return net


def _prepare(item: pytest.Item, net: Network, tmp_path: Path, run: int) -> None:
    if item.config.getoption("sim_check_determinism"):
        net._capture_dir = str(tmp_path / f"run{run}")
    else:
        net.capture(tmp_path / f"sim-seed{net.seed}.pcap")
    item.stash[_NET] = net
    item.stash[_DIR] = tmp_path


def _run_if_unrun(item: pytest.Item, net: Network) -> None:
    """Run a network the test body built but did not run; a host that raised fails it."""
    if net.report is not None or not net._hosts or net._state != "plan":
        return
    marker = item.get_closest_marker("sim")
    until = None if marker is None else marker.kwargs.get("until")
    try:
        report = net.run(until=until)
    except SimDeadlock as e:
        if until is not None:
            raise
        pytest.fail(
            f"{e}\n(the test left its network for the plugin to run: "
            "@pytest.mark.sim(until=SECONDS) bounds that run)",
            pytrace=False,
        )
    if not report.ok:
        errors = "; ".join(f"{n}: {type(e).__name__}: {e}" for n, e in report.errors().items())
        pytest.fail(f"a simulated host raised: {errors}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    result = yield
    net = pyfuncitem.stash.get(_NET, None)
    if net is None:
        return result
    _run_if_unrun(pyfuncitem, net)
    if not pyfuncitem.config.getoption("sim_check_determinism") or net.report is None:
        return result
    # The second run: the same test body with a fresh network of the same seed.
    again = Network(seed=net.seed)
    _prepare(pyfuncitem, again, pyfuncitem.stash[_DIR], 2)
    pyfuncitem.stash[_NET] = net  # a failure of the second run shows the first's captures
    args = dict(pyfuncitem.funcargs)
    args["sim_network"] = again
    names = pyfuncitem._fixtureinfo.argnames
    out = pyfuncitem.obj(**{n: args[n] for n in names})
    if inspect.isawaitable(out):
        raise pytest.UsageError("--sim-check-determinism: async test functions are not supported")
    _run_if_unrun(pyfuncitem, again)
    if again.report is None:
        pytest.fail(
            "--sim-check-determinism: the second run did not run the network", pytrace=False
        )
    verdict = compare_runs(net, again)
    if not verdict.ok:
        pytest.fail(f"--sim-check-determinism: {verdict.difference}", pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    seed = item.stash.get(_SEED, None)
    if report.failed and seed is not None:
        report.sections.append(("miragekit.sim", _replay_text(item, seed)))
    return report


def _replay_text(item: pytest.Item, seed: int) -> str:
    lines = [
        f"seed {seed} failed; replay just this seed with:",
        f"  pytest '{item.nodeid}'",
        f"  pytest '{item.nodeid.split('[')[0]}' --sim-seed={seed}",
    ]
    net = item.stash.get(_NET, None)
    if net is None:
        return "\n".join(lines) + "\n"
    files = net._capture_files or ({"the segment": net._capture} if net._capture else {})
    for h in net._hosts.values():
        if h.pcap is not None:
            files.setdefault(f"host {h.name}", h.pcap)
    for what, path in files.items():
        if path is not None and Path(path).exists():
            lines.append(f"capture of {what}: {path}")
    report = net.report
    if report is not None:
        lines += [f"escaped the simulation: {e}" for e in report.escapes]
        events = report.events
        if events:
            shown = events[-_SHOWN_EVENTS:]
            more = f" (last {len(shown)} of {len(events)})" if len(shown) < len(events) else ""
            lines.append(f"events{more}:")
            lines += [f"  {e}" for e in shown]
    return "\n".join(lines) + "\n"
