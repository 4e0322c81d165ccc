"""LogQL replay over a bundle's recorded logs (`logs.jsonl`: `{timestamp, labels, line}`).

There is no maintained Python LogQL parser, so this module carries a small hand-written
recursive-descent parser for the subset investigations use:

- stream selectors `{app="api", env=~"prod|stage", pod!="x", level!~"debug|trace"}`
- line filters `|= "text"`, `!= "text"`, `|~ "regex"`, `!~ "regex"`
- parsers `| json` and `| logfmt` (extracted labels join the stream's labels)
- label filters after parsers: `| level="error"`, `| status >= 500`, chained with `and` or `,`
- metric queries `count_over_time(…[5m])`, `rate(…[1m])`, `bytes_over_time`, `bytes_rate`
- `sum|avg|min|max|count by (…)` / `without (…)` around them

Anything else raises UnsupportedQuery("not supported in replay: …") rather than guessing.
Semantics follow Loki: regex stream matchers are anchored, line regexes are not; a range window
is `(t - range, t]`; series with no entries in a window have no sample there; nested JSON keys
join with `_`; a parser or numeric filter that fails marks the line with `__error__`, and a
metric query over such lines fails unless a `| __error__=""` filter drops them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from incidentbook.errors import BadInput, UnsupportedQuery
from incidentbook.telemetry.base import TimeLike
from incidentbook.telemetry.bundle import to_utc
from incidentbook.telemetry.loki import empty_logs_frame, entries_to_frame, to_ns
from incidentbook.telemetry.prometheus import result_to_frame

RANGE_FUNCS = ("count_over_time", "rate", "bytes_over_time", "bytes_rate")
VECTOR_AGGS = ("sum", "avg", "min", "max", "count")
KNOWN_UNSUPPORTED = (
    "topk", "bottomk", "stddev", "stdvar", "sort", "sort_desc", "absent_over_time", "sum_over_time",
    "avg_over_time", "max_over_time", "min_over_time", "quantile_over_time", "first_over_time",
    "last_over_time", "rate_counter", "label_replace", "vector", "line_format", "label_format",
    "unwrap", "pattern", "regexp", "unpack", "decolorize", "drop", "keep", "ip", "offset",
)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


# ---------------------------------------------------------------------------------------------
# AST
@dataclass
class Matcher:
    name: str
    op: str  # = != =~ !~
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.name, "")
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        hit = re.fullmatch(self.value, v) is not None
        return hit if self.op == "=~" else not hit


@dataclass
class LineFilter:
    op: str  # |= != |~ !~
    value: str


@dataclass
class Parser:
    kind: Literal["json", "logfmt"]


@dataclass
class LabelFilter:
    name: str
    op: str  # = != =~ !~ == > >= < <=
    value: str | float


@dataclass
class LabelFilters:
    conds: list[LabelFilter]


Stage = LineFilter | Parser | LabelFilters


@dataclass
class LogQuery:
    matchers: list[Matcher]
    stages: list[Stage] = field(default_factory=list)


@dataclass
class RangeAggregation:
    func: str
    query: LogQuery
    range_s: float


@dataclass
class VectorAggregation:
    op: str
    inner: RangeAggregation | VectorAggregation
    grouping: Literal["by", "without"] | None = None
    labels: list[str] = field(default_factory=list)


Expr = LogQuery | RangeAggregation | VectorAggregation


# ---------------------------------------------------------------------------------------------
# Tokenizer and parser
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)
  | (?P<duration>\d+(?:\.\d+)?(?:ms|s|m|h|d|w|y)(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w|y))*(?![A-Za-z0-9_]))
  | (?P<number>[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<op>\|=|\|~|!=|!~|=~|==|>=|<=|[{}()\[\],|=<>+*/%^-])
""", re.VERBOSE)


