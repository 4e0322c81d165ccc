"""Redaction: the one place secrets and personal data are taken out of text.

Everything that leaves an engineer's machine goes through a `Redactor` first: postmortems and
telemetry bundles entering the library, exported bundles, and text sent to a model. Each match
becomes a pseudonym such as `[EMAIL-3]` or `[AWS-KEY-1]`; the same value always gets the same
pseudonym, so a redacted text still shows that two lines name the same client.

`restore(text)` puts the real values back. The mapping of personal data (emails, IPs, custom
patterns) can be kept in a local file (`<home>/redaction/pseudonyms.json`, mode 0600) so the
pseudonyms are stable across runs; it never goes into the library. Secrets (keys, tokens,
passwords) are only ever mapped in memory: once written out redacted, they cannot be recovered
from anything on disk.

Rules are configurable with a `redaction.toml` in the library directory::

    emails = true            # pseudonymise email addresses (default true)
    ips = true               # pseudonymise IPv4 addresses (default true)
    disable = ["ipv4"]       # built-in rules to turn off, by name
    allowlist = ["noreply@example\\.com", "10\\.0\\.0\\.1"]   # regexes; a full match is kept
    [[patterns]]
    name = "customer-id"     # pseudonym prefix CUSTOMER-ID
    regex = "cust_[0-9]{8}"
    secret = false           # true: never persisted in the mapping file
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from incidentbook.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

POLICY_NAME = "redaction.toml"
MAPPING_FILE = Path("redaction") / "pseudonyms.json"
_PSEUDONYM = re.compile(r"\[[A-Z][A-Z0-9-]*-\d+\]")


@dataclass(frozen=True)
class Rule:
    """One thing to redact: `regex` (the `group` is replaced), named pseudonyms `[LABEL-n]`."""

    name: str
    label: str
    regex: re.Pattern[str]
    group: int = 0
    secret: bool = True


_IPV4 = r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\w.]*\d)"
#: Built-in rules, applied in this order (longest and most specific first).
BUILTIN_RULES: tuple[Rule, ...] = (
    Rule("private_key", "PRIVATE-KEY", re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----", re.S)),
    Rule("url_credentials", "PASSWORD", re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@\"']+:([^/\s@\"']+)@"), 1),
    Rule("bearer_token", "TOKEN", re.compile(r"(?i)\b(?:bearer|basic)\s+([A-Za-z0-9._~+/=-]{8,})"), 1),
    Rule("aws_access_key", "AWS-KEY", re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA)[0-9A-Z]{16}\b")),
    Rule("aws_secret_key", "AWS-SECRET", re.compile(
        r"(?i)\baws_?secret(?:_?access)?_?key[\"']?\s*[=:]\s*[\"']?([A-Za-z0-9/+=]{40})\b"), 1),
    Rule("known_token", "TOKEN", re.compile(
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|xox[abprs]-[A-Za-z0-9-]{10,}|sk-[A-Za-z0-9_-]{20,}"
        r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})")),
    Rule("password", "PASSWORD", re.compile(
        r"(?i)\b(?:password|passwd|pwd|pass)[\"']?\s*[=:]\s*[\"']?([^\s\"'&,;}]+)"), 1),
    Rule("api_key", "API-KEY", re.compile(
        r"(?i)\b(?:api[_-]?key|apikey|access[_-]?key|secret[_-]?key|client[_-]?secret|secret|"
        r"auth[_-]?token|access[_-]?token|refresh[_-]?token|token|x-api-key)[\"']?\s*[=:]\s*[\"']?([^\s\"'&,;}]+)"), 1),
    Rule("email", "EMAIL", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
         secret=False),
    Rule("ipv4", "IP", re.compile(_IPV4), secret=False),
)

#: Values never worth hiding (loopback, unspecified and broadcast addresses).
DEFAULT_ALLOWLIST = (r"127\.0\.0\.1", r"0\.0\.0\.0", r"255\.255\.255\.255")


class PatternConfig(BaseModel):
    """A custom pattern from `redaction.toml`."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")
    regex: str
    secret: bool = True


