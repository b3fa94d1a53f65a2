"""KV_RO stores: :class:`DirKV` (a host directory) and :class:`TarKV` (a tar archive).

Both also offer ``keys()``, an extension beyond the seed (see :class:`KVListable`), so
applications can enumerate a store. ``exact_key`` and ``check_range`` are the one key
and range rule every store follows (FAT's ``FatKV`` too).
"""

from ._dir import DirKV as DirKV
from ._keys import check_range as check_range
from ._keys import exact_key as exact_key
from ._listing import KVListable as KVListable
from ._tar import TarKV as TarKV

__all__ = ["DirKV", "KVListable", "TarKV", "check_range", "exact_key"]
