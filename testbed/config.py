"""Config writers: small dict builders for the YAML `meshbatch run` reads, all on 127.0.0.1 port 0."""

from __future__ import annotations

from typing import Any


def cluster(name: str, *endpoints: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "endpoints": list(endpoints), **extra}


def route(name: str, cluster: str, match: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    if match:
        out["match"] = match
    out["cluster"] = cluster
    out.update(extra)
    return out


def listener(name: str, routes: list[dict[str, Any]], limits: dict[str, Any] | None = None,
             **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "listen": "127.0.0.1:0", "routes": routes}
    if limits:
        out["limits"] = limits
    out.update(extra)
    return out


def config(listeners: list[dict[str, Any]], clusters: list[dict[str, Any]], admin: bool = True,
           **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if admin:
        out["admin"] = {"listen": "127.0.0.1:0"}
    out["listeners"] = listeners
    out["clusters"] = clusters
    out.update(extra)
    return out


def simple(upstream: str, *, timeout_ms: int = 5000, limits: dict[str, Any] | None = None,
           **extra: Any) -> dict[str, Any]:
    """One listener `main` whose one route sends everything to cluster `echo` at `upstream`."""
    return config(
        [listener("main", [route("all", "echo", timeout_ms=timeout_ms)], limits)],
        [cluster("echo", upstream)],
        **extra,
    )


__all__ = ["cluster", "config", "listener", "route", "simple"]
