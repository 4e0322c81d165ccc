"""Display helpers for incident notebooks and runbooks.

Each `show_*` function displays HTML (with a plain-text fallback) through IPython; each
`*_html` function returns the HTML string, so the module works without a kernel. Every value
is escaped: alert labels, annotations and log lines are data written by other systems, never
markup. Styles are inline (untrusted notebooks drop `<style>` blocks) and use JupyterLab's
theme variables with light fallbacks, so the cards read well in light and dark themes.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlparse

__all__ = [
    "EVIDENCE_MIME",
    "Panel",
    "format_quantity",
    "propose_next",
    "own_deploys",
    "show_changes",
    "show_error_logs",
    "show_events",
    "show_instant",
    "show_panels",
    "show_planned_events",
    "show_table",
    "summarize_series",
    "alert_html",
    "evidence_html",
    "parameters_html",
    "show_alert",
    "show_evidence",
    "show_parameters",
    "table_html",
]

_FG = "var(--jp-ui-font-color1, #1f2328)"
_MUTED = "var(--jp-ui-font-color2, #59636e)"
_BORDER = "var(--jp-border-color2, #d1d9e0)"
_BG = "var(--jp-layout-color1, #ffffff)"
_BG_ALT = "var(--jp-layout-color2, #f6f8fa)"
_FONT = "var(--jp-ui-font-family, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif)"
_MONO = "var(--jp-code-font-family, SFMono-Regular, Menlo, Consolas, monospace)"

_SEVERITY_COLOURS = {
    "critical": "#cf222e",
    "page": "#cf222e",
    "error": "#cf222e",
    "high": "#d1242f",
    "warning": "#bf8700",
    "warn": "#bf8700",
    "medium": "#bf8700",
    "info": "#0969da",
    "low": "#0969da",
    "none": "#59636e",
}
# Annotations shown as prose above the table rather than in it.
_PROSE_ANNOTATIONS = ("summary", "description", "message")
_LINK_ANNOTATIONS = {"runbook_url": "Runbook", "dashboard_url": "Dashboard",
                     "dashboard": "Dashboard", "playbook": "Playbook"}


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _safe_url(url: Any) -> str | None:
    """The URL if it is http(s); anything else (javascript:, data:) is shown as text only."""
    if not url:
        return None
    text = str(url).strip()
    try:
        parsed = urlparse(text)
    except ValueError:
        return None
    if parsed.scheme.lower() in ("http", "https") and parsed.netloc:
        return text
    return None


def _link(url: Any, label: str) -> str:
    safe = _safe_url(url)
    if safe is None:
        return f'<span style="color:{_MUTED}">{_e(label)}: {_e(url)}</span>'
    return (f'<a href="{_e(safe)}" target="_blank" rel="noopener noreferrer" '
            f'style="color:var(--jp-content-link-color, #0969da);text-decoration:none;'
            f'margin-right:1.2em">{_e(label)} &#8599;</a>')


def _format_value(value: Any) -> str:
    if isinstance(value, Mapping):
        if not value:
            return f'<span style="color:{_MUTED}">(none)</span>'
        inner = "".join(
            f'<div><code style="font-family:{_MONO}">{_e(k)}</code>'
            f'<span style="color:{_MUTED}"> = </span>{_format_value(v)}</div>'
            for k, v in value.items()
        )
        return f"<div>{inner}</div>"
    if isinstance(value, (list, tuple)):
        if not value:
            return f'<span style="color:{_MUTED}">(none)</span>'
        return ", ".join(_format_value(v) for v in value)
    if value is None or value == "":
        return f'<span style="color:{_MUTED}">(empty)</span>'
    safe = _safe_url(value) if isinstance(value, str) else None
    if safe:
        return _link(safe, safe)
    return _e(value)


def table_html(rows: Mapping[str, Any], key_header: str = "Name",
               value_header: str = "Value", empty: str = "(none)") -> str:
    """A two-column key/value table; nested mappings are shown as `key = value` lines."""
    if not rows:
        return f'<p style="color:{_MUTED};margin:0.3em 0">{_e(empty)}</p>'
    th = (f'style="text-align:left;padding:4px 10px;border-bottom:1px solid {_BORDER};'
          f'color:{_MUTED};font-weight:600"')
    body = []
    for i, (key, value) in enumerate(rows.items()):
        bg = _BG_ALT if i % 2 else _BG
        body.append(
            f'<tr style="background:{bg}">'
            f'<td style="text-align:left;vertical-align:top;padding:4px 10px;white-space:nowrap">'
            f'<code style="font-family:{_MONO}">{_e(key)}</code></td>'
            f'<td style="text-align:left;vertical-align:top;padding:4px 10px;'
            f'word-break:break-word">{_format_value(value)}</td></tr>'
        )
    return (f'<table style="border-collapse:collapse;margin:0.4em 0;font-size:0.95em;'
            f'color:{_FG}"><thead><tr><th {th}>{_e(key_header)}</th>'
            f'<th {th}>{_e(value_header)}</th></tr></thead><tbody>{"".join(body)}</tbody></table>')


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _time_text(value: Any) -> str:
    parsed = _parse_time(value)
    if parsed is None:
        return str(value) if value else "unknown"
    return parsed.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _format_time(value: Any) -> str:
    return _e(_time_text(value))


def _heading(text: str) -> str:
    return (f'<div style="margin:0.9em 0 0.2em;font-weight:600;color:{_MUTED};'
            f'text-transform:uppercase;letter-spacing:0.04em;font-size:0.8em">{_e(text)}</div>')


def _card(body: str, accent: str) -> str:
    # tex2jax_ignore: log lines and SQL carry `$1`-style text that JupyterLab would typeset as maths.
    return (f'<div class="tex2jax_ignore mathjax_ignore" style="font-family:{_FONT};color:{_FG};background:{_BG};'
            f'border:1px solid {_BORDER};border-left:6px solid {accent};border-radius:6px;'
            f'padding:12px 16px;margin:4px 0;max-width:60em;line-height:1.45">{body}</div>')


def alert_html(alertname: str, service: str = "", severity: str = "",
               labels: Mapping[str, Any] | None = None,
               annotations: Mapping[str, Any] | None = None, starts_at: Any = None,
               generator_url: str | None = None, incident_id: str | None = None) -> str:
    """The alert card as an HTML string (see `show_alert`)."""
    labels = dict(labels or {})
    annotations = dict(annotations or {})
    colour = _SEVERITY_COLOURS.get(str(severity).lower(), "#59636e")
    badge = (f'<span style="background:{colour};color:#fff;border-radius:10px;'
             f'padding:1px 9px;font-size:0.8em;font-weight:600;vertical-align:middle;'
             f'margin-right:0.5em">{_e(severity or "unknown")}</span>')
    title = (f'<div style="font-size:1.35em;font-weight:600">{badge}{_e(alertname)}'
             + (f'<span style="color:{_MUTED};font-weight:400"> on </span>{_e(service)}'
                if service else "") + "</div>")
    facts = []
    if incident_id:
        facts.append(f'Incident <code style="font-family:{_MONO}">{_e(incident_id)}</code>')
    facts.append(f"Started {_format_time(starts_at)}")
    summary = f'<div style="color:{_MUTED};margin-top:0.2em">{" &middot; ".join(facts)}</div>'

    prose = "".join(
        '<p style="margin:0.5em 0 0">'
        + (f'<b>{_e(str(annotations[key]))}</b>' if key == "summary" else _e(annotations[key]))
        + "</p>"
        for key in _PROSE_ANNOTATIONS if annotations.get(key)
    )
    links = []
    if generator_url:
        links.append(_link(generator_url, "Source graph"))
    for key, label in _LINK_ANNOTATIONS.items():
        if annotations.get(key):
            links.append(_link(annotations[key], label))
    links_html = f'<div style="margin-top:0.6em">{"".join(links)}</div>' if links else ""

    other = {k: v for k, v in annotations.items()
             if k not in _PROSE_ANNOTATIONS and k not in _LINK_ANNOTATIONS}
    body = (title + summary + prose + links_html
            + _heading("Labels") + table_html(labels, "Label", "Value", "(no labels)")
            + (_heading("Annotations") + table_html(other, "Annotation", "Value")
               if other else ""))
    return _card(body, colour)


def _alert_text(alertname: str, service: str, severity: str, labels: Mapping[str, Any],
                annotations: Mapping[str, Any], starts_at: Any, generator_url: str | None,
                incident_id: str | None) -> str:
    lines = [f"[{severity or 'unknown'}] {alertname}" + (f" on {service}" if service else "")]
    if incident_id:
        lines.append(f"Incident {incident_id}")
    lines.append(f"Started {_time_text(starts_at)}")
    for key in _PROSE_ANNOTATIONS:
        if annotations.get(key):
            lines.append(str(annotations[key]))
    if generator_url:
        lines.append(f"Source: {generator_url}")
    if labels:
        lines.append("Labels: " + ", ".join(f"{k}={v}" for k, v in labels.items()))
    return "\n".join(lines)


def _display(html_text: str, plain: str) -> None:
    from IPython.display import display

    display({"text/html": html_text, "text/plain": plain}, raw=True)


def show_alert(alertname: str, service: str = "", severity: str = "",
               labels: Mapping[str, Any] | None = None,
               annotations: Mapping[str, Any] | None = None, starts_at: Any = None,
               generator_url: str | None = None, incident_id: str | None = None) -> None:
    """Display the alert card: facts, summary, links, a labels table and an annotations table."""
    labels = dict(labels or {})
    annotations = dict(annotations or {})
    _display(
        alert_html(alertname, service, severity, labels, annotations, starts_at,
                   generator_url, incident_id),
        _alert_text(alertname, service, severity, labels, annotations, starts_at,
                    generator_url, incident_id),
    )


def parameters_html(parameters: Mapping[str, Any], title: str = "Parameters") -> str:
    """The parameters a runbook ran with, as a table (source settings show env var names)."""
    return _card(_heading(title) + table_html(parameters, "Parameter", "Value"), _BORDER)


def show_parameters(parameters: Mapping[str, Any], title: str = "Parameters") -> None:
    """Display the parameters a runbook ran with as a table."""
    plain = "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    _display(parameters_html(parameters, title), plain)


def _configured_sources(sources: Mapping[str, Any] | None) -> dict[str, str]:
    configured: dict[str, str] = {}
    for name, settings in (sources or {}).items():
        url = settings.get("url", "") if isinstance(settings, Mapping) else ""
        if url:
            configured[str(name)] = str(url)
    return configured


#: The RED evidence every runbook can show for a service: (title, PromQL with {service}).
RED_QUERIES: tuple[tuple[str, str], ...] = (
    ("Requests per second by status code", 'sum by (code) (rate(http_requests_total{{service="{service}"}}[5m]))'),
    ("5xx error ratio", 'sum(rate(http_requests_total{{service="{service}",code=~"5.."}}[5m])) '
                        '/ sum(rate(http_requests_total{{service="{service}"}}[5m]))'),
    ("p95 latency (s)", 'histogram_quantile(0.95, sum by (le) '
                        '(rate(http_request_duration_seconds_bucket{{service="{service}"}}[5m])))'),
)
#: Log lines worth reading first: errors, exceptions, timeouts.
ERROR_LOGS = '{{service="{service}"}} |~ "(?i)(error|exception|fail|timeout|refused|panic)"'


def promql_string(value: str) -> str:
    """Escape a value for use inside a double-quoted PromQL / LogQL label matcher."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _telemetry(bundle: str) -> Any:
    from incidentbook.telemetry.sources import Telemetry

    if bundle:
        return Telemetry.from_bundle(bundle)
    from incidentbook.config import load_config

    return Telemetry.from_config(load_config())


