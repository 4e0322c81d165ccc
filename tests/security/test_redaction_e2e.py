"""The planted-secret corpus through the whole loop, once: ingest → runbook → `%investigate`
with Claude → close → postmortem → `library add` → `eval` → `bundle export`.

Real parts: the store (SQLite), papermill and a real kernel for the runbook, a real IPython
shell for `%investigate`, the anthropic SDK against the loopback Messages API server
(`tests/agent/messages_server.py`, which records every request byte), nbconvert, git. The
model's script sends a pseudonym back as a LogQL selector and a bearer pseudonym inside a broken
PromQL query, the two leaks this suite was written for.

Then: no planted value appears in any file under the workspace, in any git object of the
library, in any recorded model request, in the captured logs or the CLI's output; the text
around the secrets does.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.messages_server import MessagesServer, Reply, text, tool_use
from tests.security.secrets_corpus import KEEP, SHAPES

pytestmark = pytest.mark.slow

ANTHROPIC_KEY = "sk-ant-api03-e2e-planted-key-0123456789abcdef"
INTAKE_TOKEN = "intake-planted-token-value-4242"
KEEP_EVENT = "image pull for auth-7d9f retried"
KEEP_CHANGE = "rotated credentials for auth"


def _plant(bundle: Path) -> None:
    """Every corpus shape in a log line; some again in an event, a change and the alert."""
    logs = [json.loads(x) for x in (bundle / "logs.jsonl").read_text().splitlines() if x.strip()]
    labels = {"container": "auth", "namespace": "shop", "pod": "auth-7d9f-abcde", "service": "auth"}
    for i, shape in enumerate(SHAPES):
        logs.append({"labels": labels, "timestamp": f"2025-06-22T15:5{i // 10}:{(i % 10) * 5:02d}.000Z",
                     "line": f"level=error msg=\"{KEEP}\" detail={shape.text()!r}"})
    logs.append({"labels": labels, "timestamp": "2025-06-22T15:58:00.000Z",
                 "line": f"level=warn msg=\"{KEEP}\" intake said {INTAKE_TOKEN} key {ANTHROPIC_KEY}"})
    logs.sort(key=lambda r: r["timestamp"])
    (bundle / "logs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logs))
    by = {s.name: s for s in SHAPES}
    with (bundle / "events.jsonl").open("a") as f:
        f.write(json.dumps({"count": 1, "kind": "Pod", "name": "auth-7d9f-abcde", "namespace": "shop",
                            "reason": "BackOff", "type": "Warning", "timestamp": "2025-06-22T15:55:00.000Z",
                            "message": f"{KEEP_EVENT}: {by['authorization_bearer'].text()} {by['gitlab_pat'].text()}"}) + "\n")
    with (bundle / "changes.jsonl").open("a") as f:
        f.write(json.dumps({"author": "deploy-bot", "description": f"{KEEP_CHANGE}\n{by['db_password_env'].text()}\n"
                            f"{by['rsa_private_key'].text()}", "details": {"webhook": by["slack_webhook"].value},
                            "kind": "config", "service": "auth", "timestamp": "2025-06-22T15:40:00.000Z"}) + "\n")
    alert = sorted((bundle / "alerts").glob("*.json"))[0]
    doc = json.loads(alert.read_text())
    doc["alerts"][0]["annotations"]["description"] += (
        f" {KEEP}. {by['redis_url_password_no_user'].text()} {by['stripe_live_key'].text()} {ANTHROPIC_KEY}")
    alert.write_text(json.dumps(doc))


def planted() -> list[str]:
    values = [ANTHROPIC_KEY, INTAKE_TOKEN]
    for s in SHAPES:
        values.append(s.value)
        values += [p for p in s.value.replace("\\n", "\n").split("\n") if p and "-----" not in p]
    return values


def leaks(blob: str) -> list[str]:
    return [v for v in planted() if v in blob]


def result_texts(body: dict[str, Any]) -> dict[str, str]:
    out = {}
    for m in body["messages"]:
        if m["role"] == "user" and isinstance(m["content"], list):
            for b in m["content"]:
                if b.get("type") == "tool_result":
                    c = b["content"]
                    out[b["tool_use_id"]] = c if isinstance(c, str) else " ".join(x.get("text", "") for x in c)
    return out


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One run of the whole loop; every test below checks a part of what it left behind."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from incidentbook.config import load_config
    from incidentbook.incidents import Store
    from incidentbook.intake.ingest import ingest_alertmanager
    from incidentbook.postmortems import Library
    from incidentbook.scenarios import generate
    from incidentbook.telemetry.export import export_incident_bundle

    root = tmp_path_factory.mktemp("e2e")
    src = Path(generate("bad-deploy", root / "source" / "bad-deploy", seed=1).bundle_dir)
    _plant(src)
    home = root / "home"
    home.mkdir()
    mp = pytest.MonkeyPatch()
    log_lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            log_lines.append(self.format(record))

    handler = Keep(level=logging.INFO)
    logging.getLogger().addHandler(handler)
    old_level = logging.getLogger().level
    logging.getLogger().setLevel(logging.INFO)
    server = MessagesServer().__enter__()
    sh = None
    try:
        (home / "incidentbook.toml").write_text(
            f'[agent]\ninvestigator = "claude"\nmodel = "claude-sonnet-4-6"\napi_key_env = "E2E_ANTHROPIC_KEY"\n'
            f'base_url = "{server.url}"\n[server]\ntoken_env = "E2E_INTAKE_TOKEN"\n')
        for k, v in {"INCIDENTBOOK_HOME": str(home), "E2E_ANTHROPIC_KEY": ANTHROPIC_KEY,
                     "E2E_INTAKE_TOKEN": INTAKE_TOKEN, "USER": "alice"}.items():
            mp.setenv(k, v)
        mp.delenv("INCIDENTBOOK_HEADLESS", raising=False)
        mp.chdir(home)
        cfg = load_config(start=home)
        alert = sorted((src / "alerts").glob("*.json"))[0]
        iid = ingest_alertmanager(cfg, alert.read_bytes(), bundle=src)[0].id

        seen: dict[str, str] = {}

        def echo_back(body: dict[str, Any]) -> Reply:
            logs = result_texts(body)["l1"]
            seen["logs"] = logs
            pw = re.search(r"\[(?:PASSWORD|SECRET)-\d+\]", logs).group(0)
            tok = re.search(r"\[TOKEN-\d+\]", logs).group(0)
            seen["pw"], seen["tok"] = pw, tok
            return Reply([tool_use("query_logs", {"logql": pw}, id="l2"),
                          tool_use("query_metrics", {"promql": f'up{{authorization="Bearer {tok}"'}, id="m1"),
                          tool_use("kubernetes_events", {"reason": "BackOff"}, id="k1"),
                          tool_use("recent_changes", {"service": "auth"}, id="c1")], "tool_use")

        def conclude(body: dict[str, Any]) -> Reply:
            seen.update({f"r-{k}": v for k, v in result_texts(body).items()})
            return Reply([tool_use("record_hypothesis", {
                "statement": f"the auth rollout broke logins; its db password {seen['pw']} was rotated",
                "service": "auth", "fault_kind": "bad_deploy", "role": "cause", "position": "root",
                "confidence": 0.8, "evidence_for": [{"summary": f"{KEEP} in auth logs", "tool_use_id": "l1"}]},
                id="h1")], "tool_use")

        server.add(Reply([tool_use("query_logs", {"logql": '{service="auth"} |= "' + KEEP + '"', "limit": 200},
                                   id="l1")], "tool_use"),
                   echo_back, conclude, Reply([text(f"Done: auth rollout; it used {seen.get('pw', 'a password')}.")]))
        sh = InteractiveShell.instance()
        sh.reset(new_session=False)
        sh.run_line_magic("load_ext", "incidentbook")
        store = Store.from_config(cfg)
        inc = store.get_incident(iid)
        window = json.loads((src / "manifest.json").read_text())["window"]
        sh.push({"incident_id": iid, "bundle": str(src), "window_start": window["start"], "window_end": window["end"],
                 "service": inc.service or "auth", "labels": dict(inc.labels)})
        with capture_output() as cap:
            assert sh.run_cell('%investigate "why do logins fail?"').success
        store.close_incident(iid, "alice", summary=f"{KEEP}; auth rollout", root_cause="auth: bad deploy")
        Library(cfg.library_path).add(cfg, store, iid)
        entry = next(cfg.library_path.glob("[0-9][0-9][0-9][0-9]/*"))
        cli_out = subprocess.run(
            [str(Path(sys.executable).parent / "incidentbook"), "eval", str(entry), "--json",
             "--html", str(home / "eval" / "scorecard.html")], capture_output=True, text=True, cwd=home, timeout=300)
        export = export_incident_bundle(cfg, store, iid, home / "exports" / iid)
        store.close()
        yield {"home": home, "library": cfg.library_path, "server": server, "iid": iid, "seen": seen, "cap": cap,
               "logs": log_lines, "cli": cli_out, "export": export}
    finally:
        if sh is not None:
            sh.run_line_magic("unload_ext", "incidentbook")
            sh.rl_next_input = None
            sh.reset(new_session=False)
        server.__exit__(None, None, None)
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(old_level)
        mp.undo()


def test_the_model_saw_the_evidence_but_no_secret(loop: dict[str, Any]) -> None:
    server: MessagesServer = loop["server"]
    sent = b"\n".join(server.raw).decode("utf-8", "replace")
    decoded = json.dumps(server.requests, ensure_ascii=False)
    # the runbook's own investigation at ingest asked the model too; %investigate made 4 requests
    assert len(server.requests) >= 4 and {"logs", "r-l2", "r-m1"} <= set(loop["seen"])
    assert not leaks(sent) and not leaks(decoded)
    assert KEEP in decoded and KEEP_EVENT in decoded and KEEP_CHANGE in decoded
    # the echoed pseudonyms came back as errors naming the pseudonym, not the value
    assert loop["seen"]["pw"] in loop["seen"]["r-l2"] and loop["seen"]["tok"] in loop["seen"]["r-m1"]
    assert "bad PromQL" in loop["seen"]["r-m1"]


def test_no_file_in_the_workspace_holds_a_secret(loop: dict[str, Any]) -> None:
    home: Path = loop["home"]
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name == "incident.ipynb" for p in files) and any(p.name == "postmortem.html" for p in files)
    bad = {str(p.relative_to(home)): leaks(p.read_bytes().decode("utf-8", "replace")) for p in files}
    assert not {k: v for k, v in bad.items() if v}
    exported = (loop["export"] / "logs.jsonl").read_text() + (loop["export"] / "events.jsonl").read_text() \
        + (loop["export"] / "changes.jsonl").read_text()
    assert KEEP in exported and KEEP_EVENT in exported and KEEP_CHANGE in exported
    archived = next(loop["library"].glob("*/*/bundle/logs.jsonl")).read_text()
    assert KEEP in archived


def test_no_git_object_holds_a_secret(loop: dict[str, Any]) -> None:
    lib: Path = loop["library"]
    objects = subprocess.run(["git", "-C", str(lib), "cat-file", "--batch-all-objects", "--batch"],
                             capture_output=True, check=True).stdout.decode("utf-8", "replace")
    history = subprocess.run(["git", "-C", str(lib), "log", "-p", "--all"], capture_output=True, check=True,
                             text=True, errors="replace").stdout
    assert not leaks(objects) and not leaks(history)
    assert KEEP in history


def test_logs_outputs_and_the_cli_hold_no_secret(loop: dict[str, Any]) -> None:
    """Logs and the CLI carry no secret. The live board may show telemetry as it is (the
    engineer can query it anyway); the notebook it is saved into carries none."""
    import nbformat

    from incidentbook.redact import process_redactor, redact_notebook

    cap = loop["cap"]
    cell = nbformat.v4.new_code_cell('%investigate "why do logins fail?"')
    cell.outputs = [nbformat.v4.new_output("display_data", data=o.data) for o in cap.outputs]
    cell.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=cap.stdout))
    nb = nbformat.v4.new_notebook()
    nb.cells = [cell]
    saved = nbformat.writes(redact_notebook(nb, process_redactor()))  # what the pre-save hook writes
    cli = loop["cli"]
    assert cli.returncode == 0, cli.stderr
    assert not leaks(saved) and not leaks("\n".join(loop["logs"])) and not leaks(cli.stdout + cli.stderr)
    assert "incidentbook-board" in saved and json.loads(cli.stdout)["cases"]
