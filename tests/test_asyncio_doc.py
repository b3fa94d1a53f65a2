"""docs/asyncio.md's first example runs as written (a reader copies it first)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_from_python_example_runs_as_written(tmp_path: Path) -> None:
    page = (ROOT / "docs" / "asyncio.md").read_text()
    start = page.index("**From Python**")
    start = page.index("```python\n", start) + len("```python\n")
    script = tmp_path / "example.py"
    script.write_text(page[start : page.index("\n```\n", start)])
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    p = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout == "b'THROUGH THE STACK\\n'\nb'THROUGH THE STACK\\n'\n"
    assert p.stderr == ""
