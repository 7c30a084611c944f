"""A node's coordinator link against a small in-test Coordinator servicer: registration, failover
between coordinator addresses, heartbeats that renew the lease and deliver new epochs, and a syncing
node reporting that it caught up (the test coordinator then promotes it, as the real one does)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from keychain.node.coordinator_link import CoordinatorLink, parse_addresses
from keychain.node.messages import ChainConfig, Code, Consistency, Member, MemberState, OpKind, WriteOp
from keychain.node.server import ChainNode
from keychain.node.storage import RocksVersionStore
from keychain.node.wire import config_to_pb

from keychain.proto import coordinator_pb2, coordinator_pb2_grpc

INTERVAL = 0.05


class TestCoordinator(coordinator_pb2_grpc.CoordinatorServicer):
    """Keeps one chain: registration appends a node (syncing unless the chain is empty); a heartbeat
    with caught_up promotes the node to tail in a new epoch."""

    __test__ = False

    def __init__(self, chain: str, lease_ms: int) -> None:
        self.chain = chain
        self.lease_ms = lease_ms
        self.config = ChainConfig(chain, 0)
        self.heartbeats: list[coordinator_pb2.HeartbeatRequest] = []
        self.silent = False
        self.refuse_register: set[str] = set()
        self.revoked: set[str] = set()  # answered OK with lease 0: the lease is revoked
        self.replies_lost = False  # heartbeats arrive, their replies do not (a node that hears nothing)
        self.leader_address = ""  # set: answer as a follower that forwarded the heartbeat to this leader

    def remove(self, node_id: str) -> None:
        self._bump(tuple(m for m in self.config.members if m.id != node_id))

    def _bump(self, members: tuple[Member, ...]) -> None:
        self.config = ChainConfig(self.chain, self.config.epoch + 1, members)

    async def Register(self, request, context):  # type: ignore[no-untyped-def]
        if request.node_id in self.refuse_register:
            return coordinator_pb2.RegisterReply(error=coordinator_pb2.Error(
                code=coordinator_pb2.FAILED_PRECONDITION, message="refused by the test"))
        if self.config.member(request.node_id) is None:
            state = MemberState.SYNCING if self.config.members else MemberState.ACTIVE
            self._bump((*self.config.members, Member(request.node_id, request.address, state)))
        return coordinator_pb2.RegisterReply(config=config_to_pb(self.config), lease_ms=self.lease_ms)

    async def Heartbeat(self, request, context):  # type: ignore[no-untyped-def]
        if self.silent:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "silent")
        self.heartbeats.append(request)
        if self.replies_lost:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "reply lost")
        me = self.config.member(request.node_id)
        if me is None:  # as the real coordinator: NOT_FOUND, no lease, and the chain's configuration
            return coordinator_pb2.HeartbeatReply(error=coordinator_pb2.Error(code=coordinator_pb2.NOT_FOUND),
                                                  config=config_to_pb(self.config))
        if request.caught_up and me.state == MemberState.SYNCING and request.epoch == self.config.epoch:
            self._bump(tuple(Member(m.id, m.address) for m in self.config.members))
        lease_ms = 0 if request.node_id in self.revoked else self.lease_ms
        return coordinator_pb2.HeartbeatReply(config=config_to_pb(self.config), lease_ms=lease_ms,
                                              leader_address=self.leader_address)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def coordinator() -> AsyncIterator[tuple[TestCoordinator, str]]:
    servicer = TestCoordinator("main", lease_ms=400)
    server = grpc.aio.server()
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, f"127.0.0.1:{port}"
    await server.stop(0)


class RunningNode:
    def __init__(self, node: ChainNode, link: CoordinatorLink, task: asyncio.Task[None]) -> None:
        self.node, self.link, self.task = node, link, task


@contextlib.asynccontextmanager
async def running_node(tmp_path: Path, node_id: str, coordinators: str) -> AsyncIterator[RunningNode]:
    node = ChainNode(node_id, RocksVersionStore(tmp_path / node_id, node_id, "main"))
    port = await node.start("127.0.0.1:0")
    link = CoordinatorLink(node, "main", f"127.0.0.1:{port}", parse_addresses(coordinators),
                           interval=INTERVAL, rpc_timeout=0.5)
    task = asyncio.create_task(link.run())
    try:
        yield RunningNode(node, link, task)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await node.stop(grace=0)


async def eventually(what: str, check, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def put(node: ChainNode, key: bytes, value: bytes) -> Code:
    reply = await node.write(node.core.epoch, [WriteOp("", key, OpKind.PUT, value)])
    return reply.error.code if not reply.error.ok else reply.results[0].error.code


async def test_registers_through_the_next_coordinator_and_heartbeats_with_counters(
    tmp_path: Path, coordinator: tuple[TestCoordinator, str]
) -> None:
    servicer, address = coordinator
    dead = f"127.0.0.1:{free_port()}"
    async with running_node(tmp_path, "n1", f"{dead},{address}") as r:
        await eventually("registration", lambda: r.link.registered)
        assert r.node.status().role == "head"
        assert await put(r.node, b"k", b"v") == Code.OK
        await eventually("a heartbeat reporting the write", lambda: any(h.writes == 1 for h in servicer.heartbeats))
        first = len(servicer.heartbeats)
        await asyncio.sleep(10 * INTERVAL)
        assert len(servicer.heartbeats) - first >= 5  # heartbeats keep coming, about every interval
        last = servicer.heartbeats[-1]
        assert (last.node_id, last.chain, last.epoch, last.last_seq) == ("n1", "main", 1, 1)


async def test_heartbeats_go_to_the_leader_a_forwarding_member_names(
    tmp_path: Path, coordinator: tuple[TestCoordinator, str]
) -> None:
    follower, follower_address = coordinator
    leader = TestCoordinator("main", lease_ms=400)
    server = grpc.aio.server()
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(leader, server)
    leader_address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    try:
        # One chain, as both members of one cluster see it: n1 is its member already.
        leader.config = follower.config = ChainConfig("main", 1, (Member("n1", "127.0.0.1:1"),))
        follower.leader_address = leader_address
        async with running_node(tmp_path, "n1", f"{follower_address},{leader_address}") as r:
            await eventually("a heartbeat at the leader", lambda: leader.heartbeats)
            at_follower = len(follower.heartbeats)
            await asyncio.sleep(6 * INTERVAL)
            assert len(follower.heartbeats) == at_follower == 1  # one forwarded, then straight to the leader
            assert len(leader.heartbeats) >= 3 and r.node.status().lease_valid
    finally:
        await server.stop(0)


async def test_the_lease_lapses_when_the_coordinator_goes_silent_and_returns_with_it(
    tmp_path: Path, coordinator: tuple[TestCoordinator, str]
) -> None:
    servicer, address = coordinator
    async with running_node(tmp_path, "n1", address) as r:
        await eventually("registration", lambda: r.link.registered)
        assert await put(r.node, b"k", b"v") == Code.OK
        servicer.silent = True
        silent_since = time.monotonic()
        await eventually("the lease to lapse", lambda: not r.node.status().lease_valid, timeout=2)
        assert time.monotonic() - silent_since < 0.4 + 0.2  # from the last heartbeat SENT, not later
        assert await put(r.node, b"k", b"w") == Code.LEASE_EXPIRED
        servicer.silent = False
        await eventually("the lease to be renewed", lambda: r.node.status().lease_valid)
        assert await put(r.node, b"k", b"w") == Code.OK


async def test_a_syncing_node_reports_caught_up_and_follows_its_promotion(
    tmp_path: Path, coordinator: tuple[TestCoordinator, str]
) -> None:
    servicer, address = coordinator
    async with running_node(tmp_path, "n1", address) as head:
        await eventually("n1 registered", lambda: head.link.registered)
        for i in range(20):
            assert await put(head.node, b"k%d" % i, b"v") == Code.OK
        async with running_node(tmp_path, "n2", address) as joiner:
            await eventually("n2 promoted to tail", lambda: joiner.node.status().role == "tail", timeout=10)
            assert any(h.node_id == "n2" and h.caught_up for h in servicer.heartbeats)
            assert servicer.config.epoch == 3  # n1 alone, n2 syncing, n2 active
            await eventually("n1 sees the new epoch", lambda: head.node.status().epoch == 3)
            assert joiner.node.status().keys == 20
            assert await put(head.node, b"after", b"x") == Code.OK
            reply = await joiner.node.read(3, b"after", 0)  # type: ignore[arg-type]
            assert reply.value == b"x"


async def test_a_removed_node_adopts_the_configuration_without_it_and_stops_serving_at_once(
    tmp_path: Path, coordinator: tuple[TestCoordinator, str]
) -> None:
    # The coordinator removed n2; its lease would run a minute more. The NOT_FOUND heartbeat reply
    # carries the chain's new configuration: n2 adopts it and serves nothing from then on, even
    # while it cannot register again, rather than serving reads at the old epoch.
    servicer, address = coordinator
    servicer.lease_ms = 60_000
    async with running_node(tmp_path, "n1", address) as head:
        await eventually("n1 registered", lambda: head.link.registered)
        assert await put(head.node, b"k", b"v1") == Code.OK
        async with running_node(tmp_path, "n2", address) as tail:
            await eventually("n2 promoted to tail", lambda: tail.node.status().role == "tail", timeout=10)
            await eventually("n2 serves reads", lambda: tail.node.core.serving(tail.node.clock()))
            servicer.refuse_register.add("n2")
            servicer.remove("n2")
            removed_in = servicer.config.epoch

            await eventually("n2 adopts the epoch of its removal", lambda: tail.node.status().epoch == removed_in)
            status = tail.node.status()
            assert (status.role, status.lease_valid) == ("none", False)
            assert not tail.link.registered
            old = await tail.node.read(removed_in - 1, b"k", Consistency.STRONG)
            assert old.error.code == Code.WRONG_EPOCH
            now = await tail.node.read(removed_in, b"k", Consistency.STRONG)
            assert (now.error.code, now.error.message) == (Code.UNAVAILABLE, "not a member of the chain")


async def test_heartbeats_say_whether_the_node_is_in_sync_in_the_epoch_it_runs(
    tmp_path: Path, coordinator: tuple[TestCoordinator, str]
) -> None:
    # n1 joins behind a head it cannot reach: syncing, it holds nothing it can vouch for, and says
    # so in every heartbeat of that epoch. Made the chain's only member, it holds everything
    # committed in the new epoch, and says that. (The coordinator relies on it never to leave a
    # chain with only members that lack acknowledged writes.)
    servicer, address = coordinator
    servicer.config = ChainConfig("main", 1, (Member("ghost", f"127.0.0.1:{free_port()}"),))
    async with running_node(tmp_path, "n1", address) as r:
        await eventually("three heartbeats in epoch 2",
                         lambda: sum(h.node_id == "n1" and h.epoch == 2 for h in servicer.heartbeats) >= 3)
        assert r.node.status().role == "syncing"
        assert not any(h.in_sync for h in servicer.heartbeats if h.epoch == 2)

        me = servicer.config.member("n1")
        assert me is not None
        servicer.config = ChainConfig("main", 3, (Member("n1", me.address),))
        await eventually("a heartbeat in sync in epoch 3",
                         lambda: any(h.epoch == 3 and h.in_sync for h in servicer.heartbeats))
        assert r.node.status().role == "head"


async def test_a_lease_that_lapsed_unrenewed_is_surrendered_so_a_deaf_node_can_be_removed_at_once(
    tmp_path: Path, coordinator: tuple[TestCoordinator, str]
) -> None:
    # The coordinator hears the node, the node hears nothing back: its lease (400 ms) lapses, and
    # from then on each heartbeat surrenders it, up to and excluding itself - so a revocation the
    # node cannot hear costs no wait beyond the lapse. The first grant heard again renews it.
    servicer, address = coordinator
    async with running_node(tmp_path, "n1", address) as r:
        beats = servicer.heartbeats
        await eventually("a renewed lease", lambda: len(beats) >= 2 and r.node.status().lease_valid)
        assert all(h.surrendered_below == 0 for h in beats)
        servicer.replies_lost = True
        lost_from = beats[-1].seq
        await eventually("a surrender", lambda: beats[-1].surrendered_below > lost_from)
        assert not r.node.status().lease_valid
        assert all(h.surrendered_below in (0, h.seq) for h in beats)  # each surrenders all before itself
        servicer.replies_lost = False
        await eventually("the lease to be renewed", lambda: r.node.status().lease_valid)
        await eventually("no more surrender", lambda: beats[-1].surrendered_below == 0)


async def test_a_revoked_lease_is_surrendered_and_the_next_heartbeats_say_so(
    tmp_path: Path, coordinator: tuple[TestCoordinator, str]
) -> None:
    servicer, address = coordinator
    servicer.lease_ms = 60_000
    async with running_node(tmp_path, "n1", address) as r:
        await eventually("registration", lambda: r.link.registered)
        assert await put(r.node, b"k", b"v") == Code.OK
        beats = servicer.heartbeats
        await eventually("a heartbeat", lambda: bool(beats))
        assert beats[-1].link_health.epoch == 1 and beats[-1].surrendered_below == 0
        servicer.revoked.add("n1")
        revoked_after = beats[-1].seq  # every heartbeat answered so far was granted a minute's lease
        await eventually("a surrender", lambda: beats[-1].surrendered_below > revoked_after)
        assert not r.node.status().lease_valid  # dropped at once, not a minute later
        assert await put(r.node, b"k", b"w") == Code.LEASE_EXPIRED
        seqs = [h.seq for h in beats]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        servicer.revoked.discard("n1")  # the coordinator renews it again (the removal was called off)
        await eventually("the lease to be renewed", lambda: r.node.status().lease_valid)
