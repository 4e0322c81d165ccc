"""The postmortem library: redacted, versioned (git), rendered and searchable archives.

Layout of one entry, `library/<year>/<ID>-<slug>/`: `postmortem.ipynb`, `incident.ipynb`,
`bundle/` (the telemetry bundle), `meta.json` (schema-versioned facts for search and evals),
`postmortem.html`, `postmortem.md` (a plain view so diffs read well) and `redaction.json`
(what was replaced, never the values). Every archive or change is one git commit touching only
that entry and `index.html`; `history` lists them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nbformat

from incidentbook.errors import BadInput, IncidentbookError, NotFound
from incidentbook.postmortems.draft import (
    DEFAULT_SLO,
    draft_postmortem,
    postmortem_path,
    read_notebook,
)
from incidentbook.postmortems.render import (
    PLOTLY_JS,
    STATIC_DIR,
    ensure_static,
    render_html,
    render_markdown,
    write_index,
)
from incidentbook.postmortems.search import (
    INDEX_NAME,
    SearchIndex,
    doc_from_meta,
    fts_terms,
    iter_meta,
)
from incidentbook.redact import Redactor

META_SCHEMA = 1
BUNDLE_FILES = ("manifest.json", "metrics.parquet", "logs.jsonl", "events.jsonl", "changes.jsonl", "context.jsonl")
GITIGNORE = f"{STATIC_DIR}/\n{INDEX_NAME}*\n"


class LibraryError(IncidentbookError):
    """The library's git repository refused an operation."""


def slugify(text: str, limit: int = 48) -> str:
    """A short lower-case, dash-separated slug of a title."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (slug[:limit].rstrip("-") or "incident")


@dataclass
class Entry:
    """One archived postmortem."""

    id: str
    path: Path
    meta: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (meta plus paths)."""
        return {**self.meta, "path": str(self.path), "html": str(self.path / "postmortem.html")}


@dataclass
class Version:
    """One commit that touched an entry."""

    commit: str
    author: str
    date: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"commit": self.commit, "author": self.author, "date": self.date, "message": self.message}


