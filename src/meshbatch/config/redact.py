"""Secrets out of everything the proxy shows: the config dump, admin JSON, logs, command output. Pure.

One rule, used everywhere a config or a URL leaves the process for a human or a scraper:

- fields of the config model that hold secrets are *marked* where they are declared:
  `Field(json_schema_extra={"secret": KIND})` (or `Annotated[..., secret(KIND)]`, meshbatch.config.model.base),
  KIND one of `value` (the whole value: a token), `url` (a URL or a list of them: only the credentials in it),
  `values` (a mapping or list whose items are all secret, its keys kept: OTLP `headers`). `redact_config`
  dumps a config with every marked field redacted. A field whose *name* looks secret (password, token,
  credentials, headers, url, ...) must be marked, or listed in `NOT_SECRET` with the reason: a unit test walks
  the whole model and fails on one that is neither, so a new secret cannot be forgotten silently;
- any text (a log line, an error, a summary) goes through `redact_text`: the password of a URL
  (`postgresql://u:pw@h/db` -> `postgresql://u:<redacted>@h/db`), a user-info token (`nats://TOKEN@h`), the
  password of an authority quoted without its scheme (`u:pw@h:2379`, as a client library may print it), secret
  query parameters (`?password=`, `?token=`), `Bearer`/`Basic` credentials. `scrub` applies it to every
  string of a JSON document; the admin API passes each answer through it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

if TYPE_CHECKING:
    from pydantic import BaseModel

    from meshbatch.config.plain import Plain

REDACTED = "<redacted>"
SecretKind = Literal["value", "url", "values"]
KINDS = frozenset({"value", "url", "values"})
MARK = "secret"  # the json_schema_extra key

# A lone user-info part is a user name for these schemes (postgresql://app@db/x); for others (nats://TOKEN@h,
# https://TOKEN@github.com) it is a credential.
USER_NAME_SCHEMES = frozenset({"postgres", "postgresql", "mysql", "mariadb", "mongodb", "mongodb+srv", "amqp",
                               "amqps", "redis", "rediss", "ssh", "sftp", "ftp"})
SECRET_PARAMS = frozenset({"password", "passwd", "pwd", "pass", "sslpassword", "token", "access_token", "auth",
                           "authorization", "secret", "client_secret", "api_key", "apikey", "key", "sig",
                           "signature", "credentials"})

# scheme://USERINFO@ : user-info runs to the last '@' before the path (a raw '@' in a password is common).
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<userinfo>[^\s/?#\"'<>`]*)@")
# USER:PASSWORD@HOST without a scheme (not after '/', ':' or '@': those are the URL form, handled above)
_AUTHORITY = re.compile(r"(?<![\w/:@.%+-])(?P<user>[A-Za-z0-9._~%+-]+):(?P<password>[^\s@/\"'<>`]+)@(?=[A-Za-z0-9\[])")
_PARAM = re.compile(r"(?P<lead>[?&;](?P<name>[A-Za-z_][A-Za-z0-9_\-]*)=)(?P<value>[^&#;\s\"'<>`]*)")
_SCHEME_CREDENTIAL = re.compile(r"(?i)\b(?P<scheme>bearer|basic)(?P<gap>\s+)(?P<credential>[A-Za-z0-9\-._~+/]{12,}=*)")


def _userinfo(match: re.Match[str]) -> str:
    scheme, userinfo = match["scheme"], match["userinfo"]
    if userinfo == REDACTED or userinfo.endswith(":" + REDACTED):
        return match[0]
    user, colon, _ = userinfo.partition(":")
    if colon:
        return f"{scheme}://{user}:{REDACTED}@"
    if scheme.lower() in USER_NAME_SCHEMES:
        return match[0]
    return f"{scheme}://{REDACTED}@"


def _param(match: re.Match[str]) -> str:
    if match["name"].lower() in SECRET_PARAMS and match["value"]:
        return match["lead"] + REDACTED
    return match[0]


def redact_text(text: str) -> str:
    """`text` with every credential of the kinds the module docstring lists replaced by `<redacted>`."""
    if "@" in text:
        if "://" in text:
            text = _USERINFO.sub(_userinfo, text)
        text = _AUTHORITY.sub(lambda m: f"{m['user']}:{REDACTED}@", text)
    if "=" in text:
        text = _PARAM.sub(_param, text)
    if "earer" in text or "asic" in text:  # cheap test first: most text has neither
        text = _SCHEME_CREDENTIAL.sub(lambda m: f"{m['scheme']}{m['gap']}{REDACTED}", text)
    return text


def redact_url(url: str) -> str:
    """A URL as it may be shown: its password, user-info token and secret query parameters redacted."""
    return redact_text(url)


def scrub(value: Any) -> Any:
    """A JSON document (dicts, lists, scalars) with `redact_text` applied to every string, keys included."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {scrub(k) if isinstance(k, str) else k: scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(item) for item in value]
    return value


