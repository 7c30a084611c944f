"""Prove the simulator can fail: a deliberately broken core or shell, substituted only here, is
caught within a bounded number of seeds, and the real one passes those same seeds."""

from __future__ import annotations

from sim_broken_cores import DirtyReadCore, EagerAckShell, ForgetfulRaft

from keychain.testing.sim_cluster import RunResult, SimConfig, run_seed

# Elections under fire: coordinators crash (one right after it grants a vote, most of the time)
# and restart within milliseconds, while messages take up to 80 ms.
ELECTIONS = {"faults": ("crash", "isolate"), "crash": ("coordinator",), "restart_after": (0.001, 0.005),
             "fault_gap": 0.3, "latency": (0.01, 0.08), "crash_at": {"vote": 0.9}}
# Chain nodes crash often (some for long enough to be removed, shrinking the chain to one active
# member that is head and tail at once), and disks are slow.
NODE_CRASHES = {"faults": ("crash", "slow-disk"), "crash": ("node",), "restart_after": (0.01, 2.5), "fault_gap": 0.1}


def first_failure(config: SimConfig, bound: int) -> RunResult:
    for seed in range(bound):
        result = run_seed(seed, config)
        if not result.ok:
            return result
    raise AssertionError(f"no failure in {bound} seeds")


def test_a_node_answering_a_dirty_read_with_its_dirty_value_is_caught():
    found = first_failure(SimConfig(chain_core=DirtyReadCore), bound=5)
    assert found.violation is not None and found.violation.prop == "read-committed"
    assert run_seed(found.seed).ok


def test_a_raft_member_that_forgets_its_vote_on_restart_is_caught():
    found = first_failure(SimConfig(raft_core=ForgetfulRaft, **ELECTIONS), bound=30)
    assert found.violation is not None and found.violation.prop == "raft-one-leader-per-term"
    assert run_seed(found.seed, SimConfig(**ELECTIONS)).ok


def test_a_tail_that_acknowledges_before_its_disk_synced_is_caught():
    found = first_failure(SimConfig(node_shell=EagerAckShell, **NODE_CRASHES), bound=20)
    assert found.violation is not None
    assert found.violation.prop in {"chain-committed-entry-stable", "acked-write-committed", "acked-write-durable",
                                    "linearizable"}
    assert run_seed(found.seed, SimConfig(**NODE_CRASHES)).ok
