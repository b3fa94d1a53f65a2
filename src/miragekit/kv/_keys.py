"""Key handling shared by the KV_RO stores: one normal form, no way out of the root."""

from __future__ import annotations


def normalize(key: str) -> str | None:
    """The key as ``a/b/c`` or ``None`` if it can never name a value.

    Keys are ``/``-separated and relative to the store's root; a leading ``/`` is the
    root itself, and empty and ``.`` components are ignored. Any ``..`` component (even
    one that would stay inside), a NUL, or the root itself names nothing.
    """
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, got {type(key).__name__}")
    if "\0" in key:
        return None
    parts = [p for p in key.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def check_range(offset: int, length: int) -> None:
    """Raise ``ValueError``/``TypeError`` naming the argument for a bad read range."""
    for name, v in (("offset", offset), ("length", length)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        if v < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