# -- the config model ---------------------------------------------------------------------------------------


def secret_kind(model: type[BaseModel], name: str) -> SecretKind | None:
    """How field `name` of `model` is marked (None: not a secret)."""
    extra = model.model_fields[name].json_schema_extra
    kind = extra.get(MARK) if isinstance(extra, dict) else None
    if kind is None:
        return None
    if kind not in KINDS:
        raise ValueError(f"{model.__name__}.{name}: secret kind {kind!r} is not one of {sorted(KINDS)}")
    return kind  # type: ignore[return-value]


def _redact_value(kind: SecretKind, value: Any) -> Any:
    if value is None:
        return None
    if kind == "url":
        if isinstance(value, str):
            return redact_url(value)
        if isinstance(value, list):
            return [redact_url(v) if isinstance(v, str) else REDACTED for v in value]
        return REDACTED
    if kind == "values":
        if isinstance(value, dict):
            return {k: REDACTED for k in value}
        if isinstance(value, list):
            return [REDACTED for _ in value]
    return REDACTED if value != "" else value


def _redact_dump(model: BaseModel, dumped: Any) -> Any:
    """`dumped` (model.model_dump(mode="json", by_alias=True)) with the marked fields of `model` redacted."""
    if not isinstance(dumped, dict):
        return dumped
    cls = type(model)
    for name, info in cls.model_fields.items():
        key = info.alias or name
        if key not in dumped:
            continue
        kind = secret_kind(cls, name)
        if kind is not None:
            dumped[key] = _redact_value(kind, dumped[key])
            continue
        dumped[key] = _redact_nested(getattr(model, name), dumped[key])
    return dumped


