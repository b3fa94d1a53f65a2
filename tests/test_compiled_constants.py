"""The constants that compiled functions read are ``Final``: mypyc puts a ``Final`` int,
float or string into the C code and keeps any other ``Final`` object in a C variable,
while every read of a plain module global is a look-up by name in the module's dict (a
hash and a probe on each use, several per frame in the TCP and switch paths).

Checked from the source (no build needed): in each compiled module, a module-level
name in capitals that a function of the module reads must be declared ``Final``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tools.compiled_tree import compiled_modules

ROOT = Path(__file__).resolve().parent.parent

_CONSTANT = re.compile(r"_?[A-Z][A-Z0-9_]*")


def plain_constants_read_by_functions(source: str) -> list[str]:
    """The module-level constants (names in capitals, bound without ``Final``) that a
    function or method of ``source`` reads."""
    tree = ast.parse(source)
    plain: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                names = target.elts if isinstance(target, ast.Tuple) else [target]
                plain |= {n.id for n in names if isinstance(n, ast.Name)}
        elif (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and "Final" not in ast.unparse(stmt.annotation)
        ):
            plain.add(stmt.target.id)
    plain = {n for n in plain if _CONSTANT.fullmatch(n)}
    # Annotations are never evaluated (``from __future__ import annotations``).
    notes: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            notes |= {id(n) for n in ast.walk(node.annotation)}
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            notes |= {id(n) for n in ast.walk(node.returns)}
    read: set[str] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(fn):
                if (
                    isinstance(inner, ast.Name)
                    and isinstance(inner.ctx, ast.Load)
                    and id(inner) not in notes
                ):
                    read.add(inner.id)
    return sorted(plain & read)


def test_the_check_sees_a_plain_constant_and_passes_a_final_one() -> None:
    source = (
        "from typing import Final\n"
        "A = 1\nB: Final = 2\nC, D = 3, 4\nE: int = 5\nUNUSED = 6\n"
        "K = int\n"
        "def f(k: K) -> K:\n    x: K = A + B + C + E\n    return x\n"
    )
    assert plain_constants_read_by_functions(source) == ["A", "C", "E"]


def test_compiled_functions_read_only_final_constants() -> None:
    modules = compiled_modules()
    assert len(modules) > 20  # the list was found
    found = {
        m: plain
        for m in modules
        if (plain := plain_constants_read_by_functions((ROOT / m).read_text()))
    }
    assert found == {}
