"""A pod's view of rendered manifests, laid out on this machine: the ConfigMap's keys as files where the pod
mounts them, the Secret's files likewise, its values as the environment, and the config with the pod's
absolute folders moved under a root folder, so that `meshbatch check` or `meshbatch run` can load exactly what
the pod would."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from meshbatch.k8s.pack import CONFIG_DIR, DATA_DIR, SECRET_DIR


def lay_out(docs: list[dict[str, Any]], root: Path, config_key: str = "meshbatch.yaml",
            listen: dict[str, str] | None = None) -> tuple[Path, dict[str, str]]:
    """(the config file as the pod reads it, the environment the Secret gives) under `root`. `listen` replaces
    listen addresses (e.g. `0.0.0.0:8080` -> `127.0.0.1:0`) so that the config can run here."""
    moved = {folder: root / folder.lstrip("/") for folder in (CONFIG_DIR, SECRET_DIR, DATA_DIR)}
    for where in moved.values():
        where.mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {}
    text = ""
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            for key, value in (doc.get("data") or {}).items():
                (moved[CONFIG_DIR] / key).write_text(value, encoding="utf-8")
            for key, value in (doc.get("binaryData") or {}).items():
                (moved[CONFIG_DIR] / key).write_bytes(base64.b64decode(value))
            text = doc["data"][config_key]
        if doc["kind"] == "Secret":
            for key, value in (doc.get("data") or {}).items():
                raw = base64.b64decode(value)
                (moved[SECRET_DIR] / key).write_bytes(raw)
                env[key] = raw.decode("utf-8", "replace")
    for folder, where in moved.items():
        text = text.replace(f"{folder}/", f"{where}/")
    for old, new in (listen or {}).items():
        text = text.replace(old, new)
    config = moved[CONFIG_DIR] / config_key
    config.write_text(text, encoding="utf-8")
    return config, env


__all__ = ["lay_out"]
