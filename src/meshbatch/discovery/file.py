"""The file source: a YAML or JSON file of endpoints, re-read when it changes (polled: inode, size, mtime).

The file holds a list of entries (`HOST:PORT` or `{address, weight, metadata}`) or a mapping with
`endpoints:`. An unreadable or invalid file keeps the last good set; the error shows in /clusters.
Write it atomically (write a temporary file, then rename) so that no half-written file is read.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import yaml

from meshbatch.config.plain import Discovery, EndpointSpec
from meshbatch.discovery.base import COMMON_KEYS, SOURCES, Apply, SourceKind, SourceStatus
from meshbatch.discovery.entries import EntryError, parse_entries

log = logging.getLogger("meshbatch.discovery")
DEFAULT_REFRESH_MS = 1000


def read_endpoints(path: Path) -> list[EndpointSpec]:
    """Parse the file; raises EntryError (or OSError) with a reason."""
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EntryError(f"not YAML/JSON: {exc}") from None
    return parse_entries(data)


class FileSource:
    def __init__(self, config: Discovery, cluster: str) -> None:
        assert config.path is not None
        self.path = Path(config.path)
        self.cluster = cluster
        self.interval = (config.refresh_ms or DEFAULT_REFRESH_MS) / 1000
        self.status = SourceStatus()
        self._seen: tuple[int, int, int] | None = None

    def poll(self, apply: Apply) -> None:
        """One look at the file: apply its endpoints when it changed and parses."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            self._fail(f"cannot stat {self.path}: {exc.strerror}", None)
            return
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._seen:
            return
        try:
            specs = read_endpoints(self.path)
        except (OSError, EntryError, UnicodeDecodeError) as exc:
            self._fail(f"{self.path}: {exc}", stamp)
            return
        self._seen = stamp
        self.status.updates += 1
        self.status.last_error = ""
        self.status.endpoints = len(specs)
        apply(specs)

    def _fail(self, error: str, stamp: tuple[int, int, int] | None) -> None:
        if error != self.status.last_error:
            log.error("cluster %s: file discovery keeps the last endpoints: %s", self.cluster, error)
            self.status.failures += 1
        self.status.last_error = error
        self._seen = stamp

    async def run(self, apply: Apply) -> None:
        while True:
            self.poll(apply)
            await asyncio.sleep(self.interval)

    def summary(self) -> dict[str, object]:
        return {"type": "file", "path": str(self.path), **self.status.as_dict()}


SOURCES.register("file")(SourceKind(FileSource, required=("path",),
                                    accepted=COMMON_KEYS | {"path", "refresh_ms"}))

__all__ = ["FileSource", "read_endpoints"]
