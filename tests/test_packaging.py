"""Packaging metadata: the licence is an SPDX expression, which setuptools reads without
its deprecation warning (from setuptools 77 on, hence the build requirement)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_license_is_an_spdx_string_with_a_setuptools_that_reads_it() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "ISC"
    assert (ROOT / "LICENSE").read_text().startswith("ISC License")
    (req,) = [r for r in meta["build-system"]["requires"] if r.startswith("setuptools")]
    m = re.fullmatch(r"setuptools>=(\d+)", req)
    assert m is not None and int(m.group(1)) >= 77, req
