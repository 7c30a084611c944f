"""A coordinator leader whose Raft driver is stalled stops granting leases within a bound.

While the driver waits on a slow fsync, the gRPC handlers on the event loop still answer; the
followers meanwhile elect a new leader that will, after its grace, remove nodes. So the stalled
leader may grant a lease only while a quorum acknowledged it recently, in its own loop time:
no later than one election timeout after the stall began, heartbeats are answered UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from coordinator_shell_harness import main_chain_cluster  # noqa: F401 (the `cluster` fixture)
from keychain.coordinator.registry import create_chain

from keychain import timing
from keychain.proto import coordinator_pb2

pytestmark = pytest.mark.timeout(60)

STALL = 1.5  # seconds the leader's fsync blocks


async def test_a_stalled_leader_grants_no_lease_after_one_election_timeout(cluster):
    leader = await cluster.ready_leader()
    service = leader.service
    await service.register(coordinator_pb2.RegisterRequest(chain="main", node_id="n1", address="127.0.0.1:9001"))
    beat = coordinator_pb2.HeartbeatRequest(chain="main", node_id="n1")
    assert (await service.heartbeat(beat)).lease_ms > 0

    storage = leader.member.storage
    real_sync = storage.sync
    entered, release = threading.Event(), threading.Event()

    def stalled_sync() -> None:
        entered.set()
        release.wait(STALL)
        real_sync()

    storage.sync = stalled_sync  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    proposal = asyncio.create_task(leader.member.propose(create_chain("other"), 10))
    while not entered.is_set():
        await asyncio.sleep(0.005)
    stalled_at = loop.time()
    answers = []
    try:
        while loop.time() < stalled_at + STALL - 0.2:
            reply = await service.heartbeat(beat)
            answers.append((loop.time() - stalled_at, reply.lease_ms, reply.error.code))
            await asyncio.sleep(timing.HEARTBEAT_INTERVAL / 2)
    finally:
        storage.sync = real_sync  # type: ignore[method-assign]
        release.set()
        await asyncio.gather(proposal, return_exceptions=True)

    bound = timing.ELECTION_TICKS * timing.TICK + timing.TICK  # the evidence's age, plus a tick of slack
    late_grants = [a for a in answers if a[0] > bound and a[1] > 0]
    assert not late_grants, answers
    assert [code for at, _, code in answers if at > bound] == [coordinator_pb2.UNAVAILABLE] * len(
        [a for a in answers if a[0] > bound])
