"""docs/testing.md stays true: its worked example runs, the suite passes the new device
and rejects the broken one with the message the page shows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from miragekit.testing import BLOCK_CHECKS

ROOT = Path(__file__).resolve().parent.parent


def test_the_worked_example_runs(tmp_path: Path) -> None:
    page = (ROOT / "docs" / "testing.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    assert len(blocks) == 2
    script = tmp_path / "example.py"
    script.write_text(blocks[0])
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    shown = re.search(r"print\(e\)  # (.*)", blocks[0])
    assert shown is not None
    assert proc.stdout.strip() == shown.group(1)
    test = tmp_path / "test_dict_block.py"
    test.write_text(blocks[0] + blocks[1])
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(BLOCK_CHECKS)} passed" in proc.stdout
