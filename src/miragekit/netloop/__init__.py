"""Unmodified asyncio programs on miragekit stacks: an event loop whose network calls go
through the STACKV4 bound to the calling context (``docs/asyncio.md``)."""

from ._bind import bind as bind
from ._bind import bound_resolver as bound_resolver
from ._bind import bound_stack as bound_stack
from ._bind import stack_for as stack_for
from ._errors import flow_error as flow_error
from ._loop import StackEventLoop as StackEventLoop
from ._loop import StackLoopMixin as StackLoopMixin
from ._loop import run as run
from ._names import HOSTS as HOSTS
from ._server import StackServer as StackServer
from ._transport import StackTransport as StackTransport

__all__ = [
    "HOSTS",
    "StackEventLoop",
    "StackLoopMixin",
    "StackServer",
    "StackTransport",
    "bind",
    "bound_resolver",
    "bound_stack",
    "flow_error",
    "run",
    "stack_for",
]
