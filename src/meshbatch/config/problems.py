"""A config's problems: each with its path (`format_path` writes pydantic's locations as `listeners[0].routes`),
and the error that carries all of them. Below the loader and the checks that find them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        from meshbatch.config.redact import redact_text  # a message may quote a value: never its credentials

        return redact_text(f"{self.path}: {self.message}" if self.path else self.message)


class ConfigError(Exception):
    """A config that cannot be used; `problems` lists every error found, each with its path."""

    def __init__(self, problems: Sequence[Problem], source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__("\n".join(str(p) for p in self.problems))


def format_path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


__all__ = ["ConfigError", "Problem", "format_path"]
