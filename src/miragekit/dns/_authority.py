"""Authoritative answers from zones, sans-I/O (RFC 1034 4.3.2, RFC 2308, RFC 6891).

:meth:`Authority.respond` takes a query's bytes and gives the response's bytes (or
``None`` when the bytes deserve no answer at all). Zones come from RFC 1035 master
files (:meth:`Authority.from_text`) or are built in code with dnspython. What it does:
answers with AA set, CNAME chains inside our zones, NODATA and NXDOMAIN with the SOA in
the authority section, referrals below a delegation (NS with glue), REFUSED for names
outside every zone, and truncation (TC) when a UDP answer exceeds the asker's EDNS
size or 512 bytes, so the asker retries over TCP (RFC 7766). Not done: wildcards,
DNSSEC, zone transfers, dynamic update.
"""

from __future__ import annotations

from collections.abc import Iterable

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

from ._stub import EDNS_PAYLOAD, MAX_CNAME

COUNTERS = (
    "queries", "answers", "nxdomain", "nodata", "referrals", "refused", "formerr",
    "notimp", "truncated", "dropped",
)  # fmt: skip


class Authority:
    """The zones a server is authoritative for, and the answers they give."""

    def __init__(self, zones: Iterable[dns.zone.Zone]) -> None:
        self.zones = sorted(zones, key=lambda z: -len(z.origin or dns.name.root))
        names: set[dns.name.Name] = set()
        for z in self.zones:
            if z.relativize:
                raise ValueError("zones must be loaded with relativize=False")
            for n in z.nodes:
                names.add(n)
        # Every name that exists, or is an ancestor of one (an empty non-terminal).
        self._exists: set[dns.name.Name] = set()
        for n in names:
            while True:
                self._exists.add(n)
                if n == dns.name.root:
                    break
                n = n.parent()
        self.counters = dict.fromkeys(COUNTERS, 0)
        self._answers: dict[tuple[bool, bytes], tuple[bytes, tuple[str, ...]]] = {}

    @classmethod
    def from_text(cls, text: str, origin: str, filename: str | None = None) -> Authority:
        """One zone from RFC 1035 master-file text; ``ValueError`` says what is wrong and
        where (``filename:line:`` when the parser knows the line)."""
        try:
            z = dns.zone.from_text(
                text, origin=origin, relativize=False, check_origin=True, filename=filename
            )
        except dns.exception.DNSException as e:
            where = "" if filename and str(e).startswith(filename) else f"zone {origin}: "
            raise ValueError(f"{where}{e}") from None
        return cls([z])

    def _zone_for(self, name: dns.name.Name) -> dns.zone.Zone | None:
        for z in self.zones:
            assert z.origin is not None
            if name.is_subdomain(z.origin):
                return z
        return None

    ANSWER_CACHE = 4096  # answers kept by query bytes (the zones do not change)

    def respond(self, wire: bytes, *, udp: bool = True) -> bytes | None:
        """The response to the query ``wire`` (``None``: no answer deserved).

        Answers are kept by the query's bytes after its ID: the same question (same
        flags, same EDNS size, same transport) gets the same bytes with its own ID,
        without parsing it again."""
        key = (udp, wire[2:])
        hit = self._answers.get(key)
        if hit is not None:
            kept, counted = hit
            self.counters["queries"] += 1
            for name in counted:
                self.counters[name] += 1
            return wire[:2] + kept[2:]
        before = dict(self.counters)
        out = self._respond(wire, udp)
        if out is not None and len(wire) >= 12:
            if len(self._answers) >= self.ANSWER_CACHE:
                self._answers.pop(next(iter(self._answers)))
            counted = tuple(
                k for k, v in self.counters.items() if v != before[k] and k != "queries"
            )
            self._answers[key] = (out, counted)
        return out

    def _respond(self, wire: bytes, udp: bool) -> bytes | None:
        c = self.counters
        if len(wire) < 12 or wire[2] & 0x80:
            c["dropped"] += 1
            return None  # a runt, or a response: answering it could make a loop
        c["queries"] += 1
        if (wire[2] >> 3) & 0xF != dns.opcode.QUERY:
            c["notimp"] += 1
            return _header_only(wire, dns.rcode.NOTIMP)
        try:
            q = dns.message.from_wire(wire)
        except Exception:  # untrusted bytes: FORMERR with the header's ID
            c["formerr"] += 1
            return _header_only(wire, dns.rcode.FORMERR)
        if len(q.question) != 1:
            c["formerr"] += 1
            return self._error(q, dns.rcode.FORMERR, udp)
        question = q.question[0]
        if question.rdclass != dns.rdataclass.IN:
            c["refused"] += 1
            return self._error(q, dns.rcode.REFUSED, udp)
        zone = self._zone_for(question.name)
        if zone is None:
            c["refused"] += 1
            return self._error(q, dns.rcode.REFUSED, udp)
        r = dns.message.make_response(q, our_payload=EDNS_PAYLOAD)
        self._answer(r, zone, question.name, question.rdtype)
        return self._wire(q, r, udp)

    def _answer(
        self,
        r: dns.message.Message,
        zone: dns.zone.Zone,
        name: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
    ) -> None:
        c = self.counters
        assert zone.origin is not None
        cut = self._delegation(zone, name)
        if cut is not None:
            c["referrals"] += 1
            ns = zone.get_rdataset(cut, dns.rdatatype.NS)
            assert ns is not None
            r.authority.append(_rrset(cut, ns))
            for rd in ns:
                for t in (dns.rdatatype.A, dns.rdatatype.AAAA):
                    glue = zone.get_rdataset(rd.target, t) if rd.target.is_subdomain(cut) else None
                    if glue is not None:
                        r.additional.append(_rrset(rd.target, glue))
            return
        r.flags |= dns.flags.AA
        for _ in range(MAX_CNAME + 1):
            node = zone.get_node(name)
            if node is None:
                if name in self._exists:
                    break  # an empty non-terminal: NODATA
                r.set_rcode(dns.rcode.NXDOMAIN)
                c["nxdomain"] += 1
                r.authority.append(self._soa(zone))
                return
            if rdtype == dns.rdatatype.ANY:
                for rds in node.rdatasets:
                    r.answer.append(_rrset(name, rds))
                c["answers"] += 1
                return
            rds = node.get_rdataset(dns.rdataclass.IN, rdtype)
            if rds is not None:
                r.answer.append(_rrset(name, rds))
                c["answers"] += 1
                return
            cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if cname is None:
                break
            r.answer.append(_rrset(name, cname))
            name = cname[0].target
            inner = self._zone_for(name)
            if inner is None or self._delegation(inner, name) is not None:
                c["answers"] += 1
                return  # the asker follows the chain outside our authority
            zone = inner
        c["nodata"] += 1
        r.authority.append(self._soa(zone))

    @staticmethod
    def _delegation(zone: dns.zone.Zone, name: dns.name.Name) -> dns.name.Name | None:
        """The highest zone cut between the zone's apex (excluded) and ``name``."""
        assert zone.origin is not None
        labels = name.relativize(zone.origin).labels
        for i in range(len(labels) - 1, -1, -1):
            anc = dns.name.Name(labels[i:]).derelativize(zone.origin)
            if zone.get_rdataset(anc, dns.rdatatype.NS) is not None:
                return anc
        return None

    @staticmethod
    def _soa(zone: dns.zone.Zone) -> dns.rrset.RRset:
        assert zone.origin is not None
        soa = zone.get_rdataset(zone.origin, dns.rdatatype.SOA)
        assert soa is not None
        rrset = _rrset(zone.origin, soa)
        rrset.ttl = min(soa.ttl, soa[0].minimum)  # RFC 2308 section 3
        return rrset

    def _wire(self, q: dns.message.Message, r: dns.message.Message, udp: bool) -> bytes:
        # Records in zone order, not shuffled: the same query gives the same bytes (a
        # seeded simulation replays exactly).
        if not udp:
            return r.to_wire(max_size=65535, want_shuffle=False)
        limit = 512 if q.edns < 0 else max(512, min(q.payload, EDNS_PAYLOAD))
        try:
            return r.to_wire(max_size=limit, want_shuffle=False)
        except dns.exception.TooBig:
            self.counters["truncated"] += 1
            t = dns.message.make_response(q, our_payload=EDNS_PAYLOAD)
            t.flags |= dns.flags.TC | (r.flags & dns.flags.AA)
            t.set_rcode(r.rcode())
            return t.to_wire(max_size=limit)

    def _error(self, q: dns.message.Message, rcode: dns.rcode.Rcode, udp: bool) -> bytes:
        r = dns.message.make_response(q, our_payload=EDNS_PAYLOAD)
        r.set_rcode(rcode)
        return self._wire(q, r, udp)


def _header_only(wire: bytes, rcode: dns.rcode.Rcode) -> bytes:
    """A reply of the header alone: the query's ID and opcode, QR set, ``rcode``."""
    flags = 0x8000 | (wire[2] & 0x78) << 8 | rcode
    return wire[:2] + flags.to_bytes(2, "big") + bytes(8)


def _rrset(name: dns.name.Name, rds: dns.rdataset.Rdataset) -> dns.rrset.RRset:
    return dns.rrset.from_rdata_list(name, rds.ttl, list(rds))
