"""Another revision's ``src`` tree, for benches that run the code before a change beside
the code after it in one run (``--before REV``)."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def extract_src(rev: str, dest: str) -> str:
    """Unpack revision ``rev``'s ``src`` into directory ``dest`` and return its path; a
    revision git does not know ends the bench with git's one-line reason."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "src"], capture_output=True, check=False
    )
    if archive.returncode:
        sys.exit(f"--before {rev}: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return f"{dest}/src"
