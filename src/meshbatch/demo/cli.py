"""`meshbatch demo`: the example mesh, run locally with no infrastructure.

Two consumer replicas store events in a database (SQLite by default, PostgreSQL with `--database`); the
batching proxy listens on localhost:8080 with a route for `Host: service`; a producer sends single JSON events.
The same load runs twice, straight to the consumers one request per event, then through the proxy, and a table
compares them. Exits non-zero if any acknowledged event is missing from the database or stored twice.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from meshbatch.demo.producer import RunResult, produce
from meshbatch.demo.store import open_store

CONFIG = """\
admin:
  listen: 127.0.0.1:{admin_port}
listeners:
  - name: ingress
    listen: 127.0.0.1:{port}
    routes:
      - name: events
        match: {{host: service, path: /events, methods: [POST]}}
        cluster: consumer
        timeout_ms: 5000
        batch:
          max_items: 64
          max_wait_ms: 5
          codec: json-array
          upstream_path: /events/batch
          max_in_flight: 4
          max_queue: 10000
      - name: service
        match: {{host: service}}
        cluster: consumer
clusters:
  - name: consumer
    endpoints: [{endpoints}]
    lb: least_request
"""

GRPC_ROUTE = """\
      - name: events-grpc
        match: {path: /meshbatch.demo.Events/Store}
        cluster: consumer-grpc
        timeout_ms: 5000
        batch:
          codec: grpc
          max_items: 64
          max_wait_ms: 5
          max_in_flight: 4
          max_queue: 10000
"""

GRPC_CLUSTER = """\
  - name: consumer-grpc
    endpoints: [{endpoints}]
    protocol: http2
    lb: least_request
"""


def mesh_config(port: int, admin_port: int, consumers: list[tuple[str, int]],
                grpc_consumers: list[tuple[str, int]]) -> str:
    """The proxy's config: the HTTP routes, and with gRPC consumers a batch route for their Store method."""
    text = CONFIG.format(port=port, admin_port=admin_port, endpoints=", ".join(f"{h}:{p}" for h, p in consumers))
    if grpc_consumers:
        text = text.replace("    routes:\n", "    routes:\n" + GRPC_ROUTE, 1)
        text += GRPC_CLUSTER.format(endpoints=", ".join(f"{h}:{p}" for h, p in grpc_consumers))
    return text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get_json(url: str, host: str | None = None) -> Any:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return orjson.loads(response.read())


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                response.read()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


@dataclass
class Mesh:
    workdir: Path
    database: str
    port: int
    admin_port: int
    consumers: list[tuple[str, int]]
    processes: list[subprocess.Popen[bytes]]
    grpc_consumers: list[tuple[str, int]] = field(default_factory=list)  # `--grpc`: the same replicas' gRPC ports

    def consumer_stats(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for host, port in self.consumers:
            for key, value in _get_json(f"http://{host}:{port}/stats").items():
                total[key] = total.get(key, 0) + int(value)
        return total

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def start_mesh(database: str | None, port: int, workdir: Path, replicas: int = 2, grpc: bool = False) -> Mesh:
    database = database or f"sqlite:///{workdir / 'demo.db'}"
    processes: list[subprocess.Popen[bytes]] = []
    consumers = [("127.0.0.1", _free_port()) for _ in range(replicas)]
    grpc_consumers = [("127.0.0.1", _free_port()) for _ in range(replicas)] if grpc else []
    mesh = Mesh(workdir, database, port, _free_port(), consumers, processes, grpc_consumers)
    asyncio.run(_prepare(database))  # the schema once, before replicas race to create it
    try:
        for i, (host, cport) in enumerate(consumers):
            grpc_port = ["--grpc-port", str(grpc_consumers[i][1])] if grpc else []
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "meshbatch.demo.consumer", "--host", host, "--port", str(cport),
                 "--database", database, "--replica", f"consumer-{i + 1}", *grpc_port],
                stdout=subprocess.DEVNULL, stderr=open(workdir / f"consumer-{i + 1}.log", "wb")))  # noqa: SIM115
        for (host, cport), process in zip(consumers, processes, strict=True):
            _wait_http(f"http://{host}:{cport}/health", process)
        config = workdir / "meshbatch.yaml"
        config.write_text(mesh_config(port, mesh.admin_port, consumers, grpc_consumers))
        proxy = subprocess.Popen([sys.executable, "-m", "meshbatch", "run", "--config", str(config)],
                                 stdout=subprocess.DEVNULL, stderr=open(workdir / "proxy.log", "wb"))  # noqa: SIM115
        processes.append(proxy)
        _wait_http(f"http://127.0.0.1:{mesh.admin_port}/ready", proxy)
    except BaseException:
        mesh.stop()
        raise
    return mesh


