"""Manifests as YAML documents: keys in the order written, multi-line strings (the config) as blocks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from meshbatch.k8s.options import Manifest


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(manifest: Manifest) -> str:
    text: str = yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
    return text


def dump_all(manifests: Iterable[Manifest]) -> str:
    return "".join(f"---\n{dump(m)}" for m in manifests)


def load_all(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


__all__ = ["dump", "dump_all", "load_all"]
