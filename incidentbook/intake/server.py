"""`incidentbook serve`: the webhook intake (FastAPI + uvicorn), its workers and the incidents page.

Endpoints:

- `POST /api/v1/alertmanager`  Alertmanager webhook (version 4), bearer token
- `POST /api/v1/pagerduty`     PagerDuty v3 webhook, `X-PagerDuty-Signature` verified with the
                               secret in `[server] pagerduty_secret_env` (bearer token if unset)
- `POST /api/v1/alerts`        one generic JSON alert (see intake/generic.py), bearer token
- `GET /api/v1/incidents`      open and recent incidents as JSON, bearer token
- `GET /`                      the incidents page (HTML), `GET /healthz`, `GET /metrics`,
                               `GET /openapi.json`

A webhook body is validated (422 naming the field), then committed to the store's queue, and
only then answered with 202 `{"status": "queued", "id": N}`; an identical body already stored
is answered 200 `{"status": "duplicate"}`. Bodies over 5 MB get 413; a client address that
exceeds `[server] rate_limit_per_s` (burst `rate_limit_burst`) gets 429 with Retry-After.
"""

from __future__ import annotations

import hmac
import html
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from incidentbook.config import Config
from incidentbook.errors import ConfigError, InvalidPayload
from incidentbook.incidents import Incident, Store
from incidentbook.intake.alertmanager import MAX_PAYLOAD_BYTES, AlertmanagerPayload
from incidentbook.intake.generic import GenericAlert
from incidentbook.intake.pagerduty import SIGNATURE_HEADER, verify_signature
from incidentbook.intake.queue import parse_body
from incidentbook.intake.service import IntakeService

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_API = "/api/v1"


