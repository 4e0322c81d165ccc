"""%approve: a second person approves a pending write action."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from incidentbook.kernel_ext._common import BaseMagics, one_line_errors


@magics_class
class ActionMagics(BaseMagics):
    """Write actions waiting for a second person."""

    @magic_arguments()
    @argument("action_id", nargs="?", help="the pending action, e.g. ACT-20261123-3F9A1C")
    @argument("-l", "--list", action="store_true", help="list actions waiting for approval")
    @line_magic
    @one_line_errors
    def approve(self, line: str) -> Any:
        """Approve and run a write action someone else requested: %approve ACTION-ID (or --list)."""
        from incidentbook import actions

        args = parse_argstring(self.approve, line)
        if args.list or not args.action_id:
            if not args.list:
                raise UsageError("%approve needs an action id, e.g. %approve ACT-20261123-3F9A1C (or --list)")
            import pandas as pd

            rows = actions.pending_actions(self.session.cfg.audit_log)
            return pd.DataFrame([{"action": r["action_id"], "requested_by": r["user"], "time": r["time"],
                                  "summary": r["summary"]} for r in rows],
                                columns=["action", "requested_by", "time", "summary"])
        return actions.approve(args.action_id)
