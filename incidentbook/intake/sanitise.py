"""Bounds every webhook body must respect before it is stored.

A body is parsed once with the standard `json` module (a nesting deep enough to exhaust Python's
recursion is caught and reported, never a 500) and then walked iteratively: nesting depth, keys
per object, items per array, key and string lengths, and characters no store can hold (NUL,
lone surrogates from `\\ud800`-style escapes) are checked. The first violation raises
`InvalidPayload` naming the field (`alerts[0].labels.service`) and the fix, so SQLite and
PostgreSQL see exactly the same accepted text. The one normalisation: an annotation longer than
MAX_STRING_CHARS is cut and says so (annotations are prose; labels are identity and are refused).
"""

from __future__ import annotations

import json
from typing import Any

from incidentbook.errors import InvalidPayload

#: An Alertmanager body is 4 levels deep; PagerDuty's about 6. Anything past this is not an alert.
MAX_DEPTH = 32
#: Keys in one object (labels of one alert, say) and items in one array (alerts of one group).
MAX_KEYS = 1_000
MAX_ITEMS = 10_000
#: Longest key (label name) and longest string value (a label value or an annotation).
MAX_KEY_CHARS = 1_024
MAX_STRING_CHARS = 64 * 1024

__all__ = ["MAX_DEPTH", "MAX_ITEMS", "MAX_KEYS", "MAX_KEY_CHARS", "MAX_STRING_CHARS", "check_text", "load_bounded"]


def _where(path: list[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "payload"


def _bad_char(s: str) -> str | None:
    if "\x00" in s:
        return "a NUL character (\\u0000)"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"a lone surrogate (\\u{ord(s[e.start]):04x})"
    return None


def check_text(value: str, where: str, limit: int = MAX_STRING_CHARS) -> None:
    """Raise InvalidPayload if `value` holds NUL, a lone surrogate or more than `limit` characters."""
    bad = _bad_char(value)
    if bad:
        raise InvalidPayload(f"`{where}` contains {bad}, which the incident store cannot hold; "
                             "remove it from the alert's labels or annotations")
    if len(value) > limit:
        raise InvalidPayload(f"`{where}` is {len(value):,} characters, over the {limit:,} limit; "
                             "shorten the label or annotation")


def _truncate(value: str) -> str:
    cut = len(value) - MAX_STRING_CHARS
    return value[:MAX_STRING_CHARS] + f" … [{cut:,} more characters cut by incidentbook]"


def _check(doc: Any) -> None:
    if isinstance(doc, str):
        check_text(doc, "payload")
        return
    stack: list[tuple[Any, list[str | int]]] = [(doc, [])]
    while stack:
        value, path = stack.pop()
        if len(path) >= MAX_DEPTH:
            raise InvalidPayload(f"`{_where(path)}` is nested more than {MAX_DEPTH} levels deep; "
                                 "send a flat alert body")
        # Annotations are prose (descriptions, log excerpts): an over-long one is cut, saying so.
        # Everything else (labels are identity) is refused when over-long.
        prose = bool(path) and isinstance(path[-1], str) and path[-1].lower().endswith("annotations")
        if isinstance(value, dict):
            if len(value) > MAX_KEYS:
                raise InvalidPayload(f"`{_where(path)}` has {len(value):,} keys, over the {MAX_KEYS:,} limit; "
                                     "send fewer labels")
            for k, v in value.items():
                check_text(k, _where([*path, "<key>"]) if _bad_char(k) else _where([*path, k[:40]]),
                           MAX_KEY_CHARS)
                if isinstance(v, str):
                    if prose and len(v) > MAX_STRING_CHARS and not _bad_char(v):
                        value[k] = _truncate(v)
                    else:
                        check_text(v, _where([*path, k]))
                elif isinstance(v, (dict, list)):
                    stack.append((v, [*path, k]))
        elif isinstance(value, list):
            if len(value) > MAX_ITEMS:
                raise InvalidPayload(f"`{_where(path)}` has {len(value):,} items, over the {MAX_ITEMS:,} limit; "
                                     "lower `max_alerts` in Alertmanager's webhook_config")
            for i, v in enumerate(value):
                if isinstance(v, str):
                    check_text(v, _where([*path, i]))
                elif isinstance(v, (dict, list)):
                    stack.append((v, [*path, i]))


def load_bounded(text: str, fix: str) -> Any:
    """`json.loads(text)` within the bounds above; InvalidPayload (one line, naming the field) if not.

    `fix` ends the message for a body that is not JSON at all.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidPayload(
            f"payload is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}; {fix}") from None
    except RecursionError:
        # The C scanner recurses once per nesting level; a 100k-deep body exhausts the stack.
        raise InvalidPayload(f"payload is nested more than {MAX_DEPTH} levels deep; send a flat alert body") from None
    _check(doc)
    return doc
