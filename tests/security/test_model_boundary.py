"""The model boundary: a pseudonym the model sends back is restored for the query, and the
restored value never comes back to it (or into the notebook) in a result or an error text.

The tools run over a replayed bundle (the PromQL/LogQL replay engines), whose error texts quote
the query the way Prometheus and Loki do.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from incidentbook.agent.tools import ToolBox
from incidentbook.evals.runner import context_from_bundle
from incidentbook.redact import Redactor
from tests.agent.test_claude import SECRETS, planted_bundle  # noqa: F401 - the session fixture
from tests.agent.test_claude import hypothesis_input as hypothesis_input_for


def _box(bundle: Path, redactor: Redactor | None = None) -> ToolBox:
    return ToolBox(context_from_bundle(bundle), redactor or Redactor(), 2000)


def _pseudonym(box: ToolBox, logql: str, label: str) -> str:
    text = box.run(f"find-{label}", "query_logs", {"logql": logql}).text
    return re.search(rf"\[{label}-\d+\]", text).group(0)


def _leaks(box: ToolBox, texts: list[str], secret: str) -> list[str]:
    pieces = [secret, *(p for p in re.split(r"[^A-Za-z0-9]+", secret) if len(p) >= 6)]
    everything = "\n".join(texts + box.errors + [c.query for c in box.calls.values()])
    return [p for p in pieces if p in everything]


def test_a_password_sent_back_as_a_logql_selector_is_not_echoed(planted_bundle: Path) -> None:  # noqa: F811
    box = _box(planted_bundle)
    pw = _pseudonym(box, '{service="auth"} |= "password"', "PASSWORD")
    outs = [box.run(f"q{i}", "query_logs", {"logql": q}).text
            for i, q in enumerate([pw, f'{{service="{pw}"}}', f'{{service="auth"}} |= "{pw}" |~ "(("'])]
    assert "function" in outs[0] and pw in outs[0]  # the error reached the model, as a pseudonym
    assert not _leaks(box, outs, SECRETS["password"])


def test_a_bearer_token_in_a_bad_promql_is_not_echoed(planted_bundle: Path) -> None:  # noqa: F811
    box = _box(planted_bundle)
    tok = _pseudonym(box, '{service="auth"} |= "Bearer"', "TOKEN")
    out = box.run("p1", "query_metrics", {"promql": f'up{{authorization="Bearer {tok}"'})
    assert out.is_error and "bad PromQL" in out.text and tok in out.text
    assert not _leaks(box, [out.text], SECRETS["bearer"])


def test_a_short_secret_is_hidden_again_too(planted_bundle: Path) -> None:  # noqa: F811
    """Values too short to hide by value everywhere are still hidden in what their query produced."""
    r = Redactor(known={})
    pseudo = re.search(r"\[PASSWORD-\d+\]", r.redact("password=pw12")).group(0)
    box = _box(planted_bundle, r)
    out = box.run("s1", "query_logs", {"logql": pseudo})
    assert out.is_error and "pw12" not in out.text and "pw12" not in json.dumps(box.errors)


def test_hypotheses_and_proposals_keep_secrets_as_pseudonyms(planted_bundle: Path) -> None:  # noqa: F811
    """What people read and notebooks keep gets personal data back, never a secret."""
    box = _box(planted_bundle)
    pw = _pseudonym(box, '{service="auth"} |= "password"', "PASSWORD")
    email = _pseudonym(box, '{service="auth"} |= "login failed"', "EMAIL")
    box.run("h1", "record_hypothesis", hypothesis_input_for(
        "find-PASSWORD", statement=f"auth rejects {email}: the db password {pw} was rotated"))
    box.run("c1", "propose_cell", {"title": "check the db login", "hypothesis_id": box.hypotheses[0].id,
                                   "rationale": "confirm", "code": f"%logql {{service=\"auth\"}} |= \"{pw}\""})
    shown = json.dumps([h.statement for h in box.hypotheses] + [p.code for p in box.proposals])
    assert SECRETS["email"] in shown and pw in shown
    assert SECRETS["password"] not in shown


def test_a_forged_pseudonym_restores_nothing(planted_bundle: Path) -> None:  # noqa: F811
    box = _box(planted_bundle)
    out = box.run("f1", "query_logs", {"logql": '{service="auth"} |= "[SECRET-99]"'})
    assert "[SECRET-99]" in out.text and not out.is_error
