"""A small client of the admin API for the command-line tools (standard library only: no event loop needed)."""

from __future__ import annotations

import urllib.error
import urllib.request
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
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode("utf-8", "replace")
        raise AdminError(f"{url}: HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError, orjson.JSONDecodeError) as exc:
        raise AdminError(f"{url}: {exc}") from exc


__all__ = ["AdminError", "get_json", "normalise"]
