"""The Claude investigator: the rules investigator first, then a read-only tool-use loop.

    [agent]
    investigator = "claude"
    model = "claude-sonnet-4-6"           # default when empty
    api_key_env = "ANTHROPIC_API_KEY"     # the key is read from this variable, never the file
    base_url = ""                         # optional gateway
    max_turns = 12                        # model requests in one investigation
    max_tokens = 200000                   # input + output tokens over one investigation
    wall_clock_s = 120                    # the whole loop, retries included
    tool_result_tokens = 2000             # each tool result is summarised/cut to about this

How it works: the deterministic `rules` investigator runs first; its findings, the dependency
graph and the alerts are the model's starting context. The model then calls read-only tools
(`incidentbook.agent.tools`) through the same `Telemetry` sources a person uses, and records
hypotheses and proposed cells. Everything sent passes through the redactor (secrets, tokens,
keys, passwords, emails, IPs become pseudonyms); what the board shows is restored to the real
values. Telemetry text is sent as delimited data, never as instructions. No tool writes.

Failures (rate limits and overload after the SDK's retries with backoff, timeouts, malformed tool
input, a refusal, the turn, token or time budget running out) end the loop with a note saying
so; the rules findings and whatever the model found so far are always returned.

Cost: `Investigation.usage` holds token counts and `cost_usd` from `PRICES` (USD per million
tokens, list prices by model family; cache writes at 1.25x and cache reads at 0.1x the input
price). A model that matches no family gets `cost_usd = None`.
"""

from __future__ import annotations

import re
import time
from typing import Any

from incidentbook.agent.base import (
    Hypothesis,
    Investigation,
    InvestigationContext,
    investigators,
)
from incidentbook.agent.prompt import make_redactor, starting_context, system_prompt
from incidentbook.agent.tools import ToolBox, tool_specs
from incidentbook.errors import IncidentbookError, NotConfigured

DEFAULT_MODEL = "claude-sonnet-4-6"
MAX_OUTPUT_TOKENS = 4096  # per model reply

#: USD per million tokens (input, output) by model family, most specific pattern first.
PRICES: list[tuple[str, float, float]] = [
    (r"opus-4-[5-9]|opus-[5-9]", 5.0, 25.0),
    (r"opus", 15.0, 75.0),
    (r"sonnet", 3.0, 15.0),
    (r"haiku-4|haiku-[5-9]", 1.0, 5.0),
    (r"3-5-haiku|haiku-3-5", 0.8, 4.0),
    (r"haiku", 0.25, 1.25),
]


def price_of(model: str) -> tuple[float, float] | None:
    """(input, output) USD per million tokens for `model`, or None when no family matches."""
    for pattern, inp, out in PRICES:
        if re.search(pattern, model):
            return inp, out
    return None


def cost_usd(model: str, usage: dict[str, int]) -> float | None:
    """The list-price cost of `usage` (input, output, cache write/read tokens) on `model`."""
    price = price_of(model)
    if price is None:
        return None
    inp, out = price
    total = (usage.get("input_tokens", 0) * inp + usage.get("output_tokens", 0) * out
             + usage.get("cache_creation_input_tokens", 0) * inp * 1.25
             + usage.get("cache_read_input_tokens", 0) * inp * 0.1)
    return round(total / 1e6, 6)


class _Stop(Exception):
    """Ends the loop with a note (internal)."""


