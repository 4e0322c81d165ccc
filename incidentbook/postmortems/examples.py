"""The example postmortems the library ships with, generated from scenarios.

Each example runs the whole loop on a one-hour scenario window: ingest the first page with the
bundle, let the runbook investigate, close with the top hypothesis as the root cause, draft and
archive. Log volume is thinned (every error line kept, one in `keep_every` other lines) so the
examples stay small. Run: `python -m incidentbook.postmortems.examples LIBRARY [SCENARIO…]`.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

DEFAULT_EXAMPLES = ("kv-cache-break", "bad-deploy", "cert-expiry")


def thin_logs(bundle_dir: Path, keep_every: int = 25) -> None:
    """Keep every error-looking log line and one in `keep_every` of the others."""
    from incidentbook.analysis.logs import looks_like_error

    path = bundle_dir / "logs.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [ln for i, ln in enumerate(lines) if i % keep_every == 0 or looks_like_error(json.loads(ln)["line"])]
    errors = [ln for ln in kept if looks_like_error(json.loads(ln)["line"])]
    kept = [ln for ln in kept if ln not in set(errors)] + errors[:: max(1, len(errors) // 400)]
    kept.sort(key=lambda ln: json.loads(ln)["timestamp"])
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")


def build_examples(scenarios: list[str], library: Path, seed: int = 0) -> list[Path]:
    """Run each scenario through close and archive into `library` (one workspace, distinct ids)."""
    from incidentbook.config import load_config
    from incidentbook.incidents import Store
    from incidentbook.intake.ingest import ingest_alertmanager
    from incidentbook.postmortems.draft import close_incident, investigation_state
    from incidentbook.postmortems.library import Library
    from incidentbook.scenarios import generate
    from incidentbook.workspace import init_workspace

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        init_workspace(home)
        toml = home / "incidentbook.toml"
        toml.write_text(toml.read_text().replace('path = "library"', f'path = "{library.resolve()}"'))
        cfg = load_config(path=toml)
        for scenario in scenarios:
            g = generate(scenario, home / scenario, seed=seed, duration="1h")
            thin_logs(g.bundle_dir)
            firing = [p for p in g.payloads if json.loads(p.read_text())["status"] == "firing"]
            result = ingest_alertmanager(cfg, firing[0].read_bytes(), bundle=g.bundle_dir)[0]
            with Store.from_config(cfg) as store:
                _, hyps = investigation_state(store.timeline(result.id))
                causes = [h for h in hyps if h.get("role", "cause") == "cause"] or hyps
                summary = f"Example from the {scenario} scenario, replayed through the runbook."
                close_incident(store, result.id, actor="example", summary=summary,
                               root_cause=causes[0]["id"] if causes else "not found by the investigator")
                entry, _ = Library(library).add(cfg, store, result.id)
            out.append(entry.path)
    return out


def main(argv: list[str]) -> int:
    """Build the examples into the library given as the first argument."""
    library = Path(argv[0])
    for path in build_examples(list(argv[1:] or DEFAULT_EXAMPLES), library):
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
