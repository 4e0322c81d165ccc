"""`incidentbook signals` and `[signals.*]` validation, as a user runs them (in-process CLI)."""

from __future__ import annotations

import json

import pytest

from incidentbook.cli import main
from tests.support.dialects import Svc, build, step


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("sig") / "bundle"
    build({"authn": Svc("micrometer", err=step(0.002, 0.3, 70)), "gateway": Svc("envoy"),
           "router": Svc("none")}, {"gateway": ["authn", "router"]}, bundle_dir=out)
    return out


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INCIDENTBOOK_HOME", str(tmp_path))
    return tmp_path


def test_signals_json_says_which_dialect_and_what_is_missing(bundle, home, capsys):
    assert main(["signals", "--bundle", str(bundle), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    by = {s["service"]: s for s in doc["services"]}
    assert by["authn"]["signals"]["error_ratio"]["dialect"] == "micrometer"
    assert by["gateway"]["signals"]["latency_p95"]["dialect"] == "envoy"
    assert by["router"]["signals"] == {} or "error_ratio" not in by["router"]["signals"]
    assert doc["coverage"]["no_red"] == ["router"]
    assert doc["note"] == "no readable error or latency signal for: router - add a mapping (docs/signals.md)"


def test_signals_table_for_one_service(bundle, home, capsys):
    assert main(["signals", "--bundle", str(bundle), "--service", "authn"]) == 0
    out = capsys.readouterr().out
    assert "micrometer:http_server_requests_seconds_count" in out and "router" not in out


def test_unknown_service_is_bad_input(bundle, home, capsys):
    assert main(["signals", "--bundle", str(bundle), "--service", "nope"]) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("incidentbook:")]
    assert len(err) == 1 and "--service 'nope'" in err[0] and "known:" in err[0]


BAD = """
[signals.legacy]
match = "legacy_tx_total"
errors = "rate(legacy_tx_total[2m])"
"""


def test_an_invalid_mapping_fails_config_load_naming_the_field(bundle, home, capsys):
    (home / "incidentbook.toml").write_text(BAD)
    assert main(["signals", "--bundle", str(bundle), "--check"]) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("incidentbook:")]
    assert len(err) == 1 and "[signals.legacy] errors" in err[0] and "$sel" in err[0], err


def test_a_typo_in_a_mapping_key_is_named(bundle, home, capsys):
    (home / "incidentbook.toml").write_text('[signals.legacy]\nmatch = "x"\nlatency_p59 = "x"\n')
    assert main(["signals", "--bundle", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert "signals.legacy.latency_p59" in err and "Traceback" not in err


def test_check_reports_a_mapping_that_applies_to_no_service(bundle, home, capsys):
    (home / "incidentbook.toml").write_text(
        '[signals.legacy]\nmatch = "legacy_tx_total"\n'
        "requests = 'sum by ($by) (rate(legacy_tx_total{$sel}[2m]))'\n")
    assert main(["signals", "--bundle", str(bundle), "--check", "--json"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["check"]["ok"] is False
    assert doc["check"]["problems"][0].startswith("[signals.legacy]: applies to no service")


def test_check_passes_for_a_mapping_that_reads_data(bundle, home, capsys):
    (home / "incidentbook.toml").write_text(
        '[signals.mine]\nservices = ["router"]\nservice_label = "job"\n'
        "requests = 'sum by ($by) (up{$sel})'\n")
    assert main(["signals", "--bundle", str(bundle), "--check"]) == 0
    out = capsys.readouterr().out
    assert "every [signals.*] mapping applies" in out


def test_help_explains(capsys):
    with pytest.raises(SystemExit):
        main(["signals", "--help"])
    out = capsys.readouterr().out
    assert "--check" in out and "docs/signals.md" in out