class ClaudeInvestigator:
    """Rules first, then Claude with read-only tools; registered as `claude`."""

    name = "claude"

    def __init__(self, cfg: Any = None, *, client: Any = None, stream: bool = True, max_retries: int = 3,
                 model: str | None = None) -> None:
        """`client`: any Anthropic-compatible client (e.g. `anthropic.AnthropicBedrock(...)`);
        by default one is built from `[agent]` and the key in `api_key_env`."""
        if cfg is None:
            from incidentbook.config import load_config

            cfg = load_config()
        self.cfg = cfg
        self.agent = cfg.agent
        self.model = model or self.agent.model or DEFAULT_MODEL
        self.stream = stream
        self.max_retries = max_retries
        if client is None:
            client = self._client()
        self.client = client

    def _client(self) -> Any:
        from incidentbook.config import secret_from_env

        try:
            import anthropic
        except ImportError:
            raise NotConfigured("the Claude investigator needs the anthropic SDK: pip install incidentbook[claude]") from None
        common = {"base_url": self.agent.base_url or None, "max_retries": self.max_retries,
                  "timeout": self.agent.wall_clock_s}
        if self.agent.provider == "bedrock":
            return anthropic.AnthropicBedrock(aws_region=self.agent.region or None, **common)
        if self.agent.provider == "vertex":
            if not (self.agent.region and self.agent.project_id):
                raise NotConfigured("[agent] provider = \"vertex\" needs region and project_id in incidentbook.toml")
            return anthropic.AnthropicVertex(region=self.agent.region, project_id=self.agent.project_id, **common)
        key = secret_from_env(self.agent.api_key_env, "the Claude investigator ([agent] investigator = \"claude\")")
        return anthropic.Anthropic(api_key=key, **common)

    # ------------------------------------------------------------------------------------------
    def investigate(self, ctx: InvestigationContext) -> Investigation:
        """Run the rules, then the tool-use loop; always returns the rules result plus what the model found."""
        t0 = time.perf_counter()
        inv = Investigation(incident_id=ctx.incident_id, investigator=self.name, model=self.model)
        rules = self._rules(ctx, inv)
        redactor = make_redactor(self.cfg)
        box = ToolBox(ctx, redactor, self.agent.tool_result_tokens, rules.hypotheses if rules else [],
                      runbooks=self._runbooks)
        usage = {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": 0, "requests": 0, "turns": 0, "tool_calls": 0}
        stop = "end_turn"
        try:
            stop = self._loop(ctx, rules, box, redactor, usage, t0, inv)
        except _Stop as e:
            stop = str(e)
            inv.notes.append(f"Claude investigation stopped: {e}. Showing the rules findings"
                             f"{' and what Claude found so far' if box.hypotheses else ''}.")
        finally:
            inv.hypotheses = _merge(box.hypotheses, rules.hypotheses if rules else [])
            inv.errors += box.errors
            inv.notes += [f"Claude sent invalid tool input (rejected, it was told why): {r}" for r in box.rejected]
            usage["tool_calls"] = len(box.outcomes)
            usage["cost_usd"] = cost_usd(self.model, usage)
            usage["stop"] = stop
            usage["price_per_mtok"] = price_of(self.model)
            inv.usage = usage
            inv.duration_s = round(time.perf_counter() - t0, 3)
        return inv

    def _rules(self, ctx: InvestigationContext, inv: Investigation) -> Investigation | None:
        """The deterministic findings (kept whatever the model does)."""
        try:
            factory = investigators.get("rules")
            rules: Investigation = (factory() if isinstance(factory, type) else factory).investigate(ctx)
        except IncidentbookError as e:
            inv.notes.append(f"the rules investigator failed ({e}); Claude starts without its findings")
            return None
        inv.notes += rules.notes
        inv.errors += rules.errors
        for h in rules.hypotheses:
            if ctx.on_hypothesis:
                ctx.on_hypothesis(h)
        return rules

    def _runbooks(self) -> list[Any]:
        from incidentbook.runner.registry import load_runbooks

        return list(load_runbooks(self.cfg))

    # ------------------------------------------------------------------------------------------
    def _loop(self, ctx: InvestigationContext, rules: Investigation | None, box: ToolBox, redactor: Any,
              usage: dict[str, Any], t0: float, inv: Investigation) -> str:
        system = [{"type": "text", "text": redactor.redact(system_prompt()), "cache_control": {"type": "ephemeral"}}]
        tools = tool_specs()
        tools[-1] = {**tools[-1], "cache_control": {"type": "ephemeral"}}
        messages: list[dict[str, Any]] = [{"role": "user", "content": redactor.redact(starting_context(ctx, rules))}]
        a = self.agent
        for turn in range(a.max_turns):
            remaining = a.wall_clock_s - (time.perf_counter() - t0)
            if remaining <= 0.5:
                raise _Stop(f"the wall-clock limit ({a.wall_clock_s:g}s, [agent] wall_clock_s) ran out")
            spent = usage["input_tokens"] + usage["output_tokens"] + usage["cache_creation_input_tokens"] \
                + usage["cache_read_input_tokens"]
            if spent >= a.max_tokens:
                raise _Stop(f"the token budget ({a.max_tokens}, [agent] max_tokens) is used up ({spent} tokens)")
            usage["turns"] = turn + 1
            msg = self._request(system, tools, messages, remaining, min(MAX_OUTPUT_TOKENS, a.max_tokens - spent), box)
            usage["requests"] += 1
            for k in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
                usage[k] += int(getattr(msg.usage, k, 0) or 0)
            content = [_block(b) for b in msg.content]
            messages.append({"role": "assistant", "content": content})
            uses = [b for b in msg.content if b.type == "tool_use"]
            if msg.stop_reason == "refusal":
                raise _Stop("Claude declined to continue (stop reason: refusal)")
            if not uses:
                final = " ".join(b.text for b in msg.content if b.type == "text").strip()
                if final:
                    inv.notes.append(f"Claude: {redactor.restore(final, secrets=False)}")
                if msg.stop_reason == "pause_turn":
                    continue
                if msg.stop_reason == "max_tokens":
                    raise _Stop(f"a reply hit the output limit ({MAX_OUTPUT_TOKENS} tokens)")
                return str(msg.stop_reason or "end_turn")
            results = []
            for b in uses:
                out = box.run(b.id, b.name, b.input)
                block: dict[str, Any] = {"type": "tool_result", "tool_use_id": b.id, "content": out.text}
                if out.is_error:
                    block["is_error"] = True
                results.append(block)
            messages.append({"role": "user", "content": results})
        raise _Stop(f"the turn limit ({a.max_turns}, [agent] max_turns) was reached")

    def _request(self, system: list[dict[str, Any]], tools: list[dict[str, Any]], messages: list[dict[str, Any]],
                 timeout: float, max_tokens: int, box: ToolBox) -> Any:
        """One model reply; when streaming, tools run as each tool_use block completes."""
        import anthropic

        kw = {"model": self.model, "max_tokens": max(1, max_tokens), "system": system, "tools": tools,
              "messages": messages, "timeout": timeout}
        try:
            if not self.stream:
                return self.client.messages.create(**kw)
            with self.client.messages.stream(**kw) as stream:
                for event in stream:
                    if event.type == "content_block_stop" and event.content_block.type == "tool_use":
                        b = event.content_block
                        box.run(b.id, b.name, b.input)  # output tools reach the board now
                return stream.get_final_message()
        except anthropic.AuthenticationError:
            raise _Stop(f"the Claude API rejected the key in ${self.agent.api_key_env} (401); check it") from None
        except anthropic.RateLimitError as e:
            raise _Stop(f"the Claude API is rate limiting (429) after {self.max_retries} retries; "
                        f"try again in a minute ({_message(e)})") from None
        except anthropic.APIStatusError as e:
            what = "is overloaded" if e.status_code == 529 else f"answered {e.status_code}"
            retried = f" after {self.max_retries} retries" if e.status_code >= 500 else ""
            raise _Stop(f"the Claude API {what}{retried} ({_message(e)})") from None
        except anthropic.APITimeoutError:
            raise _Stop(f"the Claude API did not answer within {timeout:.0f}s") from None
        except anthropic.APIConnectionError as e:
            raise _Stop(f"cannot reach the Claude API at {self.agent.base_url or 'api.anthropic.com'} ({e})") from None
        except ValueError as e:  # the SDK could not parse streamed tool input
            if "tool parameter JSON" not in str(e):
                raise
            raise _Stop("Claude sent tool input that is not valid JSON") from None


def _message(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return f"{err.get('type', 'error')}: {err['message']}"
    return str(getattr(e, "message", e))


def _block(b: Any) -> dict[str, Any]:
    """A reply content block as it goes back into the conversation."""
    if b.type == "text":
        return {"type": "text", "text": b.text}
    if b.type == "tool_use":
        return {"type": "tool_use", "id": b.id, "name": b.name, "input": b.input if isinstance(b.input, dict) else {}}
    return b.to_dict()  # type: ignore[no-any-return]


def _merge(model: list[Hypothesis], rules: list[Hypothesis]) -> list[Hypothesis]:
    """Claude's hypotheses (by confidence) then the rules ones it did not restate; restated ones merge in."""
    out = sorted(model, key=lambda h: -h.confidence)
    by_key = {(h.service, h.fault_kind): h for h in out}
    for h in rules:
        twin = by_key.get((h.service, h.fault_kind))
        if twin is None:
            out.append(h)
            continue
        seen = {e.summary for e in twin.evidence_for}
        twin.evidence_for += [e for e in h.evidence_for if e.summary not in seen]
        for p in h.proposals:
            p.hypothesis = twin.id
        twin.proposals += h.proposals
    return out
