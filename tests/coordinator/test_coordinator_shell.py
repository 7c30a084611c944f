"""The coordinator shell: three members in this test's event loop, talked to over real gRPC and HTTP.

Scenarios: a request to a follower is forwarded to the leader; with no quorum a request answers
UNAVAILABLE (retryable) within a bounded wait; invalid registry commands are refused with clear
errors and change nothing; node registration, promotion on `caught_up` and removal of a silent
node, but never one that may hold the only copy of acknowledged writes; the watch stream; a graceful shutdown of the leader hands leadership over; a restart
recovers the registry from disk.
"""

from __future__ import annotations

import asyncio

import grpc
import httpx
import pytest
from coordinator_shell_harness import InProcessCluster

from keychain import timing
from keychain.proto import chain_pb2, coordinator_pb2, coordinator_pb2_grpc

pytestmark = pytest.mark.timeout(60)


def stub(address: str) -> tuple[grpc.aio.Channel, coordinator_pb2_grpc.CoordinatorStub]:
    channel = grpc.aio.insecure_channel(address)
    return channel, coordinator_pb2_grpc.CoordinatorStub(channel)


@pytest.fixture
async def cluster(tmp_path):
    c = InProcessCluster(tmp_path)
    await c.start_all()
    try:
        yield c
    finally:
        await c.stop_all()


async def test_a_follower_forwards_changes_and_reads_to_the_leader(cluster):
    leader = await cluster.leader()
    follower = cluster.follower(leader)
    channel, api = stub(follower.options.listen)
    async with channel:
        reply = await api.CreateChain(coordinator_pb2.CreateChainRequest(chain="main"), timeout=5)
        assert reply.error.code == coordinator_pb2.OK
        assert reply.config.chain == "main" and reply.config.epoch == 1
        got = await api.GetChain(coordinator_pb2.GetChainRequest(chain="main"), timeout=5)
        assert got.error.code == coordinator_pb2.OK and got.config.epoch == 1
        status = await api.GetClusterStatus(coordinator_pb2.ClusterStatusRequest(), timeout=5)
        assert status.leader == leader.options.id
        assert {m.id: m.role for m in status.members}[leader.options.id] == "leader"
    async with httpx.AsyncClient(base_url=f"http://{follower.options.http}") as http:
        created = await http.post("/v1/chains/second")
        assert created.status_code == 201 and created.json()["epoch"] == 1
        body = (await http.get("/v1/status")).json()
        assert body["leader"] == leader.options.id
        assert [c["name"] for c in body["chains"]] == ["main", "second"]


async def test_without_a_quorum_requests_fail_retryably_within_a_bounded_wait(cluster):
    leader = await cluster.leader()
    follower = cluster.follower(leader)
    for member in list(cluster.servers):
        if member != follower.options.id:
            await cluster.stop(member)
    loop = asyncio.get_running_loop()
    channel, api = stub(follower.options.listen)
    async with channel:
        started = loop.time()
        reply = await api.CreateChain(coordinator_pb2.CreateChainRequest(chain="main"), timeout=10)
        assert reply.error.code == coordinator_pb2.UNAVAILABLE
        assert loop.time() - started < 4
    async with httpx.AsyncClient(base_url=f"http://{follower.options.http}", timeout=10) as http:
        answer = await http.get("/v1/status")
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "1"
        assert answer.json()["error"] == "unavailable"


