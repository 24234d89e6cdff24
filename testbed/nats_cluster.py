"""A 3-node NATS JetStream cluster of the test's own (Debian's `nats-server`), beside the machine's server.

Each node listens on free loopback ports (clients, cluster routes, monitoring), keeps its JetStream store in
its own directory under the test's folder, and routes to the two others. A node can be SIGKILLed and started
again on the same ports and store (it catches up from the others); `leader(stream)` names the node that leads
a stream's Raft group, `wait_quorum(stream)` waits until the stream has a leader and every live node is a
current replica.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.fleet import free_port

NAME = "meshbatch-test"


def nats_server() -> str | None:
    """The `nats-server` binary (Debian installs it in /usr/sbin), or None."""
    return shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/local/sbin")


@dataclass
class Node:
    name: str
    port: int
    cluster_port: int
    http_port: int
    store: Path
    conf: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class NatsCluster:
    """Three `nats-server` processes forming one JetStream cluster; use as a context manager."""

    def __init__(self, folder: Path, size: int = 3) -> None:
        binary = nats_server()
        if binary is None:
            raise RuntimeError("nats-server is not installed (apt-get install nats-server; `make system-deps`)")
        self.binary = binary
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.nodes = [Node(f"n{i + 1}", free_port(), free_port(), free_port(), folder / f"n{i + 1}",
                           folder / f"n{i + 1}.conf", folder / f"n{i + 1}.log") for i in range(size)]
        for node in self.nodes:
            routes = ", ".join(f'"nats-route://127.0.0.1:{o.cluster_port}"' for o in self.nodes if o is not node)
            node.conf.write_text(
                f'server_name: "{node.name}"\nlisten: "127.0.0.1:{node.port}"\nhttp: "127.0.0.1:{node.http_port}"\n'
                f'jetstream {{ store_dir: "{node.store}", max_memory_store: 64MB, max_file_store: 16GB }}\n'
                f'cluster {{ name: "{NAME}", listen: "127.0.0.1:{node.cluster_port}", routes: [{routes}] }}\n')

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated (the form the `jetstream` log's `url` takes)."""
        return ",".join(self.urls)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> NatsCluster:
        for node in self.nodes:
            self.start_node(node, wait=False)
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            self._wait_ready(node, deadline)
        while not all(self._meta_leader(n) for n in self.nodes):  # streams can be created once there is one
            if time.monotonic() > deadline:
                raise RuntimeError(f"the NATS cluster elected no JetStream meta leader within {timeout}s")
            time.sleep(0.1)
        return self

    def _meta_leader(self, node: Node) -> str | None:
        """The JetStream meta group's leader as `node` knows it (its /jsz), or None."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/jsz", timeout=1) as r:
                leader = json.loads(r.read()).get("meta_cluster", {}).get("leader")
        except (OSError, ValueError):
            return None
        return str(leader) if leader else None

    def start_node(self, node: Node, wait: bool = True, timeout: float = 20.0) -> None:
        assert not node.alive, f"{node.name} is running"
        with node.log.open("ab") as log:
            node.proc = subprocess.Popen([self.binary, "-c", str(node.conf)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self._wait_ready(node, time.monotonic() + timeout)

    def kill(self, node: Node) -> float:
        """SIGKILL one node; the time.monotonic() when it is gone."""
        assert node.proc is not None
        node.proc.kill()
        node.proc.wait(10)
        return time.monotonic()

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait(5)

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_ready(self, node: Node, deadline: float) -> None:
        """The node answers /healthz (JetStream enabled and caught up as far as the server itself tells)."""
        while True:
            if not node.alive:
                raise RuntimeError(f"nats-server {node.name} exited:\n{node.log.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server {node.name} not healthy:\n"
                                   f"{node.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)

    # -- stream facts ------------------------------------------------------------------------------------
    def stream_cluster(self, stream: str) -> dict[str, Any] | None:
        """The stream's cluster info ({leader, replicas: [{name, current, offline}]}) as a live node tells it."""
        import nats

        async def ask() -> dict[str, Any] | None:
            live = [n.url for n in self.nodes if n.alive]
            nc = await nats.connect(live, connect_timeout=1, allow_reconnect=False)
            try:
                info = await nc.jetstream(timeout=2).stream_info(stream)
                cluster = info.cluster
                if cluster is None:
                    return None
                return {"leader": cluster.leader,
                        "replicas": [{"name": r.name, "current": r.current, "offline": r.offline}
                                     for r in cluster.replicas or []]}
            finally:
                await nc.close()

        try:
            return asyncio.run(ask())
        except Exception:
            return None

    def wait_new_leader(self, stream: str, old: str, timeout: float = 60.0) -> float:
        """Poll until a live node names a leader of `stream` other than `old`: the time.monotonic() then (an
        upper bound of the election's end, by at most one poll). Raises after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.stream_cluster(stream)
            if info is not None and info["leader"] not in (None, "", old):
                return time.monotonic()
            time.sleep(0.1)
        raise RuntimeError(f"stream {stream} elected no leader other than {old} within {timeout}s")

    def leftovers(self, stream: str, limit: int = 50) -> dict[str, Any]:
        """What a stream still holds (the Meshbatch-Id of up to `limit` messages) and its consumers' state:
        to tell, when a work-queue stream does not empty, whether its consumer still means to deliver them."""
        import nats
        from nats.js.errors import NotFoundError

        async def ask() -> dict[str, Any]:
            nc = await nats.connect([n.url for n in self.nodes if n.alive], connect_timeout=1,
                                    allow_reconnect=False)
            try:
                js = nc.jetstream(timeout=2)
                info = await js.stream_info(stream)
                ids: list[tuple[int, str]] = []
                for seq in range(info.state.first_seq, info.state.last_seq + 1):
                    if len(ids) >= limit:
                        break
                    try:
                        msg = await js.get_msg(stream, seq)
                    except NotFoundError:
                        continue
                    ids.append((seq, (msg.headers or {}).get("Meshbatch-Id", "")))
                consumers = {}
                for c in await js.consumers_info(stream):
                    consumers[c.name] = {"num_pending": c.num_pending, "num_ack_pending": c.num_ack_pending,
                                         "num_redelivered": c.num_redelivered,
                                         "delivered_stream_seq": c.delivered.stream_seq if c.delivered else None,
                                         "ack_floor_stream_seq": c.ack_floor.stream_seq if c.ack_floor else None}
                return {"messages": info.state.messages, "first_seq": info.state.first_seq,
                        "last_seq": info.state.last_seq, "held": ids, "consumers": consumers}
            finally:
                await nc.close()

        try:
            return asyncio.run(ask())
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}

    def leader(self, stream: str) -> Node | None:
        info = self.stream_cluster(stream)
        leader = info and info.get("leader")
        return self.node(leader) if leader else None

    def wait_quorum(self, stream: str, timeout: float = 30.0) -> dict[str, Any]:
        """Until the stream has a leader and every live node replicates it currently; its cluster info."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.stream_cluster(stream)
            if info and info.get("leader"):
                live = {n.name for n in self.nodes if n.alive}
                followers = {r["name"] for r in info["replicas"] if r["current"] and not r["offline"]}
                if live <= followers | {info["leader"]}:
                    return info
            if time.monotonic() > deadline:
                raise RuntimeError(f"stream {stream} has no healthy quorum after {timeout}s: {info}")
            time.sleep(0.1)


__all__ = ["NatsCluster", "Node", "nats_server"]
