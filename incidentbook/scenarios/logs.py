"""Log lines, Kubernetes events and planned-event context for a simulation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from incidentbook.scenarios.simulate import STEP_S, Sim
from incidentbook.scenarios.topology import HTTP_KINDS

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36",
    "ShopApp/5.12.1 (iOS 17.4; iPhone15,2)",
]
BOT_AGENTS = ["python-requests/2.31.0", "Go-http-client/1.1", "curl/8.5.0"]
SQL = [
    "SELECT p.id, p.name, p.price FROM products p WHERE p.category_id = $1 ORDER BY p.rank LIMIT 48",
    "SELECT * FROM product_variants WHERE product_id = ANY($1)",
    "SELECT quantity FROM stock WHERE sku = $1 FOR UPDATE",
    "UPDATE stock SET reserved = reserved + $1 WHERE sku = $2",
    "SELECT items FROM carts WHERE session_id = $1",
    "SELECT r.product_id, r.score FROM recommendations r JOIN products p ON p.id = r.product_id WHERE r.user_id = $1",
]

EXC = {
    "java": ['java.lang.NullPointerException: Cannot invoke "com.shop.{svc}.Discount.getRate()" because "discount" is null',
             "java.lang.IllegalStateException: pricing client returned no currency for region EU"],
    "python": ["TypeError: unsupported operand type(s) for *: 'NoneType' and 'Decimal'",
               "KeyError: 'price_tier'"],
    "go": ["panic: runtime error: invalid memory address or nil pointer dereference",
           "json: cannot unmarshal string into Go struct field Item.quantity of type int"],
    "node": ["TypeError: Cannot read properties of undefined (reading 'price')"],
}


def _rid(rng: np.random.Generator) -> str:
    return "".join(rng.choice(list("0123456789abcdef"), 16))


def _ip(rng: np.random.Generator) -> str:
    return f"{rng.choice([81, 92, 176, 188, 213, 86, 37])}.{rng.integers(1, 255)}.{rng.integers(1, 255)}.{rng.integers(1, 255)}"


def _fmt_ts(ts: float) -> str:
    return pd.Timestamp(ts, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class _LogSink:
    def __init__(self, ns: str) -> None:
        self.rows: list[dict[str, Any]] = []
        self.ns = ns

    def add(self, ts: float, svc: str, pod: str, line: str) -> None:
        self.rows.append({"timestamp": _fmt_ts(ts), "labels": {"namespace": self.ns, "service": svc, "pod": pod,
                                                               "container": svc}, "line": line})


def _pod_at(sim: Sim, svc: str, i: int, rng: np.random.Generator) -> str:
    live = [p for p in sim.pods[svc] if p.serving(sim.T)[i]] or sim.pods[svc]
    return live[int(rng.integers(0, len(live)))].name


def _line(sim: Sim, svc: str, lang: str, level: str, ts: float, msg: str, fields: dict[str, Any]) -> str:
    if lang == "java":
        t = pd.Timestamp(ts, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        kv = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{t} {level.upper():5s} 1 --- [nio-8080-exec-{int(ts) % 20 + 1}] c.s.{svc}.web.Handler : {msg} {kv}"
    if lang == "python":
        import json
        return json.dumps({"ts": _fmt_ts(ts), "level": level, "logger": f"{svc}.handlers", "msg": msg, **fields})
    kv = " ".join(f'{k}="{v}"' if isinstance(v, str) and " " in v else f"{k}={v}" for k, v in fields.items())
    return f'level={level} ts={_fmt_ts(ts)} caller=server.go:{112 + len(msg) % 40} msg="{msg}" {kv}'


def generate_logs(sim: Sim, budget: int = 20000) -> list[dict[str, Any]]:
    """Access and error logs per service, sampled to stay within roughly `budget` lines."""
    rng = np.random.default_rng([int(sim.t[0]) % 2**31, 77])
    sysm = sim.system
    sink = _LogSink(sysm.namespace)
    T = sim.T
    f = sim.fault
    per_step_info = 0.55 * budget / (T * len(sysm.services))
    for name, svc in sysm.services.items():
        lang = svc.language
        load = sim.load[name]
        lvl = load / max(float(np.median(load[: max(f.onset, 2)])), 1e-6)
        n_info = rng.poisson(np.clip(per_step_info * lvl, 0, 40))
        err = sim.notes["err_total"].get(name, np.zeros(T))
        n_err = rng.poisson(np.clip(err * load * 0.02 * STEP_S, 0, 12))
        for i in np.nonzero(n_info + n_err)[0]:
            for k in range(int(n_info[i]) + int(n_err[i])):
                ts = float(sim.t[i]) + float(rng.uniform(0, STEP_S))
                pod = _pod_at(sim, name, i, rng)
                is_err = k >= n_info[i]
                sink.add(ts, name, pod, _service_line(sim, name, lang, i, ts, bool(is_err), rng))
    _fault_lines(sim, sink, rng)
    sink.rows.sort(key=lambda r: r["timestamp"])
    return sink.rows


def _service_line(sim: Sim, name: str, lang: str, i: int, ts: float, is_err: bool, rng: np.random.Generator) -> str:
    svc = sim.system.services[name]
    f = sim.fault
    med = float(sim.comps[name][0][1][i]) if name in sim.comps else 0.01
    dur = float(rng.lognormal(np.log(max(med, 1e-4)), 0.45))
    if svc.kind == "edge":
        r = svc.routes[int(rng.integers(0, len(svc.routes)))] if svc.routes else None
        code = int(rng.choice([500, 502, 504])) if is_err else 200
        path = r.path.replace(":id", str(int(rng.integers(1000, 99999)))) if r else "/"
        tstr = pd.Timestamp(ts, unit="s", tz="UTC").strftime("%d/%b/%Y:%H:%M:%S +0000")
        return (f'{_ip(rng)} - - [{tstr}] "{r.method if r else "GET"} {path} HTTP/1.1" {code} '
                f'{int(rng.integers(800, 40000))} "-" "{rng.choice(USER_AGENTS)}" rt={dur:.3f} '
                f'request_id={_rid(rng)}')
    if svc.kind == "gateway":
        import json
        k = int(rng.choice(len(svc.routes), p=[r.share for r in svc.routes]))
        r = svc.routes[k]
        code = 200
        if is_err:
            cf = sim.codes[name]
            w = np.array([cf[c][k][i] for c in ("500", "503", "504")]) + 1e-9
            code = int(rng.choice([500, 503, 504], p=w / w.sum()))
        return json.dumps({"start_time": _fmt_ts(ts), "method": r.method, "path": r.path, "protocol": "HTTP/2",
                           "response_code": code, "duration": int(dur * 1000), "upstream_cluster": r.via or "auth",
                           "x_forwarded_for": _ip(rng), "user_agent": str(rng.choice(USER_AGENTS)),
                           "request_id": _rid(rng), "response_flags": "UT" if code == 504 else "-"})
    if svc.kind == "db":
        pid = int(rng.integers(1000, 30000))
        t = pd.Timestamp(ts, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
        disk = sim.notes.get("disk")
        if f.kind == "disk_full" and name == f.target and disk and i >= f.onset:
            if i >= disk["full_at"] and (is_err or rng.random() < 0.5):
                return (f'{t} [{pid}] PANIC:  could not write to file "pg_wal/xlogtemp.{pid}": '
                        "No space left on device")
            if rng.random() < 0.4:
                seg = f"pg_wal/000000010000002A000000{int(rng.integers(16, 255)):02X}"
                return (f"{t} [{pid}] LOG:  archive command failed with exit code 1" if rng.random() < 0.5 else
                        f"{t} [{pid}] DETAIL:  The failed archive command was: "
                        f"{disk['archive_command'].replace('%p', seg)}")
            if rng.random() < 0.3:
                return f"{t} [{pid}] WARNING:  archiving write-ahead log file failed too many times, will try again later"
        if float(sim.db_lat[i]) > 0.03 or is_err:
            return f"{t} [{pid}] LOG:  duration: {dur * 1000 * 8:.3f} ms  statement: {rng.choice(SQL)}"
        return f"{t} [{pid}] LOG:  checkpoint complete: wrote {int(rng.integers(50, 900))} buffers; distance={int(rng.integers(100, 9000))} kB"
    if svc.kind == "cache":
        t = pd.Timestamp(ts, unit="s", tz="UTC").strftime("%d %b %Y %H:%M:%S.%f")[:-3]
        if f.kind == "cache_failure" and i >= f.onset:
            return f"1:M {t} # WARNING: maxmemory (64mb) reached, evicting keys with policy allkeys-lru; evicted {int(rng.integers(2000, 9000))} keys in the last second"
        return f"1:M {t} * {int(rng.integers(100, 1000))} changes in 60 seconds. Saving..." if rng.random() < 0.5 \
            else f"1:M {t} * Background saving terminated with success"
    if svc.kind == "queue":
        t = pd.Timestamp(ts, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        return f"{t} [info] <0.{int(rng.integers(100, 9999))}.0> accepting AMQP connection <0.{int(rng.integers(100, 9999))}.0> (10.0.{int(rng.integers(1, 40))}.{int(rng.integers(2, 250))}:{int(rng.integers(30000, 60000))} -> 10.0.7.12:5672)"
    if svc.kind == "worker":
        if is_err:
            return _line(sim, name, lang, "error", ts, "job failed", {"job": "send_order_confirmation", "order_id": int(rng.integers(10**6, 10**7)), "error": "psycopg.errors.QueryCanceled: canceling statement due to statement timeout"})
        return _line(sim, name, lang, "info", ts, "job done", {"job": str(rng.choice(["send_order_confirmation", "update_search_index", "settle_payment"])), "order_id": int(rng.integers(10**6, 10**7)), "duration_ms": int(dur * 1000)})
    # application services
    r = svc.routes[int(rng.integers(0, len(svc.routes)))] if svc.routes else None
    fields: dict[str, Any] = {"method": r.method if r else "GET", "route": r.path if r else "/", "request_id": _rid(rng)}
    if not is_err:
        return _line(sim, name, lang, "info", ts, "request completed", {**fields, "status": 200, "duration_ms": int(dur * 1000)})
    return _line(sim, name, lang, "error", ts, *_error_message(sim, name, lang, i, rng, fields))


def _error_message(sim: Sim, name: str, lang: str, i: int, rng: np.random.Generator,
                   fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    f = sim.fault
    svc = sim.system.services[name]
    after = i >= f.onset
    if name == f.target and after:
        if f.kind == "bad_deploy":
            exc = str(rng.choice(EXC.get(lang, EXC["go"]))).format(svc=name)
            return "request processing failed", {**fields, "status": 500, "version": sim.notes["new_version"], "exception": exc}
        if f.kind == "db_pool_exhaustion":
            return ("HikariPool-1 - Connection is not available, request timed out after 1000ms" if lang == "java" else
                    "timed out acquiring a database connection from the pool"), {**fields, "status": 500, "pool_active": svc.db_pool_max, "pool_idle": 0, "pool_waiting": int(rng.integers(5, 60))}
        if f.kind == "slow_dependency":
            return "slow request", {**fields, "status": 200, "duration_ms": int(rng.uniform(2000, 9000)), "threads_busy": "200/200"}
        if f.kind == "abuse":
            return "login failed", {**fields, "status": 401, "reason": "invalid_credentials", "client_ip": str(rng.choice(sim.notes["clients"])), "user": f"user{int(rng.integers(1000, 999999))}@mail.example"}
    # a caller's view of a failing dependency
    for c in svc.calls:
        tgt = c.target
        key = (name, tgt)
        if key in sim.mods.edge_fail and after:
            return "upstream request failed", {**fields, "status": 500, "upstream": tgt, "error": f"x509: certificate has expired or is not yet valid: current time {_fmt_ts(float(sim.t[i]))} is after {_fmt_ts(float(sim.notes['expiry']))}"}
        if sim.notes["err_total"].get(tgt, np.zeros(sim.T))[i] > 0.02 or (key in sim.timeouts and sim.timeouts[key][i] < c.timeout_s):
            tau = float(sim.timeouts.get(key, np.full(sim.T, c.timeout_s))[i])
            if rng.random() < 0.5:
                return "upstream request failed", {**fields, "status": 504, "upstream": tgt, "error": f"context deadline exceeded (Client.Timeout exceeded while awaiting headers) after {tau:g}s"}
            return "upstream request failed", {**fields, "status": 500, "upstream": tgt, "error": f"upstream {tgt} returned 503 Service Unavailable"}
    if sim.system.services[name].db_pool_max and float(sim.db_lat[i]) > 0.05:
        return "query timeout", {**fields, "status": 500, "error": "canceling statement due to statement timeout", "sql": str(rng.choice(SQL))}
    return "request failed", {**fields, "status": 503, "error": "upstream connect error or disconnect/reset before headers. reset reason: connection failure"}


def _fault_lines(sim: Sim, sink: _LogSink, rng: np.random.Generator) -> None:
    """Lines tied to single moments: OOM kills, rollouts, abusive clients."""
    f = sim.fault
    T = sim.T
    for name, pods in sim.pods.items():
        for p in pods:
            for i in p.oom:
                ts = float(sim.t[i]) - 2
                lang = sim.system.services[name].language
                msg = "java.lang.OutOfMemoryError: Java heap space" if lang == "java" else \
                    "fatal error: runtime: out of memory" if lang == "go" else "MemoryError"
                sink.add(ts, name, p.name, _line(sim, name, lang, "error", ts, "unhandled error", {"error": msg}))
            if p.start > 0:
                ts = float(sim.t[p.start]) + 3
                sink.add(ts, name, p.name, _line(sim, name, sim.system.services[name].language, "info", ts,
                                                 "server started", {"version": p.version, "port": 8080}))
    if f.kind == "abuse":
        gw = f.target
        clients = sim.notes["clients"]
        abusive = sim.mods.abuse_rps
        n = rng.poisson(np.clip(abusive * 0.01 * STEP_S, 0, 30))
        import json
        for i in np.nonzero(n)[0]:
            for _ in range(int(n[i])):
                ts = float(sim.t[i]) + float(rng.uniform(0, STEP_S))
                code = 429 if rng.random() < sim.mods.rate_limit else int(rng.choice([401, 401, 401, 500]))
                sink.add(ts, gw, _pod_at(sim, gw, i, rng), json.dumps({
                    "start_time": _fmt_ts(ts), "method": "POST", "path": sim.mods.abuse_route, "protocol": "HTTP/1.1",
                    "response_code": code, "duration": int(rng.uniform(2, 300)), "upstream_cluster": "auth",
                    "x_forwarded_for": str(rng.choice(clients)), "user_agent": str(rng.choice(BOT_AGENTS)),
                    "request_id": _rid(rng), "response_flags": "RL" if code == 429 else "-"}))
    _ = T


def generate_events(sim: Sim) -> list[dict[str, Any]]:
    """Kubernetes events: rollouts, scaling, OOM kills and back-offs, probe failures."""
    rng = np.random.default_rng([int(sim.t[0]) % 2**31, 91])
    ns = sim.system.namespace
    ev: list[dict[str, Any]] = []

    def add(i: int, kind: str, name: str, typ: str, reason: str, msg: str, count: int = 1, off: float = 0.0,
            namespace: str = ns) -> None:
        ev.append({"timestamp": _fmt_ts(float(sim.t[min(max(i, 0), sim.T - 1)]) + off), "namespace": namespace,
                   "kind": kind, "name": name, "type": typ, "reason": reason, "message": msg, "count": count})

    for name, pods in sim.pods.items():
        image = f"registry.internal/shop/{name}"
        for p in pods:
            if p.start > 0:
                add(p.start, "Pod", p.name, "Normal", "Scheduled", f"Successfully assigned {ns}/{p.name} to {p.node}", off=0.5)
                add(p.start, "Pod", p.name, "Normal", "Pulled", f'Container image "{image}:{p.version}" already present on machine' if rng.random() < 0.3 else f'Successfully pulled image "{image}:{p.version}" in {rng.uniform(1, 9):.3f}s', off=2)
                add(p.start, "Pod", p.name, "Normal", "Created", f"Created container {name}", off=3)
                add(p.start, "Pod", p.name, "Normal", "Started", f"Started container {name}", off=3.5)
            if p.end < sim.T:
                add(p.end, "Pod", p.name, "Normal", "Killing", f"Stopping container {name}", off=-10)
            for k, (i, d) in enumerate(p.restarts):
                if i in p.oom:
                    add(i, "Node", p.node, "Warning", "OOMKilling",
                        f"Memory cgroup out of memory: Killed process {int(rng.integers(1000, 60000))} ({name}) total-vm:{int(rng.integers(900000, 3000000))}kB, anon-rss:{sim.system.services[name].mem_limit_mb * 1024:.0f}kB",
                        namespace="")
                    add(i, "Pod", p.name, "Warning", "BackOff", "Back-off restarting failed container", count=k + 1, off=5)
                else:
                    add(i, "Pod", p.name, "Normal", "Killing", f"Container {name} failed liveness probe, will be restarted", off=0)
                add(i + d, "Pod", p.name, "Normal", "Started", f"Started container {name}", count=k + 2)
    for svc, rolls in sim.notes["rollouts"].items():
        for i, ver in rolls:
            rs = next((p.name.rsplit("-", 1)[0] for p in sim.pods[svc] if p.version == ver), svc)
            add(i, "Deployment", svc, "Normal", "ScalingReplicaSet", f"Scaled up replica set {rs} to 1")
    for svc, (i, extra) in sim.notes["scale_ups"].items():
        add(i - 1, "HorizontalPodAutoscaler", svc, "Normal", "SuccessfulRescale",
            f"New size: {sim.system.services[svc].replicas + extra}; reason: cpu resource utilization (percentage of request) above target")
        add(i, "Deployment", svc, "Normal", "ScalingReplicaSet", f"Scaled up replica set {svc} to {sim.system.services[svc].replicas + extra}")
    f = sim.fault
    if f.kind in ("slow_dependency", "db_pool_exhaustion"):
        for p in sim.pods[f.target]:
            add(f.onset + 20, "Pod", p.name, "Warning", "Unhealthy",
                "Readiness probe failed: Get \"http://10.0.12.7:8080/ready\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                count=int(rng.integers(3, 12)))
    if f.kind == "cpu_throttling":
        node = sim.pods[f.target][0].node
        job = sim.notes["neighbour"]
        add(f.onset - 1, "Pod", f"{job}-{''.join(rng.choice(list('bcdfghjklmnpqrstvwxz'), 5))}", "Normal", "Scheduled",
            f"Successfully assigned batch/{job} to {node}", namespace="batch")
        for p in sim.pods[f.target]:
            p.node = node
    if f.kind == "disk_full" and sim.notes.get("disk"):
        # PANIC on a full pg_wal: postgres restarts into crash recovery and stays unready
        full = int(sim.notes["disk"]["full_at"])
        pod = sim.pods[f.target][0].name
        add(full + 1, "Pod", pod, "Warning", "Unhealthy",
            "Readiness probe failed: psql: error: connection to server on socket \"/var/run/postgresql/.s.PGSQL.5432\" "
            "failed: FATAL:  the database system is in recovery mode", count=int(rng.integers(4, 15)))
    if f.kind == "cache_failure":
        add(f.onset, "Pod", sim.pods[f.target][0].name, "Warning", "Unhealthy",
            "Liveness probe failed: Could not connect to Redis at 127.0.0.1:6379: Connection refused")
    ev.sort(key=lambda e: e["timestamp"])
    return ev


def generate_context(sim: Sim) -> list[dict[str, Any]]:
    """Planned events: the marketing launch (and a routine maintenance note that is unrelated)."""
    f = sim.fault
    out: list[dict[str, Any]] = []
    t0 = float(sim.t[0])
    out.append({"start": _fmt_ts(t0 - 6 * 3600), "end": _fmt_ts(t0 - 5 * 3600), "kind": "maintenance",
                "title": "Node pool OS patching (completed)", "services": [], "details": {"ticket": "CHG-2291"}})
    if f.kind == "planned_load":
        start = float(sim.t[f.onset]) - 10 * 60
        out.append({"start": _fmt_ts(start), "end": _fmt_ts(start + 4 * 3600), "kind": "marketing_launch",
                    "title": "Spring sale launch: email + push campaign to all customers",
                    "services": [s for s, v in sim.system.services.items() if v.kind in HTTP_KINDS],
                    "details": {"campaign": "SPRING-SALE", "expected_traffic_multiplier": 2.5, "owner": "growth-team",
                                "capacity_review": "approved; HPA max replicas raised"}})
    return out
