"""The running proxy: listeners, the admin listener, reload (SIGHUP) and drain (SIGTERM).

Reload builds a new snapshot from the file, validated in a child process (runtime/validation.py); a config with
errors is rejected (its errors logged) and the old snapshot keeps serving, as it does until the child answers.
Listeners are kept by (name, listen address): a kept listener keeps its socket and its open connections, which
pick up the new routes with their next request.

Drain: stop accepting, answer /ready with 503, close idle keep-alive connections, flush batch queues, let
requests in flight finish within `drain_timeout_ms`, then exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshbatch.admin.api import AdminApi
from meshbatch.config import plain
from meshbatch.config.problems import ConfigError
from meshbatch.http import server as http_server
from meshbatch.http.forwarded import Trust
from meshbatch.http.limits import ParserLimits
from meshbatch.http.paths import PathRules
from meshbatch.http.server import Dispatch, ListenerState, ServerSettings, serve_handler
from meshbatch.http2.accept import protocol_factory
from meshbatch.http2.limits import H2Limits
from meshbatch.runtime.announce import announce_line
from meshbatch.runtime.autocanary import AutoCanaries
from meshbatch.runtime.ingest import start_ingest, stop_ingest
from meshbatch.runtime.listener import ListenerStack
from meshbatch.runtime.observability import Observability
from meshbatch.runtime.pipelines import commit_pipelines, stop_pipelines
from meshbatch.runtime.security import Security, check_tls_switch
from meshbatch.runtime.settle import settle
from meshbatch.runtime.snapshot import Snapshot, abandon, build, retire, start_clusters, stop_clusters
from meshbatch.runtime.validation import validate, validate_async
from meshbatch.security.admin import exposure_warnings
from meshbatch.security.listener import ServerTls, open_tls_server
from meshbatch.telemetry.access_log import Observer
from meshbatch.telemetry.build import register_build_info
from meshbatch.telemetry.loop import LoopMonitor
from meshbatch.telemetry.metrics import Counter, Metric, Registry
from meshbatch.telemetry.requests import RequestStats
from meshbatch.upstream.endpoint import split_address
from meshbatch.upstream.metrics import upstream_metrics

log = logging.getLogger("meshbatch")
DRAIN_IDLE_GRACE = 0.25  # seconds an idle keep-alive connection stays open once a drain began (see `drain`)


@dataclass(slots=True)
class OpenListener:
    name: str
    listen: str
    state: ListenerState
    server: asyncio.AbstractServer
    address: str


def parser_limits(listener: plain.Listener) -> ParserLimits:
    """What a listener's parser enforces: limits, path normalisation, forwarded-header trust."""
    limits, paths = listener.limits, listener.path_normalization
    return ParserLimits(
        limits.max_header_bytes, limits.max_body_bytes, limits.max_headers,
        PathRules(paths.normalize, paths.merge_slashes, paths.escaped_slashes, paths.path_parameters),
        Trust(listener.edge, listener.xff_num_trusted_hops, listener.preserve_external_request_id,
              listener.preserve_external_trace),
    )


def h2_limits(listener: plain.Listener) -> H2Limits:
    """A listener's HTTP/2 settings and attack limits (its `http2` block, its header limit)."""
    h2 = listener.http2
    return H2Limits(
        h2.max_concurrent_streams, h2.initial_window_size, h2.connection_window_size, h2.max_frame_size,
        listener.limits.max_header_bytes, h2.header_table_size, h2.max_streams_per_connection, h2.max_resets,
        h2.max_settings, h2.max_pings, h2.max_empty_frames, h2.window_ms / 1000,
    )


def _settings(listener: plain.Listener, dispatch: Dispatch, stats: Observer) -> ServerSettings:
    limits = listener.limits
    return ServerSettings(
        dispatch=dispatch,
        parser_limits=parser_limits(listener),
        header_timeout=limits.header_timeout_ms / 1000,
        idle_timeout=limits.idle_timeout_ms / 1000,
        max_connections=limits.max_connections,
        max_pipelined=limits.max_pipelined,
        max_pipelined_bytes=limits.max_pipelined_bytes,
        max_buffer_bytes=limits.max_buffer_bytes,
        send_timeout=limits.send_timeout_ms / 1000,
        request_id_in_response=listener.request_id_in_response,
        observe=stats,
        codec=listener.codec, http2=h2_limits(listener), uploads=True,  # (runtime/listener.py takes them)
    )


def _server_tls(state: ListenerState) -> ServerTls | None:
    tls = state.settings.tls
    assert tls is None or isinstance(tls, ServerTls)
    return tls