def evidence_html(sources: Mapping[str, Any] | None = None, bundle: str = "",
                  service: str = "", window_start: Any = None, window_end: Any = None) -> str:
    """The evidence section's header card: which telemetry is used for which window."""
    configured = _configured_sources(sources)
    window = (f'<div style="color:{_MUTED}">Window: {_format_time(window_start)} &rarr; '
              f'{_format_time(window_end)}'
              + (f' &middot; service <code style="font-family:{_MONO}">{_e(service)}</code>'
                 if service else "") + "</div>")
    if not configured and not bundle:
        body = (_heading("Evidence")
                + '<p style="margin:0.3em 0"><b>No telemetry source configured.</b></p>'
                + f'<p style="margin:0.3em 0;color:{_MUTED}">Set <code>[sources.prometheus] url</code> '
                  "in incidentbook.toml (or replay a telemetry bundle) and this section will hold "
                  "the metrics, logs and changes around the alert.</p>" + window)
        return _card(body, _BORDER)
    rows: dict[str, Any] = {}
    if bundle:
        rows["bundle (replay)"] = bundle
    rows.update(configured)
    return _card(_heading("Evidence") + window + table_html(rows, "Source", "Location"), _BORDER)


def _note(text: str, accent: str = _BORDER) -> None:
    _display(_card(f'<p style="margin:0;color:{_MUTED}">{_e(text)}</p>', accent), text)


