"""Prove the simulator can fail: a deliberately broken core or shell, substituted only here, is
caught as a violated property (not a crash of the harness) within a bounded number of seeds, and
the real one passes the seed that caught it.

The bounds are searches, not pinned seeds: whenever the cores change, schedules shift and the
first failing seed moves, but a broken variant must still be caught within the bound.
"""

from __future__ import annotations

from sim_broken_cores import (
    DirtyRangeCore,
    DirtyReadCore,
    DirtyWatchShell,
    EagerAckShell,
    ForgetfulRaft,
    SendsBeforeSyncShell,
    SplitTxnCore,
)

from keychain.testing.sim_cluster import MULTIKEY, RunResult, SimConfig, first_failure, run_seed

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


# The first seed at which the search below caught `DirtyRangeCore`: a strong range returned a version
# still in flight down the chain (a range item is checked like a strong read: a committed version).
DIRTY_RANGE_SEED = 0


def test_a_node_serving_a_range_from_its_dirty_versions_is_caught():
    found = caught(SimConfig(chain_core=DirtyRangeCore, multikey=MULTIKEY), 10, {"read-committed", "linearizable"})
    assert run_seed(found.seed, SimConfig(multikey=MULTIKEY)).ok


def test_the_seed_that_caught_a_dirty_range_fails_it_and_passes_the_real_one():
    broken = run_seed(DIRTY_RANGE_SEED, SimConfig(chain_core=DirtyRangeCore, multikey=MULTIKEY))
    assert broken.violation is not None and broken.violation.prop == "read-committed", broken.violation
    assert run_seed(DIRTY_RANGE_SEED, SimConfig(multikey=MULTIKEY)).ok


# A head that sequences a transaction's writes one seq each lets a reader see half of it. The
# checker catches it, not an invariant (every version read was committed): no order of the history
# over the whole key space explains what the clients saw. Half the operations are multi-key here, so
# the window between the split seqs is read often; a search, not a pinned seed, so that a change of
# schedule elsewhere does not hide the bug class (it was first caught at seed 3 of 0..7).
SPLIT_TXN_MULTIKEY = 0.5


def test_a_head_that_splits_a_transaction_over_several_seqs_is_caught():
    found = caught(SimConfig(chain_core=SplitTxnCore, multikey=SPLIT_TXN_MULTIKEY), 12, {"linearizable"})
    assert run_seed(found.seed, SimConfig(multikey=SPLIT_TXN_MULTIKEY)).ok


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


# ---- watches ----


def test_a_node_that_feeds_its_watchers_dirty_entries_is_caught():
    # A head that fails loses the dirty entries it had sent its watchers: a watcher then holds a
    # change that never committed, or misses the one committed at that seq in its place.
    found = caught(SimConfig(node_shell=DirtyWatchShell, watchers=2, **NODE_CRASHES), 40, {"linearizable"})
    assert found.violation is not None and "watch stream wrong" in found.violation.detail
    assert run_seed(found.seed, SimConfig(watchers=2, **NODE_CRASHES)).ok