class Library:
    """The library directory at `path` (the source of truth; the search index is a cache)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser().resolve()

    @classmethod
    def from_config(cls, cfg: Any) -> Library:
        """The workspace's library (`[library] path`)."""
        return cls(cfg.library_path)

    # ---- git --------------------------------------------------------------------------------
    def _git(self, *args: str, check: bool = True) -> str:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        for k, v in (("GIT_AUTHOR_NAME", _user()), ("GIT_COMMITTER_NAME", _user()),
                     ("GIT_AUTHOR_EMAIL", f"{_user()}@incidentbook.local"),
                     ("GIT_COMMITTER_EMAIL", f"{_user()}@incidentbook.local")):
            env.setdefault(k, v)
        try:
            p = subprocess.run(["git", "-C", str(self.path), *args], capture_output=True, text=True, env=env)
        except FileNotFoundError:
            raise LibraryError("git is not installed; the library needs it for versions (apt-get install git)") from None
        if check and p.returncode != 0:
            raise LibraryError(f"git {args[0]} failed in {self.path}: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}")
        return p.stdout

    def is_repo(self) -> bool:
        """Whether the library directory is inside a git work tree."""
        if not self.path.is_dir():
            return False
        return self._git("rev-parse", "--is-inside-work-tree", check=False).strip() == "true"

    def ensure_repo(self) -> None:
        """Make an empty or missing library a git repository; refuse a non-empty non-repository."""
        if self.is_repo():
            return
        if self.path.exists() and not self.path.is_dir():
            raise BadInput(f"library path {self.path} is a file; point [library] path at a directory")
        if self.path.is_dir() and any(p.name not in (".gitignore", STATIC_DIR, INDEX_NAME) for p in self.path.iterdir()):
            raise BadInput(f"library {self.path} is not a git repository but has files; run `git init {self.path}` "
                           "and commit them, or point [library] path at an empty directory")
        self.path.mkdir(parents=True, exist_ok=True)
        self._git("init", "-q")
        (self.path / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
        self._git("add", "--", ".gitignore")
        self._git("commit", "-q", "-m", "Start the postmortem library", "--", ".gitignore")

    def _require_repo(self) -> None:
        if not self.path.is_dir():
            raise NotFound(f"no library at {self.path}; archive a postmortem with `incidentbook library add ID` first")
        if not self.is_repo():
            raise BadInput(f"library {self.path} is not a git repository; run `git init {self.path}` "
                           "(versions need git)")

    # ---- entries ----------------------------------------------------------------------------
    def entries(self) -> list[Entry]:
        """Every archived postmortem."""
        return [Entry(m["id"], p, m) for m, p in iter_meta(self.path)]

    def find(self, incident_id: str) -> Entry | None:
        """The entry of `incident_id`, or None."""
        key = incident_id.strip().upper()
        for meta_path in self.path.glob(f"[0-9][0-9][0-9][0-9]/{key}-*/meta.json"):
            return Entry(key, meta_path.parent, json.loads(meta_path.read_text(encoding="utf-8")))
        return None

    def get(self, incident_id: str) -> Entry:
        """The entry of `incident_id`; NotFound says how to search."""
        entry = self.find(incident_id)
        if entry is None:
            raise NotFound(f"no postmortem {incident_id!r} in the library {self.path}; "
                           "`incidentbook library search QUERY` lists what is there")
        return entry

    def history(self, incident_id: str) -> list[Version]:
        """The versions of an entry, newest first."""
        entry = self.get(incident_id)
        self._require_repo()
        out = self._git("log", "--format=%H%x1f%an%x1f%aI%x1f%s", "--", str(entry.path))
        versions = []
        for line in out.splitlines():
            commit, author, date, message = line.split("\x1f", 3)
            versions.append(Version(commit, author, date, message))
        return versions

    # ---- archive ----------------------------------------------------------------------------
    def add(self, cfg: Any, store: Any, incident_id: str, *, slo: float = DEFAULT_SLO,
            redactor: Redactor | None = None) -> tuple[Entry, bool]:
        """Archive (or re-archive) a closed incident's postmortem; returns the entry and whether it is new.

        The source is the draft beside the incident notebook (drafted now if there is none). When
        the library copy of `postmortem.ipynb` has uncommitted edits, those are archived instead.
        BadInput when nothing changed since the last version.
        """
        incident = store.get_incident(incident_id)
        if incident.status != "closed":
            raise BadInput(f"{incident.id} is still open; close it first: incidentbook incidents close {incident.id}")
        self.ensure_repo()
        draft = postmortem_path(cfg, incident.id)
        if not draft.exists():
            draft = draft_postmortem(cfg, store, incident.id, slo=slo).path
        existing = self.find(incident.id)
        source = draft
        if existing is not None:
            lib_copy = existing.path / "postmortem.ipynb"
            if self._git("status", "--porcelain", "--", str(lib_copy)).strip():
                source = lib_copy
        postmortem = read_notebook(source)
        incident_nb = read_notebook(incident.notebook) if incident.notebook else None
        redactor = redactor or Redactor.from_config(cfg)
        year = incident.created.strftime("%Y")
        entry_dir = existing.path if existing else self.path / year / f"{incident.id}-{slugify(incident.title)}"
        staging = entry_dir.with_name(entry_dir.name + ".staging")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            pm = redact_notebook(postmortem, redactor, "postmortem.ipynb")
            nbformat.write(pm, staging / "postmortem.ipynb")
            if incident_nb is not None:
                from incidentbook.charts import add_static_html

                for cell in incident_nb.cells:
                    add_static_html(cell)
                nbformat.write(redact_notebook(incident_nb, redactor, "incident.ipynb"), staging / "incident.ipynb")
            templates: list[str] = []
            if incident.bundle:
                copy_bundle(Path(incident.bundle), staging / "bundle", redactor)
                templates = error_templates(staging / "bundle")
            meta = build_meta(incident, store.alerts(incident.id), pm, templates)
            if existing is not None and existing.meta.get("confluence"):
                meta["confluence"] = existing.meta["confluence"]  # the published page stays the same page
            meta = redactor.redact_obj(meta, "meta.json")
            (staging / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            (staging / "redaction.json").write_text(json.dumps(redactor.report(), indent=2, sort_keys=True) + "\n",
                                                    encoding="utf-8")
            depth = "../" * len(entry_dir.relative_to(self.path).parts)
            render_html(pm, staging / "postmortem.html", f"{depth}{STATIC_DIR}/{PLOTLY_JS}")
            render_markdown(pm, staging / "postmortem.md")
            if existing is not None and _same_tree(staging, entry_dir, ignore=("redaction.json",)):
                raise BadInput(f"{incident.id} is already archived at {entry_dir} and nothing changed; "
                               f"edit {draft} (or the library copy) and run `incidentbook library add {incident.id}` again")
            # The previous version is kept aside (with any uncommitted edits) until the commit
            # succeeds: a failed add leaves the library exactly as it was, so a re-run works.
            previous = entry_dir.with_name(entry_dir.name + ".previous")
            shutil.rmtree(previous, ignore_errors=True)
            if entry_dir.exists():
                entry_dir.rename(previous)
            staging.rename(entry_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        index_html = self.path / "index.html"
        old_index = index_html.read_bytes() if index_html.exists() else None
        rel = str(entry_dir.relative_to(self.path))
        verb = "Update" if existing else "Archive"
        try:
            ensure_static(self.path)
            write_index(self.path, [(m, p) for m, p in iter_meta(self.path)])
            self._git("add", "-A", "--", rel, "index.html")
            self._git("commit", "-q", "-m", _commit_message(f"{verb} {incident.id}: {meta['title']}"),
                      "--", rel, "index.html")
        except BaseException:
            self._git("reset", "-q", "--", rel, "index.html", check=False)  # unstage what was added
            shutil.rmtree(entry_dir, ignore_errors=True)
            if previous.exists():
                previous.rename(entry_dir)
            if old_index is None:
                index_html.unlink(missing_ok=True)
            else:
                index_html.write_bytes(old_index)
            raise
        shutil.rmtree(previous, ignore_errors=True)
        redactor.save()
        entry = Entry(incident.id, entry_dir, meta)
        idx = self.index()
        idx.upsert(doc_from_meta(meta, str(entry_dir)), self.fingerprint())
        idx.close()
        store.add_event(incident.id, "postmortem_archived", f"postmortem {verb.lower()}d in the library at {entry_dir}",
                        data={"path": str(entry_dir), "redacted": redactor.report()["total"]})
        return entry, existing is None

    # ---- search -----------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """Changes whenever an entry is added or removed (year directories' mtimes and names)."""
        parts = []
        if self.path.is_dir():
            for d in sorted(self.path.glob("[0-9][0-9][0-9][0-9]")):
                parts.append(f"{d.name}:{d.stat().st_mtime_ns}")
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def index(self, rebuild: bool = False) -> SearchIndex:
        """The search index, rebuilt from the entries' meta.json when stale or when asked."""
        if not self.path.is_dir():
            raise NotFound(f"no library at {self.path}; archive a postmortem with `incidentbook library add ID` first")
        idx = SearchIndex(self.path / INDEX_NAME)
        fp = self.fingerprint()
        if rebuild or idx.fingerprint() != fp:
            idx.rebuild((doc_from_meta(m, str(p)) for m, p in iter_meta(self.path)), fp)
        return idx

    def search(self, query: str = "", *, service: str | None = None, since: str | None = None,
               severity: str | None = None, limit: int = 20, any_term: bool = False) -> list[dict[str, Any]]:
        """Postmortems matching `query` (every word), best first; see `SearchIndex.search`."""
        idx = self.index()
        try:
            return idx.search(query, service=service, since=since, severity=severity, limit=limit, any_term=any_term)
        finally:
            idx.close()

    def similar_incidents(self, services: list[str], alertnames: list[str] = (), templates: list[str] = (),  # type: ignore[assignment]
                          limit: int = 5) -> list[dict[str, Any]]:
        """Past incidents sharing services, alert names or log templates, most similar first.

        For investigators: any shared term counts, BM25 ranks (rarer shared terms count more).
        """
        words = [*services, *alertnames, *templates]
        if not any(fts_terms(w) for w in words):
            return []
        return self.search(" ".join(words), limit=limit, any_term=True)


def _commit_message(text: str) -> str:
    """A commit message git accepts: no NUL or control characters, no lone surrogates."""
    import re

    clean = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", " ", text)
    return clean.encode("utf-8", "backslashreplace").decode("utf-8")


def _user() -> str:
    return os.environ.get("JUPYTERHUB_USER") or os.environ.get("USER") or "incidentbook"


def _same_tree(a: Path, b: Path, ignore: tuple[str, ...] = ()) -> bool:
    if not b.is_dir():
        return False

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
                if p.is_file() and p.name not in ignore}

    return files(a) == files(b)


# ---------------------------------------------------------------------------------- redaction

def redact_notebook(nb: Any, redactor: Redactor, where: str) -> Any:
    """A redacted copy of a notebook: cell sources, outputs, attachments and metadata, each
    redacted as one text (see `incidentbook.redact.redact_notebook`)."""
    from incidentbook.redact import redact_notebook as redact_whole

    return redact_whole(nb, redactor, where)


def copy_bundle(src: Path, dst: Path, redactor: Redactor) -> Path:
    """Copy a telemetry bundle's files into the library, every text and label redacted."""
    import pandas as pd

    from incidentbook.telemetry.bundle import open_bundle

    bundle = open_bundle(src)
    dst.mkdir(parents=True, exist_ok=True)
    manifest = redactor.redact_obj(bundle.manifest, "bundle/manifest.json")
    manifest.pop("alerts", None)  # scenario payload files are not archived
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for name in ("logs", "events", "changes", "context"):
        rows = bundle._jsonl(name)
        with (dst / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(redactor.redact_obj(row, f"bundle/{name}.jsonl"), sort_keys=True) + "\n")
    if (src / "metrics.parquet").exists():
        df = pd.read_parquet(src / "metrics.parquet")
        if "labels" in df.columns:
            mapping = {v: redactor.redact(v, "bundle/metrics.parquet") for v in df["labels"].unique()}
            df["labels"] = df["labels"].map(mapping)
        df.to_parquet(dst / "metrics.parquet", index=False)
    return dst


def error_templates(bundle_dir: Path, limit: int = 10) -> list[str]:
    """The most frequent drain3 templates of the bundle's error log lines."""
    from incidentbook.analysis.logs import looks_like_error, template_miner

    miner = template_miner()
    counts: Counter[int] = Counter()
    path = bundle_dir / "logs.jsonl"
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                text = str(json.loads(line).get("line", ""))
            except ValueError:
                continue
            if looks_like_error(text):
                counts[miner.add_log_message(text)["cluster_id"]] += 1
    templates = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
    return [templates[cid] for cid, _ in counts.most_common(limit) if cid in templates]


def build_meta(incident: Any, alerts: list[Any], postmortem: Any, templates: list[str]) -> dict[str, Any]:
    """The entry's `meta.json` (schema version 1)."""
    info = postmortem.metadata.get("incidentbook", {})
    impact = info.get("impact") or {}
    rc = info.get("root_cause") or {}
    services = list(impact.get("services") or [])
    for s in [incident.service, *(a.labels.get("service", "") for a in alerts)]:
        if s and s not in services:
            services.append(s)
    return {
        "schema_version": META_SCHEMA,
        "id": incident.id,
        "title": incident.title,
        "summary": incident.summary or "",
        "severity": incident.severity or "",
        "services": services,
        "alertnames": sorted({a.alertname for a in alerts} | ({incident.alertname} if incident.alertname else set())),
        "namespace": incident.namespace or "",
        "root_cause": {"kind": rc.get("fault_kind") or "unknown", "service": rc.get("service") or "",
                       "statement": rc.get("statement") or incident.root_cause or "",
                       "hypothesis": rc.get("id") or ""},
        "duration_s": impact.get("duration_s"),
        "impact": {k: impact.get(k) for k in ("start", "end", "requests", "failed_requests", "error_ratio",
                                              "budget_burned", "slo")},
        "log_templates": templates,
        "tags": sorted({incident.severity, incident.namespace, rc.get("fault_kind") or ""} - {"", None}),
        "opened": incident.created.isoformat(),
        "closed": (incident.closed_at or datetime.now(timezone.utc)).isoformat(),
        "closed_by": incident.closed_by or "",
        "runbook": incident.runbook or "",
    }
