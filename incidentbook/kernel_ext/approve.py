"""%approve --list: the write actions waiting at the broker; and the Approve link under a preview.

A kernel cannot approve: `%approve ACT-…` says where a person approves instead (a terminal, or
the Approve link, which opens the Jupyter server extension's page for that action).
"""

from __future__ import annotations

import html
import os
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from incidentbook.actions.labext import APPROVE_URL_ENV
from incidentbook.kernel_ext._common import BaseMagics, one_line_errors


def show_approve_link(action: dict[str, Any]) -> None:
    """Show an Approve link under a pending action's preview (when the server extension runs)."""
    base = os.environ.get(APPROVE_URL_ENV, "")
    if not base:
        return
    from IPython.display import HTML, display

    aid = html.escape(str(action["id"]))
    href = html.escape(base.rstrip("/") + "/" + str(action["id"]), quote=True)
    display(HTML(f'<p class="incidentbook-approve">Pending {aid}: '
                 f'<a href="{href}" target="_blank" rel="noopener">Review and approve {aid}</a> '
                 "(opens the action's page; approving there is the decision, running this cell is not)</p>"))


@magics_class
class ActionMagics(BaseMagics):
    """Write actions waiting at the broker."""

    @magic_arguments()
    @argument("action_id", nargs="?", help="a pending action, e.g. ACT-20261123-3F9A1C2B")
    @argument("-l", "--list", action="store_true", help="list actions waiting for approval")
    @line_magic
    @one_line_errors
    def approve(self, line: str) -> Any:
        """List pending write actions (--list); approving happens outside the kernel."""
        from incidentbook import actions

        args = parse_argstring(self.approve, line)
        if args.list or not args.action_id:
            if not args.list:
                raise UsageError("%approve --list shows pending actions; approve one with "
                                 "`incidentbook actions approve ACT-…` in a terminal")
            import pandas as pd

            rows = actions.pending_actions()
            return pd.DataFrame([{"action": r["id"], "requested_by": r["requested_by"], "time": r["requested_at"],
                                  "summary": r["summary"]} for r in rows],
                                columns=["action", "requested_by", "time", "summary"])
        return actions.approve(args.action_id)
