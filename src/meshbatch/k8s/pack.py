"""The config as the pod reads it, and what it needs beside itself.

A config names files and holds secrets; in a pod, each must be somewhere the proxy can reach:

- a file it **reads** (a `validate` step's schema, a JWKS, `discovery.path`, a certificate or trust bundle:
  `ReadPath` in the model) goes into the ConfigMap beside the config, mounted under `CONFIG_DIR`; a file that
  holds a secret (a private key, a kubeconfig: `SecretPath`) into the Secret, mounted under `SECRET_DIR`. The
  files are read from the machine that renders, relative paths against the config file's folder (as `run`
  does); a path given with `--pod-path` already exists in the pod (a volume of your own) and is kept;
- a file it **writes** (an ingest log, a SQLite sink, an access log or trace file: `WritePath`) goes to
  `DATA_DIR`, the pod's data volume. A SQLite log or sink is state that must outlive the pod (`Packed.state`):
  the workload then gets a PersistentVolumeClaim per replica (meshbatch.k8s.workload);
- a **secret value** (`secret(KIND)` in the model: a database or NATS URL with credentials, the admin token,
  OTLP headers) goes into the Secret and reaches the proxy as an environment variable that the rewritten config
  names (`${MESHBATCH_...}`, expanded at load: meshbatch.config.env), never into the ConfigMap. A URL without
  credentials stays in the config. A `${NAME}` the config already has must come from a Secret of the user's
  (`--env-from`).

When nothing needs rewriting the config is kept as written, comments and all; otherwise it is the same data
written out again, with a first line that says so.
"""

from __future__ import annotations

import base64
import copy
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshbatch.config import Config, Problem
from meshbatch.config.env import references, secret_strings, set_in, substitute
from meshbatch.config.fields import Loc, paths
from meshbatch.config.load import format_path
from meshbatch.config.model import IngestRoute
from meshbatch.config.redact import redact_url
from meshbatch.config.source import parse_yaml
from meshbatch.k8s.options import RenderOptions
from meshbatch.k8s.output import dump

CONFIG_DIR = "/etc/meshbatch"  # the ConfigMap: the config and the files it reads
SECRET_DIR = "/etc/meshbatch-secrets"  # the Secret's files (beside, not inside, the ConfigMap's read-only mount)
DATA_DIR = "/var/lib/meshbatch"  # the data volume: what the proxy writes
MAX_OBJECT_BYTES = 1_000_000  # a ConfigMap or Secret holds at most 1 MiB, its keys and metadata included
_KEY_INVALID = re.compile(r"[^-._a-zA-Z0-9]+")
_ENV_INVALID = re.compile(r"[^A-Z0-9]+")


@dataclass
class Packed:
    text: str  # the config the pod reads
    files: dict[str, bytes] = field(default_factory=dict)  # ConfigMap key -> content (beside the config)
    secret_files: dict[str, bytes] = field(default_factory=dict)  # Secret key -> content (mounted as files)
    secret_env: dict[str, str] = field(default_factory=dict)  # environment variable -> secret value
    references: dict[str, str] = field(default_factory=dict)  # ${NAME} the config names itself -> its path
    state: list[tuple[str, str]] = field(default_factory=list)  # what must outlive the pod: (path, what)
    problems: list[Problem] = field(default_factory=list)

    @property
    def secret_data(self) -> dict[str, str]:
        """The Secret's `data`: every value and file, base64."""
        raw = {**{k: v.encode() for k, v in self.secret_env.items()}, **self.secret_files}
        return {key: base64.b64encode(value).decode() for key, value in sorted(raw.items())}


def _unique(name: str, taken: set[str]) -> str:
    base, n = name, 2
    while name in taken:
        stem, dot, ext = base.partition(".")
        name = f"{stem}-{n}{dot}{ext}"
        n += 1
    taken.add(name)
    return name


def _key(path: str, taken: set[str]) -> str:
    name = _KEY_INVALID.sub("-", os.path.basename(path)).strip("-.") or "file"
    return _unique(name[:200], taken)


def env_name(loc: Loc) -> str:
    return "MESHBATCH_" + _ENV_INVALID.sub("_", format_path(loc).upper()).strip("_")


