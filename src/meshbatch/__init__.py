"""meshbatch: a service-mesh data plane with request microbatching built in."""

__version__ = "0.1.0"

__all__ = ["__version__"]
