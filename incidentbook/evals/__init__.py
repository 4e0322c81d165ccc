"""Evals: replay cases against investigators and score them (only this package reads ground truth)."""

from incidentbook.evals.runner import (
    DEFAULT_SEEDS,
    CaseResult,
    EvalReport,
    context_from_bundle,
    generate_suite,
    generate_systems,
    run_case,
    run_eval,
    score_case,
)

__all__ = ["DEFAULT_SEEDS", "CaseResult", "EvalReport", "context_from_bundle", "generate_suite", "generate_systems", "run_case",
           "run_eval", "score_case"]
