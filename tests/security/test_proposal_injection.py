"""Red team: telemetry text that tries to become code in a proposal cell.

Each case either yields a cell whose code is exactly the intended call (the hostile text stays
inside a string literal) or a one-line refusal naming the field. Classification is checked on
the AST: anything reaching ib.act, os, subprocess, sockets or file writes is not a read.
"""

from __future__ import annotations

import ast

import pytest

from incidentbook.errors import BadInput
from incidentbook.proposals import (
    classify,
    comment_line,
    magic_line,
    proposal_header,
    proposal_source,
    python_call,
    write_reasons,
)

HOSTILE = [
    'v2.3" + str(__import__("pathlib").Path("/tmp/pwned").write_text("x")) + "',
    "v2.3'\nimport os; os.system('id')\n'",
    "line\r\nib.act.scale('payments', 0)",
    "nul\x00byte",
    "lone \ud800 surrogate",
    "rtl \u202e override \u2028 line separator \x85 next line",
    "{__import__('os').system('id')} $HOME",
    "x" * 5000,
]


def _only_call(code: str) -> ast.Call:
    tree = ast.parse(code)
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr)
    call = tree.body[0].value
    assert isinstance(call, ast.Call)
    return call


@pytest.mark.parametrize("desc", HOSTILE[:-1])
def test_a_hostile_deploy_description_stays_a_string(desc: str) -> None:
    code = python_call("ib.act.rollout_undo", "checkout", namespace="shop", reason=f"5xx began after {desc}")
    call = _only_call(code)
    assert ast.unparse(call.func) == "ib.act.rollout_undo"
    kw = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    assert kw == {"namespace": "shop", "reason": f"5xx began after {desc}"}
    assert "\n" not in code  # nothing can start a second statement


def test_huge_values_are_refused_with_the_field() -> None:
    with pytest.raises(BadInput, match="reason= of ib.act.rollout_undo is 5016 characters"):
        python_call("ib.act.rollout_undo", "checkout", reason="after " + HOSTILE[-1] + "0123456789")


@pytest.mark.parametrize("service", ['check"out', "checkout\n%logql {}", "checkout}\nimport os", "a{b}",
                                     "$(whoami)", "nul\x00", "\ud800", "sep\u2028x", ""])
def test_a_hostile_service_label_is_refused_in_a_query(service: str) -> None:
    with pytest.raises(BadInput, match="service .* (holds|is empty)"):
        magic_line("promql", "sum(rate(http_requests_total{{service={service}}}[5m]))", service=service)


def test_a_plain_service_label_builds_the_query() -> None:
    line = magic_line("promql", 'sum(rate(x{{service={service},code=~"5.."}}[5m])) -r 30m', service="check-out.v2")
    assert line == '%promql sum(rate(x{service="check-out.v2",code=~"5.."}[5m])) -r 30m'
    assert classify(line) == "read"


@pytest.mark.parametrize("text", HOSTILE)
def test_comments_and_headers_stay_one_line(text: str) -> None:
    c = comment_line(text)
    assert c.startswith("# ") and len(c.splitlines()) == 1
    ast.parse(c)  # no NUL, no stray line: still valid Python
    src = proposal_source({"id": "P1", "title": text, "code": "%promql up"})
    assert src.splitlines()[1:] == ["%promql up"]


def test_a_proposal_id_cannot_carry_code() -> None:
    with pytest.raises(BadInput, match="not a plain id"):
        proposal_header("P1\nimport os", "x")


@pytest.mark.parametrize("code", [
    "import os as o; o.system('id')",
    "from incidentbook import actions; actions.scale('payments', 0)",
    "from incidentbook.actions import scale as s; s('payments', 0)",
    "import incidentbook.actions.guard",
    "x = ib; x.act.restart('payments')",
    "s = ib\ns.session.store.close()",
    "[v for v in [ib]][0].session",
    "getattr(ib, 'a' + 'ct').restart('payments')",
    "ib.session.store.add_event('INC-1', 'note', 'x')",
    "__import__('subprocess').run(['kubectl', 'delete', 'ns', 'shop'])",
    "eval('1')",
    "exec('import os')",
    "open('/etc/cron.d/x', 'w').write('x')",
    "open('/tmp/x', mode='a')",
    "pd.DataFrame().to_csv('x'); Path('x').write_text('y')",
    "socket.create_connection(('10.0.0.1', 22))",
    "().__class__.__base__.__subclasses__()",
    "!kubectl scale deploy/payments --replicas=0",
    "%approve ACT-1",
    "%close --summary done",
    "%%bash\nrm -rf /",
    "get_ipython().system('id')",
    "def f():\n    global ib\n",
    "import kubernetes",
    "import requests; requests.post('http://x')",
])
def test_writes_in_disguise_are_not_reads(code: str) -> None:
    assert classify(code) == "write", write_reasons(code)


@pytest.mark.parametrize("code", [
    '%promql sum(rate(http_requests_total{service="checkout"}[5m])) -r 30m',
    '%logql {service="checkout"} |~ "(?i)timeout" --limit 30',
    "%k8s pods",
    "%changes --service checkout",
    "import pandas as pd\ndf = pd.DataFrame({'a': [1]})\ndf.describe()",
    "open('notes.txt').read()",
    "ib.investigate('why')",
])
def test_reads_stay_reads(code: str) -> None:
    assert classify(code) == "read", write_reasons(code)


def test_invalid_python_is_not_a_read() -> None:
    assert classify("ib.act.scale(") == "write"


def test_the_kernel_reclassifies_a_write_proposed_as_a_read(shell_session: object) -> None:
    s = shell_session
    pid = s.propose({"code": "import os as o\no.system('kubectl delete ns shop')", "kind": "read",  # type: ignore[attr-defined]
                     "title": "harmless"}, show=False)
    assert s.proposals[pid]["kind"] == "write"  # type: ignore[attr-defined]


@pytest.fixture
def shell_session() -> object:
    from IPython.core.interactiveshell import InteractiveShell

    from incidentbook.kernel_ext.session import Session

    return Session(InteractiveShell.instance(), headless=True)
