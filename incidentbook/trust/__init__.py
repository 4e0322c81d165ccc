"""The trust ledger: every proposal's fate and every hypothesis's verdict, per investigator and model.

`build_ledger(store)` reads the incident timelines; `write_report(cfg, store)` renders the team
review notebook (`incidentbook trust report`).
"""

from incidentbook.trust import report
from incidentbook.trust.ledger import (
    FATES,
    HypothesisRecord,
    InvestigationRecord,
    Ledger,
    ProposalRecord,
    build_ledger,
    edit_diff,
    incident_ledger,
    library_ledgers,
    notebook_ledger,
    root_cause_of,
)
from incidentbook.trust.report import build_report, write_report

__all__ = ["FATES", "HypothesisRecord", "InvestigationRecord", "Ledger", "ProposalRecord", "build_ledger",
           "build_report", "edit_diff", "incident_ledger", "library_ledgers", "notebook_ledger", "report",
           "root_cause_of", "write_report"]
