"""Redaction: the one place secrets and personal data are taken out of text.

Everything that leaves an engineer's machine goes through a `Redactor` first: postmortems and
telemetry bundles entering the library, exported bundles, eval scorecards, Slack messages and
text sent to a model. Each match becomes a pseudonym such as `[EMAIL-3]` or `[AWS-KEY-1]`; the
same value always gets the same pseudonym, so a redacted text still shows that two lines name
the same client. Local sinks (incident notebooks saved by the runner or JupyterLab, the store,
server logs) use a secrets-only redactor (`personal=False`): emails and IPs stay readable there.

What is found, in order:

1. **Known values**: the value of every environment variable the process treats as a secret
   (those `incidentbook.toml` names in a `*_env` key or `headers_env`, plus any variable whose
   name ends in `_TOKEN`, `_SECRET`, `_PASSWORD`, `_KEY`…), also URL-encoded and base64, and
   every secret value seen earlier by the same redactor. These go by exact value, whatever
   their shape, so a password restored into a query cannot come back in an error text.
2. **Shapes** (`BUILTIN_RULES`): private key blocks, Slack webhooks, connection-string
   passwords (`scheme://user:pw@host`, `redis://:pw@host`), `Authorization:` headers, bearer
   tokens, `KEY=value` environment lines (`*_PASSWORD`, `PGPASSWORD`, `*_TOKEN`, `*_SECRET`,
   `*_KEY`), Stripe, Google, GitLab, npm, GitHub, Slack, AWS, Azure keys, JWTs, `password=`…
3. **detect-secrets**: the regular-expression detectors of the detect-secrets library (Twilio,
   SendGrid, Discord, Mailchimp, PyPI, OpenAI, Artifactory, IBM, Square, Telegram, …) catch what
   the shapes above do not.
4. **High entropy in assignment context**: `name = value` where the value is long and random
   (a secret-sounding name lowers the bar; hex ids such as trace ids are kept).
5. **Personal data** (unless `personal=False`): emails, IPv4 addresses and custom patterns.

`restore(text)` puts the real values back (`secrets=False`: only personal data, for text shown
to people). The mapping of personal data (emails, IPs, custom patterns) can be kept in a local
file (`<home>/redaction/pseudonyms.json`, mode 0600) so the pseudonyms are stable across runs;
it never goes into the library. Secrets are only ever mapped in memory: once written out
redacted, they cannot be recovered from anything on disk.

Rules are configurable with a `redaction.toml` in the library directory::

    emails = true            # pseudonymise email addresses (default true)
    ips = true               # pseudonymise IPv4 addresses (default true)
    disable = ["ipv4"]       # built-in rules to turn off, by name ("detect_secrets", "entropy" too)
    allowlist = ["noreply@example\\.com", "10\\.0\\.0\\.1"]   # regexes; a full match is kept
    [[patterns]]
    name = "customer-id"     # pseudonym prefix CUSTOMER-ID
    regex = "cust_[0-9]{8}"
    secret = false           # true: never persisted in the mapping file
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import logging
import math
import os
import re
import sys
import tempfile
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
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
#: Known values shorter than this are not redacted by exact value (too many false hits).
MIN_KNOWN_LEN = 6
#: Longer values (a whole key block) are found by their shape, not remembered by value.
MAX_KNOWN_LEN = 4096


@dataclass(frozen=True)
class Rule:
    """One thing to redact: `regex`, of which the first matching of `groups` (0: the whole
    match) is replaced by a pseudonym `[LABEL-n]`."""

    name: str
    label: str
    regex: re.Pattern[str]
    group: int | tuple[int, ...] = 0
    secret: bool = True
    #: The rule runs only on text holding one of these (lowercase: checked case-insensitively);
    #: empty: always. A cheap substring test that spares most lines most regexes.
    hints: tuple[str, ...] = ()

    @property
    def groups(self) -> tuple[int, ...]:
        return self.group if isinstance(self.group, tuple) else (self.group,)


_IPV4 = r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\w.]*\d)"
# A value after `=` or `:`: quoted (spaces allowed) or bare (up to whitespace or a delimiter).
_VALUE = r"""(?:\\?"([^"\n]{1,512}?)\\?"|\\?'([^'\n]{1,512}?)\\?'|((?:[^\s"'&,;}<>\\]|\\(?!["'])){1,512}))"""
_ENV_NAME = (r"(?:[A-Z0-9]+_)*(?:PASSWORD|PASSWD|PASS|PWD|TOKEN|SECRET|KEY|APIKEY|CREDENTIALS?)"
             r"|PGPASSWORD|MYSQL_PWD")
#: Built-in rules, applied in this order (longest and most specific first).
BUILTIN_RULES: tuple[Rule, ...] = (
    Rule("private_key", "PRIVATE-KEY", re.compile(
        # the body cannot run past another BEGIN/END line: linear even on a flood of BEGINs
        r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:[^-]|-(?!----(?:BEGIN|END)))*"
        r"-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----"), hints=("private key",)),
    # A block cut off before its END line (a truncated output): up to the end of its base64 body.
    Rule("private_key_start", "PRIVATE-KEY", re.compile(
        r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        r"(?:(?:\s|\\[nr])*[A-Za-z-]{2,20}: [^\n\\]{0,200})*(?:(?:\s|\\[nr])*[A-Za-z0-9+/=]{4,})*"), hints=("private key",)),
    Rule("slack_webhook", "WEBHOOK", re.compile(
        r"https://hooks\.slack(?:-gov)?\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]+"), hints=("hooks.slack",)),
    Rule("url_credentials", "PASSWORD", re.compile(
        r"(?<![a-zA-Z0-9+.-])[a-zA-Z][a-zA-Z0-9+.-]{0,30}://[^/\s:@\"'<>]{0,256}:([^/\s\"'<>]{1,256})@"), 1, hints=("://",)),
    Rule("authorization_header", "TOKEN", re.compile(
        r"(?i)\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?"
        r"(?:(?:bearer|basic|token|digest|negotiate|apikey|api-key|key|sso-key|splunk)\s+"
        # without a scheme, an upper-case identifier is the name of the variable holding the
        # value (`headers_env = {Authorization = "PROM_AUTH"}`), not the value itself
        r"|(?-i:(?![A-Z][A-Z0-9_]{2,}(?:[\"'\s,;}]|$))))([^\s\"',;]{4,})"), 1, hints=("authorization",)),
    Rule("bearer_token", "TOKEN", re.compile(
        r"(?i)\b(?:bearer|basic)\s+((?=[A-Za-z0-9._~+/=-]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{8,})"), 1, hints=("bearer", "basic")),
    Rule("azure_key", "AZURE-KEY", re.compile(
        r"\b(?:AccountKey|SharedAccessKey|SharedSecret)=([A-Za-z0-9+/=%]{16,})"), 1, hints=("accountkey", "sharedaccesskey", "sharedsecret")),
    Rule("stripe_key", "STRIPE-KEY", re.compile(r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,}"), hints=("k_live_", "k_test_")),
    Rule("google_api_key", "GOOGLE-KEY", re.compile(r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"), hints=("AIza",)),
    Rule("gitlab_token", "GITLAB-TOKEN", re.compile(
        r"\b(?:glpat|gldt|glft|glsoat|glrt|glcbt|glimt|glptt|glagent|gloas)-[0-9A-Za-z_-]{20,}"), hints=("gl",)),
    Rule("npm_token", "NPM-TOKEN", re.compile(r"\bnpm_[A-Za-z0-9]{30,}"), hints=("npm_",)),
    Rule("npmrc_auth", "NPM-TOKEN", re.compile(r"_auth(?:Token)?\s*=\s*[\"']?([^\s\"']{8,512})"), 1, hints=("_auth",)),
    Rule("aws_access_key", "AWS-KEY", re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA)[0-9A-Z]{16}\b"), hints=("AKIA", "ASIA", "AIDA", "AROA")),
    Rule("aws_secret_key", "AWS-SECRET", re.compile(
        r"(?i)\baws_?secret(?:_?access)?_?key[\"']?\s*[=:]\s*[\"']?([A-Za-z0-9/+=]{40})\b"), 1, hints=("secret",)),
    Rule("known_token", "TOKEN", re.compile(
        r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|xox[abprso]-[A-Za-z0-9-]{10,}"
        r"|xapp-[A-Za-z0-9-]{10,}|sk-[A-Za-z0-9_-]{20,}"
        r"|(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"), hints=("gh", "xox", "xapp-", "sk-", "eyJ")),
    Rule("env_secret", "SECRET", re.compile(
        rf"(?<![A-Za-z0-9_])(?:export\s+)?(?:{_ENV_NAME})\b[\"']?\s*(?:=|:\s)\s*{_VALUE}"), (1, 2, 3), hints=("PASS", "PWD", "TOKEN", "SECRET", "KEY", "CREDENTIAL")),
    Rule("password", "PASSWORD", re.compile(
        r"(?i)(?<![a-z0-9_.-])(?:[a-z0-9]+[_.-])*(?:password|passwd|pwd|pass\b)\\?[\"']?\s*[=:]\s*\\?[\"']?((?:[^\s\"'&,;}\\]|\\(?![\"']))+)"), 1, hints=("pass", "pwd")),
    Rule("api_key", "API-KEY", re.compile(
        r"(?i)(?<![a-z0-9_.-])(?:[a-z0-9]+[_.-])*(?:api[_-]?key|apikey|access[_-]?key|secret[_-]?key|client[_-]?secret|secret|"
        r"auth[_-]?token|access[_-]?token|refresh[_-]?token|token|x-api-key)\\?[\"']?\s*[=:]\s*\\?[\"']?((?:[^\s\"'&,;}\\]|\\(?![\"']))+)"), 1, hints=("key", "secret", "token")),
    Rule("email", "EMAIL", re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}"
                                      r"(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}\b"),
         secret=False, hints=("@",)),
    Rule("ipv4", "IP", re.compile(_IPV4), secret=False, hints=(".",)),
)
#: Rules that are not regexes of their own, turned off by the same `disable` list.
EXTRA_RULES = ("known_values", "detect_secrets", "entropy")

#: Values never worth hiding (loopback, unspecified and broadcast addresses).
DEFAULT_ALLOWLIST = (r"127\.0\.0\.1", r"0\.0\.0\.0", r"255\.255\.255\.255")
# What follows `password=` and is not a secret: placeholders, references, booleans.
_NOT_SECRET = re.compile(
    r"(?i)(?:true|false|null|none|nil|yes|no|on|off|enabled?|disabled?|required|optional|redacted|"
    r"hidden|masked|\*+|x+|\.+|<[^>]*>|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\{\{.*\}\}|%\(.*\)s|"
    r"\[[A-Z][A-Z0-9-]*-\d+\]|[A-Za-z_]*_env|\(?str\)?|string|secret|password|token|\?+)")


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


# ------------------------------------------------------------------------------ known values

#: Environment variables whose values are secrets wherever they are configured.
WELL_KNOWN_SECRET_ENVS = (
    "ANTHROPIC_API_KEY", "INCIDENTBOOK_TOKEN", "INCIDENTBOOK_PAGERDUTY_SECRET", "PAGERDUTY_ROUTING_KEY",
    "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_WEBHOOK_URL",
    "CONFLUENCE_TOKEN", "CONFLUENCE_API_TOKEN", "CONFLUENCE_PASSWORD", "JIRA_API_TOKEN",
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GOOGLE_API_KEY", "PGPASSWORD", "DATABASE_URL",
)
_SECRET_ENV_NAME = re.compile(r"(?:^|_)(?:PASSWORD|PASSWD|PWD|TOKEN|SECRET|API_?KEY|ACCESS_KEY|PRIVATE_KEY|"
                              r"CREDENTIALS?|WEBHOOK(?:_URL)?|DSN)$|^PGPASSWORD$|_KEY$")
# Secret-looking variable names that hold no secret (paths, ids, switches).
_NOT_SECRET_ENV = re.compile(r"(?:_PATH|_FILE|_DIR|_ID|_ENV|_NAME|_TYPE)$|^(?:GPG_KEY|SSH_AUTH_SOCK)$")
_CONFIG_ENVS: set[str] = set()


def note_secret_envs(names: Iterable[str]) -> None:
    """Remember environment variable names the configuration uses for secrets (every redactor
    in this process then redacts their values by exact value)."""
    _CONFIG_ENVS.update(n for n in names if n)


def config_secret_envs(cfg: Any) -> list[str]:
    """The environment variables `cfg` names as secret references: every `*_env` key (string or
    table of strings, such as `headers_env`) anywhere in the configuration."""
    names: list[str] = []

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, Mapping):
            if key.endswith("_env"):  # headers_env = {Header = "VARIABLE"}
                names.extend(v for v in value.values() if isinstance(v, str) and v)
                return
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and key.endswith("_env") and value:
            names.append(value)

    walk(cfg.model_dump() if hasattr(cfg, "model_dump") else cfg)
    return sorted(set(names))


def known_secret_values(cfg: Any = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Secret values this process knows, mapped to the variable they came from.

    From the variables `cfg` names (any `*_env`), those noted by `note_secret_envs`, the
    well-known ones and any variable with a secret-sounding name. Values shorter than
    `MIN_KNOWN_LEN` are left out (they would match ordinary words).
    """
    env = os.environ if environ is None else environ
    names = set(WELL_KNOWN_SECRET_ENVS) | _CONFIG_ENVS
    if cfg is not None:
        names |= set(config_secret_envs(cfg))
    names |= {n for n in env if _SECRET_ENV_NAME.search(n.upper()) and not _NOT_SECRET_ENV.search(n.upper())}
    out: dict[str, str] = {}
    for n in sorted(names):
        v = env.get(n, "")
        if len(v) >= MIN_KNOWN_LEN and not v.isdigit() and not _NOT_SECRET.fullmatch(v):
            out[v] = n
    return out