#: The RED evidence as catalogue signals: (title, signal), read in whatever dialect the service speaks.
RED_SIGNALS: tuple[tuple[str, str], ...] = (
    ("Requests per second", "requests"),
    ("Error ratio", "error_ratio"),
    ("p95 latency (s)", "latency_p95"),
)


def _show_red(tel: Any, service: str, start: Any, end: Any, shade_from: Any, changes: Any) -> None:
    from IPython.display import display

    from incidentbook.charts import figure_bundle, timeseries_figure

    svc = promql_string(service)
    disc = _discovery(tel, service, start, end)
    for (title, signal), (_, template) in zip(RED_SIGNALS, RED_QUERIES):
        r = disc.resolved(service, signal) if disc is not None else None
        if disc is not None and r is None:
            _note(f"{title}: no readable {signal} signal for {service} - add a mapping (docs/signals.md)")
            continue
        query = r.query() if r is not None else template.format(service=svc)
        result = tel.safe_query_range(query, start, end)
        if result.status == "ok":
            fig = timeseries_figure(result.data, f"{service}: {title}", window=(shade_from, end),
                                    changes=changes)
            display(figure_bundle(fig), raw=True)  # static HTML too, so nbconvert shows it
            _note(f"query: {query}")
        elif result.status == "no_data":
            _note(f"{title}: no data for {query}")
        else:
            _note(f"{title}: query failed: {result.error}", "#bf8700")


