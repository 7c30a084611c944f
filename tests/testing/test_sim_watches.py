"""Watches in the simulator: watchers resume across node failures and reconfigurations, and every
run checks their streams against the committed order (keychain.testing.watch_check)."""

from __future__ import annotations

import itertools

from keychain.testing.sim import replay_command, report_failure
from keychain.testing.sim_cluster import MULTIKEY, SimConfig, Simulation, run_seed
from keychain.testing.watch_check import check_watches

# Chain nodes crash often and restart, so the chain reconfigures around them while watches run.
NODE_CRASHES = SimConfig(faults=("crash",), crash=("node",), fault_gap=0.3, watchers=2, multikey=MULTIKEY)
WATCHED_SEEDS = range(20)


def test_runs_with_watchers_pass_and_check_their_streams():
    config = SimConfig(watchers=2, multikey=MULTIKEY)  # transactions too: their changes share a version
    events = together = 0
    for seed in WATCHED_SEEDS:
        result = run_seed(seed, config)
        assert result.ok, report_failure(result, config, trace_lines=20)
        events += result.stats["watch_events"]
        for op in result.history:
            versions = [e.version for e in op.events or ()]
            together += sum(1 for a, b in itertools.pairwise(versions) if a == b)
    assert events > 100 * len(WATCHED_SEEDS)  # the watchers saw plenty, and every stream was checked
    assert together > 0  # some of it transactions, several changes at one version


def test_a_watch_resumes_across_a_node_failure_and_a_reconfiguration_without_a_gap():
    for seed in range(10):
        sim = Simulation(seed, NODE_CRASHES)
        result = sim.run()
        assert result.ok, result.violation
        shown = [w for watcher in sim.watchers for w in watcher.finished
                 if "node down" in w.resumes and len(w.epochs) >= 2]
        if shown:
            break
    else:
        raise AssertionError("no watch resumed across a node failure and a reconfiguration in seeds 0..9")
    w = shown[0]
    op = result.history[w.call]
    versions = [e.version for e in op.events or ()]
    print(f"seed {seed}: {op.describe()}, resumed after {w.resumes}, changes seen in epochs {sorted(w.epochs)}")
    assert versions == sorted(versions) and len(set((e.version, e.key) for e in op.events or ())) == len(versions)
    assert check_watches(result.history) is None  # exactly the committed changes after its start


def test_a_failing_run_with_watchers_replays_with_them():
    assert replay_command(3, SimConfig(watchers=2)).endswith("--replay 3 --watchers 2")
