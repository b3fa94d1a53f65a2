"""What a failed lookup says: one value per way a resolution fails, in plain words."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NXDomain:
    """The name does not exist (RCODE 3), said by an authority."""

    name: str

    def __str__(self) -> str:
        return f"{self.name}: no such name (NXDOMAIN)"


@dataclass(frozen=True, slots=True)
class ServFail:
    """Every server asked failed to answer (SERVFAIL, REFUSED or another RCODE)."""

    name: str
    rcode: str

    def __str__(self) -> str:
        return f"{self.name}: the servers could not answer ({self.rcode})"


@dataclass(frozen=True, slots=True)
class Timeout:
    """No acceptable answer from any server within the retries."""

    name: str
    servers: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.name}: no answer from {', '.join(self.servers) or 'any server'}"


@dataclass(frozen=True, slots=True)
class Malformed:
    """An answer that parses but cannot be used (a CNAME loop, a chain too long)."""

    name: str
    why: str

    def __str__(self) -> str:
        return f"{self.name}: unusable answer: {self.why}"


@dataclass(frozen=True, slots=True)
class BadName:
    """The name or record type asked for is not valid."""

    name: str
    why: str

    def __str__(self) -> str:
        return f"{self.name!s}: {self.why}"


DnsError = NXDomain | ServFail | Timeout | Malformed | BadName
