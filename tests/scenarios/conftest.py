"""Shared fixtures: each scenario is generated once per test session."""

from __future__ import annotations

import pytest

from incidentbook.scenarios import generate


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory):
    """name -> GeneratedScenario for every catalogue scenario at seed 0 (generated lazily)."""
    root = tmp_path_factory.mktemp("scenarios")
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            cache[name] = generate(name, root / name, seed=0)
        return cache[name]

    return get