def _show_changes(changes: Any) -> None:
    if changes is None or not len(changes):
        _note("No deploys, config or flag changes recorded in the window.")
        return
    rows = [
        {"time (UTC)": _format_time(r["timestamp"]), "service": r.get("service", ""),
         "kind": r.get("kind", ""), "what": r.get("description", ""), "by": r.get("author", "")}
        for _, r in changes.sort_values("timestamp").tail(15).iterrows()
    ]
    _display(_card(_heading("Changes in the window") + _records_html(rows), _BORDER),
             "\n".join(f"{r['time (UTC)']} {r['service']} {r['kind']}: {r['what']}" for r in rows))


def _show_error_logs(tel: Any, service: str, start: Any, end: Any) -> None:
    query = ERROR_LOGS.format(service=promql_string(service))
    result = tel.safe_query_logs(query, start, end, limit=15)
    if result.status != "ok":
        _note(f"Error logs: {'none matched' if result.status == 'no_data' else result.error} ({query})")
        return
    rows = [{"time (UTC)": _format_time(r["timestamp"]), "line": r["line"]}
            for _, r in result.data.sort_values("timestamp").iterrows()]
    _display(_card(_heading(f"Latest error lines from {service}") + _records_html(rows)
                   + f'<div style="color:{_MUTED}">query: {_e(query)}</div>', _BORDER),
             "\n".join(r["line"] for r in rows))


def _records_html(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    head = "".join(f'<th style="text-align:left;padding:2px 8px">{_e(k)}</th>' for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f'<td style="text-align:left;padding:2px 8px;font-family:{_MONO};'
                         f'font-size:0.9em;white-space:pre-wrap">{_e(v)}</td>' for v in r.values()) + "</tr>"
        for r in rows)
    return f'<table style="border-collapse:collapse;margin:0.4em 0">{head and "<tr>" + head + "</tr>"}{body}</table>'


