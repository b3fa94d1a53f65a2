"""The stub resolver's protocol steps, sans-I/O (RFC 1034/1035, 2308, 5452, 6891, 7766).

A query is built from a :class:`Question` and an ID the caller draws from its entropy;
:func:`accept` decides whether bytes that arrived are the answer to that query (right
ID, right question, a response, well formed: RFC 5452's checks; the source address is
the driver's to check); :func:`interpret` turns an accepted answer into an outcome.
dnspython does the message format.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
from dns.rdata import Rdata

from ._errors import BadName

MAX_CNAME = 8  # links followed in one name's chain before the answer counts as unusable
EDNS_PAYLOAD = 1232  # the DNS flag day 2020 figure: fits the IPv6 minimum MTU unfragmented


@dataclass(frozen=True, slots=True)
class Question:
    name: dns.name.Name
    rdtype: dns.rdatatype.RdataType

    @classmethod
    def make(cls, name: str, rdtype: str | int) -> Question | BadName:
        try:
            t = (
                dns.rdatatype.RdataType.make(rdtype)
                if isinstance(rdtype, int)
                else dns.rdatatype.from_text(rdtype)
            )
        except (dns.exception.DNSException, ValueError):
            return BadName(str(name), f"unknown record type {rdtype!s}")
        if dns.rdatatype.is_metatype(t) and t != dns.rdatatype.ANY:
            return BadName(str(name), f"{dns.rdatatype.to_text(t)} cannot be asked for")
        try:
            n = dns.name.from_text(name)
        except dns.exception.DNSException as e:
            return BadName(str(name), f"not a valid domain name ({e})")
        return cls(n, t)

    @property
    def key(self) -> tuple[str, int]:
        return (self.name.to_text().lower(), int(self.rdtype))

    def __str__(self) -> str:
        return self.name.to_text(omit_final_dot=True)


def query(q: Question, qid: int, *, edns_payload: int | None = EDNS_PAYLOAD) -> bytes:
    """The wire bytes of a recursive query for ``q`` with ID ``qid``."""
    m = dns.message.make_query(
        q.name,
        q.rdtype,
        use_edns=0 if edns_payload else False,
        payload=edns_payload or 512,
        id=qid,
    )
    return m.to_wire()


def accept(wire: bytes, qid: int, q: Question) -> dns.message.Message | str:
    """The response to query ``qid`` for ``q``, or why these bytes are not it."""
    if len(wire) < 12:
        return "malformed"
    if int.from_bytes(wire[:2], "big") != qid:
        return "wrong id"
    try:
        m = dns.message.from_wire(wire, ignore_trailing=True, raise_on_truncation=False)
    except Exception:  # any parse failure of untrusted bytes: dropped, never raised
        return "malformed"
    if not m.flags & dns.flags.QR or m.opcode() != 0:
        return "malformed"
    if len(m.question) != 1:
        return "wrong question"
    asked = m.question[0]
    if asked.name != q.name or asked.rdtype != q.rdtype or asked.rdclass != dns.rdataclass.IN:
        return "wrong question"
    return m


@dataclass(frozen=True, slots=True)
class Answer:
    records: tuple[Rdata, ...]
    ttl: float
    name: dns.name.Name  # where the chain of CNAMEs ended


@dataclass(frozen=True, slots=True)
class Negative:
    nxdomain: bool  # NXDOMAIN, or NODATA (the name exists, not with this type)
    ttl: float  # how long it may be cached (RFC 2308: from the SOA), 0 = not at all
    name: dns.name.Name


@dataclass(frozen=True, slots=True)
class Follow:
    """The answer ends in a CNAME whose target it does not answer: ask for the target."""

    target: dns.name.Name
    ttl: float


@dataclass(frozen=True, slots=True)
class Failed:
    rcode: str  # SERVFAIL, REFUSED, ..., or "referral" from a server that does not recurse


@dataclass(frozen=True, slots=True)
class Truncated:
    pass


@dataclass(frozen=True, slots=True)
class Unusable:
    why: str


Outcome = Answer | Negative | Follow | Failed | Truncated | Unusable


def _negative_ttl(m: dns.message.Message) -> float:
    for rrset in m.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            return float(min(rrset.ttl, rrset[0].minimum))
    return 0.0


def interpret(m: dns.message.Message, q: Question) -> Outcome:
    if m.flags & dns.flags.TC:
        return Truncated()
    rcode = m.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return Failed(dns.rcode.to_text(rcode))
    name, seen, ttl = q.name, {q.name}, float("inf")
    for _ in range(MAX_CNAME + 1):
        rrset = m.get_rrset(m.answer, name, dns.rdataclass.IN, q.rdtype)
        if rrset is not None and len(rrset):
            return Answer(tuple(rrset), min(ttl, rrset.ttl), name)
        cname = m.get_rrset(m.answer, name, dns.rdataclass.IN, dns.rdatatype.CNAME)
        if cname is None or not len(cname):
            break
        ttl = min(ttl, cname.ttl)
        name = cname[0].target
        if name in seen:
            return Unusable(f"CNAME loop at {name}")
        seen.add(name)
    else:
        return Unusable(f"more than {MAX_CNAME} CNAMEs in a chain")
    if rcode == dns.rcode.NXDOMAIN:
        return Negative(True, _negative_ttl(m), name)
    has_soa = any(r.rdtype == dns.rdatatype.SOA for r in m.authority)
    if name != q.name and not has_soa:
        return Follow(name, 0.0 if ttl == float("inf") else ttl)
    if not has_soa and any(r.rdtype == dns.rdatatype.NS for r in m.authority):
        return Failed("referral")  # a server that does not recurse for us
    return Negative(False, _negative_ttl(m), name)