async def test_invalid_registry_commands_are_refused_clearly_and_change_nothing(cluster):
    leader = await cluster.leader()
    channel, api = stub(cluster.follower(leader).options.listen)
    async with channel:
        await api.CreateChain(coordinator_pb2.CreateChainRequest(chain="main"), timeout=5)
        reg = await api.Register(coordinator_pb2.RegisterRequest(chain="main", node_id="n1", address="127.0.0.1:9001"))
        assert reg.error.code == coordinator_pb2.OK and reg.lease_ms == int(timing.LEASE * 1000)
        epoch = reg.config.epoch

        dup = await api.CreateChain(coordinator_pb2.CreateChainRequest(chain="main"), timeout=5)
        assert dup.error.code == coordinator_pb2.ALREADY_EXISTS and "already exists" in dup.error.message
        moved = await api.Register(coordinator_pb2.RegisterRequest(chain="main", node_id="n1", address="127.0.0.1:9009"))
        assert moved.error.code == coordinator_pb2.ALREADY_EXISTS and "127.0.0.1:9001" in moved.error.message
        unknown = await api.Register(coordinator_pb2.RegisterRequest(chain="nope", node_id="n2", address="127.0.0.1:9002"))
        assert unknown.error.code == coordinator_pb2.NOT_FOUND and "nope" in unknown.error.message
        bad = await api.Register(coordinator_pb2.RegisterRequest(chain="main", node_id="n2", address="no-port"))
        assert bad.error.code == coordinator_pb2.INVALID_ARGUMENT and "host:port" in bad.error.message
        last = await api.RemoveMember(coordinator_pb2.RemoveMemberRequest(chain="main", node_id="n1"), timeout=5)
        assert last.error.code == coordinator_pb2.FAILED_PRECONDITION and "last active member" in last.error.message

        after = await api.GetChain(coordinator_pb2.GetChainRequest(chain="main"), timeout=5)
        assert after.config.epoch == epoch
        assert [(m.id, m.address) for m in after.config.members] == [("n1", "127.0.0.1:9001")]
    async with httpx.AsyncClient(base_url=f"http://{leader.options.http}") as http:
        refused = await http.delete("/v1/chains/main/members/n1")
        assert refused.status_code == 409 and refused.json()["error"] == "failed_precondition"
        assert (await http.delete("/v1/chains/main/members/ghost")).status_code == 404


async def test_nodes_join_syncing_are_promoted_when_caught_up_and_removed_when_silent(cluster):
    leader = await cluster.leader()
    channel, api = stub(cluster.follower(leader).options.listen)
    async with channel:
        await api.CreateChain(coordinator_pb2.CreateChainRequest(chain="main"), timeout=5)
        first = await api.Register(coordinator_pb2.RegisterRequest(chain="main", node_id="n1", address="127.0.0.1:9001"))
        second = await api.Register(coordinator_pb2.RegisterRequest(chain="main", node_id="n2", address="127.0.0.1:9002"))
        assert [m.state for m in second.config.members] == [chain_pb2.ACTIVE, chain_pb2.SYNCING]

        beat = await api.Heartbeat(coordinator_pb2.HeartbeatRequest(chain="main", node_id="n2", epoch=second.config.epoch,
                                                                    caught_up=True))
        assert beat.error.code == coordinator_pb2.OK
        assert beat.config.epoch == second.config.epoch + 1
        assert [(m.id, m.state) for m in beat.config.members] == [("n1", chain_pb2.ACTIVE), ("n2", chain_pb2.ACTIVE)]

        # n2 keeps heartbeating, in sync, n1 falls silent: n1 is removed once its lease has certainly
        # expired (the leader's grace after its election is long past by now or is waited out here).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 8
        config = beat.config
        while [m.id for m in config.members] != ["n2"]:
            assert loop.time() < deadline, f"n1 was not removed: {config}"
            await asyncio.sleep(timing.HEARTBEAT_INTERVAL)
            beat = await api.Heartbeat(coordinator_pb2.HeartbeatRequest(chain="main", node_id="n2", epoch=config.epoch,
                                                                        in_sync=True))
            config = beat.config
        assert config.epoch == first.config.epoch + 3
        gone = await api.Heartbeat(coordinator_pb2.HeartbeatRequest(chain="main", node_id="n1", epoch=first.config.epoch))
        assert gone.error.code == coordinator_pb2.NOT_FOUND and "register again" in gone.error.message


async def test_a_silent_head_stays_while_the_promoted_tail_has_not_caught_up_with_it(cluster):
    leader = await cluster.leader()
    channel, api = stub(cluster.follower(leader).options.listen)
    async with channel:
        await api.CreateChain(coordinator_pb2.CreateChainRequest(chain="main"), timeout=5)
        await api.Register(coordinator_pb2.RegisterRequest(chain="main", node_id="n1", address="127.0.0.1:9001"))
        second = await api.Register(coordinator_pb2.RegisterRequest(chain="main", node_id="n2", address="127.0.0.1:9002"))
        beat = await api.Heartbeat(coordinator_pb2.HeartbeatRequest(chain="main", node_id="n2", epoch=second.config.epoch,
                                                                    caught_up=True, in_sync=True))
        config = beat.config
        assert [m.id for m in config.members] == ["n1", "n2"]

        # n1 falls silent right after n2's promotion: n1 may have acknowledged writes alone in the old
        # epoch that n2 never received. n2 runs the new epoch but never reports being in sync.
        loop = asyncio.get_running_loop()
        until = loop.time() + timing.REMOVAL_AFTER + 4 * timing.ELECTION_TICKS * timing.TICK + 1  # grace, silence
        while loop.time() < until:
            beat = await api.Heartbeat(coordinator_pb2.HeartbeatRequest(chain="main", node_id="n2", epoch=config.epoch))
            assert beat.config.epoch == config.epoch and beat.lease_ms > 0, "n1 was removed: writes may be lost"
            await asyncio.sleep(timing.HEARTBEAT_INTERVAL)

        # n2 reports it is in sync in this epoch (n1 came back long enough, say): now n1 goes.
        deadline = loop.time() + 3
        while [m.id for m in config.members] != ["n2"]:
            assert loop.time() < deadline, f"n1 was not removed: {config}"
            beat = await api.Heartbeat(coordinator_pb2.HeartbeatRequest(chain="main", node_id="n2", epoch=config.epoch,
                                                                        in_sync=True))
            config = beat.config
            await asyncio.sleep(timing.HEARTBEAT_INTERVAL)


