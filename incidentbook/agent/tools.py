"""The model's tools: read-only telemetry queries plus two output tools.

Every tool input is validated with a pydantic model before anything runs; every query goes
through the `Telemetry` facade's `safe_*` methods (the same read-only sources a person uses).
Results are summarised to a token budget (log lines become templates with counts, series become
min/mean/max/last), wrapped as delimited data blocks and redacted before the model sees them.
There is no write tool: `propose_cell` records a proposal that a person may run, nothing more.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from incidentbook.agent.base import (
    FAULT_KINDS,
    Evidence,
    Hypothesis,
    InvestigationContext,
    Proposal,
)
from incidentbook.agent.prompt import data_block
from incidentbook.telemetry.bundle import iso, to_utc

CHARS_PER_TOKEN = 4  # rough, conservative for English and log text


# ---- inputs ---------------------------------------------------------------------------------
class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _time(v: str | None) -> str | None:
    if v is None or v == "":
        return None
    try:
        return iso(to_utc(v))
    except Exception:  # noqa: BLE001 - any unparsable value is the same user error
        raise ValueError(f"{v!r} is not a time; give ISO 8601 such as 2025-06-22T15:30:00Z") from None


class _Window(_In):
    start: str | None = Field(None, description="ISO 8601 start; default: the incident window start")
    end: str | None = Field(None, description="ISO 8601 end; default: the incident window end")

    _times = field_validator("start", "end")(_time)


class QueryMetrics(_Window):
    """Run a PromQL range query."""

    promql: str = Field(min_length=1, max_length=2000, description="PromQL expression")
    step_s: float | None = Field(None, gt=0, le=3600, description="resolution in seconds (default: automatic)")


class ListSignals(_Window):
    """Which metric carries each signal (requests, errors, latency, saturation, pools, cache, disk,
    certificates) for each service, in its exporter's dialect, with the PromQL to read it; and
    which services have no readable error or latency signal. Ask this before writing PromQL."""

    service: str | None = Field(None, max_length=200, description="only this service (default: all)")


class QueryLogs(_Window):
    """Run a LogQL query (log lines are summarised as templates with counts)."""

    logql: str = Field(min_length=1, max_length=2000, description='LogQL, e.g. {service="checkout"} |= "timeout"')
    limit: int = Field(2000, ge=1, le=5000, description="most lines to read")


class KubernetesEvents(_Window):
    """Kubernetes events (pods, deployments, rollouts: OOMKilled, BackOff, Scaling…), grouped."""

    namespace: str | None = Field(None, max_length=253)
    kind: str | None = Field(None, max_length=100, description="object kind, e.g. Pod, Deployment")
    name_contains: str | None = Field(None, max_length=253, description="part of the object name")
    reason: str | None = Field(None, max_length=100, description="event reason, e.g. OOMKilled")


class RecentChanges(_In):
    """Deploys/rollouts, config and feature-flag changes before and during the window."""

    service: str | None = Field(None, max_length=100)
    lookback_minutes: int = Field(60, ge=0, le=7 * 24 * 60, description="also look this far before the window")


class PlannedEvents(_In):
    """Planned events (launches, maintenance) overlapping the window."""


class SearchPostmortems(_In):
    """Search past postmortems for similar incidents."""

    query: str = Field(min_length=1, max_length=500)


class ReadRunbook(_In):
    """Read a runbook notebook (its text and cells) by name."""

    name: str = Field(min_length=1, max_length=200)


class EvidenceIn(_In):
    summary: str = Field(min_length=1, max_length=600, description="what was observed, with the numbers")
    tool_use_id: str | None = Field(None, description="id of the tool call that showed it")


class RecordHypothesis(_In):
    """Record one hypothesis on the board (call once per hypothesis, best first)."""

    statement: str = Field(min_length=1, max_length=1000)
    service: str = Field(min_length=1, max_length=100, description="the service the cause sits in")
    fault_kind: Literal[tuple(FAULT_KINDS)]  # type: ignore[valid-type]
    role: Literal["cause", "symptom"] = "cause"
    position: Literal["root", "upstream", "downstream", "unknown"] = "unknown"
    confidence: float = Field(ge=0.0, le=1.0)
    evidence_for: list[EvidenceIn] = Field(min_length=1, max_length=20)
    evidence_against: list[EvidenceIn] = Field(default_factory=list, max_length=20)


class ProposeCell(_In):
    """Propose a notebook cell a person may run to confirm or refute a hypothesis."""

    title: str = Field(min_length=1, max_length=200)
    code: str = Field(min_length=1, max_length=4000, description="%promql …, %logql …, %changes …, or short Python")
    rationale: str = Field(min_length=1, max_length=1000, description="what the result would show")
    hypothesis_id: str = Field(min_length=1, max_length=40, description="the hypothesis this tests")
    cites: list[str] = Field(default_factory=list, max_length=20, description="ids of the tool calls behind it")


READ_TOOLS: dict[str, type[_In]] = {
    "query_metrics": QueryMetrics, "list_signals": ListSignals, "query_logs": QueryLogs, "kubernetes_events": KubernetesEvents,
    "recent_changes": RecentChanges, "planned_events": PlannedEvents,
    "search_postmortems": SearchPostmortems, "read_runbook": ReadRunbook,
}
OUTPUT_TOOLS: dict[str, type[_In]] = {"record_hypothesis": RecordHypothesis, "propose_cell": ProposeCell}
TOOLS: dict[str, type[_In]] = {**READ_TOOLS, **OUTPUT_TOOLS}


def tool_specs() -> list[dict[str, Any]]:
    """The Messages API `tools` list (names, descriptions, JSON schemas); none of them writes."""
    out = []
    for name, model in TOOLS.items():
        schema = model.model_json_schema()
        schema.pop("title", None)
        schema.pop("description", None)
        out.append({"name": name, "description": (model.__doc__ or name).strip(), "input_schema": schema})
    return out


# ---- summaries ------------------------------------------------------------------------------
def _num(v: float) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def _labels(cols: list[str], key: Any) -> str:
    vals = key if isinstance(key, tuple) else (key,)
    return "{" + ", ".join(f'{c}="{v}"' for c, v in zip(cols, vals) if str(v) not in ("", "nan", "None")) + "}"


def summarise_metrics(df: pd.DataFrame, max_series: int = 20) -> tuple[str, dict[str, Any]]:
    """Per series: points, first/min/mean/max/last and a few samples; the biggest peaks first."""
    cols = [c for c in df.columns if c not in ("timestamp", "value")]
    groups = list(df.groupby(cols, dropna=False, sort=False)) if cols else [((), df)]
    rows = []
    for key, g in groups:
        v = pd.to_numeric(g["value"], errors="coerce").replace([math.inf, -math.inf], math.nan)
        if v.notna().sum() == 0:
            rows.append((-math.inf, f"{_labels(cols, key)} {len(g)} points, all NaN/Inf", {}))
            continue
        ts = g["timestamp"]
        imax = v.idxmax()
        picks = g.iloc[[round(i * (len(g) - 1) / 7) for i in range(8)]] if len(g) > 8 else g
        samples = ", ".join(f"{iso(t)[11:19]}={_num(float(x))}" for t, x in zip(picks["timestamp"], picks["value"]))
        stats = {"first": float(v.iloc[0]), "min": float(v.min()), "mean": float(v.mean()),
                 "max": float(v.max()), "last": float(v.iloc[-1])}
        line = (f"{_labels(cols, key)} {len(g)} points {iso(ts.iloc[0])}..{iso(ts.iloc[-1])}: "
                + " ".join(f"{k}={_num(x)}" for k, x in stats.items())
                + f" (max at {iso(g.loc[imax, 'timestamp'])}); samples {samples}")
        rows.append((stats["max"], line, {_labels(cols, key): {k: round(x, 6) for k, x in stats.items()}}))
    rows.sort(key=lambda r: -r[0])
    text = [f"{len(rows)} series"] + [r[1] for r in rows[:max_series]]
    if len(rows) > max_series:
        text.append(f"({len(rows) - max_series} more series with lower peaks not shown)")
    numbers: dict[str, Any] = {}
    for r in rows[:5]:
        numbers.update(r[2])
    return "\n".join(text), numbers


def summarise_logs(df: pd.DataFrame, raw_lines: int = 40, max_templates: int = 25) -> tuple[str, dict[str, Any]]:
    """Few lines verbatim; many lines as drain3 templates with counts, first/last seen and an example."""
    if "line" not in df.columns:  # a LogQL metric query
        return summarise_metrics(df)
    svc = "service" if "service" in df.columns else ("app" if "app" in df.columns else None)
    df = df.sort_values("timestamp", kind="stable")

    def who(row: Any) -> str:
        return f"[{row[svc]}] " if svc else ""

    if len(df) <= raw_lines:
        lines = [f"{iso(r['timestamp'])} {who(r)}{r['line']}" for _, r in df.iterrows()]
        return f"{len(df)} lines\n" + "\n".join(lines), {"lines": len(df)}
    from incidentbook.analysis.logs import template_miner

    miner = template_miner()
    stats: dict[int, dict[str, Any]] = {}
    for _, r in df.iterrows():
        cid = miner.add_log_message(str(r["line"]))["cluster_id"]
        s = stats.setdefault(cid, {"count": 0, "first": r["timestamp"], "example": f"{who(r)}{r['line']}",
                                   "services": set()})
        s["count"] += 1
        s["last"] = r["timestamp"]
        if svc:
            s["services"].add(str(r[svc]))
    templates = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
    ranked = sorted(stats.items(), key=lambda kv: -kv[1]["count"])
    out = [f"{len(df)} lines in {len(ranked)} templates (count, first..last seen, services, template, example):"]
    for cid, s in ranked[:max_templates]:
        where = ",".join(sorted(s["services"]))[:120]
        out.append(f"{s['count']}x {iso(s['first'])}..{iso(s['last'])} [{where}] {templates.get(cid, '')}\n"
                   f"    e.g. {str(s['example'])[:300]}")
    if len(ranked) > max_templates:
        out.append(f"({len(ranked) - max_templates} rarer templates not shown)")
    return "\n".join(out), {"lines": len(df), "templates": len(ranked)}


def summarise_events(df: pd.DataFrame, max_rows: int = 40) -> tuple[str, dict[str, Any]]:
    """Events grouped by object and reason: total count, first and last seen, one message."""
    keys = ["namespace", "kind", "name", "type", "reason"]
    g = df.groupby(keys, dropna=False, sort=False).agg(
        count=("count", "sum"), first=("timestamp", "min"), last=("timestamp", "max"), message=("message", "first"))
    g = g.sort_values(["first"]).reset_index()
    lines = [f"{int(r['count'])}x {iso(r['first'])}..{iso(r['last'])} {r['type']} {r['reason']} "
             f"{r['kind']}/{r['namespace']}/{r['name']}: {str(r['message'])[:200]}" for _, r in g.head(max_rows).iterrows()]
    if len(g) > max_rows:
        lines.append(f"({len(g) - max_rows} more groups not shown)")
    return f"{len(df)} events in {len(g)} groups\n" + "\n".join(lines), {"events": int(df["count"].sum())}


def summarise_rows(df: pd.DataFrame, time_cols: tuple[str, ...], max_rows: int = 40) -> tuple[str, dict[str, Any]]:
    """Changes or planned events, one line each, oldest first."""
    lines = []
    for _, r in df.head(max_rows).iterrows():
        parts = []
        for c in df.columns:
            v = r[c]
            if c in time_cols:
                parts.append(iso(v))
            elif isinstance(v, (dict, list)):
                parts.append(f"{c}={json.dumps(v, default=str)[:200]}")
            elif str(v) not in ("", "nan", "None"):
                parts.append(f"{c}={v}")
        lines.append(" ".join(parts))
    if len(df) > max_rows:
        lines.append(f"({len(df) - max_rows} more rows not shown)")
    return f"{len(df)} rows\n" + "\n".join(lines), {"rows": len(df)}


def fit(text: str, tokens: int) -> str:
    """Cut `text` to about `tokens` tokens, saying how much was left out."""
    limit = tokens * CHARS_PER_TOKEN
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit("\n", 1)[0]
    return f"{cut}\n[cut: {len(text) - len(cut)} more characters; narrow the query]"


# ---- running tools --------------------------------------------------------------------------
@dataclass
class Call:
    """One tool call the model made: what ran and the headline numbers it returned."""

    id: str
    tool: str
    source: str
    query: str
    status: str
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class ToolOutcome:
    """The text returned to the model (already redacted) and whether it is an error."""

    text: str
    is_error: bool = False


_SHELL = re.compile(r"(?m)^\s*(!|%%(bash|sh|script|system)\b|%(sx|system|sc)\b)|\bsubprocess\b|\bos\.(system|popen)\b|\bkubectl\b")
_WRITE = re.compile(r"\b(ib|incidentbook)\.act\b|\bincidentbook\.actions\b")
_SOURCE = {"query_metrics": "promql", "list_signals": "promql", "query_logs": "logql", "kubernetes_events": "k8s",
           "recent_changes": "changes", "planned_events": "context", "search_postmortems": "history",
           "read_runbook": "runbook"}


class ToolBox:
    """Runs the model's tool calls for one investigation and keeps what they produced."""

    def __init__(self, ctx: InvestigationContext, redactor: Any, result_tokens: int,
                 existing: list[Hypothesis] | None = None, runbooks: Callable[[], list[Any]] | None = None) -> None:
        self.ctx = ctx
        self.redactor = redactor
        self._restored: set[str] = set()
        self.result_tokens = result_tokens
        self.existing = {h.id: h for h in existing or []}
        self.runbooks = runbooks
        self.calls: dict[str, Call] = {}
        self.hypotheses: list[Hypothesis] = []
        self.proposals: list[Proposal] = []
        self.errors: list[str] = []
        self.rejected: list[str] = []
        self.outcomes: dict[str, ToolOutcome] = {}

    # -- entry point ---------------------------------------------------------------------------
    def run(self, tool_use_id: str, name: str, raw: Any) -> ToolOutcome:
        """Validate and run one tool call once (a repeated id returns the first outcome)."""
        if tool_use_id in self.outcomes:
            return self.outcomes[tool_use_id]
        out = self._run(tool_use_id, name, raw)
        self.outcomes[tool_use_id] = out
        return out

    def _run(self, tool_use_id: str, name: str, raw: Any) -> ToolOutcome:
        model = TOOLS.get(name)
        if model is None:
            self.rejected.append(f"unknown tool {name!r}")
            return self._error(f"there is no tool named {name!r}; the tools are: {', '.join(TOOLS)}. "
                               "Nothing can be changed from here: propose a cell instead.")
        if not isinstance(raw, dict):
            self.rejected.append(f"{name}: input is not an object")
            return self._error(f"{name} needs a JSON object as input")
        # What the model wrote may be echoed by a source's error text: every value put back here
        # is hidden again in whatever goes back to the model.
        self._restored = set(self.redactor.restored_values(json.dumps(raw, default=str)))
        try:
            args = model.model_validate(self._restore(raw, secrets=name not in OUTPUT_TOOLS))
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(str(x) for x in err['loc']) or 'input'}: {err['msg']}"
                                 for err in e.errors()[:5])
            self.rejected.append(f"{name}: {problems}")
            return self._error(f"invalid input for {name}: {problems}. Fix the input and call it again.")
        handler = getattr(self, f"_{name}")
        return handler(tool_use_id, args)  # type: ignore[no-any-return]

    def _restore(self, value: Any, secrets: bool = True) -> Any:
        """Pseudonyms in the model's input back to real values, so queries match the real data.

        `secrets=False` (hypotheses and proposed cells, which people read and notebooks keep)
        puts back personal data only: a secret stays a pseudonym there.
        """
        if isinstance(value, str):
            return self.redactor.restore(value, secrets=secrets)
        if isinstance(value, list):
            return [self._restore(v, secrets) for v in value]
        if isinstance(value, dict):
            return {k: self._restore(v, secrets) for k, v in value.items()}
        return value

    def _redact(self, text: str) -> str:
        """What goes back to the model: redacted, and every value restored from its input hidden."""
        return self.redactor.hide(self.redactor.redact(text), self._restored)

    def _shown(self, text: str) -> str:
        """Text kept for people (errors, evidence): secrets hidden, personal data put back."""
        return self.redactor.restore(self._redact(text), secrets=False)

    def _error(self, text: str) -> ToolOutcome:
        return ToolOutcome(self._redact(text), True)

    def _window(self, args: Any) -> tuple[str, str]:
        return args.start or self.ctx.window_start, args.end or self.ctx.window_end

    def _data(self, call: Call, kind: str, body: str) -> ToolOutcome:
        self.calls[call.id] = call
        text = data_block(kind, fit(body, self.result_tokens), query=call.query, status=call.status,
                          tool_use_id=call.id)
        return ToolOutcome(self._redact(text), call.status == "error")

    def _result(self, tool_use_id: str, tool: str, res: Any,
                summarise: Callable[[pd.DataFrame], tuple[str, dict[str, Any]]]) -> ToolOutcome:
        # The query as people see it (evidence, proposals): a secret it carried stays a pseudonym.
        call = Call(tool_use_id, tool, _SOURCE[tool], self._shown(res.query), res.status)
        if res.status == "error":
            # Kept for the notebook: no secret the query carried (restored) survives in it.
            self.errors.append(self._shown(f"{res.query}: {res.error}"))
            return self._data(call, tool, f"query failed: {res.error}")
        if res.status == "no_data" or res.data is None or res.data.empty:
            return self._data(call, tool, "no data: the query matched nothing in this window")
        body, call.numbers = summarise(res.data)
        return self._data(call, tool, body)

    # -- read tools ----------------------------------------------------------------------------
    def _query_metrics(self, tid: str, a: QueryMetrics) -> ToolOutcome:
        s, e = self._window(a)
        return self._result(tid, "query_metrics", self.ctx.telemetry.safe_query_range(a.promql, s, e, a.step_s),
                            summarise_metrics)

    def _list_signals(self, tid: str, a: ListSignals) -> ToolOutcome:
        from incidentbook.telemetry.signals import Catalogue, list_series, report

        s, e = self._window(a)
        services = list(self.ctx.services) or sorted(set(self.ctx.topology) | {
            d for v in self.ctx.topology.values() for d in v})
        listing, errs = list_series(self.ctx.telemetry, s, e)
        disc = (getattr(self.ctx, "catalogue", None) or Catalogue()).discover(listing, services)
        call = Call(tid, "list_signals", "promql", "series listing", "ok" if disc.listed else "error")
        if not disc.listed:
            self.errors.extend(errs)
            return self._data(call, "list_signals", "the metrics source returned no series listing: "
                                                    + "; ".join(errs[:2]))
        if a.service and a.service not in disc.services:
            return self._error(f"{a.service!r} is not a service here; known: {', '.join(disc.services[:20])}")
        doc = report(disc, [a.service] if a.service else None)
        lines = [doc["note"]] if doc["note"] else []
        for svc in doc["services"]:
            lines.append(f"{svc['service']} ({', '.join(svc['dialects']) or 'no known dialect'}):")
            lines += [f"  {k}: {v['query']}" for k, v in svc["signals"].items()]
        call.numbers = {"no_red": doc["coverage"]["no_red"]}
        return self._data(call, "list_signals", "\n".join(lines))

    def _query_logs(self, tid: str, a: QueryLogs) -> ToolOutcome:
        s, e = self._window(a)
        return self._result(tid, "query_logs", self.ctx.telemetry.safe_query_logs(a.logql, s, e, limit=a.limit),
                            summarise_logs)

    def _kubernetes_events(self, tid: str, a: KubernetesEvents) -> ToolOutcome:
        s, e = self._window(a)
        res = self.ctx.telemetry.safe_events(s, e, namespace=a.namespace)
        if res.ok and res.data is not None:
            df = res.data
            if a.kind:
                df = df[df["kind"].str.lower() == a.kind.lower()]
            if a.reason:
                df = df[df["reason"].str.lower() == a.reason.lower()]
            if a.name_contains:
                df = df[df["name"].str.contains(a.name_contains, regex=False)]
            res.data = df
            res.query += "".join(f" {k}={v}" for k, v in (("kind", a.kind), ("reason", a.reason),
                                                           ("name_contains", a.name_contains)) if v)
        return self._result(tid, "kubernetes_events", res, summarise_events)

    def _recent_changes(self, tid: str, a: RecentChanges) -> ToolOutcome:
        start = to_utc(self.ctx.window_start) - pd.Timedelta(minutes=a.lookback_minutes)
        res = self.ctx.telemetry.safe_changes(start, self.ctx.window_end, service=a.service)
        return self._result(tid, "recent_changes", res, lambda df: summarise_rows(df, ("timestamp",)))

    def _planned_events(self, tid: str, a: PlannedEvents) -> ToolOutcome:
        res = self.ctx.telemetry.safe_context(self.ctx.window_start, self.ctx.window_end)
        return self._result(tid, "planned_events", res, lambda df: summarise_rows(df, ("start", "end")))

    def _search_postmortems(self, tid: str, a: SearchPostmortems) -> ToolOutcome:
        call = Call(tid, "search_postmortems", "history", self._shown(a.query), "ok")
        search = getattr(self.ctx.history, "search", None)
        if not callable(search):
            call.status = "no_data"
            return self._data(call, "postmortems", "no postmortem library is available for this incident")
        try:
            found = list(search(a.query) or [])[:5]
        except Exception as e:  # noqa: BLE001 - the library is optional evidence, never fatal
            call.status = "error"
            self.errors.append(self._shown(f"postmortem search {a.query!r}: {e}"))
            return self._data(call, "postmortems", f"search failed: {e}")
        items = [f.to_dict() if hasattr(f, "to_dict") else f if isinstance(f, dict) else {"id": str(f)} for f in found]
        call.status, call.numbers = ("ok" if items else "no_data"), {"matches": len(items)}
        body = json.dumps(items, default=str, indent=1) if items else "no matches"
        missing = list(getattr(self.ctx.history, "unavailable", None) or [])  # e.g. Confluence down
        return self._data(call, "postmortems", "\n".join([body, *missing]))

    def _read_runbook(self, tid: str, a: ReadRunbook) -> ToolOutcome:
        call = Call(tid, "read_runbook", "runbook", a.name, "ok")
        books = self.runbooks() if self.runbooks else []
        rb = next((r for r in books if getattr(r, "name", None) == a.name), None)
        if rb is None:
            call.status = "no_data"
            names = ", ".join(sorted(str(getattr(r, "name", "")) for r in books)) or "none"
            return self._data(call, "runbook", f"no runbook named {a.name!r}; known: {names}")
        import nbformat

        nb = nbformat.read(str(rb.path), as_version=4)
        text = "\n\n".join(f"[{c.cell_type}]\n{c.source}" for c in nb.cells)
        return self._data(call, "runbook", text)

    # -- output tools --------------------------------------------------------------------------
    def _known_services(self) -> set[str]:
        topo = self.ctx.topology or {}
        return set(topo) | {d for deps in topo.values() for d in deps} | set(self.ctx.services)

    def _evidence(self, items: list[EvidenceIn]) -> list[Evidence]:
        out = []
        for e in items:
            call = self.calls.get(e.tool_use_id or "")
            out.append(Evidence(summary=e.summary, source=call.source if call else "claude",
                                query=call.query if call else "", value=call.numbers if call else None))
        return out

    def _record_hypothesis(self, tid: str, a: RecordHypothesis) -> ToolOutcome:
        known = self._known_services()
        if known and a.service not in known:
            self.rejected.append(f"record_hypothesis: unknown service {a.service!r}")
            return self._error(f"unknown service {a.service!r}; services in this system: {', '.join(sorted(known))}")
        unknown = [e.tool_use_id for e in a.evidence_for + a.evidence_against
                   if e.tool_use_id and e.tool_use_id not in self.calls]
        if unknown:
            self.rejected.append(f"record_hypothesis: unknown tool call ids {unknown}")
            return self._error(f"evidence cites tool calls that did not happen: {unknown}; cite ids of "
                               "calls you made, or leave tool_use_id out for findings from the starting context")
        h = Hypothesis(id=f"C{len(self.hypotheses) + 1}", statement=a.statement, service=a.service,
                       fault_kind=a.fault_kind, role=a.role, position=a.position,
                       confidence=round(a.confidence, 3), evidence_for=self._evidence(a.evidence_for),
                       evidence_against=self._evidence(a.evidence_against))
        self.hypotheses.append(h)
        if self.ctx.on_hypothesis:
            self.ctx.on_hypothesis(h)
        return ToolOutcome(f"recorded as {h.id}")

    def _propose_cell(self, tid: str, a: ProposeCell) -> ToolOutcome:
        target = next((h for h in self.hypotheses if h.id == a.hypothesis_id), None) or self.existing.get(a.hypothesis_id)
        if target is None:
            ids = [h.id for h in self.hypotheses] + list(self.existing)
            self.rejected.append(f"propose_cell: unknown hypothesis {a.hypothesis_id!r}")
            return self._error(f"no hypothesis {a.hypothesis_id!r}; known: {', '.join(ids) or 'none (record one first)'}")
        if _SHELL.search(a.code):
            self.rejected.append(f"propose_cell: shell command in {a.title!r}")
            return self._error("proposed cells may not run shell commands or subprocesses; use %promql, %logql, "
                               "%changes or Python, and ib.act.* for guarded writes a person approves")
        cited = [self.calls[c] for c in a.cites if c in self.calls]
        why = a.rationale
        if cited:
            why += " Based on: " + "; ".join(f"{c.tool} `{c.query}`" + (f" -> {json.dumps(c.numbers, default=str)[:200]}"
                                                                        if c.numbers else "") for c in cited)
        p = Proposal(id=f"{target.id}-c{len(self.proposals) + 1}", code=a.code.rstrip() + "\n", rationale=why,
                     hypothesis=target.id, kind="write" if _WRITE.search(a.code) else "read", author="claude",
                     title=a.title)
        target.proposals.append(p)
        self.proposals.append(p)
        if self.ctx.on_proposal:
            self.ctx.on_proposal(p)
        return ToolOutcome(f"proposed as {p.id} ({p.kind}); a person decides whether to run it")
