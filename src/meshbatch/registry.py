"""Named extensions: balancers, codecs, discovery sources, sinks and logs are looked up by name.

A new extension is one file that calls `REGISTRY.register("name")(factory)`. Its package either imports that
file (an extension every proxy may use), or declares it lazily, `REGISTRY.lazy("name", "dotted.module",
extra=...)`: the module is imported the first time the name is looked up, so a process imports only the
extensions its config names (a sidecar that stores nothing in PostgreSQL never imports asyncpg). A lazy
extension whose library comes with an extra says so when that extra is missing (meshbatch.extras).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

from meshbatch import extras

T = TypeVar("T")


class Extensions(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._lazy: dict[str, tuple[str, str | None]] = {}  # name -> (module, extra)

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return add

    def lazy(self, name: str, module: str, extra: str | None = None) -> None:
        """Declare `name`, registered by `module` when first looked up (or already, if something imported it);
        `extra` installs its libraries."""
        if name in self._lazy:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._lazy[name] = (module, extra)

    def get(self, name: str) -> T:
        """The extension; a lazy one is imported now (MissingExtraError when its extra is not installed)."""
        item = self._items.get(name)
        if item is not None:
            return item
        if name not in self._lazy:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        module, extra = self._lazy[name]
        feature = f"{self.kind} {name!r}"
        if extra is None:
            importlib.import_module(module)
        else:
            extras.import_module(module, extra, feature)
        try:
            return self._items[name]
        except KeyError:
            raise RuntimeError(f"{module} does not register {feature}") from None

    def unavailable(self, name: str) -> str | None:
        """Why `name` cannot be used here (its extra is not installed), without importing it; None if it can."""
        extra = self._lazy.get(name, ("", None))[1]
        if extra is None or not extras.missing(extra):
            return None
        return f"{self.kind} {name!r} needs the {extra!r} extra: {extras.install_hint(extra)}"

    def loaded(self) -> list[str]:
        """The names whose modules are imported (every eager one, the lazy ones looked up so far)."""
        return sorted(self._items)

    def names(self) -> list[str]:
        return sorted({*self._items, *self._lazy})

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._lazy


__all__ = ["Extensions"]
