"""The admin listener: readiness, metrics, the active config, clusters and batchers."""

from meshbatch.admin.api import AdminApi

__all__ = ["AdminApi"]
