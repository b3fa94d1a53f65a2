"""The optional compiled build (``tools/compiled_tree.py``: the hot modules through mypyc)
behaves as the pure-Python tree: seeded simulations with loss, crashes and partitions
give byte-identical pcaps and event logs, and a set of TCP, IP and simulator test files
passes on it. The build takes a minute or two; it is kept under ``build/compiled-tree``,
keyed by the sources, the module list, Python's and mypy's versions, and reused while
they stay the same. No compiler, no build: the tests fail, saying why."""

from __future__ import annotations

import ast
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from tools.compiled_tree import MARK, build, check_dest, compiled_modules

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "compiled-tree"

# Test files that pass on the compiled tree as they do on the pure one, about a minute
# of them. Left out: the slowest, and those that patch compiled classes or functions or
# count their Python calls (compiled callers do not see a patch and make no Python calls):
# test_tcp_ack_merge, _conn_costs, _driver_idle, _flush_turns, _next_segment, _peer_fin,
# _reqresp_steps_bench, _sender, _small_send, _time_wait, test_flow_read_now.
ON_COMPILED = [
    "tests/ipstack/test_iface.py",
    "tests/ipstack/test_ipv6_layers.py",
    "tests/ipstack/test_layers.py",
    "tests/ipstack/test_offload.py",
    "tests/ipstack/test_tap_queue.py",
    "tests/ipstack/test_timers.py",
    "tests/test_aio.py",
    "tests/test_impaired_link.py",
    "tests/test_ipv4_packed_rx.py",
    "tests/test_loopback.py",
    "tests/test_sim.py",
    "tests/test_sim_arp_steady.py",
    "tests/test_sim_cluster.py",
    "tests/test_sim_determinism.py",
    "tests/test_sim_fixes.py",
    "tests/test_sim_network.py",
    "tests/test_sim_observe.py",
    "tests/test_sim_rearm.py",
    "tests/test_sim_replica.py",
    "tests/test_sim_rx_checksum.py",
    "tests/test_sim_sched.py",
    "tests/test_sim_timer_cancel.py",
    "tests/test_sim_speed.py",
    "tests/test_switch_impair.py",
    "tests/test_tcp_close_data_lost.py",
    "tests/test_tcp_conn.py",
    "tests/test_tcp_cwnd_limited.py",
    "tests/test_tcp_echo_keys.py",
    "tests/test_tcp_ecn.py",
    "tests/test_tcp_ecn_sim.py",
    "tests/test_tcp_endpoint.py",
    "tests/test_tcp_exports.py",
    "tests/test_tcp_fastopen.py",
    "tests/test_tcp_fastopen_sim.py",
    "tests/test_tcp_frame_input.py",
    "tests/test_tcp_fuzz.py",
    "tests/test_tcp_handshake_wire.py",
    "tests/test_tcp_hystart.py",
    "tests/test_tcp_id_audit.py",
    "tests/test_tcp_ipv6.py",
    "tests/test_tcp_loss_response.py",
    "tests/test_tcp_rack_tlp.py",
    "tests/test_tcp_recovery.py",
    "tests/test_tcp_rx_fastpath.py",
    "tests/test_tcp_rx_runs.py",
    "tests/test_tcp_sack_room.py",
    "tests/test_tcp_sendbuf.py",
    "tests/test_tcp_seqnum.py",
    "tests/test_tcp_states.py",
    "tests/test_tcp_timer_ack.py",
    "tests/test_tcp_wire.py",
    "tests/test_tcp_zero_window_ack.py",
    "tests/test_transport_io.py",
    "tests/test_vswitch.py",
]
# Tests in the files above that count Python calls: run on the pure tree only.
PURE_ONLY = [
    "tests/test_sim_rx_checksum.py::test_no_checksum_is_computed_on_receive",
    "tests/test_sim_speed.py::test_a_frame_crosses_a_plain_link_in_eleven_python_calls",
]


def _key() -> str:
    """What the build depends on: every file under src, the build script, the module
    list, the interpreter and mypy (which ships mypyc)."""
    sha = hashlib.sha256()
    for p in sorted((ROOT / "src").rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".so":
            sha.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes())
    sha.update((ROOT / "tools" / "compiled_tree.py").read_bytes())
    sha.update(repr((compiled_modules(), sys.version, version("mypy"))).encode())
    return sha.hexdigest()[:16]


