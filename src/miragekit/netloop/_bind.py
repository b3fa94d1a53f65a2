"""Which stack a network call goes through: the one bound to the calling context.

Why a context variable: one event loop may host several stacks (a simulated cluster), and
asyncio copies the current context into every task it creates, so a task started inside
``bind(stack)`` keeps talking through that stack however deep its call chain goes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from .. import v1

_stack: ContextVar[v1.StackV4 | None] = ContextVar("miragekit_stack", default=None)


@contextlib.contextmanager
def bind(stack: v1.StackV4) -> Iterator[v1.StackV4]:
    """Route the asyncio network calls of this context (and of the tasks created inside
    it) through ``stack`` until the block ends."""
    token = _stack.set(stack)
    try:
        yield stack
    finally:
        _stack.reset(token)


def bound_stack() -> v1.StackV4 | None:
    """The stack bound to the calling context, if any."""
    return _stack.get()


def stack_for(call: str) -> Any:
    """The bound stack, or a ``RuntimeError`` naming ``call``: nothing falls through to
    the host's sockets."""
    stack = _stack.get()
    if stack is None:
        raise RuntimeError(
            f"{call}: no miragekit stack is bound to this context "
            "(use miragekit.aio.bind(stack) or miragekit.aio.run(..., stack=...))"
        )
    return stack


def unsupported(what: str) -> NotImplementedError:
    """The error for a family, socket type or option the stack cannot serve."""
    return NotImplementedError(f"{what} is not supported on a miragekit stack")
