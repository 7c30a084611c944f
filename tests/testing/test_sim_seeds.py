"""The CI seed set: a fixed few hundred simulated runs with every fault, all of which must pass.

Budget: the whole set within 3 minutes on a 2-core CI machine (about 45 s when the machine is idle);
the timeout below fails the test rather than let the suite overrun. A failure prints, for each
failing seed, the violated property, the trace's last events and the command that replays it.
"""

from __future__ import annotations

import pytest

from keychain.testing.sim import report_failure
from keychain.testing.sim_cluster import SimConfig, run_seed
from keychain.testing.sim_faults import ALL_FAULTS

CI_SEEDS = range(180)  # the whole set of 300 and more runs by hand: python -m keychain.testing.sim --seeds 300


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_every_seed_of_the_ci_set_passes():
    config = SimConfig()
    failures = []
    simulated = 0.0
    for seed in CI_SEEDS:
        result = run_seed(seed, config)
        simulated += result.stats["virtual_seconds"]
        if not result.ok:
            failures.append(report_failure(result, config, trace_lines=20))
    assert not failures, "\n\n".join(failures)
    assert simulated >= 5.9 * len(CI_SEEDS)


GRAY_SEEDS = range(15)


def test_gray_faults_keep_every_safety_property():
    # Paused processes, hung syncs, one-way partitions of one process and blocked ports, amid the
    # classic faults: the gray-failure removals (revoked leases, surrenders) must lose nothing. (A
    # supervisor that takes a revoked lease for surrendered at once fails seed 7 of this set.)
    config = SimConfig(faults=ALL_FAULTS)
    failures = [report_failure(r, config, trace_lines=20) for r in (run_seed(s, config) for s in GRAY_SEEDS)
                if not r.ok]
    assert not failures, "\n\n".join(failures)