# The compiled build is made once for the module, in the first test that needs it: a
# few minutes on a fresh machine, longer on a loaded one, past the suite's 300 s.
pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def tree() -> Iterator[Path]:
    """The compiled tree's ``src``: built once per change of what it depends on (under a
    lock: parallel test workers wait for one build), older builds removed."""
    CACHE.mkdir(parents=True, exist_ok=True)
    key = _key()
    with open(CACHE.parent / "compiled-tree.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = CACHE / key / "built"
        if not done.exists():
            for old in CACHE.iterdir():
                shutil.rmtree(old)
            try:
                build(CACHE / key)
            except RuntimeError as e:
                pytest.fail(
                    "the compiled build failed; it needs mypy (mypyc), setuptools, a C "
                    f"compiler and the Python headers (Debian: gcc, python3-dev): {e}"
                )
            done.touch()
    yield CACHE / key / "src"


def _origin_finder() -> tuple[dict[str, ast.Module], Callable[[str, ast.expr], str | None]]:
    """The modules under src by name, and a function that names the module defining the
    class a base expression of a module refers to (through imports and re-exports)."""
    trees: dict[str, ast.Module] = {}
    packages: set[str] = set()
    for p in sorted((ROOT / "src").rglob("*.py")):
        parts = p.relative_to(ROOT / "src").with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
            packages.add(".".join(parts))
        trees[".".join(parts)] = ast.parse(p.read_text())
    classes: dict[str, set[str]] = {}
    names: dict[str, dict[str, tuple[str, str | None]]] = {}
    for mod, tree in trees.items():
        classes[mod] = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
        names[mod] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = mod.split(".") if mod in packages else mod.split(".")[:-1]
                base = base[: len(base) - node.level + 1] if node.level else []
                src = ".".join([*base, *([node.module] if node.module else [])])
                for a in node.names:
                    sub = f"{src}.{a.name}"
                    names[mod][a.asname or a.name] = (sub, None) if sub in trees else (src, a.name)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    names[mod][a.asname or a.name] = (a.name, None)

    def defined(mod: str, name: str) -> str | None:
        if name in classes.get(mod, ()):
            return mod
        target = names.get(mod, {}).get(name)
        if target is None or target[1] is None or target[0] == mod:
            return None
        return defined(target[0], target[1])

    def origin(mod: str, base: ast.expr) -> str | None:
        if isinstance(base, ast.Subscript):
            return origin(mod, base.value)
        if isinstance(base, ast.Name):
            return defined(mod, base.id)
        if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name):
            target = names.get(mod, {}).get(base.value.id)
            if target is not None and target[1] is None:
                return defined(target[0], base.attr)
        return None

    return trees, origin


def test_no_interpreted_class_subclasses_a_compiled_one() -> None:
    """A compiled class refuses interpreted subclasses (at their first instance) unless
    mypyc is told to allow them (``mypyc_attr``): no interpreted class in src may
    subclass one that is not."""
    compiled = {_module(m) for m in compiled_modules()}
    trees, origin = _origin_finder()
    allowed = {  # classes that mypyc lets interpreted code subclass
        (mod, node.name)
        for mod in compiled
        for node in trees[mod].body
        if isinstance(node, ast.ClassDef)
        and any(
            "allow_interpreted_subclasses=True" in ast.unparse(d)
            or "native_class=False" in ast.unparse(d)
            for d in node.decorator_list
        )
    }
    bad = []
    for mod, tree in trees.items():
        if mod in compiled:
            continue
        for cls in ast.walk(tree):
            if isinstance(cls, ast.ClassDef):
                for base in cls.bases:
                    where = origin(mod, base)
                    name = ast.unparse(base).split("[")[0].split(".")[-1]
                    if where in compiled and (where, name) not in allowed:
                        bad.append(f"{mod}.{cls.name}({ast.unparse(base)}, from {where})")
    assert bad == []


def test_the_package_imports_without_mypy_extensions() -> None:
    """``mypyc_attr`` comes from mypy_extensions, which is no dependency: without it the
    modules that use it import all the same (pure Python, a decorator that does nothing)."""
    code = (
        "import sys; sys.modules['mypy_extensions'] = None\n"
        "from miragekit.link import VnetSwitch\n"
        "assert 'mypyc_attr' in sys.modules['miragekit.compiled'].__dict__\n"
        "print(VnetSwitch.__module__)"
    )
    run = _python(ROOT / "src", "-c", code)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["miragekit.link._vswitch"]


