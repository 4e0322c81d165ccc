"""The fleet suite: the second generator's scenarios (fleet-*) at development and held-out seeds.

The held-out seeds are kept for reporting only: nothing in the investigator may be tuned
while looking at their results (EVALS.md reports them separately).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

#: Seeds used while developing checks against the fleet scenarios.
FLEET_SEEDS = (1, 2, 3)
#: Seeds never used for tuning; reported on their own in EVALS.md.
FLEET_HELD_OUT_SEEDS = (7103, 7211, 7307)


def generate_fleet_suite(out_dir: str | Path, seeds: Iterable[int] = FLEET_SEEDS,
                         names: Iterable[str] | None = None) -> list[Path]:
    """Generate every fleet scenario (or `names`) per seed as `<out_dir>/<scenario>-s<seed>`; truth in each truth.json."""
    from incidentbook.scenarios.fleet import generate_fleet, list_fleet

    wanted = [s.name for s in list_fleet()] if names is None else [n for n in names if n.startswith("fleet-")]
    out = []
    for seed in seeds:
        for name in wanted:
            out.append(Path(generate_fleet(name, Path(out_dir) / f"{name}-s{seed}", seed=seed).bundle_dir))
    return out
