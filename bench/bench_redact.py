"""Redaction cost: the current redactor against the one it replaced, in the same run.

Three measurements, each the median of `--repeat` runs:

1. a ~2.7 MB incident notebook (plotly figures, HTML tables, log output, a traceback), redacted
   the way the library does it: old = every string of the notebook's JSON (lists of lines) through
   the old regex set; new = `incidentbook.redact.redact_notebook` (joined texts, every layer);
2. 100,000 log lines (with a few planted secrets), one `redact()` call per line, as a bundle
   export does;
3. `Library.add` of a closed incident whose notebook is that notebook (draft, redact, render
   HTML and Markdown, git commit, index), with the old redaction patched in vs the current one.

The old redactor is kept below (`OldRedactor`: its regex set and its line-by-line notebook walk)
so the baseline does not drift. Prints a Markdown table.

Run: .venv/bin/python bench/bench_redact.py [--repeat 3] [--lines 100000]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import nbformat

# ---------------------------------------------------------------------------------- the baseline

_IPV4 = r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\w.]*\d)"
_OLD_RULES = (
    ("private_key", "PRIVATE-KEY", re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----", re.S), 0),
    ("url_credentials", "PASSWORD", re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@\"']+:([^/\s@\"']+)@"), 1),
    ("bearer_token", "TOKEN", re.compile(r"(?i)\b(?:bearer|basic)\s+([A-Za-z0-9._~+/=-]{8,})"), 1),
    ("aws_access_key", "AWS-KEY", re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA)[0-9A-Z]{16}\b"), 0),
    ("aws_secret_key", "AWS-SECRET", re.compile(
        r"(?i)\baws_?secret(?:_?access)?_?key[\"']?\s*[=:]\s*[\"']?([A-Za-z0-9/+=]{40})\b"), 1),
    ("known_token", "TOKEN", re.compile(
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|xox[abprs]-[A-Za-z0-9-]{10,}|sk-[A-Za-z0-9_-]{20,}"
        r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"), 0),
    ("password", "PASSWORD", re.compile(
        r"(?i)\b(?:password|passwd|pwd|pass)[\"']?\s*[=:]\s*[\"']?([^\s\"'&,;}]+)"), 1),
    ("api_key", "API-KEY", re.compile(
        r"(?i)\b(?:api[_-]?key|apikey|access[_-]?key|secret[_-]?key|client[_-]?secret|secret|"
        r"auth[_-]?token|access[_-]?token|refresh[_-]?token|token|x-api-key)[\"']?\s*[=:]\s*[\"']?([^\s\"'&,;}]+)"), 1),
    ("email", "EMAIL", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"), 0),
    ("ipv4", "IP", re.compile(_IPV4), 0),
)
_PSEUDONYM = re.compile(r"\[[A-Z][A-Z0-9-]*-\d+\]")
_ALLOW = re.compile(r"(?:127\.0\.0\.1)|(?:0\.0\.0\.0)|(?:255\.255\.255\.255)")


class OldRedactor:
    """The redactor before known values, detect-secrets and whole-document redaction."""

    def __init__(self) -> None:
        self._forward: dict[str, str] = {}
        self._counters: Counter[str] = Counter()
        self.replacements = 0

    def _swap(self, label: str, value: str) -> str:
        if _PSEUDONYM.fullmatch(value) or _ALLOW.fullmatch(value):
            return value
        if value not in self._forward:
            self._counters[label] += 1
            self._forward[value] = f"[{label}-{self._counters[label]}]"
        self.replacements += 1
        return self._forward[value]

    def redact(self, text: str, where: str = "") -> str:
        if not text:
            return text
        for _name, label, rx, group in _OLD_RULES:
            if group == 0:
                text = rx.sub(lambda m, lb=label: self._swap(lb, m.group(0)), text)
            else:
                def swap(m: re.Match[str], lb: str = label, g: int = group) -> str:
                    s, e = m.start(g) - m.start(0), m.end(g) - m.start(0)
                    return m.group(0)[:s] + self._swap(lb, m.group(g)) + m.group(0)[e:]
                text = rx.sub(swap, text)
        return text

    def redact_obj(self, obj: Any, where: str = "") -> Any:
        if isinstance(obj, str):
            return self.redact(obj, where)
        if isinstance(obj, list):
            return [self.redact_obj(v, where) for v in obj]
        if isinstance(obj, dict):
            return {k: self.redact_obj(v, where) for k, v in obj.items()}
        return obj

    def report(self) -> dict[str, Any]:
        return {"total": self.replacements}

    def save(self) -> None:
        pass


def old_redact_notebook(nb: Any, redactor: Any, where: str) -> Any:
    """The old library walk: the notebook's JSON, one string (line) at a time."""
    doc = redactor.redact_obj(json.loads(nbformat.writes(nb)), where)
    return nbformat.reads(json.dumps(doc), as_version=4)