async def _prepare(database: str) -> None:
    store = open_store(database)
    await store.open()
    await store.close()


async def _run_load(mesh: Mesh, duration: float, concurrency: int, console: Console) -> list[RunResult]:
    tag = os.urandom(3).hex()
    grpc = bool(mesh.grpc_consumers)
    plans = [
        ("direct, one call per event", f"direct-{tag}", mesh.grpc_consumers or mesh.consumers, "consumer"),
        ("through meshbatch", f"batched-{tag}", [("127.0.0.1", mesh.port)], "service"),
    ]
    results: list[RunResult] = []
    with Progress(TextColumn("{task.description:<34}"), BarColumn(), TextColumn("{task.fields[events]:>8} events"),
                  TimeRemainingColumn(), console=console, transient=False) as progress:
        loop = asyncio.get_running_loop()
        for label, run, targets, host in plans:
            task = progress.add_task(label, total=duration, events=0)
            before = mesh.consumer_stats()
            started = loop.time()
            sent = [0]

            def tick(n: int, task: Any = task, started: float = started, sent: list[int] = sent) -> None:
                sent[0] += n
                if sent[0] % 256 == 0:
                    progress.update(task, completed=min(duration, loop.time() - started), events=sent[0])

            if grpc:
                from meshbatch.demo.producer_grpc import produce_grpc

                result = await produce_grpc(label, run, targets, duration, concurrency, tick)
            else:
                result = await produce(label, run, targets, "/events", host, duration, concurrency, tick)
            progress.update(task, completed=duration, events=result.ok)
            after = mesh.consumer_stats()
            calls = sum(after[k] - before.get(k, 0) for k in ("single_requests", "batch_requests"))
            result.upstream_calls = calls
            results.append(result)
    return results


async def _verify(database: str, results: list[RunResult]) -> list[tuple[int, int]]:
    store = open_store(database)
    await store.open()
    try:
        return [await store.count(r.run) for r in results]
    finally:
        await store.close()


def _table(results: list[RunResult], stored: list[tuple[int, int]]) -> tuple[Table, bool]:
    table = Table(title="meshbatch demo: the same load, direct and batched")
    for column in ("run", "events/s", "p50 ms", "p99 ms", "upstream calls", "mean batch", "acknowledged",
                   "rows stored", "failed", "check"):
        table.add_column(column, justify="right" if column != "run" else "left", no_wrap=True)
    all_ok = True
    for result, (rows, distinct) in zip(results, stored, strict=True):
        calls = result.upstream_calls
        failed = sum(result.failed.values())
        ok = rows == result.ok and distinct == rows
        all_ok &= ok
        table.add_row(result.name, f"{result.rate:,.0f}", f"{result.percentile(0.5) * 1000:.2f}",
                      f"{result.percentile(0.99) * 1000:.2f}", f"{calls:,}",
                      f"{result.ok / calls:.1f}" if calls else "-", f"{result.ok:,}", f"{rows:,}",
                      f"{failed:,}" + (f" {result.failed}" if failed else ""),
                      "[green]ok[/green]" if ok else "[red]LOST or DUPLICATED[/red]")
    return table, all_ok


def verdict(direct: RunResult, batched: RunResult) -> str:
    """What the table says about latency, in words: the plot's curves hide a worse batched p99 at low load."""
    d50, d99 = direct.percentile(0.5) * 1000, direct.percentile(0.99) * 1000
    b50, b99 = batched.percentile(0.5) * 1000, batched.percentile(0.99) * 1000
    speed = f"{batched.rate / direct.rate:.1f}x the events/s" if direct.rate else "the events/s"
    calls = (f" in {batched.upstream_calls:,} upstream calls instead of {direct.upstream_calls:,}"
             if batched.upstream_calls and direct.upstream_calls else "")
    if b99 > d99:
        return (f"Batched: {speed}{calls}, but its p99 is {b99 - d99:.1f} ms worse ({b99:.1f} vs {d99:.1f} ms; p50 "
                f"{b50:.1f} vs {d50:.1f} ms): an item waits for its batch to fill or its wait to pass, which costs "
                f"the most when few callers are waiting at once. Lower `max_wait_ms`, or raise `max_in_flight` so "
                f"batches leave sooner, when the tail matters more than the upstream's load.")
    return (f"Batched: {speed}{calls}, and a better tail too: p99 {b99:.1f} vs {d99:.1f} ms (p50 {b50:.1f} vs "
            f"{d50:.1f} ms): the upstream, no longer queueing one call per event, answers sooner than the batch "
            f"wait costs.")


