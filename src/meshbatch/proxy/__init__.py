"""Plain proxying: a route's request forwarded to its cluster, with the headers a proxy adds."""

from meshbatch.proxy.forward import Forwarder, upstream_headers

__all__ = ["Forwarder", "upstream_headers"]
