"""Seeds that found bugs in the coordinator's model (keychain.testing.sim_coordinator, which drives
the real LeaseTracker). Each still reaches its bug when the fix is taken out again (patched away
here), and passes with it.

If the simulator changes how it spends its randomness, a seed may stop reaching its bug: then the
first assertion fails, and a new seed is found the same way, e.g. with the rule patched away,
`run_seed(s, STORMY)` for s in range(3000) until one fails with the property below.
"""

from __future__ import annotations

from keychain.coordinator.lease import LeaseTracker

from keychain.testing.sim_cluster import SimConfig, run_seed

# Dense faults: a crash soon after a promotion, before the new tail caught up with its head.
STORMY = SimConfig(duration=8, heal=2.5, fault_gap=0.12)


def test_a_head_that_may_hold_the_only_copy_of_acknowledged_writes_is_not_removed(monkeypatch):
    # Chain [a] + syncing s; s is promoted (new epoch, s tail) while a, still in the old epoch for up
    # to a heartbeat, acknowledges writes alone; a crashes before s caught up with it. Removing a
    # left only s, which never received those writes: an acknowledged write was lost.
    seed = 4600  # since acks leave out of turn (1825 before, 1222 before keepalives, 2153 before the supervision core)
    with monkeypatch.context() as unfixed:
        unfixed.setattr(LeaseTracker, "keeps_every_write", lambda self, chain, node: True)
        before = run_seed(seed, STORMY)
    assert before.violation is not None and before.violation.prop in (
        "chain-committed-entry-stable", "linearizable"), "the seed no longer reaches the bug"
    after = run_seed(seed, STORMY)
    assert after.ok, after.violation
    # The seeds that showed it before (the simulator's trajectories have moved since; they must pass).
    first = run_seed(2273, STORMY)
    assert first.ok, first.violation
    assert run_seed(2153, STORMY).ok
    assert run_seed(1222, STORMY).ok
    assert run_seed(1825, STORMY).ok
