"""What every config model shares: frozen, unknown keys forbidden; common field types; the listen-address check."""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo

PositiveInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
Millis = Annotated[int, Field(ge=1, le=86_400_000)]


def _absolute(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must start with '/'")
    return value


UrlPath = Annotated[str, Field(min_length=1), AfterValidator(_absolute)]  # a request path: /...


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False, validate_default=True)


def secret(kind: str = "value") -> Any:
    """Marks a field that holds a secret, for `Annotated[TYPE, secret(KIND)]`; KIND is `value` (all of it),
    `url` (the credentials in a URL) or `values` (every item of a mapping or list). Every display of the config
    redacts it (meshbatch.config.redact)."""
    return Field(json_schema_extra={"secret": kind})


# -- file paths -----------------------------------------------------------------------------------------------
# A field that names a file is typed with one of the `*Path` aliases below. Each carries a mark (read by
# `meshbatch.config.fields`: `meshbatch k8s render` finds the files a config needs through it) and resolves a
# relative path against the config file's folder when the loader passes that folder in the validation context
# (`BASE_DIR`), so that a config means the same files from whatever directory it is run. `-` (stdout, for the
# access log) and absolute paths are kept; `~` is the user's home.

PATH_MARK = "path"
BASE_DIR = "base_dir"  # the validation context's key: the config file's folder (absent: paths kept as written)
PathKind = Literal["read", "secret", "write"]  # a file read, a file read that holds a secret (a key), a file written


def resolve_path(value: str, base: str) -> str:
    """`value` as the process will open it: against `base` when relative (`-` and absolute paths unchanged)."""
    if value == "-":
        return value
    expanded = os.path.expanduser(value)
    return expanded if os.path.isabs(expanded) else os.path.normpath(os.path.join(base, expanded))


def _resolve(value: Any, info: ValidationInfo) -> Any:
    base = info.context.get(BASE_DIR) if isinstance(info.context, dict) else None
    if base is None or not isinstance(value, str) or not value:
        return value
    return resolve_path(value, base)


def _path(kind: PathKind) -> Any:
    return Field(json_schema_extra={PATH_MARK: kind})


ReadPath = Annotated[str, _path("read"), AfterValidator(_resolve)]  # a file the proxy reads
SecretPath = Annotated[str, _path("secret"), AfterValidator(_resolve)]  # a file read that holds a secret
WritePath = Annotated[str, _path("write"), AfterValidator(_resolve)]  # a file the proxy writes


def _check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:8080")
    if host.startswith("[") != host.endswith("]"):
        raise ValueError("an IPv6 host must be in brackets, e.g. [::1]:8080")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("port must be a number from 0 to 65535")
    return value