def encoded_forms(value: str) -> list[str]:
    """The shapes a secret takes in transit: URL-encoded and base64 (standard and URL-safe)."""
    forms = {urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}
    forms.add(json.dumps(value)[1:-1])  # as it appears inside a JSON string
    raw = value.encode("utf-8", "surrogatepass")
    for enc in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        forms |= {enc, enc.rstrip("=")}
    forms.discard(value)
    return sorted(f for f in forms if len(f) >= MIN_KNOWN_LEN)


# ------------------------------------------------------------------------------ detect-secrets

@dataclass(frozen=True)
class _Detector:
    name: str
    label: str
    regexes: tuple[re.Pattern[str], ...]
    hints: tuple[str, ...] = ()

    @functools.cached_property
    def hint_regex(self) -> re.Pattern[str] | None:
        """Finds the hints in a long text, so only the lines holding one are scanned."""
        if not self.hints:
            return None
        parts = [f"(?i:{re.escape(h)})" if h.islower() else re.escape(h) for h in self.hints]
        return re.compile("|".join(parts))


# Substrings each detect-secrets detector's matches must contain (see `Rule.hints`); a detector
# missing here (a new one in a later release) always runs.
_LIBRARY_HINTS: dict[str, tuple[str, ...]] = {
    "AWSKeyDetector": ("A3T", "ABIA", "ACCA", "AKIA", "ASIA", "aws"),
    "ArtifactoryDetector": ("AKC", "AP"), "AzureStorageKeyDetector": ("AccountKey=",),
    "BasicAuthDetector": ("://",), "CloudantDetector": ("key", "pw", "pass", "token"),
    "IbmCosHmacDetector": ("secret",), "IbmCloudIamDetector": ("key", "pwd", "pass", "token"), "GitHubTokenDetector": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    "GitLabTokenDetector": ("gl", "GR1348941"), "JwtTokenDetector": ("eyJ",), "MailchimpDetector": ("-us",),
    "NpmDetector": ("_authToken",), "OpenAIDetector": ("T3BlbkFJ",), "PrivateKeyDetector": ("PRIVATE KEY", "PuTTY"),
    "PypiTokenDetector": ("pypi-",), "SendGridDetector": ("SG.",), "SlackDetector": ("xox", "hooks.slack"),
    "SoftlayerDetector": ("key", "pwd", "pass", "token"), "SquareOAuthDetector": ("sq0csp-",), "StripeDetector": ("k_live_",),
    "TelegramBotTokenDetector": (":",), "TwilioKeyDetector": ("AC", "SK"),
}


