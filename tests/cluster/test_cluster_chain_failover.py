"""Three coordinators and three chain nodes as real processes on 127.0.0.1, under a steady load.

Writes go straight to the chain's head over gRPC (each to a new key, so every acknowledged write
can be checked afterwards), reads to every node. Scenarios:
- kill -9 of the coordinator leader: a new leader is elected, registry changes continue, and the
  chain's reads and writes are not interrupted (the nodes' leases outlast the election);
- kill -9 of the head, of a middle node and of the tail: the coordinator removes it (epoch + 1),
  writes and reads continue, no acknowledged write is lost; restarted on its data, the node rejoins
  after the tail as syncing, catches up, and is promoted to tail.
"""

from __future__ import annotations

import time

import pytest
from cluster_harness import ChainLoad, ProcessCluster, running_cluster, wait_for

from keychain.proto import chain_pb2

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]

SLOW = 0.5  # seconds: a chain operation slower than this counts as interrupted


@pytest.fixture
def cluster(tmp_path):
    with running_cluster(tmp_path, coordinators=3, nodes=3) as c:
        yield c


def check_no_acked_write_lost(c: ProcessCluster, load: ChainLoad, nodes: list[str]) -> None:
    assert load.acked, "the load acknowledged no write at all"
    for name in nodes:
        for key, value in load.acked.items():
            reply = c.read(name, key)
            assert reply.error.code == chain_pb2.OK and reply.value == value, (
                f"{name} lost acknowledged {key!r}: {reply}")


def test_killing_the_coordinator_leader_does_not_interrupt_the_chain(cluster):
    c = cluster
    load = ChainLoad(c)
    load.start()
    try:
        time.sleep(0.5)
        old = wait_for("a coordinator leader", c.leader, timeout=5)
        t0 = time.monotonic()
        c.kill(old)
        new = wait_for("a new coordinator leader", lambda: c.leader(exclude=(old,)), timeout=5)
        assert new != old
        survivor = next(n for n in c.names("coordinator") if n not in (old, new))
        code, body = c.http(survivor, "POST", "/v1/chains/second")
        assert code == 201, body
        time.sleep(max(0.0, t0 + 3.0 - time.monotonic()))  # past a full lease after the kill
        t1 = time.monotonic()
        assert load.writes_acked_since(t0) > 20
    finally:
        load.finish()
    assert load.interrupted(t0, t1, SLOW) == []
    check_no_acked_write_lost(c, load, c.names("node"))


@pytest.mark.parametrize("role", ["head", "middle", "tail"])
def test_a_killed_node_is_replaced_and_rejoins_as_tail_when_restarted(cluster, role):
    c = cluster
    load = ChainLoad(c)
    load.start()
    try:
        time.sleep(0.5)
        before = c.chain_view()
        victim = next(m["id"] for m in before["members"] if m["role"] == role)
        t0 = time.monotonic()
        c.kill(victim)

        def reconfigured():
            chain = c.chain_view()
            return chain if chain and victim not in [m["id"] for m in chain["members"]] else None

        after = wait_for(f"the {role} to be removed", reconfigured, timeout=10)
        assert after["epoch"] > before["epoch"]
        assert sorted(m["role"] for m in after["members"]) == ["head", "tail"]
        flowing = wait_for("writes flowing again", lambda: load.writes_acked_since(time.monotonic() - 0.2) > 0,
                           timeout=5)
        assert flowing
        t_writes = time.monotonic() - t0

        c.start(victim)  # restarted on its own data
        wait_for(f"{victim} to rejoin as tail",
                 lambda: c.roles().get(victim) == "tail" and len(c.roles()) == 3, timeout=20, interval=0.1)
        wait_for(f"{victim} serving", lambda: c.node_status(victim).lease_valid, timeout=5)
        time.sleep(0.5)
    finally:
        load.finish()
    check_no_acked_write_lost(c, load, c.names("node"))
    assert t_writes < 5.0, f"writes took {t_writes:.2f}s to flow again"
