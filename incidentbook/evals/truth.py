"""Ground truth kept outside the bundles (`incidentbook eval --truth FILE|DIR`), and how a ranking is scored.

A truth record is a JSON object:

    {"case": "auth-s1",                     # the bundle directory's name
     "root_cause_service": "auth",
     "fault_kind": "bad_deploy",            # kinds outside the built-in vocabulary count as "other"
     "is_incident": true,                   # optional (default: true unless fault_kind is planned_*)
     "alternatives": [                      # optional: other answers that are also right
        {"root_cause_service": "edge", "fault_kind": "abuse"}, "edge:config_change", "edge"]}

An alternative written as a bare service accepts that service with the primary fault kind.

`--truth FILE`: one object, a JSON list of objects, or JSON Lines. `case` may be left out only
when a single case is evaluated. Every case the file names must be among the cases given.
`--truth DIR`: `<DIR>/<case>.json` or `<DIR>/<case>/truth.json` per case (`case` defaults to
the file's name).

Scoring modes: `service+kind` (the default) needs both the service and the fault kind of a
hypothesis to match; `service` only the service.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from incidentbook.errors import BadInput

SCORE_MODES = ("service+kind", "service")
DEFAULT_SCORE = "service+kind"
MAX_TRUTH_BYTES = 16 * 1024 * 1024
_FIELDS = {"case", "root_cause_service", "fault_kind", "is_incident", "alternatives", "onset", "remediation",
           "scenario", "seed", "generator", "dialect", "notes"}


def vocabulary() -> frozenset[str]:
    """The built-in fault-kind vocabulary (the kinds a hypothesis may name)."""
    from incidentbook.agent.base import FAULT_KINDS

    return frozenset(FAULT_KINDS)


def normalise_kind(kind: Any) -> str:
    """A fault kind as scored: itself when in the vocabulary, "unknown" when empty, else "other"."""
    k = str(kind or "").strip()
    if not k or k == "unknown":
        return "unknown"
    return k if k in vocabulary() else "other"


@dataclass(frozen=True)
class CaseTruth:
    """The right answer for one case, with the alternatives also accepted."""

    case: str
    service: str
    kind: str
    is_incident: bool = True
    alternatives: tuple[tuple[str, str], ...] = ()
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def expected(self) -> str:
        """`service:kind` as reports show it (the kind as written in the truth)."""
        return f"{self.service}:{self.kind}"

    def answers(self) -> list[tuple[str, str]]:
        return [(self.service, self.kind), *self.alternatives]

    def matches(self, service: str, kind: str, score: str = DEFAULT_SCORE) -> bool:
        """Whether a hypothesis naming `service` and `kind` is right under `score`."""
        for s, k in self.answers():
            if service != s:
                continue
            if score == "service" or normalise_kind(kind) == normalise_kind(k):
                return True
        return False

    def rank(self, ranked: Sequence[tuple[str, str]], score: str = DEFAULT_SCORE) -> int | None:
        """1-based rank of the first right hypothesis in `ranked` ((service, kind), best first); None for a miss.

        A case that is not an incident is right (1) when no cause was opened at all.
        """
        if not self.is_incident:
            return None if ranked else 1
        return next((i + 1 for i, (s, k) in enumerate(ranked) if self.matches(s, k, score)), None)


def _bad(where: str, msg: str) -> BadInput:
    return BadInput(f"{where}: {msg}")


def _clean(text: Any, where: str, name: str) -> str:
    if not isinstance(text, str):
        raise _bad(where, f"{name} must be a string, got {type(text).__name__}; write it in quotes")
    s = text.strip()
    if not s:
        raise _bad(where, f"{name} is empty; give the service that caused the incident")
    if len(s) > 256:
        raise _bad(where, f"{name} is {len(s)} characters long; a service name has at most 256")
    if any(ord(ch) < 32 or 0xD800 <= ord(ch) <= 0xDFFF for ch in s):
        raise _bad(where, f"{name} {s[:40]!r} holds a control character or a lone surrogate; remove it")
    return s


def truth_from_record(rec: Any, where: str, default_case: str = "") -> CaseTruth:
    """A CaseTruth from one record; BadInput names the field and the fix."""
    if not isinstance(rec, Mapping):
        raise _bad(where, f"a truth record must be a JSON object, got {type(rec).__name__}")
    unknown = sorted(set(rec) - _FIELDS)
    if unknown:
        raise _bad(where, f"unknown field {unknown[0]!r}; known fields: {', '.join(sorted(_FIELDS))}")
    if "root_cause_service" not in rec:
        raise _bad(where, "missing root_cause_service; add the service that caused the incident")
    service = _clean(rec["root_cause_service"], where, "root_cause_service")
    kind_raw = rec.get("fault_kind", "unknown")
    kind = _clean(kind_raw, where, "fault_kind") if kind_raw not in (None, "") else "unknown"
    case = rec.get("case", default_case)
    case = _clean(case, where, "case") if case else ""
    inc = rec.get("is_incident", not kind.startswith("planned_"))
    if not isinstance(inc, bool):
        raise _bad(where, f"is_incident must be true or false, got {inc!r}")
    alts_raw = rec.get("alternatives") or []
    if not isinstance(alts_raw, list):
        raise _bad(where, "alternatives must be a list of {root_cause_service, fault_kind} objects or 'service[:kind]' strings")
    alts = []
    for n, a in enumerate(alts_raw):
        w = f"{where} alternatives[{n}]"
        if isinstance(a, str):
            s, _, k = a.partition(":")
            alts.append((_clean(s, w, "service"), k.strip() or kind))
        elif isinstance(a, Mapping) and "root_cause_service" in a:
            alts.append((_clean(a["root_cause_service"], w, "root_cause_service"),
                         _clean(a.get("fault_kind") or kind, w, "fault_kind")))
        else:
            raise _bad(w, "give {\"root_cause_service\": ..., \"fault_kind\": ...} or 'service[:kind]'")
    extra = {k: rec[k] for k in ("onset", "remediation", "scenario", "seed", "generator", "dialect") if k in rec}
    return CaseTruth(case=case, service=service, kind=kind, is_incident=inc, alternatives=tuple(alts), source=where,
                     extra=extra)


def _read(path: Path) -> str:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise BadInput(f"--truth {path}: cannot read it ({e.strerror}); give a JSON/JSONL file or a directory") from None
    if size > MAX_TRUTH_BYTES:
        raise BadInput(f"--truth {path} is {size} bytes, over {MAX_TRUTH_BYTES}; split it into a directory of per-case files")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"--truth {path} is not UTF-8 text; save it as UTF-8 JSON") from None


def _records(path: Path) -> list[tuple[Any, str]]:
    """(record, where) pairs from a JSON object, a JSON list or JSON Lines."""
    text = _read(path)
    stripped = text.strip()
    if not stripped:
        raise BadInput(f"--truth {path} is empty; write one JSON object per case")
    try:
        doc = json.loads(stripped)
    except json.JSONDecodeError:
        doc = None
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append((json.loads(line), f"{path}:{n}"))
            except json.JSONDecodeError as e:
                raise BadInput(f"--truth {path}:{n}: not valid JSON ({e.msg}); fix or remove the line") from None
        return out
    except RecursionError:
        raise BadInput(f"--truth {path}: nested too deeply to be a truth file") from None
    if isinstance(doc, list):
        return [(r, f"{path}[{i}]") for i, r in enumerate(doc)]
    return [(doc, str(path))]


def load_truth(spec: str | Path, cases: Iterable[str | Path]) -> dict[str, CaseTruth]:
    """The truth of each case (by bundle directory name) from `--truth FILE|DIR`.

    Raises BadInput when a case has no truth, when the file names a case that is not among
    `cases`, or on a malformed record (naming the field and the fix).
    """
    names = [Path(c).name for c in cases]
    p = Path(spec)
    if not p.exists():
        raise BadInput(f"--truth {p} does not exist; give a truth file (JSON or JSONL) or a directory of them")
    out: dict[str, CaseTruth] = {}
    if p.is_dir():
        for name in names:
            for cand in (p / f"{name}.json", p / name / "truth.json"):
                if cand.is_file():
                    recs = _records(cand)
                    if len(recs) != 1:
                        raise BadInput(f"--truth {cand} holds {len(recs)} records; a per-case file holds one")
                    t = truth_from_record(recs[0][0], recs[0][1], default_case=name)
                    if t.case != name:
                        raise BadInput(f"--truth {cand}: case {t.case!r} does not match its file name {name!r}; rename one")
                    out[name] = t
                    break
            else:
                raise BadInput(f"--truth {p}: no truth for case {name!r}; add {p / (name + '.json')}")
        return out
    recs = _records(p)
    for rec, where in recs:
        t = truth_from_record(rec, where, default_case=names[0] if len(names) == 1 and len(recs) == 1 else "")
        if not t.case:
            raise BadInput(f"{where}: missing case; add \"case\": \"<bundle directory name>\" (one of: {', '.join(names[:8])})")
        if t.case not in names:
            raise BadInput(f"{where}: case {t.case!r} is not among the cases given ({', '.join(names[:8])}"
                           f"{' ...' if len(names) > 8 else ''}); fix the name or pass its bundle")
        if t.case in out:
            raise BadInput(f"{where}: case {t.case!r} appears twice; keep one record per case")
        out[t.case] = t
    missing = [n for n in names if n not in out]
    if missing:
        raise BadInput(f"--truth {p}: no truth for case {missing[0]!r}; add a record with \"case\": {missing[0]!r}")
    return out


def truth_beside(bundle_dir: str | Path) -> CaseTruth | None:
    """The truth stored next to a bundle (`truth.json`, as the fleet generator writes it), if any."""
    p = Path(bundle_dir) / "truth.json"
    if not p.is_file():
        return None
    recs = _records(p)
    if len(recs) != 1:
        raise BadInput(f"{p} holds {len(recs)} records; a case's truth.json holds one")
    return truth_from_record(recs[0][0], recs[0][1], default_case=Path(bundle_dir).name)


def truth_from_ground_truth(gt: Mapping[str, Any], case: str, where: str) -> CaseTruth:
    """A CaseTruth from a manifest's (or archived incident's) `ground_truth`."""
    kind = str(gt.get("fault_kind") or "unknown")
    alts = tuple((str(a.get("root_cause_service", "")), str(a.get("fault_kind") or kind))
                 for a in gt.get("alternatives") or [] if isinstance(a, Mapping))
    return CaseTruth(case=case, service=str(gt.get("root_cause_service", "")), kind=kind,
                     is_incident=bool(gt.get("is_incident", kind != "planned_load")), alternatives=alts, source=where)


def find_truth(spec: str | Path, case: str) -> CaseTruth | None:
    """The truth record of one `case` in a truth file or directory (other cases may be there too); None if absent."""
    p = Path(spec)
    if not p.exists():
        raise BadInput(f"--truth {p} does not exist; give a truth file (JSON or JSONL) or a directory of them")
    if p.is_dir():
        for cand in (p / f"{case}.json", p / case / "truth.json"):
            if cand.is_file():
                rec, where = _records(cand)[0]
                return truth_from_record(rec, where, default_case=case)
        return None
    recs = _records(p)
    for rec, where in recs:
        t = truth_from_record(rec, where, default_case=case if len(recs) == 1 else "")
        if t.case == case:
            return t
    return None


def onset_of(spec: str | Path, case: str) -> Any:
    """The `onset` of `case`'s truth record in a truth file or directory (for `bundle import`)."""
    rec = find_truth(spec, case)
    if rec is None:
        raise BadInput(f"--truth {spec}: no record for case {case!r}; add one or pass --onset")
    return rec.extra.get("onset")
