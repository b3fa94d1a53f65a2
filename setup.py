"""Packaging hook for the optional compiled build. Without ``MIRAGEKIT_COMPILE=1`` it
adds nothing: pyproject.toml describes the package, and it installs as pure Python.

With ``MIRAGEKIT_COMPILE=1 pip install --no-build-isolation .`` (mypy, which ships
mypyc, setuptools 77 or later, a C compiler and the Python headers in the environment),
the modules listed under ``[tool.miragekit] compiled`` in pyproject.toml are compiled
to C extensions; the pure-Python sources are installed beside them all the same.
"""

from __future__ import annotations

import os
import tomllib

from setuptools import setup

ext_modules = []
if os.environ.get("MIRAGEKIT_COMPILE") == "1":
    from mypyc.build import mypycify

    with open("pyproject.toml", "rb") as f:
        modules = tomllib.load(f)["tool"]["miragekit"]["compiled"]
    ext_modules = mypycify(modules)

setup(ext_modules=ext_modules)
