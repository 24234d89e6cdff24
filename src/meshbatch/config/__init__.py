"""Configuration: frozen typed model, loader with path-qualified errors, and cross-object checks."""

from meshbatch.config import checks as _checks  # noqa: F401  (registers the semantic checks)
from meshbatch.config.load import ConfigError, Problem, load, parse
from meshbatch.config.model import Config

__all__ = ["Config", "ConfigError", "Problem", "load", "parse"]
