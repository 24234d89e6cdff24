"""Every manifest for one meshbatch config, in the order `kubectl apply` wants them."""

from __future__ import annotations

from meshbatch.config import ConfigError, Problem, parse
from meshbatch.k8s.configmap import config_map
from meshbatch.k8s.options import Manifest, RenderOptions
from meshbatch.k8s.output import dump_all
from meshbatch.k8s.ports import container_ports
from meshbatch.k8s.rbac import rbac, watched_namespaces
from meshbatch.k8s.services import service
from meshbatch.k8s.workload import deployment, disruption_budget
from meshbatch.runtime import checks as _checks  # noqa: F401  (every check of meaning, registered)


class RenderError(ConfigError):
    """The config is invalid, or cannot run in a pod as it is (each problem with its config path)."""


def _check_options(options: RenderOptions) -> list[Problem]:
    from meshbatch.discovery.kubernetes import DNS_LABEL

    problems = []
    for flag, value in (("--name", options.name), ("--namespace", options.namespace)):
        if value is not None and (len(value) > 63 or not DNS_LABEL.match(value)):
            problems.append(Problem(flag, f"{value!r} is not a DNS label (lower-case letters, digits and '-')"))
    if options.replicas < 0:
        problems.append(Problem("--replicas", "must be >= 0"))
    return problems


def render(text: str, options: RenderOptions, source: str = "<config>") -> list[Manifest]:
    """Raises RenderError (every problem at once) when the config is invalid or cannot run in a pod."""
    try:
        config = parse(text, source)
    except ConfigError as exc:
        raise RenderError(exc.problems, source) from None
    ports, admin, problems = container_ports(config)
    namespaces, namespace_problems = watched_namespaces(config, options)
    problems = _check_options(options) + problems + namespace_problems
    if problems or admin is None:
        raise RenderError(problems, source)
    api_access = bool(namespaces)
    out: list[Manifest] = [config_map(options, text), *rbac(config, options),
                           deployment(config, options, text, ports, admin, api_access), service(options, ports)]
    if options.replicas > 1:
        out.append(disruption_budget(options))
    return out


def render_text(text: str, options: RenderOptions, source: str = "<config>") -> str:
    namespace = f" --namespace {options.namespace}" if options.namespace else ""
    header = (f"# meshbatch k8s render --config {source} --name {options.name}{namespace} "
              f"--replicas {options.replicas} --image {options.image}\n")
    return header + dump_all(render(text, options, source))


__all__ = ["RenderError", "render", "render_text"]
