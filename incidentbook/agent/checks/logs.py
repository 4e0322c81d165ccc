"""Log evidence: new error templates (drain3, baseline vs incident) and client concentration."""

from __future__ import annotations

import json
import re
from typing import Any

import pandas as pd

from incidentbook.agent.base import Evidence
from incidentbook.agent.checks.common import Finding, Probe
from incidentbook.analysis.concentration import concentration
from incidentbook.analysis.logs import looks_like_error, template_shifts
from incidentbook.telemetry.bundle import iso
from incidentbook.telemetry.signals import escape

SELECTOR = '{service=~".+"}'
MAX_LINES = 20000

# Words in an error template that name a fault kind (generic vocabulary of common runtimes).
TEMPLATE_KINDS: tuple[tuple[str, str], ...] = (
    (r"x509|certificate|tls handshake|ssl", "cert_expiry"),
    (r"out of memory|oom|memory limit|heap", "memory_leak"),
    (r"pool (?:exhausted|timeout)|too many connections|acquir\w* (?:a )?connection|connection pool", "db_pool_exhaustion"),
    (r"rate.?limit|too many requests|throttled client|credential|invalid password|login failed", "abuse"),
    (r"eviction|evicted|maxmemory|cache miss", "cache_failure"),
    (r"throttl", "cpu_throttling"),
)
_KV = re.compile(r'(\w+)=("[^"]*"|\S+)')
_STATUS = re.compile(r"\b(?:status|code)[=: ]+\"?(\d{3})")


def _fields(line: str) -> dict[str, Any]:
    s = line.strip()
    if s.startswith("{"):
        try:
            obj = json.loads(s)
            return obj if isinstance(obj, dict) else {}
        except ValueError:
            return {}
    return {k: v.strip('"') for k, v in _KV.findall(s)}


def _kind_of(template: str) -> str:
    low = template.lower()
    return next((k for pat, k in TEMPLATE_KINDS if re.search(pat, low)), "")


def check_logs(p: Probe, cut: pd.Timestamp) -> list[Finding]:
    """New or surging error templates per service, and error lines owned by a few clients."""
    df = p.logs(SELECTOR, p.start, p.end, limit=MAX_LINES)
    if df.empty or "line" not in df.columns:
        return []
    ts = pd.to_datetime(df["timestamp"], utc=True)
    label_cols = [c for c in df.columns if c not in ("timestamp", "line")]
    svc = [p.service_of(dict(zip(label_cols, r))) for r in df[label_cols].astype(str).itertuples(index=False)]
    df = df.assign(_svc=svc, _ts=ts).dropna(subset=["_svc"])
    base_min = max((cut - p.start).total_seconds() / 60, 1.0)
    inc_min = max((p.end - cut).total_seconds() / 60, 1.0)
    out: list[Finding] = []
    known = set(p.services)
    for name, g in df.groupby("_svc"):
        name = str(name)
        base = g[g["_ts"] < cut]
        inc = g[g["_ts"] >= cut]
        if inc.empty:
            continue
        query = f'{{service="{escape(name)}"}}'
        # only failure-looking lines are mined: healthy traffic templates cannot be a cause
        base_err = [x for x in base["line"] if looks_like_error(x)]
        inc_err = [x for x in inc["line"] if looks_like_error(x)]
        shifts = [s for s in template_shifts(base_err, inc_err, base_min, inc_min)
                  if looks_like_error(s.template)]
        for s in shifts[:3]:
            kind = _kind_of(s.template)
            target = name
            if kind == "cert_expiry":  # a handshake error names the peer whose certificate failed
                peers = [k for k in known if k != name and re.search(rf"\b{re.escape(k)}\b", s.example)]
                target = max(peers, key=len) if peers else name
            onset = inc.loc[inc["line"] == s.example, "_ts"].min()
            strength = 0.6 if s.novel else min(0.2 + 0.05 * s.ratio, 0.5)
            out.append(Finding(target, "new error log template" if s.novel else "error log surge", strength,
                               onset if pd.notna(onset) else None,
                               Evidence(summary=f"{name} logs: {'new' if s.novel else 'surging'} template "
                                                f"{s.template!r}: {s.baseline_count} lines before {iso(cut)}, "
                                                f"{s.incident_count} after", source="logql", query=query,
                                        value={"template": s.template, "baseline": s.baseline_count,
                                               "incident": s.incident_count, "example": s.example[:300]}),
                               kind=kind, detail={"logged_by": name}))
        out += _client_concentration(name, base, inc, query)
    return out


