"""Telemetry: sources (live and replayed) and bundles."""

from incidentbook.telemetry.bundle import SCHEMA_VERSION, Bundle, open_bundle, write_bundle

__all__ = ["SCHEMA_VERSION", "Bundle", "open_bundle", "write_bundle"]
