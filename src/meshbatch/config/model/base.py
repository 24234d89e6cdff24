"""What every config model shares: frozen, unknown keys forbidden; common field types; the listen-address check."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

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


def _check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:8080")
    if host.startswith("[") != host.endswith("]"):
        raise ValueError("an IPv6 host must be in brackets, e.g. [::1]:8080")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("port must be a number from 0 to 65535")
    return value
