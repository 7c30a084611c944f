"""The simulator replays a seed exactly, here and in another process, and reports failures usefully."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace

import pytest
from sim_broken_cores import DirtyReadCore

from keychain.testing import sim
from keychain.testing.sim_cluster import SimConfig, run_seed

SEED = 7


def _hash_from(output: str) -> str:
    match = re.search(r"^trace hash: (\w+)$", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def test_the_same_seed_runs_the_same_events_and_history():
    first, second = run_seed(SEED), run_seed(SEED)
    assert first.ok and second.ok
    assert first.trace_hash == second.trace_hash
    assert first.history == second.history
    assert first.stats["events"] == second.stats["events"] > 1000
    assert first.stats["operations"] > 50  # the run did real work


def test_different_seeds_run_differently():
    assert run_seed(SEED).trace_hash != run_seed(SEED + 1).trace_hash


def test_a_replay_in_another_process_with_another_hash_seed_is_identical():
    # Set and string hashing differ between processes; nothing in a run may depend on them.
    expected = run_seed(SEED).trace_hash
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONSAFEPATH": "1"}
        out = subprocess.run([sys.executable, "-P", "-m", "keychain.testing.sim", "--replay", str(SEED)],
                             capture_output=True, text=True, env=env, timeout=120, check=True).stdout
        assert _hash_from(out) == expected
        assert f"seed {SEED}: ok" in out


def test_a_failure_names_the_seed_the_property_the_last_events_and_the_replay_command():
    config = SimConfig(chain_core=DirtyReadCore)
    result = run_seed(0, config)
    assert not result.ok and result.violation is not None
    text = sim.report_failure(result, config, trace_lines=10)
    lines = text.splitlines()
    assert lines[0] == f"FAIL seed 0: {result.violation.prop}"
    assert result.violation.detail in lines[1]
    assert len([line for line in lines if line.startswith("    ")]) == 11  # 10 events and the nodes' state
    assert lines[-1] == "  replay: python -P -m keychain.testing.sim --replay 0"


def test_the_replay_command_carries_non_default_options():
    config = replace(SimConfig(), duration=8.0, heal=2.5, fault_gap=0.12, faults=("crash", "lossy"))
    assert sim.replay_command(9, config) == (
        "python -P -m keychain.testing.sim --replay 9 --duration 8 --heal 2.5 --fault-gap 0.12 --faults crash,lossy")
    assert sim.replay_command(9, replace(SimConfig(), faults=())).endswith("--faults none")


def test_the_command_runs_seeds_and_sums_them_up(capsys):
    assert sim.main(["--seeds", "2", "--start", "3", "--duration", "3"]) == 0
    out = capsys.readouterr().out
    assert "2 seeds, 0 failed" in out and "simulated seconds" in out and "faults injected" in out


def test_the_command_exits_1_and_prints_the_replay_command_when_a_seed_fails(capsys, monkeypatch):
    monkeypatch.setattr(sim, "run_seed", lambda seed, config: run_seed(seed, replace(config, chain_core=DirtyReadCore)))
    assert sim.main(["--seeds", "1"]) == 1
    out = capsys.readouterr().out
    assert "FAIL seed 0: read-committed" in out
    assert "replay: python -P -m keychain.testing.sim --replay 0" in out
    assert "1 seeds, 1 failed" in out


def test_replay_writes_the_history_for_the_checker(tmp_path, capsys):
    path = tmp_path / "history.jsonl"
    assert sim.main(["--replay", str(SEED), "--history", str(path)]) == 0
    from keychain.testing.checker import main as check_history

    assert check_history([str(path)]) == 0
    assert len(path.read_text().splitlines()) == run_seed(SEED).stats["operations"]


@pytest.mark.parametrize("argv", [["--seeds", "-1"], ["--jobs", "0"], ["--minutes", "0"], ["--faults", "meteor"],
                                  ["--duration", "0.5"]])
def test_the_command_refuses_bad_options(argv, capsys):
    assert sim.main(argv) == 2
    assert "keychain.testing.sim:" in capsys.readouterr().err


def test_the_simulated_coordinator_uses_the_service_s_figures():
    from keychain.coordinator import api

    from keychain.testing import sim_coordinator

    assert sim_coordinator.NEW_LEADER_GRACE == api.NEW_LEADER_GRACE
    assert sim_coordinator.PROPOSAL_TIMEOUT == api.PROPOSAL_TIMEOUT
