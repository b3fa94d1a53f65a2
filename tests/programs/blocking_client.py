"""A program that uses a blocking socket: out of scope for ``miragekit exec``."""

import socket

socket.create_connection(("10.0.0.1", 80), timeout=2)
