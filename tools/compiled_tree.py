"""Copy ``src`` to a directory and compile miragekit's hot modules there with mypyc.

Run: ``python tools/compiled_tree.py DIR``. Leaves ``DIR/src``: the whole source tree,
with the modules listed under ``[tool.miragekit] compiled`` in ``pyproject.toml`` built
in place as C extensions (``*.so`` next to their ``.py``, which Python imports first).
Benchmarks take it as ``--src DIR/src`` (``bench/sim_cluster.py``) or ``--before DIR``
(``bench/http_aiohttp.py``). The repository's own ``src`` is never written to, so the
normal test run stays pure Python. Needs mypy (which ships mypyc), setuptools, a C
compiler and the Python headers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The build step, run in a subprocess in DIR/src: mypyc translates the listed modules
# to C, setuptools compiles them and puts each extension beside its source.
_BUILD = """
import sys
from mypyc.build import mypycify
from setuptools import setup
opt, paths = sys.argv[1], sys.argv[2:]
setup(name="miragekit-compiled", ext_modules=mypycify(paths, opt_level=opt),
      script_args=["build_ext", "--inplace"])
"""


def compiled_modules(root: Path = ROOT) -> list[str]:
    """The modules of the compiled build (paths under ``src``), from ``pyproject.toml``."""
    meta = tomllib.loads((root / "pyproject.toml").read_text())
    modules: list[str] = meta["tool"]["miragekit"]["compiled"]
    return modules


# Left in DIR/src by a build: only a tree that has it is replaced by the next one.
MARK = ".compiled-tree"


def check_dest(dest: Path, src: Path = ROOT / "src") -> None:
    """Refuse a ``dest`` whose ``src`` this tool did not make (the repository itself, a
    checkout: replacing it would delete sources) or that lies inside ``src``."""
    out = (dest / "src").resolve()
    if out.is_relative_to(src.resolve()) or src.resolve().is_relative_to(out):
        raise ValueError(f"{dest}: the compiled tree must be outside {src}")
    if out.exists() and not (out / MARK).is_file():
        raise ValueError(
            f"{dest}: {out} exists and was not made by this tool; give a new or empty "
            "directory (its src/ is replaced on every build)"
        )


def build(dest: Path, src: Path = ROOT / "src", *, quiet: bool = True, opt: str = "3") -> Path:
    """Copy ``src`` to ``dest/src``, compile the listed modules there and return
    ``dest/src``. Raises ``RuntimeError`` with the compiler's output when it fails."""
    out = dest / "src"
    check_dest(dest, src)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    (out / MARK).write_text("made by tools/compiled_tree.py; replaced by its next build\n")
    paths = [m.removeprefix("src/") for m in compiled_modules()]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    run = subprocess.run(
        [sys.executable, "-c", _BUILD, opt, *paths],
        cwd=out,
        env=env,
        capture_output=quiet,
        text=True,
        check=False,
    )
    if run.returncode:
        detail = f"\n{run.stdout}\n{run.stderr}" if quiet else ""
        raise RuntimeError(f"mypyc build failed (status {run.returncode}){detail}")
    shutil.rmtree(out / "build", ignore_errors=True)
    shutil.rmtree(out / ".mypy_cache", ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dest", type=Path, help="directory to write (DIR/src is replaced)")
    ap.add_argument("--opt", default="3", help="the C compiler's -O level (0 builds faster)")
    a = ap.parse_args()
    try:
        check_dest(a.dest)
    except ValueError as e:
        ap.error(str(e))
    print(build(a.dest, quiet=False, opt=a.opt))


if __name__ == "__main__":
    main()
