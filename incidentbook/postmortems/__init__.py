"""Postmortems: drafting from a closed incident, redaction, the versioned library, render, search."""

from typing import Any

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
                      limit: int = 5, library: Library | None = None, cfg: Any = None) -> list[dict]:  # type: ignore[type-arg]
    """Past incidents like this one from the workspace's library (empty when there is none).

    With `cfg` (default: the workspace's when `library` is not given) and `[confluence]` set, pages
    of the Confluence space that share words with them are added after the library's hits.
    """
    if library is None:
        from incidentbook.config import load_config

        cfg = cfg if cfg is not None else load_config()
        library = Library.from_config(cfg)
    found = library.similar_incidents(list(services), list(alertnames), list(templates), limit) \
        if library.path.is_dir() else []
    if cfg is not None:
        from incidentbook.postmortems.history import confluence_history

        space = confluence_history(cfg)
        if space is not None:  # past postmortems that live only in Confluence (failures: [] and a note)
            ids = {str(h.get("id", "")).upper() for h in found}
            found += [p for p in space.search(" ".join([*services, *alertnames]), any_word=True)
                      if p["title"].split(":", 1)[0].strip().upper() not in ids][: max(limit - len(found), 0)]
    return found


__all__ = [
    "Draft", "Entry", "Impact", "Library", "LibraryError", "SearchIndex", "Version", "close_incident",
    "compute_impact", "draft_postmortem", "investigation_state", "resolve_root_cause", "show_impact",
    "similar_incidents",
]