class RateLimiter:
    """A token bucket per client address: `rate` requests per second, bursts up to `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(max(1, burst))
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 if the request may proceed, else the seconds to wait before retrying."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


@dataclass
class ServerSettings:
    """What the app needs besides the service: secrets and links (resolved by `serve`)."""

    token: str | None  # None: no authentication (only allowed on a loopback host)
    pagerduty_secret: str = ""
    lab_url: str = ""  # JupyterLab base URL whose root is the workspace home; "" for no links
    max_bytes: int = MAX_PAYLOAD_BYTES


def notebook_url(lab_url: str, home: Path, incident: Incident) -> str:
    """The JupyterLab link of the incident's notebook ("" without a lab or a notebook)."""
    if not lab_url or not incident.notebook:
        return ""
    path = Path(incident.notebook)
    try:
        rel = path.resolve().relative_to(home.resolve())
    except ValueError:
        return ""
    token = ""
    if "?token=" in lab_url:
        lab_url, token = lab_url.split("?token=", 1)
    url = f"{lab_url.rstrip('/')}/lab/tree/{quote(rel.as_posix())}"
    return url + (f"?token={token}" if token else "")


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _schema_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def create_app(service: IntakeService, settings: ServerSettings) -> FastAPI:
    """The FastAPI application for `service` (a started or not-yet-started IntakeService)."""
    app = FastAPI(title="incidentbook intake", version="1",
                  description="Webhook intake: Alertmanager, PagerDuty and generic alerts become incidents.")
    cfg, store, metrics = service.cfg, service.store, service.metrics
    limiter = RateLimiter(cfg.server.rate_limit_per_s, cfg.server.rate_limit_burst)

    def reject(status: int, reason: str, detail: str, headers: dict[str, str] | None = None) -> HTTPException:
        metrics.rejected.labels(reason=reason).inc()
        return HTTPException(status_code=status, detail=detail, headers=headers)

    def check_token(request: Request) -> None:
        if settings.token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), settings.token.encode()):
            raise reject(401, "unauthorized",
                         f"missing or wrong bearer token; send `Authorization: Bearer <the value of "
                         f"${cfg.server.token_env}>` (Alertmanager: http_config.authorization)",
                         {"WWW-Authenticate": "Bearer"})

    def check_rate(request: Request) -> None:
        wait = limiter.take(_client(request))
        if wait > 0:
            raise reject(429, "rate_limited",
                         f"more than {cfg.server.rate_limit_per_s:g} requests/s from {_client(request)}; "
                         "retry later or raise [server] rate_limit_per_s",
                         {"Retry-After": str(max(1, math.ceil(wait)))})

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        too_big = (f"body is over the {settings.max_bytes // (1024 * 1024)} MB limit; lower "
                   "`max_alerts` in Alertmanager's webhook_config")
        if length and length.isdigit() and int(length) > settings.max_bytes:
            raise reject(413, "too_large", too_big)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > settings.max_bytes:
                raise reject(413, "too_large", too_big)
            chunks.append(chunk)
        return b"".join(chunks)

    async def accept(source: str, request: Request, body: bytes) -> JSONResponse:
        started = time.perf_counter()
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise reject(422, "invalid", f"body is not UTF-8 (bad byte at offset {e.start}); send UTF-8 JSON") from None

        def validate_and_store() -> Any:
            parse_body(source, text)  # 422 before anything is stored
            return service.submit(source, text)

        try:
            result = await run_in_threadpool(validate_and_store)
        except InvalidPayload as e:
            raise reject(422, "invalid", str(e)) from None
        metrics.received.labels(source=source).inc()
        metrics.ack_seconds.labels(source=source).observe(time.perf_counter() - started)
        if result.duplicate:
            return JSONResponse({"status": "duplicate", "id": result.id}, status_code=200)
        return JSONResponse({"status": "queued", "id": result.id}, status_code=202)

    @app.post(f"{_API}/alertmanager", status_code=202, tags=["webhooks"],
              openapi_extra=_schema_body(AlertmanagerPayload.model_json_schema(by_alias=True)),
              responses={401: {}, 413: {}, 422: {}, 429: {}})
    async def alertmanager(request: Request) -> JSONResponse:
        """Alertmanager webhook_config receiver (version 4)."""
        check_token(request)
        check_rate(request)
        return await accept("alertmanager", request, await read_body(request))

    @app.post(f"{_API}/alerts", status_code=202, tags=["webhooks"],
              openapi_extra=_schema_body(GenericAlert.model_json_schema()),
              responses={401: {}, 413: {}, 422: {}, 429: {}})
    async def generic(request: Request) -> JSONResponse:
        """One generic JSON alert (`alertname` required)."""
        check_token(request)
        check_rate(request)
        return await accept("generic", request, await read_body(request))

    @app.post(f"{_API}/pagerduty", status_code=202, tags=["webhooks"],
              openapi_extra=_schema_body({"type": "object", "required": ["event"],
                                          "properties": {"event": {"type": "object"}}}),
              responses={401: {}, 413: {}, 422: {}, 429: {}})
    async def pagerduty(request: Request) -> JSONResponse:
        """PagerDuty v3 webhook; the signature is checked against the shared secret."""
        check_rate(request)
        body = await read_body(request)
        if settings.pagerduty_secret:
            if not verify_signature(body, request.headers.get(SIGNATURE_HEADER), settings.pagerduty_secret):
                raise reject(401, "bad_signature",
                             f"{SIGNATURE_HEADER} does not match the body; check the webhook "
                             f"subscription's secret in ${cfg.server.pagerduty_secret_env}")
        else:
            check_token(request)
        return await accept("pagerduty", request, body)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, Any]:
        """Liveness and queue depth (queries the store, so a dead database shows here)."""
        return {"status": "ok", "queue": service.queue.counts(), "runbooks_running": service.running,
                "warm_kernels": service.pool.ready if service.pool is not None else None}

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    def prometheus_metrics() -> Response:
        """Prometheus metrics."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        metrics.refresh_queue(service.queue.counts)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(f"{_API}/incidents", tags=["incidents"])
    def incidents_json(request: Request, limit: int = 100) -> dict[str, Any]:
        """Open and recent incidents."""
        check_token(request)
        limit = max(1, min(limit, 1000))
        return {"incidents": [
            {**i.to_dict(), "notebook_url": notebook_url(settings.lab_url, cfg.home, i),
             "alerts": len(store.alerts(i.id))}
            for i in store.list_incidents(limit=limit)]}

    @app.get("/", response_class=HTMLResponse, tags=["incidents"])
    def incidents_page() -> HTMLResponse:
        """The incidents page: open first, then recent ones."""
        incidents = store.list_incidents(limit=200)
        incidents.sort(key=lambda i: (i.status != "open", -i.created.timestamp()))
        return HTMLResponse(render_page(incidents, lambda i: notebook_url(settings.lab_url, cfg.home, i),
                                        lambda i: len(store.alerts(i.id))))

    return app


_STYLE = ("body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
          "td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}"
          ".critical{color:#b00020;font-weight:600}.open{font-weight:600}.failed{color:#b00020}")


def render_page(incidents: list[Incident], link: Callable[[Incident], str],
                alert_count: Callable[[Incident], int]) -> str:
    """The incidents page as HTML; every value from an alert is escaped."""
    e = html.escape
    rows = []
    for i in incidents:
        url = link(i)
        nb = f'<a href="{e(url)}">notebook</a>' if url else (e(i.notebook or "") or "-")
        rows.append(
            f'<tr><td>{e(i.id)}</td><td class="{e(i.status)}">{e(i.status)}</td>'
            f'<td class="{e(i.severity)}">{e(i.severity or "-")}</td><td>{e(i.title)}</td>'
            f"<td>{e(i.service or '-')}</td><td>{alert_count(i)}</td>"
            f'<td class="{e(i.runbook_status)}">{e(i.runbook or "-")}: {e(i.runbook_status)}</td>'
            f"<td>{e(i.created.strftime('%Y-%m-%d %H:%M:%S UTC'))}</td><td>{nb}</td></tr>")
    body = "".join(rows) or '<tr><td colspan="9">No incidents yet.</td></tr>'
    return ("<!doctype html><html><head><meta charset='utf-8'><title>incidentbook: incidents</title>"
            f"<meta http-equiv='refresh' content='15'><style>{_STYLE}</style></head><body>"
            "<h1>Incidents</h1><table><thead><tr><th>ID</th><th>Status</th><th>Severity</th>"
            "<th>Title</th><th>Service</th><th>Alerts</th><th>Runbook</th><th>Opened</th>"
            f"<th>Notebook</th></tr></thead><tbody>{body}</tbody></table></body></html>")


def resolve_token(cfg: Config, host: str, no_auth: bool) -> str | None:
    """The bearer token from `[server] token_env`; None only with `no_auth` on a loopback host."""
    import os

    if no_auth:
        if host not in LOOPBACK:
            raise ConfigError(f"--no-auth is only allowed on a loopback host, not {host!r}; "
                              f"export {cfg.server.token_env}=<a long random token> instead")
        return None
    token = os.environ.get(cfg.server.token_env, "")
    if not token:
        raise ConfigError(f"serve needs a bearer token in ${cfg.server.token_env}; export "
                          f"{cfg.server.token_env}=$(openssl rand -hex 32) (or --no-auth on 127.0.0.1)")
    return token


def build_service(cfg: Config, *, bundle: Path | None = None, lab_url: str = "",
                  store: Store | None = None) -> IntakeService:
    """The IntakeService for `cfg`, with Slack notification when configured."""
    from incidentbook.intake.notify import slack_notifier

    store = store or Store.from_config(cfg)
    notify = slack_notifier(cfg, store, lambda i: notebook_url(lab_url, cfg.home, i))
    return IntakeService(cfg, store, bundle=bundle, notify=notify)


def _start_lab(home: Path, host: str, port: int) -> tuple[Any, str]:
    """JupyterLab on the workspace home in a child process; (process, base URL with token)."""
    import secrets
    import shutil
    import subprocess
    import sys

    from incidentbook.errors import IncidentbookError

    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent)) or shutil.which("jupyter")
    if not jupyter:
        raise IncidentbookError("JupyterLab is not installed; pip install 'incidentbook[lab]' or rerun with --no-lab")
    token = secrets.token_hex(16)
    cmd = [jupyter, "lab", "--no-browser", f"--ServerApp.root_dir={home}", f"--ServerApp.ip={host}",
           f"--ServerApp.port={port}", f"--IdentityProvider.token={token}"]
    import os

    if os.geteuid() == 0:
        cmd.append("--allow-root")
    # The Approve pages of the action broker; the lab and its kernels get no write credentials.
    from incidentbook.actions.broker import kernel_env

    cmd.append("--ServerApp.jpserver_extensions=incidentbook.actions.labext=True")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=kernel_env())
    return proc, f"http://{host}:{port}?token={token}"


def serve(cfg: Config, *, host: str | None = None, port: int | None = None, no_auth: bool = False,
          no_lab: bool = False, bundle: Path | None = None, lab_port: int | None = None,
          announce: Callable[[dict[str, str]], None] = lambda urls: None) -> None:
    """Run the intake server until interrupted (Ctrl-C / SIGTERM); `announce` gets the URLs."""
    import uvicorn

    host = host or cfg.server.host
    port = cfg.server.port if port is None else port
    token = resolve_token(cfg, host, no_auth)
    pd_secret = __import__("os").environ.get(cfg.server.pagerduty_secret_env, "")
    lab_proc = None
    lab_url = cfg.server.lab_url
    if not no_lab:
        lab_proc, lab_url = _start_lab(cfg.home, host, lab_port or port + 1)
    service = build_service(cfg, bundle=bundle, lab_url=lab_url)
    app = create_app(service, ServerSettings(token=token, pagerduty_secret=pd_secret, lab_url=lab_url))
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           access_log=False, timeout_graceful_shutdown=5))
    base = f"http://{host}:{port}"
    service.start()
    try:
        announce({"webhook": f"{base}{_API}/alertmanager", "pagerduty": f"{base}{_API}/pagerduty",
                  "alerts": f"{base}{_API}/alerts", "incidents": f"{base}/",
                  "lab": lab_url, "home": str(cfg.home)})
        server.run()
    finally:
        service.stop()
        service.store.close()
        if lab_proc is not None:
            lab_proc.terminate()
            try:
                lab_proc.wait(timeout=10)
            except Exception:  # noqa: BLE001
                lab_proc.kill()