def _python(src: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` with ``src`` first on the module path."""
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )


def _module(path: str) -> str:
    return path.removeprefix("src/").removesuffix(".py").replace("/", ".")


# Imports the listed modules, runs pytest with the rest of the arguments, and prints where
# each module came from, before and after the tests ran.
_PYTEST = """
import importlib, json, sys
import pytest
mods = sys.argv[1].split(",")
before = [importlib.import_module(m).__file__ for m in mods]
rc = pytest.main(sys.argv[2:])
print(json.dumps(before + [sys.modules[m].__file__ for m in mods]))
sys.exit(rc)
"""


def test_the_listed_modules_are_extensions_and_src_holds_none(tree: Path) -> None:
    mods = [_module(m) for m in compiled_modules()]
    assert len(mods) >= 10
    code = "import importlib, sys; print('\\n'.join(importlib.import_module(m).__file__ for m in sys.argv[1:]))"
    run = _python(tree, "-c", code, *mods, "miragekit.sim._network")
    assert run.returncode == 0, run.stderr
    *files, interpreted = run.stdout.split()
    assert len(files) == len(mods)
    for f in files:
        assert f.startswith(str(tree)) and f.endswith(".so"), f
    assert interpreted == str(tree / "miragekit" / "sim" / "_network.py")
    assert not list((ROOT / "src").rglob("*.so")), "compiled modules inside src/"


def test_the_switch_frame_path_is_native_compiled(tree: Path) -> None:
    """A compiled VnetIf and its switch's _Fabric keep their fields in the object (no
    ``__dict__``: no look-up by name per frame), while the public VnetSwitch stays a
    regular class, so the registry of names still holds switches weakly."""
    code = (
        "import gc\n"
        "from miragekit.link import VnetSwitch, bridge, tap_bridge\n"
        "sw = VnetSwitch('native-probe', seed=1)\n"
        "a = sw.add_interface('a')\n"
        "port = bridge(sw, 'b', VnetSwitch(seed=2).add_interface('peer'))\n"
        "assert not hasattr(a, '__dict__') and not hasattr(sw._fabric, '__dict__')\n"
        "assert hasattr(sw, '__dict__') and tap_bridge(port) is None\n"
        "del sw, a, port\n"
        "gc.collect()\n"
        "assert VnetSwitch.named('native-probe') is None\n"
        "print(type(VnetSwitch('native-probe').interfaces()).__name__)"
    )
    run = _python(tree, "-c", code)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["list"]


def test_seeded_simulations_are_byte_identical_compiled(tree: Path) -> None:
    bench = str(ROOT / "bench" / "sim_identical.py")
    runs = [
        _python(src, bench, "--src", str(src), "--digests-only") for src in (ROOT / "src", tree)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
        # An exception in a loop callback is logged and the run goes on: none may be.
        assert run.stderr == ""
    pure, compiled = (json.loads(run.stdout) for run in runs)
    assert len(pure) == 12
    assert compiled == pure


def test_tcp_ip_and_simulator_tests_pass_compiled(tree: Path) -> None:
    mods = [_module(m) for m in compiled_modules()]
    args = ["-q", "-p", "no:cacheprovider", "-o", "pythonpath=.", "-m", "not kernel"]
    args += ["-W", "ignore::pytest.PytestAssertRewriteWarning", *ON_COMPILED]
    args += [f"--deselect={t}" for t in PURE_ONLY]
    run = _python(tree, "-c", _PYTEST, ",".join(mods), *args)
    # The last line is the modules' files (checked below); pytest's report comes before.
    report = run.stdout.rsplit("\n", 2)[0]
    assert run.returncode == 0, report[-3000:] + run.stderr[-3000:]
    files = json.loads(run.stdout.splitlines()[-1])
    assert all(f.startswith(str(tree)) and f.endswith(".so") for f in files), files


def test_a_destination_whose_src_it_did_not_make_is_refused(tmp_path: Path) -> None:
    """``compiled_tree.py .`` (the repository) would replace the sources: refused, as is a
    directory inside ``src`` or a checkout; a new directory, or its own last tree, is not."""
    src = ROOT / "src"
    for dest in (ROOT, src, src / "miragekit"):
        with pytest.raises(ValueError, match="outside"):
            check_dest(dest)
    checkout = tmp_path / "checkout"
    (checkout / "src").mkdir(parents=True)
    (checkout / "src" / "keep.py").write_text("")
    with pytest.raises(ValueError, match="not made by this tool"):
        build(checkout)
    assert (checkout / "src" / "keep.py").is_file()
    check_dest(tmp_path / "new")
    (checkout / "src" / MARK).write_text("")
    check_dest(checkout)
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "compiled_tree.py"), str(ROOT)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 2 and "must be outside" in run.stderr, run.stderr
    assert (src / "miragekit" / "__init__.py").is_file()
