"""A small client of the admin API for the command-line tools (standard library only: no event loop needed).

urllib's client (with http.client and email, a few MB) is imported by the first call, not by the command line's
parser, so `meshbatch run` never loads it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson


class AdminError(RuntimeError):
    """The admin API could not be reached or answered badly."""


def normalise(admin: str) -> str:
    """`127.0.0.1:9901` or `http://127.0.0.1:9901/` -> `http://127.0.0.1:9901`."""
    url = admin.strip().rstrip("/")
    return url if url.startswith(("http://", "https://")) else f"http://{url}"


def get_json(admin: str, path: str, timeout: float = 5.0, **query: object) -> Any:
    url = normalise(admin) + path
    if query:
        url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode("utf-8", "replace")
        raise AdminError(f"{url}: HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError, orjson.JSONDecodeError) as exc:
        raise AdminError(f"{url}: {exc}") from exc


def call_json(admin: str, method: str, path: str, *, body: Any = None, token: str | None = None,
              timeout: float = 30.0, **query: object) -> Any:
    """One call of the admin API with an optional bearer token and JSON body; the answer's JSON. An error answer
    raises AdminError naming its status and the API's own `detail` (or body)."""
    url = normalise(admin) + path
    if query:
        url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
    headers = {"authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = orjson.dumps(body)
        headers["content-type"] = "application/json"
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()[:2000]
        try:
            answer = orjson.loads(raw)
            detail = f"{answer.get('reason', '')}: {answer.get('detail') or answer.get('error', '')}"
        except (orjson.JSONDecodeError, AttributeError):
            detail = raw[:300].decode("utf-8", "replace")
        raise AdminError(f"{method} {url}: HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError, orjson.JSONDecodeError) as exc:
        raise AdminError(f"{method} {url}: {exc}") from exc


__all__ = ["AdminError", "call_json", "get_json", "normalise"]
