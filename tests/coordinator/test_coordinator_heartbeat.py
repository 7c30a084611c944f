"""Heartbeat replies at the coordinator leader describe the chain as it is when the reply leaves.

A syncing node's `caught_up` heartbeat waits for its promotion to commit; a change ordered before
the promotion (here, the node's own removal) may commit meanwhile and refuse it. The reply must
then carry the configuration after that change, not the one read before the wait.
"""

from __future__ import annotations

import asyncio

import pytest
from coordinator_shell_harness import main_chain_cluster  # noqa: F401 (the `cluster` fixture)
from keychain.coordinator.registry import remove_node

from keychain.proto import coordinator_pb2

pytestmark = pytest.mark.timeout(60)


async def test_a_caught_up_heartbeat_whose_promotion_is_refused_answers_with_the_current_configuration(cluster):
    leader = await cluster.ready_leader()
    service = leader.service
    await service.register(coordinator_pb2.RegisterRequest(chain="main", node_id="n1", address="127.0.0.1:9001"))
    joined = await service.register(coordinator_pb2.RegisterRequest(chain="main", node_id="n2",
                                                                     address="127.0.0.1:9002"))
    epoch = joined.config.epoch

    # n2's removal is proposed first; the caught-up heartbeat reads the chain before it commits.
    removal = asyncio.create_task(leader.member.propose(remove_node("main", "n2"), 5))
    await asyncio.sleep(0)
    beat = await service.heartbeat(coordinator_pb2.HeartbeatRequest(chain="main", node_id="n2", epoch=epoch,
                                                                   caught_up=True))
    removed = await removal
    assert removed.ok and removed.chain.epoch == epoch + 1

    assert beat.config.epoch == epoch + 1, beat
    assert [m.id for m in beat.config.members] == ["n1"]
    assert beat.error.code == coordinator_pb2.NOT_FOUND and beat.lease_ms == 0
