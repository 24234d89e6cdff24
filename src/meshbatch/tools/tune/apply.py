"""`meshbatch tune --apply CONFIG`: the recommendation goes into the route's config as a canary, not as a change.

The route's `batch.adaptive` becomes `{canary: SHARE, candidate: {...}}` with the settings the recommendation
changes; the proxy then tries them on that share of the route's batches and promotes or rolls them back by itself
(meshbatch.batching.canary). The edited config is validated as `meshbatch check` would before anything is
written; the file is replaced atomically and its previous text kept beside it (`CONFIG.bak`). The YAML is written
anew: comments in the file are not kept (the `.bak` has them).

A running proxy picks the file up on its reload: `--reload-pid PID` sends it SIGHUP (the reload every config
change goes through; the operating system checks that the sender may signal the proxy). Nothing is written
through the admin API, which stays read-only.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import yaml

from meshbatch.config import checks as _checks  # noqa: F401  (registers the config's own checks of meaning)
from meshbatch.config.load import ConfigError, parse
from meshbatch.config.model import Batch
from meshbatch.config.source import SourceError, parse_yaml, read_text

KEYS = ("max_items", "min_wait_ms", "max_wait_ms", "max_in_flight")
DEFAULTS: dict[str, Any] = {key: Batch.model_fields[key].default for key in KEYS}


class ApplyError(Exception):
    """The recommendation cannot be applied: why, for the operator."""


def _route(document: Any, name: str) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise ApplyError("the config is not a YAML mapping")
    for listener in document.get("listeners") or []:
        routes = listener.get("routes") if isinstance(listener, dict) else None
        for route in routes if isinstance(routes, list) else []:
            if isinstance(route, dict) and route.get("name") == name:
                if not isinstance(route.get("batch"), dict):
                    raise ApplyError(f"route {name!r} has no batch: block: only a batching route is tuned")
                return route
    raise ApplyError(f"no route named {name!r} in the config")


def candidate(batch: dict[str, Any], setting: dict[str, float]) -> dict[str, Any]:
    """The recommended values that differ from the route's own (its config, or the defaults)."""
    out: dict[str, Any] = {}
    for key in KEYS:
        if key not in setting:
            continue
        own = batch.get(key, DEFAULTS[key])
        if key == "max_in_flight" and not isinstance(own, int):
            continue  # `auto` moves by itself: the canary leaves the slots alone
        value = int(setting[key]) if key in ("max_items", "max_in_flight") else float(setting[key])
        if value != own:
            out[key] = value
    return out


def apply(path: str | Path, route_name: str, setting: dict[str, float], share: float) -> dict[str, Any]:
    """Write the canary of `setting` into the config file at `path`; returns the candidate written. Raises
    ApplyError (nothing written) when the route cannot take it or the edited config would not load."""
    if not 0 < share <= 0.5:
        raise ApplyError(f"--canary {share:g}: a share of the batches, 0 < share <= 0.5")
    path = Path(path)
    try:
        text = read_text(path)
        document = parse_yaml(text)
    except SourceError as exc:
        raise ApplyError(f"{path}: {exc.where + ': ' if exc.where else ''}{exc.message}") from None
    route = _route(document, route_name)
    batch = route["batch"]
    adaptive = batch.get("adaptive")
    if isinstance(adaptive, dict) and adaptive.get("target_p99_ms") is not None:
        raise ApplyError(f"route {route_name!r} has an adaptive hold (adaptive.target_p99_ms): it moves its "
                         "setting by itself; take target_p99_ms out to try a fixed one")
    wanted = candidate(batch, setting)
    if not wanted:
        raise ApplyError("the recommendation is the route's own setting: nothing to try")
    # a canary that found its own candidate (`sweep`) gets this one instead
    replaced = ("canary", "candidate", "sweep")
    kept = {k: v for k, v in adaptive.items() if k not in replaced} if isinstance(adaptive, dict) else {}
    batch["adaptive"] = {**kept, "canary": share, "candidate": wanted}
    edited = yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
    try:
        parse(edited, str(path), path.parent.resolve())
    except ConfigError as exc:
        raise ApplyError("the config with the canary would not load:\n" +
                         "\n".join(f"  {problem}" for problem in exc.problems)) from None
    backup = path.with_name(path.name + ".bak")
    backup.write_text(text)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(edited)
    os.replace(temporary, path)
    return wanted


def reload(pid: int) -> None:
    """Ask the proxy with process id `pid` to reload its config (SIGHUP)."""
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise ApplyError(f"no process {pid}: the config is written, reload the proxy yourself") from None
    except PermissionError:
        raise ApplyError(f"not allowed to signal process {pid}: the config is written, reload the proxy "
                         "yourself") from None


__all__ = ["ApplyError", "apply", "candidate", "reload"]
