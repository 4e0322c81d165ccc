"""A second, independent scenario generator: an LLM-serving stack in real exporter dialects.

    from incidentbook.scenarios.fleet import list_fleet, generate_fleet
    g = generate_fleet("fleet-auth-bad-deploy", "out/auth", seed=3)

Scenario names start with `fleet-`; `incidentbook scenario list|generate` shows and writes them
next to the first simulator's. The truth of each case is written to `truth.json` beside the
bundle's manifest (the manifest's `ground_truth` is null), for `incidentbook eval --truth`.
"""

from incidentbook.scenarios.fleet.catalog import (
    PREFIX,
    FleetGenerated,
    FleetScenario,
    generate_fleet,
    get_fleet,
    list_fleet,
)

__all__ = ["PREFIX", "FleetGenerated", "FleetScenario", "generate_fleet", "get_fleet", "list_fleet"]
