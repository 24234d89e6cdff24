"""Istio's CRD schemas (the four kinds deploy/istio uses), strict, for offline validation with jsonschema.

`istio_schemas.json` beside this file is vendored: it was made by `python -m testbed.istio_schemas` (from
tests/) with the package `cloudcoil-models-istio==1.24.2.1` installed, whose pydantic models are generated from
Istio 1.24's CRD OpenAPI schemas. That package is not a test dependency because it brings a pytest plugin into
every run; the schemas change only with an Istio release, when this is run again. Every object that lists its
properties is closed (`additionalProperties: false`), so a misspelt field fails as `kubectl apply` would with
server-side field validation; titles, descriptions and defaults are dropped to keep the file small.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).with_name("istio_schemas.json")
KINDS = {
    ("networking.istio.io/v1", "VirtualService"): ("cloudcoil.models.istio.networking.v1", "VirtualService"),
    ("networking.istio.io/v1", "DestinationRule"): ("cloudcoil.models.istio.networking.v1", "DestinationRule"),
    ("security.istio.io/v1", "PeerAuthentication"): ("cloudcoil.models.istio.security.v1", "PeerAuthentication"),
    ("security.istio.io/v1", "AuthorizationPolicy"): ("cloudcoil.models.istio.security.v1", "AuthorizationPolicy"),
}


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items() if k not in ("title", "description", "default")}
        if out.get("type") == "object" and out.get("properties"):
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(item) for item in node]
    return node


def generate() -> dict[str, Any]:
    import importlib

    schemas: dict[str, Any] = {}
    for (api_version, kind), (module, name) in KINDS.items():
        model = getattr(importlib.import_module(module), name)
        schema = _strict(model.model_json_schema(by_alias=True, mode="validation"))
        schema["properties"]["apiVersion"] = {"const": api_version}
        schema["properties"]["kind"] = {"const": kind}
        schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
        schemas[f"{api_version}/{kind}"] = schema
    return {"source": "cloudcoil-models-istio==1.24.2.1 (Istio 1.24 CRDs)", "schemas": schemas}


def load() -> dict[str, Any]:
    schemas: dict[str, Any] = json.loads(HERE.read_text(encoding="utf-8"))["schemas"]
    return schemas


if __name__ == "__main__":
    HERE.write_text(json.dumps(generate(), sort_keys=True, separators=(",", ":")) + "\n", encoding="utf-8")
