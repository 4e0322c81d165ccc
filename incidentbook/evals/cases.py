"""Which cases an eval runs: scenario suite, archived incidents, red-team cases, bundle directories.

A CASES argument may be:

- `suite`: the generated scenario suite (the default when no CASES are given);
- `library`: every archived incident in the postmortem library with a confirmed root cause;
- `redteam`: the red-team suite (scenarios with injected instructions, see evals.redteam);
- `fleet`: the second generator's scenarios (fleet-*) at `--seeds` (default: evals.fleet.FLEET_SEEDS);
- `fleet-heldout`: the same at the held-out seeds (evals.fleet.FLEET_HELD_OUT_SEEDS);
- an archived incident id (`INC-20260301-0004`), looked up in the library;
- a library entry directory (holding `meta.json` and `bundle/`);
- a bundle directory (holding `manifest.json`), e.g. one made by `bundle import --format wide-csv`;
- a directory of such bundles (one level down).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from incidentbook.errors import BadInput, NotFound


def library_cases(cfg: Any) -> list[Path]:
    """Bundles of archived incidents whose root cause was confirmed (meta.json names service and kind)."""
    from incidentbook.evals.checks import archived_ground_truth

    root = Path(cfg.library_path)
    if not root.is_dir():
        return []
    return [m.parent / "bundle" for m in sorted(root.glob("[0-9][0-9][0-9][0-9]/*/meta.json"))
            if (m.parent / "bundle" / "manifest.json").is_file() and archived_ground_truth(m.parent / "bundle")]


def resolve_cases(specs: Iterable[str], cfg: Any, workdir: Path, seeds: Iterable[int],
                  names: Iterable[str] | None = None, fleet_seeds_given: Iterable[int] | None = None) -> list[Path]:
    """Bundle directories for `specs` (see the module docstring); generated ones go under `workdir`."""
    from incidentbook.evals.redteam import generate_redteam_suite
    from incidentbook.evals.runner import generate_suite

    specs = list(specs) or ["suite"]
    seeds = list(seeds)
    out: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if spec == "suite":
            out += generate_suite(workdir / "suite", seeds, names)
        elif spec in ("fleet", "fleet-heldout"):
            from incidentbook.evals.fleet import (
                FLEET_HELD_OUT_SEEDS,
                FLEET_SEEDS,
                generate_fleet_suite,
            )

            fleet_seeds = FLEET_HELD_OUT_SEEDS if spec == "fleet-heldout" else (fleet_seeds_given or FLEET_SEEDS)
            out += generate_fleet_suite(workdir / spec, fleet_seeds, names)
        elif spec == "redteam":
            out += generate_redteam_suite(workdir / "redteam", seeds[:1] or [1])
        elif spec == "library":
            found = library_cases(cfg)
            if not found:
                raise NotFound(f"no archived incident with a confirmed root cause in {cfg.library_path}; archive one "
                               "with `incidentbook postmortem ID --archive` after closing it with --root-cause")
            out += found
        elif (p / "manifest.json").is_file():
            out.append(p)
        elif (p / "meta.json").is_file() and (p / "bundle" / "manifest.json").is_file():
            out.append(p / "bundle")
        elif p.is_dir() and any((c / "manifest.json").is_file() for c in p.iterdir() if c.is_dir()):
            out += sorted(c for c in p.iterdir() if (c / "manifest.json").is_file())
        elif not p.exists() and "/" not in spec:
            out.append(_archived(spec, cfg))
        else:
            raise BadInput(f"{spec!r} is not a case; give a bundle directory, a library entry, an archived incident id, "
                           "or one of: suite, library, redteam, fleet, fleet-heldout")
    return out


def _archived(incident_id: str, cfg: Any) -> Path:
    root = Path(cfg.library_path)
    hits = sorted(root.glob(f"[0-9][0-9][0-9][0-9]/{incident_id}-*/bundle/manifest.json")) if root.is_dir() else []
    if not hits:
        raise NotFound(f"{incident_id!r} is neither a directory nor an archived incident in {root}; "
                       "list archived incidents with `incidentbook library search`")
    return hits[0].parent