def _present(hints: tuple[tuple[str, ...], tuple[str, ...]], text: str) -> frozenset[str]:
    """Which of all the rules' hints `text` holds: (lowercase ones, any case) and (exact ones)."""
    lower = text.lower()
    return frozenset([h for h in hints[0] if h in lower] + [h for h in hints[1] if h in text])


def _all_hints(groups: Iterable[tuple[str, ...]]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    every = sorted({h for g in groups for h in g})
    return tuple(h for h in every if h.islower()), tuple(h for h in every if not h.islower())


_SKIPPED_DETECTORS = frozenset({"IPPublicDetector", "KeywordDetector", "CloudantDetector", "IbmCosHmacDetector",
                                "IbmCloudIamDetector", "SoftlayerDetector",
                                # covered by the shape rules above, whose regexes stay linear on
                                # hostile runs ("eyJ-eyJ-…", "sk-sk-…", "////…") where these do not
                                "JwtTokenDetector", "OpenAIDetector", "NpmDetector"})


@functools.lru_cache(maxsize=1)
def library_detectors() -> tuple[_Detector, ...]:
    """The regex detectors of the detect-secrets library, compiled once per process.

    Its IP detector is left out (IPs are personal data here, see the `ipv4` rule) and so are its
    keyword detector and its keyword-assignment ones (Cloudant, IBM Cloud, SoftLayer): the
    `env_secret`, `password`, `api_key` and entropy rules cover `name = value`, and those
    look-behind regexes cost more than all the others together on a large notebook. JWT,
    OpenAI and npm are left to the shape rules, which stay linear on hostile input.
    """
    try:
        import detect_secrets.plugins as pkg
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    except ImportError:  # pragma: no cover - a declared dependency
        return ()
    out = []
    for secret_type, cls in sorted(get_mapping_from_secret_type_to_class().items()):
        if not cls.__module__.startswith(pkg.__name__) or cls.__name__ in _SKIPPED_DETECTORS:
            continue
        denylist = getattr(cls, "denylist", None)
        if not denylist or isinstance(denylist, property):
            continue
        label = re.sub(r"[^A-Z0-9]+", "-", secret_type.upper()).strip("-") or "SECRET"
        out.append(_Detector(cls.__name__, label, tuple(denylist), _LIBRARY_HINTS.get(cls.__name__, ())))
    return tuple(out)


@functools.lru_cache(maxsize=1)
def _entropy_fn() -> Callable[[str], float]:
    try:
        from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString

        return Base64HighEntropyString().calculate_shannon_entropy  # type: ignore[no-any-return]
    except ImportError:  # pragma: no cover
        def shannon(s: str) -> float:
            n = len(s)
            return -sum(c / n * math.log2(c / n) for c in Counter(s).values()) if n else 0.0
        return shannon


# `name = value` / `name: value` / `"name": "value"`: a candidate for the entropy check.
_ASSIGNMENT = re.compile(
    r"""(?<![A-Za-z0-9_=+/~.-])\\?["']?([A-Za-z_][A-Za-z0-9_.-]{0,63})\\?["']?\s*(?:=|:=|=>|:)\s*\\?["']?"""
    r"""([A-Za-z0-9+/_~.=-]{20,512})(?![A-Za-z0-9+/_~.=-])(?!["']?\s*(?:=|:))""")
_SECRETISH_NAME = re.compile(r"(?i)(?:key|secret|token|pass|pwd|auth|cred|sig|salt|private|session|cookie)")
_HEX = re.compile(r"[0-9a-fA-F-]+")
# Names whose long random values are content, not credentials (chart data, digests, ids).
_ENTROPY_SKIP = re.compile(r"(?i)(?:bdata|b64|data|image|img|src|href|url|integrity|hash|digest|sha\d*|md5|"
                           r"checksum|etag|commit|rev|revision|version|id|uid|uuid|(?:trace|span|request)_?id)")


def _high_entropy(name: str, value: str) -> bool:
    if _PSEUDONYM.search(value) or "://" in value or value.count(".") > 2 and "/" not in value and "=" not in value:
        return False
    if _ENTROPY_SKIP.fullmatch(name):
        return False
    entropy = _entropy_fn()(value)
    if _SECRETISH_NAME.search(name):
        return entropy >= 3.0
    if _HEX.fullmatch(value):  # trace, span and request ids, hashes: evidence, not secrets
        return False
    classes = sum(bool(re.search(p, value)) for p in ("[a-z]", "[A-Z]", "[0-9]"))
    return classes == 3 and entropy >= 4.5


# ------------------------------------------------------------------------------ the redactor

@dataclass
class Replacement:
    """One replacement, for the redaction report (never holds the value itself)."""

    rule: str
    pseudonym: str
    where: str = ""


_KNOWN = Rule("known_values", "SECRET", re.compile(r"(?!)"))
_ENTROPY = Rule("entropy", "SECRET", re.compile(r"(?!)"))
_LONG_TEXT = 4096


@dataclass
class Redactor:
    """Replaces secrets and personal data with pseudonyms and can put them back.

    `Redactor()` keeps the mapping in memory (what a model session needs); `Redactor.for_home`
    also keeps non-secret pseudonyms in a local file so they are stable across runs.
    `personal=False` redacts secrets only (for local sinks). `known` adds secret values to
    redact by exact value (default: `known_secret_values()` of this process's environment).
    """

    config: RedactionConfig = field(default_factory=RedactionConfig)
    mapping_path: Path | None = None
    replacements: list[Replacement] = field(default_factory=list)
    personal: bool = True
    known: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        disabled = set(self.config.disable)
        names = [r.name for r in BUILTIN_RULES] + list(EXTRA_RULES)
        unknown = disabled - set(names)
        if unknown:
            raise ConfigError(f"redaction: unknown rule(s) {sorted(unknown)} in disable; known: {', '.join(names)}")
        if not self.config.emails:
            disabled.add("email")
        if not self.config.ips:
            disabled.add("ipv4")
        self._disabled = disabled
        rules = [r for r in BUILTIN_RULES if r.name not in disabled]
        for p in self.config.patterns:
            try:
                rx = re.compile(p.regex)
            except re.error as e:
                raise ConfigError(f"redaction pattern {p.name!r}: bad regex {p.regex!r} ({e})") from None
            rules.append(Rule(p.name, p.name.upper().replace("_", "-"), rx, 0, p.secret))
        if not self.personal:
            rules = [r for r in rules if r.secret]
        self.rules: list[Rule] = rules
        self._secret_rules = [r for r in rules if r.secret]
        self._personal_rules = [r for r in rules if not r.secret]
        self._detectors = library_detectors() if "detect_secrets" not in disabled else ()
        self._hints = _all_hints([r.hints for r in rules] + [d.hints for d in self._detectors])
        # A rule or detector with no hints always runs; the others when one of theirs is present.
        self._always = {id(x) for x in [*rules, *self._detectors] if not x.hints}
        try:
            allow = [*DEFAULT_ALLOWLIST, *self.config.allowlist]
            self._allow = re.compile("|".join(f"(?:{a})" for a in allow))
        except re.error as e:
            raise ConfigError(f"redaction allowlist: bad regex ({e}); fix it in {POLICY_NAME}") from None
        self._forward: dict[str, str] = {}
        self._back: dict[str, str] = {}
        self._counters: Counter[str] = Counter()
        self._persist: set[str] = set()
        # Secret values redacted by exact value, value -> label; `_exact_rx` is rebuilt on change.
        self._exact: dict[str, str] = {}
        self._exact_rx: re.Pattern[str] | None = None
        if "known_values" not in disabled:
            self.add_known(known_secret_values() if self.known is None else self.known)
        if self.mapping_path is not None and self.mapping_path.exists():
            self._load()

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def for_home(cls, home: Path, policy: Path | None = None, **kw: Any) -> Redactor:
        """A redactor whose personal-data pseudonyms persist in `<home>/redaction/pseudonyms.json`.

        `policy` is a `redaction.toml` (ignored when it does not exist).
        """
        config = load_policy(policy) if policy is not None and policy.is_file() else RedactionConfig()
        return cls(config=config, mapping_path=Path(home) / MAPPING_FILE, **kw)

    @classmethod
    def from_config(cls, cfg: Any) -> Redactor:
        """The workspace's redactor: mapping under `cfg.home`, policy `<library>/redaction.toml`,
        and the values of every secret `cfg` names."""
        return cls.for_home(cfg.home, cfg.library_path / POLICY_NAME, known=known_secret_values(cfg))

    @classmethod
    def secrets_only(cls, cfg: Any = None) -> Redactor:
        """A secrets-only, in-memory redactor for local sinks (notebooks, store, logs)."""
        config = RedactionConfig()
        if cfg is not None:
            policy = cfg.library_path / POLICY_NAME
            if policy.is_file():
                config = load_policy(policy)
        return cls(config=config, personal=False, known=known_secret_values(cfg))

    def add_known(self, values: Mapping[str, str] | Iterable[str], label: str = "SECRET") -> None:
        """Redact these secret values by exact value from now on (also URL-encoded and base64)."""
        for v in values:
            if not MIN_KNOWN_LEN <= len(v) <= MAX_KNOWN_LEN or v in self._exact:
                continue
            self._exact[v] = label
            for form in encoded_forms(v):
                self._exact.setdefault(form, label)
            self._exact_rx = None

    # ---- the API ------------------------------------------------------------------------------
    def redact(self, text: str, where: str = "") -> str:
        """`text` with every secret (and, unless `personal=False`, personal value) replaced."""
        if not text or not isinstance(text, str):
            return text
        learned = len(self._exact)
        text = self._redact_known(text, where)
        present = _present(self._hints, text)
        always = self._always
        for rule in self._secret_rules:
            if id(rule) in always or not present.isdisjoint(rule.hints):
                text = self._apply(rule, text, where)
        if self._detectors:
            text = self._redact_library(text, present, where)
        if "entropy" not in self._disabled and ("=" in text or ":" in text):
            text = self._redact_entropy(text, where)
        if len(self._exact) != learned:  # values learned from this text, found elsewhere in it
            text = self._redact_known(text, where)
        for rule in self._personal_rules:
            if id(rule) in always or not present.isdisjoint(rule.hints):
                text = self._apply(rule, text, where)
        return text

    def restore(self, text: str, secrets: bool = True) -> str:
        """`text` with every pseudonym this redactor knows replaced by the real value.

        `secrets=False` puts back personal data only: for text shown to people or written out.
        """
        if not text or not self._back:
            return text
        if secrets:
            return _PSEUDONYM.sub(lambda m: self._back.get(m.group(0), m.group(0)), text)
        return _PSEUDONYM.sub(lambda m: self._back[m.group(0)] if m.group(0) in self._persist else m.group(0), text)

    __call__ = redact

    def restored_values(self, text: str) -> list[str]:
        """The real values `restore(text)` would put back (so a caller can hide them again)."""
        return [self._back[p] for p in _PSEUDONYM.findall(text or "") if p in self._back]

    def hide(self, text: str, values: Iterable[str]) -> str:
        """`text` with each of `values` (which this redactor has seen) replaced by its pseudonym,
        whatever its length: for text built from input whose pseudonyms were restored."""
        swaps: dict[str, str] = {}
        for v in values:
            pseudo = self._forward.get(v)
            if not pseudo or not v:
                continue
            swaps[v] = pseudo
            # A parser quotes the piece it choked on ("function 'Tr0ub4dor'"): the secret-looking
            # pieces of the value go too (long, with a digit or mixed case; plain words stay).
            for piece in re.split(r"[^A-Za-z0-9]+", v):
                if len(piece) >= 6 and (re.search(r"\d", piece) or (piece.lower() != piece and piece.upper() != piece)):
                    swaps.setdefault(piece, pseudo)
        for v in sorted(swaps, key=len, reverse=True):
            if v in text:
                text = text.replace(v, swaps[v])
        return text

    def report(self) -> dict[str, Any]:
        """What was replaced: counts per rule and per place (never the values)."""
        by_rule = Counter(r.rule for r in self.replacements)
        by_where: dict[str, Counter[str]] = {}
        for r in self.replacements:
            by_where.setdefault(r.where or "-", Counter())[r.rule] += 1
        return {"total": len(self.replacements), "by_rule": dict(sorted(by_rule.items())),
                "by_place": {k: dict(v) for k, v in sorted(by_where.items())},
                "rules": [r.name for r in self.rules] + [n for n in EXTRA_RULES if n not in self._disabled]}

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
        """A copy of a JSON-like value with every string redacted (keys kept).

        Iterative, so a hostile, deeply nested value cannot exhaust the stack.
        """
        if isinstance(obj, str):
            return self.redact(obj, where)
        if not isinstance(obj, (list, tuple, dict)):
            return obj
        root: list[Any] = [None]
        stack: list[tuple[Any, Any, Any]] = [(root, 0, obj)]  # (container, key, value to copy)
        while stack:
            parent, key, value = stack.pop()
            if isinstance(value, str):
                parent[key] = self.redact(value, where)
            elif isinstance(value, dict):
                new: dict[Any, Any] = {}
                parent[key] = new
                for k, v in value.items():
                    new[k] = None
                    stack.append((new, k, v))
            elif isinstance(value, (list, tuple)):
                lst: list[Any] = [None] * len(value)
                parent[key] = lst
                stack.extend((lst, i, v) for i, v in enumerate(value))
            else:
                parent[key] = value
        return root[0]

    def redact_notebook(self, nb: Any, where: str = "") -> Any:
        """A redacted copy of a notebook (see `redact_notebook`)."""
        return redact_notebook(nb, self, where)

    # ---- internals ----------------------------------------------------------------------------
    def _apply(self, rule: Rule, text: str, where: str) -> str:
        if rule.groups == (0,):
            return rule.regex.sub(lambda m: self._swap(rule, m.group(0), where), text)
        return rule.regex.sub(lambda m: self._swap_group(rule, m, where), text)

    def _swap_group(self, rule: Rule, m: re.Match[str], where: str) -> str:
        g = next((g for g in rule.groups if m.group(g) is not None), None)
        if g is None:
            return m.group(0)
        value = m.group(g)
        if rule.secret and _NOT_SECRET.fullmatch(value):
            return m.group(0)
        start, end = m.start(g) - m.start(0), m.end(g) - m.start(0)
        whole = m.group(0)
        return whole[:start] + self._swap(rule, value, where) + whole[end:]

    def _swap(self, rule: Rule, value: str, where: str) -> str:
        if _PSEUDONYM.fullmatch(value) or self._allow.fullmatch(value):
            return value
        pseudo = self._forward.get(value)
        if pseudo is None:
            label = self._exact.get(value, rule.label) if rule is _KNOWN else rule.label
            self._counters[label] += 1
            pseudo = f"[{label}-{self._counters[label]}]"
            while pseudo in self._back:  # a label shared by two rules, or a stale counter
                self._counters[label] += 1
                pseudo = f"[{label}-{self._counters[label]}]"
            self._forward[value] = pseudo
            self._back[pseudo] = value
            if not rule.secret:
                self._persist.add(pseudo)
            elif MIN_KNOWN_LEN <= len(value) <= MAX_KNOWN_LEN and value not in self._exact:
                # Seen once as a secret: hidden by exact value everywhere from now on.
                self._exact[value] = rule.label
                self._exact_rx = None
        self.replacements.append(Replacement(rule.name, pseudo, where))
        return pseudo

    def _redact_known(self, text: str, where: str) -> str:
        if not self._exact:
            return text
        if self._exact_rx is None:
            self._exact_rx = re.compile("|".join(re.escape(v) for v in sorted(self._exact, key=len, reverse=True)))
        return self._exact_rx.sub(lambda m: self._swap(_KNOWN, m.group(0), where), text)

    def _redact_library(self, text: str, present: frozenset[str], where: str) -> str:
        found: dict[str, _Detector] = {}
        always = self._always
        for det in self._detectors:
            if id(det) not in always and present.isdisjoint(det.hints):
                continue
            for rx in det.regexes:
                for m in self._library_matches(det, rx, text):
                    groups = [g for g in m.groups() if g]
                    best = max(groups, key=len) if groups else ""
                    value = (best if len(best) >= 8 else m.group(0)).strip(" \t\r\n\"'=:,;")
                    if len(value) >= 8 and not _PSEUDONYM.search(value) and not self._allow.fullmatch(value):
                        found.setdefault(value, det)
        if not found:
            return text
        for value in sorted(found, key=len, reverse=True):
            det = found[value]
            rule = Rule(f"detect_secrets:{det.name}", det.label, _KNOWN.regex)
            if value in text:
                text = text.replace(value, self._swap(rule, value, where))
        return text

    @staticmethod
    def _library_matches(det: _Detector, rx: re.Pattern[str], text: str) -> Iterable[re.Match[str]]:
        """The detector's matches; in a long text only the lines holding one of its hints are
        scanned (its regexes are line-oriented), which keeps a 3 MB notebook cheap."""
        hint = det.hint_regex
        if hint is None or len(text) < _LONG_TEXT:
            yield from rx.finditer(text)
            return
        done = -1
        for h in hint.finditer(text):
            if h.start() <= done:
                continue
            start = text.rfind("\n", 0, h.start()) + 1
            end = text.find("\n", h.end())
            end = len(text) if end < 0 else end
            done = end
            yield from rx.finditer(text[start:end])

    def _redact_entropy(self, text: str, where: str) -> str:
        def swap(m: re.Match[str]) -> str:
            name, value = m.group(1), m.group(2).rstrip(".")
            if not _high_entropy(name, value):
                return m.group(0)
            start = m.start(2) - m.start(0)
            whole = m.group(0)
            return whole[:start] + self._swap(_ENTROPY, value, where) + whole[start + len(value):]

        return _ASSIGNMENT.sub(swap, text)

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


# ------------------------------------------------------------------------------ documents

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_BINARY_MIME = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf")


def _text(value: Any) -> Any:
    return "".join(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else value


def _redact_display(redactor: Redactor, text: str, where: str) -> str:
    """Redact terminal text; colour codes can split a secret, so it is redacted without them
    when they are there (and keeps them when nothing was found)."""
    if "\x1b[" not in text:
        return redactor.redact(text, where)
    plain = _ANSI.sub("", text)
    done = redactor.redact(plain, where)
    return text if done == plain else done


def _redact_json(redactor: Redactor, value: Any, where: str) -> Any:
    """A JSON output (a chart, a table) redacted as one text, which is much faster than string
    by string and lets `"password": "…"` be seen as an assignment; string by string if the
    redacted text is no longer JSON."""
    text = json.dumps(value, ensure_ascii=False)
    done = redactor.redact(text, where)
    if done == text:
        return value
    try:
        return json.loads(done)
    except ValueError:
        return redactor.redact_obj(value, where)


def redact_notebook(nb: Any, redactor: Redactor, where: str = "") -> Any:
    """A redacted copy of a notebook (an nbformat node or its JSON dict).

    Each cell's source and each output are redacted as one text each (nbformat's lists of
    lines are joined first, so a private key's BEGIN and END lines meet): stream text,
    `text/*`, JSON and other text data, error names, values and tracebacks, metadata and
    attachments. Binary images are kept as they are.
    """
    import nbformat

    node = nbformat.from_dict(copy.deepcopy(dict(nb)))
    for cell in node.get("cells", []):
        cell["source"] = redactor.redact(_text(cell.get("source", "")), where)
        if cell.get("attachments"):
            cell["attachments"] = redactor.redact_obj(cell["attachments"], where)
        cell["metadata"] = nbformat.from_dict(redactor.redact_obj(cell.get("metadata", {}), where))
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "stream":
                out["text"] = _redact_display(redactor, _text(out.get("text", "")), where)
            elif kind == "error":
                out["ename"] = redactor.redact(str(out.get("ename", "")), where)
                out["evalue"] = _redact_display(redactor, str(out.get("evalue", "")), where)
                tb = "\n".join(str(t) for t in out.get("traceback", []))
                out["traceback"] = _redact_display(redactor, tb, where).split("\n")
            if "data" in out:
                data = {}
                for mime, value in out["data"].items():
                    value = _text(value)
                    if mime in _BINARY_MIME:
                        data[mime] = value
                    elif isinstance(value, str):
                        data[mime] = _redact_display(redactor, value, where)
                    else:
                        data[mime] = _redact_json(redactor, value, where)
                out["data"] = nbformat.from_dict(data)
            if out.get("metadata"):
                out["metadata"] = nbformat.from_dict(redactor.redact_obj(out["metadata"], where))
    node["metadata"] = nbformat.from_dict(redactor.redact_obj(node.get("metadata", {}), where))
    return node


def redact_lines(lines: Iterable[str], redactor: Redactor | None = None) -> list[str]:
    """Redact many lines with one redactor (a fresh in-memory one by default)."""
    r = redactor or Redactor()
    return [r.redact(line) for line in lines]


def default_redact() -> Callable[[str], str]:
    """A line redactor for exports with no workspace at hand (in-memory pseudonyms)."""
    return Redactor().redact


# ------------------------------------------------------------------------------ process-wide

_PROCESS: dict[str, Any] = {}


def process_redactor() -> Redactor:
    """The secrets-only redactor of this process (store, Slack, logs, saved notebooks).

    Rebuilt when the known secret values change (a variable exported or a config loaded).
    """
    known = known_secret_values()
    key = tuple(sorted(known))
    r = _PROCESS.get("redactor")
    if r is None or _PROCESS.get("key") != key:
        r = Redactor(personal=False, known=known)
        _PROCESS.update(redactor=r, key=key)
    return r  # type: ignore[no-any-return]


def redact_secrets(text: str) -> str:
    """`text` with the secrets taken out (the process's secrets-only redactor)."""
    return process_redactor().redact(text)


class RedactingLogRecords:
    """A log record factory that redacts each message (and its traceback) when it is made,
    so no handler, however configured, writes a secret."""

    def __init__(self, inner: Callable[..., logging.LogRecord]) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is the caller's bug; keep the raw text
            message = str(record.msg)
        record.msg, record.args = redact_secrets(message), None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact_secrets(logging.Formatter().formatException(record.exc_info))
        return record


def install_log_redaction() -> None:
    """Redact every log record of this process from now on (idempotent)."""
    current = logging.getLogRecordFactory()
    if not isinstance(current, RedactingLogRecords):
        logging.setLogRecordFactory(RedactingLogRecords(current))
