"""What the config listens on, as container ports, and what cannot work in a pod (each with its config path)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from meshbatch.config import Config, Problem

_INVALID = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True, slots=True)
class Port:
    name: str  # an IANA service name: at most 15 characters, [a-z0-9-], a letter in it
    number: int
    tls: bool = False


def port_name(raw: str, taken: set[str]) -> str:
    name = _INVALID.sub("-", raw.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)[:15].strip("-") or "http"
    if not any(c.isalpha() for c in name):
        name = f"p-{name}"[:15]
    base, n = name, 2
    while name in taken:
        suffix = f"-{n}"
        name = base[:15 - len(suffix)].rstrip("-") + suffix
        n += 1
    taken.add(name)
    return name


def _split(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _problems_of(path: str, listen: str, who: str) -> list[Problem]:
    host, number = _split(listen)
    if number == 0:
        return [Problem(path, f"port 0 picks a free port at start: give {who} a fixed port for the pod")]
    if _loopback(host):
        return [Problem(path, f"{listen} is loopback: {who} cannot be reached from outside the pod; "
                              f"listen on 0.0.0.0:{number} (or [::]:{number})")]
    return []


def container_ports(config: Config) -> tuple[list[Port], Port | None, list[Problem]]:
    """(listener ports, the admin port, problems): listeners and admin must be reachable from the kubelet."""
    problems: list[Problem] = []
    taken: set[str] = {"admin"}
    ports: list[Port] = []
    seen: set[int] = set()
    for i, listener in enumerate(config.listeners):
        problems += _problems_of(f"listeners[{i}].listen", listener.listen, f"listener {listener.name!r}")
        number = _split(listener.listen)[1]
        if number and number not in seen:
            seen.add(number)
            ports.append(Port(port_name(listener.name, taken), number, listener.tls is not None))
    if config.admin is None:
        problems.append(Problem("admin", "the pod's probes need the admin listener (GET /ready): set admin.listen, "
                                         "e.g. 0.0.0.0:9901"))
        return ports, None, problems
    problems += _problems_of("admin.listen", config.admin.listen, "the admin listener (the kubelet's probes)")
    admin = _split(config.admin.listen)[1]
    if admin in seen:
        problems.append(Problem("admin.listen", f"port {admin} is also a listener's"))
    return ports, Port("admin", admin), problems


__all__ = ["Port", "container_ports", "port_name"]
