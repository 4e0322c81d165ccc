"""Postmortems: drafting from a closed incident, redaction, the versioned library, render, search."""

from incidentbook.postmortems.draft import (
    Draft,
    Impact,
    close_incident,
    compute_impact,
    draft_postmortem,
    investigation_state,
    resolve_root_cause,
    show_impact,
)
from incidentbook.postmortems.library import Entry, Library, LibraryError, Version
from incidentbook.postmortems.search import SearchIndex


def similar_incidents(services: list[str], alertnames: list[str] = (), templates: list[str] = (),  # type: ignore[assignment]
                      limit: int = 5, library: Library | None = None) -> list[dict]:  # type: ignore[type-arg]
    """Past incidents like this one from the workspace's library (empty when there is none)."""
    if library is None:
        from incidentbook.config import load_config

        library = Library.from_config(load_config())
    if not library.path.is_dir():
        return []
    return library.similar_incidents(list(services), list(alertnames), list(templates), limit)


__all__ = [
    "Draft", "Entry", "Impact", "Library", "LibraryError", "SearchIndex", "Version", "close_incident",
    "compute_impact", "draft_postmortem", "investigation_state", "resolve_root_cause", "show_impact",
    "similar_incidents",
]
