"""The magics in a real IPython InteractiveShell, against a replayed telemetry bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from incidentbook.proposals import proposal_id_of

MAGICS = ["incident", "timeline", "note", "sources", "promql", "logql", "k8s", "changes",
          "investigate", "hypotheses", "confirm", "refute", "propose", "approve"]


def events(shell: Any, kind: str) -> list[Any]:
    from incidentbook.kernel_ext import get_session

    s = get_session(shell)
    return [e for e in s.store.timeline(s.require()) if e.kind == kind]


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err, "expected an error in the cell output"
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_load_and_unload_reverse_everything(home: Path) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    sh = InteractiveShell.instance()
    before_pre = list(sh.events.callbacks["pre_run_cell"])
    before_post = list(sh.events.callbacks["post_run_cell"])
    before_exc = sh.custom_exceptions
    sh.run_line_magic("load_ext", "incidentbook")
    assert set(MAGICS) <= set(sh.magics_manager.magics["line"])
    assert "ib" in sh.user_ns and hasattr(sh.user_ns["ib"].act, "rollout_undo")
    assert len(sh.events.callbacks["post_run_cell"]) == len(before_post) + 1
    sh.run_line_magic("unload_ext", "incidentbook")
    assert not set(MAGICS) & set(sh.magics_manager.magics["line"])
    assert "ib" not in sh.user_ns
    assert sh.events.callbacks["pre_run_cell"] == before_pre
    assert sh.events.callbacks["post_run_cell"] == before_post
    assert sh.custom_exceptions == before_exc


def test_load_does_not_fail_when_a_source_is_unreachable(home: Path, shell: Any,
                                                          incident_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    # A closed port: nothing listens there. Loading already happened (fixture); the query reports it.
    (home / "incidentbook.toml").write_text('[sources.prometheus]\nurl = "http://127.0.0.1:9"\ntimeout_s = 2\n')
    shell.run_cell(f"%incident use {incident_id}")
    capsys.readouterr()
    shell.run_cell('%promql up')
    err = one_line_error(capsys)
    assert "prometheus" in err.lower() or "127.0.0.1:9" in err


@pytest.mark.parametrize("magic", MAGICS)
def test_every_magic_has_help(shell: Any, magic: str, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run_cell(f"%{magic} --help")
    out = capsys.readouterr().out
    assert f"%{magic}" in out or "Usage" in out
    assert len(out.splitlines()) >= 2


def test_unknown_option_is_one_line(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run_cell("%promql --bogus up")
    assert "unrecognized arguments: --bogus" in one_line_error(capsys)


def test_no_incident_bound_is_one_line(shell: Any, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run_cell("%timeline")
    assert "no incident bound" in one_line_error(capsys)


def test_malformed_promql_is_one_line(bound: Any, capsys: pytest.CaptureFixture[str]) -> None:
    bound.run_cell('%promql sum(rate(http_requests_total[5m]')
    assert "malformed PromQL" in one_line_error(capsys)


def test_incident_use_binds_and_shows(shell: Any, incident_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run_cell("%incident use INC-00000000-9999")
    assert "INC-00000000-9999" in one_line_error(capsys)
    shell.run_cell(f"%incident use {incident_id}")
    assert f"bound to {incident_id}" in capsys.readouterr().out
    shell.run_cell("%incident")
    assert "HighErrorRate" in capsys.readouterr().out


def test_promql_replays_the_bundle_with_a_window_chart(bound: Any) -> None:
    res = bound.run_cell('%promql sum by (code) (rate(http_requests_total{service="checkout"}[5m])) --step 60s -o df')
    assert res.success, res.error_in_exec
    df = bound.user_ns["df"]
    assert isinstance(df, pd.DataFrame) and set(df["code"]) == {"200", "500"}
    late = df[(df["code"] == "500") & (df["timestamp"] > pd.Timestamp("2026-03-14T09:20:00Z"))]["value"]
    assert late.mean() == pytest.approx(5.0, rel=0.05)  # two pods x 2.5/s after the onset


def test_changes_k8s_and_logql(bound: Any) -> None:
    assert bound.run_cell("x = %changes --service checkout").success
    assert list(bound.user_ns["x"]["description"]) == ["checkout v2.3.1 -> v2.4.0"]
    bound.run_cell("y = %k8s rollouts")
    assert list(bound.user_ns["y"]["name"]) == ["checkout"]
    bound.run_cell('z = %logql {service="checkout"} |= "ERROR"')
    assert bound.user_ns["z"]["line"].str.contains("authorisation failed").all()


def test_note_and_timeline(bound: Any) -> None:
    bound.run_cell('%note "paged payments on-call"')
    notes = events(bound, "note")
    assert [n.summary for n in notes] == ["paged payments on-call"] and notes[0].actor == "alice"
    bound.run_cell("t = %timeline --kind note")
    assert list(bound.user_ns["t"]["summary"]) == ["paged payments on-call"]


def test_every_cell_execution_is_on_the_timeline(bound: Any) -> None:
    bound.run_cell("import time; time.sleep(0.05)")
    bound.run_cell("1/0")
    cells = events(bound, "cell_executed")
    ok = next(e for e in cells if "sleep" in e.data["first_line"])
    bad = next(e for e in cells if e.data["first_line"] == "1/0")
    assert ok.data["outcome"] == "ok" and ok.data["duration_s"] >= 0.05
    assert bad.data["outcome"] == "error" and "ZeroDivisionError" in bad.data["error"]


def test_investigate_proposes_a_cell_and_running_it_is_the_approval(bound: Any, capsys: pytest.CaptureFixture[str]) -> None:
    bound.run_cell("%investigate \"why is checkout failing?\"")
    out = capsys.readouterr().out
    inv = events(bound, "investigation")[-1].data
    top = inv["hypotheses"][0]
    assert top["service"] == "checkout" and top["role"] == "cause"
    assert any("error ratio" in e["summary"] for e in top["evidence_for"])
    assert "Proposed" in out
    code = bound.rl_next_input
    assert code and proposal_id_of(code) == top["proposals"][0]["id"]
    # Running the proposed cell unchanged: approval recorded before it runs, verbatim.
    bound.rl_next_input = None
    assert bound.run_cell(code).success
    approvals = events(bound, "proposal_approved")
    assert approvals[-1].data["proposal_id"] == top["proposals"][0]["id"]
    assert approvals[-1].data["verbatim"] is True and approvals[-1].data["who"] == "alice"
    # ...and the next proposal is offered below it.
    nxt = bound.rl_next_input
    assert nxt and proposal_id_of(nxt) != top["proposals"][0]["id"]
    # An edited proposal is recorded as edited.
    bound.run_cell(nxt + "\n# narrowed to the last 10 minutes")
    assert events(bound, "proposal_approved")[-1].data["how"] == "edited"


def test_confirm_refute_and_hypotheses_board(bound: Any, capsys: pytest.CaptureFixture[str]) -> None:
    bound.run_cell("%investigate --no-propose")
    hyps = events(bound, "investigation")[-1].data["hypotheses"]
    ids = [h["id"] for h in hyps]
    bound.run_cell(f'%confirm {ids[0]} "errors began with the v2.4.0 deploy"')
    bound.run_cell(f"%refute {ids[-1]}")
    assert "needs a reason" in one_line_error(capsys)
    bound.run_cell(f'%refute {ids[-1]} "payments latency flat"')
    bound.run_cell("%refute H99 nope")
    assert "no hypothesis 'H99'" in one_line_error(capsys)
    assert [e.data["hypothesis"] for e in events(bound, "hypothesis_confirmed")] == [ids[0]]
    from IPython.display import display  # noqa: F401  (board goes through display)

    bound.run_cell("%hypotheses")
    out = capsys.readouterr().out
    assert "hypotheses" in out


def test_unknown_investigator_falls_back_with_a_note(bound: Any, capsys: pytest.CaptureFixture[str]) -> None:
    bound.run_cell("%investigate --investigator no-such-one --no-propose")
    out = capsys.readouterr().out
    assert "'no-such-one' is not installed" in out and "simple" in out
    assert events(bound, "investigation")[-1].data["investigator"] == "simple"


def test_config_traitlets(bound: Any) -> None:
    bound.run_cell("%config IncidentMagics.timeline_limit = 1")
    bound.run_cell('%note "one"')
    bound.run_cell('%note "two"')
    bound.run_cell("t = %timeline --kind note")
    assert list(bound.user_ns["t"]["summary"]) == ["two"]


def test_sources_reports_an_unreachable_source(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    (home / "incidentbook.toml").write_text('[sources.prometheus]\nurl = "http://127.0.0.1:9"\ntimeout_s = 2\n')
    sh = InteractiveShell.instance()
    sh.run_line_magic("load_ext", "incidentbook")  # loading does not touch the network
    try:
        assert "Sources: prometheus" in capsys.readouterr().out
        sh.run_cell("st = %sources")
        st = sh.user_ns["st"].set_index("source")
        assert not st.loc["prometheus", "ok"] and st.loc["prometheus", "reason"]
    finally:
        sh.run_line_magic("unload_ext", "incidentbook")


def test_broken_config_does_not_break_loading(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    (home / "incidentbook.toml").write_text("[agent\n")
    sh = InteractiveShell.instance()
    sh.run_line_magic("load_ext", "incidentbook")
    try:
        assert "Config problem" in capsys.readouterr().out
        assert "investigate" in sh.magics_manager.magics["line"]
    finally:
        sh.run_line_magic("unload_ext", "incidentbook")


def test_headless_proposals_are_recognised_by_a_later_live_kernel(bound: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from incidentbook.kernel_ext import get_session
    from incidentbook.proposals import proposal_source

    get_session(bound).headless = True  # as in the papermill run that made the notebook
    bound.run_cell("%investigate")
    proposal = dict(get_session(bound).proposals["P1"])
    assert getattr(bound, "rl_next_input", None) is None  # headless: nothing inserted, recorded as output instead
    ns = {k: bound.user_ns[k] for k in ("incident_id", "bundle", "window_start", "window_end")}
    bound.run_line_magic("unload_ext", "incidentbook")
    bound.reset(new_session=False)
    bound.run_line_magic("load_ext", "incidentbook")  # a new live kernel opens the notebook
    bound.push(ns)
    bound.run_cell(proposal_source(proposal))
    approval = events(bound, "proposal_approved")[-1].data
    assert approval["proposal_id"] == "P1" and approval["verbatim"] is True


def test_investigate_in_a_replayed_system_looks_past_the_paged_service(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Paged on a symptom (a caller's DB latency), the board still names the broken cache first.

    The notebook's investigation sees only its own alert, as an on-call engineer would; the
    services it examines come from the replayed system, not from the alert.
    """
    import json
    import subprocess
    import sys
    from pathlib import Path

    import nbformat

    bin_ = Path(sys.executable).parent / "incidentbook"
    home = tmp_path / "demo"
    r = subprocess.run([str(bin_), "demo", "--no-lab", "--home", str(home), "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (inc,) = json.loads(r.stdout)["incidents"]
    nb = nbformat.read(inc["notebook"], as_version=4)
    proposals = [c for c in nb.cells if c.cell_type == "code" and "proposal" in c.metadata.get("incidentbook", {})]
    assert 0 < len(proposals) <= 4, "at most max_proposals cells"
    first = proposals[0].metadata["incidentbook"]["proposal"]
    shown = subprocess.run([str(bin_), "incidents", "show", inc["id"], "--json"], cwd=home,
                           capture_output=True, text=True)
    investigation = [e for e in json.loads(shown.stdout)["timeline"] if e["kind"] == "investigation"][-1]
    top = investigation["data"]["hypotheses"][0]
    assert (top["service"], top["fault_kind"]) == ("kv-cache", "cache_failure")
    assert first["hypothesis"] == top["id"]


def test_promql_chart_marks_where_the_series_changed(bound: Any) -> None:
    """The 5xx series steps up at 09:05 (fixture); the chart's onset marker lands there."""
    bound.user_ns["starts_at"] = "2026-03-14T09:10:00Z"
    assert bound.run_cell('%promql sum(rate(http_requests_total{service="checkout",code="500"}[5m])) --step 60s -o e').success
    qm = bound.magics_manager.registry["QueryMagics"]
    start, _ = qm._range(None)
    onsets = [pd.Timestamp(t) for t in qm._onsets(bound.user_ns["e"], start)]
    assert len(onsets) == 1
    assert pd.Timestamp("2026-03-14T09:00:00Z") <= onsets[0] <= pd.Timestamp("2026-03-14T09:10:00Z")
    qm.onsets = False
    assert qm._onsets(bound.user_ns["e"], start) == []
    qm.onsets = True
