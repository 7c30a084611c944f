"""Removing a live node on request (the operator's scale-in) waits until its lease has certainly expired.

The leader first stops renewing the node's lease (its heartbeats get its configuration and no
lease), and proposes the removal only once the last lease it granted has certainly run out; the
request returns when the removal committed, with the new epoch. A repeat is answered NOT_FOUND.
Otherwise a proxy with an old topology could read stale data from the removed node, still within
its lease, while the new chain commits writes without it.
"""

from __future__ import annotations

import asyncio
import json

import grpc
import httpx
import pytest
from coordinator_shell_harness import main_chain_cluster  # noqa: F401 (the `cluster` fixture)
from keychain.coordinator.lease import LeaseTracker
from keychain.coordinator.member import Applied
from keychain.coordinator.registry import Registry, create_chain, promote_node, register_node

from keychain import timing
from keychain.proto import coordinator_pb2, coordinator_pb2_grpc

pytestmark = pytest.mark.timeout(60)

LEASE, MARGIN = 1000, 200


def two_node_chain() -> Registry:
    reg = Registry()
    for cmd in (create_chain("c"), register_node("c", "a", "h:1"), register_node("c", "b", "h:2"),
                promote_node("c", "b")):
        assert reg.apply(cmd).ok
    return reg


def test_a_drained_node_gets_no_more_leases_and_is_removed_once_its_last_one_certainly_expired():
    reg = two_node_chain()
    epoch = reg.chains["c"].epoch
    tracker = LeaseTracker(LEASE, MARGIN)
    tracker.become_leader(now=0)
    tracker.observe("c", "a", now=5000, epoch=epoch)
    tracker.record_in_sync("c", "a", epoch)  # the head: it holds every write
    assert tracker.observe("c", "b", now=5000, epoch=epoch)
    tracker.drain("c", "b")
    assert not tracker.observe("c", "b", now=5500, epoch=epoch)  # heard, but not renewed
    tracker.observe("c", "a", now=6200, epoch=epoch)
    assert tracker.expired(6200, reg.chains.values()) == []  # b's lease from 5000 may still run
    (removal,) = tracker.expired(6201, reg.chains.values())
    assert removal.node == "b" and reg.apply(removal.command()).ok
    tracker.expired(6300, reg.chains.values())
    assert tracker.draining == set()  # forgotten once it left the chain


def test_a_new_leader_drains_a_node_from_its_own_grace():
    reg = two_node_chain()
    tracker = LeaseTracker(LEASE, MARGIN)
    tracker.become_leader(now=5000)  # the old leader may have renewed b's lease just before
    tracker.drain("c", "b")
    tracker.observe("c", "a", now=6000, epoch=reg.chains["c"].epoch)
    tracker.record_in_sync("c", "a", reg.chains["c"].epoch)
    assert tracker.expired(6200, reg.chains.values()) == []
    assert [r.node for r in tracker.expired(6201, reg.chains.values())] == ["b"]


async def test_removing_a_live_node_commits_only_after_its_last_lease_certainly_expired(cluster):
    leader = await cluster.ready_leader()
    follower = cluster.follower(leader)
    loop = asyncio.get_running_loop()
    channel = grpc.aio.insecure_channel(follower.options.listen)
    api = coordinator_pb2_grpc.CoordinatorStub(channel)
    for node, port in (("n1", 9001), ("n2", 9002)):
        reg = await api.Register(coordinator_pb2.RegisterRequest(chain="main", node_id=node,
                                                                 address=f"127.0.0.1:{port}"), timeout=5)
        assert reg.error.code == coordinator_pb2.OK
    promoted = await api.Heartbeat(coordinator_pb2.HeartbeatRequest(chain="main", node_id="n2", caught_up=True,
                                                                    epoch=reg.config.epoch), timeout=5)
    assert [m.id for m in promoted.config.members] == ["n1", "n2"]

    committed: list[float] = []

    def on_apply(applied: Applied) -> None:
        if applied.data and json.loads(applied.data).get("op") == "remove" and applied.result.ok:
            committed.append(loop.time())

    leader.member.on_apply(on_apply)
    replies: dict[str, list[tuple[float, coordinator_pb2.HeartbeatReply]]] = {"n1": [], "n2": []}
    stop = asyncio.Event()

    async def heartbeats(node: str) -> None:
        epoch = promoted.config.epoch
        while not stop.is_set():
            sent = loop.time()
            reply = await api.Heartbeat(coordinator_pb2.HeartbeatRequest(
                chain="main", node_id=node, epoch=epoch, in_sync=True), timeout=5)  # both level
            replies[node].append((sent, reply))
            epoch = max(epoch, reply.config.epoch)
            await asyncio.sleep(timing.HEARTBEAT_INTERVAL)

    beaters = [asyncio.create_task(heartbeats(n)) for n in replies]
    await asyncio.sleep(0.3)
    try:
        async with httpx.AsyncClient(base_url=f"http://{follower.options.http}", timeout=15) as http:
            asked = loop.time()
            answer = await http.delete("/v1/chains/main/members/n2")
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"epoch": promoted.config.epoch + 1}
            assert (await http.delete("/v1/chains/main/members/n2")).status_code == 404
    finally:
        stop.set()
        await asyncio.gather(*beaters)
        await channel.close()

    (removed_at,) = committed
    last_lease_sent = max(sent for sent, r in replies["n2"] if r.lease_ms > 0)
    # The node's lease runs from when it sent the heartbeat: it had run out before the removal.
    assert removed_at - last_lease_sent > timing.LEASE * (1 + timing.MAX_DRIFT)
    drained = [r for sent, r in replies["n2"] if asked < sent and r.error.code == coordinator_pb2.OK]
    assert drained and all(r.lease_ms == 0 and "n2" in [m.id for m in r.config.members] for r in drained)
    assert all(r.lease_ms > 0 for _, r in replies["n1"])
