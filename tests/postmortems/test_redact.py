"""The shared redactor: what it hides, what it keeps, and that it can put things back."""

from __future__ import annotations

import json
import stat

import pytest

from incidentbook.errors import ConfigError
from incidentbook.redact import RedactionConfig, Redactor, load_policy

TEXT = """GET https://admin:hunter2@db.internal/x?password=s3cr3t&user=bob from 10.1.2.3
Authorization: Bearer abcdefgh.ijklmnop.qrs  key AKIAIOSFODNN7EXAMPLE
aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY mail ops@shop.example api_key: k-123456
{"password": "pw1"} ghp_0123456789abcdefghijABCDEFGHIJ012345
-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAA
-----END OPENSSH PRIVATE KEY-----
GET /cart 200 12ms from 127.0.0.1 version 1.2.3"""
SECRETS = ["hunter2", "s3cr3t", "10.1.2.3", "abcdefgh.ijklmnop.qrs", "AKIAIOSFODNN7EXAMPLE",
           "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "ops@shop.example", "k-123456", "pw1",
           "ghp_0123456789abcdefghijABCDEFGHIJ012345", "b3BlbnNzaC1rZXktdjEAAAAA"]


def test_hides_every_kind_and_restores_them():
    r = Redactor()
    out = r.redact(TEXT)
    for s in SECRETS:
        assert s not in out, s
    # harmless text, loopback addresses and version numbers survive
    assert "GET /cart 200 12ms from 127.0.0.1 version 1.2.3" in out
    assert "user=bob" in out
    assert r.restore(out) == TEXT
    assert r.redact(out) == out  # idempotent: pseudonyms are not redacted again
    report = r.report()
    assert report["total"] == len(SECRETS)
    assert "hunter2" not in json.dumps(report)


def test_same_value_same_pseudonym():
    r = Redactor()
    a, b = r.redact("client 192.168.7.9 failed"), r.redact("retry from 192.168.7.9 and 192.168.7.10")
    assert a == "client [IP-1] failed"
    assert b == "retry from [IP-1] and [IP-2]"


def test_policy_file_allowlist_custom_pattern_and_disable(tmp_path):
    policy = tmp_path / "redaction.toml"
    policy.write_text('ips = false\nallowlist = ["noreply@shop\\\\.example"]\n'
                      '[[patterns]]\nname = "customer_id"\nregex = "cust_[0-9]{6}"\nsecret = false\n')
    r = Redactor(config=load_policy(policy))
    out = r.redact("cust_123456 from 10.0.0.7 mailed noreply@shop.example and bob@shop.example")
    assert out == "[CUSTOMER-ID-1] from 10.0.0.7 mailed noreply@shop.example and [EMAIL-1]"
    with pytest.raises(ConfigError, match="unknown rule"):
        Redactor(config=RedactionConfig(disable=["nope"]))
    policy.write_text('colour = "red"\n')
    with pytest.raises(ConfigError, match="colour"):
        load_policy(policy)


def test_mapping_file_keeps_personal_data_never_secrets(tmp_path):
    r = Redactor.for_home(tmp_path)
    out = r.redact("ops@shop.example used password=letmein123")
    r.save()
    mapping = tmp_path / "redaction" / "pseudonyms.json"
    text = mapping.read_text()
    assert "ops@shop.example" in text and "letmein123" not in text
    assert stat.S_IMODE(mapping.stat().st_mode) == 0o600
    again = Redactor.for_home(tmp_path)  # a later run: same pseudonym, and it restores
    assert again.redact("ops@shop.example") == "[EMAIL-1]"
    assert again.restore(out) == "ops@shop.example used password=[PASSWORD-1]"
