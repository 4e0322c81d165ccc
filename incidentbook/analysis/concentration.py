"""Client concentration: is a burst of errors spread over everyone, or owned by a few clients?"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Concentration:
    """How much of a total a few keys (clients, IPs, user agents) own."""

    total: float
    keys: int
    top: list[tuple[str, float]]  # the heaviest keys and their share
    top_share: float  # share of the total held by the top `k` keys
    hhi: float  # Herfindahl index of shares (1 = one key, 1/keys = even)

    @property
    def concentrated(self) -> bool:
        """A few keys own most of it (and there are enough keys for that to mean something)."""
        return self.keys >= 5 and self.top_share >= 0.5


def concentration(counts: pd.Series, k: int = 3) -> Concentration | None:
    """Concentration of `counts` (key -> amount); None when there is nothing to measure."""
    c = pd.to_numeric(counts, errors="coerce").fillna(0.0)
    c = c[c > 0].sort_values(ascending=False)
    total = float(c.sum())
    if total <= 0:
        return None
    shares = c / total
    top = [(str(i), round(float(v), 4)) for i, v in shares.head(k).items()]
    return Concentration(total, int(len(c)), top, float(shares.head(k).sum()), float((shares ** 2).sum()))
