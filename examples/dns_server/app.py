"""dns_server: an authoritative DNS server for the zones in a KV_RO store.

Every key ``NAME.zone`` of the store is an RFC 1035 master file for the zone ``NAME.``
(``example.test.zone`` serves ``example.test.``). It answers over UDP and TCP on port 53
on whatever stack it is linked to (``dig @ADDRESS www.example.test``), and logs each
zone it loads. A zone file that does not parse stops the start with its error.
"""

from __future__ import annotations

from miragekit import v1
from miragekit.dns import Authority, Server
from miragekit.kv import KVListable
from miragekit.result import Error, Ok

PORT = 53


async def _text(kv: v1.KVRO, key: str) -> str:
    match await kv.size(key):
        case Ok(size):
            pass
        case Error(err):
            raise SystemExit(f"dns_server: {key}: {err}")
    match await kv.read(key, 0, size):
        case Ok(bufs):
            return b"".join(bytes(b) for b in bufs).decode("utf-8")
        case Error(err):
            raise SystemExit(f"dns_server: {key}: {err}")
    raise AssertionError  # pragma: no cover


async def start(console: v1.Console, stack: v1.StackV4, kv: v1.KVRO) -> None:
    keys = await kv.keys() if isinstance(kv, KVListable) else []
    zones = []
    for key in sorted(k for k in keys if k.endswith(".zone")):
        origin = key.rpartition("/")[2].removesuffix(".zone") + "."
        try:
            auth = Authority.from_text(await _text(kv, key), origin, filename=key)
        except ValueError as e:
            raise SystemExit(f"dns_server: {e}") from None
        zones += auth.zones
        await console.log_s(f"dns_server: zone {origin} from {key}")
    if not zones:
        raise SystemExit("dns_server: the store holds no NAME.zone file")
    Server(stack, Authority(zones)).serve(PORT)
    ips = ", ".join(str(ip) for ip in stack.ipv4().get_ip())
    await console.log_s(f"dns_server: answering on {ips} port {PORT} (UDP and TCP)")
    await stack.listen()
