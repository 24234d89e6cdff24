"""Every manifest for one meshbatch config, in the order `kubectl apply` wants them, or every reason it cannot
work in a cluster (meshbatch.k8s.refusals)."""

from __future__ import annotations

from pathlib import Path

from meshbatch.config import ConfigError, parse
from meshbatch.k8s.configmap import config_map, secret
from meshbatch.k8s.mesh import mesh_routes
from meshbatch.k8s.monitoring import monitor
from meshbatch.k8s.options import Manifest, RenderOptions
from meshbatch.k8s.output import dump_all
from meshbatch.k8s.pack import pack
from meshbatch.k8s.ports import container_ports
from meshbatch.k8s.rbac import rbac, watched_namespaces
from meshbatch.k8s.refusals import option_problems, pod_problems
from meshbatch.k8s.scaling import autoscaler
from meshbatch.k8s.services import service
from meshbatch.k8s.workload import disruption_budget, workload
from meshbatch.runtime import checks as _checks  # noqa: F401  (every check of meaning, registered)


class RenderError(ConfigError):
    """The config is invalid, or cannot run in a pod as it is (each problem with its config path)."""


def render(text: str, options: RenderOptions, source: str = "<config>",
           base_dir: str | Path | None = None) -> list[Manifest]:
    """Raises RenderError (every problem at once) when the config is invalid or cannot run in a pod. The files
    the config names are read relative to `base_dir` (the config file's folder; default: the working
    directory), as `meshbatch run` would."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    try:
        config = parse(text, source, base)  # files found as `run` finds them; `${NAME}` kept as written
    except ConfigError as exc:
        raise RenderError(exc.problems, source) from None
    ports, admin, problems = container_ports(config)
    namespaces, namespace_problems = watched_namespaces(config, options)
    packed = pack(config, text, options, base, source)
    routes, route_problems = mesh_routes(config, options, ports)
    problems = (option_problems(options) + problems + namespace_problems + packed.problems
                + pod_problems(config, options, packed) + route_problems)
    if problems or admin is None:
        raise RenderError(problems, source)
    api_access = bool(namespaces)
    running = workload(config, options, packed, ports, admin, api_access)
    out: list[Manifest] = [config_map(options, packed)]
    out += [m for m in (secret(options, packed),) if m is not None]
    out += [*rbac(config, options), running, service(options, ports, admin)]
    if options.replicas > 1 or options.hpa_max is not None:
        out.append(disruption_budget(options))
    out += [m for m in (autoscaler(options, str(running["kind"])), monitor(options)) if m is not None]
    return out + routes


def _command(options: RenderOptions, source: str) -> str:
    """The command line that renders the same manifests (the first line of the output)."""
    defaults = RenderOptions()
    words = [f"meshbatch k8s render --config {source} --name {options.name}"]
    if options.namespace:
        words.append(f"--namespace {options.namespace}")
    words.append(f"--replicas {options.replicas} --image {options.image}")
    flags = {"--storage-size": (options.storage_size, defaults.storage_size),
             "--storage-class": (options.storage_class, None), "--hpa-max": (options.hpa_max, None),
             "--hpa-cpu": (options.hpa_cpu, defaults.hpa_cpu), "--monitor": (options.monitor, None),
             "--monitor-interval": (options.monitor_interval, defaults.monitor_interval),
             "--route-service": (options.route_service, None),
             "--mesh-api": (options.mesh_api if options.route_service else None, None),
             "--part-of": (options.part_of, None), "--managed-by": (options.managed_by, defaults.managed_by)}
    words += [f"{flag} {value}" for flag, (value, default) in flags.items() if value is not None and value != default]
    words += [f"--pod-path {p}" for p in options.pod_paths] + [f"--env-from {s}" for s in options.env_from]
    if not options.volume_claims:
        words.append("--no-volume-claims")
    if options.admin_on_service:
        words.append("--admin-port")
    return " ".join(words)


def render_text(text: str, options: RenderOptions, source: str = "<config>",
                base_dir: str | Path | None = None) -> str:
    manifests = render(text, options, source, base_dir)
    return f"# {_command(options, source)}\n" + dump_all(manifests)


__all__ = ["RenderError", "render", "render_text"]