def show_evidence(sources: Mapping[str, Any] | None = None, bundle: str = "",
                  service: str = "", window_start: Any = None, window_end: Any = None,
                  starts_at: Any = None) -> None:
    """Display the evidence for the incident window: RED charts, changes and error log lines.

    Never raises, so a runbook keeps going: a missing or failing source is shown as such.
    `starts_at` (the alert's start) begins the shaded part of each chart.
    """
    try:
        configured = _configured_sources(sources)
        plain = ("No telemetry source configured." if not configured and not bundle
                 else "Telemetry: " + ", ".join([*(["bundle " + bundle] if bundle else []),
                                                 *(f"{k} {v}" for k, v in configured.items())]))
        _display(evidence_html(sources, bundle, service, window_start, window_end), plain)
        if not configured and not bundle:
            return
        tel = _telemetry(bundle)
        changes = tel.safe_changes(window_start, window_end)
        change_frame = changes.data if changes.status == "ok" else None
        if service:
            _show_red(tel, service, window_start, window_end, starts_at or window_start, change_frame)
        _show_changes(change_frame)
        if service:
            _show_error_logs(tel, service, window_start, window_end)
    except Exception as e:  # the evidence section must never stop the rest of the runbook
        msg = f"Evidence could not be shown ({type(e).__name__}: {e})."
        _display(_card(f"<p>{_e(msg)}</p>", "#bf8700"), msg)


# ---- runbook evidence helpers: alert-specific charts, tables and next-step proposals --------

#: Mime type of the numbers behind an evidence panel (tests and tools read it; Lab shows the HTML).
EVIDENCE_MIME = "application/vnd.incidentbook.evidence+json"


class Panel:
    """One evidence chart of a runbook: a catalogue signal, or a PromQL query, over the window.

    `signal` names a catalogue signal (`error_ratio`, `latency_p95`, `pool_in_use`, ...; see
    docs/signals.md): the query is then the one for the dialect the service actually speaks,
    and `query` (optional) is only used when the catalogue finds nothing for the service.
    `query` may use `{service}` and `{namespace}` (filled in escaped). `worse` says which way is
    bad ("up" or "down"): several series are collapsed to their worst value per timestamp for
    the summary line, which compares the median before the alert with the median since.
    """

    def __init__(self, title: str, query: str = "", unit: str = "", worse: str = "up", signal: str = "") -> None:
        if worse not in ("up", "down"):
            raise ValueError(f"worse={worse!r}; use 'up' or 'down'")
        if not query and not signal:
            raise ValueError(f"Panel {title!r} needs a query or a catalogue signal")
        if signal:
            from incidentbook.telemetry.signals import SIGNALS

            if signal not in SIGNALS:
                raise ValueError(f"Panel {title!r}: unknown signal {signal!r}; use one of: {', '.join(SIGNALS)}")
        self.title, self.query, self.unit, self.worse, self.signal = title, query, unit, worse, signal

    def render(self, service: str = "", namespace: str = "", discovery: Any = None) -> str:
        """The query with the service and namespace filled in ("" when neither source has one).

        With a `discovery` (telemetry.signals.Discovery) a signal panel uses the catalogue's query.
        """
        if self.signal and discovery is not None and service:
            r = discovery.resolved(service, self.signal)
            if r is not None:
                return str(r.query())
        if not self.query:
            return ""
        return self.query.format(service=promql_string(service), namespace=promql_string(namespace))

    def __repr__(self) -> str:
        return f"Panel({self.title!r}, {self.query!r}" + (f", signal={self.signal!r})" if self.signal else ")")


def _discovery(tel: Any, service: str, start: Any, end: Any) -> Any:
    """The signal catalogue's view of one service (with the [signals.*] mappings in effect); None on failure."""
    from incidentbook.telemetry.signals import discover

    if not service:
        return None
    try:
        from incidentbook.config import load_config

        mappings = load_config().signals
    except Exception:  # a broken config must not stop the evidence: built-in dialects still work
        mappings = None
    try:
        disc = discover(tel, [service], start, end, mappings)
    except Exception:  # discovery is best effort; the panels' own queries still run
        return None
    return disc if disc.listed else None


