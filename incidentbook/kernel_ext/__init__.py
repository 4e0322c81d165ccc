"""The IPython extension: `%load_ext incidentbook`.

Loading registers the magics (one Magics class per area), the cell callbacks that write every
execution to the incident timeline, a one-line renderer for incidentbook's expected errors, the
action guard's context and `ib` (with `ib.act`) in the user namespace. Loading never touches the
network, so an unreachable source cannot break it; `%sources` reports each source's status.
Unloading reverses all of it.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

__all__ = ["load_ipython_extension", "unload_ipython_extension", "get_session"]

_loaded: dict[int, dict[str, Any]] = {}


def get_session(shell: Any = None) -> Any:
    """The extension's Session in `shell` (default: the running IPython), or None if not loaded."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    state = _loaded.get(id(shell))
    return state["session"] if state else None


def _one_line(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None) -> None:
    """Show an expected error (bad input, policy denial, approval needed) as one line, no traceback."""
    # IPython ignores what a custom handler returns, so show it here; in a kernel this is an
    # `error` output (papermill and nbclient see the cell failed), in a terminal one printed line.
    shell._showtraceback(etype, value, [f"{etype.__name__}: {value}"])


def _action_context(session: Any) -> Any:
    from incidentbook.actions import ActionContext, current_user
    from incidentbook.actions.broker import BrokerClient, socket_path

    cfg = session.cfg
    labels = session.shell.user_ns.get("labels")
    ns = labels.get("namespace", "") if isinstance(labels, dict) else ""
    iid = session.bound()
    if not ns and iid:
        try:
            ns = session.store.get_incident(iid).namespace
        except Exception:  # the store being down must not hide the action's own error
            ns = ""
    client = session.broker_client or BrokerClient(socket_path(cfg.home))
    from incidentbook.kernel_ext.approve import show_approve_link

    return ActionContext(user=current_user(), headless=session.headless or session.detect_headless(),
                         broker=client.call, incident_id=iid, default_namespace=ns,
                         proposal_id=session._cell_proposal, propose=lambda p: session.propose(p), show=print,
                         show_approval=show_approve_link, audit_path=cfg.audit_log)


def load_ipython_extension(ipython: Any) -> None:
    """Register magics, cell callbacks, the error renderer, the action guard and `ib`."""
    if id(ipython) in _loaded:
        return
    from incidentbook import actions
    from incidentbook.errors import IncidentbookError
    from incidentbook.kernel_ext.approve import ActionMagics
    from incidentbook.kernel_ext.incident import IncidentMagics
    from incidentbook.kernel_ext.investigate import InvestigateMagics
    from incidentbook.kernel_ext.query import QueryMagics
    from incidentbook.kernel_ext.session import Session

    session = Session(ipython)
    magics = [cls(ipython, session, parent=ipython) for cls in
              (IncidentMagics, QueryMagics, InvestigateMagics, ActionMagics)]
    for m in magics:
        ipython.register_magics(m)
    ipython.events.register("pre_run_cell", session.pre_run_cell)
    ipython.events.register("post_run_cell", session.post_run_cell)
    state: dict[str, Any] = {
        "session": session, "magics": magics,
        "custom_exc": (ipython.custom_exceptions, ipython.CustomTB),
    }
    ipython.set_custom_exc((IncidentbookError,), _one_line)
    actions.set_context_provider(lambda: _action_context(session))
    if "ib" not in ipython.user_ns:
        ib = SimpleNamespace(act=actions, session=session,
                             investigate=lambda q="": ipython.run_line_magic("investigate", q))
        ipython.push({"ib": ib}, interactive=False)
        state["ib"] = ib
    _loaded[id(ipython)] = state
    mode = "headless run: proposals are recorded, writes need a person" if session.headless else "live"
    iid = session.incident_id or ipython.user_ns.get("incident_id")
    where = f"bound to {iid}" if isinstance(iid, str) and iid else "no incident bound (%incident use INC-…)"
    if not session.headless:
        print(f"incidentbook loaded ({mode}); {where}. {_config_status(session)}")


def _config_status(session: Any) -> str:
    """What is configured, from the config alone (no network: loading must stay cheap and never fail)."""
    from incidentbook.errors import IncidentbookError

    try:
        names = sorted(session.cfg.sources)
    except IncidentbookError as e:
        return f"Config problem: {e}"
    if isinstance(session.shell.user_ns.get("bundle"), str) and session.shell.user_ns.get("bundle"):
        return "Telemetry: the incident's recorded bundle. %investigate to start."
    listed = ", ".join(names) if names else "none configured"
    return f"Sources: {listed} (%sources checks each one). %investigate to start."


def unload_ipython_extension(ipython: Any) -> None:
    """Remove everything `load_ipython_extension` added."""
    state = _loaded.pop(id(ipython), None)
    if state is None:
        return
    from incidentbook import actions

    session = state["session"]
    for ev, cb in (("pre_run_cell", session.pre_run_cell), ("post_run_cell", session.post_run_cell)):
        try:
            ipython.events.unregister(ev, cb)
        except ValueError:
            pass
    mm = ipython.magics_manager
    for m in state["magics"]:
        for kind, names in m.magics.items():
            for name in names:
                mm.magics[kind].pop(name, None)
        mm.registry.pop(type(m).__name__, None)
    exc, handler = state["custom_exc"]
    ipython.custom_exceptions = exc
    ipython.CustomTB = handler
    actions.set_context_provider(None)
    if "ib" in state and ipython.user_ns.get("ib") is state["ib"]:
        del ipython.user_ns["ib"]
        ipython.user_ns_hidden.pop("ib", None)
    if session._store is not None:
        try:
            session._store.close()
        except Exception:  # closing a pool must not make unload fail
            pass
