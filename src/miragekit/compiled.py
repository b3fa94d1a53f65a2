"""``mypyc_attr`` for the optional compiled build (``tools/compiled_tree.py``), without
making mypy_extensions a dependency: mypy and mypyc see the real decorator, and a
pure-Python install that lacks it gets one that does nothing (the attributes only
matter to mypyc)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["mypyc_attr"]

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr
else:
    try:
        from mypy_extensions import mypyc_attr
    except ImportError:

        def mypyc_attr(*attrs: str, **kwattrs: Any) -> Any:
            return lambda cls: cls
