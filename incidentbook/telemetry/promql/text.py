"""Scanning PromQL text before it is parsed: the characters that are code, not string literals."""

from __future__ import annotations

from collections.abc import Iterator


def code_chars(text: str, start: int = 0, end: int | None = None) -> Iterator[tuple[int, str]]:
    """(index, character) of each character of `text[start:end]` outside string literals
    ("…", '…' with backslash escapes, `…` raw); the quotes themselves are not yielded."""
    stop = len(text) if end is None else end
    quote = ""
    i = start
    while i < stop:
        ch = text[i]
        if quote:
            if ch == "\\" and quote != "`":
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"'`":
            quote = ch
        else:
            yield i, ch
        i += 1