async def test_the_watch_stream_sends_the_current_configuration_then_every_change(cluster):
    leader = await cluster.leader()
    channel, api = stub(cluster.follower(leader).options.listen)
    async with channel:
        await api.CreateChain(coordinator_pb2.CreateChainRequest(chain="main"), timeout=5)
        stream = api.WatchChains(coordinator_pb2.WatchRequest(chain="main"))
        first = await asyncio.wait_for(stream.read(), 5)
        assert (first.chain, first.epoch, len(first.members)) == ("main", 1, 0)
        await api.Register(coordinator_pb2.RegisterRequest(chain="main", node_id="n1", address="127.0.0.1:9001"))
        await api.CreateChain(coordinator_pb2.CreateChainRequest(chain="other"), timeout=5)  # not watched
        await api.DeleteChain(coordinator_pb2.DeleteChainRequest(chain="main"), timeout=5)
        joined = await asyncio.wait_for(stream.read(), 5)
        assert joined.epoch == 2 and [m.id for m in joined.members] == ["n1"]
        deleted = await asyncio.wait_for(stream.read(), 5)
        assert deleted.chain == "main" and deleted.epoch == 3 and not deleted.members
        stream.cancel()


async def test_a_leader_shutting_down_hands_leadership_over_at_once(cluster):
    leader = await cluster.leader()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await cluster.stop(leader.options.id)
    new = await cluster.leader(timeout=5)
    # A transfer needs no election timeout: the successor campaigns as soon as it is told.
    assert new.options.id != leader.options.id
    assert loop.time() - started < timing.ELECTION_TICKS * timing.TICK + 0.5


async def test_a_restarted_cluster_recovers_the_registry_from_disk(tmp_path):
    c = InProcessCluster(tmp_path, chains=["main"])
    await c.start_all()
    try:
        leader = await c.leader()
        channel, api = stub(leader.options.listen)
        async with channel:
            for i in range(1, 4):
                reply = await api.Register(coordinator_pb2.RegisterRequest(chain="main", node_id=f"n{i}",
                                                                           address=f"127.0.0.1:{9000 + i}"))
                assert reply.error.code == coordinator_pb2.OK, reply.error.message
        await c.stop_all()
        await c.start_all()
        leader = await c.leader()
        channel, api = stub(c.follower(leader).options.listen)
        async with channel:
            got = await api.GetChain(coordinator_pb2.GetChainRequest(chain="main"), timeout=5)
        assert [m.id for m in got.config.members] == ["n1", "n2", "n3"]
        assert got.config.epoch == 4
    finally:
        await c.stop_all()


async def test_a_member_that_missed_compacted_entries_catches_up_from_a_snapshot(tmp_path):
    c = InProcessCluster(tmp_path, compact_every=5)
    await c.start_all()
    try:
        leader = await c.leader()
        lagging = c.follower(leader).options.id
        await c.stop(lagging)
        channel, api = stub(leader.options.listen)
        async with channel:
            for i in range(12):
                reply = await api.CreateChain(coordinator_pb2.CreateChainRequest(chain=f"chain-{i}"), timeout=5)
                assert reply.error.code == coordinator_pb2.OK
        assert leader.storage.snapshot().index > 5  # the entries the lagging member lacks are compacted
        restarted = await c.start(lagging)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while len(restarted.service.registry.chains) < 12:
            assert loop.time() < deadline, "the restarted member did not catch up"
            await asyncio.sleep(0.05)
        assert restarted.storage.snapshot().index > 5  # installed from the leader's snapshot
    finally:
        await c.stop_all()
