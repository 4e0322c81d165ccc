"""The incident store, run on SQLite and (slow) on a real PostgreSQL: same tests, both backends."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from incidentbook.config import Config
from incidentbook.errors import BadInput, NotFound
from incidentbook.incidents import Store

ID_RE = re.compile(r"^INC-(\d{8})-(\d{4})$")


def kinds(store: Store, incident_id: str) -> list[str]:
    return [e.kind for e in store.timeline(incident_id)]


# ---------------------------------------------------------------- dedupe


def test_first_notification_opens_an_incident(store: Store, fixture_payload) -> None:
    before = datetime.now(timezone.utc)
    out = store.record_alerts(fixture_payload("checkout_firing.json"))
    inc = out.incident
    assert out.created and not out.deduplicated
    m = ID_RE.match(inc.id)
    assert m and m.group(1) == before.strftime("%Y%m%d")
    assert inc.status == "open"
    assert inc.title == "checkout 5xx error ratio above 5% for 5 minutes"
    assert (inc.alertname, inc.service, inc.severity, inc.namespace) == ("HighErrorRate", "checkout", "critical", "shop")
    assert inc.labels["service"] == "checkout"
    assert inc.annotations["runbook_url"].startswith("https://runbooks.example.com/")
    assert inc.runbook_status == "pending" and inc.runbook is None and inc.notebook is None
    assert inc.created >= before and inc.created.tzinfo is not None
    assert out.new_alerts == ["5f3c8e1a9b2d4c70"]
    (alert,) = store.alerts(inc.id)
    assert alert.status == "firing"
    assert alert.labels["pod"] == "checkout-7d9f8b6c5-x2kqp"
    assert alert.starts_at == datetime(2026, 3, 14, 9, 12, 30, tzinfo=timezone.utc)
    assert alert.ends_at is None
    assert alert.generator_url.startswith("http://prometheus.example.com:9090/graph")
    assert kinds(store, inc.id) == ["incident_opened", "alert_received"]
    assert store.get_incident(inc.id) == inc


def test_renotification_updates_the_same_incident(store: Store, fixture_payload) -> None:
    first = store.record_alerts(fixture_payload("checkout_firing.json"))
    again = store.record_alerts(fixture_payload("checkout_renotify.json"))
    assert not again.created and again.deduplicated
    assert again.incident.id == first.incident.id
    assert again.new_alerts == ["a81e44c0d2f97b35"]
    assert again.unchanged_alerts == ["5f3c8e1a9b2d4c70"]
    assert len(store.alerts(first.incident.id)) == 2
    assert kinds(store, first.incident.id) == ["incident_opened", "alert_received", "alert_received"]
    assert "1 new alert; 2 firing" in store.timeline(first.incident.id)[-1].summary
    assert store.count_incidents() == 1
    # A plain repeat (Alertmanager's repeat_interval) touches the alerts, not the timeline.
    repeat = store.record_alerts(fixture_payload("checkout_renotify.json"))
    assert repeat.unchanged_alerts == ["5f3c8e1a9b2d4c70", "a81e44c0d2f97b35"]
    assert len(store.timeline(first.incident.id)) == 3
    assert [a.notifications for a in store.alerts(first.incident.id)] == [3, 2]


def test_resolved_notification_resolves_alerts_but_keeps_incident_open(store: Store, fixture_payload) -> None:
    inc = store.record_alerts(fixture_payload("checkout_renotify.json")).incident
    out = store.record_alerts(fixture_payload("checkout_resolved.json"))
    assert out.incident.id == inc.id and not out.created
    assert sorted(out.resolved_alerts) == ["5f3c8e1a9b2d4c70", "a81e44c0d2f97b35"]
    assert store.get_incident(inc.id).status == "open"
    alerts = store.alerts(inc.id)
    assert [a.status for a in alerts] == ["resolved", "resolved"]
    assert all(a.resolved_at is not None and a.ends_at is not None for a in alerts)
    last = store.timeline(inc.id)[-1]
    assert last.kind == "alert_resolved"
    assert last.summary == "HighErrorRate (checkout): 2 alerts resolved; 0 still firing"
    assert last.actor == "alertmanager"


def test_truncated_alerts_are_noted_on_the_timeline(store: Store, make_payload) -> None:
    p = make_payload(alerts=[("a1", "firing")]).model_copy(update={"truncated_alerts": 7})
    inc = store.record_alerts(p).incident
    ev = store.timeline(inc.id)[-1]
    assert ev.summary.endswith("(7 more left out by Alertmanager's max_alerts)")
    assert ev.data["truncated_alerts"] == 7


def test_alert_that_fires_again_is_updated(store: Store, make_payload) -> None:
    inc = store.record_alerts(make_payload(alerts=[("a1", "firing")])).incident
    store.record_alerts(make_payload(status="resolved", alerts=[("a1", "resolved")]))
    out = store.record_alerts(make_payload(alerts=[("a1", "firing")]))
    assert out.incident.id == inc.id and out.updated_alerts == ["a1"]
    (a,) = store.alerts(inc.id)
    assert a.status == "firing" and a.resolved_at is None


def test_alerts_without_fingerprint_dedupe_by_labels(store: Store, make_payload) -> None:
    p = make_payload(alerts=[("", "firing")])
    first = store.record_alerts(p)
    again = store.record_alerts(p)
    assert again.incident.id == first.incident.id
    assert first.new_alerts == again.unchanged_alerts
    assert first.new_alerts[0].startswith("lh-")
    assert len(store.alerts(first.incident.id)) == 1


def test_group_that_fires_after_close_opens_a_new_incident(store: Store, make_payload) -> None:
    old = store.record_alerts(make_payload("{}:{g=\"a\"}")).incident
    store.close_incident(old.id, actor="alice", summary="rolled back")
    new = store.record_alerts(make_payload("{}:{g=\"a\"}"))
    assert new.created and new.incident.id != old.id
    assert store.get_incident(old.id).status == "closed"
    other = store.record_alerts(make_payload("{}:{g=\"b\"}"))
    assert other.created and other.incident.id not in (old.id, new.incident.id)
    assert [i.id for i in store.list_incidents(status="open")] == [other.incident.id, new.incident.id]


def test_late_resolution_lands_on_the_closed_incident(store: Store, make_payload) -> None:
    inc = store.record_alerts(make_payload(alerts=[("a1", "firing")])).incident
    store.close_incident(inc.id, actor="alice")
    out = store.record_alerts(make_payload(status="resolved", alerts=[("a1", "resolved")]))
    assert not out.created and out.incident.id == inc.id
    assert out.incident.status == "closed"
    assert store.count_incidents() == 1
    assert store.alerts(inc.id)[0].status == "resolved"


def test_raw_payload_is_kept(store: Store, fixture_payload) -> None:
    p = fixture_payload("checkout_firing.json")
    inc = store.record_alerts(p).incident
    store.record_alerts(fixture_payload("checkout_resolved.json"))
    raws = store.payloads(inc.id)
    assert raws[0] == p.raw
    assert [json.loads(r)["status"] for r in raws] == ["firing", "resolved"]


def test_payload_survives_a_failure_after_it_was_stored(store: Store, fixture_payload,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise RuntimeError("disk full")

    monkeypatch.setattr(Store, "_apply", boom)
    with pytest.raises(RuntimeError):
        store.record_alerts(fixture_payload("checkout_firing.json"))
    monkeypatch.undo()
    from sqlalchemy import select

    from incidentbook.incidents.models import PayloadRow

    with store._session(write=False) as s:  # the raw body and the error are both on record
        (row,) = s.scalars(select(PayloadRow)).all()
        assert json.loads(row.raw)["groupKey"].startswith("{}/{severity")
        assert row.error == "RuntimeError: disk full" and row.incident_id is None
    assert store.count_incidents() == 0


# ---------------------------------------------------------------- ids and concurrency


def test_ids_count_up_per_day(store: Store, make_payload) -> None:
    ids = [store.record_alerts(make_payload(f"{{}}:{{n=\"{i}\"}}")).incident.id for i in range(3)]
    nums = [int(ID_RE.match(i).group(2)) for i in ids]  # type: ignore[union-attr]
    assert nums == [1, 2, 3]


def test_concurrent_threads_get_unique_ids_and_one_incident_per_group(store: Store, make_payload) -> None:
    threads_n, per_thread = 6, 5
    barrier = threading.Barrier(threads_n)
    results: list[str] = []
    shared: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                inc = store.record_alerts(make_payload(f"{{}}:{{t=\"{t}\", i=\"{i}\"}}")).incident
                shared_inc = store.record_alerts(make_payload("{}:{shared=\"yes\"}", alerts=[(f"t{t}", "firing")])).incident
                with lock:
                    results.append(inc.id)
                    shared.append(shared_inc.id)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors
    assert len(results) == threads_n * per_thread == len(set(results))
    assert len(set(shared)) == 1  # every thread landed on the same open incident
    assert len(store.alerts(shared[0])) == threads_n
    all_ids = {i.id for i in store.list_incidents(limit=500)}
    assert len(all_ids) == threads_n * per_thread + 1
    nums = sorted(int(ID_RE.match(i).group(2)) for i in all_ids)  # type: ignore[union-attr]
    assert nums == list(range(1, len(all_ids) + 1))  # no gaps, no repeats


def test_concurrent_processes_get_unique_ids(store: Store, store_url: str, tmp_path: Path) -> None:
    workers, count = 4, 6
    go = tmp_path / "go"
    script = Path(__file__).with_name("ingest_worker.py")
    procs = [subprocess.Popen([sys.executable, str(script), store_url, str(go), str(w), str(count)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in range(workers)]
    try:
        for p in procs:  # wait until every worker has opened the store, then start them together
            assert p.stdout is not None
            line = p.stdout.readline()
            assert line.strip() == "ready", p.stderr.read() if p.stderr else ""
        go.touch()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    ids = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    own = [i for worker_ids in ids for i in worker_ids[: count // 2 + 1] + worker_ids[count // 2 + 2:]]
    shared = {worker_ids[count // 2 + 1] for worker_ids in ids}
    assert len(own) == workers * count == len(set(own))
    assert len(shared) == 1 and not shared & set(own)
    assert len(store.alerts(shared.pop())) == workers
    assert store.count_incidents() == workers * count + 1


# ---------------------------------------------------------------- reading


def test_unknown_incident_says_how_to_find_ids(store: Store) -> None:
    for call in (store.get_incident, store.alerts, store.timeline,
                 lambda i: store.add_event(i, "note", "x"), lambda i: store.close_incident(i, "bob")):
        with pytest.raises(NotFound, match=r"incidentbook incidents list"):
            call("INC-20000101-0001")
    with pytest.raises(NotFound, match="ids look like INC-"):
        store.get_incident("42")


def test_ids_are_case_insensitive(store: Store, make_payload) -> None:
    inc = store.record_alerts(make_payload()).incident
    assert store.get_incident(inc.id.lower()).id == inc.id


def test_list_filters_and_limits(store: Store, make_payload) -> None:
    ids = [store.record_alerts(make_payload(f"{{}}:{{n=\"{i}\"}}")).incident.id for i in range(4)]
    store.close_incident(ids[1], actor="bob")
    assert [i.id for i in store.list_incidents()] == ids[::-1]
    assert [i.id for i in store.list_incidents(status="closed")] == [ids[1]]
    assert [i.id for i in store.list_incidents(status="open", limit=2)] == [ids[3], ids[2]]
    with pytest.raises(BadInput, match="use open or closed"):
        store.list_incidents(status="resolved")


def test_to_dict_is_json_with_iso_timestamps(store: Store, fixture_payload) -> None:
    inc = store.record_alerts(fixture_payload("checkout_firing.json")).incident
    doc = json.loads(json.dumps(inc.to_dict()))
    assert doc["id"] == inc.id and doc["status"] == "open"
    assert datetime.fromisoformat(doc["created"]) == inc.created
    assert doc["closed_at"] is None and doc["bundle"] is None
    assert json.dumps([a.to_dict() for a in store.alerts(inc.id)])
    assert json.dumps([e.to_dict() for e in store.timeline(inc.id)])


# ---------------------------------------------------------------- changes


def test_add_event_is_committed_at_once(store: Store, store_url: str, make_payload) -> None:
    inc = store.record_alerts(make_payload()).incident
    ev = store.add_event(inc.id, "note", "Checked the dashboard", actor="alice", data={"panel": 3})
    other = Store(store_url)  # a second connection sees it without any flush/commit call
    try:
        last = other.timeline(inc.id)[-1]
    finally:
        other.close()
    assert last == ev
    assert (last.kind, last.actor, last.summary, last.data) == ("note", "alice", "Checked the dashboard", {"panel": 3})
    assert last.timestamp.tzinfo is not None


def test_add_event_rejects_bad_kind_and_data(store: Store, make_payload) -> None:
    inc = store.record_alerts(make_payload()).incident
    with pytest.raises(BadInput, match="lower_snake_case"):
        store.add_event(inc.id, "Runbook Failed", "x")
    with pytest.raises(BadInput, match="not JSON-serialisable"):
        store.add_event(inc.id, "note", "x", data={"when": datetime.now()})


def test_close_records_who_and_why(store: Store, make_payload) -> None:
    inc = store.record_alerts(make_payload()).incident
    closed = store.close_incident(inc.id, actor="alice", summary="Bad deploy rolled back",
                                  root_cause="checkout v2.3.1 leaked connections")
    assert closed.status == "closed" and closed.closed_by == "alice"
    assert closed.closed_at is not None and closed.closed_at >= inc.created
    assert closed.root_cause == "checkout v2.3.1 leaked connections"
    assert store.get_incident(inc.id) == closed
    ev = store.timeline(inc.id)[-1]
    assert (ev.kind, ev.actor, ev.summary) == ("closed", "alice", "Closed by alice: Bad deploy rolled back")
    with pytest.raises(BadInput, match=r"already closed \(by alice"):
        store.close_incident(inc.id, actor="bob")
    assert store.get_incident(inc.id).closed_by == "alice"


def test_runbook_run_success(store: Store, make_payload) -> None:
    inc = store.record_alerts(make_payload()).incident
    store.set_runbook(inc.id, "generic", "/tmp/x/notebook.ipynb")
    run_id = store.start_run(inc.id, "generic")
    mid = store.get_incident(inc.id)
    assert (mid.runbook, mid.runbook_status, mid.notebook) == ("generic", "running", "/tmp/x/notebook.ipynb")
    run = store.finish_run(run_id, "succeeded")
    assert run.status == "succeeded" and run.finished is not None
    done = store.get_incident(inc.id)
    assert done.runbook_status == "succeeded" and done.runbook_error is None
    assert kinds(store, inc.id)[-2:] == ["runbook_started", "runbook_finished"]
    with pytest.raises(BadInput, match="already finished"):
        store.finish_run(run_id, "failed")


def test_runbook_run_failure_keeps_the_error(store: Store, make_payload) -> None:
    inc = store.record_alerts(make_payload()).incident
    run_id = store.start_run(inc.id, "generic")
    store.finish_run(run_id, "failed", cell_index=4, ename="ZeroDivisionError", evalue="division by zero")
    failed = store.get_incident(inc.id)
    assert failed.runbook_status == "failed"
    assert failed.runbook_error == {"cell_index": 4, "ename": "ZeroDivisionError", "evalue": "division by zero"}
    ev = store.timeline(inc.id)[-1]
    assert ev.kind == "runbook_failed"
    assert ev.summary == "Runbook generic failed in cell 4: ZeroDivisionError: division by zero"
    assert [r.status for r in store.runs(inc.id)] == ["failed"]
    # A rerun clears the error once it succeeds.
    store.finish_run(store.start_run(inc.id, "generic"), "succeeded")
    assert store.get_incident(inc.id).runbook_error is None
    with pytest.raises(BadInput, match="use succeeded or failed"):
        store.finish_run(run_id, "timeout")
    with pytest.raises(NotFound):
        store.finish_run(99999, "failed")


def test_set_bundle(store: Store, make_payload) -> None:
    inc = store.record_alerts(make_payload()).incident
    assert store.set_bundle(inc.id, "/data/bundles/x").bundle == "/data/bundles/x"
    assert store.get_incident(inc.id).bundle == "/data/bundles/x"


def test_timeline_kinds_cover_the_whole_loop(store: Store, fixture_payload) -> None:
    inc = store.record_alerts(fixture_payload("checkout_firing.json")).incident
    store.record_alerts(fixture_payload("checkout_renotify.json"))
    store.finish_run(store.start_run(inc.id, "generic"), "succeeded")
    store.add_event(inc.id, "proposal_approved", "Ran proposal p-1", actor="alice", data={"proposal": "p-1"})
    store.record_alerts(fixture_payload("checkout_resolved.json"))
    store.close_incident(inc.id, actor="alice")
    seen = Counter(kinds(store, inc.id))
    assert seen == Counter({"incident_opened": 1, "alert_received": 2, "runbook_started": 1,
                            "runbook_finished": 1, "proposal_approved": 1, "alert_resolved": 1, "closed": 1})
    times = [e.timestamp for e in store.timeline(inc.id)]
    assert times == sorted(times)


def test_from_config_creates_home(tmp_path: Path, make_payload) -> None:
    cfg = Config(home=tmp_path / "deep" / "home")
    with Store.from_config(cfg) as store:
        store.record_alerts(make_payload())
    assert (tmp_path / "deep" / "home" / "incidentbook.db").is_file()
