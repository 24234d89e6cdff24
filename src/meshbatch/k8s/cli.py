"""`meshbatch k8s render --config FILE [--namespace NS] [--replicas N] [--image IMG] [--name NAME] [--out DIR]`.

Prints the manifests (ConfigMap, ServiceAccount and EndpointSlice RBAC, Deployment, Service,
PodDisruptionBudget) as one YAML stream, or writes them to DIR/NAME.yaml. A config that is invalid, or that
cannot work in a pod (a loopback or port-0 listener, no admin listener for the probes), exits 1 with every
problem and its path, as `meshbatch check` does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from meshbatch.k8s.options import DEFAULT_IMAGE, RenderOptions


def _render(args: argparse.Namespace) -> int:
    from meshbatch.k8s.render import RenderError, render_text

    try:
        text = Path(args.config).read_text(encoding="utf-8")
    except OSError as exc:
        print(f"{args.config}: cannot read: {exc.strerror}", file=sys.stderr)
        return 1
    options = RenderOptions(name=args.name, namespace=args.namespace, replicas=args.replicas, image=args.image)
    try:
        out = render_text(text, options, args.config)
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
    print(f"wrote {target}", file=sys.stderr)
    return 0


def add_k8s(sub: Any) -> None:
    k8s = sub.add_parser("k8s", help="Kubernetes: render manifests from a config")
    verbs = k8s.add_subparsers(dest="k8s_command", required=True)
    render = verbs.add_parser("render", help="the ConfigMap, Deployment, Service and RBAC for a config")
    render.add_argument("--config", "-c", required=True, help="the meshbatch YAML config")
    render.add_argument("--name", default="meshbatch", help="name of the Deployment, Service, ServiceAccount")
    render.add_argument("--namespace", "-n", default=None,
                        help="put the manifests in this namespace (default: none named, kubectl's current one)")
    render.add_argument("--replicas", type=int, default=2)
    render.add_argument("--image", default=DEFAULT_IMAGE)
    render.add_argument("--out", default=None, help="write DIR/NAME.yaml instead of printing")
    render.set_defaults(func=_render)


__all__ = ["add_k8s"]
