"""The ports the workers share, held by the supervisor.

For each listener the supervisor binds its address with SO_REUSEPORT and never listens on it: the port is then
held for the supervisor's whole life (a worker's restart, or every worker's, cannot lose it to another program),
a listener at port 0 gets one port that every worker binds, and the kernel hands connections only to the
workers' listening sockets (a bound socket that does not listen takes none)."""

from __future__ import annotations

import socket

from meshbatch.config import plain
from meshbatch.upstream.endpoint import split_address


def _hold(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host or "0.0.0.0", port))
    except OSError:
        sock.close()
        raise
    return sock


def hold_ports(config: plain.Config) -> tuple[dict[str, str], list[socket.socket]]:
    """Each listener's address with its port resolved ("NAME LISTEN" -> "HOST:PORT"), and the sockets holding
    them (closed by the caller when it exits). OSError when an address cannot be bound (in use, not local)."""
    resolved: dict[str, str] = {}
    held: list[socket.socket] = []
    try:
        for listener in config.listeners:
            host, port = split_address(listener.listen)
            sock = _hold(host, port)
            held.append(sock)
            bound = sock.getsockname()[1]
            resolved[f"{listener.name} {listener.listen}"] = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
    except OSError:
        for sock in held:
            sock.close()
        raise
    return resolved, held


__all__ = ["hold_ports"]
