"""KV_RO stores: :class:`DirKV` (a host directory) and :class:`TarKV` (a tar archive).

Both also offer ``keys()``, an extension beyond the seed (see :class:`KVListable`), so
applications can enumerate a store.
"""

from ._dir import DirKV as DirKV
from ._listing import KVListable as KVListable
from ._tar import TarKV as TarKV

__all__ = ["DirKV", "KVListable", "TarKV"]
