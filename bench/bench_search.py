"""Library search over 10,000 generated postmortems: FTS5 index vs a plain LIKE scan.

Both run in this process on the same documents (the baseline is the same rows in an ordinary
table, every word of the query matched with LIKE over the concatenated text, plus the same
filters). Timed: rebuilding the index from 10,000 meta.json files, and p50/p95 of 300 queries
(words, service filter, words + severity) for each. Prints a markdown table.

Run: .venv/bin/python bench/bench_search.py [--entries N]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from incidentbook.postmortems import Library
from incidentbook.postmortems.search import doc_from_meta, iter_meta

SERVICES = ["auth", "cart", "catalog", "checkout", "frontend", "gateway", "inventory", "kv-cache", "payments",
            "postgres", "queue", "worker", "search", "billing", "ledger", "email", "notifications", "ads"]
KINDS = ["bad_deploy", "cache_failure", "memory_leak", "db_pool_exhaustion", "cpu_throttling", "slow_dependency",
         "abuse", "config_change", "feature_flag", "cert_expiry"]
ALERTS = ["HighErrorRate", "HighLatency", "DBQueryLatencyHigh", "CacheHitRatioLow", "PodCrashLooping",
          "CertificateExpiring", "DBConnectionsSaturated", "TrafficAnomaly"]
TEMPLATES = ['level=error msg="query timeout" error="canceling statement due to statement timeout"',
             'level=error msg="upstream connect error" upstream=<*> status=<NUM>',
             "java.lang.NullPointerException at <*> line <NUM>",
             'level=warn msg="cache miss storm" ratio=<NUM>', "x509: certificate has expired or is not yet valid",
             "OOMKilled container <*> restarted <NUM> times", 'msg="rate limited" client=<*> route=/login']
WORDS = "rollout broke the path retries amplified load pool exhausted cache evicted keys certificate expired".split()


def generate(root: Path, n: int, rng: random.Random) -> None:
    """Write `n` entries' meta.json files (what the index is rebuilt from)."""
    for i in range(n):
        svcs = rng.sample(SERVICES, rng.randint(1, 3))
        kind = rng.choice(KINDS)
        year = 2023 + i % 4
        meta = {"schema_version": 1, "id": f"INC-{year}0101-{i:05d}", "title": f"{svcs[0]} {rng.choice(WORDS)} "
                f"{rng.choice(WORDS)} incident {i}", "summary": " ".join(rng.choices(WORDS, k=12)),
                "severity": rng.choice(["critical", "warning", "page"]), "services": svcs,
                "alertnames": rng.sample(ALERTS, 2),
                "root_cause": {"kind": kind, "service": svcs[0], "statement": f"{svcs[0]}: {kind.replace('_', ' ')}"},
                "duration_s": rng.randint(300, 20000), "log_templates": rng.sample(TEMPLATES, 2),
                "tags": [kind], "closed": f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:00:00+00:00"}
        d = root / str(year) / f"{meta['id']}-x"
        d.mkdir(parents=True)
        (d / "meta.json").write_text(json.dumps(meta))


def like_baseline(db: sqlite3.Connection, q: str, service: str | None, severity: str | None, limit: int = 20) -> list:
    where, params = [], []
    for w in q.split():
        where.append("text LIKE ?")
        params.append(f"%{w}%")
    if service:
        where.append("services LIKE ?")
        params.append(f'%"{service}"%')
    if severity:
        where.append("severity = ?")
        params.append(severity)
    sql = f"SELECT doc FROM plain {'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY closed DESC LIMIT ?"
    return db.execute(sql, [*params, limit]).fetchall()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=300)
    args = ap.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "library"
        generate(root, args.entries, rng)
        lib = Library(root)
        t0 = time.perf_counter()
        idx = lib.index(rebuild=True)
        rebuild_s = time.perf_counter() - t0
        assert idx.count() == args.entries
        plain = sqlite3.connect(":memory:")
        plain.execute("CREATE TABLE plain (text TEXT, services TEXT, severity TEXT, closed TEXT, doc TEXT)")
        for meta, p in iter_meta(root):
            d = doc_from_meta(meta, str(p))
            text = " ".join([d["title"], d["summary"], d["root_cause"], d["root_cause_kind"], " ".join(d["services"]),
                             " ".join(d["alertnames"]), " ".join(d["templates"])])
            plain.execute("INSERT INTO plain VALUES (?, ?, ?, ?, ?)",
                          (text, json.dumps(d["services"]), d["severity"], d["closed"], json.dumps(d)))
        queries = []
        for i in range(args.queries):
            kind = i % 3
            if kind == 0:
                queries.append((f"{rng.choice(SERVICES)} {rng.choice(['timeout', 'expired', 'evicted', 'rollout'])}", None, None))
            elif kind == 1:
                queries.append(("", rng.choice(SERVICES), None))
            else:
                queries.append((rng.choice(KINDS).split("_")[0], None, rng.choice(["critical", "warning"])))
        fts_t, like_t, agree = [], [], 0
        for q, svc, sev in queries:
            t = time.perf_counter()
            hits = idx.search(q, service=svc, severity=sev)
            fts_t.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            base = like_baseline(plain, q, svc, sev)
            like_t.append((time.perf_counter() - t) * 1000)
            agree += bool(hits) == bool(base)
        idx.close()
    print(f"{args.entries} postmortems, {args.queries} queries (words / service filter / word + severity)\n")
    print("| | p50 ms | p95 ms |")
    print("|---|---|---|")
    print(f"| FTS5 index (`library search`) | {statistics.median(fts_t):.2f} | {pct(fts_t, .95):.2f} |")
    print(f"| LIKE scan baseline | {statistics.median(like_t):.2f} | {pct(like_t, .95):.2f} |")
    print(f"\np95 ratio FTS/LIKE: {pct(fts_t, .95) / pct(like_t, .95):.2f}; index rebuild from "
          f"{args.entries} meta.json files: {rebuild_s:.2f} s; result sets non-empty in both: {agree}/{args.queries}")


if __name__ == "__main__":
    main()