def _redact_nested(value: Any, dumped: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return _redact_dump(value, dumped)
    if isinstance(value, list | tuple) and isinstance(dumped, list):
        return [_redact_nested(v, d) for v, d in zip(value, dumped, strict=False)]
    if isinstance(value, dict) and isinstance(dumped, dict):
        return {k: _redact_nested(value.get(k), d) for k, d in dumped.items()}
    return dumped


def _redact_plain(obj: Plain, dumped: Any) -> Any:
    """`dumped` (msgspec.to_builtins(obj)) with the fields of the plain config object `obj` marked in its class's
    SECRETS redacted: the same marks as the models' (a test holds them equal)."""
    if not isinstance(dumped, dict):
        return dumped
    cls = type(obj)
    for name, key in zip(cls.__struct_fields__, cls.__struct_encode_fields__, strict=True):
        if key not in dumped:
            continue
        kind = cls.SECRETS.get(name)
        if kind is not None:
            dumped[key] = _redact_value(kind, dumped[key])  # type: ignore[arg-type]
            continue
        dumped[key] = _redact_plain_nested(getattr(obj, name), dumped[key])
    return dumped


def _redact_plain_nested(value: Any, dumped: Any) -> Any:
    import msgspec

    if isinstance(value, msgspec.Struct):
        return _redact_plain(value, dumped)  # type: ignore[arg-type]
    if isinstance(value, list | tuple) and isinstance(dumped, list):
        return [_redact_plain_nested(v, d) for v, d in zip(value, dumped, strict=False)]
    if isinstance(value, dict) and isinstance(dumped, dict):
        return {k: _redact_plain_nested(value.get(k), d) for k, d in dumped.items()}
    return dumped


def redact_config(config: BaseModel | Plain) -> dict[str, Any]:
    """The config (a model, or its plain run-time form) as JSON-able data, every marked secret redacted and every
    URL's credentials too: the same data for both forms."""
    import msgspec

    if isinstance(config, msgspec.Struct):
        dumped = _redact_plain(config, msgspec.to_builtins(config))
    else:
        dumped = _redact_dump(config, config.model_dump(mode="json", by_alias=True))
    cleaned: dict[str, Any] = scrub(dumped)
    return cleaned


# Fields whose names look secret and are not, each with the reason (see the module docstring).
NOT_SECRET: dict[str, str] = {
    "Identity.key": "the path of the key file, not the key",
    "Jwt.jwks": "the path of a public key set",
    "Jwt.header": "the name of the header that carries the token",
    "Jwt.max_token_bytes": "a size",
    "Jwt.forward": "a switch",
    "Cluster.endpoints": "addresses",
    "Match.headers": "header matchers of a route",
    "EndpointSpec.address": "an address",
    "Discovery.kubeconfig": "the path of a kubeconfig file (its credentials stay in the file)",
    "HealthCheck.host": "a Host header value",
    "Batch.key": "which request parts make the batch key",
    "Condition.key": "the attribute a policy condition reads",
    "RateLimit.key": "which request part keys the rate limit",
    "Cluster.hash_key": "which header the balancer hashes",
    "PlainRoute.split_key": "which header keeps a caller on one cluster",
    "BatchRoute.split_key": "which header keeps a caller on one cluster",
    "CircuitBreakers.endpoint": "per-endpoint breaker settings",
    "Fault.from_headers": "a switch",
    "Limits.max_headers": "a count of header fields",
}
SECRET_LOOKING = re.compile(r"(?i)(pass(word|wd|phrase)?$|secret|token|credential|creds|^auth|_auth|api_?key|"
                            r"private|dsn|cookie|bearer|headers?$|jwks|^key$|_key$|urls?$|endpoints?$|signing)")


def _models(tp: Any) -> Iterator[type[BaseModel]]:
    from pydantic import BaseModel

    if isinstance(tp, type) and issubclass(tp, BaseModel):
        yield tp
        return
    for arg in get_args(tp):
        yield from _models(arg)
    origin = get_origin(tp)
    if origin is not None and isinstance(origin, type) and issubclass(origin, BaseModel):
        yield origin


def model_fields(root: type[BaseModel]) -> Iterator[tuple[type[BaseModel], str, str]]:
    """Every field of every model reachable from `root`, once: (model, field name, the field's alias or "")."""
    seen: set[type[BaseModel]] = set()
    todo = [root]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, info in model.model_fields.items():
            todo.extend(_models(info.annotation))
            yield model, name, info.alias or ""


def unmarked_secret_fields(root: type[BaseModel]) -> list[str]:
    """`Model.field` names reachable from `root` that look secret and are neither marked nor in NOT_SECRET."""
    return sorted(f"{model.__name__}.{name}" for model, name, alias in model_fields(root)
                  if (SECRET_LOOKING.search(name) or SECRET_LOOKING.search(alias))
                  and secret_kind(model, name) is None and f"{model.__name__}.{name}" not in NOT_SECRET)


# -- logs ---------------------------------------------------------------------------------------------------


# The one shape of every line meshbatch writes to stderr: log records, and the lifecycle lines of `run`
# (`... INFO meshbatch: ready ...`, runtime/app.py `announce`).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactingFormatter(logging.Formatter):
    """A log formatter whose every line (message, arguments and traceback alike) goes through `redact_text`."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def redact_logs(logger: logging.Logger | None = None) -> None:
    """Make every handler of `logger` (default: the root logger) format through `RedactingFormatter`."""
    for handler in (logger or logging.getLogger()).handlers:
        current = handler.formatter
        if not isinstance(current, RedactingFormatter):
            handler.setFormatter(RedactingFormatter(current._fmt if current else None,
                                                    current.datefmt if current else None))


__all__ = ["KINDS", "LOG_FORMAT", "NOT_SECRET", "REDACTED", "RedactingFormatter", "SecretKind", "model_fields",
           "redact_config", "redact_logs", "redact_text", "redact_url", "scrub", "secret_kind",
           "unmarked_secret_fields"]
