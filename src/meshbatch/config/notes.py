"""Notes on a valid config: things it relies on without saying so, worth a line from `meshbatch check`.

A note is not an error: the config loads and runs as written. `load` logs each note (INFO, logger
`meshbatch.config`), so `meshbatch check` and `meshbatch run` show them.
"""

from __future__ import annotations

from meshbatch.config.model import BatchRoute, Config


def notes(config: Config) -> list[str]:
    """What the config relies on by default that an operator may not know: a batch route without
    `batch.upstream_path` sends its batches to `/batch`."""
    found: list[str] = []
    for i, listener in enumerate(config.listeners):
        for j, route in enumerate(listener.routes):
            if isinstance(route, BatchRoute) and "upstream_path" not in route.batch.model_fields_set:
                batch = route.batch
                found.append(f"listeners[{i}].routes[{j}] ({route.name}): batch.upstream_path is not set; its "
                             f"batches are sent as {batch.upstream_method} {batch.upstream_path} (the default)")
    return found


__all__ = ["notes"]
