"""Log-template mining (drain3) and the shift between a baseline and an incident window."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

# drain3 logs every new cluster at INFO; an investigation mines thousands of lines.
logging.getLogger("drain3").setLevel(logging.WARNING)

_MASKS = [
    (r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "UUID"),
    (r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b", "IP"),
    (r"\b0x[0-9a-fA-F]+\b", "HEX"),
    (r"\b[0-9a-f]{12,}\b", "HEX"),
    (r"(?<![A-Za-z])[-+]?\d+(?:\.\d+)?(?:ms|s|us|MB|MiB|KB|B|%)?\b", "NUM"),
]


def template_miner() -> TemplateMiner:
    """A drain3 miner with masks for ids, IPs, hex and numbers (so templates group by shape)."""
    cfg = TemplateMinerConfig()
    cfg.drain_sim_th = 0.5
    cfg.drain_depth = 4
    cfg.profiling_enabled = False
    cfg.masking_instructions = [MaskingInstruction(p, name) for p, name in _MASKS]
    return TemplateMiner(config=cfg)


@dataclass(frozen=True)
class TemplateShift:
    """One log template's counts in the baseline and incident windows (rates per minute)."""

    template: str
    baseline_count: int
    incident_count: int
    baseline_per_min: float
    incident_per_min: float
    novel: bool  # never seen in the baseline window
    example: str

    @property
    def ratio(self) -> float:
        """Incident rate over baseline rate (inf for a novel template)."""
        return self.incident_per_min / self.baseline_per_min if self.baseline_per_min else float("inf")


_LEVEL = re.compile(r"\b(error|err|fatal|panic|exception|fail(?:ed|ure)?|timeout|timed out|refused|denied|expired|oom|killed|unavailable)\b", re.I)


def looks_like_error(line: str) -> bool:
    """True when a line reads like a failure (error words, not just a level field of 'info')."""
    return bool(_LEVEL.search(line))


def template_shifts(baseline: Iterable[str], incident: Iterable[str], baseline_minutes: float,
                    incident_minutes: float, min_count: int = 3) -> list[TemplateShift]:
    """Templates whose rate grew in the incident window (novel ones first, then by growth).

    Both windows are mined with one miner so a template has the same id in each. Templates with
    fewer than `min_count` incident lines are dropped as noise.
    """
    miner = template_miner()
    base_ids: Counter[int] = Counter()
    inc_ids: Counter[int] = Counter()
    examples: dict[int, str] = {}
    for line in baseline:
        base_ids[miner.add_log_message(line)["cluster_id"]] += 1
    for line in incident:
        cid = miner.add_log_message(line)["cluster_id"]
        inc_ids[cid] += 1
        examples.setdefault(cid, line)
    templates = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
    bm, im = max(baseline_minutes, 1e-9), max(incident_minutes, 1e-9)
    out = []
    for cid, n in inc_ids.items():
        if n < min_count:
            continue
        b = base_ids.get(cid, 0)
        shift = TemplateShift(templates.get(cid, examples[cid]), b, n, b / bm, n / im, b == 0, examples[cid])
        if shift.novel or shift.ratio >= 2.0:
            out.append(shift)
    out.sort(key=lambda s: (not s.novel, -min(s.ratio, 1e9), -s.incident_count))
    return out
