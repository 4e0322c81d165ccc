"""Per case: which services the investigator could not read (the `coverage` of `eval --json`).

`case_coverage` asks the signal catalogue (`incidentbook.telemetry.signals`) when it is
installed; without it, `coverage_without_catalogue` applies a name-pattern heuristic over the
bundle's series. Both return the same shape: `services` (count), `readable` (services with an
error or latency signal), `no_red` (services with neither), `missing` (service -> groups of
requests/errors/latency with no series), `dialects` (service -> dialects used, empty for the
heuristic), `source` ("catalogue" or "heuristic").
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from incidentbook.telemetry.bundle import open_bundle

#: Labels that name the service a series belongs to, as common exporters and scrape configs set them.
SERVICE_LABELS = ("service", "job", "app", "service_name", "exported_service", "destination_workload",
                  "destination_service_name", "container", "application")
_REQUESTS = re.compile(r"(^|_)(requests?(_total|_count)?|rq(_total|_xx)?|handled_total|started_total|request_count)$"
                       r"|_requests_seconds_count$|_request_duration(_seconds)?_count$|^requests$")
_LATENCY = re.compile(r"(duration|latency|handling_seconds|rq_time|response_time)(_seconds|_milliseconds|_ms)?"
                      r"(_bucket|_sum|_count)?$|^latency$")
_ERROR_LABELS = {"status", "code", "status_code", "grpc_code", "response_code", "http_response_status_code",
                 "envoy_response_code", "envoy_response_code_class", "outcome", "statistic"}
_ERROR_NAMES = re.compile(r"(error|failure|fail)s?(_total)?$|^availability$")


def _series_labels(bundle_dir: Path) -> pd.DataFrame:
    df = open_bundle(bundle_dir).metrics
    return df[["metric", "labels"]].drop_duplicates()


def coverage_without_catalogue(bundle_dir: str | Path) -> dict[str, Any]:
    """Services of the bundle with no readable request / error / latency series, by name patterns.

    A stand-in for the signal catalogue's coverage: a series counts for a service when one of
    SERVICE_LABELS equals the service's name.
    """
    b = open_bundle(bundle_dir)
    services = list(b.services)
    found: dict[str, set[str]] = {s: set() for s in services}
    known = set(services)
    for metric, labels_json in _series_labels(Path(bundle_dir)).itertuples(index=False):
        try:
            labels = json.loads(labels_json)
        except ValueError:
            continue
        owners = {v for k, v in labels.items() if k in SERVICE_LABELS and v in known}
        if not owners:
            continue
        groups = set()
        if _REQUESTS.search(metric):
            groups.add("requests")
        if _LATENCY.search(metric):
            groups.add("latency")
        if _ERROR_NAMES.search(metric) or ((_REQUESTS.search(metric) or _LATENCY.search(metric))
                                           and _ERROR_LABELS & set(labels)):
            groups.add("errors")
        for s in owners:
            found[s] |= groups
    missing = {s: [g for g in ("requests", "errors", "latency") if g not in found[s]] for s in services}
    no_red = [s for s in services if "errors" in missing[s] and "latency" in missing[s]]
    return {"services": len(services), "readable": len(services) - len(no_red), "no_red": no_red,
            "missing": missing, "dialects": {}, "source": "heuristic"}


def case_coverage(bundle_dir: str | Path) -> dict[str, Any]:
    """Coverage of one case, from the signal catalogue when installed, else the heuristic."""
    try:
        from incidentbook.telemetry.signals import Catalogue  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return coverage_without_catalogue(bundle_dir)
    b = open_bundle(bundle_dir)
    rows = []
    for metric, labels_json in _series_labels(Path(bundle_dir)).itertuples(index=False):
        rows.append({"__name__": metric, **json.loads(labels_json)})
    cov = dict(Catalogue().discover(pd.DataFrame(rows), list(b.services)).coverage(list(b.services)))
    cov["source"] = "catalogue"
    return cov
