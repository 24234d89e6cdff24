"""The systems of the `batching` scenario, each serving the same work (`batch_work.py`) on 127.0.0.1.

    direct      the HTTP upstream (`batch_upstream.py`) called one item per call
    meshbatch   `meshbatch run` batching single requests into the upstream's `POST /batch` (json-array)
    ray-serve   Ray Serve, a deployment whose `@serve.batch` handler calls the work (`peers_batching/`)
    bentoml     BentoML, a `@bentoml.api(batchable=True)` service calling the work (`peers_batching/`)

Ray Serve and BentoML are heavy and are never dependencies of meshbatch: each lives in its own virtual
environment under `bench/.peers/NAME/` (gitignored), made by `meshbatch bench deps` (`make bench-deps`) from the
exact pins below. A peer that is not installed (or cannot be: no network) is reported as "not installed: REASON"
and the scenario goes on without it.

Every process of a target runs on the system-under-test core; `stop()` ends the target's whole process tree,
its session, and any process that names the target's private temp directory (Ray's session files), by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import LOOPBACK, BenchError, CorePlan, Service, free_port, http_get, process_tree
from .peers import meshbatch_bin

BENCH_DIR = Path(__file__).resolve().parent
SERVICES = BENCH_DIR / "peers_batching"
UPSTREAM = BENCH_DIR / "batch_upstream.py"
PEERS_ENV = "MESHBATCH_BENCH_PEERS_DIR"
TARGETS = ("direct", "meshbatch", "ray-serve", "bentoml")
BATCHING_TARGETS = ("meshbatch", "ray-serve", "bentoml")
# One BLAS thread everywhere: each system has one core, and threads would only fight over it.
BLAS_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class PeerSpec:
    name: str
    venv: str  # bench/.peers/VENV
    requirements: tuple[str, ...]  # exact pins, installed from PyPI
    probe: str  # Python that prints the version when the peer is usable
    version_of: str  # the pin whose version is the peer's


PEERS: dict[str, PeerSpec] = {
    "ray-serve": PeerSpec(
        name="ray-serve",
        venv="ray",
        requirements=("ray[serve]==2.60.0", "numpy==2.4.6"),
        probe="import numpy, starlette, ray; from ray import serve; print(ray.__version__)",
        version_of="ray",
    ),
    "bentoml": PeerSpec(
        name="bentoml",
        venv="bentoml",
        requirements=("bentoml==1.4.40", "numpy==2.4.6"),
        probe="import numpy, bentoml; print(bentoml.__version__)",
        version_of="bentoml",
    ),
}


def peers_dir() -> Path:
    override = os.environ.get(PEERS_ENV)
    return Path(override).expanduser().resolve() if override else BENCH_DIR / ".peers"


def peer_python(spec: PeerSpec) -> Path:
    return peers_dir() / spec.venv / "bin" / "python"


def pinned_version(spec: PeerSpec) -> str:
    pin = next(r for r in spec.requirements if r.split("[")[0].split("=")[0] == spec.version_of)
    return pin.split("==", 1)[1]


def peer_status(spec: PeerSpec) -> tuple[str | None, str]:
    """(version, "") when the peer's environment imports it at the pinned version, else (None, reason)."""
    python = peer_python(spec)
    if not python.exists():
        return None, f"no virtual environment at {python.parent.parent} (run `make bench-deps`)"
    try:
        done = subprocess.run([str(python), "-c", spec.probe], capture_output=True, text=True, timeout=120,
                              check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"its Python does not run: {exc}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["import failed"])[-1]
        return None, f"import failed: {last[:200]}"
    version = done.stdout.strip()
    if version != pinned_version(spec):
        return None, f"{spec.version_of} {version} installed, {pinned_version(spec)} pinned (run `make bench-deps`)"
    return version, ""


def install_peer(spec: PeerSpec, log: Callable[[str], None] = print) -> tuple[str | None, str]:
    """Make bench/.peers/VENV and install the pins into it (uv when the project has it, else pip)."""
    version, _ = peer_status(spec)
    if version is not None:
        return version, ""
    venv = peers_dir() / spec.venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    uv = Path(sys.executable).parent / "uv"
    base_python = shutil.which("python3") or sys.executable
    if uv.exists():
        steps = [[str(uv), "venv", "-q", "--allow-existing", "--python", base_python, str(venv)],
                 [str(uv), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *spec.requirements]]
    else:
        steps = [[base_python, "-m", "venv", str(venv)],
                 [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                  *spec.requirements]]
    log(f"installing {spec.name} into {venv}: {' '.join(spec.requirements)}")
    for argv in steps:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"not installed: {exc}"
        if done.returncode != 0:
            tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
            return None, "install failed: " + " / ".join(tail)[:300]
    return peer_status(spec)


# ---------------------------------------------------------------- processes


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def _session_members(sid: int) -> list[int]:
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and int(fields[3]) == sid:
                found.append(int(entry))
    return found


def _naming(marker: str) -> list[int]:
    """Processes whose command line contains `marker` (a private temp directory of this run)."""
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def stop_everything(service: Service, marker: str | None = None, grace: float = 20.0) -> None:
    """SIGTERM the leader (it shuts its framework down), then SIGKILL, by pid, whatever of its tree, its session
    and the processes naming `marker` is left. Only processes this target started are touched."""
    pids = set(process_tree(service.pid)) | set(_session_members(service.pid))
    if marker:
        pids |= set(_naming(marker))
    if service.alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(service.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            service.proc.wait(timeout=grace)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and any(_alive(p) for p in pids if p != service.pid):
        time.sleep(0.1)
    pids |= set(_session_members(service.pid))
    if marker:
        pids |= set(_naming(marker))
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    service.stop(timeout=5.0)


def _request(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 10.0) -> Any:
    request = urllib.request.Request(f"http://{LOOPBACK}:{port}{path}", method=method, data=body,
                                     headers={"Content-Type": "application/json"} if body is not None else {})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.load(answer)


@dataclass
class Target:
    """One system serving the work: where to send items, how to read and reset the work's counters."""

    name: str
    port: int
    path: str
    body: str  # the body of one request (one item)
    services: list[Service]
    stats_method: str = "GET"
    stats_port: int = 0  # where /stats and /reset are (the upstream behind meshbatch), else `port`
    marker: str | None = None
    cleanup: list[Path] = field(default_factory=list)

    def pids(self) -> list[int]:
        found: set[int] = set()
        for service in self.services:
            found |= set(process_tree(service.pid))
            found |= set(_session_members(service.pid))
        return sorted(found)

    def stats(self) -> dict[str, Any]:
        body = b"{}" if self.stats_method == "POST" else None
        data: dict[str, Any] = _request(self.port_of_stats, self.stats_method, "/stats", body)
        return data

    def reset(self) -> None:
        _request(self.port_of_stats, "POST", "/reset", b"{}")

    @property
    def port_of_stats(self) -> int:
        return self.stats_port or self.port

    def stop(self) -> None:
        for service in reversed(self.services):
            stop_everything(service, self.marker if service is self.services[-1] else None)
        for path in self.cleanup:
            shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class WorkSpec:
    model: str
    base_ms: float
    per_item_us: float
    cpu_dim: int
    max_batch: int
    max_wait_ms: float
    max_in_flight: int
    timeout_ms: int
    bentoml_max_latency_ms: int

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            **BLAS_ENV,
            "MESHBATCH_BENCH_MODEL": self.model,
            "MESHBATCH_BENCH_BASE_MS": str(self.base_ms),
            "MESHBATCH_BENCH_PER_ITEM_US": str(self.per_item_us),
            "MESHBATCH_BENCH_CPU_DIM": str(self.cpu_dim),
            "MESHBATCH_BENCH_MAX_BATCH": str(self.max_batch),
            "MESHBATCH_BENCH_MAX_LATENCY_MS": str(self.bentoml_max_latency_ms),
        }


def _wait_http(service: Service, port: int, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not service.alive():
            raise BenchError(f"{service.name} exited with {service.proc.returncode} before it was ready:\n"
                             f"{service.log_tail()}")
        try:
            status, _ = http_get(port, path)
            if status == 200:
                return
            last = f"status {status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise BenchError(f"{service.name} not ready within {timeout:.0f}s ({last})\n{service.log_tail()}")


def _start(service: Service, port: int, path: str, timeout: float, marker: str | None = None) -> None:
    try:
        _wait_http(service, port, path, timeout)
    except BaseException:
        stop_everything(service, marker)
        raise


def start_upstream(workdir: Path, cores: CorePlan, work: WorkSpec) -> tuple[Service, int]:
    port = free_port()
    argv = [*cores.prefix("proxy"), sys.executable, str(UPSTREAM), "--port", str(port), "--model", work.model,
            "--base-ms", str(work.base_ms), "--per-item-us", str(work.per_item_us), "--cpu-dim", str(work.cpu_dim)]
    service = Service(f"upstream-{work.model}", argv, workdir, env=work.env())
    _start(service, port, "/", 20.0)
    return service, port


def meshbatch_config(workdir: Path, port: int, admin: int, upstream: int, work: WorkSpec) -> Path:
    batch = {"max_items": work.max_batch, "max_wait_ms": work.max_wait_ms, "max_in_flight": work.max_in_flight,
             "codec": "json-array", "upstream_path": "/batch", "max_queue": 100_000}
    config = {
        "admin": {"listen": f"{LOOPBACK}:{admin}"},
        "listeners": [{"name": "bench", "listen": f"{LOOPBACK}:{port}", "routes": [
            {"name": "items", "match": {"path_prefix": "/item", "methods": ["POST"]}, "cluster": "upstream",
             "timeout_ms": work.timeout_ms, "batch": batch}]}],
        "clusters": [{"name": "upstream", "endpoints": [f"{LOOPBACK}:{upstream}"]}],
    }
    path = workdir / f"batching-{work.model}.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def start_target(name: str, workdir: Path, cores: CorePlan, work: WorkSpec, item: str) -> Target:
    if name == "direct":
        upstream, port = start_upstream(workdir, cores, work)
        return Target(name, port, "/item", item, [upstream])
    if name == "meshbatch":
        upstream, up_port = start_upstream(workdir, cores, work)
        port, admin = free_port(), free_port()
        config = meshbatch_config(workdir, port, admin, up_port, work)
        try:
            mesh = Service(f"meshbatch-{work.model}", [*cores.prefix("proxy"), meshbatch_bin(), "run", "--config",
                                                        str(config)], workdir)
            _start(mesh, admin, "/ready", 30.0)
        except BaseException:
            stop_everything(upstream)
            raise
        return Target(name, port, "/item", item, [upstream, mesh], stats_port=up_port)
    if name == "ray-serve":
        return _start_ray(workdir, cores, work, item)
    if name == "bentoml":
        return _start_bentoml(workdir, cores, work, item)
    raise BenchError(f"unknown target {name}")


def _start_ray(workdir: Path, cores: CorePlan, work: WorkSpec, item: str) -> Target:
    spec = PEERS["ray-serve"]
    port = free_port()
    # Ray keeps unix sockets in its session directory: the path must stay short.
    temp = Path(tempfile.mkdtemp(prefix="mbray-", dir="/tmp"))
    argv = [*cores.prefix("proxy"), str(peer_python(spec)), str(SERVICES / "ray_serve_app.py"), "--port", str(port),
            "--temp-dir", str(temp), "--max-batch-size", str(work.max_batch), "--batch-wait-ms",
            str(work.max_wait_ms), "--max-concurrent-batches", str(work.max_in_flight)]
    env = {**work.env(), "RAY_USAGE_STATS_ENABLED": "0", "RAY_worker_niceness": "0",
           "PYTHONPATH": str(BENCH_DIR)}
    service = Service(f"ray-serve-{work.model}", argv, workdir, env=env)
    try:
        _start(service, port, "/stats", 180.0, marker=str(temp))
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return Target("ray-serve", port, "/item", item, [service], marker=str(temp), cleanup=[temp])


def _start_bentoml(workdir: Path, cores: CorePlan, work: WorkSpec, item: str) -> Target:
    spec = PEERS["bentoml"]
    port = free_port()
    home = workdir / "bentoml-home"
    home.mkdir(exist_ok=True)
    argv = [*cores.prefix("proxy"), str(peer_python(spec)), "-m", "bentoml", "serve", "bentoml_service:Batching",
            "--host", LOOPBACK, "--port", str(port), "--working-dir", str(SERVICES)]
    env = {**work.env(), "BENTOML_DO_NOT_TRACK": "true", "BENTOML_HOME": str(home), "PYTHONPATH": str(BENCH_DIR)}
    service = Service(f"bentoml-{work.model}", argv, workdir, env=env)
    _start(service, port, "/readyz", 120.0)
    return Target("bentoml", port, "/item", '{"items": [' + item + "]}", [service], stats_method="POST")


def available(names: Iterable[str], install: bool, log: Callable[[str], None]) -> dict[str, str]:
    """For each requested peer: its version, or the reason it is left out ("not installed: ...")."""
    found: dict[str, str] = {}
    for name in names:
        spec = PEERS[name]
        version, reason = install_peer(spec, log) if install else peer_status(spec)
        found[name] = version if version is not None else f"not installed: {reason}"
    return found
