"""Runbooks: find them, pick the one an alert needs, run it with papermill."""

from incidentbook.runner.execute import RunResult, build_parameters, run_runbook
from incidentbook.runner.registry import (
    GENERIC,
    Problem,
    Runbook,
    RunbookMeta,
    check_runbook,
    get_runbook,
    load_runbooks,
    package_data_dir,
    read_runbook,
    select_runbook,
    template_path,
)

__all__ = [
    "GENERIC",
    "Problem",
    "RunResult",
    "Runbook",
    "RunbookMeta",
    "build_parameters",
    "check_runbook",
    "get_runbook",
    "load_runbooks",
    "package_data_dir",
    "read_runbook",
    "run_runbook",
    "select_runbook",
    "template_path",
]
