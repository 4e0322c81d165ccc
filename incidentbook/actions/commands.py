"""The command line of the action broker: `incidentbook broker` and `incidentbook actions …`.

`actions approve` is the terminal approval channel: the broker identifies the approver as the OS
user at the other end of its socket, and refuses a process started from a notebook kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from incidentbook.errors import ActionDenied, BadInput


def _config(args: argparse.Namespace) -> Any:
    from incidentbook.config import load_config

    return load_config(path=Path(args.config) if getattr(args, "config", None) else None)


def _client(args: argparse.Namespace) -> Any:
    from incidentbook.actions.broker import BrokerClient, socket_path

    return BrokerClient(Path(args.socket) if getattr(args, "socket", None) else socket_path(_config(args).home))


def _json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _describe(a: dict[str, Any]) -> str:
    approvals = ", ".join(f"{p['who']} via {p['via']} at {p['at']}" for p in a.get("approvals", [])) or "none"
    lines = [f"{a['id']}  {a['status']}  {a['summary']}",
             f"  incident {a.get('incident') or '-'}, proposal {a.get('proposal') or '-'}, environment {a['environment']}"
             + (" (needs a second person)" if a.get("second_approver") else ""),
             f"  requested by {a['requested_by']} via {a['requested_via']} at {a['requested_at']}: "
             f"{a.get('reason') or '(no reason given)'}",
             f"  dry run: {json.dumps(a.get('dry_run', {}).get('before'))} -> {json.dumps(a.get('dry_run', {}).get('after'))}",
             f"  approvals: {approvals}",
             f"  hash: {a['hash']}"]
    if a.get("result"):
        lines.append(f"  result: {json.dumps(a['result'])}")
    return "\n".join(lines)


def cmd_broker(args: argparse.Namespace) -> int:
    """Run the broker on its socket until interrupted."""
    from incidentbook.actions.broker import (
        RELAY_TOKEN_ENV,
        Broker,
        BrokerServer,
        socket_path,
        write_relay_token,
    )

    cfg = _config(args)
    token = write_relay_token(cfg.home, os.environ.get(RELAY_TOKEN_ENV, ""))
    broker = Broker.from_config(cfg, relay_token=token)
    path = Path(args.socket) if args.socket else socket_path(cfg.home)
    server = BrokerServer(broker, path, shared=args.shared)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.serve_in_thread()
    if args.json:
        _json({"socket": str(path), "audit_log": str(cfg.audit_log), "shared": args.shared})
        sys.stdout.flush()
    else:
        print(f"action broker listening at {path} (audit log {cfg.audit_log}); approve with "
              "`incidentbook actions approve ACT-…`; Ctrl-C stops it", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


def cmd_actions_list(args: argparse.Namespace) -> int:
    """List the broker's actions."""
    rows = _client(args).call("list", status=args.status)["actions"]
    if args.json:
        _json({"actions": rows})
        return 0
    if not rows:
        print("no actions" + (f" with status {args.status}" if args.status else ""))
    for a in rows:
        print(f"{a['id']}  {a['status']:<8}  {a['summary']}  (requested by {a['requested_by']})")
    return 0


def cmd_actions_show(args: argparse.Namespace) -> int:
    """Show one action with its dry run and hash."""
    a = _client(args).call("show", id=args.action_id)["action"]
    if args.json:
        _json(a)
    else:
        print(_describe(a))
    return 0


def cmd_actions_approve(args: argparse.Namespace) -> int:
    """Approve one action: show it, confirm, and send the approval bound to the hash shown."""
    client = _client(args)
    a = client.call("show", id=args.action_id)["action"]
    if args.hash and not a["hash"].startswith(args.hash):
        raise ActionDenied(f"{args.action_id} has hash {a['hash'][:12]}…, not {args.hash}: it is not what you reviewed")
    if not args.json:
        print(_describe(a))
    if not args.yes:
        if not sys.stdin.isatty():
            raise BadInput("approving needs a confirmation: run it in a terminal, or pass --yes after reviewing "
                           f"`incidentbook actions show {args.action_id}`")
        typed = input(f"Type {args.action_id} to approve it: ").strip()
        if typed != args.action_id:
            print("not approved")
            return 1
    done = client.call("approve", id=args.action_id, hash=a["hash"])["action"]
    if args.json:
        _json(done)
    else:
        who = ", ".join(p["who"] for p in done["approvals"])
        print(f"{done['id']} {done['status']}: {done['summary']} (approved by {who})")
    return 0


def cmd_actions_veto(args: argparse.Namespace) -> int:
    """Cancel a pending action."""
    done = _client(args).call("veto", id=args.action_id, reason=args.reason)["action"]
    if args.json:
        _json(done)
    else:
        print(f"{done['id']} vetoed")
    return 0


def add_commands(sub: Any) -> None:
    """Add `broker` and `actions …` to the top-level subparsers."""
    p = sub.add_parser("broker", help="run the action broker (holds write credentials; approvals go through it)",
                       description="Run the action broker for this workspace on a Unix socket. Kernels send it "
                                   "write requests; people approve them with `incidentbook actions approve`.")
    p.add_argument("--socket", metavar="PATH", help="default: $INCIDENTBOOK_BROKER_SOCKET or <home>/broker.sock")
    p.add_argument("--shared", action="store_true",
                   help="let other OS users connect (team mode); each is identified by their OS user")
    p.add_argument("--json", action="store_true", help="print the socket path as one JSON document")
    p.set_defaults(func=cmd_broker)
    ac = sub.add_parser("actions", help="write actions at the broker: list, show, approve, veto"
                        ).add_subparsers(dest="sub", metavar="SUBCOMMAND")
    ac.required = True
    for name, fn, helptext in (("list", cmd_actions_list, "actions (pending and done), oldest first"),
                               ("show", cmd_actions_show, "one action: target, dry run, approvals, hash"),
                               ("approve", cmd_actions_approve, "approve an action as yourself (it runs when approved)"),
                               ("veto", cmd_actions_veto, "cancel a pending action")):
        p = ac.add_parser(name, help=helptext)
        if name == "list":
            p.add_argument("--status", choices=["pending", "executed", "failed", "vetoed"])
        else:
            p.add_argument("action_id", metavar="ACT-ID")
        if name == "approve":
            p.add_argument("--hash", metavar="PREFIX", help="refuse unless the action's hash starts with this")
            p.add_argument("--yes", action="store_true", help="skip the typed confirmation (after reviewing it)")
        if name == "veto":
            p.add_argument("--reason", default="")
        p.add_argument("--socket", metavar="PATH", help="the broker's socket (default <home>/broker.sock)")
        p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
        p.set_defaults(func=fn)
