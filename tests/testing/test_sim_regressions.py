"""The seeds that found bugs in the chain core. Each still reaches its bug when the core is put back
as it was (so the seed keeps its worth), and passes with the core as fixed.

If the simulator changes how it spends its randomness, a seed may stop reaching its bug: then the
first assertion fails, and a new seed is found with the broken variant, e.g.
`run_seed(s, SimConfig(chain_core=InSyncOnReceipt))` for s in range(300).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from sim_broken_cores import (
    InSyncOnReceipt,
    KeepsStreamingAfterTransfer,
    TrustsItselfOnRestart,
    VouchesWhileLagging,
)

from keychain.testing.sim_cluster import SimConfig, run_seed

NODE_RESTARTS = SimConfig(faults=("crash", "lossy", "isolate", "partition"), crash=("node",), fault_gap=0.2)

CASES = [
    # A promoted tail counted itself in sync once it held its predecessor's commit point, and served
    # its older clean versions before it had committed (persisted) the newer ones.
    pytest.param(InSyncOnReceipt, 0, SimConfig(), "linearizable", id="in-sync-on-receipt"),
    # A node not in sync itself vouched for its successor with a stale commit point.
    pytest.param(VouchesWhileLagging, 10, SimConfig(), "linearizable", id="vouches-while-lagging"),
    # After installing a state transfer a node streamed its successor entries it no longer held.
    pytest.param(KeepsStreamingAfterTransfer, 11, SimConfig(), "no-exception", id="streams-after-transfer"),
    # A promoted tail that never caught up restarted believing itself in sync.
    pytest.param(TrustsItselfOnRestart, 122, NODE_RESTARTS, "linearizable", id="trusts-itself-on-restart"),
]


@pytest.mark.parametrize(("unfixed", "seed", "config", "prop"), CASES)
def test_the_seed_reaches_the_bug_and_the_fixed_core_passes_it(unfixed, seed, config, prop):
    before = run_seed(seed, replace(config, chain_core=unfixed))
    assert before.violation is not None and before.violation.prop == prop, "the seed no longer reaches the bug"
    after = run_seed(seed, config)
    assert after.ok, after.violation
