"""miragekit: MirageOS's V1 device model in Python.

Applications are written against the typed signatures in :mod:`miragekit.v1` and linked
at start-up to real backends (see :mod:`miragekit.cli` and ``miragekit run``).
"""

__version__ = "0.1.0"
