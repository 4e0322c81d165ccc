"""incidentbook: incident notebooks that already hold the evidence.

An alert opens an incident, the matching runbook notebook runs with papermill, and the
on-call engineer opens a notebook with the evidence, hypotheses and proposed next cells.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "act", "load_ipython_extension", "unload_ipython_extension"]


def __getattr__(name: str) -> Any:
    # `import incidentbook as ib; ib.act.scale(...)` without importing the action API at start-up.
    if name == "act":
        from incidentbook import actions

        return actions
    raise AttributeError(f"module 'incidentbook' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext incidentbook`: register the magics (imported lazily to keep start-up cheap)."""
    from incidentbook import kernel_ext

    kernel_ext.load_ipython_extension(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """`%unload_ext incidentbook`: reverse everything `load_ipython_extension` did."""
    from incidentbook import kernel_ext

    kernel_ext.unload_ipython_extension(ipython)
