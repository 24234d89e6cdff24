"""`meshbatch k8s render` of an ingest config: state on a PVC per replica (a StatefulSet), the files the config
reads in the ConfigMap where the rewritten config points, secrets in a Secret read from the environment, and
a refusal with the reason for what could not work."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshbatch.config import parse
from meshbatch.k8s.options import RenderOptions
from meshbatch.k8s.render import RenderError, render
from testbed.k8s_pod import lay_out
from testbed.k8s_validate import validate_all

CONFIG = """\
# readings, stored in PostgreSQL
admin: {listen: 0.0.0.0:9901, token: "0123456789abcdef0123"}
identity: {cert: certs/proxy.crt, key: certs/proxy.key, ca: certs/ca.crt}
listeners:
  - name: ingress
    listen: 0.0.0.0:8080
    routes:
      - name: readings
        match: {path_prefix: /readings}
        pipeline:
          - decode:
          - validate: {schema: schemas/reading.json}
        ingest:
          log: {path: data/readings.db}
          sink: {type: postgres, url: "postgresql://ingest:s3cr$$t@db:5432/metrics"}
      - name: audit
        match: {path_prefix: /audit}
        ingest: {}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "certs").mkdir()
    (tmp_path / "schemas" / "reading.json").write_text('{"type": "object", "required": ["device"]}')
    for name in ("proxy.crt", "ca.crt"):
        (tmp_path / "certs" / name).write_text(f"-----BEGIN CERTIFICATE----- {name}")
    (tmp_path / "certs" / "proxy.key").write_text("-----BEGIN PRIVATE KEY----- key")
    return tmp_path


def kinds(docs: list[Any]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs}


def pod_config(docs: list[Any]) -> tuple[str, Any]:
    text = kinds(docs)["ConfigMap"]["data"]["meshbatch.yaml"]
    return text, yaml.safe_load(text)


def test_local_logs_get_a_statefulset_with_a_claim_per_replica(folder: Path) -> None:
    docs = render(CONFIG, RenderOptions(replicas=3, storage_size="5Gi", storage_class="fast"), base_dir=folder)
    assert validate_all(docs) == []
    by = kinds(docs)
    assert "Deployment" not in by
    sts = by["StatefulSet"]["spec"]
    assert sts["replicas"] == 3 and sts["serviceName"] == "meshbatch"
    (claim,) = sts["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data" and "app.kubernetes.io/version" not in claim["metadata"]["labels"]
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}},
                             "storageClassName": "fast"}
    pod = sts["template"]["spec"]
    assert "data" not in [v["name"] for v in pod["volumes"]]  # the claim is the data volume
    assert {"name": "data", "mountPath": "/var/lib/meshbatch"} in pod["containers"][0]["volumeMounts"]
    _, data = pod_config(docs)
    routes = data["listeners"][0]["routes"]
    assert routes[0]["ingest"]["log"]["path"] == "/var/lib/meshbatch/readings.db"
    # a default the config did not write is pinned onto the volume too (it would be under the working directory)
    assert routes[1]["ingest"] == {"log": {"path": "/var/lib/meshbatch/ingest-audit.db"},
                                   "sink": {"path": "/var/lib/meshbatch/sink.db"}}


def test_files_go_into_the_configmap_and_secrets_into_the_secret(folder: Path) -> None:
    docs = render(CONFIG, RenderOptions(), base_dir=folder)
    by = kinds(docs)
    text, data = pod_config(docs)
    config_map, secret = by["ConfigMap"]["data"], by["Secret"]["data"]
    assert config_map["reading.json"] == '{"type": "object", "required": ["device"]}'
    assert data["listeners"][0]["routes"][0]["pipeline"][1]["validate"]["schema"] == "/etc/meshbatch/reading.json"
    assert data["identity"] == {"cert": "/etc/meshbatch/proxy.crt", "key": "/etc/meshbatch-secrets/proxy.key",
                                "ca": "/etc/meshbatch/ca.crt"}
    assert "proxy.key" not in config_map and base64.b64decode(secret["proxy.key"]).startswith(b"-----BEGIN PRIV")
    # no secret value anywhere in the ConfigMap; the config names the variables that carry them
    everything = yaml.safe_dump(by["ConfigMap"])
    assert "s3cr" not in everything and "0123456789abcdef0123" not in everything
    assert data["admin"]["token"] == "${MESHBATCH_ADMIN_TOKEN}"
    url_var = "MESHBATCH_LISTENERS_0_ROUTES_0_INGEST_SINK_URL"
    assert data["listeners"][0]["routes"][0]["ingest"]["sink"]["url"] == "${" + url_var + "}"
    # `$$` in the file means `$`: the Secret holds the value the proxy would have read
    assert base64.b64decode(secret[url_var]) == b"postgresql://ingest:s3cr$t@db:5432/metrics"
    container = by["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": url_var, "valueFrom": {"secretKeyRef": {"name": "meshbatch-secrets", "key": url_var}}} \
        in container["env"]
    assert {"name": "secrets", "mountPath": "/etc/meshbatch-secrets", "readOnly": True} in container["volumeMounts"]
    volume = next(v for v in by["StatefulSet"]["spec"]["template"]["spec"]["volumes"] if v["name"] == "secrets")
    assert volume["secret"]["defaultMode"] == 0o440  # the fsGroup (the proxy's group) reads it; others do not
    assert volume["secret"]["items"] == [{"key": "proxy.key", "path": "proxy.key"}]  # the files, not the values
    assert text.startswith("# ") and validate_all(docs) == []