def port_busy(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something already listens on (or holds) `host:port`, so the proxy could not bind it."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _log_tail(workdir: Path, lines: int = 5) -> str:
    """The last lines of the mesh's logs, to say why a process exited at start."""
    tails = []
    for log in sorted(workdir.glob("*.log")):
        text = log.read_text(errors="replace").strip().splitlines()[-lines:]
        if text:
            tails.append(f"{log.name}:\n  " + "\n  ".join(text))
    return "\n".join(tails)


def run_demo(args: argparse.Namespace) -> int:
    """The demo; its temporary work directory is removed on exit unless `args.keep`."""
    console = Console(width=max(132, Console().width))
    if port_busy(args.port):
        console.print(f"[red]port {args.port} is busy[/red]: another process listens on 127.0.0.1:{args.port}; "
                      f"choose another port with --port, e.g. meshbatch demo --port {args.port + 1}")
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="meshbatch-demo-"))
    try:
        return _run_in(args, workdir, console)
    finally:
        if args.keep:
            console.print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _run_in(args: argparse.Namespace, workdir: Path, console: Console) -> int:
    grpc = bool(getattr(args, "grpc", False))
    console.print(f"[bold]meshbatch demo{' --grpc' if grpc else ''}[/bold]: 2 consumer replicas, the batching proxy "
                  f"on 127.0.0.1:{args.port}, {args.concurrency} producer "
                  f"{'gRPC calls in flight' if grpc else 'connections'}, {args.duration:.0f}s per run")
    try:
        mesh = start_mesh(args.database, args.port, workdir, grpc=grpc)
    except (RuntimeError, OSError) as exc:
        console.print(f"[red]could not start the mesh:[/red] {exc}", markup=True)
        console.print(_log_tail(workdir), markup=False, highlight=False)
        if port_busy(args.port):
            console.print(f"port {args.port} is busy; choose another with --port")
        return 1
    try:
        console.print(f"database: {mesh.database}")
        results = asyncio.run(_run_load(mesh, args.duration, args.concurrency, console))
        stored = asyncio.run(_verify(mesh.database, results))
        table, ok = _table(results, stored)
        console.print(table)
        if len(results) == 2 and results[0].rate:
            console.print(f"batched / direct events/s: [bold]{results[1].rate / results[0].rate:.1f}x[/bold]")
            console.print(verdict(results[0], results[1]), markup=False, highlight=False)
        from meshbatch.demo.plot import plot_runs

        plot_path = args.plot or str(workdir / "demo.png" if args.keep else Path.cwd() / "meshbatch-demo.png")
        plot_runs(results, plot_path)
        console.print(f"plot: {plot_path}")
        if not ok:
            console.print("[red]some acknowledged events are missing or duplicated[/red]")
        if args.serve:
            if grpc:
                console.print(f"gRPC: call /meshbatch.demo.Events/Store on 127.0.0.1:{args.port} (h2c) with a JSON "
                              f"event as the message (bytes), e.g. grpcio's channel.unary_unary(path)(b'{{...}}')",
                              markup=False, highlight=False)
            console.print(f"serving; try:\n  curl -si -H 'Host: service' http://localhost:{args.port}/events "
                          f"-d '{{\"id\": \"hello\", \"run\": \"curl\"}}'\n"
                          f"  curl -s http://127.0.0.1:{mesh.admin_port}/batchers\n"
                          f"dashboard: http://127.0.0.1:{mesh.admin_port}/dashboard\n"
                          f"terminal:  meshbatch top --admin 127.0.0.1:{mesh.admin_port}\n"
                          f"tuning:    meshbatch tune --admin 127.0.0.1:{mesh.admin_port} --route events "
                          f"--target-p99-ms 20 --plot tune.png\nCtrl-C stops.")
            try:
                signal.sigwait({signal.SIGINT, signal.SIGTERM})
            except KeyboardInterrupt:
                pass
        return 0 if ok else 1
    finally:
        mesh.stop()


__all__ = ["run_demo", "start_mesh"]
