"""The TLS object of every connection meshbatch makes or accepts: `ssl.SSLObject` without its Python frames on
the record path.

The event loop's TLS layer (uvloop's, asyncio's) calls the connection's `SSLObject` for every record: `write`
for each write of the application, `read` and `pending` for each read. The standard class defines them in
Python (ssl.py), each a frame that only forwards to the same-named method of the C object underneath, so each
proxied request paid three Python calls per TLS side beyond OpenSSL's own work. `FastSSLObject` binds the C
methods on the instance instead: the same calls, with the same positional arguments the loops pass
(`read(n)`, `read(n, buffer)`, `write(data)`, `pending()`), the same results and the same exceptions
(`ssl.SSLWantReadError` ...). The handshake, the certificate checks and everything else are the standard
class's, untouched.

A contexts' `sslobject_class` is the documented way to choose the class `wrap_bio` returns; when the `ssl`
module lacks what the binding needs (a later Python without the C object as `_sslobj`), the standard methods
stay.
"""

from __future__ import annotations

import ssl
from typing import Any

_RECORD_METHODS = ("read", "write", "pending")


class FastSSLObject(ssl.SSLObject):
    """`ssl.SSLObject` whose `read`, `write` and `pending` are the C object's methods, bound per instance."""

    @classmethod
    def _create(cls, *args: Any, **kwargs: Any) -> FastSSLObject:
        obj: FastSSLObject = super()._create(*args, **kwargs)  # type: ignore[misc]
        raw = getattr(obj, "_sslobj", None)
        if raw is not None:
            for name in _RECORD_METHODS:
                method = getattr(raw, name, None)
                if method is not None:
                    obj.__dict__[name] = method
        return obj


def use_fast_objects(context: ssl.SSLContext) -> ssl.SSLContext:
    """Have `context.wrap_bio` return `FastSSLObject`s (when this Python's `ssl` module allows it)."""
    if callable(getattr(ssl.SSLObject, "_create", None)):
        context.sslobject_class = FastSSLObject
    return context


__all__ = ["FastSSLObject", "use_fast_objects"]
