"""Results and errors of the V1 signatures, as values.

The seed's ``[`Ok of t | `Error of e]`` becomes ``Ok[T] | Error[E]``; ``` `Eof ``` becomes
the singleton :data:`EOF` (of class :class:`Eof`). Every polymorphic-variant error the seed
names is one frozen dataclass here, so callers can ``match`` on them::

    match await block.read(0, [buf]):
        case Ok():
            ...
        case Error(IsReadOnly()):
            ...

Exceptions are only for programming errors (docs/design.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Generic, TypeVar

T_co = TypeVar("T_co", covariant=True)
E_co = TypeVar("E_co", covariant=True)


@dataclass(frozen=True, slots=True)
class Ok(Generic[T_co]):
    """A successful result carrying ``value``."""

    value: T_co


@dataclass(frozen=True, slots=True)
class Error(Generic[E_co]):
    """A failed result carrying one of the error variants below."""

    error: E_co


class Eof:
    """End of a flow. There is exactly one instance, :data:`EOF`."""

    __slots__ = ()
    _instance: Eof | None = None

    def __new__(cls) -> Eof:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "EOF"

    def __reduce__(self) -> str:
        return "EOF"


EOF: Final[Eof] = Eof()


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
]