#: Fields that describe the request or the server, never the client: errors concentrated on one
#: of these are a broken route or a bad pod, not abuse.
NOT_CLIENT = re.compile(r"(?i)^(?:ts|time|timestamp|@timestamp|level|severity|lvl|msg|message|error|err|event|"
                        r"status|code|status_code|http_status|method|verb|path|route|uri|url|endpoint|handler|"
                        r"service|app|host|hostname|pod|instance|node|container|namespace|logger|caller_file|"
                        r"latency|latency_ms|duration|duration_ms|elapsed|bytes|size|trace_id|span_id|"
                        r"request_id|req_id|traceid|spanid|line|file|func|version|env|sql|query|statement|stmt|"
                        r"db_statement|table|database|db|operation|op|stack|stacktrace|exception|reason|detail|"
                        r"details|description|body|text|cause|upstream|backend|target|topic|queue)$")
#: A value of free text (a statement, a message) rather than an identity; user agents are identities.
_FREE_TEXT = re.compile(r"\s")
_USER_AGENT = re.compile(r"^[\w.-]+/[\w.]+")


def _is_error(f: dict[str, Any]) -> bool:
    return (str(f.get("status", f.get("code", "")))[:1] in ("4", "5")
            or str(f.get("level", "")).lower() in ("error", "warn", "warning"))


def _client_concentration(name: str, base: pd.DataFrame, inc: pd.DataFrame, query: str) -> list[Finding]:
    """Errors owned by a few values of some field: whichever field of the structured lines it is.

    Every field present on most failed lines is tried (not a fixed list of client fields), except
    fields that describe the request or the server. A field counts when a few of its values own
    most of the failures and far more of them than of the requests that succeeded.
    """
    fields = [_fields(x) for x in inc["line"]]
    errs = [f for f in fields if _is_error(f)]
    oks = [f for f in fields if not _is_error(f)]
    if len(errs) < 20:
        return []
    seen: dict[str, int] = {}
    for f in errs:
        for k, v in f.items():
            if isinstance(v, (str, int)) and not isinstance(v, bool):
                seen[k] = seen.get(k, 0) + 1
    keys = [k for k, n in seen.items() if n >= 0.8 * len(errs) and not NOT_CLIENT.match(k)]
    best: tuple[float, str, Any] | None = None
    for key in keys:
        values = [str(f.get(key)) for f in errs]
        if any(v.startswith("/") for v in values[:50]):
            continue  # a path-like field is a route, whatever it is called
        if any(_FREE_TEXT.search(v) and not _USER_AGENT.match(v) for v in values[:50]):
            continue  # free text (a SQL statement, a message) is what failed, not who asked
        c = concentration(pd.Series(values).value_counts())
        if not c or not c.concentrated:
            continue
        top = {k for k, _ in c.top}
        ok_share = (sum(1 for f in oks if str(f.get(key)) in top) / len(oks)) if oks else 0.0
        if ok_share and c.top_share < 3 * ok_share:
            continue  # the same values carry the healthy traffic too: busy clients, not abusive ones
        if best is None or c.top_share > best[0]:
            best = (c.top_share, key, c)
    if best is None:
        return []
    _, key, c = best
    base_errs = sum(1 for x in base["line"] if _is_error(_fields(x)))
    return [Finding(name, "errors concentrated on few clients", min(0.4 + c.top_share / 2, 1.0),
                    inc["_ts"].min(),
                    Evidence(summary=f"{name}: {len(c.top)} {key} values own {c.top_share:.0%} of {len(errs)} failed "
                                     f"requests in the incident window ({base_errs} before): "
                                     + ", ".join(f"{k} {v:.0%}" for k, v in c.top),
                             source="logql", query=query, value={"key": key, "top": c.top, "keys": c.keys}),
                    kind="abuse")]
