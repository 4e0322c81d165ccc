"""Duration arithmetic in range brackets and after `offset` (Prometheus 3.x `promql-duration-expr`).

Prometheus with `--enable-feature=promql-duration-expr` accepts `x[5m+1m]`, `x[1h:2*30s]`,
`x offset (1m*2)`, and `step()`, `range()`, `min_of(a, b)`, `max_of(a, b)` inside them. The parser
replay uses does not, so before parsing each such expression is worked out, in seconds as
Prometheus does (a bare number is seconds), and written back as a plain millisecond duration.
Only brackets and offsets are touched; string literals and label matchers are left alone.
"""

from __future__ import annotations

import math
import re

from incidentbook.errors import BadInput
from incidentbook.telemetry.promql.text import code_chars

FEATURE = "promql-duration-expr"

_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
# A bracket part or offset Prometheus's plain grammar already takes: leave it as written.
_PLAIN = re.compile(r"\s*(?:-?\d+(?:\.\d+)?|(?:\d+(?:ms|s|m|h|d|w|y))+)?\s*")
_TOKEN = re.compile(r"\s*(?:(?P<dur>(?:\d+(?:ms|s|m|h|d|w|y))+)(?![A-Za-z0-9_])|(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
                    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[-+*/%^(),]))")
_FUNCS = {"step", "range", "min_of", "max_of"}


class _Calc:
    """A recursive-descent reader of one duration expression; values in seconds."""

    def __init__(self, text: str, step_s: float, range_s: float) -> None:
        self.toks: list[tuple[str, str]] = []
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise BadInput(f"duration expression {text!r}: unexpected {text[pos:].strip()[:10]!r}")
            kind = m.lastgroup or ""
            self.toks.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0
        self.text = text
        self.step_s, self.range_s = step_s, range_s

    def _peek(self) -> str | None:
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def _take(self, want: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.toks) or (want is not None and self.toks[self.i][1] != want):
            raise BadInput(f"duration expression {self.text!r}: expected {want or 'a value'}")
        self.i += 1
        return self.toks[self.i - 1]

    def value(self) -> float:
        v = self._sum()
        if self.i != len(self.toks):
            raise BadInput(f"duration expression {self.text!r}: unexpected {self.toks[self.i][1]!r}")
        return v

    def _sum(self) -> float:
        v = self._product()
        while self._peek() in ("+", "-"):
            op = self._take()[1]
            r = self._product()
            v = v + r if op == "+" else v - r
        return v

    def _product(self) -> float:
        v = self._unary()
        while self._peek() in ("*", "/", "%"):
            op = self._take()[1]
            r = self._unary()
            if op == "*":
                v *= r
            elif r == 0:
                raise BadInput(f"duration expression {self.text!r}: division by zero")
            else:
                v = v / r if op == "/" else math.fmod(v, r)  # Go's math.Mod: sign of the dividend
        return v

    def _unary(self) -> float:
        # As in PromQL, `^` binds tighter than a leading sign: -2^2 is -4.
        sign = 1.0
        while self._peek() in ("+", "-"):  # a loop, not recursion: "----1s" is bounded by length only
            sign = -sign if self._take()[1] == "-" else sign
        return sign * self._power()

    def _power(self) -> float:
        # Right-associative, folded in a loop so a long `1^1^1…` chain cannot exhaust the stack;
        # each exponent may carry its own sign (2^-1).
        operands = [self._atom()]
        signs: list[float] = []
        while self._peek() == "^":
            self._take()
            sign = 1.0
            while self._peek() in ("+", "-"):
                sign = -sign if self._take()[1] == "-" else sign
            signs.append(sign)
            operands.append(self._atom())
        value = operands[-1] * (signs[-1] if signs else 1.0)
        for k in range(len(operands) - 2, -1, -1):
            base = operands[k]
            try:
                value = math.pow(base, value)
            except (OverflowError, ValueError):
                raise BadInput(f"duration expression {self.text!r}: {base:g}^{value:g} is not a duration") from None
            if k > 0:
                value *= signs[k - 1]
        return value

    def _atom(self) -> float:
        kind, tok = self._take()
        if tok == "(":
            v = self._sum()
            self._take(")")
            return v
        if kind == "dur":
            return sum(int(n) * _UNIT_S[u] for n, u in _PART.findall(tok))
        if kind == "num":
            return float(tok)
        name = tok.lower()
        if kind == "name" and name in _FUNCS:
            self._take("(")
            if name in ("step", "range"):
                self._take(")")
                return self.step_s if name == "step" else self.range_s
            a = self._sum()
            self._take(",")
            b = self._sum()
            self._take(")")
            return min(a, b) if name == "min_of" else max(a, b)
        raise BadInput(f"duration expression {self.text!r}: unexpected {tok!r}")


