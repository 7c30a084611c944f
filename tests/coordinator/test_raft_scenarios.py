"""Scripted Raft scenarios: each file under scenarios/raft_*.txt drives an in-memory cluster."""

from pathlib import Path

import pytest
from raft_harness import ScenarioRunner

from keychain.testing import datadriven

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("raft_*.txt"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_raft_scenario(path: Path) -> None:
    datadriven.run_file(path, ScenarioRunner())
