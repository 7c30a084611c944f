"""Changing the coordinator cluster's own membership through the admin API, members in this event loop.

Scenarios: a fourth member joins (learner while it is not running, promoted once it caught up, and
then needed for the quorum); a second add while one is in progress is refused; a follower and then
the leader itself are removed (the leader hands over first) and the rest keeps committing; a member
that joined after the leader compacted its log restarts knowing every peer's address with nobody
to ask; bad requests get clear errors.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from coordinator_shell_harness import InProcessCluster, free_ports
from keychain.coordinator.server import CoordinatorOptions, CoordinatorServer

pytestmark = pytest.mark.timeout(60)


class GrowingCluster(InProcessCluster):
    """An InProcessCluster that can also start members that join it later."""

    def add_joiner(self, member: str) -> None:
        grpc_port, http_port = free_ports(2)
        self.addresses[member] = f"127.0.0.1:{grpc_port}"
        self.http[member] = f"127.0.0.1:{http_port}"

    def joiner_options(self, member: str, join: list[str] | None = None) -> CoordinatorOptions:
        original = [a for m, a in self.addresses.items() if m in self.ids]
        return CoordinatorOptions(
            id=member, listen=self.addresses[member], data_dir=self.root / member, peers={},
            http=self.http[member], join=original if join is None else join, **self.options,  # type: ignore[arg-type]
        )

    async def start_joiner(self, member: str, join: list[str] | None = None) -> CoordinatorServer:
        server = CoordinatorServer(self.joiner_options(member, join))
        await server.start()
        self.servers[member] = server
        return server


@pytest.fixture
async def cluster(tmp_path: Path):
    c = GrowingCluster(tmp_path)
    await c.start_all()
    try:
        yield c
    finally:
        await c.stop_all()


def admin(cluster: InProcessCluster, member: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://{cluster.http[member]}", timeout=30)


async def members_of(cluster: InProcessCluster, member: str) -> dict[str, str]:
    """id -> suffrage, from /v1/status at `member`."""
    async with admin(cluster, member) as http:
        answer = await http.get("/v1/status")
    assert answer.status_code == 200, answer.text
    return {m["id"]: m["suffrage"] for m in answer.json()["members"]}


async def eventually(what: str, check, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_new_member_is_a_learner_until_it_caught_up_then_a_voter_the_quorum_needs(cluster):
    leader = await cluster.leader()
    follower = cluster.follower(leader)
    async with admin(cluster, follower.options.id) as http:
        for i in range(5):
            assert (await http.post(f"/v1/chains/before-{i}")).status_code == 201
    cluster.add_joiner("coord-4")

    # Asked at a follower (forwarded) before coord-4 runs: it stays a learner, the request waits.
    async with admin(cluster, follower.options.id) as http:
        adding = asyncio.create_task(
            http.post("/v1/members", json={"id": "coord-4", "address": cluster.addresses["coord-4"]}))

        async def is_learner() -> bool:
            return (await members_of(cluster, leader.options.id)).get("coord-4") == "learner"
        await eventually("coord-4 to be a learner", is_learner)
        assert not adding.done()

        joined = await cluster.start_joiner("coord-4")
        answer = await adding
    assert answer.status_code == 201, answer.text
    suffrage = {m["id"]: m["suffrage"] for m in answer.json()["members"]}
    assert suffrage == {"coord-1": "voter", "coord-2": "voter", "coord-3": "voter", "coord-4": "voter"}
    # It caught up before the promotion: it holds the chains created before it existed.
    assert [f"before-{i}" for i in range(5)] == sorted(joined.service.registry.chains)
    assert joined.addresses() == cluster.addresses  # learned from the leader's log, not configured

    # Four voters, one stopped: a change commits only with coord-4's acknowledgement (3 of 4).
    stopped = next(m for m in cluster.ids if m != leader.options.id)
    await cluster.stop(stopped)
    async with admin(cluster, "coord-4") as http:
        created = await http.post("/v1/chains/after-join")
    assert created.status_code == 201, created.text

    async def applied_at_coord_4() -> bool:
        return "after-join" in joined.service.registry.chains
    await eventually("coord-4 to apply the change", applied_at_coord_4)


async def test_one_server_at_a_time_a_second_add_waits_for_the_first(cluster):
    leader = await cluster.leader()
    cluster.add_joiner("coord-4")
    cluster.add_joiner("coord-5")
    leader.service.catch_up_timeout = 0.5  # coord-4 never starts: it cannot catch up
    async with admin(cluster, leader.options.id) as http:
        first = await http.post("/v1/members", json={"id": "coord-4", "address": cluster.addresses["coord-4"]})
        assert first.status_code == 503, first.text
        assert "stays a learner" in first.json()["message"]
        second = await http.post("/v1/members", json={"id": "coord-5", "address": cluster.addresses["coord-5"]})
        assert second.status_code == 409, second.text
        assert "coord-4 is still a learner" in second.json()["message"]
        # Removing the abandoned learner unblocks the next change.
        assert (await http.delete("/v1/members/coord-4")).status_code == 200
    assert "coord-4" not in await members_of(cluster, leader.options.id)


async def test_removing_a_follower_leaves_a_cluster_that_commits_without_it(cluster):
    leader = await cluster.leader()
    gone = cluster.follower(leader).options.id
    async with admin(cluster, leader.options.id) as http:
        removed = await http.delete(f"/v1/members/{gone}")
        assert removed.status_code == 200, removed.text
        assert [m["id"] for m in removed.json()["members"]] == sorted(set(cluster.ids) - {gone})
        assert (await http.delete(f"/v1/members/{gone}")).status_code == 404
    await cluster.stop(gone)
    # Two voters left, both needed: a commit proves the removed one no longer counts.
    async with admin(cluster, leader.options.id) as http:
        assert (await http.post("/v1/chains/after-removal")).status_code == 201
    assert gone not in leader.transport.addresses  # the transport forgot it


async def test_removing_the_leader_hands_leadership_over_first(cluster):
    old = await cluster.leader()
    follower = cluster.follower(old)
    async with admin(cluster, follower.options.id) as http:
        removed = await http.delete(f"/v1/members/{old.options.id}")
    assert removed.status_code == 200, removed.text
    assert old.options.id not in [m["id"] for m in removed.json()["members"]]
    new = await cluster.leader(exclude=(old.options.id,))
    assert new.options.id != old.options.id
    assert not old.member.is_leader
    await cluster.stop(old.options.id)
    async with admin(cluster, follower.options.id) as http:
        assert (await http.post("/v1/chains/after-leader-left")).status_code == 201
    assert set(await members_of(cluster, new.options.id)) == set(cluster.ids) - {old.options.id}


async def test_a_member_restarted_after_compaction_knows_every_peer_with_nobody_to_ask(tmp_path):
    cluster = GrowingCluster(tmp_path, compact_every=4)
    await cluster.start_all()
    try:
        leader = await cluster.leader()
        async with admin(cluster, leader.options.id) as http:
            for i in range(8):  # the leader's log is compacted: coord-4 gets a snapshot, not the log
                assert (await http.post(f"/v1/chains/c{i}")).status_code == 201
            cluster.add_joiner("coord-4")
            joined = await cluster.start_joiner("coord-4")
            added = await http.post("/v1/members", json={"id": "coord-4", "address": cluster.addresses["coord-4"]})
            assert added.status_code == 201, added.text
            for i in range(8, 16):  # coord-4 applies enough to compact its own log
                assert (await http.post(f"/v1/chains/c{i}")).status_code == 201

        async def compacted() -> bool:
            return joined.storage is not None and joined.storage.snapshot().index > 0
        await eventually("coord-4 to compact its log", compacted)
        await cluster.stop("coord-4")

        # Restarted with a join address nobody listens on: the addresses must come from its own disk.
        (dead,) = free_ports(1)
        restarted = await cluster.start_joiner("coord-4", join=[f"127.0.0.1:{dead}"])
        assert restarted.addresses() == cluster.addresses
        assert restarted.transport.addresses == {m: a for m, a in cluster.addresses.items() if m != "coord-4"}
        async with admin(cluster, "coord-4") as http:
            assert (await http.post("/v1/chains/after-restart")).status_code == 201  # forwarded to the leader
    finally:
        await cluster.stop_all()


async def test_bad_membership_requests_get_clear_errors(cluster):
    leader = await cluster.leader()
    async with admin(cluster, leader.options.id) as http:
        missing = await http.post("/v1/members", json={"address": "127.0.0.1:1"})
        assert missing.status_code == 400 and missing.json()["error"] == "invalid_argument"
        bad = await http.post("/v1/members", json={"id": "coord-9", "address": "nowhere"})
        assert bad.status_code == 400 and "host:port" in bad.json()["message"]
        moved = await http.post("/v1/members", json={"id": "coord-2", "address": "127.0.0.1:1"})
        assert moved.status_code == 409 and "already a member" in moved.json()["message"]
        again = await http.post("/v1/members", json={"id": "coord-2", "address": cluster.addresses["coord-2"]})
        assert again.status_code == 201  # repeating an add that is done is safe
        unknown = await http.delete("/v1/members/coord-9")
        assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
