"""What `meshbatch k8s render` refuses, each with the option or config path and what to do instead: options
that are not valid Kubernetes values, and configs that would be valid manifests but could not work in a pod.

- a SQLite log or sink (state kept in the pod) on an emptyDir (`--no-volume-claims`) with more than one
  replica: every replica would write its own log on a volume that dies with the pod, so acknowledged events
  would be lost on the first reschedule, and the replicas' data would never meet;
- such state with an autoscaler: scaling a StatefulSet down leaves the removed replica's undelivered events on
  its claim until it comes back, which an autoscaler may never do (a JetStream log is shared: scale that);
- `${NAME}` in the config with no Secret to give the pod that variable (`--env-from`);
- a JetStream log or PostgreSQL sink on a loopback address: in a pod that is the pod itself.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from meshbatch.config import Config, Problem
from meshbatch.config.model import IngestRoute
from meshbatch.k8s.options import LABEL_VALUE, RenderOptions
from meshbatch.k8s.pack import Packed

_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")
_DURATION = re.compile(r"([0-9]+(ms|s|m|h|d|w|y))+")  # the Prometheus operator's duration
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def option_problems(options: RenderOptions) -> list[Problem]:
    from meshbatch.discovery.kubernetes import DNS_LABEL

    problems = []
    for flag, value in (("--name", options.name), ("--namespace", options.namespace)):
        if value is not None and (len(value) > 63 or not DNS_LABEL.match(value)):
            problems.append(Problem(flag, f"{value!r} is not a DNS label (lower-case letters, digits and '-')"))
    if options.replicas < 0:
        problems.append(Problem("--replicas", "must be >= 0"))
    if options.hpa_max is not None and options.hpa_max < max(options.replicas, 1):
        problems.append(Problem("--hpa-max", f"must be >= --replicas ({options.replicas}) and >= 1: the "
                                             "autoscaler runs from --replicas to --hpa-max pods"))
    if not 1 <= options.hpa_cpu <= 1000:
        problems.append(Problem("--hpa-cpu", "must be a percentage of the CPU request from 1 to 1000"))
    for flag, label in (("--part-of", options.part_of), ("--managed-by", options.managed_by)):
        if label is not None and (not label or len(label) > 63 or not LABEL_VALUE.fullmatch(label)):
            problems.append(Problem(flag, f"{label!r} is not a label value (up to 63 of [A-Za-z0-9-_.], "
                                          "alphanumeric at both ends)"))
    if not _QUANTITY.fullmatch(options.storage_size):
        problems.append(Problem("--storage-size", f"{options.storage_size!r} is not a quantity (e.g. 1Gi, 500Mi)"))
    if options.storage_class is not None and not _SUBDOMAIN.fullmatch(options.storage_class):
        problems.append(Problem("--storage-class", f"{options.storage_class!r} is not a storage class name"))
    if not _DURATION.fullmatch(options.monitor_interval):
        problems.append(Problem("--monitor-interval", f"{options.monitor_interval!r} is not a duration (e.g. 15s)"))
    for name in options.env_from:
        if len(name) > 253 or not _SUBDOMAIN.fullmatch(name):
            problems.append(Problem("--env-from", f"{name!r} is not a Secret name"))
    for path in options.pod_paths:
        if not path.startswith("/"):
            problems.append(Problem("--pod-path", f"{path!r}: a path in the pod is absolute"))
    return problems


def _loopback(url: str) -> bool:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _service_problems(config: Config) -> list[Problem]:
    from meshbatch.ingest.sinks.base import sink_type

    out = []
    for i, listener in enumerate(config.listeners):
        for j, route in enumerate(listener.routes):
            if not isinstance(route, IngestRoute):
                continue
            here = f"listeners[{i}].routes[{j}].ingest"
            log, sink = route.ingest.log, route.ingest.sink
            if log.backend == "jetstream" and "${" not in log.url and _loopback(log.url):
                out.append(Problem(f"{here}.log.url", "is loopback: in a pod that is the pod itself; name the NATS "
                                                      "Service (e.g. nats://nats:4222)"))
            if sink_type(route) == "postgres" and sink.url and "${" not in sink.url and _loopback(sink.url):
                out.append(Problem(f"{here}.sink.url", "is loopback: in a pod that is the pod itself; name the "
                                                       "database's Service"))
    return out


def pod_problems(config: Config, options: RenderOptions, packed: Packed) -> list[Problem]:
    problems = _service_problems(config)
    for path, what in packed.state:
        if not options.volume_claims and options.replicas > 1:
            problems.append(Problem(path, f"keeps state in the pod ({what}); on an emptyDir "
                                          f"(--no-volume-claims) each of {options.replicas} replicas would keep its "
                                          "own, lost with the pod: keep the volume claims (a StatefulSet with a "
                                          "PVC per replica), use --replicas 1, or a jetstream log"))
        if options.hpa_max is not None:
            problems.append(Problem(path, f"keeps state in the pod ({what}): an autoscaler scaling "
                                          "down would strand the undelivered events of the replica it removes; "
                                          "use a jetstream log (shared by every replica) to autoscale"))
    if options.env_from:
        return problems
    for name, path in packed.references.items():
        problems.append(Problem(path, f"${{{name}}} is read from the pod's environment: give the pod a Secret "
                                      f"with the key {name} (--env-from SECRET)"))
    return problems


__all__ = ["option_problems", "pod_problems"]
