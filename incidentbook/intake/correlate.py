"""Alert-storm correlation: one cause, one incident.

When a firing alert group has no open incident of its own, and an open incident that received
alerts within the last `window_s` seconds is on a service *connected by calls* to the alert's
service (the alert's service calls it, directly or through others, or it calls the alert's
service), the alerts join that incident as symptoms instead of opening another one. The same
service with another alertname joins too. Siblings (two services that call a common third one)
do not join each other: neither explains the other.

The dependency map is `service -> [services it calls]`: from `[topology]` in
incidentbook.toml, or from a telemetry bundle's manifest (`incidentbook serve --bundle`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache


class Topology:
    """A call graph: `calls[service]` lists the services `service` calls."""

    def __init__(self, calls: Mapping[str, Sequence[str]] | None = None) -> None:
        self.calls: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in (calls or {}).items()}
        self._reach = lru_cache(maxsize=4096)(self._reachable)

    def __bool__(self) -> bool:
        return bool(self.calls)

    def _reachable(self, start: str) -> frozenset[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for nxt in self.calls.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return frozenset(seen)

    def related(self, a: str, b: str) -> bool:
        """True when `a` and `b` are the same service or one depends on the other through calls."""
        if not a or not b:
            return False
        return a == b or b in self._reach(a) or a in self._reach(b)

    def explains(self, cause: str, symptoms: Sequence[str]) -> str:
        """A one-line reason why alerts on `symptoms` belong to an incident on `cause`."""
        parts = []
        for s in symptoms:
            if s == cause:
                parts.append(f"{s} is the incident's service")
            elif cause in self._reach(s):
                parts.append(f"{s} depends on {cause}")
            else:
                parts.append(f"{cause} depends on {s}")
        return "; ".join(parts)