def test_the_rewritten_config_loads_in_the_pod_with_the_secret_s_environment(folder: Path, tmp_path: Path) -> None:
    docs = render(CONFIG, RenderOptions(), base_dir=folder)
    path, env = lay_out(docs, tmp_path / "pod")
    config = parse(path.read_text(), env=env)  # every file where the pod has it, the values the Secret gives
    assert config.admin is not None and config.admin.token == "0123456789abcdef0123"
    assert config.identity is not None and Path(config.identity.key).read_text().startswith("-----BEGIN PRIV")


def test_a_config_without_files_or_secrets_is_kept_as_written(folder: Path) -> None:
    plain = "admin: {listen: 0.0.0.0:9901}  # kept\nlisteners:\n  - {name: a, listen: 0.0.0.0:80, routes: []}\n"
    docs = render(plain, RenderOptions(), base_dir=folder)
    assert pod_config(docs)[0] == plain and "Secret" not in kinds(docs)


def test_what_cannot_work_is_refused_with_the_reason(folder: Path) -> None:
    with pytest.raises(RenderError) as caught:
        render(CONFIG, RenderOptions(replicas=2, volume_claims=False, hpa_max=4), base_dir=folder)
    found = [str(p) for p in caught.value.problems]
    assert any(p.startswith("listeners[0].routes[0].ingest.log: keeps state in the pod (a SQLite log: "
                            "/var/lib/meshbatch/readings.db); on an emptyDir") for p in found), found
    assert any("an autoscaler scaling down would strand" in p for p in found), found
    docs = render(CONFIG, RenderOptions(replicas=1, volume_claims=False), base_dir=folder)  # one replica: allowed
    assert "Deployment" in kinds(docs) and validate_all(docs) == []
    (folder / "schemas" / "reading.json").unlink()
    with pytest.raises(RenderError) as caught:
        render(CONFIG, RenderOptions(), base_dir=folder)
    assert "validate.schema: cannot read schema file" in str(caught.value.problems[0])
    (folder / "certs" / "proxy.key").unlink()
    with pytest.raises(RenderError) as caught:
        render(CONFIG.replace("schemas/reading.json", "{type: object}"), RenderOptions(), base_dir=folder)
    assert [str(p).split(" to put", 1)[0] for p in caught.value.problems] == [
        f"identity.key: cannot read {folder / 'certs' / 'proxy.key'}"]


def test_a_jetstream_log_runs_as_a_deployment_and_references_need_a_secret(folder: Path) -> None:
    config = CONFIG.replace("log: {path: data/readings.db}", 'log: {backend: jetstream, url: "${NATS_URL}"}') \
        .replace("ingest: {}", "ingest: {log: {backend: jetstream, url: 'nats://nats:4222'}, sink: {type: "
                 "postgres, url: 'postgresql://ingest@db/x'}}")
    with pytest.raises(RenderError) as caught:
        render(config, RenderOptions(), base_dir=folder)
    assert [str(p) for p in caught.value.problems] == [
        "listeners[0].routes[0].ingest.log.url: ${NATS_URL} is read from the pod's environment: give the pod a "
        "Secret with the key NATS_URL (--env-from SECRET)"]
    docs = render(config, RenderOptions(replicas=4, env_from=("nats",), hpa_max=8), base_dir=folder)
    by = kinds(docs)
    assert "StatefulSet" not in by and "replicas" not in by["Deployment"]["spec"]  # the autoscaler owns it
    assert by["Deployment"]["spec"]["template"]["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": "nats"}}]
    assert by["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    _, data = pod_config(docs)
    assert data["listeners"][0]["routes"][1]["ingest"]["sink"]["url"] == "postgresql://ingest@db/x"  # no password
    assert validate_all(docs) == []
    loopback = config.replace("nats://nats:4222", "nats://127.0.0.1:4222")
    with pytest.raises(RenderError) as caught:
        render(loopback, RenderOptions(env_from=("nats",)), base_dir=folder)
    assert str(caught.value.problems[0]).startswith("listeners[0].routes[1].ingest.log.url: is loopback")


def test_two_files_with_one_name_get_two_keys(folder: Path) -> None:
    (folder / "other").mkdir()
    (folder / "other" / "reading.json").write_text('{"type": "array"}')
    config = CONFIG.replace("ingest: {}", "pipeline: [{decode: }, {validate: {schema: other/reading.json}}]\n"
                                          "        ingest: {}")
    docs = render(config, RenderOptions(), base_dir=folder)
    _, data = pod_config(docs)
    assert data["listeners"][0]["routes"][1]["pipeline"][1]["validate"]["schema"] == "/etc/meshbatch/reading-2.json"
    assert kinds(docs)["ConfigMap"]["data"]["reading-2.json"] == '{"type": "array"}'


@pytest.mark.parametrize(("path", "key"), [
    ("../../etc/passwd", "passwd"), ("schemas/..json", "json"), ("a b/ü ber.json", "ber.json"),
    ("x/" + "a" * 300 + ".json", "a" * 200), ("dir/", "file"), ("meshbatch.yaml", "meshbatch-2.yaml"),
])
def test_configmap_keys_from_hostile_file_names_are_valid_and_unique(path: str, key: str) -> None:
    from meshbatch.k8s.pack import _key

    taken = {"meshbatch.yaml"}
    made = _key(path, taken)
    assert made == key and made in taken
    assert re.fullmatch(r"[-._a-zA-Z0-9]{1,253}", made)


def test_environment_names_from_paths_are_valid() -> None:
    from meshbatch.k8s.pack import env_name

    assert env_name(("tracing", "headers", "x-api-key")) == "MESHBATCH_TRACING_HEADERS_X_API_KEY"
    assert env_name(("clusters", 2, "discovery", "urls", 0)) == "MESHBATCH_CLUSTERS_2_DISCOVERY_URLS_0"
    assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", env_name(("tracing", "headers", "ü/..\n")))
