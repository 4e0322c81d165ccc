"""`python -m incidentbook.evals [--investigator NAME] [--seeds 1,2,3] [--json] [CASES…]`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from incidentbook.errors import IncidentbookError
from incidentbook.evals.runner import CONTEXT_MODES, DEFAULT_CONTEXT, DEFAULT_SEEDS, run_eval


def main(argv: list[str] | None = None) -> int:
    """Run an eval and print the table (or the JSON document)."""
    ap = argparse.ArgumentParser(prog="python -m incidentbook.evals", description=__doc__)
    ap.add_argument("cases", nargs="*", type=Path, help="bundle directories (default: generate the scenario suite)")
    ap.add_argument("--investigator", default="rules")
    ap.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), help="comma-separated seeds")
    ap.add_argument("--scenario", action="append", help="only this scenario (repeatable)")
    ap.add_argument("--systems", default="", metavar="FROM-TO",
                    help="also unnamed system variants with these seeds, e.g. 400-443")
    ap.add_argument("--context", choices=CONTEXT_MODES, default=DEFAULT_CONTEXT,
                    help="first-page: only the alerts of the page that opened the incident, like the "
                         "notebook's %%investigate; storm: every alert the case raised")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    try:
        systems: list[int] = []
        if a.systems:
            lo, _, hi = a.systems.partition("-")
            systems = list(range(int(lo), int(hi or lo) + 1))
        rep = run_eval(a.cases or None, a.investigator, [int(s) for s in a.seeds.split(",") if s], a.scenario,
                       systems, a.context)
    except IncidentbookError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(json.dumps(rep.to_dict(), indent=2) if a.json else rep.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
