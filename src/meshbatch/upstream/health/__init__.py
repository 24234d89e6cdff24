"""Endpoint health: active HTTP checks and passive outlier detection (sans-I/O cores, asyncio shells)."""

from meshbatch.upstream.health.active import ActiveChecks
from meshbatch.upstream.health.outlier import Ejection, OutlierDetector
from meshbatch.upstream.health.runner import HealthRunner

__all__ = ["ActiveChecks", "Ejection", "HealthRunner", "OutlierDetector"]
