"""`meshbatch k8s render --config FILE [options]`: the manifests for a config, or every reason it cannot work.

Prints the manifests (ConfigMap, Secret, ServiceAccount and EndpointSlice RBAC, Deployment or StatefulSet,
Service, PodDisruptionBudget, and what the options add: HorizontalPodAutoscaler, ServiceMonitor or PodMonitor,
HTTPRoute or VirtualService) as one YAML stream, or writes them to DIR/NAME.yaml. A config that is invalid, or
that cannot work in a pod (a loopback or port-0 listener, no admin listener for the probes, a file it names
that cannot be read, state on an emptyDir shared by replicas...), exits 1 with every problem and its path, as
`meshbatch check` does.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from meshbatch.k8s.options import DEFAULT_IMAGE, RenderOptions


def options_of(args: argparse.Namespace) -> RenderOptions:
    return RenderOptions(
        name=args.name, namespace=args.namespace, replicas=args.replicas, image=args.image,
        volume_claims=not args.no_volume_claims, storage_size=args.storage_size, storage_class=args.storage_class,
        pod_paths=tuple(args.pod_path), env_from=tuple(args.env_from), hpa_max=args.hpa_max, hpa_cpu=args.hpa_cpu,
        monitor=args.monitor, monitor_interval=args.monitor_interval, admin_on_service=args.admin_port,
        route_service=args.route_service, mesh_api=args.mesh_api, part_of=args.part_of, managed_by=args.managed_by)


def _render(args: argparse.Namespace) -> int:
    from meshbatch.k8s.render import RenderError, render_text

    try:
        text = Path(args.config).read_text(encoding="utf-8")
    except OSError as exc:
        print(f"{args.config}: cannot read: {exc.strerror}", file=sys.stderr)
        return 1
    options = options_of(args)
    try:
        out = render_text(text, options, args.config, os.path.dirname(os.path.abspath(args.config)))
    except RenderError as exc:
        print(f"{args.config}: {len(exc.problems)} error(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    if args.out is None:
        sys.stdout.write(out)
        return 0
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{options.name}.yaml"
    target.write_text(out, encoding="utf-8")
    if "\nkind: Secret\n" in out:
        target.chmod(0o600)  # it holds the config's secrets
    print(f"wrote {target}", file=sys.stderr)
    return 0


def add_k8s(sub: Any) -> None:
    k8s = sub.add_parser("k8s", help="Kubernetes: render manifests from a config")
    verbs = k8s.add_subparsers(dest="k8s_command", required=True)
    render = verbs.add_parser("render", help="the ConfigMap, Secret, workload, Service and RBAC for a config")
    render.add_argument("--config", "-c", required=True, help="the meshbatch YAML config")
    render.add_argument("--name", default="meshbatch", help="name of the workload, Service, ServiceAccount")
    render.add_argument("--namespace", "-n", default=None,
                        help="put the manifests in this namespace (default: none named, kubectl's current one)")
    render.add_argument("--replicas", type=int, default=2)
    render.add_argument("--image", default=DEFAULT_IMAGE)
    render.add_argument("--out", default=None, help="write DIR/NAME.yaml instead of printing")
    state = render.add_argument_group("state (a SQLite ingest log or sink: a StatefulSet, a PVC per replica)")
    state.add_argument("--storage-size", default="1Gi", help="each replica's volume (default 1Gi)")
    state.add_argument("--storage-class", default=None, help="the claims' storage class (default: the cluster's)")
    state.add_argument("--no-volume-claims", action="store_true",
                       help="an emptyDir instead of claims (one replica only: its state dies with the pod)")
    files = render.add_argument_group("files and secrets")
    files.add_argument("--pod-path", action="append", default=[], metavar="PATH",
                       help="an absolute path the pod already has (a volume of your own): kept, not shipped")
    files.add_argument("--env-from", action="append", default=[], metavar="SECRET",
                       help="a Secret whose keys become environment variables (for ${NAME} in the config)")
    extra = render.add_argument_group("options")
    extra.add_argument("--hpa-max", type=int, default=None, metavar="N",
                       help="a HorizontalPodAutoscaler from --replicas to N pods")
    extra.add_argument("--hpa-cpu", type=int, default=70, metavar="PERCENT",
                       help="its target CPU utilisation (default 70)")
    extra.add_argument("--monitor", choices=["servicemonitor", "podmonitor"], default=None,
                       help="a Prometheus operator scrape of /metrics")
    extra.add_argument("--monitor-interval", default="15s")
    extra.add_argument("--admin-port", action="store_true", help="the admin port on the Service too")
    extra.add_argument("--route-service", default=None, metavar="SERVICE[:PORT]",
                       help="send the callers of this Service through the proxy (mesh routing)")
    extra.add_argument("--mesh-api", choices=["gateway", "istio", "both"], default="gateway",
                       help="gateway: a Gateway API HTTPRoute (GAMMA); istio: a VirtualService (default gateway)")
    extra.add_argument("--part-of", default=None, help="app.kubernetes.io/part-of (default: --name)")
    extra.add_argument("--managed-by", default="meshbatch", help="app.kubernetes.io/managed-by")
    render.set_defaults(func=_render)


__all__ = ["add_k8s", "options_of"]
