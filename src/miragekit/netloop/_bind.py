"""Which stack a network call goes through: the one bound to the calling context.

Why a context variable: one event loop may host several stacks (a simulated cluster), and
asyncio copies the current context into every task it creates, so a task started inside
``bind(stack)`` keeps talking through that stack however deep its call chain goes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from .. import v1

_stack: ContextVar[v1.StackV4 | None] = ContextVar("miragekit_stack", default=None)
_resolver: ContextVar[Any] = ContextVar("miragekit_resolver", default=None)

DNS_SERVERS: list[str] = []
"""Servers for the resolver made for a stack bound without one (``miragekit exec --dns``);
empty: the stack's DHCP lease and router advertisements say."""

_made: dict[int, tuple[Any, Any]] = {}  # id(stack): (stack, its resolver)


@contextlib.contextmanager
def bind(stack: v1.StackV4, resolver: Any = None) -> Iterator[v1.StackV4]:
    """Route the asyncio network calls of this context (and of the tasks created inside
    it) through ``stack`` until the block ends; names resolve through ``resolver`` (a
    :class:`miragekit.dns.Resolver`), by default one over ``stack`` itself.

    On a running loop that is not a stack loop the binding would change nothing (the
    calls would reach the host's sockets), so that is refused."""
    _check_running_loop()
    token = _stack.set(stack)
    rtoken = _resolver.set(resolver)
    try:
        yield stack
    finally:
        _resolver.reset(rtoken)
        _stack.reset(token)


def _check_running_loop() -> None:
    from ._loop import StackLoopMixin  # it imports this module

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # no loop yet: nothing to check (stacks are made on a running loop)
    if not isinstance(loop, StackLoopMixin):
        raise RuntimeError(
            f"bind: the running loop ({type(loop).__qualname__}) is not a miragekit stack "
            "loop: asyncio's network calls would go to the host's sockets, not the stack; "
            "run on one: miragekit.aio.run(main()) (a StackEventLoop), sim.Network, or a "
            "loop class with StackLoopMixin first"
        )


def resolver_for(stack: Any) -> Any:
    """The resolver names go through in this context: the one bound with the stack, or
    one made once per stack (servers: :data:`DNS_SERVERS`, else DHCP's and RDNSS's)."""
    r = _resolver.get()
    if r is not None:
        return r
    kept = _made.get(id(stack))
    if kept is None or kept[0] is not stack:
        from ..dns import Resolver  # dnspython only for programs that look names up

        kept = (stack, Resolver(stack, DNS_SERVERS))
        _made[id(stack)] = kept
    return kept[1]


def bound_resolver() -> Any:
    """The resolver bound with the stack in the calling context, if any."""
    return _resolver.get()


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
