"""Listening sockets shared by the edges and ``launch``."""

from __future__ import annotations

import socket


def bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A listening TCP socket on ``host:port``; ``reuse_port`` lets several workers share it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
