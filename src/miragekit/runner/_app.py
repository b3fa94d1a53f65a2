"""Finding an application and its ``start`` function.

An application is a directory holding ``app.py`` (as in ``examples/hello``), a ``.py``
file, or an importable dotted module name. It must define ``async def start(...)`` whose
parameters are annotated with signatures from :mod:`miragekit.v1` (devices), or with
``str``, ``int``, ``float``, ``bool`` or ``Path`` (settings, given with ``--set
NAME=VALUE`` or taken from the parameter's default).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import ssl
import sys
import typing
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any


class AppError(Exception):
    """The application cannot be loaded or linked; the message is one line for the user."""


StartFn = Callable[..., Coroutine[Any, Any, object]]


#: The annotations that make a parameter a setting rather than a device.
SETTING_TYPES: tuple[type, ...] = (str, int, float, bool, Path)

_NO_DEFAULT: Any = inspect.Parameter.empty

#: The annotations of the parameter that takes ``--tls CERT,KEY`` as a server context
#: (``None`` without ``--tls`` when the annotation allows it).
TLS_TYPES: tuple[Any, ...] = (ssl.SSLContext, ssl.SSLContext | None)


@dataclass(frozen=True)
class Setting:
    """A ``start`` parameter the user sets on the command line (``--set NAME=VALUE``)."""

    name: str
    type: type
    default: Any = _NO_DEFAULT

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT

    def parse(self, text: str) -> Any:
        """``text`` as this setting's type; ``ValueError`` with a one-line reason."""
        if self.type is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError("not a boolean (true/false, yes/no, on/off, 1/0)")
        if self.type in (int, float):
            try:
                return self.type(text)
            except ValueError:
                raise ValueError(f"not {'an int' if self.type is int else 'a float'}") from None
        return self.type(text)


@dataclass(frozen=True)
class App:
    name: str
    start: StartFn
    params: list[tuple[str, Any]]  # (parameter name, annotation) of each device, in order
    settings: list[Setting] = field(default_factory=list)
    tls: str | None = None  # the parameter taking --tls's ssl.SSLContext
    tls_required: bool = False  # annotated SSLContext, not SSLContext | None


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
    settings: list[Setting] = []
    tls: str | None = None
    tls_required = False
    for p in inspect.signature(start).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise AppError(f"{spec}: start() cannot take *{p.name}")
        if p.name not in hints:
            raise AppError(f"{spec}: start() parameter '{p.name}' has no type annotation")
        if hints[p.name] in TLS_TYPES:
            if tls is not None:
                raise AppError(f"{spec}: start() takes two ssl.SSLContext parameters")
            tls, tls_required = p.name, hints[p.name] is ssl.SSLContext
        elif hints[p.name] in SETTING_TYPES:
            settings.append(Setting(p.name, hints[p.name], p.default))
        else:
            params.append((p.name, hints[p.name]))
    return App(spec, start, params, settings, tls, tls_required)


def settings_values(app: App, given: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """The value of each of ``app``'s settings: ``given`` (``--set``) or the default."""
    known = {s.name: s for s in app.settings}
    values: dict[str, Any] = {}
    for name, text in given:
        s = known.get(name)
        if s is None:
            names = ", ".join(known) or "none"
            raise AppError(
                f"--set {name}={text}: start() has no setting {name!r} (settings: {names})"
            )
        try:
            values[name] = s.parse(text)
        except ValueError as e:
            raise AppError(f"--set {name}={text}: {e}") from None
    for s in app.settings:
        if s.name not in values:
            if s.required:
                raise AppError(
                    f"start() parameter '{s.name}' ({s.type.__name__}) is a setting with no "
                    f"default: give --set {s.name}=VALUE"
                )
            values[s.name] = s.default
    return values
