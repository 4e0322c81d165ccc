"""Which alerts the rule file would fire on simulated data, and the webhooks Alertmanager sends.

The rule expressions of `rules/shop.rules.yml` are evaluated here with numpy on the rendered
series, following Prometheus semantics (left-closed range windows, extrapolated `rate`,
`histogram_quantile` interpolation, `for:` over 30 s evaluations). A slow test checks the
results against a real Prometheus on the same data.

Alertmanager is modelled with the route `group_by: [alertname, service]`, `group_wait: 30s`,
`group_interval: 5m`: one notification per group when it first fires, then one per group
interval in which its alerts changed (new, or resolved).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from incidentbook.scenarios.metrics import Series
from incidentbook.scenarios.simulate import STEP_S
from incidentbook.telemetry.bundle import iso

RULES_FILE = Path(__file__).parent / "rules" / "shop.rules.yml"
EVAL_INTERVAL_S = 30
GROUP_BY = ("alertname", "service")
GROUP_WAIT_S = 30
GROUP_INTERVAL_S = 300
EXTERNAL_URL = "http://alertmanager.monitoring.svc:9093"
PROMETHEUS_URL = "http://prometheus.monitoring.svc:9090"
RECEIVER = "incidentbook"

Vec = dict[tuple[tuple[str, str], ...], np.ndarray]  # label set -> values over eval times


def load_rules(path: Path = RULES_FILE) -> list[dict[str, Any]]:
    """The alerting rules of a rule file (each with alert, expr, for, labels, annotations)."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def _dur(s: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", str(s)))