# ---------------------------------------------------------------------------------- inputs

SERVICES = ["checkout", "payments", "auth", "cart", "gateway", "inventory"]


def log_lines(n: int, rng: random.Random) -> list[str]:
    """Log lines as a bundle holds them; one in 2,000 carries a planted secret."""
    templates = [
        'level=error ts=2026-11-23T10:{m:02d}:{s:02d}Z service={svc} msg="upstream connect error" '
        'upstream=10.0.{a}.{b}:8080 status=503 trace_id={trace}',
        'level=info ts=2026-11-23T10:{m:02d}:{s:02d}Z service={svc} msg="GET /api/v1/cart/{a}" status=200 '
        'duration_ms={b} user=user{a}@shop.example',
        '{{"level":"warn","service":"{svc}","msg":"slow query","query":"SELECT * FROM orders WHERE id = $1",'
        '"elapsed_ms":{b},"span_id":"{span}"}}',
        "java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available, request "
        "timed out after 30000ms (pool {svc}, active={a}, idle=0, waiting={b})",
    ]
    planted = ["DB_PASSWORD=Db-pass-4-orders", "redis://:r3dis-only-pw-77@redis:6379",
               "Authorization: Bearer ya29.a0AfH6SMBx-Opaque_Access.Token-42",
               "https://hooks.slack.com/services/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"]
    out = []
    for i in range(n):
        line = rng.choice(templates).format(m=i % 60, s=(i * 7) % 60, svc=rng.choice(SERVICES), a=rng.randint(0, 255),
                                            b=rng.randint(1, 999), trace=f"{rng.getrandbits(128):032x}",
                                            span=f"{rng.getrandbits(64):016x}")
        if i % 2000 == 0:
            line += " " + planted[(i // 2000) % len(planted)]
        out.append(line)
    return out


def incident_notebook(target_bytes: int, rng: random.Random) -> Any:
    """An incident notebook of about `target_bytes`: charts, tables, log output, a traceback."""
    import pandas as pd
    import plotly.graph_objects as go

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(nbformat.v4.new_markdown_cell("# INC-20261123-0001 checkout error ratio\n\nAlert fired at 10:00Z."))
    i = 0
    while len(nbformat.writes(nb)) < target_bytes:
        i += 1
        svc = SERVICES[i % len(SERVICES)]
        xs = [f"2026-11-23T10:{m // 60:02d}:{m % 60:02d}Z" for m in range(0, 720, 4)]
        fig = go.Figure([go.Scatter(x=xs, y=[rng.random() for _ in xs], name=f"{svc} {k}") for k in ("p50", "p99")])
        chart = nbformat.v4.new_code_cell(f"%promql histogram_quantile(0.99, rate(http_duration_bucket{{service='{svc}'}}[5m]))")
        chart.outputs = [nbformat.v4.new_output("display_data", data={
            "application/vnd.plotly.v1+json": json.loads(fig.to_json()), "text/plain": repr(fig)[:200]})]
        df = pd.DataFrame({"pod": [f"{svc}-{rng.getrandbits(24):06x}" for _ in range(40)],
                           "restarts": [rng.randint(0, 9) for _ in range(40)],
                           "node": [f"10.0.{rng.randint(0, 9)}.{rng.randint(1, 254)}" for _ in range(40)]})
        table = nbformat.v4.new_code_cell(f"%k8s pods {svc}")
        table.outputs = [nbformat.v4.new_output("execute_result", execution_count=i, data={
            "text/html": df.to_html(), "text/plain": df.to_string()})]
        logs = nbformat.v4.new_code_cell(f'%logql {{service="{svc}"}} |= "error"')
        logs.outputs = [nbformat.v4.new_output("stream", name="stdout", text="\n".join(log_lines(150, rng)) + "\n")]
        nb.cells += [chart, table, logs]
    err = nbformat.v4.new_code_cell("check_db()")
    err.outputs = [nbformat.v4.new_output("error", ename="OperationalError", evalue="connection refused",
                                          traceback=["\x1b[0;31m---------\x1b[0m", "OperationalError: connect to "
                                                     "postgresql://app:pg-Pa55word-2026@pg:5432/orders failed"])]
    nb.cells.append(err)
    return nb


# ---------------------------------------------------------------------------------- timing

def median_time(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def library_add_time(nb_path: Path, old: bool, repeat: int) -> float:
    """Seconds of `Library.add` of a closed incident with this notebook (fresh library each run)."""
    import incidentbook.postmortems.library as library_mod
    from incidentbook.config import Config
    from incidentbook.incidents import Store
    from incidentbook.intake import parse_alertmanager
    from incidentbook.postmortems import Library

    fixture = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "alerts" / "checkout_firing.json"
    times = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="bench-redact-") as tmp:
            home = Path(tmp)
            cfg = Config(home=home)
            cfg.library.path = str(home / "library")
            store = Store(f"sqlite:///{home / 'ib.db'}")
            inc = store.record_alerts(parse_alertmanager(fixture.read_text())).incident
            dest = cfg.incidents_dir / inc.id / "incident.ipynb"
            dest.parent.mkdir(parents=True)
            dest.write_bytes(nb_path.read_bytes())
            store.set_runbook(inc.id, "generic", str(dest))
            store.close_incident(inc.id, "bench", summary="bench", root_cause="checkout: bad deploy")
            lib = Library(cfg.library_path)
            saved = library_mod.redact_notebook
            if old:
                library_mod.redact_notebook = old_redact_notebook
            try:
                t0 = time.perf_counter()
                lib.add(cfg, store, inc.id, redactor=OldRedactor() if old else None)
                times.append(time.perf_counter() - t0)
            finally:
                library_mod.redact_notebook = saved
                store.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--notebook-mb", type=float, default=2.7)
    parser.add_argument("--no-library", action="store_true", help="skip the library add measurement")
    args = parser.parse_args()

    from incidentbook.redact import Redactor, redact_notebook

    rng = random.Random(7)
    nb = incident_notebook(int(args.notebook_mb * 1024 * 1024), rng)
    size = len(nbformat.writes(nb))
    lines = log_lines(args.lines, random.Random(11))
    rows = []

    t_old = median_time(lambda: old_redact_notebook(nb, OldRedactor(), "incident.ipynb"), args.repeat)
    t_new = median_time(lambda: redact_notebook(nb, Redactor(), "incident.ipynb"), args.repeat)
    rows.append((f"incident notebook, {size / 1e6:.2f} MB", t_old, t_new))

    t_old = median_time(lambda: [OldRedactor().redact(x) for x in lines], args.repeat)
    r = Redactor()
    t_new = median_time(lambda: [r.redact(x) for x in lines], args.repeat)
    rows.append((f"{len(lines):,} log lines, one call each", t_old, t_new))

    if not args.no_library:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "incident.ipynb"
            nbformat.write(nb, path)
            t_old = library_add_time(path, True, args.repeat)
            t_new = library_add_time(path, False, args.repeat)
        rows.append(("`library add` of that incident", t_old, t_new))

    print(f"| {args.repeat} runs, median | old redactor (baseline) s | current s | ratio current / old |")
    print("|---|---:|---:|---:|")
    for what, a, b in rows:
        print(f"| {what} | {a:.2f} | {b:.2f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
