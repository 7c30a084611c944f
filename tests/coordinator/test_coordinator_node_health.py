"""Node health at the coordinator leader: one record of when each node's lease was last renewed.

`healthy` in the cluster status means "the lease the leader last granted may still run" (the
failure detector's own record); the leader forgets the heartbeat figures of a node that has
left its chain.
"""

from __future__ import annotations

import asyncio

import pytest
from coordinator_shell_harness import main_chain_cluster  # noqa: F401 (the `cluster` fixture)
from keychain.coordinator.registry import remove_node

from keychain import timing
from keychain.proto import coordinator_pb2

pytestmark = pytest.mark.timeout(60)


def health_of(status: coordinator_pb2.ClusterStatus) -> dict[str, coordinator_pb2.MemberHealth]:
    (chain,) = status.chains
    return {h.id: h for h in chain.health}


async def test_health_follows_the_lease_record_and_a_removed_node_is_forgotten(cluster):
    leader = await cluster.ready_leader()
    service = leader.service
    for node, port in (("n1", 9001), ("n2", 9002)):
        await service.register(coordinator_pb2.RegisterRequest(chain="main", node_id=node,
                                                               address=f"127.0.0.1:{port}"))
        await service.heartbeat(coordinator_pb2.HeartbeatRequest(chain="main", node_id=node, reads=7))
    status = await service.cluster_status()
    assert {h.id: (h.healthy, h.reads) for h in health_of(status).values()} == {"n1": (True, 7), "n2": (True, 7)}

    # The record the failure detector keeps is the one health reports: forget n1's lease there.
    service.leases.last_heard.pop(("main", "n1"))
    assert not health_of(await service.cluster_status())["n1"].healthy

    removed = await leader.member.propose(remove_node("main", "n2"), 5)
    assert removed.ok
    await asyncio.sleep(4 * timing.TICK)  # a few rounds of the leader's failure detector
    assert ("main", "n2") not in service.health
    assert ("main", "n1") in service.health
