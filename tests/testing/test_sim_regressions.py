"""The seeds that found bugs in the chain core, and proof the simulator still finds each bug class.

- Every seed that once found a bug stays as "the fixed cores pass this seed".
- With the core put back as it was (a variant in sim_broken_cores), a bounded search over seeds
  must still reach the bug as a violated property; it prints the seed that did. Schedules shift
  whenever the cores change, so this is a search, not a pinned seed.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from sim_broken_cores import InSyncOnReceipt, KeepsStreamingAfterTransfer, VouchesWhileLagging

from keychain.testing.sim_cluster import SimConfig, first_failure, run_seed

NODE_RESTARTS = SimConfig(faults=("crash", "lossy", "isolate", "partition"), crash=("node",), fault_gap=0.2)

FOUND = [
    # A promoted tail counted itself in sync once it held its predecessor's commit point, and served
    # its older clean versions before it had committed (persisted) the newer ones.
    pytest.param(0, SimConfig(), id="in-sync-on-receipt"),
    # A node not in sync itself vouched for its successor with a stale commit point.
    pytest.param(10, SimConfig(), id="vouches-while-lagging"),
    # After installing a state transfer a node streamed its successor entries it no longer held.
    pytest.param(11, SimConfig(), id="streams-after-transfer"),
    # A promoted tail that never caught up restarted believing itself in sync.
    pytest.param(122, NODE_RESTARTS, id="trusts-itself-on-restart"),
]


@pytest.mark.parametrize(("seed", "config"), FOUND)
def test_the_fixed_cores_pass_the_seed_that_found_the_bug(seed, config):
    result = run_seed(seed, config)
    assert result.ok, result.violation


REACHED = [
    pytest.param(InSyncOnReceipt, SimConfig(), 30, "linearizable", id="in-sync-on-receipt"),
    pytest.param(VouchesWhileLagging, SimConfig(), 80, "linearizable", id="vouches-while-lagging"),
    pytest.param(KeepsStreamingAfterTransfer, SimConfig(), 120, "no-exception", id="streams-after-transfer"),
]


@pytest.mark.parametrize(("unfixed", "config", "bound", "prop"), REACHED)
def test_the_simulator_still_reaches_the_bug_with_the_core_as_it_was(unfixed, config, bound, prop):
    found = first_failure(replace(config, chain_core=unfixed), range(bound))
    assert found is not None, f"no seed in 0..{bound - 1} reaches the bug"
    assert found.violation is not None and found.violation.prop == prop, found.violation
    print(f"seed {found.seed} reaches it: {found.violation.prop}")
    after = run_seed(found.seed, config)
    assert after.ok, after.violation
