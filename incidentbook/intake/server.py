"""`incidentbook serve`: the webhook intake (FastAPI + uvicorn), its workers and the incidents page.

Endpoints:

- `POST /api/v1/alertmanager`  Alertmanager webhook (version 4), bearer token
- `POST /api/v1/pagerduty`     PagerDuty v3 webhook, `X-PagerDuty-Signature` verified with the
                               secret in `[server] pagerduty_secret_env` (bearer token if unset)
- `POST /api/v1/alerts`        one generic JSON alert (see intake/generic.py), bearer token
- `GET /api/v1/incidents`      open and recent incidents as JSON, bearer token
- `GET /`                      the incidents page (HTML, paginated: `?page=N`)
- `GET|POST /login`            a form that takes the intake token and sets a session cookie
- `GET /healthz`               liveness (the process answers); no token, so probes can use it
- `GET /readyz`                readiness: 200, or 503 with the reasons (dead worker, stuck queue,
                               store unreachable, disk full); no token
- `GET /metrics`, `GET /openapi.json`, `GET /docs`: bearer token or session cookie

Every page except /healthz, /readyz and /login needs the intake token, either as
`Authorization: Bearer` or as the HttpOnly session cookie /login sets. Links never carry a token.

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

import anyio
import anyio.to_thread
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.concurrency import run_in_threadpool

from incidentbook.config import Config
from incidentbook.errors import ConfigError, InvalidPayload
from incidentbook.incidents import Incident, Store
from incidentbook.incidents.store import StoreError
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
    generic_token: str | None = None  # set: POST /api/v1/alerts takes only this token
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
    # Never a token in a link: pages and chat messages get copied, logged and shared.
    base = lab_url.split("?", 1)[0]
    return f"{base.rstrip('/')}/lab/tree/{quote(rel.as_posix())}"


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

    session_value = _session_cookie(settings.token) if settings.token else ""

    def bearer(request: Request) -> str:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return given.strip() if scheme.lower() == "bearer" else ""

    def authenticated(request: Request) -> bool:
        if settings.token is None:
            return True
        given = bearer(request)
        if given and hmac.compare_digest(given.encode(), settings.token.encode()):
            return True
        cookie = request.cookies.get(SESSION_COOKIE, "")
        return bool(cookie) and hmac.compare_digest(cookie.encode(), session_value.encode())

    def check_generic_token(request: Request) -> None:
        if settings.generic_token is None:
            check_token(request)
            return
        if not hmac.compare_digest(bearer(request).encode(), settings.generic_token.encode()):
            raise reject(401, "unauthorized",
                         f"missing or wrong bearer token; the generic endpoint takes the token in "
                         f"${cfg.server.generic_token_env}", {"WWW-Authenticate": "Bearer"})

    def check_token(request: Request) -> None:
        if not authenticated(request):
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
            free = store.free_bytes()
            if free is not None and free < cfg.server.min_free_mb * 1024 * 1024:
                raise StoreError(f"disk full: {free / 1024 / 1024:.1f} MB free where the store lives, below "
                                 f"[server] min_free_mb = {cfg.server.min_free_mb}")
            return service.submit(source, text)

        try:
            result = await run_in_threadpool(validate_and_store)
        except InvalidPayload as e:
            raise reject(422, "invalid", str(e)) from None
        except StoreError as e:  # nothing was stored: the sender retries on 5xx
            raise reject(503, "store_unavailable", f"{e}; the body was not stored, retry",
                         {"Retry-After": "10"}) from None
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
        check_generic_token(request)
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

    @app.middleware("http")
    async def require_auth(request: Request, call_next: Callable[[Request], Any]) -> Response:
        # Webhooks check their own credentials (PagerDuty signs instead); probes and the login
        # form are open. Everything else (pages, metrics, the schema) needs the token.
        path = request.url.path
        if (path in _OPEN_PATHS or (request.method == "POST" and path in _WEBHOOKS)
                or authenticated(request)):
            return await call_next(request)
        metrics.rejected.labels(reason="unauthorized").inc()
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(render_login(next_path=path), status_code=401)
        return JSONResponse({"detail": "missing or wrong token; send `Authorization: Bearer <the value of "
                             f"${cfg.server.token_env}>` or log in at /login"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})

    @app.get("/login", response_class=HTMLResponse, tags=["incidents"])
    def login_form(next: str = "/") -> HTMLResponse:
        """The login form: paste the intake token once, get a session cookie."""
        return HTMLResponse(render_login(next_path=next))

    @app.post("/login", tags=["incidents"])
    async def login(request: Request) -> Response:
        """Check the token from the form and set the session cookie (HttpOnly, SameSite=Strict)."""
        from urllib.parse import parse_qs

        check_rate(request)
        form = parse_qs((await read_body(request)).decode("utf-8", "replace"))
        given = (form.get("token") or [""])[0].strip()
        target = _safe_next((form.get("next") or ["/"])[0])
        if settings.token is None:
            return RedirectResponse(target, status_code=303)
        if not hmac.compare_digest(given.encode(), settings.token.encode()):
            metrics.rejected.labels(reason="unauthorized").inc()
            return HTMLResponse(render_login(next_path=target, error="wrong token"), status_code=401)
        resp = RedirectResponse(target, status_code=303)
        resp.set_cookie(SESSION_COOKIE, session_value, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", max_age=12 * 3600)
        return resp

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, Any]:
        """Liveness: the process answers. Queue depth when the store answers (null when it does not)."""
        try:
            queue: Any = service.queue.counts()
        except StoreError:
            queue = None
        return {"status": "ok", "queue": queue, "runbooks_running": service.running,
                "warm_kernels": service.pool.ready if service.pool is not None else None}

    @app.get("/readyz", tags=["operations"], responses={503: {}})
    def readyz() -> JSONResponse:
        """Readiness: 200 when the intake works, else 503 with the reasons."""
        reasons = service.readiness()
        metrics.ready.set(0 if reasons else 1)
        if reasons:
            return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
        return JSONResponse({"status": "ready", "reasons": []})

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    def prometheus_metrics() -> Response:
        """Prometheus metrics (bearer token: Prometheus' `authorization` scrape setting)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        try:
            metrics.refresh_queue(service.queue.counts)
            metrics.oldest_queued.set(service.queue.oldest_queued_age() or 0.0)
        except StoreError:
            pass  # the counters still answer; /readyz says the store is down
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # Readers (the page, the incidents API) get threads of their own, few of them: however many
    # people reload the page, webhook acks never wait for a worker thread behind them.
    readers = anyio.CapacityLimiter(PAGE_THREADS)

    @app.get(f"{_API}/incidents", tags=["incidents"])
    async def incidents_json(request: Request, limit: int = 100,
                             offset: int = Query(0, ge=0, le=_MAX_OFFSET)) -> dict[str, Any]:
        """Open and recent incidents, newest first (`limit`, `offset` page through them)."""
        check_token(request)
        limit = max(1, min(limit, 1000))

        def read() -> dict[str, Any]:
            incidents = store.list_incidents(limit=limit, offset=offset)
            counts = store.alert_counts([i.id for i in incidents])
            return {"incidents": [
                {**i.to_dict(), "notebook_url": notebook_url(settings.lab_url, cfg.home, i), "alerts": counts[i.id]}
                for i in incidents]}

        return await anyio.to_thread.run_sync(read, limiter=readers)

    @app.get("/", response_class=HTMLResponse, tags=["incidents"])
    async def incidents_page(page: int = Query(1, ge=1, le=_MAX_OFFSET // PAGE_SIZE)) -> HTMLResponse:
        """The incidents page: open first, then recent ones; PAGE_SIZE a page."""
        return await anyio.to_thread.run_sync(lambda: _incidents_page(page), limiter=readers)

    def _incidents_page(page: int) -> HTMLResponse:
        incidents = store.list_incidents(limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE, open_first=True)
        more = len(incidents) > PAGE_SIZE
        incidents = incidents[:PAGE_SIZE]
        counts = store.alert_counts([i.id for i in incidents])
        q = service.queue
        try:
            intake = {"failed": q.count_failed(), "oldest_queued_s": q.oldest_queued_age()}
        except StoreError:
            intake = {"failed": None, "oldest_queued_s": None}
        return HTMLResponse(render_page(incidents, lambda i: notebook_url(settings.lab_url, cfg.home, i),
                                        lambda i: counts.get(i.id, 0), page=page, more=more,
                                        intake=intake, stuck_after_s=cfg.server.ready_max_pending_s))

    return app


#: Incidents per page of `GET /`.
PAGE_SIZE = 50
#: Threads rendering pages at once (the rest wait in the event loop, holding no thread).
PAGE_THREADS = 2
_MAX_OFFSET = 10_000_000
SESSION_COOKIE = "incidentbook_session"
_OPEN_PATHS = frozenset({"/healthz", "/readyz", "/login"})
_WEBHOOKS = frozenset({f"{_API}/alertmanager", f"{_API}/alerts", f"{_API}/pagerduty"})


def _session_cookie(token: str) -> str:
    """The session cookie's value: derived from the token (never the token itself)."""
    return hmac.new(token.encode(), b"incidentbook-session-v1", "sha256").hexdigest()


def _safe_next(path: str) -> str:
    """Where to go after logging in: a local path only (no open redirect)."""
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/"


def render_login(next_path: str = "/", error: str = "") -> str:
    """The login form: the intake token once, then a session cookie."""
    e = html.escape
    msg = f"<p class='failed'>{e(error)}</p>" if error else ""
    return ("<!doctype html><html><head><meta charset='utf-8'><title>incidentbook: log in</title>"
            f"<style>{_STYLE}</style></head><body><h1>Log in</h1>{msg}"
            "<p>Paste the intake token (the value of the server's token variable).</p>"
            "<form method='post' action='/login'>"
            f"<input type='hidden' name='next' value='{e(_safe_next(next_path))}'>"
            "<input type='password' name='token' autocomplete='current-password' autofocus> "
            "<button type='submit'>Log in</button></form></body></html>")


_STYLE = ("body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
          "td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}"
          ".critical{color:#b00020;font-weight:600}.open{font-weight:600}.failed{color:#b00020}")


def render_page(incidents: list[Incident], link: Callable[[Incident], str],
                alert_count: Callable[[Incident], int], page: int = 1, more: bool = False,
                intake: dict[str, Any] | None = None, stuck_after_s: float = 300.0) -> str:
    """The incidents page as HTML; every value from an alert is escaped.

    `intake` (failed items, age of the oldest queued one) puts a warning above the table.
    """
    e = html.escape
    warn = ""
    if intake:
        failed, age = intake.get("failed"), intake.get("oldest_queued_s")
        notes = []
        if failed is None:
            notes.append("the incident store does not answer; see /readyz")
        elif failed:
            notes.append(f"{failed} intake item(s) failed: run <code>incidentbook intake failed</code>")
        if age is not None and age > stuck_after_s:
            notes.append(f"the oldest queued alert has waited {age:.0f} s (stuck?): see /readyz")
        if notes:
            warn = "".join(f"<p class='failed' role='alert'>{n}</p>" for n in notes)
    nav = ""
    if page > 1 or more:
        prev = f"<a href='/?page={page - 1}'>newer</a>" if page > 1 else ""
        nxt = f"<a href='/?page={page + 1}'>older</a>" if more else ""
        nav = f"<p>page {page} {prev} {nxt}</p>"
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
            f"<h1>Incidents</h1>{warn}<table><thead><tr><th>ID</th><th>Status</th><th>Severity</th>"
            "<th>Title</th><th>Service</th><th>Alerts</th><th>Runbook</th><th>Opened</th>"
            f"<th>Notebook</th></tr></thead><tbody>{body}</tbody></table>{nav}</body></html>")


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
    from incidentbook.presave import LAB_OPTION

    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent)) or shutil.which("jupyter")
    if not jupyter:
        raise IncidentbookError("JupyterLab is not installed; pip install 'incidentbook[lab]' or rerun with --no-lab")
    token = secrets.token_hex(16)
    cmd = [jupyter, "lab", "--no-browser", f"--ServerApp.root_dir={home}", f"--ServerApp.ip={host}",
           f"--ServerApp.port={port}", f"--IdentityProvider.token={token}", LAB_OPTION]
    import os

    if os.geteuid() == 0:
        cmd.append("--allow-root")
    # The Approve pages of the action broker; the lab and its kernels get no write credentials.
    from incidentbook.actions.broker import kernel_env

    cmd.append("--ServerApp.jpserver_extensions=incidentbook.actions.labext=True")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=kernel_env(),
                            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    return proc, f"http://{host}:{port}?token={token}"


