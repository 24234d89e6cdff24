"""Checks of meaning for the security keys: identities named and readable, no permissive client, patterns that
can match, unique policy names."""

from __future__ import annotations

import os
from collections.abc import Iterator

from meshbatch.config.load import Problem, register_check
from meshbatch.config.model import Config
from meshbatch.config.model.security import Identity, Policy


def _readable(path: str, where: str) -> Iterator[Problem]:
    if not os.access(path, os.R_OK):
        yield Problem(where, f"cannot read {path!r}" + ("" if os.path.exists(path) else " (no such file)"))


def _identity(identity: Identity | None, config: Config, where: str) -> Iterator[Problem]:
    spec = identity or config.identity
    if spec is None:
        yield Problem(f"{where}.identity", "is required: set it here or the top-level `identity` (cert, key, ca)")
        return
    base = f"{where}.identity" if identity is not None else "identity"
    for name in ("cert", "key", "ca"):
        yield from _readable(getattr(spec, name), f"{base}.{name}")


def _policies(policies: list[Policy], where: str) -> Iterator[Problem]:
    seen: set[str] = set()
    for k, policy in enumerate(policies):
        path = f"{where}.policies[{k}]"
        if policy.name in seen:
            yield Problem(f"{path}.name", f"duplicate policy name {policy.name!r}")
        seen.add(policy.name)
        for r, rule in enumerate(policy.rules):
            for t, to in enumerate(rule.to):
                for field in ("paths", "not_paths"):
                    for pattern in getattr(to.operation, field):
                        if not pattern.startswith(("/", "*")):
                            yield Problem(f"{path}.rules[{r}].to[{t}].operation.{field}",
                                          f"{pattern!r}: a path pattern starts with '/' or '*'")


def security_problems(config: Config) -> Iterator[Problem]:
    seen_files: set[str] = set()
    for i, listener in enumerate(config.listeners):
        where = f"listeners[{i}]"
        tls = listener.tls
        if tls is not None and tls.mode != "disable":
            for problem in _identity(tls.identity, config, f"{where}.tls"):
                if problem.path not in seen_files:
                    seen_files.add(problem.path)
                    yield problem
        yield from _policies(listener.policies, where)
        for j, route in enumerate(listener.routes):
            yield from _policies(route.policies, f"{where}.routes[{j}]")
        if listener.jwt is not None:
            yield from _readable(listener.jwt.jwks, f"{where}.jwt.jwks")
    for i, cluster in enumerate(config.clusters):
        ctls = cluster.tls
        if ctls is None or ctls.mode == "disable":
            continue
        where = f"clusters[{i}].tls"
        if ctls.mode == "permissive":
            yield Problem(f"{where}.mode", "permissive applies to listeners: a client that falls back to plaintext "
                          "can be downgraded by anyone on the path; use strict or disable")
        for problem in _identity(ctls.identity, config, where):
            if problem.path not in seen_files:
                seen_files.add(problem.path)
                yield problem
        for k, pattern in enumerate(ctls.server_ids):
            if not pattern.startswith(("spiffe://", "*")):
                yield Problem(f"{where}.server_ids[{k}]", f"{pattern!r}: a server ID is spiffe://TRUST_DOMAIN/PATH "
                              "('*' wildcards allowed)")


@register_check
def security(config: Config) -> Iterator[Problem]:
    yield from security_problems(config)


__all__ = ["security", "security_problems"]
