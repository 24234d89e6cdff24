"""Every manifest under deploy/ (and the kustomize builds of it), checked offline as a cluster would: strict
Kubernetes schemas for two Kubernetes versions, Istio's CRD schemas, the meshbatch configs in ConfigMaps through
a real `meshbatch check`, the committed proxy manifest against `meshbatch k8s render`, and the wiring between
objects (selectors, named ports, Services that routes and discovery name, service accounts of policies)."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshbatch.cli import main as cli
from testbed.k8s_validate import config_maps_with_configs, documents, validate_all, validate_file

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBECTL = shutil.which("kubectl")
IMAGE = "ghcr.io/meshbatch/meshbatch:0.1.0"


def start(*commands: list[str]) -> list[subprocess.Popen[str]]:
    """`meshbatch` commands, each a subprocess started now (from the repository root)."""
    return [subprocess.Popen([sys.executable, "-m", "meshbatch", *args], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for args in commands]


def finish(procs: list[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=60)
        out.append((proc.returncode, stdout, stderr))
    return out


def kustomize(folder: Path) -> list[dict[str, Any]]:
    if KUBECTL is None:
        if os.environ.get("MESHBATCH_REQUIRE_SERVICES"):
            pytest.fail("kubectl (with kustomize built in) is not installed and MESHBATCH_REQUIRE_SERVICES is set")
        pytest.skip("kubectl (with kustomize built in) is not installed")
    out = subprocess.run([KUBECTL, "kustomize", str(folder)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 0, out.stderr
    return documents(out.stdout)


def manifest_files() -> list[Path]:
    """YAML files of Kubernetes objects (not meshbatch configs, not kustomizations)."""
    out = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        docs = documents(path.read_text(encoding="utf-8"))
        if docs and all("apiVersion" in d and "kind" in d for d in docs) and \
                not any(d["kind"] == "Kustomization" for d in docs):
            out.append(path)
    return out


def check_commands(texts: Iterable[tuple[str, str]], folder: Path) -> list[list[str]]:
    commands = []
    for i, (name, text) in enumerate(texts):
        path = folder / f"{name.replace('/', '-')}-{i}.yaml"
        path.write_text(text, encoding="utf-8")
        commands.append(["check", str(path)])
    return commands


def assert_checked(results: list[tuple[int, str, str]]) -> None:
    for code, stdout, stderr in results:
        assert code == 0 and ": ok: " in stdout, stderr


def test_every_manifest_under_deploy_is_valid() -> None:
    files = manifest_files()
    names = {str(p.relative_to(DEPLOY)) for p in files}
    assert {"kubernetes/producer.yaml", "kubernetes/consumer.yaml", "kubernetes/microbatching.yaml",
            "istio/virtualservice.yaml", "istio/destinationrule.yaml", "istio/peerauthentication.yaml",
            "istio/authorizationpolicy.yaml"} <= names
    problems = [p for path in files for p in validate_file(path)]
    assert problems == []


def test_the_proxy_manifest_is_what_render_makes_and_its_config_passes_check(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    committed = (DEPLOY / "kubernetes" / "microbatching.yaml").read_text(encoding="utf-8")
    configs = config_maps_with_configs(documents(committed))
    assert list(configs) == ["microbatching-config/meshbatch.yaml"]
    checks = start(*check_commands(configs.items(), tmp_path))
    render = ["k8s", "render", "--config", "deploy/kubernetes/config/microbatching.yaml", "--name", "microbatching",
              "--replicas", "2", "--image", IMAGE]
    with contextlib.chdir(ROOT):
        assert cli(render) == 0  # in-process (the subprocesses above cover the command line)
    assert capsys.readouterr().out == committed, "deploy/kubernetes/microbatching.yaml is stale: render it again"
    assert_checked(finish(checks))


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_the_objects_are_wired_to_each_other() -> None:
    docs = [d for name in ("producer", "consumer", "microbatching")
            for d in documents((DEPLOY / "kubernetes" / f"{name}.yaml").read_text(encoding="utf-8"))]
    istio = [d for path in sorted((DEPLOY / "istio").glob("*.yaml"))
             for d in documents(path.read_text(encoding="utf-8"))]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    accounts = {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}
    assert set(deployments) == {"producer", "consumer", "microbatching"}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        assert _labels_match(deployment["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"]), name
        assert pod["spec"]["serviceAccountName"] in accounts, name
        for container in pod["spec"]["containers"]:
            named = {p["name"] for p in container.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe"):
                assert container[probe]["httpGet"]["port"] in named, (name, probe)
            assert container["resources"]["requests"] and container["resources"]["limits"], name
    for name, service in services.items():  # each Service selects a Deployment's pods, on ports they have
        pods = [d for d in deployments.values()
                if _labels_match(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
        assert len(pods) == 1, name
        named = {p["name"] for c in pods[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= named, name
    assert services["consumer-headless"]["spec"]["clusterIP"] == "None"
    # the proxy discovers the consumer's pods through the headless Service, on its named port
    config = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["meshbatch.yaml"])
    discovery = config["clusters"][0]["discovery"]
    assert discovery["type"] == "kubernetes"
    assert discovery["port_name"] in {p["name"] for p in services[discovery["service"]]["spec"]["ports"]}
    assert config["clusters"][0]["name"] == discovery["service"]  # batches carry Host: the headless Service
    # the producer calls `service` on its port; Istio sends that through the proxy, on its Service's port
    args = deployments["producer"]["spec"]["template"]["spec"]["containers"][0]["args"]
    host, port = args[args.index("--target") + 1].split(":")
    assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}
    virtual = next(d for d in istio if d["kind"] == "VirtualService")
    assert virtual["spec"]["hosts"] == [host]
    for rule in virtual["spec"]["http"]:
        for route in rule["route"]:
            target = route["destination"]
            assert target["port"]["number"] in {p["port"] for p in services[target["host"]]["spec"]["ports"]}
    for rule in virtual["spec"]["http"]:
        for match in rule.get("match", []):
            assert match["sourceLabels"] == {"app": "microbatching"}
    assert {d["spec"]["host"] for d in istio if d["kind"] == "DestinationRule"} <= set(services)
    principals = [p for d in istio if d["kind"] == "AuthorizationPolicy" for r in d["spec"]["rules"]
                  for f in r.get("from", []) for p in f["source"]["principals"]]
    assert principals == ["cluster.local/ns/default/sa/producer", "cluster.local/ns/default/sa/microbatching"]
    assert {p.rsplit("/", 1)[1] for p in principals} <= accounts
    modes = [d["spec"]["mtls"]["mode"] for d in istio if d["kind"] == "PeerAuthentication"]
    assert modes == ["STRICT", "STRICT"]


def test_the_kustomize_bases_build_the_same_objects() -> None:
    files = [d for f in ("producer.yaml", "consumer.yaml", "microbatching.yaml")
             for d in documents((DEPLOY / "kubernetes" / f).read_text(encoding="utf-8"))]
    built = kustomize(DEPLOY / "kubernetes")
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, built)) == sorted(map(key, files))
    assert validate_all(built) == []
    istio = kustomize(DEPLOY / "istio")
    assert len(istio) == 7 and validate_all(istio) == []


def test_the_production_overlay_sets_everything_in_one_folder(tmp_path: Path) -> None:
    docs = kustomize(DEPLOY / "kustomize" / "overlays" / "production")
    assert validate_all(docs) == []
    named = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert all(d["metadata"].get("namespace") == "orders" for d in docs if d["kind"] != "Namespace")
    assert named[("Namespace", "orders")]["metadata"]["labels"]["istio-injection"] == "enabled"
    assert named[("Deployment", "microbatching")]["spec"]["replicas"] == 3
    assert named[("Deployment", "consumer")]["spec"]["replicas"] == 4
    url = base64.b64decode(named[("Secret", "consumer-database")]["data"]["url"]).decode()
    assert url.startswith("postgresql://")
    overlay_config = (DEPLOY / "kustomize/overlays/production/meshbatch.yaml").read_text(encoding="utf-8")
    configs = config_maps_with_configs(docs)
    assert configs == {"microbatching-config/meshbatch.yaml": overlay_config}
    assert yaml.safe_load(overlay_config)["listeners"][0]["routes"][0]["batch"]["max_items"] == 128
    principals = [p for d in docs if d["kind"] == "AuthorizationPolicy" for r in d["spec"]["rules"]
                  for f in r.get("from", []) for p in f["source"]["principals"]]
    assert all("/ns/orders/" in p for p in principals) and principals
    binding = named[("RoleBinding", "microbatching-endpointslices")]
    assert binding["subjects"][0].get("namespace", "orders") == "orders"
    assert_checked(finish(start(*check_commands(configs.items(), tmp_path))))


def test_the_gamma_route_is_what_render_makes_and_is_wired(capsys: pytest.CaptureFixture[str]) -> None:
    """deploy/gateway-api/httproute.yaml: the HTTPRoute of `k8s render --route-service service:80`, whose parent
    is the Service the producer calls and whose backend is the proxy's Service, on ports they have."""
    (route,) = documents((DEPLOY / "gateway-api" / "httproute.yaml").read_text(encoding="utf-8"))
    with contextlib.chdir(ROOT):
        assert cli(["k8s", "render", "--config", "deploy/kubernetes/config/microbatching.yaml", "--name",
                    "microbatching", "--replicas", "2", "--image", IMAGE, "--route-service", "service:80"]) == 0
    rendered = next(d for d in documents(capsys.readouterr().out) if d["kind"] == "HTTPRoute")
    assert route == rendered, "deploy/gateway-api/httproute.yaml is stale: render it again"
    assert validate_all([route]) == []
    docs = [d for name in ("consumer", "microbatching")
            for d in documents((DEPLOY / "kubernetes" / f"{name}.yaml").read_text(encoding="utf-8"))]
    ports = {d["metadata"]["name"]: {p["port"] for p in d["spec"]["ports"]} for d in docs if d["kind"] == "Service"}
    (parent,) = route["spec"]["parentRefs"]
    assert parent["kind"] == "Service" and parent["port"] in ports[parent["name"]]
    (backend,) = route["spec"]["rules"][0]["backendRefs"]
    assert backend["port"] in ports[backend["name"]]
