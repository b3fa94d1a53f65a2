"""Key handling shared by the KV_RO stores: one normal form, no way out of the root."""

from __future__ import annotations


def normalize(key: str) -> str | None:
    """A stored name (a tar member's, say) as ``a/b/c``, or ``None`` if it is unsafe.

    Names are ``/``-separated and relative to the store's root; a leading ``/`` is the
    root itself, and empty and ``.`` components are ignored. Any ``..`` component (even
    one that would stay inside), a NUL, or the root itself names nothing. Keys asked
    for are stricter: see :func:`exact_key`.
    """
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, got {type(key).__name__}")
    if "\0" in key:
        return None
    parts = [p for p in key.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def exact_key(key: str) -> str | None:
    """The one spelling of a key that names a value, or ``None``.

    Why: a value has exactly one key, so a store cannot be asked the same thing under
    several names (a cache or an access list above it keyed on the name would be
    fooled). ``a/b`` names a value and so does ``/a/b`` (relative to the root); empty,
    ``.`` and ``..`` components, a trailing ``/`` and NUL name nothing.
    """
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, got {type(key).__name__}")
    body = key[1:] if key.startswith("/") else key
    if "\0" in body or any(p in ("", ".", "..") for p in body.split("/")):
        return None
    return body


def check_range(offset: int, length: int) -> None:
    """Raise ``ValueError``/``TypeError`` naming the argument for a bad read range."""
    for name, v in (("offset", offset), ("length", length)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        if v < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
