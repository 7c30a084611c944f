"""Prove the simulator can fail: a deliberately broken core or shell, substituted only here, is
caught as a violated property (not a crash of the harness) within a bounded number of seeds, and
the real one passes the seed that caught it.

The bounds are searches, not pinned seeds: whenever the cores change, schedules shift and the
first failing seed moves, but a broken variant must still be caught within the bound.
"""

from __future__ import annotations

from sim_broken_cores import DirtyReadCore, EagerAckShell, ForgetfulRaft, SendsBeforeSyncShell

from keychain.testing.sim_cluster import RunResult, SimConfig, first_failure, run_seed

# Elections under fire: coordinators crash often (one right after it grants a vote, most of the
# time) and restart within milliseconds, while messages take up to 80 ms.
ELECTIONS = {"faults": ("crash",), "crash": ("coordinator",), "restart_after": (0.001, 0.005),
             "fault_gap": 0.15, "latency": (0.01, 0.08), "crash_at": {"vote": 0.9}}
# Chain nodes crash often (some for long enough to be removed, shrinking the chain to one active
# member that is head and tail at once), and disks are slow.
NODE_CRASHES = {"faults": ("crash", "slow-disk"), "crash": ("node",), "restart_after": (0.01, 2.5), "fault_gap": 0.1}


def caught(config: SimConfig, bound: int, props: set[str]) -> RunResult:
    found = first_failure(config, range(bound))
    assert found is not None, f"no failure in seeds 0..{bound - 1}"
    assert found.violation is not None and found.violation.prop in props, \
        f"seed {found.seed} failed otherwise: {found.violation}"
    print(f"caught by seed {found.seed}: {found.violation.prop}")
    return found


def test_a_node_answering_a_dirty_read_with_its_dirty_value_is_caught():
    found = caught(SimConfig(chain_core=DirtyReadCore), 20, {"read-committed"})
    assert run_seed(found.seed).ok


def test_a_raft_member_that_forgets_its_vote_on_restart_is_caught():
    found = caught(SimConfig(raft_core=ForgetfulRaft, **ELECTIONS), 120, {"raft-one-leader-per-term"})
    assert run_seed(found.seed, SimConfig(**ELECTIONS)).ok


def test_a_tail_that_acknowledges_before_its_disk_synced_is_caught():
    # The broken shell keeps the store's record rules, so what it breaks is durability of acks.
    found = caught(SimConfig(node_shell=EagerAckShell, **NODE_CRASHES), 40,
                   {"chain-committed-entry-stable", "acked-write-committed", "acked-write-durable", "linearizable"})
    assert run_seed(found.seed, SimConfig(**NODE_CRASHES)).ok


# ---- the node driver ----

# The first seed at which the search below caught `SendsBeforeSync`: a head forwarded entries its disk
# had not synced, crashed, and sequenced other writes at the same seqs after its restart.
SENDS_BEFORE_SYNC_SEED = 10


def test_a_driver_that_sends_before_the_sync_a_ready_required_is_caught():
    found = caught(SimConfig(node_shell=SendsBeforeSyncShell, **NODE_CRASHES), 40,
                   {"chain-committed-entry-stable", "acked-write-committed", "acked-write-durable", "linearizable"})
    assert run_seed(found.seed, SimConfig(**NODE_CRASHES)).ok


def test_the_seed_that_caught_the_driver_sending_before_its_sync_fails_it_and_passes_the_real_one():
    broken = run_seed(SENDS_BEFORE_SYNC_SEED, SimConfig(node_shell=SendsBeforeSyncShell, **NODE_CRASHES))
    assert broken.violation is not None and broken.violation.prop == "chain-committed-entry-stable", broken.violation
    assert run_seed(SENDS_BEFORE_SYNC_SEED, SimConfig(**NODE_CRASHES)).ok
