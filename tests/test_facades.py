"""The package surfaces and the layering rules they rest on.

* Each facade's ``__all__`` is exactly what the package exports (no internal creeps in
  beside it) and every name in it exists.
* The sans-I/O code (``wire/``, ``tcp/``, ``dhcp/`` and the protocol cores in ``net/``)
  imports no asyncio, socket, time or os, neither directly nor through the modules of
  ours it imports.
* No module reaches into another package's private modules, and ``link/`` imports
  nothing from ``net/``.
"""

from __future__ import annotations

import ast
import types
from pathlib import Path

import pytest

import miragekit
import miragekit.channel
import miragekit.dhcp
import miragekit.link
import miragekit.net
import miragekit.tcp
import miragekit.testing
import miragekit.wire

SRC = Path(miragekit.__file__).parent
FACADES = [
    miragekit.channel,
    miragekit.net,
    miragekit.link,
    miragekit.wire,
    miragekit.dhcp,
    miragekit.testing,
    miragekit.tcp,
]
IO_MODULES = {"asyncio", "socket", "time", "os", "select", "selectors", "threading"}
NET_CORES = [
    "_arp.py",
    "_ndp.py",
    "_fragment.py",
    "_icmp.py",
    "_ratelimit.py",
    "_martian.py",
    "_pmtu.py",
    "_ipid.py",
    "_ipopts.py",
]


@pytest.mark.parametrize("mod", FACADES, ids=lambda m: m.__name__)
def test_facade_exports_exactly_its_all(mod: types.ModuleType) -> None:
    names = list(mod.__all__)
    assert len(set(names)) == len(names), "duplicates in __all__"
    for name in names:
        assert hasattr(mod, name), f"{mod.__name__}.{name}"
    public = {
        n
        for n, v in vars(mod).items()
        if not n.startswith("_")
        and not isinstance(v, types.ModuleType)
        # a plain module (not a package) also holds what it imports for itself
        and (hasattr(mod, "__path__") or getattr(v, "__module__", mod.__name__) == mod.__name__)
    }
    values = {n for n in names if not isinstance(getattr(mod, n), types.ModuleType)}
    assert public == values, f"{mod.__name__}: exported but not in __all__, or the reverse"


def test_net_facade_leaves_the_internals_out() -> None:
    internals = {"Arp", "Ndp", "Reassembler", "Icmp", "MetaReceiver", "offload_link", "TcpSender"}
    assert not internals & set(miragekit.net.__all__)
    # The devices live in miragekit.link now.
    assert not {"TapNetif", "VnetSwitch", "VxlanNetif", "PcapNetif"} & set(miragekit.net.__all__)


def _imports(path: Path) -> list[tuple[str, int]]:
    """(module, level) of every import in ``path``: level 0 is absolute."""
    out: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, 0) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level and not base:  # from . import x
                out += [(a.name, node.level) for a in node.names]
            else:
                out.append((base, node.level))
    return out


def _resolve(path: Path, module: str, level: int) -> Path | None:
    """The file of a relative import (a module or a package's ``__init__``)."""
    base = path.parent
    for _ in range(level - 1):
        base = base.parent
    target = base.joinpath(*module.split(".")) if module else base
    if target.with_suffix(".py").is_file():
        return target.with_suffix(".py")
    if (target / "__init__.py").is_file():
        return target / "__init__.py"
    return None


def _sans_io_files() -> list[Path]:
    files = [*(SRC / "wire").rglob("*.py"), *(SRC / "tcp").rglob("*.py")]
    files += [*(SRC / "dhcp").rglob("*.py"), *(SRC / "net" / n for n in NET_CORES)]
    return files


def test_sans_io_code_imports_no_io() -> None:
    seen: set[Path] = set()
    todo = [(f, f) for f in _sans_io_files()]
    while todo:
        path, origin = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module, level in _imports(path):
            if level == 0:
                top = module.split(".")[0]
                assert top not in IO_MODULES, f"{path} imports {module} (from {origin})"
            else:
                dep = _resolve(path, module, level)
                assert dep is not None, f"{path}: cannot resolve {'.' * level}{module}"
                todo.append((dep, origin))
    assert len(seen) > 30  # the walk really covered the packages


def test_the_io_rule_is_checked() -> None:
    """The walk above would notice an I/O import (a control for the rule itself)."""
    probe = SRC / "net" / "_tcp.py"
    assert any(m.split(".")[0] in IO_MODULES for m, level in _imports(probe) if level == 0)


def test_no_module_imports_another_packages_private_modules() -> None:
    for path in SRC.rglob("*.py"):
        for module, level in _imports(path):
            if level == 0:
                if not module.startswith("miragekit."):
                    continue
                target = SRC.parent.joinpath(*module.split("."))
                dep = target.with_suffix(".py") if target.with_suffix(".py").is_file() else None
                if dep is None and (target / "__init__.py").is_file():
                    dep = target / "__init__.py"
            else:
                dep = _resolve(path, module, level)
            if dep is None:
                continue
            if dep.name.startswith("_") and dep.name != "__init__.py":
                assert dep.parent == path.parent, f"{path.relative_to(SRC)} imports {dep}"
            if path.parent == SRC / "link":
                assert SRC / "net" not in dep.parents, f"{path.name} imports {dep} (net)"