class _Packer:
    def __init__(self, config: Config, options: RenderOptions, base_dir: Path) -> None:
        self.config, self.options, self.base_dir = config, options, base_dir
        self.changes: dict[Loc, Any] = {}
        self.out = Packed(text="")
        self.keys: set[str] = {options.config_file}
        self.secret_keys: set[str] = set()
        self.read_as: dict[str, str] = {}  # a file's path on this machine -> where the pod reads it
        self.written_as: dict[str, str] = {}  # a written path as configured -> where the pod writes it
        self.written_names: set[str] = set()

    def _kept(self, value: str) -> bool:
        return any(value == p or value.startswith(p.rstrip("/") + "/") for p in self.options.pod_paths)

    def read_file(self, loc: Loc, value: str, secret: bool) -> None:
        if self._kept(value):
            return
        local = os.path.normpath(os.path.join(self.base_dir, os.path.expanduser(value)))
        if local in self.read_as:
            self.changes[loc] = self.read_as[local]
            return
        try:
            content = Path(local).read_bytes()
        except OSError as exc:
            self.out.problems.append(Problem(format_path(loc), f"cannot read {local} to put it in the "
                                             f"{'Secret' if secret else 'ConfigMap'}: {exc.strerror}; or name a "
                                             "path the pod has with --pod-path"))
            return
        if secret:
            key = _key(value, self.secret_keys)
            self.out.secret_files[key] = content
            where = posixpath.join(SECRET_DIR, key)
        else:
            key = _key(value, self.keys)
            self.out.files[key] = content
            where = posixpath.join(CONFIG_DIR, key)
        self.read_as[local] = where
        self.changes[loc] = where

    def write_file(self, loc: Loc, value: str) -> str:
        if value == "-" or self._kept(value):
            return value
        if value not in self.written_as:
            name = _KEY_INVALID.sub("-", os.path.basename(value)).strip("-.") or "data"
            self.written_as[value] = posixpath.join(DATA_DIR, _unique(name, self.written_names))
        self.changes[loc] = self.written_as[value]
        return self.written_as[value]

    def files(self) -> None:
        for found in paths(self.config):
            if found.kind == "write":
                self.write_file(found.loc, found.value)
            else:
                self.read_file(found.loc, found.value, secret=found.kind == "secret")

    def state(self) -> None:
        """SQLite logs and sinks: pinned into the data volume (their defaults lie under the working directory)."""
        from meshbatch.ingest.sinks.base import sink_type

        for i, listener in enumerate(self.config.listeners):
            for j, route in enumerate(listener.routes):
                if not isinstance(route, IngestRoute):
                    continue
                here: Loc = ("listeners", i, "routes", j, "ingest")
                log, sink = route.ingest.log, route.ingest.sink
                if log.backend == "sqlite":
                    where = self.write_file((*here, "log", "path"), log.path or f"ingest-{route.name}.db")
                    self.out.state.append((format_path((*here, "log")), f"a SQLite log: {where}"))
                if sink_type(route) == "sqlite":
                    where = self.write_file((*here, "sink", "path"), sink.path or "sink.db")
                    self.out.state.append((format_path((*here, "sink")), f"a SQLite sink: {where}"))

    def secrets(self) -> None:
        for loc, kind, text in secret_strings(self.config):
            names = references(text)
            if names:
                for name in names:
                    self.out.references.setdefault(name, format_path(loc))
                continue
            value = substitute(text, {})[0]  # `$$` means `$`, as the proxy would read it
            looks_secret = redact_url(value) != value if kind == "url" else bool(value)
            if not looks_secret:
                continue
            name = env_name(loc)
            while name in self.out.secret_env:
                name += "_"
            self.out.secret_env[name] = value
            self.changes[loc] = "${" + name + "}"

    def text(self, text: str, source: str) -> str:
        if not self.changes:
            return text
        data = parse_yaml(text)
        data = copy.deepcopy(data)
        for loc, value in self.changes.items():
            set_in(data, loc, value)
        return (f"# {os.path.basename(source)} as the pod reads it (meshbatch k8s render): files under "
                f"{CONFIG_DIR}, {SECRET_DIR} and {DATA_DIR}, secrets from the environment\n") + dump(data)

    def sizes(self) -> None:
        config_map = len(self.out.text.encode()) + sum(len(k) + len(v) for k, v in self.out.files.items())
        secret = sum(len(k) + len(v) for k, v in self.out.secret_data.items())
        for kind, size in (("ConfigMap", config_map), ("Secret", secret)):
            if size > MAX_OBJECT_BYTES:
                self.out.problems.append(Problem("", f"the {kind} would hold {size:,} bytes, more than Kubernetes "
                                                     f"allows (1 MiB): mount the large files from a volume of "
                                                     "your own and name them with --pod-path"))


def pack(config: Config, text: str, options: RenderOptions, base_dir: Path, source: str = "<config>") -> Packed:
    """The config for the pod, the files and secrets it needs, the state to keep, and what cannot be done."""
    packer = _Packer(config, options, base_dir)
    packer.files()
    packer.state()
    packer.secrets()
    packer.out.text = packer.text(text, source)
    packer.sizes()
    return packer.out


__all__ = ["CONFIG_DIR", "DATA_DIR", "MAX_OBJECT_BYTES", "SECRET_DIR", "Packed", "env_name", "pack"]