class RedactionConfig(BaseModel):
    """What to redact (see the module docstring for the file format)."""

    model_config = ConfigDict(extra="forbid")
    emails: bool = True
    ips: bool = True
    disable: list[str] = Field(default_factory=list)
    allowlist: list[str] = Field(default_factory=list)
    patterns: list[PatternConfig] = Field(default_factory=list)


def load_policy(path: Path) -> RedactionConfig:
    """Read a `redaction.toml`; ConfigError names the file and the bad key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return RedactionConfig.model_validate(data)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e}); fix the line it names") from None
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"{path}: setting {where!r}: {first['msg']}") from None


@dataclass
class Replacement:
    """One replacement, for the redaction report (never holds the value itself)."""

    rule: str
    pseudonym: str
    where: str = ""


@dataclass
class Redactor:
    """Replaces secrets and personal data with pseudonyms and can put them back.

    `Redactor()` keeps the mapping in memory (what a model session needs); `Redactor.for_home`
    also keeps non-secret pseudonyms in a local file so they are stable across runs.
    """

    config: RedactionConfig = field(default_factory=RedactionConfig)
    mapping_path: Path | None = None
    replacements: list[Replacement] = field(default_factory=list)

    def __post_init__(self) -> None:
        disabled = set(self.config.disable)
        unknown = disabled - {r.name for r in BUILTIN_RULES}
        if unknown:
            names = ", ".join(r.name for r in BUILTIN_RULES)
            raise ConfigError(f"redaction: unknown rule(s) {sorted(unknown)} in disable; known: {names}")
        if not self.config.emails:
            disabled.add("email")
        if not self.config.ips:
            disabled.add("ipv4")
        rules = [r for r in BUILTIN_RULES if r.name not in disabled]
        for p in self.config.patterns:
            try:
                rx = re.compile(p.regex)
            except re.error as e:
                raise ConfigError(f"redaction pattern {p.name!r}: bad regex {p.regex!r} ({e})") from None
            rules.append(Rule(p.name, p.name.upper().replace("_", "-"), rx, 0, p.secret))
        self.rules: list[Rule] = rules
        try:
            allow = [*DEFAULT_ALLOWLIST, *self.config.allowlist]
            self._allow = re.compile("|".join(f"(?:{a})" for a in allow))
        except re.error as e:
            raise ConfigError(f"redaction allowlist: bad regex ({e}); fix it in {POLICY_NAME}") from None
        self._forward: dict[str, str] = {}
        self._back: dict[str, str] = {}
        self._counters: Counter[str] = Counter()
        self._persist: set[str] = set()
        if self.mapping_path is not None and self.mapping_path.exists():
            self._load()

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def for_home(cls, home: Path, policy: Path | None = None) -> Redactor:
        """A redactor whose personal-data pseudonyms persist in `<home>/redaction/pseudonyms.json`.

        `policy` is a `redaction.toml` (ignored when it does not exist).
        """
        config = load_policy(policy) if policy is not None and policy.is_file() else RedactionConfig()
        return cls(config=config, mapping_path=Path(home) / MAPPING_FILE)

    @classmethod
    def from_config(cls, cfg: Any) -> Redactor:
        """The workspace's redactor: mapping under `cfg.home`, policy `<library>/redaction.toml`."""
        return cls.for_home(cfg.home, cfg.library_path / POLICY_NAME)

    # ---- the API ------------------------------------------------------------------------------
    def redact(self, text: str, where: str = "") -> str:
        """`text` with every secret and personal value replaced by its pseudonym."""
        if not text:
            return text
        for rule in self.rules:
            if rule.group == 0:
                text = rule.regex.sub(lambda m, r=rule: self._swap(r, m.group(0), where), text)  # type: ignore[misc]
            else:
                text = rule.regex.sub(lambda m, r=rule: self._swap_group(r, m, where), text)  # type: ignore[misc]
        return text

    def restore(self, text: str) -> str:
        """`text` with every pseudonym this redactor knows replaced by the real value."""
        if not text or not self._back:
            return text
        return _PSEUDONYM.sub(lambda m: self._back.get(m.group(0), m.group(0)), text)

    __call__ = redact

    def report(self) -> dict[str, Any]:
        """What was replaced: counts per rule and per place (never the values)."""
        by_rule = Counter(r.rule for r in self.replacements)
        by_where: dict[str, Counter[str]] = {}
        for r in self.replacements:
            by_where.setdefault(r.where or "-", Counter())[r.rule] += 1
        return {"total": len(self.replacements), "by_rule": dict(sorted(by_rule.items())),
                "by_place": {k: dict(v) for k, v in sorted(by_where.items())},
                "rules": [r.name for r in self.rules]}

    def save(self) -> None:
        """Write the personal-data pseudonyms to the mapping file (secrets are never written)."""
        if self.mapping_path is None:
            return
        keep = {p: v for p, v in self._back.items() if p in self._persist}
        # Counters of secret labels are not kept: a secret's pseudonym depends only on the text
        # redacted in this run, so re-archiving unchanged text gives byte-identical output.
        counters: Counter[str] = Counter()
        for p in keep:
            label, n = p[1:-1].rsplit("-", 1)
            counters[label] = max(counters[label], int(n))
        doc = {"version": 1, "note": "local only: never copy this file into a library or a ticket",
               "counters": dict(counters), "pseudonyms": keep}
        self.mapping_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.mapping_path.parent, prefix=".pseudonyms.")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=1, sort_keys=True)
            os.replace(tmp, self.mapping_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # ---- structured data ----------------------------------------------------------------------
    def redact_obj(self, obj: Any, where: str = "") -> Any:
        """A copy of a JSON-like value with every string redacted (keys kept)."""
        if isinstance(obj, str):
            return self.redact(obj, where)
        if isinstance(obj, list):
            return [self.redact_obj(v, where) for v in obj]
        if isinstance(obj, dict):
            return {k: self.redact_obj(v, where) for k, v in obj.items()}
        return obj

    # ---- internals ----------------------------------------------------------------------------
    def _swap_group(self, rule: Rule, m: re.Match[str], where: str) -> str:
        value = m.group(rule.group)
        if value is None:
            return m.group(0)
        start, end = m.start(rule.group) - m.start(0), m.end(rule.group) - m.start(0)
        whole = m.group(0)
        return whole[:start] + self._swap(rule, value, where) + whole[end:]

    def _swap(self, rule: Rule, value: str, where: str) -> str:
        if _PSEUDONYM.fullmatch(value) or self._allow.fullmatch(value):
            return value
        pseudo = self._forward.get(value)
        if pseudo is None:
            self._counters[rule.label] += 1
            pseudo = f"[{rule.label}-{self._counters[rule.label]}]"
            while pseudo in self._back:  # a label shared by two rules, or a stale counter
                self._counters[rule.label] += 1
                pseudo = f"[{rule.label}-{self._counters[rule.label]}]"
            self._forward[value] = pseudo
            self._back[pseudo] = value
            if not rule.secret:
                self._persist.add(pseudo)
        self.replacements.append(Replacement(rule.name, pseudo, where))
        return pseudo

    def _load(self) -> None:
        assert self.mapping_path is not None
        try:
            doc = json.loads(self.mapping_path.read_text(encoding="utf-8"))
            pseudonyms = dict(doc.get("pseudonyms", {}))
            counters = {str(k): int(v) for k, v in doc.get("counters", {}).items()}
        except (OSError, ValueError, AttributeError, TypeError) as e:
            raise ConfigError(f"{self.mapping_path}: unreadable pseudonym mapping ({e}); "
                              "move it aside to start a new one (old pseudonyms will not restore)") from None
        self._counters.update(counters)
        for pseudo, value in pseudonyms.items():
            self._back[pseudo] = value
            self._forward[value] = pseudo
            self._persist.add(pseudo)


def redact_lines(lines: Iterable[str], redactor: Redactor | None = None) -> list[str]:
    """Redact many lines with one redactor (a fresh in-memory one by default)."""
    r = redactor or Redactor()
    return [r.redact(line) for line in lines]


def default_redact() -> Callable[[str], str]:
    """A line redactor for exports with no workspace at hand (in-memory pseudonyms)."""
    return Redactor().redact