def format_quantity(value: float | None, unit: str = "") -> str:
    """A short human reading of a number: 0.934 ratio -> 93.4%, 2.1e9 bytes -> 2.0 GiB."""
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if unit == "ratio":
        return f"{value * 100:.1f}%"
    if unit == "bytes":
        for scale, name in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.1f} {name}"
        return f"{value:.0f} B"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if abs(value) < 1 else f"{value:.2f} s"
    if unit == "days":
        return f"{value:.1f} days"
    text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def summarize_series(long: Any, starts_at: Any, worse: str = "up") -> dict[str, float | None]:
    """Median before `starts_at`, median since, and the worst value since (series collapsed)."""
    import pandas as pd

    from incidentbook.telemetry.base import to_wide

    wide = to_wide(long)
    if wide.empty:
        return {"before": None, "after": None, "worst": None}
    collapsed = wide.max(axis=1) if worse == "up" else wide.min(axis=1)
    collapsed = collapsed.dropna()
    start = _parse_time(starts_at)
    cut = pd.Timestamp(start) if start is not None else collapsed.index[len(collapsed) // 2]
    before, after = collapsed[collapsed.index < cut], collapsed[collapsed.index >= cut]

    def num(x: Any) -> float | None:
        return None if x is None or pd.isna(x) else round(float(x), 6)

    worst = (after.max() if worse == "up" else after.min()) if len(after) else None
    return {"before": num(before.median()) if len(before) else None,
            "after": num(after.median()) if len(after) else None, "worst": num(worst)}


def _summary_line(panel: Panel, stats: Mapping[str, float | None]) -> str:
    worst = "highest" if panel.worse == "up" else "lowest"
    return (f"{panel.title}: before the alert {format_quantity(stats['before'], panel.unit)}, "
            f"since {format_quantity(stats['after'], panel.unit)} "
            f"({worst} {format_quantity(stats['worst'], panel.unit)})")


def _no_telemetry(sources: Mapping[str, Any] | None, bundle: str, what: str) -> bool:
    if bundle or _configured_sources(sources):
        return False
    _note(f"{what}: no telemetry configured (set [sources.prometheus] url or replay a bundle).")
    return True


def show_panels(panels: list[Panel], *, sources: Mapping[str, Any] | None = None, bundle: str = "",
                service: str = "", namespace: str = "", window_start: Any = None,
                window_end: Any = None, starts_at: Any = None) -> dict[str, dict[str, Any]]:
    """Chart each panel over the window with a before/since summary; never raises.

    Returns {panel title: {"before", "after", "worst", "query", "status"}} so later cells can
    reason about the numbers (e.g. only propose a scale-up when throttling is really high).
    """
    from IPython.display import display

    results: dict[str, dict[str, Any]] = {}
    if _no_telemetry(sources, bundle, "Charts"):
        return results
    try:
        tel = _telemetry(bundle)
        changes = tel.safe_changes(window_start, window_end)
        change_frame = changes.data if changes.status == "ok" else None
    except Exception as e:  # a broken source must not stop the runbook
        _note(f"Charts could not be drawn ({type(e).__name__}: {e}).", "#bf8700")
        return results
    from incidentbook.charts import timeseries_figure

    disc = _discovery(tel, service, window_start, window_end) if any(p.signal for p in panels) else None
    for panel in panels:
        query = panel.render(service, namespace, disc)
        if not query:
            why = (f"no readable {panel.signal} signal for {service or 'this service'} - add a mapping "
                   f"(docs/signals.md)")
            payload = {"title": panel.title, "query": "", "unit": panel.unit, "status": "no_signal",
                       "before": None, "after": None, "worst": None}
            _display_evidence(payload, f"{_e(panel.title)}: {_e(why)}", f"{panel.title}: {why}")
            results[panel.title] = payload
            continue
        try:
            result = tel.safe_query_range(query, window_start, window_end)
        except Exception as e:  # same contract as safe_*: show the failure, keep going
            result = None
            error = f"{type(e).__name__}: {e}"
        if result is not None and result.status == "ok":
            stats = summarize_series(result.data, starts_at, panel.worse)
            shade = tuple(_parse_time(x) or x for x in (starts_at or window_start, window_end))
            display(timeseries_figure(result.data, panel.title, window=shade, changes=change_frame))
            line = _summary_line(panel, stats)
            payload = {"title": panel.title, "query": query, "unit": panel.unit, "status": "ok", **stats}
            _display_evidence(payload, f'<b>{_e(line)}</b><div style="color:{_MUTED};font-size:0.9em">'
                                       f"query: <code>{_e(query)}</code></div>", line)
        else:
            status = "no_data" if result is not None and result.status == "no_data" else "error"
            why = "no data" if status == "no_data" else f"query failed: {result.error if result else error}"
            payload = {"title": panel.title, "query": query, "unit": panel.unit, "status": status,
                       "before": None, "after": None, "worst": None}
            _display_evidence(payload, f"{_e(panel.title)}: {_e(why)} <code>{_e(query)}</code>",
                              f"{panel.title}: {why} ({query})")
        results[panel.title] = payload
    return results


def _display_evidence(payload: Mapping[str, Any], body_html: str, plain: str) -> None:
    from IPython.display import display

    accent = _BORDER if payload.get("status") == "ok" else "#bf8700"
    display({EVIDENCE_MIME: dict(payload), "text/html": _card(body_html, accent), "text/plain": plain},
            raw=True)


def show_table(title: str, frame: Any, columns: list[str] | None = None, limit: int = 20,
               empty: str = "Nothing recorded in the window.") -> None:
    """A titled table of a DataFrame's rows (times in UTC, values escaped), newest last."""
    if frame is None or not len(frame):
        _note(f"{title}: {empty}")
        return
    frame = frame.tail(limit)
    cols = [c for c in (columns or list(frame.columns)) if c in frame.columns]
    rows = [{c: (_time_text(r[c]) if c in ("timestamp", "start", "end") else
                 ", ".join(map(str, r[c])) if isinstance(r[c], (list, tuple)) else r[c]) for c in cols}
            for _, r in frame.iterrows()]
    _display(_card(_heading(title) + _records_html(rows), _BORDER),
             title + "\n" + "\n".join(" | ".join(str(v) for v in r.values()) for r in rows))


def show_events(*, sources: Mapping[str, Any] | None = None, bundle: str = "", service: str = "",
                namespace: str = "", window_start: Any = None, window_end: Any = None,
                starts_at: Any = None, reasons: tuple[str, ...] = ()) -> Any:
    """Kubernetes events of the service's objects in the window (optionally only some reasons)."""
    if _no_telemetry(sources, bundle, "Kubernetes events"):
        return None
    try:
        result = _telemetry(bundle).safe_events(window_start, window_end, namespace or None)
    except Exception as e:  # never stop the runbook
        _note(f"Kubernetes events could not be read ({type(e).__name__}: {e}).", "#bf8700")
        return None
    if result.status != "ok":
        _note(f"Kubernetes events: {'none in the window' if result.status == 'no_data' else result.error}")
        return None
    frame = result.data
    if service:
        frame = frame[frame["name"].astype(str).str.startswith(service)]
    if reasons:
        frame = frame[frame["reason"].isin(reasons)]
    frame = frame.sort_values("timestamp")
    what = f" ({', '.join(reasons)})" if reasons else ""
    show_table(f"Kubernetes events of {service or 'the namespace'}{what}", frame,
               ["timestamp", "kind", "name", "reason", "message", "count"])
    return frame


def show_planned_events(*, sources: Mapping[str, Any] | None = None, bundle: str = "",
                        service: str = "", namespace: str = "", window_start: Any = None,
                        window_end: Any = None, starts_at: Any = None) -> Any:
    """Planned events (launches, maintenance) overlapping the window; the first thing to rule out."""
    if _no_telemetry(sources, bundle, "Planned events"):
        return None
    try:
        result = _telemetry(bundle).safe_context(window_start, window_end)
    except Exception as e:  # never stop the runbook
        _note(f"The planned-events calendar could not be read ({type(e).__name__}: {e}).", "#bf8700")
        return None
    if result.status != "ok":
        _note("Planned events: none in the calendar for this window. Treat the anomaly as unexplained.")
        return result.data if result.status == "no_data" else None
    frame = result.data.sort_values("start")
    show_table("Planned events overlapping the window", frame, ["start", "end", "kind", "title", "services"])
    return frame


def show_instant(title: str, query: str, *, unit: str = "", sources: Mapping[str, Any] | None = None,
                 bundle: str = "", service: str = "", namespace: str = "", window_start: Any = None,
                 window_end: Any = None, starts_at: Any = None, at: Any = None) -> Any:
    """An instant query at `at` (default: the window end) as a table, values shown in `unit`."""
    if _no_telemetry(sources, bundle, title):
        return None
    query = Panel(title, query).render(service, namespace)
    try:
        result = _telemetry(bundle).safe_query(query, at if at is not None else window_end)
    except Exception as e:  # never stop the runbook
        _note(f"{title}: query failed ({type(e).__name__}: {e}).", "#bf8700")
        return None
    if result.status != "ok":
        _note(f"{title}: {'no data' if result.status == 'no_data' else result.error} ({query})")
        return None
    frame = result.data.sort_values("value")
    labels = [c for c in frame.columns if c not in ("timestamp", "value")]
    rows = [{**{c: r[c] for c in labels}, "value": format_quantity(float(r["value"]), unit)}
            for _, r in frame.iterrows()]
    payload = {"title": title, "query": query, "unit": unit, "status": "ok",
               "values": [{**{c: str(r[c]) for c in labels}, "value": float(r["value"])}
                          for _, r in frame.iterrows()]}
    _display_evidence(payload, _heading(title) + _records_html(rows)
                      + f'<div style="color:{_MUTED};font-size:0.9em">query: <code>{_e(query)}</code></div>',
                      title + "\n" + "\n".join(" ".join(str(v) for v in r.values()) for r in rows))
    return frame


def show_changes(*, sources: Mapping[str, Any] | None = None, bundle: str = "", service: str = "",
                 namespace: str = "", window_start: Any = None, window_end: Any = None,
                 starts_at: Any = None) -> Any:
    """Deploys, config and flag changes in the window (every service); returns the frame or None."""
    if _no_telemetry(sources, bundle, "Changes"):
        return None
    try:
        result = _telemetry(bundle).safe_changes(window_start, window_end)
    except Exception as e:  # never stop the runbook
        _note(f"Changes could not be read ({type(e).__name__}: {e}).", "#bf8700")
        return None
    frame = result.data if result.status == "ok" else None
    if result.status == "error":
        _note(f"Changes: {result.error}", "#bf8700")
    else:
        _show_changes(frame)
    return frame


def show_error_logs(*, sources: Mapping[str, Any] | None = None, bundle: str = "", service: str = "",
                    namespace: str = "", window_start: Any = None, window_end: Any = None,
                    starts_at: Any = None) -> None:
    """The latest error, exception and timeout lines of the service in the window."""
    if _no_telemetry(sources, bundle, "Error logs") or not service:
        return
    try:
        _show_error_logs(_telemetry(bundle), service, window_start, window_end)
    except Exception as e:  # never stop the runbook
        _note(f"Error logs could not be read ({type(e).__name__}: {e}).", "#bf8700")


def own_deploys(changes: Any, service: str) -> Any:
    """The deploys of `service` among `changes` (oldest first), or None when there are none."""
    if changes is None or not len(changes):
        return None
    mine = changes[(changes["service"] == service) & (changes["kind"] == "deploy")]
    return mine.sort_values("timestamp") if len(mine) else None


def propose_next(title: str, code: str, rationale: str, kind: str = "read",
                 hypothesis: str | None = None) -> str | None:
    """Propose a next-step cell (not run): a new cell live, an un-run cell after a headless run.

    Needs `%load_ext incidentbook`; without it the code is shown for copying. Returns the id.
    """
    from incidentbook.kernel_ext import get_session

    session = get_session()
    if session is None:
        _note(f"Next step ({title}): {code}")
        return None
    return session.propose({"title": title, "code": code, "rationale": rationale, "kind": kind,
                            "hypothesis": hypothesis})
