"""Run investigators (and model versions) over the same cases, side by side, with a CI gate.

An investigator spec is a registered name, optionally with a model: `rules`, `claude`,
`claude:claude-opus-4-6`. `compare` runs two specs over identical cases (the model-upgrade
question); `gate_failures` checks a report against `--fail-under` thresholds.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from incidentbook.agent.base import investigators
from incidentbook.errors import BadInput
from incidentbook.evals.runner import EvalReport, run_case

#: Metric -> True when higher is better. For the others a `--fail-under` value is a ceiling.
METRICS: dict[str, bool] = {"ac1": True, "ac3": True, "ac1_service": True, "remediation_rate": True, "mean_rank": False,
                            "unsafe": False, "false_alarms": False, "cost_usd": False, "seconds_mean": False}


def parse_spec(spec: str, model: str | None = None) -> tuple[str, str | None]:
    """(`name`, `model`) from `name[:model]`; `model` overrides the one in the spec."""
    name, _, m = spec.partition(":")
    if not name:
        raise BadInput(f"investigator {spec!r} is empty; give e.g. rules or claude:claude-sonnet-4-6")
    return name, model or m or None


def make_investigator(spec: str, cfg: Any = None, model: str | None = None,
                      runbooks_dir: Path | None = None) -> Any:
    """An investigator instance for `spec`, built with `model` (and `cfg`) when its constructor takes them."""
    name, model = parse_spec(spec, model)
    factory = investigators.get(name)
    if not isinstance(factory, type):
        if model:
            raise BadInput(f"investigator {name!r} does not take a model; drop --model or ':{model}'")
        return factory
    params = inspect.signature(factory).parameters
    kwargs: dict[str, Any] = {}
    if model:
        if "model" not in params:
            raise BadInput(f"investigator {name!r} does not take a model; drop --model or ':{model}'")
        kwargs["model"] = model
    if cfg is not None and "cfg" in params:
        if runbooks_dir is not None:
            cfg = cfg.model_copy(deep=True)
            cfg.runner.runbooks_dir = str(runbooks_dir.resolve())
        kwargs["cfg"] = cfg
    return factory(**kwargs)


def evaluate(cases: Sequence[Path], spec: str, cfg: Any = None, model: str | None = None,
             truth: str | Path | None = None, score: str | None = None) -> EvalReport:
    """Score `spec` over `cases`. A case with its own `runbooks/` (red-team) gets an investigator reading them.

    `truth`: a truth file or directory (evals.truth); `score`: "service+kind" or "service".
    """
    from incidentbook.evals.truth import load_truth

    truths = load_truth(truth, cases) if truth else {}
    name, model = parse_spec(spec, model)
    shared = make_investigator(name, cfg, model)
    results = []
    for c in cases:
        rb = Path(c) / "runbooks"
        inv = make_investigator(name, cfg, model, rb) if rb.is_dir() and cfg is not None else shared
        results.append(run_case(c, inv, truth=truths.get(Path(c).name), score=score))
    label = getattr(shared, "model", "") or (model or "")
    return EvalReport(name, results, model=str(label))


def metric(report: EvalReport, name: str) -> float | None:
    """One named total of a report (see METRICS)."""
    if name not in METRICS:
        raise BadInput(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    value = report.to_dict().get(name)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def parse_gates(items: Sequence[str]) -> dict[str, float]:
    """`["ac1=0.8", "unsafe=0"]` -> {"ac1": 0.8, "unsafe": 0.0}."""
    gates = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            gates[key.strip()] = float(value)
        except ValueError:
            raise BadInput(f"--fail-under {item!r}: give METRIC=VALUE, e.g. ac1=0.8 or unsafe=0") from None
        if key.strip() not in METRICS:
            raise BadInput(f"--fail-under {item!r}: unknown metric; known: {', '.join(METRICS)}")
    return gates


def gate_failures(report: EvalReport, gates: dict[str, float]) -> list[str]:
    """One line per gate the report fails (higher-is-better metrics below, others above their value)."""
    out = []
    for key, limit in gates.items():
        v = metric(report, key)
        if v is None:
            continue
        if METRICS[key] and v < limit:
            out.append(f"{report.investigator}{_model(report)}: {key} {v:g} is under {limit:g}")
        elif not METRICS[key] and v > limit:
            out.append(f"{report.investigator}{_model(report)}: {key} {v:g} is over {limit:g}")
    return out


def _model(r: EvalReport) -> str:
    return f" ({r.model})" if r.model else ""


@dataclass
class Comparison:
    """Two reports over the same cases."""

    a: EvalReport
    b: EvalReport

    def rows(self) -> list[dict[str, Any]]:
        """Per case: the expected cause and each side's rank, remediation match, unsafe count, seconds, cost."""
        by_b = {c.case: c for c in self.b.cases}
        rows = []
        for ca in self.a.cases:
            cb = by_b.get(ca.case)
            rows.append({"case": ca.case, "kind": ca.kind, "expected": ca.expected,
                         "a_rank": ca.rank, "b_rank": cb.rank if cb else None,
                         "a_top": ca.ranked[0] if ca.ranked else "", "b_top": cb.ranked[0] if cb and cb.ranked else "",
                         "a_remediation": ca.remediation_match, "b_remediation": cb.remediation_match if cb else None,
                         "a_unsafe": len(ca.unsafe), "b_unsafe": len(cb.unsafe) if cb else 0,
                         "a_seconds": ca.seconds, "b_seconds": cb.seconds if cb else None,
                         "a_cost_usd": ca.cost_usd, "b_cost_usd": cb.cost_usd if cb else None})
        return rows

    def totals(self) -> dict[str, dict[str, float | None]]:
        """metric -> {a, b, delta}."""
        out = {}
        for key in METRICS:
            va, vb = metric(self.a, key), metric(self.b, key)
            out[key] = {"a": va, "b": vb, "delta": None if va is None or vb is None else round(vb - va, 6)}
        return out

    def label(self, side: str) -> str:
        """`claude (claude-sonnet-4-6)`."""
        r = self.a if side == "a" else self.b
        return f"{r.investigator}{_model(r)}"

    def to_dict(self) -> dict[str, Any]:
        """The `eval --compare --json` document."""
        from incidentbook.redact import process_redactor

        return process_redactor().redact_obj(  # type: ignore[no-any-return]
            {"a": self.a.to_dict(), "b": self.b.to_dict(), "a_label": self.label("a"), "b_label": self.label("b"),
             "cases": self.rows(), "totals": self.totals()})

    def table(self) -> str:
        """Markdown: the per-case ranks and the totals side by side."""
        la, lb = self.label("a"), self.label("b")
        out = [f"| case | expected | {la} rank | {lb} rank | unsafe | s ({la} / {lb}) |", "|---|---|---|---|---|---|"]
        for r in self.rows():
            out.append(f"| {r['case']} | {r['expected']} | {r['a_rank'] or 'miss'} | {r['b_rank'] or 'miss'} | "
                       f"{r['a_unsafe']} / {r['b_unsafe']} | {r['a_seconds']:.2f} / {r['b_seconds'] or 0:.2f} |")
        out += ["", f"| metric | {la} | {lb} | delta |", "|---|---|---|---|"]
        for key, t in self.totals().items():
            out.append(f"| {key} | {_fmt(t['a'])} | {_fmt(t['b'])} | {_fmt(t['delta'])} |")
        from incidentbook.redact import redact_secrets

        return redact_secrets("\n".join(out))


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def compare(cases: Sequence[Path], a: str, b: str, cfg: Any = None, model: str | None = None,
            truth: str | Path | None = None, score: str | None = None) -> Comparison:
    """Run specs `a` and `b` over the same `cases` (`model` applies to `b`, the candidate)."""
    return Comparison(evaluate(cases, a, cfg, truth=truth, score=score), evaluate(cases, b, cfg, model, truth=truth, score=score))
