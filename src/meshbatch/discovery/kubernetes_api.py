"""The Kubernetes API side of the EndpointSlice source: credentials, the list, the watch stream.

Credentials come from a kubeconfig file when `kubeconfig` is set; otherwise from the pod's service account
(token and CA under /var/run/secrets/kubernetes.io/serviceaccount, the token re-read as the kubelet rotates
it) when running in a cluster; otherwise from $KUBECONFIG or ~/.kube/config. The kubernetes_asyncio client
builds and signs the requests; the answers are read as plain JSON (no model objects), a watch line at a time.
The client package takes about a second to import: it is imported on a worker thread when a source first
starts, so that neither `meshbatch check` nor a proxy without Kubernetes discovery pays for it, and the event
loop does not stall (aiohttp, which it runs on, is imported late for the same reason).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from meshbatch import extras
from meshbatch.config.plain import Discovery

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_KUBECONFIG = "~/.kube/config"
PAGE = 500  # slices per list request (continued with the `continue` token)
MAX_LINE = 16 << 20  # one watch event


class ApiError(Exception):
    """The API server refused or failed a request (status 0: no answer)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}" if status else reason)
        self.status = status


class Gone(ApiError):
    """410: the resourceVersion (or continue token) is too old; list again."""


@dataclass(frozen=True, slots=True)
class Credentials:
    configuration: Any  # kubernetes_asyncio.client.Configuration
    namespace: str  # the namespace to use when the config names none
    origin: str  # "in-cluster" or the kubeconfig path


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def _client() -> Any:
    return extras.import_module("kubernetes_asyncio.client", "k8s", "discovery type 'kubernetes'")


def _config() -> Any:
    return extras.import_module("kubernetes_asyncio.config", "k8s", "discovery type 'kubernetes'")


async def load_credentials(config: Discovery) -> Credentials:
    """Raises ApiError (status 0) when no usable configuration is found."""
    await asyncio.to_thread(_client)
    client, kube_config = _client(), _config()
    configuration = client.Configuration()
    try:
        if config.kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            kube_config.load_incluster_config(client_configuration=configuration,
                                              token_filename=str(SERVICE_ACCOUNT / "token"),
                                              cert_filename=str(SERVICE_ACCOUNT / "ca.crt"))
            return Credentials(configuration, _read(SERVICE_ACCOUNT / "namespace") or "default", "in-cluster")
        path = config.kubeconfig or os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
        path = os.pathsep.join(os.path.expanduser(p) for p in path.split(os.pathsep))
        loader = await kube_config.load_kube_config(config_file=path, context=config.context,
                                             client_configuration=configuration, persist_config=False)
        context: dict[str, Any] = loader.current_context or {}
        namespace = (context.get("context") or {}).get("namespace")
        return Credentials(configuration, str(namespace or "default"), path)
    except (kube_config.ConfigException, OSError, KeyError, TypeError, ValueError) as exc:
        raise ApiError(0, f"no Kubernetes credentials: {type(exc).__name__}: {exc}") from None


def _status_error(status: int, body: bytes) -> ApiError:
    try:
        reason = str(orjson.loads(body).get("message", ""))
    except (orjson.JSONDecodeError, AttributeError):
        reason = body[:200].decode(errors="replace")
    return Gone(status, reason) if status == 410 else ApiError(status, reason)


class SliceApi:
    """List and watch the EndpointSlices of one Service (label kubernetes.io/service-name)."""

    def __init__(self, credentials: Credentials, namespace: str, service: str, timeout: float) -> None:
        client = _client()
        self.client = client.ApiClient(credentials.configuration)
        self.api = client.DiscoveryV1Api(self.client)
        self.namespace = namespace
        self.selector = f"kubernetes.io/service-name={service}"
        self.timeout = timeout

    async def close(self) -> None:
        await self.client.close()

    async def _call(self, timeout: Any, **params: Any) -> Any:
        import aiohttp

        try:
            return await self.api.list_namespaced_endpoint_slice(
                self.namespace, label_selector=self.selector, _preload_content=False, _request_timeout=timeout,
                **params)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiError(0, f"{type(exc).__name__}: {exc}") from None

    async def list(self) -> tuple[list[dict[str, Any]], str]:
        """Every slice of the Service and the list's resourceVersion (a consistent snapshot, page by page)."""
        import aiohttp

        items: list[dict[str, Any]] = []
        token = ""
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        while True:
            params: dict[str, Any] = {"limit": PAGE}
            if token:
                params["_continue"] = token
            response = await self._call(timeout, **params)
            try:
                body = await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ApiError(0, f"{type(exc).__name__}: {exc}") from None
            finally:
                response.release()
            if response.status != 200:
                raise _status_error(response.status, body)
            page = orjson.loads(body)
            items += page.get("items") or []
            metadata = page.get("metadata") or {}
            token = metadata.get("continue") or ""
            if not token:
                return items, str(metadata.get("resourceVersion", ""))

    async def watch(self, resource_version: str, timeout_seconds: int) -> AsyncIterator[dict[str, Any]]:
        """Events after `resource_version` (with bookmarks) until the server ends the stream."""
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=timeout_seconds + 30)
        response = await self._call(timeout, watch=True, resource_version=resource_version,
                                    allow_watch_bookmarks=True, timeout_seconds=timeout_seconds)
        try:
            if response.status != 200:
                raise _status_error(response.status, await response.read())
            while True:
                try:
                    line = await response.content.readline()
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    raise ApiError(0, f"watch stream broke: {type(exc).__name__}: {exc}") from None
                if not line:
                    return
                if len(line) > MAX_LINE:
                    raise ApiError(0, "watch event too large")
                if line.strip():
                    try:
                        event = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        raise ApiError(0, "watch stream: an event is not JSON") from None
                    yield event
        finally:
            response.release()


__all__ = ["SERVICE_ACCOUNT", "ApiError", "Credentials", "Gone", "SliceApi", "load_credentials"]
