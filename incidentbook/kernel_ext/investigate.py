"""%investigate, %hypotheses, %confirm, %refute, %propose: hypotheses and proposed next cells."""

from __future__ import annotations

import time
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Int, Unicode

from incidentbook.kernel_ext._common import BaseMagics, one_line_errors
from incidentbook.kernel_ext.display import show_board


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _live_board(ctx: Any) -> Any:
    """Show hypotheses and proposals as the investigator finds them (one display, updated in place)."""
    from IPython.display import display

    from incidentbook.kernel_ext.display import board_html

    found: list[Any] = []
    counts = {"proposals": 0}

    def render() -> dict[str, str]:
        note = f"investigating… {len(found)} hypotheses, {counts['proposals']} proposals so far"
        return {"text/html": board_html([h.to_dict() for h in found], [note]), "text/plain": note}

    handle = display(render(), raw=True, display_id=True)

    def on_hypothesis(h: Any) -> None:
        found.append(h)
        handle.update(render(), raw=True)

    def on_proposal(p: Any) -> None:
        counts["proposals"] += 1
        handle.update(render(), raw=True)

    ctx.on_hypothesis, ctx.on_proposal = on_hypothesis, on_proposal
    return handle


def _library(cfg: Any) -> Any:
    """The investigators' history (the postmortem library, and Confluence when configured), or None."""
    from incidentbook.postmortems.history import history_for

    try:
        return history_for(cfg)
    except Exception:  # history is optional evidence; a broken library must not stop an investigation
        return None