class Evaluator:
    """PromQL building blocks over the simulation's series, evaluated at every 30 s."""

    def __init__(self, series: list[Series], t: np.ndarray) -> None:
        self.t = t
        self.by_metric: dict[str, list[tuple[dict[str, str], np.ndarray]]] = {}
        for m, lab, v in series:
            self.by_metric.setdefault(m, []).append((lab, v))
        self.eval_idx = np.arange(0, len(t), EVAL_INTERVAL_S // STEP_S)
        self.eval_t = t[self.eval_idx]

    def select(self, metric: str, **match: str) -> list[tuple[dict[str, str], np.ndarray]]:
        out = []
        for lab, v in self.by_metric.get(metric, []):
            ok = True
            for k, want in match.items():
                if want.startswith("~"):
                    ok = ok and re.fullmatch(want[1:], lab.get(k, "")) is not None
                else:
                    ok = ok and lab.get(k, "") == want
            if ok:
                out.append((lab, v))
        return out

    def instant(self, sel: list[tuple[dict[str, str], np.ndarray]]) -> list[tuple[dict[str, str], np.ndarray]]:
        """Instant-vector values at eval times (lookback 5m: last sample, NaN when stale)."""
        out = []
        lb = 300 // STEP_S
        for lab, v in sel:
            valid = ~np.isnan(v)
            idx = np.where(valid, np.arange(len(v)), -10**9)
            last = np.maximum.accumulate(idx)[self.eval_idx]
            ok = last >= self.eval_idx - lb
            val = np.where(ok, v[np.clip(last, 0, None)], np.nan)
            out.append((lab, val))
        return out

    def increase(self, sel: list[tuple[dict[str, str], np.ndarray]], window_s: int, offset_s: int = 0,
                 per_second: bool = False) -> list[tuple[dict[str, str], np.ndarray]]:
        """`increase`/`rate` with Prometheus's counter-reset handling and extrapolation."""
        w = window_s // STEP_S
        off = offset_s // STEP_S
        n = len(self.t)
        out = []
        for lab, v in sel:
            valid = ~np.isnan(v)
            if not valid.any():
                continue
            vv = np.where(valid, v, 0.0)
            # reset-adjusted cumulative value over valid samples
            pos = np.nonzero(valid)[0]
            vals = v[pos]
            d = np.diff(vals)
            d = np.where(d < 0, vals[1:], d)
            adj_valid = np.concatenate([[0.0], np.cumsum(d)])
            adj = np.full(n, np.nan)
            adj[pos] = adj_valid
            idx = np.arange(n)
            last = np.maximum.accumulate(np.where(valid, idx, -1))
            first = np.minimum.accumulate(np.where(valid, idx, n)[::-1])[::-1]
            csum = np.concatenate([[0], np.cumsum(valid)])
            end = self.eval_idx - off
            start = end - w
            ok_range = end >= 0
            e = np.clip(end, 0, n - 1)
            s = np.clip(start, 0, n - 1)
            li = last[e]
            fi = first[s]
            cnt = csum[e + 1] - csum[s]
            good = ok_range & (cnt >= 2) & (li >= 0) & (fi < n) & (start >= -w)
            fi_c = np.clip(fi, 0, n - 1)
            li_c = np.clip(li, 0, n - 1)
            inc = adj[li_c] - adj[fi_c]
            t_first = self.t[fi_c]
            t_last = self.t[li_c]
            range_start = self.t[0] + (start) * STEP_S
            range_end = self.t[0] + end * STEP_S
            sampled = t_last - t_first
            avg = sampled / np.maximum(cnt - 1, 1)
            dstart = t_first - range_start
            dend = range_end - t_last
            with np.errstate(divide="ignore", invalid="ignore"):
                to_zero = np.where(inc > 0, sampled * vv[fi_c] / inc, np.inf)
            dstart = np.where(to_zero < dstart, to_zero, dstart)
            thr = avg * 1.1
            dstart = np.where(dstart >= thr, avg / 2, dstart)
            dend = np.where(dend >= thr, avg / 2, dend)
            with np.errstate(divide="ignore", invalid="ignore"):
                factor = (sampled + dstart + dend) / sampled
                res = inc * factor
                if per_second:
                    res = res / window_s
            out.append((lab, np.where(good & (sampled > 0), res, np.nan)))
        return out

    def rate(self, sel: list[tuple[dict[str, str], np.ndarray]], window_s: int, offset_s: int = 0):
        return self.increase(sel, window_s, offset_s, per_second=True)

    def changes(self, sel: list[tuple[dict[str, str], np.ndarray]], window_s: int):
        w = window_s // STEP_S
        out = []
        for lab, v in sel:
            valid = ~np.isnan(v)
            ch = np.zeros(len(v))
            pos = np.nonzero(valid)[0]
            if len(pos) < 1:
                continue
            ch[pos[1:]] = (np.diff(v[pos]) != 0).astype(float)
            csum = np.concatenate([[0], np.cumsum(ch)])
            cv = np.concatenate([[0], np.cumsum(valid)])
            e = self.eval_idx
            s = np.clip(e - w, 0, None)
            # the first sample in the window does not count as a change
            firsts = np.array([pos[np.searchsorted(pos, si)] if np.searchsorted(pos, si) < len(pos) else -1 for si in s])
            n_changes = csum[e + 1] - csum[s] - np.where((firsts >= 0) & (firsts <= e), ch[np.clip(firsts, 0, None)], 0)
            has = (cv[e + 1] - cv[s]) >= 1
            out.append((lab, np.where(has, n_changes, np.nan)))
        return out

    @staticmethod
    def sum_by(vec: list[tuple[dict[str, str], np.ndarray]], keys: tuple[str, ...], agg: str = "sum") -> Vec:
        groups: dict[tuple[tuple[str, str], ...], list[np.ndarray]] = {}
        for lab, v in vec:
            k = tuple((key, lab[key]) for key in keys if key in lab)
            groups.setdefault(k, []).append(v)
        out: Vec = {}
        for k, vs in groups.items():
            a = np.array(vs)
            allnan = np.all(np.isnan(a), axis=0)
            r = np.nanmax(np.where(np.isnan(a), -np.inf, a), axis=0) if agg == "max" else np.nansum(a, axis=0)
            out[k] = np.where(allnan, np.nan, r)
        return out

    def histogram_quantile(self, q: float, metric: str, window_s: int, keys: tuple[str, ...]) -> Vec:
        rates = self.rate(self.select(metric, namespace="shop"), window_s)
        by: dict[tuple[tuple[str, str], ...], dict[float, list[np.ndarray]]] = {}
        for lab, v in rates:
            k = tuple((key, lab[key]) for key in keys if key in lab and key != "le")
            by.setdefault(k, {}).setdefault(float(lab["le"]), []).append(v)
        out: Vec = {}
        for k, buckets in by.items():
            les = sorted(buckets)
            mats = []
            for le in les:
                a = np.array(buckets[le])
                mats.append(np.where(np.all(np.isnan(a), axis=0), np.nan, np.nansum(a, axis=0)))
            M = np.maximum.accumulate(np.nan_to_num(np.array(mats)), axis=0)
            total = M[-1]
            rank = q * total
            b = np.argmax(M >= rank[None, :], axis=0)
            le_arr = np.array(les)
            upper = le_arr[b]
            lower = np.where(b > 0, le_arr[np.maximum(b - 1, 0)], 0.0)
            cnt_hi = M[b, np.arange(M.shape[1])]
            cnt_lo = np.where(b > 0, M[np.maximum(b - 1, 0), np.arange(M.shape[1])], 0.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                val = lower + (upper - lower) * (rank - cnt_lo) / (cnt_hi - cnt_lo)
            val = np.where(np.isinf(upper), le_arr[-2], val)
            val = np.where((b == 0) & (upper <= 0), upper, val)
            out[k] = np.where((total > 0) & ~np.any(np.isnan(np.array(mats)), axis=0), val, np.nan)
        return out


def _ratio(num: Vec, den: Vec) -> Vec:
    out = {}
    for k, d in den.items():
        n = num.get(k)
        if n is None:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            out[k] = n / d
    return out


def _keep(vec: Vec, cond: Callable[[np.ndarray], np.ndarray]) -> Vec:
    return {k: np.where(cond(v) & ~np.isnan(v), v, np.nan) for k, v in vec.items()}


NS = ("namespace", "service")


def _expr_values(ev: Evaluator, alert: str) -> Vec:
    """The numpy mirror of each rule's `expr`: value where the condition holds, else NaN."""
    sel = ev.select
    if alert in ("HighErrorRate", "HighRateLimiting"):
        code = "~5.." if alert == "HighErrorRate" else "429"
        num = ev.sum_by(ev.rate(sel("http_requests_total", namespace="shop", code=code), 120), NS)
        den = ev.sum_by(ev.rate(sel("http_requests_total", namespace="shop"), 120), NS)
        thr = 0.05 if alert == "HighErrorRate" else 0.1
        return _keep(_ratio(num, den), lambda v: v > thr)
    if alert == "HighLatency":
        return _keep(ev.histogram_quantile(0.99, "http_request_duration_seconds_bucket", 300, NS + ("le",)), lambda v: v > 1)
    if alert == "DBQueryLatencyHigh":
        return _keep(ev.histogram_quantile(0.99, "db_query_duration_seconds_bucket", 300, NS + ("le",)), lambda v: v > 0.25)
    if alert == "TrafficAnomaly":
        out: Vec = {}
        for metric, both in (("http_requests_total", True), ("pg_stat_database_xact_commit", False)):
            now = ev.sum_by(ev.rate(sel(metric, namespace="shop"), 600), NS)
            ago = ev.sum_by(ev.rate(sel(metric, namespace="shop"), 600, 3600), NS)
            hist = ev.sum_by(ev.rate(sel(metric, namespace="shop"), 60, 4200), NS)
            for k, v in now.items():
                a = ago.get(k)
                h = hist.get(k)
                if a is None or h is None:
                    continue
                hit = (v > 1.8 * a) | ((v < 0.4 * a) if both else False)
                val = np.where(hit & ~np.isnan(a) & ~np.isnan(v) & ~np.isnan(h), v, np.nan)
                out[k] = np.where(np.isnan(out[k]), val, out[k]) if k in out else val
        return out
    if alert == "PodCrashLooping":
        ch = ev.changes(sel("kube_pod_container_status_restarts_total", namespace="shop"), 900)
        return _keep({tuple(sorted(lab.items())): v for lab, v in ch}, lambda v: v >= 2)
    if alert == "KubePodOOMKilled":
        ch = {(lab["namespace"], lab["pod"], lab["container"]): v
              for lab, v in ev.changes(sel("kube_pod_container_status_restarts_total", namespace="shop"), 600)}
        out = {}
        for lab, v in ev.instant(sel("kube_pod_container_status_last_terminated_reason", namespace="shop",
                                     reason="OOMKilled")):
            c = ch.get((lab["namespace"], lab["pod"], lab["container"]))
            if c is None:
                continue
            out[tuple(sorted(lab.items()))] = np.where((v == 1) & (c > 0), v, np.nan)
        return out
    if alert == "ContainerMemoryNearLimit":
        keys = NS + ("pod",)
        ws = ev.sum_by(ev.instant(sel("container_memory_working_set_bytes", namespace="shop")), keys, "max")
        lim = ev.sum_by(ev.instant(sel("kube_pod_container_resource_limits", namespace="shop", resource="memory")), keys, "max")
        return _keep(_ratio(ws, lim), lambda v: v > 0.9)
    if alert == "CPUThrottlingHigh":
        keys = NS + ("pod",)
        thr = ev.sum_by(ev.increase(sel("container_cpu_cfs_throttled_periods_total", namespace="shop"), 300), keys)
        per = ev.sum_by(ev.increase(sel("container_cpu_cfs_periods_total", namespace="shop"), 300), keys)
        return _keep(_ratio(thr, per), lambda v: v > 0.25)
    if alert == "DBConnectionsSaturated":
        use = {tuple(sorted(lab.items())): v for lab, v in ev.instant(sel("db_pool_connections_in_use", namespace="shop"))}
        mx = {tuple(sorted(lab.items())): v for lab, v in ev.instant(sel("db_pool_connections_max", namespace="shop"))}
        ratio = [(dict(k), use[k] / mx[k]) for k in use if k in mx]
        return _keep(ev.sum_by(ratio, NS, "max"), lambda v: v >= 0.9)
    if alert == "CacheHitRatioLow":
        hits = ev.sum_by(ev.rate(sel("redis_keyspace_hits_total", namespace="shop"), 300), NS)
        miss = ev.sum_by(ev.rate(sel("redis_keyspace_misses_total", namespace="shop"), 300), NS)
        tot = {k: hits[k] + miss[k] for k in hits if k in miss}
        return _keep(_ratio(hits, tot), lambda v: v < 0.6)
    if alert == "CertificateExpiringSoon":
        return {tuple(sorted(lab.items())): np.where(v - ev.eval_t < 7 * 86400, v - ev.eval_t, np.nan)
                for lab, v in ev.instant(sel("probe_ssl_earliest_cert_expiry", namespace="shop"))}
    if alert in ("BlackboxProbeFailed", "TargetDown"):
        metric = "probe_success" if alert == "BlackboxProbeFailed" else "up"
        return _keep({tuple(sorted(lab.items())): v for lab, v in ev.instant(sel(metric, namespace="shop"))},
                     lambda v: v == 0)
    if alert == "DiskFillingUp":
        avail = {tuple(sorted(lab.items())): v
                 for lab, v in ev.instant(sel("kubelet_volume_stats_available_bytes", namespace="shop"))}
        cap = {tuple(sorted(lab.items())): v
               for lab, v in ev.instant(sel("kubelet_volume_stats_capacity_bytes", namespace="shop"))}
        return _keep(_ratio(avail, cap), lambda v: v < 0.15)
    if alert == "QueueBacklog":
        return _keep(ev.sum_by(ev.instant(sel("rabbitmq_queue_messages_ready", namespace="shop")), NS + ("queue",)),
                     lambda v: v > 1000)
    raise KeyError(f"no evaluator for alert {alert!r}; add one to incidentbook/scenarios/alerts.py")


@dataclass
class Alert:
    """One alert instance: its labels, annotations, and when it fired and resolved (unix s)."""

    labels: dict[str, str]
    annotations: dict[str, str]
    active_at: float
    fired_at: float
    resolved_at: float | None
    expr: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)


def fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's label-set fingerprint (FNV-1a 64 over sorted names and values)."""
    h = 14695981039346656037
    for k in sorted(labels):
        for part in (k, labels[k]):
            for b in part.encode():
                h ^= b
                h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
            h ^= 0xFF
            h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def _humanize(v: float) -> str:
    for unit, f in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= f:
            return f"{v / f:.4g}{unit}"
    return f"{v:.4g}"


def _humanize_duration(v: float) -> str:
    if abs(v) < 1:
        return f"{v * 1000:.4g}ms"
    d, rem = divmod(int(v), 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    parts = [f"{d}d"] * bool(d) + [f"{h}h"] * bool(h) + [f"{m}m"] * bool(m) + [f"{s}s"] * bool(s or not (d or h or m))
    return " ".join(parts)


def render_template(text: str, labels: dict[str, str], value: float) -> str:
    """Expand the `{{ $labels.x }}` and `{{ $value | humanize* }}` templates used by the rules."""
    def sub(m: re.Match[str]) -> str:
        body = m.group(1).strip()
        if body.startswith("$labels."):
            return labels.get(body[len("$labels."):], "")
        if body.startswith("$value"):
            fn = body.split("|")[1].strip() if "|" in body else ""
            if fn == "humanizePercentage":
                return f"{value * 100:.4g}%"
            if fn == "humanizeDuration":
                return _humanize_duration(value)
            if fn == "humanize":
                return _humanize(value)
            return f"{value:g}"
        return m.group(0)

    return re.sub(r"\{\{(.*?)\}\}", sub, text)


def evaluate_alerts(series: list[Series], t: np.ndarray, rules_file: Path = RULES_FILE) -> list[Alert]:
    """Every alert the rules fire over the window, with activation, firing and resolve times."""
    ev = Evaluator(series, t)
    alerts: list[Alert] = []
    for rule in load_rules(rules_file):
        name = rule["alert"]
        hold = _dur(rule.get("for", "0s"))
        for key, vals in _expr_values(ev, name).items():
            true = ~np.isnan(vals)
            if not true.any():
                continue
            i = 0
            n = len(true)
            while i < n:
                if not true[i]:
                    i += 1
                    continue
                j = i
                while j < n and true[j]:
                    j += 1
                start_t = float(ev.eval_t[i])
                fire_k = next((k for k in range(i, j) if ev.eval_t[k] - start_t >= hold), None)
                if fire_k is not None:
                    labels = {"alertname": name, **dict(key), **{k: str(v) for k, v in rule.get("labels", {}).items()}}
                    value = float(vals[fire_k])
                    ann = {k: render_template(str(v), labels, value) for k, v in rule.get("annotations", {}).items()}
                    alerts.append(Alert(labels, ann, start_t, float(ev.eval_t[fire_k]),
                                        float(ev.eval_t[j]) if j < n else None, rule["expr"].strip()))
                i = j
    alerts.sort(key=lambda a: (a.fired_at, a.labels["alertname"], a.labels.get("service", "")))
    return alerts


def _generator_url(expr: str) -> str:
    return f"{PROMETHEUS_URL}/graph?g0.expr={urllib.parse.quote(expr)}&g0.tab=1"


def _group_key(group_labels: dict[str, str]) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(group_labels.items()))
    return "{}:{" + inner + "}"


def build_notifications(alerts: list[Alert], window_end: float) -> list[dict[str, Any]]:
    """Alertmanager webhook payloads (version 4), in the order Alertmanager would send them."""
    groups: dict[tuple[str, ...], list[Alert]] = {}
    for a in alerts:
        groups.setdefault(tuple(a.labels.get(k, "") for k in GROUP_BY), []).append(a)
    out: list[tuple[float, dict[str, Any]]] = []
    for gvals, members in groups.items():
        glabels = {k: v for k, v in zip(GROUP_BY, gvals) if v}
        first = min(a.fired_at for a in members) + GROUP_WAIT_S
        send_times = [first]
        t = first + GROUP_INTERVAL_S
        while t <= window_end:
            send_times.append(t)
            t += GROUP_INTERVAL_S
        last_state: tuple | None = None
        for st in send_times:
            if st > window_end:
                break
            visible = [a for a in members if a.fired_at <= st and (a.resolved_at is None or a.resolved_at > st - GROUP_INTERVAL_S)]
            state = tuple(sorted((a.fingerprint, a.resolved_at is not None and a.resolved_at <= st) for a in visible))
            if not visible or state == last_state:
                continue
            last_state = state
            payload_alerts = []
            for a in visible:
                resolved = a.resolved_at is not None and a.resolved_at <= st
                payload_alerts.append({
                    "status": "resolved" if resolved else "firing",
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": iso(a.fired_at),
                    "endsAt": iso(a.resolved_at) if resolved else "0001-01-01T00:00:00Z",
                    "generatorURL": _generator_url(a.expr),
                    "fingerprint": a.fingerprint,
                })
            firing = any(p["status"] == "firing" for p in payload_alerts)
            common_labels = dict(set.intersection(*(set(p["labels"].items()) for p in payload_alerts)))
            common_ann = dict(set.intersection(*(set(p["annotations"].items()) for p in payload_alerts)))
            out.append((st, {
                "version": "4",
                "groupKey": _group_key(glabels),
                "truncatedAlerts": 0,
                "status": "firing" if firing else "resolved",
                "receiver": RECEIVER,
                "groupLabels": glabels,
                "commonLabels": common_labels,
                "commonAnnotations": common_ann,
                "externalURL": EXTERNAL_URL,
                "alerts": payload_alerts,
            }))
    out.sort(key=lambda x: (x[0], x[1]["groupKey"]))
    return [dict(p, **{}) for _, p in out]


def write_notifications(payloads: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Write payloads as `NNNN-<alertname>-<service>.json` in send order; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, p in enumerate(payloads, 1):
        g = p["groupLabels"]
        name = f"{n:04d}-{g.get('alertname', 'alert')}-{g.get('service', 'all')}-{p['status']}.json"
        path = out_dir / name
        path.write_text(json.dumps(p, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        paths.append(path)
    return paths