def _die_with_parent() -> None:
    """In the JupyterLab child: get SIGTERM when `serve` dies, even by SIGKILL (Linux prctl)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def serve(cfg: Config, *, host: str | None = None, port: int | None = None, no_auth: bool = False,
          no_lab: bool = False, bundle: Path | None = None, lab_port: int | None = None,
          announce: Callable[[dict[str, str]], None] = lambda urls: None) -> None:
    """Run the intake server until interrupted (Ctrl-C / SIGTERM); `announce` gets the URLs."""
    import uvicorn

    host = host or cfg.server.host
    port = cfg.server.port if port is None else port
    token = resolve_token(cfg, host, no_auth)
    env = __import__("os").environ
    pd_secret = env.get(cfg.server.pagerduty_secret_env, "")
    generic_token = None
    if cfg.server.generic_token_env:
        generic_token = env.get(cfg.server.generic_token_env, "")
        if not generic_token:
            raise ConfigError(f"[server] generic_token_env names {cfg.server.generic_token_env!r} but it is not "
                              f"set; export {cfg.server.generic_token_env}=$(openssl rand -hex 32)")
    # The store is opened (and checked for damage) before anything else starts.
    store = Store.from_config(cfg)
    lab_proc = None
    lab_url = cfg.server.lab_url
    if not no_lab:
        # Loopback unless [server] lab_host says otherwise: the lab runs code as this user.
        lab_proc, lab_url = _start_lab(cfg.home, cfg.server.lab_host, lab_port or port + 1)
    service = build_service(cfg, bundle=bundle, lab_url=lab_url, store=store)
    app = create_app(service, ServerSettings(token=token, pagerduty_secret=pd_secret, lab_url=lab_url,
                                             generic_token=generic_token))
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
