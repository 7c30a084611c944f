"""The member driver (RaftMember) over in-memory storage and an in-process network.

Three members run in one event loop with a fast tick; the network delivers messages on the next
loop iteration and can cut a member off. These tests check the driver's own duties: it elects,
replicates proposals and returns the state machine's result, serves ReadIndex barriers, compacts,
and refuses proposals at a follower or with no leader.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from keychain.coordinator.log import MemoryStorage
from keychain.coordinator.member import NotLeader, RaftMember, Unavailable
from keychain.coordinator.messages import Message
from keychain.coordinator.raft import RaftConfig, RaftCore

TICK = 0.01


class Counter:
    """A state machine: a list of applied commands; apply returns the new length."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def apply(self, data: bytes) -> object:
        self.items.append(data.decode())
        return len(self.items)

    def snapshot(self) -> bytes:
        return json.dumps(self.items).encode()

    def restore(self, data: bytes) -> None:
        self.items = json.loads(data)


class Network:
    def __init__(self) -> None:
        self.members: dict[str, RaftMember] = {}
        self.isolated: set[str] = set()

    def send(self, m: Message) -> None:
        if m.sender in self.isolated or m.to in self.isolated:
            return
        target = self.members.get(m.to)
        if target is not None and target.running:
            asyncio.get_running_loop().call_soon(target.step, m)


async def cluster(n: int = 3, compact_every: int = 1000) -> tuple[Network, dict[str, Counter], dict[str, MemoryStorage]]:
    net = Network()
    ids = [f"c{i}" for i in range(1, n + 1)]
    machines = {i: Counter() for i in ids}
    storages = {i: MemoryStorage() for i in ids}
    for i in ids:
        core = RaftCore(RaftConfig(id=i, election_tick=6), storages[i], random.Random(i), peers=ids)
        member = RaftMember(core, storages[i], machines[i], net, tick=TICK, compact_every=compact_every)
        net.members[i] = member
        member.start()
    return net, machines, storages


async def leader_of(net: Network, timeout: float = 3.0) -> RaftMember:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        leaders = [m for m in net.members.values() if m.is_leader and m.id not in net.isolated]
        if len(leaders) == 1 and leaders[0].leader_committed:
            return leaders[0]
        await asyncio.sleep(TICK)
    raise AssertionError("no leader elected")


async def stop(net: Network) -> None:
    for m in net.members.values():
        await m.stop()


async def test_a_proposal_at_the_leader_returns_the_state_machine_result_and_reaches_every_member():
    net, machines, _ = await cluster()
    try:
        leader = await leader_of(net)
        assert await leader.propose(b"a", timeout=2) == 1
        assert await leader.propose(b"b", timeout=2) == 2
        follower = next(m for m in net.members.values() if m is not leader)
        await follower.read_barrier(timeout=2)  # ReadIndex through the leader, then applied locally
        assert machines[follower.id].items == ["a", "b"]
    finally:
        await stop(net)


async def test_a_follower_refuses_to_propose_and_names_the_leader():
    net, _, _ = await cluster()
    try:
        leader = await leader_of(net)
        follower = next(m for m in net.members.values() if m is not leader)
        with pytest.raises(NotLeader) as info:
            await follower.propose(b"x", timeout=1)
        assert info.value.leader == leader.id
    finally:
        await stop(net)


async def test_a_member_cut_off_from_the_quorum_gives_a_retryable_error_not_an_answer():
    net, _, _ = await cluster()
    try:
        leader = await leader_of(net)
        net.isolated.add(leader.id)
        with pytest.raises(Unavailable):
            await leader.propose(b"lost", timeout=0.3)  # cannot commit without a quorum
        with pytest.raises(Unavailable):
            await leader.read_barrier(timeout=0.3)  # cannot confirm it still leads
        new = await leader_of(net)
        assert new.id != leader.id
        assert await new.propose(b"after", timeout=2) == 1
    finally:
        await stop(net)


async def test_the_log_is_compacted_into_a_snapshot_and_a_lagging_member_catches_up_from_it():
    net, machines, storages = await cluster(compact_every=5)
    try:
        leader = await leader_of(net)
        lagging = next(m for m in net.members.values() if m is not leader)
        net.isolated.add(lagging.id)
        for i in range(12):
            await leader.propose(f"k{i}".encode(), timeout=2)
        assert storages[leader.id].snapshot().index >= 5
        net.isolated.discard(lagging.id)
        deadline = asyncio.get_running_loop().time() + 3
        while machines[lagging.id].items != machines[leader.id].items:
            assert asyncio.get_running_loop().time() < deadline, "the lagging member did not catch up"
            await asyncio.sleep(TICK)
        assert machines[lagging.id].items == [f"k{i}" for i in range(12)]
    finally:
        await stop(net)
