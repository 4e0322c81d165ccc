"""A small named registry with lazy entry-point loading (one per extension point)."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Generic, TypeVar

from incidentbook.errors import NotFound

T = TypeVar("T")


class Registry(Generic[T]):
    """Named implementations of one extension point.

    Built-ins call `register`; third parties declare an entry point in `group`, loaded on the
    first lookup rather than at import time.
    """

    def __init__(self, group: str, kind: str) -> None:
        self.group = group
        self.kind = kind
        self._items: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str, obj: T) -> T:
        """Add or replace `name`."""
        self._items[name] = obj
        return obj

    def _load_entry_points(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for ep in entry_points(group=self.group):
            if ep.name not in self._items:
                self._items[ep.name] = ep.load()

    def get(self, name: str) -> T:
        """The implementation registered as `name`; NotFound lists the known names."""
        if name not in self._items:
            self._load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise NotFound(
                f"No {self.kind} named {name!r}; known: {known}. "
                f"Register one or declare an entry point in {self.group!r}."
            ) from None

    def names(self) -> list[str]:
        """Every registered name, entry points included."""
        self._load_entry_points()
        return sorted(self._items)
