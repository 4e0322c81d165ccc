"""%promql, %logql, %k8s, %changes: read-only telemetry queries with frames and charts."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from traitlets import Bool, Unicode

from incidentbook.kernel_ext._common import BaseMagics, one_line_errors

_DUR = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus-style duration (`30s`, `5m`, `1h`, `2d`); UsageError if malformed."""
    m = _DUR.match(text.strip())
    if not m:
        raise UsageError(f"bad duration {text!r}; use e.g. 30s, 5m, 1h, 2d")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def check_promql(query: str) -> None:
    """Fail with a one-line UsageError when `query` is not valid PromQL."""
    import promql_parser

    try:
        promql_parser.parse(query)
    except Exception as e:  # the parser raises ValueError / its own error types
        msg = " ".join(str(e).split())
        raise UsageError(f"malformed PromQL {query!r}: {msg}") from None


def _unquote(words: list[str]) -> str:
    text = " ".join(words).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return text


def _ok(result: Any, what: str) -> Any:
    """Unwrap a QueryResult, or raise its error as one line."""
    status = getattr(result, "status", None)
    if status is None:
        return result
    if status == "error":
        raise UsageError(f"{what} failed: {result.error}")
    return result.data


@magics_class
class QueryMagics(BaseMagics):
    """Read-only queries against the configured sources or the incident's bundle."""

    charts = Bool(True, help="Draw a plotly chart for time-series results.").tag(config=True)
    onsets = Bool(True, help="Mark where each charted series left its pre-alert baseline (change points).").tag(config=True)
    lead = Unicode("30m", help="How far before the incident window queries start by default (baseline).").tag(config=True)
    default_range = Unicode("", help="Range for queries when no incident window is known, e.g. '1h'.").tag(config=True)

    def _range(self, rng: str | None) -> tuple[Any, Any]:
        from incidentbook.telemetry.bundle import to_utc

        start, end = self.session.window()
        if rng or (not self.session.bound() and self.default_range):
            end_ts = to_utc(end)
            return end_ts - timedelta(seconds=parse_duration(rng or self.default_range)), end_ts
        # Show the baseline before the window too, so the shaded window stands out against it.
        s, e = to_utc(start), to_utc(end)
        lead = max((e - s) / 2, timedelta(seconds=parse_duration(self.lead)))
        return s - lead, e

    def _changes_frame(self, tel: Any, start: Any, end: Any) -> Any:
        try:
            return tel.changes(start, end)
        except Exception:  # markers are a nicety; the query result is what matters
            return None

    @magic_arguments()
    @argument("query", nargs="+", help="the PromQL expression (quotes optional)")
    @argument("-r", "--range", dest="range", default=None,
              help="look back this long from the window end, e.g. 1h (default: the incident window)")
    @argument("-s", "--step", default=None, help="resolution step, e.g. 30s (default: automatic)")
    @argument("--instant", action="store_true", help="an instant query at the window end instead of a range")
    @argument("--no-chart", action="store_true", help="only the DataFrame")
    @argument("-o", "--out", default=None, help="also store the DataFrame in this variable")
    @line_magic
    @one_line_errors
    def promql(self, line: str) -> Any:
        """Run a PromQL query over the incident window; show a DataFrame and a chart."""
        args = parse_argstring(self.promql, line)
        query = _unquote(args.query)
        check_promql(query)
        step = parse_duration(args.step) if args.step else None
        start, end = self._range(args.range)
        tel = self.session.telemetry()
        if args.instant:
            df = tel.query(query, end)
        else:
            df = tel.query_range(query, start, end, step=step)
        df = _ok(df, "PromQL query")
        if args.out:
            self.shell.user_ns[args.out] = df
        if df is None or len(df) == 0:
            print(f"no data for {query} between {start} and {end}")
            return None
        if self.charts and not args.no_chart and not args.instant:
            from incidentbook.charts import figure_bundle, timeseries_figure

            ws, we = self.session.window()
            fig = timeseries_figure(df, query, (ws, we), self._changes_frame(tel, start, end),
                                    onsets=self._onsets(df, start))
            display(figure_bundle(fig), raw=True)
        return df

    def _onsets(self, df: Any, start: Any) -> list[str]:
        """Change points of the charted series: where each left its pre-alert baseline."""
        import pandas as pd

        from incidentbook.analysis.anomaly import detect_onset
        from incidentbook.telemetry.base import to_wide
        from incidentbook.telemetry.bundle import to_utc

        alert = self.shell.user_ns.get("starts_at")
        if not alert or not self.onsets:
            return []
        first, alert_t = to_utc(start), to_utc(alert)
        if alert_t <= first:
            return []
        baseline_end = first + (alert_t - first) * 0.6  # alerts fire a few minutes after onset
        found = set()
        for _, series in to_wide(df).iloc[:, :10].items():
            for direction in ("up", "down"):
                t = detect_onset(series.dropna(), pd.Timestamp(baseline_end), direction=direction)
                if t is not None:
                    found.add(t)
        return [t.isoformat() for t in sorted(found)[:3]]

    @magic_arguments()
    @argument("query", nargs="+", help="the LogQL query, e.g. {service=\"checkout\"} |= \"error\"")
    @argument("-r", "--range", dest="range", default=None, help="look back this long, e.g. 30m (default: the incident window)")
    @argument("-l", "--limit", type=int, default=200, help="at most this many lines (default 200)")
    @argument("--forward", action="store_true", help="oldest first (default: newest first)")
    @argument("-o", "--out", default=None, help="also store the DataFrame in this variable")
    @line_magic
    @one_line_errors
    def logql(self, line: str) -> Any:
        """Run a LogQL query over the incident window; show the matching lines."""
        args = parse_argstring(self.logql, line)
        query = _unquote(args.query)
        if not query.startswith("{"):
            raise UsageError(f"malformed LogQL {query!r}: it must start with a stream selector like {{service=\"checkout\"}}")
        start, end = self._range(args.range)
        df = _ok(self.session.telemetry().query_logs(query, start, end, args.limit,
                                                     "forward" if args.forward else "backward"), "LogQL query")
        if args.out:
            self.shell.user_ns[args.out] = df
        return df

    @magic_arguments()
    @argument("what", choices=["events", "pods", "rollouts"], help="events, pods or rollouts")
    @argument("-n", "--namespace", default=None, help="namespace (default: the incident's)")
    @argument("-r", "--range", dest="range", default=None, help="look back this long (default: the incident window)")
    @line_magic
    @one_line_errors
    def k8s(self, line: str) -> Any:
        """Kubernetes events, pod restarts/OOMKills, or rollouts in the incident window."""
        args = parse_argstring(self.k8s, line)
        labels = self.shell.user_ns.get("labels")
        ns = args.namespace or (labels.get("namespace") if isinstance(labels, dict) else None)
        start, end = self._range(args.range)
        tel = self.session.telemetry()
        if args.what != "events":
            # A live cluster answers pods (restarts, OOMKilled) and rollouts (ReplicaSet
            # revisions) itself; a replayed bundle only has the events that recorded them.
            live = next((src for src in tel.sources.values() if hasattr(src, args.what)), None)
            if live is not None:
                return _ok(getattr(live, args.what)(ns or None), f"Kubernetes {args.what}")
        df = _ok(tel.events(start, end, ns or None), "Kubernetes events")
        if df is None or len(df) == 0:
            return df
        if args.what == "pods":
            df = df[df["kind"] == "Pod"]
        elif args.what == "rollouts":
            df = df[df["kind"].isin(["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"])]
        return df.reset_index(drop=True)

    @magic_arguments()
    @argument("--since", default=None, help="look back this long from the window end, e.g. 6h (default: the window)")
    @argument("-s", "--service", default=None, help="only changes to this service")
    @line_magic
    @one_line_errors
    def changes(self, line: str) -> Any:
        """Deploys, config and feature-flag changes around the incident."""
        args = parse_argstring(self.changes, line)
        start, end = self._range(args.since)
        return _ok(self.session.telemetry().changes(start, end, args.service), "changes")

    @magic_arguments()
    @argument("-s", "--service", action="append", default=None, help="only this service (repeatable)")
    @argument("-r", "--range", dest="range", default=None, help="look back this long (default: the incident window)")
    @line_magic
    @one_line_errors
    def signals(self, line: str) -> Any:
        """Which signal each service has (requests, errors, latency, saturation, ...) and from which
        metric and dialect; and which are missing. Same as `incidentbook signals`."""
        import pandas as pd

        from incidentbook.telemetry.signals import GROUPS, discover, report

        args = parse_argstring(self.signals, line)
        start, end = self._range(args.range)
        tel = self.session.telemetry()
        bundle = getattr(tel, "bundle", None)
        cfg = self.session.cfg
        services = [*getattr(bundle, "services", []), *(getattr(bundle, "topology", {}) or {}),
                    *cfg.topology, *(args.service or [])]
        disc = discover(tel, list(dict.fromkeys(services)), start, end, cfg.signals)
        if not disc.listed:
            raise UsageError("the metrics source returned no series listing; check %sources")
        doc = report(disc, args.service)
        rows = []
        for svc in doc["services"]:
            row: dict[str, Any] = {"service": svc["service"]}
            for g, names in GROUPS.items():
                hit = next((svc["signals"][n] for n in names if n in svc["signals"]), None)
                row[g] = f"{hit['dialect']}: {', '.join(hit['metrics'])}" if hit else "missing"
            rows.append(row)
        frame = pd.DataFrame(rows)
        if doc["note"]:
            print(doc["note"])
        return frame

