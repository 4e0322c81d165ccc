"""The `incidentbook` command. Thin: parse arguments, call the library, print.

Every `--json` output is one JSON document on stdout. Errors are one line on stderr naming the
problem and the fix; exit code 2 for bad input, 1 for failures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from incidentbook import __version__
from incidentbook.errors import BadInput, IncidentbookError, NotConfigured

Handler = Callable[[argparse.Namespace], int]


# ---------------------------------------------------------------- output helpers

def _print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def _config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from incidentbook.config import load_config

    return load_config(path=Path(args.config) if getattr(args, "config", None) else None)


def _store(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from incidentbook.incidents import Store

    return Store.from_config(_config(args))


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file; give a webhook payload file or - for stdin") from None
    except IsADirectoryError:
        raise BadInput(f"{path} is a directory; give a webhook payload file or - for stdin") from None


# ---------------------------------------------------------------- commands

def cmd_init(args: argparse.Namespace) -> int:
    from incidentbook.workspace import init_workspace

    made = init_workspace(Path(args.dir), force=args.force)
    for p in made:
        print(f"created {p}")
    print(f"next: edit {Path(args.dir) / 'incidentbook.toml'}, then `incidentbook ingest alert.json`")
    return 0


def _print_ingested(results: list, as_json: bool) -> int:  # type: ignore[type-arg]
    if as_json:
        _print_json({"incidents": [r.to_dict() for r in results]})
    else:
        for r in results:
            what = "updated (same alert group)" if r.deduplicated else "opened"
            print(f"{r.id} {what}: runbook {r.runbook or '-'} {r.runbook_status}")
            if r.notebook:
                print(f"  notebook: {r.notebook}")
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"incidentbook: {r.id}: {r.error}; the partial notebook is at {r.notebook}",
              file=sys.stderr)
    return 1 if failed else 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from incidentbook.intake.ingest import ingest_alertmanager

    raw = _read_input(args.file)
    cfg = _config(args)
    results = ingest_alertmanager(cfg, raw, bundle=Path(args.bundle) if args.bundle else None,
                                  run=not args.no_run)
    return _print_ingested(results, args.json)


def cmd_incidents_list(args: argparse.Namespace) -> int:
    incidents = _store(args).list_incidents(status=None if args.all else args.status, limit=args.limit)
    if args.json:
        _print_json({"incidents": [i.to_dict() for i in incidents]})
        return 0
    if not incidents:
        print("no incidents" + ("" if args.all else f" with status {args.status} (--all shows every one)"))
        return 0
    rows = [(i.id, i.status, i.severity, i.service, i.alertname, i.runbook, i.runbook_status,
             i.created.strftime("%Y-%m-%d %H:%M")) for i in incidents]
    print(_table(rows, ["ID", "STATUS", "SEVERITY", "SERVICE", "ALERT", "RUNBOOK", "RUNBOOK STATUS", "CREATED (UTC)"]))
    return 0


def cmd_incidents_show(args: argparse.Namespace) -> int:
    store = _store(args)
    inc = store.get_incident(args.id)
    alerts = store.alerts(inc.id)
    timeline = store.timeline(inc.id)
    if args.json:
        doc = inc.to_dict()
        doc["alerts"] = [a.to_dict() for a in alerts]
        doc["timeline"] = [e.to_dict() for e in timeline]
        _print_json(doc)
        return 0
    print(f"{inc.id}  {inc.title}")
    facts = [("status", inc.status), ("severity", inc.severity), ("service", inc.service),
             ("alert", inc.alertname), ("runbook", f"{inc.runbook or '-'} ({inc.runbook_status})"),
             ("notebook", inc.notebook), ("created", inc.created.isoformat())]
    if inc.runbook_error:
        e = inc.runbook_error
        facts.append(("runbook error", f"cell {e.get('cell_index')}: {e.get('ename')}: {e.get('evalue')}"))
    if inc.status == "closed":
        facts += [("closed", f"{inc.closed_at} by {inc.closed_by}"), ("summary", inc.summary),
                  ("root cause", inc.root_cause)]
    for k, v in facts:
        if v:
            print(f"  {k + ':':<15}{v}")
    print(f"\nalerts ({len(alerts)}):")
    print(_table([(a.status, a.labels.get("alertname"), a.labels.get("service"), a.starts_at.isoformat())
                  for a in alerts], ["STATUS", "ALERT", "SERVICE", "STARTS"]))
    print(f"\ntimeline ({len(timeline)}):")
    print(_table([(e.timestamp.strftime("%Y-%m-%d %H:%M:%S"), e.actor, e.kind, e.summary) for e in timeline],
                 ["TIME (UTC)", "ACTOR", "EVENT", "WHAT"]))
    return 0


def cmd_incidents_close(args: argparse.Namespace) -> int:
    from incidentbook.postmortems import close_incident

    actor = os.environ.get("JUPYTERHUB_USER") or os.environ.get("USER") or "unknown"
    inc, _ = close_incident(_store(args), args.id, actor=actor, summary=args.summary, root_cause=args.root_cause)
    if args.json:
        _print_json(inc.to_dict())
    else:
        print(f"{inc.id} closed by {actor}; next: `incidentbook postmortem {inc.id}`")
    return 0


def cmd_runbooks_list(args: argparse.Namespace) -> int:
    from incidentbook.runner import load_runbooks

    runbooks = load_runbooks(_config(args))
    if args.json:
        _print_json({"runbooks": [rb.to_dict() for rb in runbooks]})
        return 0
    rows = []
    for rb in runbooks:
        cond = [f"{k}={v}" for k, v in rb.match.items()] + [f"{k}=~{v}" for k, v in rb.match_re.items()]
        if not cond and rb.name == "generic":
            cond = ["(fallback)"]
        rows.append((rb.name, rb.origin, rb.priority, ", ".join(cond), rb.title))
    print(_table(rows, ["NAME", "FROM", "PRIORITY", "MATCHES", "TITLE"]))
    return 0


def cmd_runbooks_check(args: argparse.Namespace) -> int:
    from incidentbook.runner import check_runbook, load_runbooks

    runbooks = load_runbooks(_config(args))
    if args.names:
        wanted = set(args.names)
        unknown = wanted - {rb.name for rb in runbooks}
        if unknown:
            raise BadInput(f"unknown runbook(s) {sorted(unknown)}; `incidentbook runbooks list` shows the names")
        runbooks = [rb for rb in runbooks if rb.name in wanted]
    report = {rb.name: [str(p) for p in check_runbook(rb)] for rb in runbooks}
    bad = {k: v for k, v in report.items() if v}
    if args.json:
        _print_json({"runbooks": [{"name": rb.name, "path": str(rb.path), "ok": not report[rb.name],
                                   "problems": report[rb.name]} for rb in runbooks]})
    else:
        for rb in runbooks:
            problems = report[rb.name]
            print(f"{'ok ' if not problems else 'BAD'} {rb.name} ({rb.path})")
            for p in problems:
                print(f"    - {p}")
        print(f"{len(runbooks) - len(bad)} ok, {len(bad)} with problems")
    return 1 if bad else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from incidentbook.demo import run_demo, serve_lab

    home = Path(args.home).resolve()
    result = run_demo(args.scenario, home, seed=args.seed,
                      log=(lambda *a: print(*a, file=sys.stderr)) if args.json else print)
    if args.json:
        _print_json({"scenario": result.scenario, "home": str(result.home), "bundle": str(result.bundle),
                     "incidents": [r.to_dict() for r in result.incidents]})
    code = _print_ingested(result.incidents, as_json=False) if not args.json else (
        1 if any(r.error for r in result.incidents) else 0)
    if args.no_lab or code:
        return code
    nb = result.incidents[0].notebook
    print("[3/3] opening it in JupyterLab (Ctrl-C to stop) ...")
    return serve_lab(home, Path(nb)) if nb else code


def cmd_scenario_list(args: argparse.Namespace) -> int:
    from incidentbook.scenarios import list_scenarios
    from incidentbook.scenarios.fleet import list_fleet

    items = list_scenarios()
    fleet = list_fleet()
    if args.json:
        _print_json({"scenarios": [s.to_dict() for s in items] + [f.to_dict() for f in fleet]})
        return 0
    print(_table([(s.name, s.fault_kind, s.root_cause_service, s.story) for s in items]
                 + [(f.name, f.fault_kind, f"(seed) · {f.dialect}", f.story) for f in fleet],
                 ["NAME", "FAULT", "ROOT CAUSE", "STORY"]))
    return 0


def cmd_scenario_generate(args: argparse.Namespace) -> int:
    from incidentbook.scenarios import generate
    from incidentbook.scenarios.fleet import PREFIX, generate_fleet

    truth = None
    if args.name.startswith(PREFIX):  # the second generator (an LLM-serving stack); truth kept beside the bundle
        print(f"generating {args.name} (seed {args.seed}) ...", file=sys.stderr)
        g: Any = generate_fleet(args.name, Path(args.out), seed=args.seed, duration=args.duration)
        truth = g.truth_path
    else:
        g = generate(args.name, Path(args.out), seed=args.seed, duration=args.duration)
    if args.json:
        _print_json({"scenario": args.name, "bundle": str(g.bundle_dir),
                     "payloads": [str(p) for p in g.payloads], "truth": str(truth) if truth else None})
        return 0
    print(f"bundle: {g.bundle_dir}")
    if truth:
        print(f"truth:  {truth}  (evaluate: incidentbook eval {g.bundle_dir} --truth {truth})")
    for p in g.payloads:
        print(f"alert:  {p}")
    if g.payloads:
        print(f"next: incidentbook ingest {g.payloads[0]} --bundle {g.bundle_dir}")
    return 0


def cmd_bundle_import(args: argparse.Namespace) -> int:
    from incidentbook.telemetry.bundle import open_bundle

    if args.format in LONG_FORMATS:
        return _bundle_import_long(args)
    cfg = _config(args)
    if args.format == "wide-csv":
        from incidentbook.evals.datasets import import_wide_csv

        if not args.inject_time or not args.root_cause:
            raise BadInput("--format wide-csv needs --inject-time TIME and --root-cause SERVICE[:KIND]")
        out = cfg.home / "bundles" / Path(args.path).stem
        if out.exists():
            raise BadInput(f"a bundle named {out.name!r} is already imported at {out}; remove it or rename the file")
        import_wide_csv(args.path, out, args.inject_time, args.root_cause, remediation=args.remediation or "")
        args.path = str(out)
        src = open_bundle(out)
        if args.json:
            _print_json({"bundle": str(out), "window": src.manifest["window"], "services": src.services})
        else:
            print(f"imported {out} ({len(src.services)} services); evaluate it: incidentbook eval {out}")
        return 0
    src = open_bundle(Path(args.path))
    dest = cfg.home / "bundles" / src.path.resolve().name
    if dest.exists():
        raise BadInput(f"a bundle named {dest.name!r} is already imported at {dest}; rename the directory or remove it")
    import shutil

    shutil.copytree(src.path, dest)
    if args.json:
        _print_json({"bundle": str(dest), "window": src.manifest["window"], "services": src.services})
    else:
        print(f"imported {dest} ({len(src.services)} services, {src.manifest['window']['start']} .. "
              f"{src.manifest['window']['end']})")
    return 0


LONG_FORMATS = ("long", "long-csv", "long-parquet")


def _bundle_import_long(args: argparse.Namespace) -> int:
    """bundle import --format long: long-form metrics (+ topology, alerts, changes) into a bundle."""
    from incidentbook.telemetry.bundle import open_bundle
    from incidentbook.telemetry.importers import import_long_form

    if args.out:
        out = Path(args.out)
    else:
        out = _config(args).home / "bundles" / Path(args.path).stem
    print(f"importing {args.path} as a bundle at {out} ...", file=sys.stderr)
    kind = {"long-csv": "csv", "long-parquet": "parquet"}.get(args.format)
    onset = args.onset
    if onset is None and args.truth:
        from incidentbook.evals.truth import onset_of

        onset = onset_of(args.truth, out.name)
    import_long_form(args.path, out, args.topology, kind=kind, onset=onset, alerts_dir=args.alerts,
                     changes=args.changes, namespace=args.namespace or "")
    b = open_bundle(out)
    if args.json:
        _print_json({"bundle": str(out), "window": b.manifest["window"], "window_from": b.manifest.get("window_from"),
                     "services": b.services, "topology": b.topology})
    else:
        print(f"imported {out} ({len(b.services)} services, {b.manifest['window']['start']} .. {b.manifest['window']['end']}, "
              f"window from {b.manifest.get('window_from')})")
        print(f"evaluate it: incidentbook eval {out}" + (f" --truth {args.truth}" if args.truth else " --truth FILE"))
    return 0


def cmd_bundle_export(args: argparse.Namespace) -> int:
    from incidentbook.telemetry.export import export_incident_bundle

    cfg = _config(args)
    out = export_incident_bundle(cfg, _store(args), args.id, Path(args.out))
    if args.json:
        _print_json({"incident": args.id, "bundle": str(out)})
    else:
        print(f"exported {args.id} to {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from incidentbook.evals import DEFAULT_SEEDS, run_eval

    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()] if args.seeds else list(DEFAULT_SEEDS)
    except ValueError:
        raise BadInput(f"--seeds {args.seeds!r}: give comma-separated integers, e.g. --seeds 0,1,2") from None
    if args.compare or args.model or args.html or args.fail_under or any(
            c in ("suite", "library", "redteam", "fleet", "fleet-heldout") or not (Path(c) / "manifest.json").is_file()
            for c in args.cases):
        return _eval_extended(args, seeds)
    what = (f"{len(args.cases)} case(s)" if args.cases
            else f"the scenario suite at seeds {','.join(map(str, seeds))}")
    print(f"evaluating investigator {args.investigator!r} on {what} ...", file=sys.stderr)
    try:
        report = run_eval([Path(c) for c in args.cases] or None, args.investigator, seeds, args.scenario,
                          context=args.context, truth=args.truth, score=args.score)
    except NotConfigured as e:
        # An investigator that is not configured here (e.g. claude without an API key) is
        # skipped, with the reason, rather than failing the whole eval run.
        if args.json:
            _print_json({"investigator": args.investigator, "skipped": str(e)})
        print(f"incidentbook: eval skipped: {e}", file=sys.stderr)
        return 0
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.table())
    return 0


def _eval_extended(args: argparse.Namespace, seeds: list[int]) -> int:
    """eval with --compare / --model / --html / --fail-under, or library / redteam / archived-id cases."""
    import tempfile

    from incidentbook.evals.cases import resolve_cases
    from incidentbook.evals.compare import compare, evaluate, gate_failures, parse_gates
    from incidentbook.evals.scorecard import write_scorecard

    gates = parse_gates(args.fail_under or [])
    cfg = _config(args)
    with tempfile.TemporaryDirectory(prefix="incidentbook-eval-") as tmp:
        cases = resolve_cases(args.cases, cfg, Path(tmp), seeds, args.scenario, seeds if args.seeds else None)
        who = " vs ".join(args.compare) if args.compare else args.investigator
        print(f"evaluating {who} on {len(cases)} case(s) ...", file=sys.stderr)
        try:
            result: Any = (compare(cases, args.compare[0], args.compare[1], cfg, args.model, args.truth, args.score)
                           if args.compare else evaluate(cases, args.investigator, cfg, args.model, args.truth, args.score))
        except NotConfigured as e:
            if args.json:
                _print_json({"investigator": who, "skipped": str(e)})
            print(f"incidentbook: eval skipped: {e}", file=sys.stderr)
            return 0
    if args.html:
        print(f"scorecard: {write_scorecard(result, args.html)}", file=sys.stderr)
    if args.json:
        _print_json(result.to_dict())
    else:
        print(result.table())
    failures = gate_failures(result.b if args.compare else result, gates)
    for f in failures:
        print(f"incidentbook: eval gate failed: {f}", file=sys.stderr)
    return 1 if failures else 0


def cmd_serve(args: argparse.Namespace) -> int:
    from incidentbook.intake.server import serve

    def announce(urls: dict[str, str]) -> None:
        if args.json:
            _print_json(urls)
        else:
            print(f"webhook (Alertmanager): {urls['webhook']}")
            print(f"webhook (PagerDuty):    {urls['pagerduty']}")
            print(f"generic alerts:         {urls['alerts']}")
            print(f"incidents page:         {urls['incidents']}")
            print(f"JupyterLab:             {urls['lab'] or '-'}")
        sys.stdout.flush()

    serve(_config(args), host=args.host, port=args.port, no_auth=args.no_auth, no_lab=args.no_lab,
          bundle=Path(args.bundle) if args.bundle else None, announce=announce)
    return 0


def cmd_postmortem(args: argparse.Namespace) -> int:
    from incidentbook.postmortems import Library, draft_postmortem

    if args.id == "publish":
        if not args.publish_id or not args.to:
            raise BadInput("usage: incidentbook postmortem publish ID --to confluence")
        return cmd_postmortem_publish(args)
    if args.publish_id:
        raise BadInput(f"unexpected argument {args.publish_id!r}; usage: incidentbook postmortem ID, or "
                       "incidentbook postmortem publish ID --to confluence")

    cfg, store = _config(args), _store(args)
    draft = draft_postmortem(cfg, store, args.id, force=args.force)
    doc: dict[str, Any] = {"incident": draft.incident_id, "postmortem": str(draft.path),
                           "impact": draft.impact.to_dict(), "root_cause": draft.root_cause}
    if args.archive:
        entry, _ = Library.from_config(cfg).add(cfg, store, args.id)
        doc["library"] = str(entry.path)
    if args.json:
        _print_json(doc)
        return 0
    print(f"drafted {draft.path}")
    if "library" in doc:
        print(f"archived in {doc['library']}")
    else:
        print(f"next: edit it in JupyterLab, then `incidentbook library add {draft.incident_id}`")
    return 0


def cmd_library_add(args: argparse.Namespace) -> int:
    from incidentbook.postmortems import Library

    cfg = _config(args)
    entry, new = Library.from_config(cfg).add(cfg, _store(args), args.id)
    if args.json:
        _print_json({**entry.to_dict(), "new": new})
    else:
        print(f"{'archived' if new else 'new version of'} {entry.id} in {entry.path}")
        print(f"  html: {entry.path / 'postmortem.html'}")
    return 0


def cmd_library_search(args: argparse.Namespace) -> int:
    from incidentbook.postmortems import Library

    lib = Library.from_config(_config(args))
    if args.reindex:
        lib.index(rebuild=True).close()
    hits = lib.search(" ".join(args.query), service=args.service, since=args.since, severity=args.severity,
                      limit=args.limit)
    if args.json:
        _print_json({"query": " ".join(args.query), "results": hits})
        return 0
    if not hits:
        print("no postmortems match; try fewer words or drop a filter")
        return 0
    print(_table([(h["id"], h["closed"][:10], h["severity"], ",".join(h["services"]), h["root_cause_kind"],
                   h["title"][:60]) for h in hits], ["ID", "CLOSED", "SEVERITY", "SERVICES", "ROOT CAUSE", "TITLE"]))
    return 0


def cmd_library_show(args: argparse.Namespace) -> int:
    from incidentbook.postmortems import Library

    entry = Library.from_config(_config(args)).get(args.id)
    if args.json:
        _print_json(entry.to_dict())
        return 0
    m = entry.meta
    rc = m.get("root_cause") or {}
    print(f"{m['id']}  {m.get('title', '')}")
    for k, v in (("severity", m.get("severity")), ("services", ", ".join(m.get("services", []))),
                 ("alerts", ", ".join(m.get("alertnames", []))), ("closed", m.get("closed")),
                 ("root cause", f"{rc.get('kind')} on {rc.get('service') or '?'}: {rc.get('statement')}"),
                 ("summary", m.get("summary")), ("html", entry.path / "postmortem.html")):
        if v:
            print(f"  {k + ':':<12}{v}")
    return 0


def cmd_library_history(args: argparse.Namespace) -> int:
    from incidentbook.postmortems import Library

    versions = Library.from_config(_config(args)).history(args.id)
    if args.json:
        _print_json({"id": args.id, "versions": [v.to_dict() for v in versions]})
        return 0
    print(_table([(v.commit[:10], v.date, v.author, v.message) for v in versions],
                 ["COMMIT", "DATE", "AUTHOR", "CHANGE"]))
    return 0


def cmd_runbooks_new(args: argparse.Namespace) -> int:
    from incidentbook.runner.catalogue import new_runbook

    cfg = _config(args)
    directory = Path(args.dir) if args.dir else cfg.workspace_runbooks
    nb_path, script = new_runbook(args.name, args.alert, directory, title=args.title or "", force=args.force)
    if args.json:
        _print_json({"notebook": str(nb_path), "script": str(script)})
    else:
        print(f"{nb_path}\n{script}\nEdit either file; `jupytext --sync {script}` keeps them in step.")
    return 0


def cmd_runbooks_test(args: argparse.Namespace) -> int:
    from incidentbook.runner import load_runbooks
    from incidentbook.runner.catalogue import run_runbook_tests

    cfg = _config(args)
    report = run_runbook_tests(load_runbooks(cfg), names=args.names, scenarios=args.scenario or (),
                               out_dir=Path(args.keep) if args.keep else None,
                               cell_timeout_s=cfg.runner.cell_timeout_s)
    if args.json:
        _print_json(report.to_dict())
    else:
        rows = [(r.runbook, r.status, r.scenario, f"{r.alertname} {r.service}".strip(), f"{r.duration_s:.1f}s",
                 r.message) for r in report.runs]
        print(_table(rows, ["RUNBOOK", "STATUS", "SCENARIO", "ALERT", "TIME", "PROBLEM"]))
        if report.untested:
            print(f"not selected by any scenario alert: {', '.join(report.untested)}")
    return 0 if report.ok else 1


def cmd_runbooks_suggest(args: argparse.Namespace) -> int:
    from incidentbook.runner.catalogue import suggest_runbook_change

    suggestion = suggest_runbook_change(_config(args), args.id)
    if args.out and suggestion.diff:
        Path(args.out).write_text(suggestion.diff, encoding="utf-8")
    if args.json:
        _print_json(suggestion.to_dict())
    elif not suggestion.diff:
        print(f"{suggestion.incident_id}: the responders ran nothing beyond runbook {suggestion.runbook!r}")
    else:
        sys.stdout.write(suggestion.diff)
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from incidentbook.actions.audit import StoreAnchor, load_audit_key, verify

    cfg = _config(args)
    path = Path(args.path) if args.path else cfg.audit_log
    # With the broker's key and the store's checkpoint: a recomputed chain, a forged line and a
    # deleted tail are all caught; without the key only the plain hash chain can be checked.
    key = load_audit_key(cfg.home)
    anchor = StoreAnchor(_store(args)) if key is not None else None
    result = verify(path, key, anchor)
    if args.json:
        _print_json({"path": str(path), "ok": result.ok, "entries": result.entries, "first_bad": result.first_bad,
                     "reason": result.reason, "missing": list(result.missing) if result.missing else None,
                     "keyed": result.keyed, "anchored": result.anchored})
    else:
        print(f"{path}: {result}")
    return 0 if result.ok else 1


def _autonomy(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from incidentbook.autonomy import load_policy, policy_path

    cfg = _config(args)
    path = Path(args.policy) if getattr(args, "policy", None) else policy_path(cfg)
    return cfg, path, load_policy(path)


def cmd_autonomy_check(args: argparse.Namespace) -> int:
    from incidentbook.actions.policy import load_actions_config
    from incidentbook.autonomy import decide

    cfg, path, pol = _autonomy(args)
    env = args.environment or load_actions_config(cfg).current_environment
    d = decide(pol, env, args.severity, args.action, author=args.author, target=args.target)
    if args.json:
        _print_json({"policy": str(path), "environment": env, **d.to_dict()})
    else:
        wait = f" ({d.cooldown_s:g}s veto window)" if d.mode == "cooldown" else ""
        print(f"{args.action} at severity {args.severity} in {env}: {d.mode}{wait} — {d.reason}")
    return 0


def cmd_autonomy_grant(args: argparse.Namespace) -> int:
    from datetime import timedelta

    import pandas as pd

    from incidentbook.actions.guard import current_user
    from incidentbook.autonomy import grant_toml, load_policy

    cfg, path, _ = _autonomy(args)
    try:
        duration = timedelta(seconds=pd.Timedelta(args.duration).total_seconds())
    except ValueError:
        raise BadInput(f"--for {args.duration!r}: give a duration like 2h or 90min") from None
    who = current_user()
    block = grant_toml(args.environment, args.action, args.mode, duration, who, args.severity, args.reason,
                       author=args.author, target=args.target)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    path.write_text(old + block, encoding="utf-8")
    try:
        load_policy(path)
    except IncidentbookError:
        path.write_text(old, encoding="utf-8")
        raise
    from incidentbook.actions.broker import audit_log_for

    audit_log_for(cfg).append("autonomy_grant", user=who, environment=args.environment, action=args.action,
                                   severity=args.severity, mode=args.mode, duration_s=duration.total_seconds(),
                                   reason=args.reason, policy=str(path))
    print(f"granted {args.mode} for {args.action} in {args.environment} for {args.duration} (in {path})")
    return 0


def cmd_autonomy_veto(args: argparse.Namespace) -> int:
    from incidentbook.actions.broker import audit_log_for
    from incidentbook.actions.guard import current_user
    from incidentbook.autonomy import veto

    cfg = _config(args)
    entry = veto(cfg.audit_log, args.request_id, current_user(), args.reason, log=audit_log_for(cfg))
    print(f"vetoed {args.request_id} (audit entry {entry['seq']})")
    return 0


def cmd_autonomy_pending(args: argparse.Namespace) -> int:
    from incidentbook.autonomy import cooling_down

    rows = cooling_down(_config(args).audit_log)
    if args.json:
        _print_json(rows)
    else:
        print(_table([(r["request_id"], f"{r['kind']} {r['namespace']}/{r['name']}", r.get("runs_at"), r.get("policy"))
                      for r in rows], ["request", "action", "runs at", "policy"]) if rows else "nothing cooling down")
    return 0


def cmd_autonomy_escalate(args: argparse.Namespace) -> int:
    from incidentbook.autonomy import escalate_unmitigated

    cfg, path, pol = _autonomy(args)
    if pol.escalation is None:
        raise BadInput(f"no [escalation] table in {path}; add one (after_minutes, kind, url) to page on unmitigated incidents")
    pages = escalate_unmitigated(pol.escalation, _store(args), cfg.audit_log)
    if args.json:
        _print_json([p.to_dict() for p in pages])
    else:
        print("\n".join(f"paged for {p.incident_id} ({p.minutes_open:.0f} min open)" for p in pages) or "nobody paged")
    return 0


def cmd_trust_ledger(args: argparse.Namespace) -> int:
    from incidentbook.trust.report import build_trust_ledger

    cfg = _config(args)
    with _store(args) as store:
        ledger = build_trust_ledger(cfg, store, since=args.since, include_library=args.library)
    if args.json:
        _print_json(ledger.to_dict())
        return 0
    rows = [(r["investigator"], r["model"] or "-", r["incidents"], r["proposals"], r["verbatim"], r["edited"],
             r["ignored"], r["refuted"], r["pending"], "-" if r["acceptance_rate"] is None else f"{r['acceptance_rate']:.0%}",
             f"{r['top_was_root_cause']}/{r['top_judged']}" if r["top_judged"] else "-") for r in ledger.rates()]
    if not rows:
        print("no investigations or proposals recorded" + (f" since {args.since}" if args.since else ""))
        return 0
    print(_table(rows, ["INVESTIGATOR", "MODEL", "INCIDENTS", "PROPOSALS", "VERBATIM", "EDITED", "IGNORED",
                        "REFUTED", "PENDING", "ACCEPTED", "TOP=ROOT CAUSE"]))
    return 0


def cmd_trust_report(args: argparse.Namespace) -> int:
    from incidentbook.trust import write_report

    cfg = _config(args)
    with _store(args) as store:
        path, ledger = write_report(cfg, store, out=args.out, since=args.since, include_library=args.library,
                                    execute=not args.no_execute)
    if args.json:
        _print_json({"path": str(path), "ledger": str(path.with_suffix(".json")), "executed": not args.no_execute,
                     "totals": ledger.totals(), "rates": ledger.rates()})
    else:
        t = ledger.totals()
        print(f"{path}\n  {t['incidents']} incident(s), {t['proposals']} proposal(s); open it in JupyterLab "
              "for the review")
    return 0


# ---------------------------------------------------------------- intake failed|retry|drop, store check|backup|restore

def _queue(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from incidentbook.intake.queue import WorkQueue

    return WorkQueue(_store(args))


def cmd_intake_failed(args: argparse.Namespace) -> int:
    items = _queue(args).failed_items(limit=args.limit)
    if args.json:
        _print_json({"failed": [i.to_dict(body=True) for i in items]})
        return 0
    if not items:
        print("no failed intake items")
        return 0
    rows = [(i.id, i.source, i.received_at.strftime("%Y-%m-%d %H:%M:%S"), i.attempts, i.error[:100])
            for i in items]
    print(_table(rows, ["ID", "SOURCE", "RECEIVED (UTC)", "ATTEMPTS", "ERROR"]))
    print("retry one with `incidentbook intake retry ID` after fixing the cause, or `incidentbook intake drop ID`")
    return 0


def cmd_intake_retry(args: argparse.Namespace) -> int:
    _queue(args).retry(args.id)
    if args.json:
        _print_json({"id": args.id, "state": "queued"})
    else:
        print(f"intake item {args.id} queued again; a running `incidentbook serve` processes it now")
    return 0


def cmd_intake_drop(args: argparse.Namespace) -> int:
    _queue(args).drop(args.id)
    if args.json:
        _print_json({"id": args.id, "state": "dropped"})
    else:
        print(f"intake item {args.id} dropped (its body stays stored for audit)")
    return 0


def cmd_store_check(args: argparse.Namespace) -> int:
    from incidentbook.incidents.maintenance import check_store

    cfg = _config(args)
    result = check_store(cfg.db_url, cfg.incidents_dir)
    if args.json:
        _print_json(result.to_dict())
    else:
        print(f"{result.store}: {'ok' if result.ok else 'PROBLEMS'}")
        if result.revision:
            print(f"  schema {result.revision}; {result.incidents} incident(s); "
                  f"{result.incident_dirs} incident dir(s); {result.failed_items} failed intake item(s)")
        for p in result.problems:
            print(f"  - {p}")
    return 0 if result.ok else 1


def cmd_store_backup(args: argparse.Namespace) -> int:
    from incidentbook.incidents.maintenance import backup_store

    dest = backup_store(_config(args).db_url, Path(args.dest) if args.dest else None)
    if args.json:
        _print_json({"backup": str(dest)})
    else:
        print(f"backed up to {dest}")
    return 0


def cmd_store_restore(args: argparse.Namespace) -> int:
    from incidentbook.incidents.maintenance import restore_store

    aside = restore_store(_config(args).db_url, Path(args.backup))
    if args.json:
        _print_json({"restored": args.backup, "previous": str(aside)})
    else:
        print(f"restored {args.backup}; the previous file is kept as {aside}")
    return 0


def _add_reliability_commands(sub: Any) -> None:
    ik = sub.add_parser("intake", help="webhook bodies the intake could not process: list, retry, drop"
                        ).add_subparsers(dest="sub", metavar="SUBCOMMAND")
    ik.required = True
    p = ik.add_parser("failed", help="failed intake items with their error (--json includes the stored body)")
    p.add_argument("--limit", type=int, default=100, help="at most this many, newest first (default 100)")
    _add_common(p)
    p.set_defaults(func=cmd_intake_failed)
    for name, helptext, fn in (("retry", "queue a failed item again once its cause is fixed", cmd_intake_retry),
                               ("drop", "give up on a failed item (its body stays stored)", cmd_intake_drop)):
        p = ik.add_parser(name, help=helptext)
        p.add_argument("id", type=int, metavar="ID", help="the item id from `incidentbook intake failed`")
        _add_common(p)
        p.set_defaults(func=fn)

    st = sub.add_parser("store", help="the incident store: check, backup, restore (SQLite)"
                        ).add_subparsers(dest="sub", metavar="SUBCOMMAND")
    st.required = True
    p = st.add_parser("check", help="read every page and compare with the incident directories; exit 1 on damage")
    _add_common(p)
    p.set_defaults(func=cmd_store_check)
    p = st.add_parser("backup", help="a consistent copy of the SQLite store, safe while serve runs")
    p.add_argument("dest", nargs="?", metavar="FILE", help="where to write it (default: backups/ beside the store)")
    _add_common(p)
    p.set_defaults(func=cmd_store_backup)
    p = st.add_parser("restore", help="check a backup and put it in place (stop serve first; the old file is kept)")
    p.add_argument("backup", metavar="FILE", help="a file written by `incidentbook store backup`")
    _add_common(p)
    p.set_defaults(func=cmd_store_restore)


# ---------------------------------------------------------------- publish and MCP

def cmd_postmortem_publish(args: argparse.Namespace) -> int:
    from incidentbook.postmortems.confluence import publish_confluence

    if args.to != "confluence":
        raise BadInput(f"--to {args.to!r}: the only publishing target is confluence")
    cfg = _config(args)
    result = publish_confluence(cfg, _store(args), args.publish_id, force=args.force)
    if args.json:
        _print_json(result.to_dict())
        return 0
    verb = "created" if result.created else "updated"
    print(f"{verb} Confluence page {result.page_id} (version {result.version}) for {result.incident_id}")
    print(f"  {result.url}")
    for note in result.notes:
        print(f"  note: {note}")
    return 0


def cmd_mcp(args: argparse.Namespace) -> int:
    import anyio

    from incidentbook.mcp import build_tools
    from incidentbook.mcp.server import http_token, serve_http, serve_stdio

    cfg = _config(args)
    if args.max_result_chars is not None:
        if args.max_result_chars < 200:
            raise BadInput(f"--max-result-chars {args.max_result_chars}: give at least 200")
        cfg.mcp.max_result_chars = args.max_result_chars
    host = args.host or cfg.mcp.host
    token = http_token(cfg, host) if args.transport == "http" else None  # refuse before loading anything
    tools = build_tools(cfg, incident_id=args.incident, bundle=Path(args.bundle) if args.bundle else None)
    if args.transport == "http":
        serve_http(tools, host, args.port or cfg.mcp.port, token)
    else:
        anyio.run(serve_stdio, tools)
    return 0
# ---------------------------------------------------------------- signals (the signal catalogue)

def cmd_signals(args: argparse.Namespace) -> int:
    """Which signal each service has, in which dialect, and what is missing; --check the mappings."""
    from incidentbook.telemetry.bundle import open_bundle, to_utc
    from incidentbook.telemetry.signals import check_mappings, discover, report
    from incidentbook.telemetry.sources import Telemetry

    cfg = _config(args)
    if args.bundle:
        b = open_bundle(args.bundle)
        tel = Telemetry.from_bundle(args.bundle)
        start, end = b.window
        services = list(b.services)
    else:
        tel = Telemetry.from_config(cfg)
        if not tel.has("metrics"):
            raise NotConfigured('no metrics source: add [sources.prometheus] url = "http://prometheus:9090" '
                                "to incidentbook.toml, or give --bundle DIR")
        import pandas as pd

        end = to_utc(args.end) if args.end else pd.Timestamp.now(tz="UTC")
        start = to_utc(args.start) if args.start else end - pd.Timedelta("1h")
        services = list(cfg.topology) + [d for v in cfg.topology.values() for d in v]
    print(f"listing series {to_utc(start).isoformat()} .. {to_utc(end).isoformat()} ...", file=sys.stderr)
    disc = discover(tel, list(dict.fromkeys(services)), start, end, cfg.signals)
    if not disc.listed:
        raise IncidentbookError("the metrics source returned no series listing; check it with `%sources` "
                                "or the bundle's metrics")
    wanted = args.service or None
    unknown = [s for s in wanted or [] if s not in disc.services]
    if unknown:
        raise BadInput(f"--service {unknown[0]!r}: not a service here; known: {', '.join(disc.services[:12])}")
    doc = report(disc, wanted)
    problems = check_mappings(disc, tel, start, end) if args.check else []
    if args.check:
        doc["check"] = {"ok": not problems, "problems": problems}
    if args.json:
        _print_json(doc)
    else:
        groups = ("requests", "errors", "latency", "saturation", "cache", "disk", "certificates")
        from incidentbook.telemetry.signals import GROUPS

        rows = []
        for svc in doc["services"]:
            sig = svc["signals"]
            cells = []
            for g in groups:
                hit = next((sig[n] for n in GROUPS[g] if n in sig), None)
                cells.append(f"{hit['dialect']}:{hit['metrics'][0] if hit['metrics'] else '-'}" if hit else "-")
            rows.append([svc["service"], *cells])
        print(_table(rows, ["service", *groups]))
        if doc["note"]:
            print(doc["note"])
        for msg in problems:
            print(f"incidentbook: signals check: {msg}", file=sys.stderr)
        if args.check and not problems:
            print("signals check: every [signals.*] mapping applies to a service and its queries return data")
    return 2 if problems else 0


# ---------------------------------------------------------------- parser

def _add_common(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
    if json_flag:
        p.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="incidentbook",
        description="Incident notebooks: an alert in, an executed runbook notebook with the evidence out.",
        epilog="State lives beside incidentbook.toml (or in $INCIDENTBOOK_HOME). Start with `incidentbook demo`.",
    )
    parser.add_argument("--version", action="version", version=f"incidentbook {__version__}")
    parser.add_argument("--config", metavar="FILE", help="use this incidentbook.toml instead of searching cwd and parents")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("init", help="scaffold incidentbook.toml, runbooks/ and library/",
                       description="Create incidentbook.toml (every setting explained), runbooks/ and library/ in DIR.")
    p.add_argument("dir", nargs="?", default=".", metavar="DIR", help="directory to set up (default: .)")
    p.add_argument("--force", action="store_true", help="overwrite an existing incidentbook.toml")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("ingest", help="turn one webhook payload into incident(s) and run the runbook",
                       description="Read an Alertmanager webhook payload (version 4), open or update the incident "
                                   "for its group, run the matching runbook with papermill, and print the incident id "
                                   "and the notebook path.")
    p.add_argument("file", metavar="FILE", help="payload file, or - for stdin")
    p.add_argument("--bundle", metavar="DIR", help="replay this telemetry bundle instead of live sources")
    p.add_argument("--no-run", action="store_true", help="record the incident but do not run its runbook")
    _add_common(p)
    p.set_defaults(func=cmd_ingest)

    inc = sub.add_parser("incidents", help="list, show and close incidents").add_subparsers(dest="sub", metavar="SUBCOMMAND")
    inc.required = True
    p = inc.add_parser("list", help="list incidents (open ones by default)")
    p.add_argument("--status", default="open", choices=["open", "closed"], help="which incidents (default: open)")
    p.add_argument("--all", action="store_true", help="open and closed")
    p.add_argument("--limit", type=int, default=50, help="at most this many, newest first (default: 50)")
    _add_common(p)
    p.set_defaults(func=cmd_incidents_list)
    p = inc.add_parser("show", help="one incident: facts, alerts, timeline")
    p.add_argument("id", metavar="ID")
    _add_common(p)
    p.set_defaults(func=cmd_incidents_show)
    p = inc.add_parser("close", help="close an incident (only a human closes one)")
    p.add_argument("id", metavar="ID")
    p.add_argument("--summary", help="one or two sentences for the postmortem")
    p.add_argument("--root-cause", metavar="TEXT|HN", help="the root cause, or the id of the confirmed hypothesis")
    _add_common(p)
    p.set_defaults(func=cmd_incidents_close)

    rb = sub.add_parser("runbooks", help="list, check, scaffold, test runbooks; suggest changes").add_subparsers(dest="sub", metavar="SUBCOMMAND")
    rb.required = True
    p = rb.add_parser("list", help="built-in and workspace runbooks with what they match")
    _add_common(p)
    p.set_defaults(func=cmd_runbooks_list)
    p = rb.add_parser("check", help="validate runbooks: parameters cell, metadata, regexes, kernel")
    p.add_argument("names", nargs="*", metavar="NAME", help="only these runbooks (default: all)")
    _add_common(p)
    p.set_defaults(func=cmd_runbooks_check)
    p = rb.add_parser("new", help="scaffold a runbook (notebook + jupytext .py pair) for an alert")
    p.add_argument("name", metavar="NAME", help="file name without extension, e.g. queue_backlog")
    p.add_argument("--alert", required=True, metavar="ALERTNAME", help="the alertname it matches")
    p.add_argument("--title", help="notebook title (default: from the alert name)")
    p.add_argument("--dir", metavar="DIR", help="where to write it (default: the workspace runbooks/)")
    p.add_argument("--force", action="store_true", help="overwrite an existing runbook")
    _add_common(p)
    p.set_defaults(func=cmd_runbooks_new)
    p = rb.add_parser("test", help="run runbooks on the scenario suite's alerts and bundles")
    p.add_argument("names", nargs="*", metavar="NAME", help="only these runbooks (default: all)")
    p.add_argument("--scenario", action="append", metavar="S", help="only this scenario (repeatable)")
    p.add_argument("--keep", metavar="DIR", help="keep the executed notebooks and bundles in DIR")
    _add_common(p)
    p.set_defaults(func=cmd_runbooks_test)
    p = rb.add_parser("suggest", help="turn cells responders added and ran into a runbook diff")
    p.add_argument("id", metavar="ID", help="the incident, e.g. INC-20261123-0001")
    p.add_argument("--out", metavar="FILE", help="also write the diff to FILE")
    _add_common(p)
    p.set_defaults(func=cmd_runbooks_suggest)

    p = sub.add_parser("demo", help="the whole loop on a simulated system, no external services",
                       description="Simulate a shop with an injected fault, ingest the alert its rules send, run the "
                                   "matched runbook against the replayed telemetry, and open the incident notebook "
                                   "in JupyterLab.")
    p.add_argument("--scenario", metavar="S", help="scenario name (default: the KV-cache break; see `scenario list`)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the simulation (default: 0)")
    p.add_argument("--home", default="incidentbook-demo", metavar="DIR",
                   help="where the demo keeps its state (default: ./incidentbook-demo)")
    p.add_argument("--no-lab", action="store_true", help="do not start JupyterLab; just print the notebook path")
    _add_common(p)
    p.set_defaults(func=cmd_demo)

    sc = sub.add_parser("scenario", help="simulated systems with injected faults").add_subparsers(dest="sub", metavar="SUBCOMMAND")
    sc.required = True
    p = sc.add_parser("list", help="each scenario's story, root cause and fault kind")
    _add_common(p)
    p.set_defaults(func=cmd_scenario_list)
    p = sc.add_parser("generate", help="write a scenario's telemetry bundle and the alerts it fires")
    p.add_argument("name", metavar="NAME")
    p.add_argument("out", metavar="OUT", help="output directory")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--duration", metavar="DUR", help="window length, e.g. 2h or 90m (default: the scenario's)")
    _add_common(p)
    p.set_defaults(func=cmd_scenario_generate)

    bd = sub.add_parser("bundle", help="export and import telemetry bundles").add_subparsers(dest="sub", metavar="SUBCOMMAND")
    bd.required = True
    p = bd.add_parser("export", help="freeze an incident's telemetry window into a bundle directory")
    p.add_argument("id", metavar="ID")
    p.add_argument("out", metavar="OUT")
    _add_common(p)
    p.set_defaults(func=cmd_bundle_export)
    p = bd.add_parser("import", help="validate a bundle directory and register it in the workspace")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--format", choices=["bundle", "wide-csv", "long", "long-csv", "long-parquet"], default="bundle",
                   help="wide-csv: a time column plus one <service>_<metric> column each (public RCA datasets); "
                        "long (long-csv, long-parquet): columns timestamp, service, metric, statistic, value "
                        "plus --topology (docs/evals.md)")
    p.add_argument("--inject-time", metavar="TIME", help="wide-csv: when the fault was injected (unix s or ISO)")
    p.add_argument("--root-cause", metavar="SERVICE[:KIND]", help="wide-csv: the known root cause")
    p.add_argument("--remediation", metavar="ACTION[:SERVICE]", help="wide-csv: the remediation taken, if known")
    p.add_argument("--topology", metavar="FILE", help="long: call graph, JSON or YAML ({caller: [callee]}, pairs, or edges)")
    p.add_argument("--onset", metavar="TIME", help="long: when the incident started (unix s or ISO); places the baseline")
    p.add_argument("--truth", metavar="FILE|DIR", help="long: truth file whose record for this case gives the onset")
    p.add_argument("--alerts", metavar="DIR", help="long: Alertmanager webhook payloads to keep in the bundle's alerts/")
    p.add_argument("--changes", metavar="FILE", help="long: deploys/config changes as JSON Lines (changes.jsonl)")
    p.add_argument("--namespace", metavar="NS", help="long: a namespace label for every series")
    p.add_argument("--out", metavar="DIR", help="long: where to write the bundle (default: <home>/bundles/<file stem>); "
                                                "its directory name is the eval case name")
    _add_common(p)
    p.set_defaults(func=cmd_bundle_import)

    p = sub.add_parser("eval", help="replay cases against an investigator and score it",
                       description="Replay cases (bundle directories with ground truth) against an investigator "
                                   "and score it: accuracy at 1 and 3 (root-cause service and fault kind), mean "
                                   "rank, time per case. With no CASES, the scenario suite is generated at the "
                                   "given seeds.")
    p.add_argument("cases", nargs="*", metavar="CASES",
                   help="bundle directories, library entries or archived incident ids, or: suite (default), "
                        "library (every archived incident), redteam (injected-instruction cases), fleet (the "
                        "second generator's LLM-serving scenarios), fleet-heldout (the same at held-out seeds)")
    p.add_argument("--investigator", default="rules", metavar="NAME", help="investigator to score (default: rules)")
    p.add_argument("--truth", metavar="FILE|DIR",
                   help="ground truth kept outside the bundles: a JSON/JSONL file of {case, root_cause_service, "
                        "fault_kind, alternatives} records, or a directory of <case>.json files (docs/evals.md)")
    p.add_argument("--score", choices=("service+kind", "service"), default=None,
                   help="what makes a hypothesis right: its service and fault kind (default), or the service alone")
    p.add_argument("--seeds", metavar="N,N,…", help="seeds for the generated suite (default: the built-in seeds)")
    p.add_argument("--scenario", action="append", metavar="NAME", help="only this scenario (repeatable)")
    p.add_argument("--context", choices=("first-page", "storm"), default=None,
                   help="first-page (default): each case sees only the page that opened its incident, like "
                        "%%investigate in the notebook; storm: every alert the case raised")
    p.add_argument("--model", metavar="MODEL", help="model for a model-backed investigator (with --compare: for B)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="two investigators side by side on the same cases, e.g. rules claude:claude-sonnet-4-6")
    p.add_argument("--html", metavar="OUT", help="write a plotly scorecard (self-contained HTML) to OUT")
    p.add_argument("--fail-under", action="append", metavar="METRIC=VALUE",
                   help="exit 1 when a total misses its threshold (repeatable): ac1, ac3, remediation_rate are floors; "
                        "mean_rank, unsafe, false_alarms, cost_usd, seconds_mean are ceilings. With --compare: B")
    _add_common(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("serve", help="webhook intake + runbook workers (+ JupyterLab)",
                       description="Receive Alertmanager, PagerDuty and generic alert webhooks, persist them, open "
                                   "or group incidents and run their runbooks in warm kernels. Needs a bearer token "
                                   "in the variable named by [server] token_env (--no-auth only on a loopback host).")
    p.add_argument("--host", default=None, help="address to listen on (default: [server] host)")
    p.add_argument("--port", type=int, default=None, help="port (default: [server] port)")
    p.add_argument("--no-lab", action="store_true", help="do not start JupyterLab")
    p.add_argument("--no-auth", action="store_true", help="accept webhooks without a token (loopback host only)")
    p.add_argument("--bundle", metavar="DIR", help="replay this telemetry bundle for every incident (and use its topology)")
    _add_common(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("postmortem", help="draft the postmortem notebook of a closed incident",
                       description="Draft postmortem.ipynb beside the incident notebook: summary, impact from the "
                                   "telemetry bundle, timeline, root cause with its evidence cells, action items.")
    p.add_argument("id", metavar="ID", help="the closed incident; or `publish` followed by the incident")
    p.add_argument("publish_id", nargs="?", metavar="PUBLISH_ID", help=argparse.SUPPRESS)
    p.add_argument("--archive", action="store_true", help="also archive it in the library (same as `library add`)")
    p.add_argument("--force", action="store_true", help="redraft even if a draft exists (your edits are lost); "
                   "with publish: overwrite a page someone edited in Confluence since the last publish")
    p.add_argument("--to", choices=["confluence"], help="with publish: where to publish (confluence, see [confluence])")
    p.epilog = ("`incidentbook postmortem publish ID --to confluence` publishes the library entry's redacted "
                "postmortem to the [confluence] space; publishing again updates the same page.")
    _add_common(p)
    p.set_defaults(func=cmd_postmortem)

    lb = sub.add_parser("library", help="the postmortem library: add, search, show, history").add_subparsers(
        dest="sub", metavar="SUBCOMMAND")
    lb.required = True
    p = lb.add_parser("add", help="archive (or version) a closed incident's postmortem, redacted")
    p.add_argument("id", metavar="ID")
    _add_common(p)
    p.set_defaults(func=cmd_library_add)
    p = lb.add_parser("search", help="full-text search over past postmortems")
    p.add_argument("query", nargs="*", metavar="Q", help="words that must all appear (title, summary, root cause, "
                                                         "services, alerts, log templates)")
    p.add_argument("--service", metavar="S", help="only postmortems involving this service")
    p.add_argument("--since", metavar="D", help="only incidents closed on or after this date (YYYY-MM-DD)")
    p.add_argument("--severity", metavar="S", help="only this severity")
    p.add_argument("--limit", type=int, default=20, help="at most this many (default: 20)")
    p.add_argument("--reindex", action="store_true", help="rebuild the search index from the library files first")
    _add_common(p)
    p.set_defaults(func=cmd_library_search)
    p = lb.add_parser("show", help="one archived postmortem")
    p.add_argument("id", metavar="ID")
    _add_common(p)
    p.set_defaults(func=cmd_library_show)
    p = lb.add_parser("history", help="the versions of an archived postmortem")
    p.add_argument("id", metavar="ID")
    _add_common(p)
    p.set_defaults(func=cmd_library_history)

    au = sub.add_parser("audit", help="the action audit log").add_subparsers(dest="sub", metavar="SUBCOMMAND")
    au.required = True
    p = au.add_parser("verify", help="check the audit log's hash chain; exit 1 naming the first bad entry")
    p.add_argument("--path", metavar="FILE", help="audit log to check (default: <home>/audit.jsonl)")
    _add_common(p)
    p.set_defaults(func=cmd_audit_verify)

    at = sub.add_parser("autonomy", help="autonomy policy (policy.toml): check, grant, veto, pending, escalate"
                        ).add_subparsers(dest="sub", metavar="SUBCOMMAND")
    at.required = True
    p = at.add_parser("check", help="what the policy allows for an action kind at a severity")
    p.add_argument("action", choices=["rollout_undo", "scale", "restart"])
    p.add_argument("--severity", default="critical")
    p.add_argument("--environment", help="default: [actions] environment")
    p.add_argument("--author", help="who proposes it: incidentbook (a runbook) or <investigator>:<model>")
    p.add_argument("--target", metavar="NAMESPACE/NAME", help="the Deployment it acts on")
    p.add_argument("--policy", metavar="FILE", help="default: policy.toml beside incidentbook.toml")
    _add_common(p)
    p.set_defaults(func=cmd_autonomy_check)
    p = at.add_parser("grant", help="a temporary grant (appended to policy.toml, audited)")
    p.add_argument("action", choices=["rollout_undo", "scale", "restart", "*"])
    p.add_argument("--environment", required=True)
    p.add_argument("--mode", choices=["cooldown", "auto"], default="cooldown")
    p.add_argument("--severity", default="*")
    p.add_argument("--for", dest="duration", required=True, metavar="DURATION", help="e.g. 2h, 90min")
    p.add_argument("--author", required=True, action="append",
                   help="who may act on its own: incidentbook (runbooks) or <investigator>:<model> (repeatable)")
    p.add_argument("--target", required=True, action="append", metavar="NAMESPACE/NAME",
                   help="the Deployment it may act on (repeatable)")
    p.add_argument("--reason", default="")
    p.add_argument("--policy", metavar="FILE")
    _add_common(p)
    p.set_defaults(func=cmd_autonomy_grant)
    p = at.add_parser("veto", help="cancel an action that is cooling down")
    p.add_argument("request_id", metavar="REQUEST-ID")
    p.add_argument("--reason", default="")
    _add_common(p)
    p.set_defaults(func=cmd_autonomy_veto)
    p = at.add_parser("pending", help="actions cooling down (vetoable now)")
    _add_common(p)
    p.set_defaults(func=cmd_autonomy_pending)
    p = at.add_parser("escalate", help="page for open incidents not mitigated in time (run from cron)")
    p.add_argument("--policy", metavar="FILE")
    _add_common(p)
    p.set_defaults(func=cmd_autonomy_escalate)

    tr = sub.add_parser("trust", help="trust ledger: what people did with each proposal, per investigator and model"
                        ).add_subparsers(dest="sub", metavar="SUBCOMMAND")
    tr.required = True
    for name, helptext in (("ledger", "proposal fates and acceptance rates per investigator and model"),
                           ("report", "write and run the team review notebook (default <home>/trust/report-<date>.ipynb)")):
        p = tr.add_parser(name, help=helptext)
        p.add_argument("--since", metavar="D", help="only incidents opened on or after this date (YYYY-MM-DD)")
        p.add_argument("--library", action="store_true", help="also count archived incidents in the postmortem library")
        if name == "report":
            p.add_argument("--out", metavar="FILE.ipynb", help="where to write the notebook")
            p.add_argument("--no-execute", action="store_true", help="write the notebook without running it")
        _add_common(p)
        p.set_defaults(func=cmd_trust_report if name == "report" else cmd_trust_ledger)

    _add_reliability_commands(sub)
    p = sub.add_parser("mcp", help="serve incidentbook's read-only investigation tools to any MCP client",
                       description="Serve the investigator's tools over MCP: PromQL/LogQL, Kubernetes events, "
                                   "changes, planned events, signals coverage, past postmortems, runbooks, the "
                                   "hypotheses board, and proposals (propose_cell, propose_action) that a person "
                                   "approves in the notebook. No tool writes to a system; results are redacted and "
                                   "size-capped; every call goes on the incident's timeline with the client's name.",
                       epilog="Claude Code: claude mcp add incidentbook -- incidentbook mcp --incident INC-…  "
                              "HTTP needs a bearer token in the variable [mcp] token_env names (required off loopback).")
    p.add_argument("--incident", metavar="ID", help="bind the tools to this incident (its bundle, window, board)")
    p.add_argument("--bundle", metavar="DIR", help="replay this telemetry bundle (default: the incident's, else live sources)")
    p.add_argument("--transport", choices=["stdio", "http"], default="stdio", help="stdio (default) or streamable HTTP")
    p.add_argument("--host", default=None, help="HTTP: address to listen on (default: [mcp] host)")
    p.add_argument("--port", type=int, default=None, help="HTTP: port (default: [mcp] port)")
    p.add_argument("--max-result-chars", type=int, default=None, metavar="N",
                   help="cut each tool result at N characters (default: [mcp] max_result_chars)")
    p.set_defaults(func=cmd_mcp)

    from incidentbook.actions.commands import add_commands as add_action_commands

    add_action_commands(sub)
    p = sub.add_parser("signals", help="which signal each service has (requests, errors, latency, saturation, ...), "
                       "in which exporter dialect, and what is missing",
                       description="Discover, from one series listing, which metrics carry each service's "
                                   "signals (built-in dialects plus [signals.*] mappings in incidentbook.toml). "
                                   "Reads the configured Prometheus, or a bundle with --bundle. See docs/signals.md.")
    p.add_argument("--service", action="append", metavar="S", help="only this service (repeatable)")
    p.add_argument("--check", action="store_true",
                   help="validate the [signals.*] mappings against the source: each must apply to a service "
                        "and its queries must return data (exit 2 naming the mapping otherwise)")
    p.add_argument("--bundle", metavar="DIR", help="read a telemetry bundle instead of the live source")
    p.add_argument("--start", metavar="TIME", help="window start for a live source (default: an hour ago)")
    p.add_argument("--end", metavar="TIME", help="window end for a live source (default: now)")
    _add_common(p)
    p.set_defaults(func=cmd_signals)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `incidentbook` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from incidentbook.redact import install_log_redaction, redact_secrets

    install_log_redaction()  # no log line of this process carries a secret
    try:
        return int(args.func(args) or 0)
    except IncidentbookError as e:
        print(f"incidentbook: error: {redact_secrets(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("incidentbook: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # last resort: one line, never a bare traceback
        if os.environ.get("INCIDENTBOOK_DEBUG"):
            raise
        # First line only: a database error's later lines carry the SQL statement.
        first = (str(e).strip().splitlines() or [""])[0]
        print(f"incidentbook: internal error: {type(e).__name__}: {redact_secrets(first)} "
              "(rerun with INCIDENTBOOK_DEBUG=1 for the traceback and report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
