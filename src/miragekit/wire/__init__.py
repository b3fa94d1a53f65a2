"""Wire formats, sans-I/O: checked views over buffers and value types with parse/emit.

No module here imports asyncio or reads a clock.
"""
