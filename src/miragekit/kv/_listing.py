"""An extension beyond the seed: stores that can list their keys."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class KVListable(Protocol):
    """A KV_RO store that can enumerate its keys (the seed's KV_RO cannot).

    ``keys()`` returns every key ``read`` accepts, in the normal form ``a/b/c``, sorted.
    """

    async def keys(self) -> list[str]: ...