class Proxy:
    def __init__(self, config_path: str | Path, loop: asyncio.AbstractEventLoop,
                 announce: Callable[[str], None] | None = None,
                 adapt: Callable[[plain.Config], plain.Config] = lambda config: config,
                 config: plain.Config | None = None) -> None:
        self.config_path = Path(config_path)
        self.adapt = adapt  # what a worker of `run --workers N` changes in each config it loads (runtime/workers)
        self.loop = loop
        self.metrics = Registry()
        self.announce = announce or announce_line
        self.listeners: dict[tuple[str, str], OpenListener] = {}
        self.admin: OpenListener | None = None
        self._draining = False
        self._done = asyncio.Event()
        self._reloading = asyncio.Lock()
        self._stats: dict[str, RequestStats] = {}
        self.security = Security(loop, self.metrics)  # certificates, JWT keys, identity rates: kept across reloads
        config = config or validate(self.config_path)  # in a child process (`run` gives the one it validated so)
        self.snapshot: Snapshot = build(adapt(config), loop, self.metrics, security=self.security)
        self.observability = Observability(self.snapshot.config, self.metrics)  # access log, tracing, recorders
        self.observability.attach(self.snapshot.batchers.values(), self.snapshot.ingest.values())
        self.autocanaries = AutoCanaries(self.metrics)  # canaries that find their candidate: their sweeps
        self.metrics.gauge("meshbatch_upstream_connections", "Open upstream connections by cluster and state.",
                           ["cluster", "endpoint", "state"], self._connection_gauge)
        self.metrics.gauge("meshbatch_downstream_connections", "Open downstream connections by listener.",
                           ["listener"], lambda: [((o.name,), len(o.state.connections))
                                                  for o in self.listeners.values()])
        self.metrics.add_source(self._upstream_metrics)
        self.metrics.add_source(self._abort_metrics)
        self.metrics.add_source(lambda: upstream_metrics(self.snapshot.clusters.values()))
        self.reloads = self.metrics.counter("meshbatch_config_reloads", "Config reloads by result.", ["result"])
        for result in ("ok", "rejected"):
            self.reloads.inc((result,), 0)  # both series exist from the start, at 0
        register_build_info(self.metrics, http_server.__file__)
        self.loop_monitor = LoopMonitor(loop, self.metrics)  # event-loop lag and live tasks (off the hot path)

    def stats(self, listener: str) -> RequestStats:
        """One accounting object per listener name, kept across reloads (counters never reset)."""
        stats = self._stats.get(listener)
        if stats is None:
            stats = self._stats[listener] = RequestStats(listener, self.metrics)
        return stats

    def request_stats(self) -> dict[str, RequestStats]:
        """The request counters of every listener, by name."""
        return dict(self._stats)

    def _listener_settings(self, listener: plain.Listener, snapshot: Snapshot) -> ServerSettings:
        """A listener's settings: its request stack (with SERVER spans when tracing is on), its observer (access
        logs when configured), its TLS accept mode and connection guard (mTLS, rates)."""
        observe = self.observability.observer(listener.name, self.stats(listener.name))
        stack = ListenerStack(listener.name, snapshot.routes[listener.name], snapshot.checks[listener.name],
                              self.loop, self.observability.request_spans())
        return self.security.server_settings(listener, _settings(listener, stack, observe))

    @property
    def draining(self) -> bool:
        return self._draining

    def _connection_gauge(self) -> list[tuple[tuple[str, ...], float]]:
        out: list[tuple[tuple[str, ...], float]] = []
        for cluster in self.snapshot.clusters.values():
            for ep in cluster.endpoints:
                out.append(((cluster.name, ep.address, "active"), ep.pool.active))
                out.append(((cluster.name, ep.address, "idle"), ep.pool.idle))
        return out

    def _upstream_metrics(self) -> Iterator[Metric]:
        errors = Counter("meshbatch_upstream_errors_total", "Failed upstream exchanges by cluster and reason.",
                         ["cluster", "reason"])
        requests = Counter("meshbatch_upstream_requests_total", "Upstream exchanges by cluster and endpoint.",
                           ["cluster", "endpoint"])
        for cluster in self.snapshot.clusters.values():
            for reason, n in cluster.upstream_errors.items():
                errors.values[(cluster.name, reason)] = n
            for ep in cluster.endpoints:
                requests.values[(cluster.name, ep.address)] = ep.requests
        yield errors
        yield requests

    def _abort_metrics(self) -> Iterator[Metric]:
        aborts = Counter("meshbatch_downstream_aborts_total",
                         "Client connections aborted with output unsent or an answer cut, by listener and reason.",
                         ["listener", "reason"])
        for o in self.listeners.values():
            for reason, n in o.state.aborts.items():
                key = (o.name, reason)
                aborts.values[key] = aborts.values.get(key, 0) + n
        yield aborts

    # start ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        config = self.snapshot.config
        self.loop_monitor.start()
        self.observability.start()
        await start_clusters(self.snapshot)  # discovery and health checks; first endpoint sets
        await start_ingest(self.snapshot.ingest)  # ingest logs open and recover before anything is accepted
        commit_pipelines(self.metrics, applied=True)  # pipeline worker processes start (off the event loop)
        if config.admin is not None:
            for warning in exposure_warnings(config.admin.listen, config.admin.token):  # whatever the log level
                self.announce(f"meshbatch: WARNING: {warning}")
            admin_api = AdminApi(self)
            admin_api.dashboard.start()  # the dashboard's history: one sample a second
            state = ListenerState(ServerSettings(dispatch=serve_handler(admin_api, self.loop), header_timeout=5,
                                                 idle_timeout=30, codec="http1"))
            self.admin = await self._open("admin", config.admin.listen, state)
        for listener in config.listeners:
            await self._open_listener(listener)
        self.autocanaries.sync(self.snapshot.batchers)
        # Before "ready": whoever sends SIGHUP or SIGTERM on seeing it must find the handlers in place.
        self.install_signal_handlers()
        # pid: where `kill -HUP` (reload) and `kill -TERM` (drain) go.
        self.announce(f"meshbatch: ready config={self.config_path} version={self.snapshot.version} "
                      f"pid={os.getpid()}")

    async def _open_listener(self, listener: plain.Listener) -> None:
        state = ListenerState(self._listener_settings(listener, self.snapshot))
        self.listeners[(listener.name, listener.listen)] = await self._open(
            listener.name, listener.listen, state, listener.reuse_port)

    async def _open(self, name: str, listen: str, state: ListenerState, reuse_port: bool = False) -> OpenListener:
        host, port = split_address(listen)
        server: asyncio.AbstractServer
        if state.settings.tls is not None:  # a `tls` block: connections sorted and handshaken by meshbatch.security
            server = tls_server = await open_tls_server(
                self.loop, host, port, protocol_factory(state, self.loop), lambda: _server_tls(state),
                lambda: state.settings.max_connections, reuse_port=reuse_port)
            sock = tls_server.sockets[0].getsockname()
        else:
            # reuse_port (SO_REUSEPORT): a successor process binds the same port while this one still listens
            opened = await self.loop.create_server(protocol_factory(state, self.loop), host, port,
                                                   reuse_address=True, reuse_port=reuse_port or None, backlog=2048)
            server, sock = opened, opened.sockets[0].getsockname()
        address = f"[{sock[0]}]:{sock[1]}" if ":" in sock[0] else f"{sock[0]}:{sock[1]}"
        self.announce(f"meshbatch: listening name={name} address={address}")
        return OpenListener(name, listen, state, server, address)

    def listeners_summary(self) -> list[dict[str, Any]]:
        return [
            {"name": o.name, "address": o.address, "connections": len(o.state.connections),
             "accepted": o.state.accepted_connections, "rejected": o.state.rejected_connections,
             "aborted": dict(o.state.aborts), "h2c_upgrades": o.state.upgrades}
            for o in self.listeners.values()
        ]

    # reload --------------------------------------------------------------------------------------
    async def reload(self) -> bool:
        async with self._reloading:
            if self._draining:
                return False
            try:
                # In a child process: the data plane serves meanwhile, and one that hangs is killed in time.
                config = self.adapt(await validate_async(self.config_path))
            except ConfigError as exc:
                self.reloads.inc(("rejected",))
                log.error("reload rejected, the running config stays: %d error(s)", len(exc.problems))
                for problem in exc.problems:
                    log.error("  %s", problem)
                self.announce(f"meshbatch: reload rejected errors={len(exc.problems)}")
                return False
            try:
                await self._apply(config)
            except OSError as exc:
                commit_pipelines(self.metrics, applied=False)
                self.reloads.inc(("rejected",))
                log.error("reload rejected: %s", exc)
                self.announce(f"meshbatch: reload rejected error={exc}")
                return False
            commit_pipelines(self.metrics, applied=True)
            self.reloads.inc(("ok",))
            self.announce(f"meshbatch: reloaded version={self.snapshot.version}")
            return True

    async def _apply(self, config: plain.Config) -> None:
        old = self.snapshot
        check_tls_switch({k: o.state.settings.tls is not None for k, o in self.listeners.items()}, config)
        new = build(config, self.loop, self.metrics, previous=old, security=self.security)
        await start_clusters(new, old)  # new clusters warm up (first discovery) before they serve
        wanted = {(lst.name, lst.listen): lst for lst in config.listeners}
        opened: list[OpenListener] = []
        try:
            for key, listener in wanted.items():
                if key not in self.listeners:
                    state = ListenerState(self._listener_settings(listener, new))
                    opened.append(await self._open(listener.name, listener.listen, state, listener.reuse_port))
        except OSError:
            for item in opened:
                item.server.close()
            abandon(new, old)
            raise
        # A changed ingest route hands its log file over: the old one drains, then its successor opens it
        # (last, after everything that can fail: a route drained for nothing would refuse until the next reload).
        await stop_ingest(old.ingest, new.ingest, config.drain_timeout_ms / 1000)
        try:
            await start_ingest(new.ingest, old.ingest)
        except OSError:
            for item in opened:
                item.server.close()
            await stop_ingest(new.ingest, old.ingest, 1.0)
            abandon(new, old)
            raise
        self.snapshot = new
        self.observability.update(config)
        self.observability.attach(new.batchers.values(), new.ingest.values())
        self.autocanaries.sync(new.batchers)  # a replaced route's sweep is cancelled (its process killed)
        stop_clusters(old, new)
        for item in opened:
            self.listeners[(item.name, item.listen)] = item
        for key, item in list(self.listeners.items()):
            if key in wanted:
                item.state.settings = self._listener_settings(wanted[key], new)
            else:
                del self.listeners[key]
                item.server.close()
                item.state.drain()
        self.security.retain(config)  # stop watching identity files the new config no longer names
        self.loop.create_task(retire(old, new, config.drain_timeout_ms / 1000))

    # drain ---------------------------------------------------------------------------------------
    async def drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        # First thing: the listening sockets close, so a successor bound to the same port (reuse_port) gets
        # every new connection; then the requests in flight here drain.
        for item in self.listeners.values():
            item.server.close()
        await self.autocanaries.close()  # no canary starts while draining
        timeout = self.snapshot.config.drain_timeout_ms / 1000
        self.announce(f"meshbatch: draining timeout={timeout}s")
        deadline = self.loop.time() + timeout
        # Answers now carry `Connection: close`. An idle keep-alive connection is closed only after a short grace:
        # closed at once, a request its client is sending at that instant would meet a reset, unread. Within the
        # grace, a client's next request is still served (batched as usual), and its answer closes the connection.
        for item in self.listeners.values():
            item.state.drain(close_idle=False)
        grace = min(DRAIN_IDLE_GRACE, timeout / 4)
        if grace > 0 and any(item.state.connections for item in self.listeners.values()):
            await asyncio.sleep(grace)
        for item in self.listeners.values():
            item.state.close_idle()
        batchers = list(self.snapshot.batchers.values())
        if batchers:
            left = max(0.0, deadline - self.loop.time())
            await asyncio.gather(*(b.drain(left) for b in batchers), return_exceptions=True)
        # Requests in flight finish; their connections close after the answer (draining disables keep-alive).
        waits = [item.state.emptied.wait() for item in self.listeners.values()]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await asyncio.gather(*waits)
        left = sum(item.state.active_requests for item in self.listeners.values())
        # Ingest: deliveries in flight finish, pending log commits are written; the backlog waits in the log.
        await stop_ingest(self.snapshot.ingest, None, max(1.0, deadline - self.loop.time()))
        await stop_pipelines(self.metrics, max(1.0, deadline - self.loop.time()))
        for item in self.listeners.values():
            for conn in list(item.state.connections):
                conn.close_if_idle()
        if self.admin is not None:
            self.admin.server.close()
        for cluster in self.snapshot.clusters.values():
            cluster.close()
        await self.observability.close()  # buffered access-log lines written, queued spans exported
        self.loop_monitor.stop()
        self.announce(f"meshbatch: drained unfinished={left}")
        self._done.set()

    async def wait_closed(self) -> None:
        await self._done.wait()

    def install_signal_handlers(self) -> None:
        self.loop.add_signal_handler(signal.SIGTERM, lambda: self.loop.create_task(self.drain()))
        self.loop.add_signal_handler(signal.SIGINT, lambda: self.loop.create_task(self.drain()))
        self.loop.add_signal_handler(signal.SIGHUP, lambda: self.loop.create_task(self.reload()))


async def serve(config_path: str | Path, config: plain.Config | None = None) -> int:
    loop = asyncio.get_running_loop()
    proxy = Proxy(config_path, loop, config=config)
    await proxy.start()
    settle()  # what start built frozen out of the collector's sight, what it freed given back (runtime/settle.py)
    await proxy.wait_closed()
    return 0


__all__ = ["OpenListener", "Proxy", "serve"]