def _ms_literal(seconds: float, what: str, text: str) -> str:
    if not math.isfinite(seconds) or abs(seconds) > 1e12:
        raise BadInput(f"duration expression {text!r} in {what} is not a finite duration")
    ms = int(round(seconds * 1000))
    return f"-{-ms}ms" if ms < 0 else f"{ms}ms"


def _matching(text: str, i: int, open_ch: str, close_ch: str) -> int:
    """Index of the bracket closing the one at `i`, skipping string literals; -1 if none."""
    depth = 0
    for j, ch in code_chars(text, i):
        if ch == open_ch:
            depth += 1
        elif ch == close_ch:
            depth -= 1
            if depth == 0:
                return j
    return -1


def _split_colon(body: str) -> list[str]:
    """The parts of a bracket body split at its top-level `:` (subquery range and step)."""
    depth, parts, last = 0, [], 0
    for i, ch in enumerate(body):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == ":" and depth == 0:
            parts.append(body[last:i])
            last = i + 1
    parts.append(body[last:])
    return parts


def _offset_end(text: str, i: int) -> int:
    """End of a duration expression after `offset` starting at `i`, or -1 if it is a plain one.

    As Prometheus reads it: an optional sign, then a parenthesised expression or one of the
    duration functions; operators after that belong to the enclosing query."""
    j = i
    while j < len(text) and text[j] in " \t\n+-":
        j += 1
    if j < len(text) and text[j] == "(":
        end = _matching(text, j, "(", ")")
        return end + 1 if end > 0 else -1
    m = re.compile(r"[A-Za-z_]+\s*(?=\()").match(text, j)
    if m and m.group(0).strip().lower() in _FUNCS:
        end = _matching(text, m.end(), "(", ")")
        return end + 1 if end > 0 else -1
    return -1


def rewrite(promql: str, step_ms: int, range_ms: int) -> str:
    """`promql` with every duration expression replaced by its value as a millisecond literal.

    `step_ms` and `range_ms` are the query's step and end minus start (0 for an instant query),
    the values of `step()` and `range()`. Raises BadInput for an expression it cannot work out."""
    if "[" not in promql and not re.search(r"(?i)offset", promql):
        return promql
    step_s, range_s = step_ms / 1000.0, range_ms / 1000.0
    out: list[str] = []
    i, quote, braces = 0, "", 0
    while i < len(promql):
        ch = promql[i]
        if quote:
            if ch == "\\" and quote != "`":
                out.append(promql[i:i + 2])
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"'`":
            quote = ch
        elif ch == "{":
            braces += 1
        elif ch == "}":
            braces -= 1
        elif ch == "[" and braces == 0:
            end = _matching(promql, i, "[", "]")
            if end > 0:
                parts = _split_colon(promql[i + 1:end])
                if len(parts) <= 2 and not all(_PLAIN.fullmatch(p) for p in parts):
                    new = [p if _PLAIN.fullmatch(p) else _ms_literal(_Calc(p, step_s, range_s).value(), "a range", p)
                           for p in parts]
                    out.append("[" + ":".join(new) + "]")
                    i = end + 1
                    continue
        elif braces == 0 and promql[i:i + 6].lower() == "offset" and (i == 0 or not (promql[i - 1].isalnum()
                                                                                         or promql[i - 1] == "_")):
            after = i + 6
            if after < len(promql) and not (promql[after].isalnum() or promql[after] == "_"):
                end = _offset_end(promql, after)
                if end > 0:
                    expr = promql[after:end]
                    lit = _ms_literal(_Calc(expr, step_s, range_s).value(), "an offset", expr.strip())
                    # A zero offset is no offset (the parser refuses a literal `offset 0ms`).
                    out.append("" if lit == "0ms" else promql[i:after] + " " + lit)
                    i = end
                    continue
        out.append(ch)
        i += 1
    return "".join(out)