@magics_class
class InvestigateMagics(BaseMagics):
    """Run the investigator, keep the hypotheses board in the incident store."""

    investigator = Unicode("", help="Investigator to use; empty: [agent] investigator from incidentbook.toml.").tag(config=True)
    max_proposals = Int(4, help="At most this many proposed cells per investigation, best hypotheses first "
                              "(the board still lists every hypothesis and its checks).").tag(config=True)

    def _context(self, question: str) -> Any:
        from incidentbook.agent.base import InvestigationContext
        from incidentbook.errors import NotFound

        s = self.session
        iid = s.require()
        try:
            inc = s.store.get_incident(iid)
            alerts = [{"labels": a.labels, "annotations": a.annotations, "starts_at": a.starts_at.isoformat()}
                      for a in s.store.alerts(iid)]
            service, namespace = inc.service, inc.namespace
        except NotFound:
            # A runbook run by hand (papermill, nbmake) for an incident the store does not know:
            # investigate from the injected alert; the timeline write below says it was not kept.
            ns = self.shell.user_ns
            labels = dict(ns.get("labels") or {})
            alerts = [{"labels": labels, "annotations": dict(ns.get("annotations") or {}),
                       "starts_at": str(ns.get("starts_at") or "")}] if labels else []
            service, namespace = str(ns.get("service") or labels.get("service", "")), labels.get("namespace", "")
        tel = s.telemetry()
        services = []
        for a in alerts:
            svc = a["labels"].get("service")
            if svc and svc not in services:
                services.append(svc)
        if service and service not in services:
            services.append(service)
        topology: dict[str, list[str]] = {}
        bundle = getattr(tel, "bundle", None)
        if bundle is not None:
            topology = getattr(bundle, "topology", {}) or {}
            # The paged service is rarely the cause: look at every service the system has,
            # alerted ones first, so a root cause further down the graph can be found.
            services += [x for x in [*getattr(bundle, "services", []), *topology] if x not in services]
        ws, we = s.window()
        return InvestigationContext(incident_id=iid, alerts=alerts, window_start=ws, window_end=we, telemetry=tel,
                                    history=_library(s.cfg),
                                    services=services,
                                    topology=topology, namespace=namespace, question=question)

    def _investigator(self) -> tuple[Any, str]:
        from incidentbook.agent import simple  # noqa: F401  (registers the built-in fallback)
        from incidentbook.agent.base import investigators
        from incidentbook.errors import NotFound

        name = self.investigator or self.session.cfg.agent.investigator
        note = ""
        try:
            inv = investigators.get(name)
        except NotFound:
            note = f"investigator {name!r} is not installed; using the built-in 'simple' investigator instead"
            name, inv = "simple", investigators.get("simple")
        if isinstance(inv, type):
            inv = inv()
        return inv, note

    def current(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The latest investigation and its hypotheses with confirm/refute applied."""
        from incidentbook.postmortems.draft import investigation_state

        latest, hyps = investigation_state(self.session.store.timeline(self.session.require()))
        for h in hyps:
            note = h.pop("verdict_note", "")
            if note:
                key = "evidence_for" if h["status"] == "confirmed" else "evidence_against"
                h[key] = [*h.get(key, []), {"summary": f"{h['status']} by a person: {note}", "source": "human"}]
        return latest, hyps

    @magic_arguments()
    @argument("question", nargs="*", help="optional question to focus on; quote it when it ends in ?, e.g. \"why is checkout slow?\"")
    @argument("--investigator", default=None, help="investigator name for this run (default: configured)")
    @argument("--no-propose", action="store_true", help="show the board without proposing cells")
    @line_magic
    @one_line_errors
    def investigate(self, line: str) -> None:
        """Run the investigator on the bound incident: a hypotheses board and proposed next cells.

        In a live notebook the first proposal appears as a new cell below (never run for you);
        running a proposal cell is its approval and brings up the next one. In a headless run the
        proposals are recorded in the output and become cells when the run finishes.
        """
        args = parse_argstring(self.investigate, line)
        if args.investigator:
            self.investigator, saved = args.investigator, self.investigator
        else:
            saved = self.investigator
        try:
            inv, note = self._investigator()
        finally:
            self.investigator = saved
        if note:
            print(f"Note: {note}")
        ctx = self._context(_unquote(" ".join(args.question)))
        t0 = time.perf_counter()
        live = None if self.session.headless else _live_board(ctx)
        result = inv.investigate(ctx)
        result.notes += [n for n in getattr(ctx.history, "unavailable", []) if n not in result.notes]
        if live is not None:
            live.update({"text/plain": ""}, raw=True)  # the final board below replaces it
        result.duration_s = result.duration_s or round(time.perf_counter() - t0, 3)
        data = result.to_dict()
        self.session.record("investigation",
                            f"{result.investigator}: {len(result.hypotheses)} hypotheses, "
                            f"{len(result.proposals)} proposals", data, quiet=True)
        show_board(data["hypotheses"], result.notes, result.errors, widgets=self.widgets and not self.session.headless)
        if args.no_propose:
            return
        for p in result.proposals[: max(self.max_proposals, 0)]:
            p.id = self.session.propose(p.to_dict())
        if not self.session.headless:
            self.session.offer_next()
            if result.proposals:
                print(f"Proposed {len(result.proposals)} cells; the first is below. Running it approves it.")

    @magic_arguments()
    @line_magic
    @one_line_errors
    def hypotheses(self, line: str) -> None:
        """Show the current hypotheses board (latest investigation plus confirmations/refutations)."""
        parse_argstring(self.hypotheses, line)
        latest, hyps = self.current()
        if latest is None:
            raise UsageError("no investigation yet for this incident; run %investigate first")
        show_board(hyps, latest.get("notes", []), latest.get("errors", []),
                   widgets=self.widgets and not self.session.headless)

    def _verdict(self, kind: str, line: str, fn: Any) -> None:
        args = parse_argstring(fn, line)
        note = _unquote(" ".join(args.note))
        _, hyps = self.current()
        ids = [h["id"] for h in hyps]
        if args.hypothesis not in ids:
            raise UsageError(f"no hypothesis {args.hypothesis!r}; current ones: {', '.join(ids) or 'none (run %investigate)'}")
        if kind == "refuted" and not note:
            raise UsageError(f'%refute needs a reason, e.g. %refute {args.hypothesis} "error ratio flat after rollback"')
        self.session.record(f"hypothesis_{kind}", f"{args.hypothesis} {kind}" + (f": {note}" if note else ""),
                            {"hypothesis": args.hypothesis, "note": note, "who": self.session.user})
        print(f"{args.hypothesis} {kind}")

    @magic_arguments()
    @argument("hypothesis", help="hypothesis id, e.g. H2")
    @argument("note", nargs="*", help="optional note: what confirmed it")
    @line_magic
    @one_line_errors
    def confirm(self, line: str) -> None:
        """Mark a hypothesis confirmed (recorded on the timeline): %confirm H2 [note]"""
        self._verdict("confirmed", line, self.confirm)

    @magic_arguments()
    @argument("hypothesis", help="hypothesis id, e.g. H3")
    @argument("note", nargs="*", help='the reason, e.g. "no deploy in the window"')
    @line_magic
    @one_line_errors
    def refute(self, line: str) -> None:
        """Mark a hypothesis refuted with a reason (recorded on the timeline): %refute H3 "reason\""""
        self._verdict("refuted", line, self.refute)

    @magic_arguments()
    @argument("proposal", help="proposal id, e.g. P3")
    @line_magic
    @one_line_errors
    def propose(self, line: str) -> None:
        """Put a known proposal below as a new cell again (e.g. one you skipped): %propose P3"""
        args = parse_argstring(self.propose, line)
        self.session.require()
        if args.proposal not in self.session.proposals:
            known = ", ".join(sorted(self.session.proposals)) or "none"
            raise UsageError(f"no proposal {args.proposal!r}; known: {known}")
        if self.session.headless:
            from IPython.display import display

            from incidentbook.proposals import proposal_bundle

            display(proposal_bundle(self.session.proposals[args.proposal]), raw=True)
        else:
            self.session.queue.insert(0, args.proposal)
            self.session.offer_next()
