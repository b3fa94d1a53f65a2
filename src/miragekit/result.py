"""Results and errors of the V1 signatures, as values.

The seed's ``[`Ok of t | `Error of e]`` becomes ``Ok[T] | Error[E]``; ``` `Eof ``` becomes
the enum member :data:`EOF` (of class :class:`Eof`). Every polymorphic-variant error the seed
names is one frozen dataclass here, so callers can ``match`` on them::

    match await block.read(0, [buf]):
        case Ok():
            ...
        case Error(IsReadOnly()):
            ...

``r.unwrap()`` / ``r.expect("what")`` give the value of an ``Ok`` and raise
:class:`UnwrapError` on an ``Error``, for code (tests, setup) where failure is a bug.

Exceptions are only for programming errors (docs/design.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Final, Generic, NoReturn, TypeVar

T_co = TypeVar("T_co", covariant=True)
E_co = TypeVar("E_co", covariant=True)


class Eof(Enum):
    """End of a flow. Its one member is :data:`EOF`.

    An enum, so a type checker narrows on it: after ``if r is EOF: return`` the type of
    ``r`` no longer includes ``Eof``, and ``match`` with ``case EOF:`` counts as
    exhaustive.
    """

    EOF = "EOF"

    def __repr__(self) -> str:
        return "EOF"


EOF: Final = Eof.EOF


class UnwrapError(Exception):
    """``unwrap()``/``expect()`` was called on an ``Error``: a programming error."""


@dataclass(frozen=True, slots=True)
class Ok(Generic[T_co]):
    """A successful result carrying ``value``."""

    value: T_co

    def unwrap(self) -> T_co:
        """The value (on an ``Error`` this raises :class:`UnwrapError`)."""
        return self.value

    def expect(self, msg: str) -> T_co:
        """The value (on an ``Error`` this raises :class:`UnwrapError` with ``msg``)."""
        return self.value


@dataclass(frozen=True, slots=True)
class Error(Generic[E_co]):
    """A failed result carrying one of the error variants below."""

    error: E_co

    def unwrap(self) -> NoReturn:
        """Raise :class:`UnwrapError`: the result was expected to be ``Ok``."""
        raise UnwrapError(f"unwrap() on Error({self.error!r})")

    def expect(self, msg: str) -> NoReturn:
        """Raise :class:`UnwrapError` saying ``msg`` and the error."""
        raise UnwrapError(f"{msg}: {self.error!r}")


# --- error variants, one per polymorphic variant the seed names -------------------------


@dataclass(frozen=True, slots=True)
class Unknown:
    msg: str


@dataclass(frozen=True, slots=True)
class Unimplemented:
    pass


@dataclass(frozen=True, slots=True)
class IsReadOnly:
    pass


@dataclass(frozen=True, slots=True)
class Disconnected:
    pass


@dataclass(frozen=True, slots=True)
class Timeout:
    pass


@dataclass(frozen=True, slots=True)
class Refused:
    pass


@dataclass(frozen=True, slots=True)
class NoEntropyDevice:
    msg: str


@dataclass(frozen=True, slots=True)
class InvalidConsole:
    msg: str


@dataclass(frozen=True, slots=True)
class NotADirectory:
    path: str


@dataclass(frozen=True, slots=True)
class IsADirectory:
    path: str


@dataclass(frozen=True, slots=True)
class DirectoryNotEmpty:
    path: str


@dataclass(frozen=True, slots=True)
class NoDirectoryEntry:
    dir: str
    name: str


@dataclass(frozen=True, slots=True)
class FileAlreadyExists:
    path: str


@dataclass(frozen=True, slots=True)
class NoSpace:
    pass


@dataclass(frozen=True, slots=True)
class FormatNotRecognised:
    msg: str


@dataclass(frozen=True, slots=True)
class UnknownError:
    msg: str


@dataclass(frozen=True, slots=True)
class BlockDevice:
    """An error from the block layer underneath a filesystem."""

    error: BlockError


@dataclass(frozen=True, slots=True)
class UnknownKey:
    key: str


# --- the error type of each signature ---------------------------------------------------

EntropyError = NoEntropyDevice
ConsoleError = InvalidConsole
BlockError = Unknown | Unimplemented | IsReadOnly | Disconnected
NetworkError = Unknown | Unimplemented | Disconnected
EthifError = Unknown | Unimplemented | Disconnected
IPError = Unknown | Unimplemented
UDPError = Unknown
TCPError = Unknown | Timeout | Refused
StackError = Unknown
FSError = (
    NotADirectory
    | IsADirectory
    | DirectoryNotEmpty
    | NoDirectoryEntry
    | FileAlreadyExists
    | NoSpace
    | FormatNotRecognised
    | UnknownError
    | BlockDevice
)
KVError = UnknownKey


def message(err: object) -> str:
    """One line for a user out of any error variant: ``Unknown("x")`` is ``x``,
    ``Refused()`` is ``refused``, ``UnknownKey("k")`` is ``unknown key: k`` (never a repr)."""
    fields = getattr(err, "__dataclass_fields__", None)
    if fields is None:
        return str(err)
    values = [getattr(err, f) for f in fields]
    if set(fields) == {"msg"}:
        return str(values[0])
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", type(err).__name__).lower()
    parts = [message(v) for v in values]
    return f"{words}: {', '.join(parts)}" if parts else words


__all__ = [
    "EOF",
    "BlockDevice",
    "BlockError",
    "ConsoleError",
    "DirectoryNotEmpty",
    "Disconnected",
    "EntropyError",
    "Eof",
    "Error",
    "EthifError",
    "FSError",
    "FileAlreadyExists",
    "FormatNotRecognised",
    "IPError",
    "InvalidConsole",
    "IsADirectory",
    "IsReadOnly",
    "KVError",
    "NetworkError",
    "NoDirectoryEntry",
    "NoEntropyDevice",
    "NoSpace",
    "NotADirectory",
    "Ok",
    "Refused",
    "StackError",
    "TCPError",
    "Timeout",
    "UDPError",
    "Unimplemented",
    "Unknown",
    "UnknownError",
    "UnknownKey",
    "UnwrapError",
    "message",
]
