"""The DNS protocol steps without I/O: answers from a zone, what a stub accepts, the cache."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.dns.dnszone import ORIGIN, ZONE

from miragekit.dns import Authority, BadName, Cache
from miragekit.dns import _stub as stub


@pytest.fixture(scope="module")
def auth() -> Authority:
    return Authority.from_text(ZONE, ORIGIN)


def ask(
    auth: Authority, name: str, rdtype: str, *, udp: bool = True, edns: bool = True
) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=0 if edns else False)
    wire = auth.respond(q.to_wire(), udp=udp)
    assert wire is not None
    r = dns.message.from_wire(wire)
    assert r.id == q.id and r.flags & dns.flags.QR
    return r


def texts(section: list[dns.rrset.RRset]) -> list[str]:
    return sorted(rd.to_text() for rrset in section for rd in rrset)


def test_authority_answers_nxdomain_nodata_and_chains(auth: Authority) -> None:
    r = ask(auth, "www.example.test", "A")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert texts(r.answer) == ["10.0.0.80", "10.0.0.81"]
    r = ask(auth, "alias2.example.test", "AAAA")  # two CNAMEs, then the address
    assert [x.rdtype for x in r.answer] == [dns.rdatatype.CNAME] * 2 + [dns.rdatatype.AAAA]
    r = ask(auth, "nope.example.test", "A")
    assert r.rcode() == dns.rcode.NXDOMAIN and r.flags & dns.flags.AA
    [soa] = r.authority
    assert soa.rdtype == dns.rdatatype.SOA and soa.ttl == 60  # RFC 2308: min(TTL, MINIMUM)
    r = ask(auth, "www.example.test", "MX")  # the name exists: NODATA
    assert (
        r.rcode() == dns.rcode.NOERROR
        and not r.answer
        and r.authority[0].rdtype == dns.rdatatype.SOA
    )
    r = ask(auth, "b.c.example.test", "A")  # an empty non-terminal is NODATA, not NXDOMAIN
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    r = ask(auth, "dangling.example.test", "A")
    assert r.rcode() == dns.rcode.NXDOMAIN and r.answer[0].rdtype == dns.rdatatype.CNAME
    r = ask(auth, "loop1.example.test", "A")  # a loop stops; the asker sees the chain
    assert len(r.answer) <= stub.MAX_CNAME + 1


def test_referral_refused_and_bad_queries(auth: Authority) -> None:
    r = ask(auth, "host.sub.example.test", "A")
    assert r.rcode() == dns.rcode.NOERROR and not r.flags & dns.flags.AA and not r.answer
    assert texts(r.authority) == ["ns.sub.example.test."] and texts(r.additional) == ["10.0.0.99"]
    assert ask(auth, "example.org", "A").rcode() == dns.rcode.REFUSED
    q = dns.message.make_query("www.example.test", "A")
    q.set_opcode(dns.opcode.UPDATE)
    r = dns.message.from_wire(auth.respond(q.to_wire()) or b"")
    assert r.rcode() == dns.rcode.NOTIMP
    # Garbage after a sane header: FORMERR with the same ID; a response or a runt: nothing.
    wire = auth.respond(b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xff")
    assert wire is not None and wire[:2] == b"\xab\xcd" and wire[3] & 0xF == dns.rcode.FORMERR
    assert auth.respond(b"\xab\xcd\x81\x00" + bytes(8)) is None
    assert auth.respond(b"\x00") is None


def test_large_answers_truncate_over_udp_and_fit_over_tcp(auth: Authority) -> None:
    r = ask(auth, "big.example.test", "TXT")
    assert r.flags & dns.flags.TC and not r.answer
    r = ask(auth, "txt.example.test", "TXT", edns=False)  # small: fits in 512
    assert not r.flags & dns.flags.TC and texts(r.answer) == ['"hello world"']
    r = ask(auth, "big.example.test", "TXT", udp=False)
    assert not r.flags & dns.flags.TC and len(r.answer[0][0].strings) == 10


def q(name: str = "www.example.test", t: str = "A") -> stub.Question:
    out = stub.Question.make(name, t)
    assert isinstance(out, stub.Question)
    return out


def response(auth: Authority, question: stub.Question, qid: int) -> bytes:
    wire = auth.respond(stub.query(question, qid))
    assert wire is not None
    return wire


def test_stub_accepts_only_its_answer(auth: Authority) -> None:
    good = response(auth, q(), 1234)
    m = stub.accept(good, 1234, q())
    assert isinstance(m, dns.message.Message)
    assert stub.accept(good, 1235, q()) == "wrong id"
    assert stub.accept(good, 1234, q("other.example.test")) == "wrong question"
    assert stub.accept(good, 1234, q(t="AAAA")) == "wrong question"
    assert stub.accept(good[:20], 1234, q()) == "malformed"
    assert stub.accept(stub.query(q(), 1234), 1234, q()) == "malformed"  # a query, not an answer
    # A name whose compression pointer points at itself: a loop, dropped.
    loop = bytearray(good[:12]) + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    assert stub.accept(bytes(loop), 1234, q()) == "malformed"
    # Counts that promise more records than there are.
    lying = bytearray(good)
    lying[7] = 9
    assert stub.accept(bytes(lying), 1234, q()) == "malformed"


def outcome(auth: Authority, name: str, t: str) -> stub.Outcome:
    question = q(name, t)
    m = stub.accept(response(auth, question, 7), 7, question)
    assert isinstance(m, dns.message.Message)
    return stub.interpret(m, question)


def test_stub_interprets_answers(auth: Authority) -> None:
    a = outcome(auth, "alias2.example.test", "A")
    assert isinstance(a, stub.Answer) and a.name == dns.name.from_text("www.example.test")
    assert sorted(r.to_text() for r in a.records) == ["10.0.0.80", "10.0.0.81"]
    assert outcome(auth, "nope.example.test", "A") == stub.Negative(
        True, 60.0, q("nope.example.test").name
    )
    n = outcome(auth, "www.example.test", "MX")
    assert isinstance(n, stub.Negative) and not n.nxdomain and n.ttl == 60
    assert isinstance(outcome(auth, "loop1.example.test", "A"), stub.Unusable)
    assert outcome(auth, "x.sub.example.test", "A") == stub.Failed("referral")
    assert outcome(auth, "big.example.test", "TXT") == stub.Truncated()
    # A chain that leaves the answer without the target's records or an SOA: follow it.
    question = q("ext.example.test")
    r = dns.message.make_response(dns.message.from_wire(stub.query(question, 9)))
    r.answer.append(dns.rrset.from_text("ext.example.test.", 30, "IN", "CNAME", "elsewhere.org."))
    r = dns.message.from_wire(r.to_wire())
    out = stub.interpret(r, question)
    assert out == stub.Follow(dns.name.from_text("elsewhere.org."), 30.0)
    r.set_rcode(dns.rcode.SERVFAIL)
    assert stub.interpret(r, question) == stub.Failed("SERVFAIL")


def test_question_refuses_bad_names_and_types() -> None:
    assert isinstance(stub.Question.make("a" * 64 + ".test", "A"), BadName)
    assert isinstance(stub.Question.make("x.test", "NOPE"), BadName)
    assert isinstance(stub.Question.make("x.test", "AXFR"), BadName)


def test_cache_honours_ttls_and_bounds() -> None:
    a = dns.rrset.from_text("x.test.", 30, "IN", "A", "10.0.0.1")
    c = Cache(max_entries=3, max_bytes=10_000)
    c.put(("x.test.", 1), tuple(a), 30, now=0)
    assert c.get(("x.test.", 1), now=29.9) is not None
    assert c.get(("x.test.", 1), now=30.0) is None  # expired
    c.put_negative(("n.test.", 1), True, 10_000, now=0)
    e = c.get(("n.test.", 1), now=899)
    assert e is not None and e.nxdomain  # negative TTL capped at 15 minutes
    assert c.get(("n.test.", 1), now=900) is None
    for i in range(10):
        c.put((f"{i}.test.", 1), tuple(a), 300, now=0)
    assert len(c) == 3 and c.evictions == 7
    small = Cache(max_entries=1000, max_bytes=1000)
    for i in range(100):
        small.put((f"{i}.test.", 1), tuple(a), 300, now=0)
    assert small.bytes <= 1000 and len(small) < 100


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    auth = Authority.from_text(ZONE, ORIGIN)
    out = auth.respond(data)
    assert out is None or len(out) >= 12
    m = stub.accept(data, int.from_bytes(data[:2] or b"\0\0", "big"), q())
    if isinstance(m, dns.message.Message):
        stub.interpret(m, q())


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["www", "alias", "alias2", "nope", "mail", "txt", "a.b.c", "x.sub"]),
       st.sampled_from(["A", "AAAA", "MX", "TXT", "CNAME", "NS", "SOA", "ANY"]),
       st.integers(0, 0xFFFF))  # fmt: skip
def test_round_trips(label: str, t: str, qid: int) -> None:
    auth = Authority.from_text(ZONE, ORIGIN)
    question = q(f"{label}.example.test", t)
    wire = response(auth, question, qid)
    m = stub.accept(wire, qid, question)
    assert isinstance(m, dns.message.Message)
    assert dns.message.from_wire(m.to_wire()) == m


def test_the_same_query_gives_the_same_bytes(auth: Authority) -> None:
    """dnspython shuffles records by default; a simulation must replay byte for byte."""
    wire = stub.query(q("www.example.test"), 42)
    assert len({auth.respond(wire) for _ in range(30)}) == 1


def test_rdnss_option_round_trip_and_bad_lengths() -> None:
    """RFC 8106 5.1: length 3 + 2 per server, odd; anything else is malformed."""
    import ipaddress

    from miragekit.wire import WireError
    from miragekit.wire import icmpv6 as ic

    o = ic.RdnssOption(1800, (ipaddress.IPv6Address("fd00::53"), ipaddress.IPv6Address("::1")))
    wire = ic.emit_options((o,))
    assert wire[1] == 5 and ic.parse_options(wire) == (o,)
    for bad in (bytes((25, 2)) + bytes(14), bytes((25, 1)) + bytes(6)):
        with pytest.raises(WireError):
            ic.parse_options(bad)


def test_kept_answers_carry_their_own_id_and_count() -> None:
    auth = Authority.from_text(ZONE, ORIGIN)
    for qid in (1, 2, 3):
        wire = auth.respond(stub.query(q("nope.example.test"), qid))
        assert wire is not None and wire[:2] == qid.to_bytes(2, "big")
        m = stub.accept(wire, qid, q("nope.example.test"))
        assert isinstance(m, dns.message.Message) and m.rcode() == dns.rcode.NXDOMAIN
    assert auth.counters["queries"] == 3 and auth.counters["nxdomain"] == 3
    assert len(auth._answers) == 1
