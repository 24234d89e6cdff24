"""The image definition, checked without building it (no registry for base images is reachable here): a pinned
slim Python base, a non-root user, a HEALTHCHECK on the admin /ready, no secrets, and a context that holds
what the build copies."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[3]
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIALS?)", re.IGNORECASE)


def parsed() -> DockerfileParser:
    return DockerfileParser(path=str(ROOT / "Dockerfile"))


def final_stage(parser: DockerfileParser) -> list[dict[str, str]]:
    stages: list[list[dict[str, str]]] = []
    for item in parser.structure:
        if item["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(item)
    return stages[-1]


def test_the_base_image_is_a_pinned_slim_python() -> None:
    parser = parsed()
    first_from = next(n for n, i in enumerate(parser.structure) if i["instruction"] == "FROM")
    global_args = dict(i["value"].split("=", 1) for i in parser.structure[:first_from] if i["instruction"] == "ARG")
    images = [parser.baseimage, *(i["value"].split()[0] for i in parser.structure if i["instruction"] == "FROM")]
    resolved = {img.replace("${PYTHON_IMAGE}", global_args["PYTHON_IMAGE"]) for img in images}
    assert resolved == {"python:3.11.11-slim-bookworm"}, resolved
    for image in resolved:
        name, _, tag = image.partition(":")
        assert name == "python" and re.fullmatch(r"\d+\.\d+\.\d+-slim(-\w+)?", tag), image


def test_the_final_stage_runs_as_a_non_root_user() -> None:
    users = [i["value"].strip() for i in final_stage(parsed()) if i["instruction"] == "USER"]
    assert users, "no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and user.isdigit() and int(user) >= 1000  # numeric: runAsNonRoot can check


def test_the_healthcheck_asks_the_admin_ready_endpoint() -> None:
    checks = [i["value"] for i in final_stage(parsed()) if i["instruction"] == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "--interval=" in checks[0] and "--timeout=" in checks[0]
    command = json.loads(checks[0][checks[0].index("CMD") + 3:].strip())
    assert command[0] == "python" and "/ready" in command[-1] and "MESHBATCH_ADMIN_PORT" in command[-1]
    entry = [i["value"] for i in final_stage(parsed()) if i["instruction"] == "ENTRYPOINT"]
    assert json.loads(entry[0]) == ["meshbatch"]


def test_no_secret_is_baked_in() -> None:
    parser = parsed()
    for key in [*parser.envs, *parser.args]:
        assert not SECRET_NAME.search(key), key
    for item in parser.structure:
        if item["instruction"] in ("COPY", "ADD"):
            sources = item["value"].split()[:-1]
            assert not any(s.endswith((".key", ".pem", ".env")) or "id_rsa" in s for s in sources), item
        assert not re.search(r"(?i)(password|token)=\S+", item["value"]), item


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/") or \
                fnmatch.fnmatch(path, pattern.replace("**/", "*/")):
            ignored = not negate
    return ignored


def test_the_build_context_holds_what_is_copied_and_nothing_else() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    copied = []
    for item in parsed().structure:
        if item["instruction"] == "COPY" and "--from" not in item["value"]:
            copied += item["value"].split()[:-1]
    assert copied == ["pyproject.toml", "setup.py", "README.md", "LICENSE", "src"]
    for source in copied:
        assert (ROOT / source).exists() and not _ignored(source, patterns), source
    for private in (".git", ".venv", "tests", "bench", "chaos", "testbed", ".venv/bin/python",
                    "src/meshbatch/__pycache__"):
        assert _ignored(private, patterns), private
