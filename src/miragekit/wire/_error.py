"""The one error type of the wire formats: malformed bytes, naming the field at fault."""

from __future__ import annotations


class WireError(ValueError):
    """Raised when bytes do not form a valid packet; ``field`` names what is wrong.

    The stack catches it (or checks lengths first) and drops and counts the frame; it is
    never raised into an application.
    """

    def __init__(self, field: str, msg: str) -> None:
        super().__init__(f"{field}: {msg}")
        self.field = field
        self.msg = msg
