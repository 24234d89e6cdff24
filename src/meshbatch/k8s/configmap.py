"""The ConfigMap that holds the config, as written (comments kept), and its digest for the pod template."""

from __future__ import annotations

import hashlib

from meshbatch.k8s.options import Manifest, RenderOptions


def config_map_name(options: RenderOptions) -> str:
    return f"{options.name}-config"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_map(options: RenderOptions, text: str) -> Manifest:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": options.metadata(config_map_name(options)),
            "data": {options.config_file: text}}


__all__ = ["config_map", "config_map_name", "digest"]
