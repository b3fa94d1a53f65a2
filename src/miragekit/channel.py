"""CHANNEL: buffered reading (lines, delimiters) and writing over any FLOW.

See :mod:`miragekit._channel` for the design: zero-copy lines, bounded memory
(:class:`LineTooLong`, :class:`OutputFull`) and flow failures as :class:`ChannelError`.
"""

from ._channel import DEFAULT_FLUSH_THRESHOLD as DEFAULT_FLUSH_THRESHOLD
from ._channel import DEFAULT_MAX_BUFFER as DEFAULT_MAX_BUFFER
from ._channel import DEFAULT_MAX_LINE as DEFAULT_MAX_LINE
from ._channel import Channel as Channel
from ._channel import ChannelError as ChannelError
from ._channel import LineTooLong as LineTooLong
from ._channel import OutputFull as OutputFull

__all__ = [
    "DEFAULT_FLUSH_THRESHOLD",
    "DEFAULT_MAX_BUFFER",
    "DEFAULT_MAX_LINE",
    "Channel",
    "ChannelError",
    "LineTooLong",
    "OutputFull",
]
