"""Prove the simulator covers the coordinator's supervision rules: a supervision core with one rule
dropped (sim_broken_supervisors), put into every simulated coordinator, is caught as a violated
property within a bounded number of seeds, and the real core passes the seed that caught it.

The bounds are searches, not pinned seeds (schedules shift whenever the cores change); the seeds
that first caught each variant are kept below as "the real core passes this seed".
"""

from __future__ import annotations

import pytest
from sim_broken_supervisors import (
    GrantsWithoutEvidence,
    RemovesDrainedAtOnce,
    RemovesLastInSync,
    RemovesRevokedAtOnce,
)

from keychain.testing.sim_cluster import SimConfig, first_failure, run_seed
from keychain.testing.sim_liveness import NODE_ROLES

# Chain nodes crash often, some for long enough to be removed, and disks are slow: a promotion
# is often followed by its head's crash before the new tail caught up.
NODE_CRASHES = {"faults": ("crash", "slow-disk"), "crash": ("node",), "restart_after": (0.01, 2.5), "fault_gap": 0.1}
# The same with slower messages: an idle link's keepalive (an empty Batch every heartbeat interval)
# brings a promoted tail level within one interval, so the window for that crash is short unless
# messages take their time.
SLOW_NODE_CRASHES = {**NODE_CRASHES, "latency": (0.01, 0.08)}
# One gray failure of a chain node per run (keychain.testing.sim_liveness).
GRAY_NODE_FAULTS = {"liveness": ("sync-stall", "unreachable"), "roles": NODE_ROLES}
LOST_WRITES = {"chain-committed-entry-stable", "acked-write-committed", "acked-write-durable", "linearizable"}

CAUGHT = [
    # A leader whose disk hangs keeps answering heartbeats; without fresh quorum evidence it renews
    # leases while a new leader, past its grace, removes those very nodes.
    pytest.param(GrantsWithoutEvidence, {}, 60, {"removed-node-unleased"}, id="grants-without-evidence"),
    # An operator's drain: removed at once, the node still serves on its last lease.
    pytest.param(RemovesDrainedAtOnce, {}, 60, {"removed-node-unleased"}, id="removes-drained-at-once"),
    # The head crashes before a just promoted tail caught up with it; removing it loses the writes
    # it alone acknowledged.
    pytest.param(RemovesLastInSync, SLOW_NODE_CRASHES, 70, LOST_WRITES, id="removes-last-in-sync"),
    # A node whose syncs hang, or whose port is blocked, keeps heartbeating: removed the moment its
    # lease is revoked, it still serves on the lease it was granted last.
    pytest.param(RemovesRevokedAtOnce, GRAY_NODE_FAULTS, 8, {"removed-node-unleased"}, id="removes-revoked-at-once"),
]


@pytest.mark.parametrize(("supervisor", "figures", "bound", "props"), CAUGHT)
def test_a_broken_supervision_core_is_caught_within_the_bound(supervisor, figures, bound, props):
    found = first_failure(SimConfig(supervisor=supervisor, **figures), range(bound))
    assert found is not None, f"no failure in seeds 0..{bound - 1}"
    assert found.violation is not None and found.violation.prop in props, \
        f"seed {found.seed} failed otherwise: {found.violation}"
    print(f"caught by seed {found.seed}: {found.violation.prop}")
    result = run_seed(found.seed, SimConfig(**figures))
    assert result.ok, result.violation


FOUND = [
    pytest.param(13, {}, id="grants-without-evidence"),
    pytest.param(41, {}, id="grants-without-evidence-acks-out-of-turn"),  # once acks no longer waited for a Ready
    pytest.param(31, {}, id="removes-drained-at-once"),
    pytest.param(35, NODE_CRASHES, id="removes-last-in-sync"),
    pytest.param(38, SLOW_NODE_CRASHES, id="removes-last-in-sync-with-keepalives"),
    pytest.param(1, GRAY_NODE_FAULTS, id="removes-revoked-at-once"),
]


@pytest.mark.parametrize(("seed", "figures"), FOUND)
def test_the_real_supervision_core_passes_the_seed_that_caught_a_broken_one(seed, figures):
    result = run_seed(seed, SimConfig(**figures))
    assert result.ok, result.violation
