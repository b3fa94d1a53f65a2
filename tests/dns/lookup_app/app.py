"""A test app: look up two names through whatever resolver the runner links."""

from miragekit import v1
from miragekit.dns import NameResolver
from miragekit.result import Ok


async def start(console: v1.Console, names: NameResolver) -> None:
    for host in ("www.example.test", "nope.example.test"):
        r = await names.addresses(host)
        await console.log_s(
            f"{host}: {[str(a) for a in r.value] if isinstance(r, Ok) else r.error}"
        )
