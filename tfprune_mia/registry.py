"""Name -> builder registries, so that flags validate against the registered names."""
from __future__ import annotations

from typing import Callable, Dict, Generic, Iterator, TypeVar

from tfprune_mia.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to builders; `get` of an unknown name lists the valid ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(builder: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = builder
            return builder
        return decorator

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(sorted(self._entries))}") from None

    def names(self) -> list:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
