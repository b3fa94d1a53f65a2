"""Wire formats, sans-I/O: checked views over buffers and value types with parse/emit.

No module here imports asyncio or reads a clock.
"""

from .tcp import TCPPacket as TCPPacket
from .tcp import TCPParseError as TCPParseError
from .tcp import TCPRepr as TCPRepr