@dataclass
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(q: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    while pos < len(q):
        m = _TOKEN.match(q, pos)
        if not m:
            raise BadInput(f"LogQL parse error at column {pos + 1} near {q[pos:pos + 12]!r}; check the query syntax")
        kind = m.lastgroup or ""
        if kind != "ws":
            toks.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    toks.append(_Tok("eof", "", len(q)))
    return toks


def parse_duration(text: str) -> float:
    """Seconds in a LogQL/PromQL duration such as `5m`, `1h30m`, `250ms`."""
    total, pos = 0.0, 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or total <= 0:
        raise BadInput(f"bad duration {text!r}; use e.g. 30s, 5m, 1h")
    return total


def _unquote(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1]
    return json.loads(text)


class _Parser:
    def __init__(self, q: str) -> None:
        self.q = q
        self.toks = _tokenize(q)
        self.i = 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def expect(self, text: str) -> _Tok:
        t = self.next()
        if t.text != text:
            got = t.text or "end of query"
            raise BadInput(f"LogQL parse error at column {t.pos + 1}: expected {text!r}, got {got!r}")
        return t

    def unsupported(self, what: str) -> UnsupportedQuery:
        return UnsupportedQuery(f"not supported in replay: {what} (in {self.q!r}); "
                                f"query the live Loki or rewrite with the supported subset")

    def parse(self) -> Expr:
        expr = self.expr()
        if self.tok.kind != "eof":
            t = self.tok
            if t.kind == "op" and t.text in "+-*/%^" or t.text in ("or", "and", "unless"):
                raise self.unsupported(f"binary operator {t.text!r}")
            raise BadInput(f"LogQL parse error at column {t.pos + 1}: unexpected {t.text!r}")
        return expr

    def expr(self) -> Expr:
        t = self.tok
        if t.text == "{":
            return self.log_query()
        if t.kind == "ident":
            name = t.text
            if name in VECTOR_AGGS:
                return self.vector_agg()
            if name in RANGE_FUNCS:
                return self.range_agg()
            if name in KNOWN_UNSUPPORTED:
                raise self.unsupported(f"{name}()")
            raise self.unsupported(f"function {name!r}")
        if t.kind == "number":
            raise self.unsupported("number literals")
        if t.text == "(":
            raise self.unsupported("parenthesised expressions")
        raise BadInput(f"LogQL parse error at column {t.pos + 1}: a query starts with '{{' or a function, got {t.text!r}")

    def grouping(self) -> tuple[Literal["by", "without"], list[str]]:
        kw = self.next().text
        self.expect("(")
        labels: list[str] = []
        while self.tok.text != ")":
            t = self.next()
            if t.kind != "ident":
                raise BadInput(f"LogQL parse error at column {t.pos + 1}: expected a label name, got {t.text!r}")
            labels.append(t.text)
            if self.tok.text == ",":
                self.next()
        self.expect(")")
        return ("by" if kw == "by" else "without"), labels

    def vector_agg(self) -> VectorAggregation:
        op = self.next().text
        grouping: Literal["by", "without"] | None = None
        labels: list[str] = []
        if self.tok.text in ("by", "without"):
            grouping, labels = self.grouping()
        self.expect("(")
        if self.tok.kind == "number":
            raise self.unsupported(f"{op} with a parameter")
        inner = self.expr()
        if isinstance(inner, LogQuery):
            raise BadInput(f"{op}() needs a metric query inside, e.g. {op}(count_over_time({{…}}[5m]))")
        self.expect(")")
        if self.tok.text in ("by", "without"):
            if grouping is not None:
                raise BadInput("LogQL parse error: grouping given twice")
            grouping, labels = self.grouping()
        return VectorAggregation(op, inner, grouping, labels)

    def range_agg(self) -> RangeAggregation:
        func = self.next().text
        self.expect("(")
        q = self.log_query()
        self.expect("[")
        t = self.next()
        if t.kind != "duration":
            raise BadInput(f"LogQL parse error at column {t.pos + 1}: expected a range like [5m], got {t.text!r}")
        range_s = parse_duration(t.text)
        self.expect("]")
        if self.tok.text == "offset":
            raise self.unsupported("offset")
        self.expect(")")
        if self.tok.text in ("by", "without"):
            raise self.unsupported(f"grouping directly on {func}()")
        return RangeAggregation(func, q, range_s)

    def log_query(self) -> LogQuery:
        self.expect("{")
        matchers: list[Matcher] = []
        while self.tok.text != "}":
            name = self.next()
            if name.kind != "ident":
                raise BadInput(f"LogQL parse error at column {name.pos + 1}: expected a label name, got {name.text!r}")
            op = self.next()
            if op.text not in ("=", "!=", "=~", "!~"):
                raise BadInput(f"LogQL parse error at column {op.pos + 1}: expected = != =~ !~, got {op.text!r}")
            val = self.next()
            if val.kind != "string":
                raise BadInput(f"LogQL parse error at column {val.pos + 1}: label values are quoted strings")
            value = _unquote(val.text)
            if op.text in ("=~", "!~"):
                _compile(value)
            matchers.append(Matcher(name.text, op.text, value))
            if self.tok.text == ",":
                self.next()
        self.expect("}")
        if not matchers:
            raise BadInput("a LogQL stream selector needs at least one matcher, e.g. {app=\"api\"}")
        stages: list[Stage] = []
        while self.tok.text in ("|=", "!=", "|~", "!~", "|"):
            op = self.next().text
            if op != "|":
                val = self.next()
                if val.kind != "string":
                    raise BadInput(f"LogQL parse error at column {val.pos + 1}: line filters take a quoted string")
                text = _unquote(val.text)
                if op in ("|~", "!~"):
                    _compile(text)
                stages.append(LineFilter(op, text))
                continue
            t = self.tok
            if t.text in ("json", "logfmt"):
                self.next()
                if self.tok.kind == "ident" and self.tok.text not in ("and", "or") or self.tok.kind == "string":
                    raise self.unsupported(f"{t.text} with parameters")
                stages.append(Parser(t.text))  # type: ignore[arg-type]
            elif t.kind == "ident" and t.text in KNOWN_UNSUPPORTED:
                raise self.unsupported(f"| {t.text}")
            elif t.kind == "ident":
                stages.append(self.label_filters())
            else:
                raise BadInput(f"LogQL parse error at column {t.pos + 1}: unexpected {t.text!r} after '|'")
        return LogQuery(matchers, stages)

    def label_filters(self) -> LabelFilters:
        conds = [self.label_filter()]
        while self.tok.text in ("and", ","):
            self.next()
            conds.append(self.label_filter())
        if self.tok.text == "or":
            raise self.unsupported("'or' in label filters")
        return LabelFilters(conds)

    def label_filter(self) -> LabelFilter:
        name = self.next()
        if name.kind != "ident":
            raise BadInput(f"LogQL parse error at column {name.pos + 1}: expected a label name, got {name.text!r}")
        op = self.next()
        if op.text not in ("=", "!=", "=~", "!~", "==", ">", ">=", "<", "<="):
            raise BadInput(f"LogQL parse error at column {op.pos + 1}: expected a comparison after {name.text!r}, got {op.text!r}")
        val = self.next()
        if val.kind == "string":
            if op.text in (">", ">=", "<", "<="):
                raise BadInput(f"label filter {name.text} {op.text} needs a number, got a string")
            text = _unquote(val.text)
            if op.text in ("=~", "!~"):
                _compile(text)
            return LabelFilter(name.text, "=" if op.text == "==" else op.text, text)
        if val.kind == "number":
            if op.text in ("=~", "!~"):
                raise BadInput(f"regex label filter on {name.text!r} needs a quoted string")
            return LabelFilter(name.text, "==" if op.text == "=" else op.text, float(val.text))
        if val.kind == "duration":
            raise self.unsupported("duration or bytes values in label filters")
        raise BadInput(f"LogQL parse error at column {val.pos + 1}: expected a value, got {val.text!r}")


_RE_CACHE: dict[str, re.Pattern[str]] = {}


def _compile(pattern: str) -> re.Pattern[str]:
    rx = _RE_CACHE.get(pattern)
    if rx is None:
        try:
            rx = re.compile(pattern)
        except re.error as e:
            raise BadInput(f"bad regular expression {pattern!r}: {e}") from None
        _RE_CACHE[pattern] = rx
    return rx


def parse_logql(query: str) -> Expr:
    """Parse a LogQL query into the small AST above; BadInput or UnsupportedQuery on failure."""
    if not query or not query.strip():
        raise BadInput("empty LogQL query; start with a stream selector like {app=\"api\"}")
    return _Parser(query).parse()


# ---------------------------------------------------------------------------------------------
# Evaluation
_LABEL_CHARS = re.compile(r"[^A-Za-z0-9_]")
_LOGFMT = re.compile(r'([^\s=]+)=(?:"((?:[^"\\]|\\.)*)"|(\S*))')


def _sanitize(name: str) -> str:
    name = _LABEL_CHARS.sub("_", name)
    return "_" + name if name[:1].isdigit() else name


def _flatten(obj: Mapping[str, Any], prefix: str, out: dict[str, str]) -> None:
    for k, v in obj.items():
        key = f"{prefix}_{_sanitize(k)}" if prefix else _sanitize(k)
        if isinstance(v, Mapping):
            _flatten(v, key, out)
        elif isinstance(v, list):
            continue  # Loki's json parser skips arrays
        elif v is None:
            out[key] = ""
        elif isinstance(v, bool):
            out[key] = "true" if v else "false"
        elif isinstance(v, float) and v.is_integer():
            out[key] = str(v)
        else:
            out[key] = str(v)


def _add_extracted(labels: dict[str, str], stream: Mapping[str, str], extracted: Mapping[str, str]) -> None:
    for k, v in extracted.items():
        # A parsed key that collides with a stream label is renamed, as Loki does.
        labels[f"{k}_extracted" if k in stream else k] = v


def _run_stages(stages: Sequence[Stage], stream: Mapping[str, str], line: str) -> dict[str, str] | None:
    labels = dict(stream)
    for st in stages:
        if isinstance(st, LineFilter):
            if st.op == "|=":
                ok = st.value in line
            elif st.op == "!=":
                ok = st.value not in line
            else:
                hit = _compile(st.value).search(line) is not None
                ok = hit if st.op == "|~" else not hit
            if not ok:
                return None
        elif isinstance(st, Parser):
            extracted: dict[str, str] = {}
            if st.kind == "json":
                try:
                    obj = json.loads(line)
                    if not isinstance(obj, dict):
                        raise ValueError
                    _flatten(obj, "", extracted)
                except ValueError:
                    labels["__error__"] = "JSONParserErr"
                    continue
            else:
                for m in _LOGFMT.finditer(line):
                    val = m.group(2)
                    extracted[_sanitize(m.group(1))] = (
                        val.encode().decode("unicode_escape") if val and "\\" in val else (val if val is not None else m.group(3)))
            _add_extracted(labels, stream, extracted)
        else:
            for c in st.conds:
                if not _label_ok(c, labels):
                    return None
    return labels


def _label_ok(c: LabelFilter, labels: dict[str, str]) -> bool:
    v = labels.get(c.name, "")
    if isinstance(c.value, str):
        if c.op == "=":
            return v == c.value
        if c.op == "!=":
            return v != c.value
        hit = _compile(c.value).fullmatch(v) is not None
        return hit if c.op == "=~" else not hit
    if c.name not in labels:
        return False
    try:
        x = float(v)
    except ValueError:
        labels["__error__"] = "LabelFilterErr"
        return True  # kept, marked, like Loki
    return {"==": x == c.value, "!=": x != c.value, ">": x > c.value, ">=": x >= c.value,
            "<": x < c.value, "<=": x <= c.value}[c.op]


def _records_sorted(logs: Iterable[Mapping[str, Any]]) -> tuple[np.ndarray, list[dict[str, str]], list[str]]:
    rows = list(logs)
    ts = np.array([to_utc(r["timestamp"]).value for r in rows], dtype=np.int64)
    order = np.argsort(ts, kind="stable")
    return (ts[order], [{str(k): str(v) for k, v in (rows[i].get("labels") or {}).items()} for i in order],
            [str(rows[i].get("line", "")) for i in order])


class LogQLReplay:
    """Answers LogQL over recorded log entries (a bundle's `logs.jsonl` rows)."""

    kind = "logql-replay"

    def __init__(self, logs: Iterable[Mapping[str, Any]], name: str = "replay") -> None:
        self.name = name
        self._ts, self._labels, self._lines = _records_sorted(logs)

    def _select(self, q: LogQuery, lo_ns: int, hi_ns: int, inclusive_hi: bool = False
                ) -> list[tuple[int, dict[str, str], str]]:
        a = int(np.searchsorted(self._ts, lo_ns, side="left"))
        b = int(np.searchsorted(self._ts, hi_ns, side="right" if inclusive_hi else "left"))
        out = []
        for i in range(a, b):
            stream = self._labels[i]
            if not all(m.matches(stream) for m in q.matchers):
                continue
            labels = _run_stages(q.stages, stream, self._lines[i])
            if labels is not None:
                out.append((int(self._ts[i]), labels, self._lines[i]))
        return out

    def query_logs(self, logql: str, start: TimeLike, end: TimeLike, limit: int = 1000,
                   direction: Literal["forward", "backward"] = "backward") -> pd.DataFrame:
        """Log lines in `[start, end)` (newest first for `backward`); metric queries give a metrics frame."""
        expr = parse_logql(logql)
        if not isinstance(expr, LogQuery):
            return self.query_range(logql, start, end)
        if direction not in ("forward", "backward"):
            raise BadInput(f"direction must be 'forward' or 'backward', got {direction!r}")
        entries = self._select(expr, to_ns(start), to_ns(end))
        if direction == "backward":
            entries = entries[::-1]
        entries = entries[: max(int(limit), 0)]
        if not entries:
            return empty_logs_frame()
        return entries_to_frame(entries, direction)

    def query_range(self, logql: str, start: TimeLike, end: TimeLike, step: float | None = None) -> pd.DataFrame:
        """A metric query evaluated at `start, start+step, … <= end`, as a metrics long frame."""
        return result_to_frame(self.query_range_raw(logql, start, end, step))

    def query(self, logql: str, time: TimeLike) -> pd.DataFrame:
        """A metric query at one instant, as a metrics long frame."""
        t = to_ns(time)
        data = self._eval_metric(self._metric_expr(logql), np.array([t], dtype=np.int64))
        return result_to_frame({"resultType": "vector",
                                "result": [{"metric": s["metric"], "value": s["values"][0]} for s in data]})

    def query_range_raw(self, logql: str, start: TimeLike, end: TimeLike,
                        step: float | None = None) -> dict[str, Any]:
        """Like Loki's `data` object for a metric query_range (`resultType: matrix`)."""
        expr = self._metric_expr(logql)
        lo, hi = to_ns(start), to_ns(end)
        if hi < lo:
            raise BadInput("query range ends before it starts; swap start and end")
        if step is None:
            step = max(float(int((hi - lo) / 1e9 / 250)), 1.0)
        if step <= 0:
            raise BadInput(f"step must be positive, got {step}")
        step_ns = int(round(step * 1e9))
        grid = np.arange(lo, hi + 1, step_ns, dtype=np.int64)
        return {"resultType": "matrix", "result": self._eval_metric(expr, grid)}

    def _metric_expr(self, logql: str) -> RangeAggregation | VectorAggregation:
        expr = parse_logql(logql)
        if isinstance(expr, LogQuery):
            raise BadInput(f"{logql!r} is a log query; use query_logs, or wrap it in count_over_time(…[5m])")
        return expr

    def _eval_metric(self, expr: RangeAggregation | VectorAggregation, grid: np.ndarray) -> list[dict[str, Any]]:
        series = self._series(expr, grid)
        out = []
        for key in sorted(series):
            vals = series[key]
            mask = ~np.isnan(vals)
            if not mask.any():
                continue
            out.append({"metric": dict(key),
                        "values": [[t / 1e9, _fmt(v)] for t, v in zip(grid[mask].tolist(), vals[mask].tolist())]})
        return out

    def _series(self, expr: RangeAggregation | VectorAggregation, grid: np.ndarray
                ) -> dict[tuple[tuple[str, str], ...], np.ndarray]:
        if isinstance(expr, RangeAggregation):
            return self._range(expr, grid)
        inner = self._series(expr.inner, grid)
        groups: dict[tuple[tuple[str, str], ...], list[np.ndarray]] = {}
        for key, vals in inner.items():
            labels = dict(key)
            if expr.grouping == "by":
                g = {k: labels[k] for k in expr.labels if labels.get(k, "") != ""}
            elif expr.grouping == "without":
                g = {k: v for k, v in labels.items() if k not in expr.labels}
            else:
                g = {}
            groups.setdefault(tuple(sorted(g.items())), []).append(vals)
        out = {}
        for key, members in groups.items():
            m = np.vstack(members)
            present = ~np.isnan(m)
            n = present.sum(axis=0)
            with np.errstate(invalid="ignore", all="ignore"):
                if expr.op == "sum":
                    v = np.nansum(m, axis=0)
                elif expr.op == "avg":
                    v = np.nansum(m, axis=0) / np.where(n == 0, 1, n)
                elif expr.op == "count":
                    v = n.astype(float)
                elif expr.op == "min":
                    v = np.nanmin(np.where(present, m, np.inf), axis=0)
                else:
                    v = np.nanmax(np.where(present, m, -np.inf), axis=0)
            out[key] = np.where(n == 0, np.nan, v)
        return out

    def _range(self, expr: RangeAggregation, grid: np.ndarray) -> dict[tuple[tuple[str, str], ...], np.ndarray]:
        range_ns = int(round(expr.range_s * 1e9))
        # Every entry that can fall in any window (t - range, t].
        entries = self._select(expr.query, int(grid[0]) - range_ns + 1, int(grid[-1]), inclusive_hi=True)
        by_series: dict[tuple[tuple[str, str], ...], list[tuple[int, int]]] = {}
        for ts, labels, line in entries:
            if "__error__" in labels and labels["__error__"]:
                raise BadInput(f"a log line failed to parse ({labels['__error__']}) in {expr.func}(); add "
                               f"| __error__=\"\" to drop such lines, as Loki requires")
            labels.pop("__error__", None)
            by_series.setdefault(tuple(sorted(labels.items())), []).append((ts, len(line.encode())))
        out = {}
        for key, pts in by_series.items():
            ts = np.array([p[0] for p in pts], dtype=np.int64)
            size = np.cumsum(np.array([0] + [p[1] for p in pts], dtype=np.float64))
            hi = np.searchsorted(ts, grid, side="right")
            lo = np.searchsorted(ts, grid - range_ns, side="right")
            count = (hi - lo).astype(float)
            if expr.func in ("bytes_over_time", "bytes_rate"):
                v = size[hi] - size[lo]
            else:
                v = count
            if expr.func in ("rate", "bytes_rate"):
                v = v / expr.range_s
            out[key] = np.where(count > 0, v, np.nan)
        return out

    def labels(self) -> list[str]:
        """Every stream label name in the recorded logs."""
        return sorted({k for lab in self._labels for k in lab})


def _fmt(v: float) -> str:
    return repr(int(v)) if float(v).is_integer() else repr(float(v))
