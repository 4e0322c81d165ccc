"""Evals: replay cases against investigators and score them (only this package reads ground truth)."""

from incidentbook.evals.runner import (
    CONTEXT_MODES,
    DEFAULT_CONTEXT,
    DEFAULT_SEEDS,
    CaseResult,
    EvalReport,
    context_from_bundle,
    first_page,
    generate_suite,
    generate_systems,
    run_case,
    run_eval,
    score_case,
)

__all__ = ["CONTEXT_MODES", "DEFAULT_CONTEXT", "DEFAULT_SEEDS", "first_page", "CaseResult", "EvalReport", "context_from_bundle", "generate_suite", "generate_systems", "run_case",
           "run_eval", "score_case"]
