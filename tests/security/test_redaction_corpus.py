"""The planted-secret corpus through the redactor: every shape, in every context, is hidden
and the words around it are kept."""

from __future__ import annotations

import base64
import json
import urllib.parse

import nbformat
import pytest

from incidentbook.redact import Redactor, redact_notebook
from tests.security.secrets_corpus import KEEP, SHAPES, Shape, contexts_for

CASES = [(shape, ctx, text) for shape in SHAPES for ctx, text in contexts_for(shape).items()]


def _parts(shape: Shape) -> list[str]:
    """The value, and each body line of a multi-line one (a leaked line is a leak)."""
    lines = [p for p in shape.value.replace("\\n", "\n").split("\n") if p and "-----" not in p]
    return [shape.value, *lines]


@pytest.mark.parametrize(("shape", "ctx", "text"), CASES, ids=[f"{s.name}-{c}" for s, c, _ in CASES])
def test_each_shape_is_hidden_in_each_context(shape: Shape, ctx: str, text: str) -> None:
    out = Redactor().redact(text)
    for part in _parts(shape):
        assert part not in out, f"{shape.name} survived in {ctx}: {out!r}"
    assert KEEP in out, f"the surrounding text was lost: {out!r}"
    assert "[" in out and "]" in out  # replaced by a pseudonym, not deleted


@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_secrets_only_mode_hides_the_same_shapes(shape: Shape) -> None:
    """The local sinks' redactor (emails and IPs kept) still hides every secret."""
    text = f"from 10.2.3.4 ops@shop.example: {shape.text()}"
    out = Redactor(personal=False).redact(text)
    assert all(p not in out for p in _parts(shape)), out
    assert out.startswith("from 10.2.3.4 ops@shop.example: ")


def test_a_value_seen_once_is_hidden_everywhere_after(monkeypatch: pytest.MonkeyPatch) -> None:
    r = Redactor(known={})
    first = r.redact("DB_PASSWORD=Db-pass-4-orders")
    later = r.redact("login with Db-pass-4-orders failed")  # no context says it is a password now
    pseudo = first.split("=", 1)[1]
    assert later == f"login with {pseudo} failed"


def test_known_values_are_hidden_whatever_their_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret the process holds in its environment is hidden by value, also encoded."""
    value = "plain words are the secret 42"
    monkeypatch.setenv("VENDOR_API_TOKEN", value)
    monkeypatch.setenv("INCIDENTBOOK_TOKEN", "intake-token-value-0007")
    r = Redactor()
    text = (f"echo {value} | curl ... q={urllib.parse.quote(value)} "
            f"k8s data: {base64.b64encode(value.encode()).decode()} hdr intake-token-value-0007 " + KEEP)
    out = r.redact(text)
    assert value not in out and urllib.parse.quote(value) not in out
    assert base64.b64encode(value.encode()).decode() not in out and "intake-token-value-0007" not in out
    assert KEEP in out


def test_harmless_text_is_left_alone() -> None:
    """What an on-call engineer needs stays readable: ids, hashes, versions, ordinary words."""
    text = ("trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7 "
            "image=registry.example/shop/orders@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 "
            "commit=1e5c3f9a7b2d4e6f8a0c1b3d5e7f9a1b3c5d7e9f version=3.16.0 "
            "token validation failed, password reset requested, Basic authentication required, "
            "pod orders-7f9c-x2x9z OOMKilled, request_id=7c1a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8")
    assert Redactor(personal=False).redact(text) == text


def test_placeholders_are_not_secrets() -> None:
    text = "DB_PASSWORD=$DB_PASSWORD password: ******** token=<redacted> api_key=${API_KEY} secret: true"
    assert Redactor().redact(text) == text


def test_private_key_split_over_notebook_lines_is_hidden() -> None:
    """nbformat stores text as lists of lines; the BEGIN and END markers must still meet."""
    key = SHAPES[0].value
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(open('id_rsa').read())")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"{KEEP}\n{key}\n"),
                    nbformat.v4.new_output("execute_result", data={"text/plain": key, "text/html": f"<pre>{key}</pre>",
                                                                    "application/json": {"k": key}}),
                    nbformat.v4.new_output("error", ename="ValueError", evalue=f"bad key {key}",
                                           traceback=["Traceback", *key.split("\n"), KEEP])]
    nb.cells = [cell, nbformat.v4.new_markdown_cell(f"notes\n{key}\nend")]
    # as stored on disk: every multi-line string is a list of lines
    doc = json.loads(nbformat.writes(nb))
    assert isinstance(doc["cells"][0]["outputs"][0]["text"], list)
    out = redact_notebook(doc, Redactor(personal=False))
    written = nbformat.writes(out)
    for part in _parts(SHAPES[0]):
        assert part not in written
    assert KEEP in written and "[PRIVATE-KEY-1]" in written
    nbformat.validate(nbformat.reads(written, as_version=4))


def test_colour_codes_do_not_split_a_secret_in_a_traceback() -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("connect()")
    cell.outputs = [nbformat.v4.new_output(
        "error", ename="OperationalError", evalue="auth failed",
        traceback=["\x1b[0;31mOperationalError\x1b[0m: DB_PASSWORD=\x1b[1mDb-pass-4-orders\x1b[0m rejected"])]
    nb.cells = [cell]
    out = nbformat.writes(redact_notebook(nb, Redactor(personal=False)))
    assert "Db-pass-4-orders" not in out and "rejected" in out


def test_the_name_of_a_header_variable_is_not_a_secret():
    """`headers_env = {Authorization = "PROM_AUTH"}` names where the value lives; the runbook's
    recorded parameters must keep the name, while a real header value is still hidden."""
    from incidentbook.redact import Redactor

    r = Redactor(personal=False, known={})
    assert r.redact('{"Authorization": "PROM_AUTH"}') == '{"Authorization": "PROM_AUTH"}'
    assert "s3cr3t-header-value" not in r.redact('{"Authorization": "s3cr3t-header-value"}')
    assert "abcdEFGH1234xyz" not in r.redact("Authorization: Bearer abcdEFGH1234xyz")
