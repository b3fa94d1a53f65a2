"""Finding an application and its ``start`` function.

An application is a directory holding ``app.py`` (as in ``examples/hello``), a ``.py``
file, or an importable dotted module name. It must define ``async def start(...)`` whose
parameters are annotated with signatures from :mod:`miragekit.v1`.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import typing
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any


class AppError(Exception):
    """The application cannot be loaded or linked; the message is one line for the user."""


StartFn = Callable[..., Coroutine[Any, Any, object]]


@dataclass(frozen=True)
class App:
    name: str
    start: StartFn
    params: list[tuple[str, Any]]  # (parameter name, annotation) in order


def _load_module(spec: str) -> ModuleType:
    path = Path(spec)
    if path.is_dir():
        path = path / "app.py"
        if not path.is_file():
            raise AppError(f"{spec}: a directory application needs an app.py")
    if path.suffix == ".py":
        if not path.is_file():
            raise AppError(f"{spec}: no such file")
        modname = f"miragekit_app_{path.resolve().parent.name}_{path.stem}"
        mspec = importlib.util.spec_from_file_location(modname, path)
        if mspec is None or mspec.loader is None:
            raise AppError(f"{spec}: cannot load")
        module = importlib.util.module_from_spec(mspec)
        sys.modules[modname] = module
        try:
            mspec.loader.exec_module(module)
        except ModuleNotFoundError as e:
            del sys.modules[modname]
            raise AppError(_missing(spec, e)) from None
        return module
    if "/" in spec or spec.startswith("."):
        raise AppError(f"{spec}: no such application (not a directory, .py file or module)")
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as e:
        if e.name is not None and spec.startswith(e.name):
            raise AppError(f"{spec}: no such application ({e})") from None
        raise AppError(_missing(spec, e)) from None


#: Modules that an optional extra of miragekit installs (``pip install 'miragekit[X]'``).
EXTRAS = {"h11": "http"}


def _missing(spec: str, e: ModuleNotFoundError) -> str:
    """The application imports a module that is not installed: name it, and the extra
    that brings it when there is one."""
    name = (e.name or "").partition(".")[0]
    extra = EXTRAS.get(name)
    if extra is not None:
        return (
            f"{spec} needs the '{name}' module, from miragekit's [{extra}] extra: "
            f"pip install 'miragekit[{extra}]'"
        )
    return f"{spec} needs the '{name}' module, which is not installed"


def load_app(spec: str) -> App:
    """Import ``spec`` and return its ``start`` with the annotation of every parameter."""
    module = _load_module(spec)
    start = getattr(module, "start", None)
    if start is None or not inspect.iscoroutinefunction(start):
        raise AppError(f"{spec}: defines no 'async def start(...)'")
    try:
        hints = typing.get_type_hints(start)
    except Exception as e:
        raise AppError(f"{spec}: cannot resolve the annotations of start(): {e}") from None
    params: list[tuple[str, Any]] = []
    for p in inspect.signature(start).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise AppError(f"{spec}: start() cannot take *{p.name}")
        if p.name not in hints:
            raise AppError(f"{spec}: start() parameter '{p.name}' has no type annotation")
        params.append((p.name, hints[p.name]))
    return App(name=spec, start=start, params=params)
