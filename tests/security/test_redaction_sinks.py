"""Every place incidentbook writes or sends text keeps planted secrets out, and keeps the rest.

Real parts: a SQLite store, nbformat files, jupyter_server's own FileContentsManager with the
pre-save hook configured the way `serve` and `demo` configure it, slack_sdk's WebhookClient
against a loopback HTTP server that records what it receives (Slack has no local binary), and
Python logging with the process's record factory.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import pytest

from incidentbook.incidents import Store
from incidentbook.intake import parse_alertmanager
from tests.security.secrets_corpus import KEEP, SHAPES

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "alerts"
DB_PW = "Db-pass-4-orders"
WEBHOOK = next(s.value for s in SHAPES if s.name == "slack_webhook")
KEY = SHAPES[0].value  # a multi-line RSA private key


def planted_payload() -> str:
    doc = json.loads((FIXTURES / "checkout_firing.json").read_text())
    doc["commonAnnotations"]["summary"] = f"Checkout down: DB_PASSWORD={DB_PW}"
    for a in doc["alerts"]:
        a["annotations"]["description"] = f"{KEEP}; notify {WEBHOOK}\n{KEY}"
        a["generatorURL"] = "http://prom:9090/graph?g0.expr=up&token=gen-url-token-123456"
    return json.dumps(doc)


def assert_clean(text: str) -> None:
    for secret in (DB_PW, WEBHOOK, "gen-url-token-123456", *KEY.split("\n")[1:-1]):
        assert secret not in text


def test_store_never_persists_a_secret(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'ib.db'}")
    out = store.record_alerts(parse_alertmanager(planted_payload()))
    inc = store.get_incident(out.incident.id)
    store.add_event(inc.id, "note", f"tried PGPASSWORD={DB_PW} by hand", data={"cmd": f"psql {WEBHOOK}"})
    dumped = json.dumps({"incident": inc.title, "ann": inc.annotations,
                         "alerts": [a.annotations for a in store.alerts(inc.id)],
                         "urls": [a.generator_url for a in store.alerts(inc.id)],
                         "timeline": [(e.summary, e.data) for e in store.timeline(inc.id)],
                         "payloads": store.payloads(inc.id)})
    assert_clean(dumped)
    store.close()
    assert_clean((tmp_path / "ib.db").read_bytes().decode("utf-8", "replace"))  # the file itself
    assert KEEP in dumped and "Checkout down" in inc.title and inc.labels["alertname"]


def test_jupyterlab_saves_notebooks_and_text_files_redacted(tmp_path: Path) -> None:
    """jupyter_server's FileContentsManager, hook given as the import string serve/demo pass."""
    from jupyter_server.services.contents.filemanager import FileContentsManager

    from incidentbook.demo import lab_command
    from incidentbook.presave import LAB_OPTION

    (tmp_path / "nb.ipynb").write_text("{}")
    assert LAB_OPTION in lab_command(tmp_path, tmp_path / "nb.ipynb")
    hook = LAB_OPTION.split("=", 1)[1]
    cm = FileContentsManager(root_dir=str(tmp_path), pre_save_hook=hook)
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("!env")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"DB_PASSWORD={DB_PW}\n{KEY}\n{KEEP}\n")]
    nb.cells = [cell]
    cm.save({"type": "notebook", "content": json.loads(nbformat.writes(nb))}, "incident.ipynb")
    cm.save({"type": "file", "format": "text", "content": f"notes: {WEBHOOK}\n{KEEP}"}, "notes.txt")
    saved = (tmp_path / "incident.ipynb").read_text() + (tmp_path / "notes.txt").read_text()
    assert_clean(saved)
    assert saved.count(KEEP) == 2
    nbformat.validate(nbformat.read(tmp_path / "incident.ipynb", as_version=4))


