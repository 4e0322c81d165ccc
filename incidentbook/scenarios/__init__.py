"""Simulated systems with injected faults: bundles with ground truth, and the alerts they raise.

    from incidentbook.scenarios import list_scenarios, generate, DEFAULT_SCENARIO
    gen = generate(DEFAULT_SCENARIO, "out/kv", seed=0)
    gen.bundle_dir, gen.payloads, gen.manifest["ground_truth"]

Payloads are Alertmanager webhooks (version 4) in `<out_dir>/alerts/NNNN-<alertname>-<service>-<status>.json`,
numbered in send order; the manifest's `alerts` lists them.
"""

from incidentbook.scenarios.alerts import GROUP_BY, RULES_FILE, Alert, evaluate_alerts, load_rules
from incidentbook.scenarios.catalog import (
    DEFAULT_SCENARIO,
    GeneratedScenario,
    ScenarioInfo,
    generate,
    generate_system,
    get_scenario,
    list_scenarios,
)
from incidentbook.scenarios.faults import FAULT_KINDS, RANDOM_FAULT_KINDS, REMEDIATION

__all__ = [
    "DEFAULT_SCENARIO", "FAULT_KINDS", "GROUP_BY", "RANDOM_FAULT_KINDS", "REMEDIATION", "RULES_FILE", "Alert", "GeneratedScenario",
    "ScenarioInfo", "evaluate_alerts", "generate", "generate_system", "get_scenario", "list_scenarios", "load_rules",
]
