"""Hostile text in a postmortem never becomes Confluence markup, and CQL strings stay strings."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import nbformat
import pytest

from incidentbook.postmortems.history import cql_for, cql_quote
from incidentbook.postmortems.storage import (
    action_items,
    build_page,
    code_block,
    label_of,
    well_formed,
)

MACRO = ('<ac:structured-macro ac:name="html"><ac:plain-text-body><![CDATA[<script>alert(1)</script>]]>'
         "</ac:plain-text-body></ac:structured-macro>")
AC = "http://atlassian.com/content"
HOSTILE = [MACRO, "]]>", "a\x00b", "lone \ud800 surrogate", "rtl \u202e override", "&amp; &nbsp; &#0; &bogus;",
           "<![CDATA[ x", "<p>unclosed", "{{ title }} ${jndi:ldap://x}", "😀 Ünïcödé 中文", "x" * 200_000]


def _notebook(text: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# Postmortem: {text}\n\n## Summary\n\n{text}"),
                nbformat.v4.new_markdown_cell(f"## Action items\n\n| Action | Owner | Due | Status |\n|---|---|---|---|\n"
                                              f"| fix {text[:300]} | bob | 2026-12-24 | done |",
                                              metadata={"incidentbook": {"section": "action_items"}}),
                nbformat.v4.new_code_cell(f"print({text[:300]!r})")]
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text=text[:5000])]
    return nb


@pytest.mark.parametrize("text", HOSTILE, ids=lambda t: repr(t[:20]))
def test_hostile_text_is_escaped_into_well_formed_storage_format(text: str) -> None:
    meta = {"id": "INC-1", "title": text[:300], "services": [text[:50]], "severity": "critical",
            "root_cause": {"kind": "bad_deploy"}}
    page = build_page(meta, _notebook(text), "2026/INC-1/postmortem.html")
    assert well_formed(page.body)
    assert not page.notes, page.notes  # rendered as intended, not the plain-text fallback
    root = ET.fromstring('<!DOCTYPE r [<!ENTITY nbsp "&#160;">]><r xmlns:ac="http://atlassian.com/content" '
                         f'xmlns:ri="http://atlassian.com/resource/identifier">{page.body}</r>')
    macros = {m.get(f"{{{AC}}}name") for m in root.iter(f"{{{AC}}}structured-macro")}
    assert macros <= {"code"}, macros  # only our code blocks; typed markup stays text
    assert not [e for e in root.iter() if e.tag in ("script", "iframe", "style")]
    assert "\x00" not in page.body and "\ud800" not in page.body and "\x00" not in page.title
    assert all(label and " " not in label and label == label.lower() for label in page.labels)
    assert "<ac:task-status>complete</ac:task-status>" in page.body


def test_cdata_terminator_inside_code_is_split_not_closed() -> None:
    block = code_block("a ]]> <b>bold</b> ]]>")
    assert well_formed(block) and block.count("<ac:plain-text-body>") == 1
    assert "<b>" in block  # inside CDATA: shown verbatim, not parsed


def test_action_items_parse_rows_only() -> None:
    items = action_items("| Action | Owner | Due | Status |\n|---|---|---|---|\n| a \\| b | _owner_ | 2026-01-01 | open |\n"
                         "| c | ann | | done |\nnot a row")
    assert items == [("a | b (owner: owner, due 2026-01-01)", False), ("c (owner: ann)", True)]


def test_labels_are_confluence_labels() -> None:
    assert label_of("Cart Service/<x>") == "cart-service-x"
    assert label_of("\x00") == ""


@pytest.mark.parametrize("query", ['catalog" or space != "OPS', "a\\\" b", "x\nspace = OTHER", "\x00\ud800"])
def test_cql_values_cannot_break_out_of_their_string(query: str) -> None:
    cql = cql_for("OPS", query)
    assert cql is None or cql.startswith('space = "OPS" and type = page and (')
    if cql:
        inner = cql[len('space = "OPS" and type = page and ('):].rsplit(")", 1)[0]
        # every term is text ~ "…" with its quotes escaped: stripping escaped quotes leaves no bare `"` pairs
        for term in inner.split(" and "):
            assert term.startswith('text ~ "') and term.endswith('"')
            assert '"' not in term[len('text ~ "'):-1].replace('\\"', "")
    assert cql_quote('a"b\\c') == '"a\\"b\\\\c"'
