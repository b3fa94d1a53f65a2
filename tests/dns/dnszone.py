"""The zone the DNS tests serve, and the names they ask for."""

from __future__ import annotations

ORIGIN = "example.test."
BIG_TXT = " ".join(f'"{c * 200}"' for c in "abcdefghij")  # ~2 KB: over any UDP limit
ZONE = f"""$TTL 300
@       IN SOA ns1 hostmaster 1 3600 600 86400 60
@       IN NS  ns1
ns1     IN A   10.0.0.2
www     IN A   10.0.0.80
www     IN A   10.0.0.81
www     IN AAAA fd00::80
alias   IN CNAME www
alias2  IN CNAME alias
dangling IN CNAME gone
loop1   IN CNAME loop2
loop2   IN CNAME loop1
mail    IN MX  10 www
txt     IN TXT "hello world"
big     IN TXT {BIG_TXT}
a.b.c   IN A   10.0.0.1
sub     IN NS  ns.sub
ns.sub  IN A   10.0.0.99
80      IN PTR www
"""
