"""Offline validation of Kubernetes and Istio manifests, strictly (unknown fields are errors).

Built-in kinds go through `kubernetes-validate` in strict mode against the schemas of each Kubernetes version in
`VERSIONS` (the oldest still common and the newest the package knows); Istio kinds through the vendored CRD
schemas of `istio_schemas` with jsonschema; the Gateway API's HTTPRoute and the Prometheus operator's
ServiceMonitor and PodMonitor through the strict schemas of `crd_schemas`. Any other kind is an error: nothing
passes unchecked.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from testbed import crd_schemas, istio_schemas

VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
ISTIO_GROUPS = ("networking.istio.io/", "security.istio.io/")


@cache
def _istio_validator(key: str) -> jsonschema.protocols.Validator:
    schema = istio_schemas.load()[key]
    validator_class = jsonschema.validators.validator_for(schema)
    return validator_class(schema)  # type: ignore[no-any-return]


@cache
def _crd_validator(key: str) -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(crd_schemas.SCHEMAS[key])


def problems_of(doc: dict[str, Any], where: str = "") -> list[str]:
    kind, api_version = doc.get("kind", "?"), doc.get("apiVersion", "?")
    name = f"{where}{kind}/{(doc.get('metadata') or {}).get('name', '?')}"
    if str(api_version).startswith(ISTIO_GROUPS):
        key = f"{api_version}/{kind}"
        if key not in istio_schemas.load():
            return [f"{name}: no Istio schema for {key}"]
        return [f"{name}: {'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
                for e in _istio_validator(key).iter_errors(doc)]
    if str(api_version).startswith(crd_schemas.GROUPS):
        key = f"{api_version}/{kind}"
        if key not in crd_schemas.SCHEMAS:
            return [f"{name}: no schema for {key}"]
        return [f"{name}: {'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
                for e in _crd_validator(key).iter_errors(doc)]
    out = []
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            out.append(f"{name} (Kubernetes {version}): {'.'.join(str(p) for p in exc.path)}: {exc.message}")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as exc:
            out.append(f"{name} (Kubernetes {version}): {exc}")
    return out


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def validate_all(docs: Iterable[dict[str, Any]], where: str = "") -> list[str]:
    out: list[str] = []
    for doc in docs:
        out += problems_of(doc, where)
    return out


def validate_file(path: Path) -> list[str]:
    return validate_all(documents(path.read_text(encoding="utf-8")), f"{path.name}: ")


def config_maps_with_configs(docs: Iterable[dict[str, Any]]) -> dict[str, str]:
    """`NAME/KEY` -> text of every ConfigMap entry that is a meshbatch config (it has `listeners:`)."""
    found = {}
    for doc in docs:
        if doc.get("kind") == "ConfigMap":
            for key, text in (doc.get("data") or {}).items():
                if isinstance(text, str) and "listeners:" in text:
                    found[f"{doc['metadata']['name']}/{key}"] = text
    return found


__all__ = ["VERSIONS", "config_maps_with_configs", "documents", "problems_of", "validate_all", "validate_file"]
