"""gRPC upstreams for the proxying tests: a real grpcio server, and a hostile HTTP/2 one.

`GrpcUpstream` serves, with raw bytes as messages (no generated code), the methods of `test.Echo` (and the same
as `retry.Echo`):

- `Unary`: the request back; initial metadata `x-echo` (the caller's `x-meta`, `-` without), trailing metadata
  `x-trail: done` and `x-upstream: NAME`; a request `abort:CODE:TEXT` ends with that status;
- `Budget`, `Slow`: the `grpc-timeout` it received, in seconds, as text (`none` without one), after sleeping
  the `sleep:MS` of the request;
- `Stream`: server streaming: the request `N` gives N messages `0`, `1`, ...;
- `Bidi`: each message back, upper-cased;
- `Collect`: client streaming: each message is put on `received` as it arrives; the answer is the messages
  joined by `,`; how each call ended goes on `ended` (`done`, or `cancelled` when its client went away);

plus grpc.health.v1.Health (grpcio-health-checking's servicer: `set_serving`), and `fail_with`: a status every
call ends with (UNAVAILABLE for a retry test). It counts the calls it took (`calls`).

`HostileGrpc` is an HTTP/2 server (h2, a thread per connection) whose answers break gRPC's rules by path:
`/hostile.H/HugeMessage` (trailers-only, grpc-status 13 with a grpc-message of `size` bytes),
`/hostile.H/BadStatus` (a message, then grpc-status `banana`), `/hostile.H/NoTrailers` (a message, and the
stream ends without trailers); `/hostile.H/LargeBadStatus` and `/hostile.H/LargeNoTrailers` do the same after a
message of 50 kB (an answer a proxy with a smaller buffer limit streams).
"""

from __future__ import annotations

import contextlib
import queue
import socket
import socketserver
import threading
import time
from concurrent import futures
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from meshbatch.grpc.framing import frame


class GrpcUpstream:
    def __init__(self, name: str = "grpc", credentials: grpc.ServerCredentials | None = None) -> None:
        self.name = name
        self.calls = 0
        self.fail_with: grpc.StatusCode | None = None
        self.budgets: list[str] = []
        self._lock = threading.Lock()
        self.received: queue.Queue[bytes] = queue.Queue()
        self.ended: queue.Queue[str] = queue.Queue()
        self.health = health.HealthServicer()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(self._unary),
            "Budget": grpc.unary_unary_rpc_method_handler(self._budget),
            "Slow": grpc.unary_unary_rpc_method_handler(self._budget),
            "Stream": grpc.unary_stream_rpc_method_handler(self._stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(self._bidi),
            "Collect": grpc.stream_unary_rpc_method_handler(self._collect),
        }
        self.server.add_generic_rpc_handlers(tuple(grpc.method_handlers_generic_handler(name, handlers)
                                                   for name in ("test.Echo", "retry.Echo")))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        where = "127.0.0.1:0"
        self.port = (self.server.add_secure_port(where, credentials) if credentials is not None
                     else self.server.add_insecure_port(where))
        self.address = f"127.0.0.1:{self.port}"
        self.set_serving(True)

    def start(self) -> GrpcUpstream:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=None)

    def set_serving(self, serving: bool, service: str = "") -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        self.health.set(service, status)

    def _count(self, context: grpc.ServicerContext) -> None:
        with self._lock:
            self.calls += 1
        if self.fail_with is not None:
            context.abort(self.fail_with, f"{self.name} fails")

    def _unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._count(context)
        meta = dict(context.invocation_metadata())
        context.send_initial_metadata((("x-echo", str(meta.get("x-meta", "-"))),))
        context.set_trailing_metadata((("x-trail", "done"), ("x-upstream", self.name)))
        if request.startswith(b"abort:"):
            _, code, text = request.decode().split(":", 2)
            context.abort(grpc.StatusCode[code], text)
        return request

    def _budget(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._count(context)
        remaining = context.time_remaining()
        text = "none" if remaining is None or remaining > 1e6 else f"{remaining:.3f}"
        with self._lock:
            self.budgets.append(text)
        if request.startswith(b"sleep:"):
            time.sleep(int(request[6:]) / 1000)
        return text.encode()

    def _stream(self, request: bytes, context: grpc.ServicerContext) -> Any:
        self._count(context)
        for i in range(int(request)):
            yield str(i).encode()

    def _collect(self, requests: Any, context: grpc.ServicerContext) -> bytes:
        self._count(context)
        got: list[bytes] = []
        try:
            for message in requests:
                got.append(message)
                self.received.put(message)
        except Exception:
            self.ended.put("cancelled")
            raise
        if not context.is_active():
            self.ended.put("cancelled")
            return b""
        self.ended.put("done")
        return b",".join(got)

    def _bidi(self, requests: Any, context: grpc.ServicerContext) -> Any:
        self._count(context)
        for message in requests:
            yield message.upper()


class _HostileHandler(socketserver.BaseRequestHandler):
    server: _HostileServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        paths: dict[int, str] = {}
        with contextlib.suppress(OSError):
            while True:
                data = sock.recv(65_536)
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        paths[event.stream_id] = dict(event.headers).get(b":path", b"").decode()
                    elif isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        self._answer(conn, event.stream_id, paths.pop(event.stream_id, ""))
                sock.sendall(conn.data_to_send())

    def _answer(self, conn: h2.connection.H2Connection, sid: int, path: str) -> None:
        head = [(":status", "200"), ("content-type", "application/grpc")]
        if path.endswith("/HugeMessage"):
            conn.send_headers(sid, [*head, ("grpc-status", "13"), ("grpc-message", "m" * self.server.size)],
                              end_stream=True)
        elif path.endswith("BadStatus"):
            conn.send_headers(sid, head)
            self._message(conn, sid, b"L" * 50_000 if "/Large" in path else b"half")
            conn.send_headers(sid, [("grpc-status", "banana")], end_stream=True)
        else:  # NoTrailers
            conn.send_headers(sid, head)
            self._message(conn, sid, b"L" * 50_000 if "/Large" in path else b"no status")
            conn.end_stream(sid)

    @staticmethod
    def _message(conn: h2.connection.H2Connection, sid: int, message: bytes) -> None:
        data = frame(message)
        size = conn.max_outbound_frame_size  # (the proxy's windows are larger than these answers)
        for start in range(0, len(data), size):
            conn.send_data(sid, data[start:start + size])


class _HostileServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    size = 20_000


class HostileGrpc:
    def __init__(self, message_size: int = 20_000) -> None:
        self.server = _HostileServer(("127.0.0.1", 0), _HostileHandler)
        self.server.size = message_size
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> HostileGrpc:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


__all__ = ["GrpcUpstream", "HostileGrpc"]
