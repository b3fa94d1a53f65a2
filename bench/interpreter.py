"""Which Python ran a benchmark: the figures of the pure and compiled builds both depend
on it. A Python built with profile-guided optimisation and link-time optimisation into
its executable (Debian's ``python3``) runs a simulated echo with 13% fewer instructions
compiled (4% in pure Python) than one built from source with the defaults
(``--enable-shared``, no PGO/LTO, as pyenv builds it), so each figure says which it was."""

from __future__ import annotations

import sys
from pathlib import Path


def libpython() -> str | None:
    """The shared libpython this process runs on, or None when the interpreter is part
    of the executable."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        name = line.rsplit(" ", 1)[-1]
        if "/libpython3" in name:
            return name
    return None


def describe() -> dict[str, str]:
    """Version, executable and how the interpreter is linked, for a table and its JSON."""
    lib = libpython()
    return {
        "version": sys.version.split()[0],
        "executable": str(Path(sys.executable).resolve()),
        "libpython": lib or "in the executable",
    }


def line() -> str:
    d = describe()
    return f"python {d['version']} ({d['executable']}; libpython {d['libpython']})"