def test_runner_saves_the_incident_notebook_redacted(tmp_path: Path) -> None:
    """finish_run (what cold and warm runs end with) over a notebook a runbook printed secrets into."""
    from incidentbook.runner.execute import finish_run
    from incidentbook.runner.registry import read_runbook

    runbook = read_runbook(Path(__file__).resolve().parents[1] / "fixtures" / "runbooks" / "raises.ipynb")
    nb = nbformat.read(runbook.path, as_version=4)
    cell = nbformat.v4.new_code_cell("print(os.environ)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"{KEEP}\nREDIS_URL=redis://:{DB_PW}@r:6379\n"),
                    nbformat.v4.new_output("error", ename="ConnectionError",
                                           evalue=f"auth {DB_PW} refused", traceback=[f"boom {KEY}"])]
    nb.cells.append(cell)
    out = tmp_path / "incident.ipynb"
    nbformat.write(nb, out)
    result = finish_run(runbook, {}, out, "ConnectionError", f"redis://:{DB_PW}@r:6379 refused", False, 0.1)
    text = out.read_text()
    assert_clean(text + result.evalue)
    assert KEEP in text


def test_slack_message_is_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """slack_sdk posts to a loopback server standing in for Slack's incoming webhook."""
    from incidentbook.config import load_config
    from incidentbook.intake.notify import slack_notifier

    received: list[bytes] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("INCIDENTBOOK_HOME", str(tmp_path))
        monkeypatch.setenv("TEST_SLACK_HOOK", f"http://127.0.0.1:{server.server_port}/services/T1/B1/x")
        (tmp_path / "incidentbook.toml").write_text('[server]\nslack_webhook_env = "TEST_SLACK_HOOK"\n')
        cfg = load_config(start=tmp_path)
        store = Store(f"sqlite:///{tmp_path / 'ib.db'}")
        inc = store.record_alerts(parse_alertmanager(planted_payload())).incident
        # a title written before redaction existed (an old store) still leaves redacted
        with store._session(write=True) as s:
            from incidentbook.incidents.models import IncidentRow

            s.get(IncidentRow, inc.id).title = f"{KEEP} DB_PASSWORD={DB_PW}"
        notify = slack_notifier(cfg, store, lambda i: "http://lab/x")
        assert notify is not None
        notify(inc.id)
        store.close()
    finally:
        server.shutdown()
    body = received[0].decode()
    assert_clean(body)
    assert KEEP in body


def test_log_records_are_redacted_whatever_the_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    from incidentbook.redact import install_log_redaction

    old = logging.getLogRecordFactory()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log = logging.getLogger("incidentbook.test.sinks")
    log.addHandler(handler)
    try:
        install_log_redaction()
        install_log_redaction()  # idempotent
        log.warning("connect %s failed", f"postgresql://app:{DB_PW}@pg/db")
        try:
            raise RuntimeError(f"token {WEBHOOK}")
        except RuntimeError:
            log.exception("post failed for %s", KEEP)
    finally:
        log.removeHandler(handler)
        logging.setLogRecordFactory(old)
    text = stream.getvalue()
    assert_clean(text)
    assert KEEP in text and "RuntimeError" in text


def test_scorecard_and_eval_json_are_redacted(tmp_path: Path) -> None:
    """An investigator's note or error that quotes a secret does not reach the eval outputs."""
    from incidentbook.evals.runner import CaseResult, EvalReport
    from incidentbook.evals.scorecard import write_scorecard

    case = CaseResult(case=f"case-1 {KEEP}", expected="orders:bad_deploy", ranked=["orders:bad_deploy"], rank=1,
                      seconds=0.5, notes=[f"saw DB_PASSWORD={DB_PW}"], errors=[f"query failed: {WEBHOOK}"])
    report = EvalReport("rules", [case])
    page = write_scorecard(report, tmp_path / "scorecard.html").read_text()
    text = json.dumps(report.to_dict()) + report.table() + page
    assert_clean(text)
    assert KEEP in page and KEEP in json.dumps(report.to_dict())
