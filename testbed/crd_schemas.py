"""Strict JSON schemas for the custom resources `meshbatch k8s render` writes besides Istio's: the Gateway API
HTTPRoute (gateway.networking.k8s.io/v1, standard channel) and the Prometheus operator's ServiceMonitor and
PodMonitor (monitoring.coreos.com/v1).

`kubernetes-validate` knows only built-in kinds and no package on the registries this project uses ships these
CRDs' schemas, so they are written here by hand from the published API references (Gateway API v1.x
`HTTPRoute`, `ParentReference`, `HTTPBackendRef`, `HTTPRouteTimeouts`; prometheus-operator v0.7x+
`ServiceMonitorSpec`, `Endpoint`, `PodMonitorSpec`, `PodMetricsEndpoint`), with the patterns and bounds the
CRDs declare. They cover the fields such objects commonly carry, and every object is closed
(`additionalProperties: false`), so a misspelt or misplaced field fails here as server-side field validation
would fail it in a cluster; a field these schemas leave out is an error too, which errs on the safe side.
"""

from __future__ import annotations

from typing import Any

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_GROUP = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_KIND = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"
_GATEWAY_DURATION = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"
_PROM_DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"


def _closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        out["required"] = list(required)
    return out


_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = _closed({"name": {"type": "string", "minLength": 1, "maxLength": 253, "pattern": _DNS_SUBDOMAIN},
                     "namespace": {"type": "string", "pattern": _DNS_LABEL, "maxLength": 63},
                     "labels": _STRING_MAP, "annotations": _STRING_MAP}, ("name",))
_NAME = {"type": "string", "minLength": 1, "maxLength": 253}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_NAMESPACE = {"type": "string", "minLength": 1, "maxLength": 63, "pattern": _DNS_LABEL}

_PARENT_REF = _closed({"group": {"type": "string", "maxLength": 253, "pattern": _GROUP},
                       "kind": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": _KIND},
                       "namespace": _NAMESPACE, "name": _NAME,
                       "sectionName": {"type": "string", "minLength": 1, "maxLength": 253,
                                       "pattern": _DNS_SUBDOMAIN},
                       "port": _PORT}, ("name",))
_BACKEND_REF = _closed({"group": {"type": "string", "maxLength": 253, "pattern": _GROUP},
                        "kind": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": _KIND},
                        "name": _NAME, "namespace": _NAMESPACE, "port": _PORT,
                        "weight": {"type": "integer", "minimum": 0, "maximum": 1_000_000}}, ("name",))
_PATH_MATCH = _closed({"type": {"enum": ["Exact", "PathPrefix", "RegularExpression"]},
                       "value": {"type": "string", "maxLength": 1024}})
_HEADER_MATCH = _closed({"type": {"enum": ["Exact", "RegularExpression"]},
                         "name": {"type": "string", "minLength": 1, "maxLength": 256},
                         "value": {"type": "string", "minLength": 1, "maxLength": 4096}}, ("name", "value"))
_MATCH = _closed({"path": _PATH_MATCH, "headers": {"type": "array", "items": _HEADER_MATCH, "maxItems": 16},
                  "queryParams": {"type": "array", "items": _HEADER_MATCH, "maxItems": 16},
                  "method": {"enum": ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
                                      "PATCH"]}})
_RULE = _closed({"name": {"type": "string", "minLength": 1, "maxLength": 253, "pattern": _DNS_SUBDOMAIN},
                 "matches": {"type": "array", "items": _MATCH, "maxItems": 64},
                 "backendRefs": {"type": "array", "items": _BACKEND_REF, "maxItems": 16},
                 "timeouts": _closed({"request": {"type": "string", "pattern": _GATEWAY_DURATION},
                                      "backendRequest": {"type": "string", "pattern": _GATEWAY_DURATION}})})
HTTP_ROUTE = _closed({
    "apiVersion": {"const": "gateway.networking.k8s.io/v1"}, "kind": {"const": "HTTPRoute"}, "metadata": _METADATA,
    "spec": _closed({"parentRefs": {"type": "array", "items": _PARENT_REF, "minItems": 1, "maxItems": 32},
                     "hostnames": {"type": "array", "items": {"type": "string", "maxLength": 253}, "maxItems": 16},
                     "rules": {"type": "array", "items": _RULE, "minItems": 1, "maxItems": 16}}),
}, ("apiVersion", "kind", "metadata", "spec"))

_SELECTOR = _closed({"matchLabels": _STRING_MAP, "matchExpressions": {"type": "array", "items": _closed({
    "key": {"type": "string"}, "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
    "values": {"type": "array", "items": {"type": "string"}}}, ("key", "operator"))}})
_NAMESPACE_SELECTOR = _closed({"any": {"type": "boolean"},
                               "matchNames": {"type": "array", "items": {"type": "string"}}})
_SCRAPE = {"port": {"type": "string"}, "path": {"type": "string"}, "scheme": {"enum": ["http", "https"]},
           "interval": {"type": "string", "pattern": _PROM_DURATION},
           "scrapeTimeout": {"type": "string", "pattern": _PROM_DURATION},
           "honorLabels": {"type": "boolean"}, "honorTimestamps": {"type": "boolean"},
           "params": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
           "targetPort": {"anyOf": [{"type": "integer"}, {"type": "string"}]}}
SERVICE_MONITOR = _closed({
    "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"}, "metadata": _METADATA,
    "spec": _closed({"selector": _SELECTOR, "namespaceSelector": _NAMESPACE_SELECTOR,
                     "endpoints": {"type": "array", "items": _closed(_SCRAPE)},
                     "jobLabel": {"type": "string"}, "targetLabels": {"type": "array", "items": {"type": "string"}},
                     "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                     "sampleLimit": {"type": "integer", "minimum": 0}}, ("selector",)),
}, ("apiVersion", "kind", "metadata", "spec"))
POD_MONITOR = _closed({
    "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PodMonitor"}, "metadata": _METADATA,
    "spec": _closed({"selector": _SELECTOR, "namespaceSelector": _NAMESPACE_SELECTOR,
                     "podMetricsEndpoints": {"type": "array", "items": _closed(
                         {**_SCRAPE, "portNumber": {"type": "integer", "minimum": 1, "maximum": 65535}})},
                     "jobLabel": {"type": "string"}, "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                     "sampleLimit": {"type": "integer", "minimum": 0}}, ("selector",)),
}, ("apiVersion", "kind", "metadata", "spec"))

SCHEMAS: dict[str, dict[str, Any]] = {
    "gateway.networking.k8s.io/v1/HTTPRoute": HTTP_ROUTE,
    "monitoring.coreos.com/v1/ServiceMonitor": SERVICE_MONITOR,
    "monitoring.coreos.com/v1/PodMonitor": POD_MONITOR,
}
GROUPS = ("gateway.networking.k8s.io/", "monitoring.coreos.com/")

__all__ = ["GROUPS", "HTTP_ROUTE", "POD_MONITOR", "SCHEMAS", "SERVICE_MONITOR"]
