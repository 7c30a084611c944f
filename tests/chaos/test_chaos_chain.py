"""Chaos: 3 coordinators and 3 chain nodes, each in its own network namespace, under load from a
client namespace, while the network partitions the head, cuts off the coordinator leader and slows
a node. Every history must be linearizable, no acknowledged write may be lost, and the chain must
come back to three active members taking writes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from chaos_netns_helpers import needs_netns
from gray_cluster import COORDINATORS, NODES, GrayCluster, Load, assert_sound, gray_cluster, wait_for

from keychain.testing.history import Operation
from keychain.testing.netns import Network

pytestmark = [*needs_netns(), pytest.mark.slow, pytest.mark.timeout(120)]

RECOVERY_TIMEOUT = 20.0  # seconds for the chain to get back to 3 active members after a heal


@dataclass
class ChaosCluster:
    members: GrayCluster
    load: Load

    @property
    def net(self) -> Network:
        return self.members.net

    def topology(self) -> dict:
        return self.load.topology()

    def wait_for(self, what: str, predicate, timeout: float = RECOVERY_TIMEOUT) -> dict:
        try:
            return wait_for(self.load, what, predicate, timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.members.logs()}") from None

    def wait_healthy(self) -> dict:
        """Three active members and a head: the chain has recovered."""
        return self.wait_for("chain of 3 active members", lambda t: t["head"] and
                             sum(state == "ACTIVE" for _, state in t["members"]) == 3)

    def writes_flow(self, at_least: int = 5, timeout: float = 10.0) -> None:
        start = self.topology()["ok_writes"]
        self.wait_for(f"{at_least} acknowledged writes", lambda t: t["ok_writes"] >= start + at_least, timeout)

    def finish(self) -> tuple[list[Operation], dict]:
        """Stop the load; the checked history and the acknowledged writes with the final reads."""
        return self.load.finish()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ChaosCluster]:
    with gray_cluster(tmp_path) as members:
        try:
            load = members.load()
        except AssertionError as e:
            raise AssertionError(f"{e}\n{members.logs()}") from None
        yield ChaosCluster(members, load)


def test_partitioned_head_is_replaced_and_no_acknowledged_write_is_lost(cluster: ChaosCluster):
    net = cluster.net
    time.sleep(1.5)  # load on a healthy chain first
    head = cluster.topology()["head"]
    assert head in NODES
    # The head keeps its link to the client but loses the other nodes and every coordinator:
    # its lease must lapse before the coordinators make its successor the head.
    net.split([head], [*COORDINATORS, *(n for n in NODES if n != head)])
    topo = cluster.wait_for("new head", lambda t: t["head"] not in ("", head))
    assert head not in [m for m, state in topo["members"] if state == "ACTIVE"]
    cluster.writes_flow()
    net.heal()
    cluster.wait_healthy()  # the old head rejoins after the tail and is promoted
    healed_at = time.monotonic()
    cluster.writes_flow()
    history, acks = cluster.finish()
    assert_sound(history, acks)
    assert any(op.op == "put" and op.status == "ok" and op.start > healed_at for op in history)


def test_coordinator_leader_partition_and_slow_node_keep_the_chain_serving(cluster: ChaosCluster):
    net = cluster.net
    time.sleep(1.0)
    leader = cluster.wait_for("coordinator leader", lambda t: t["leader"] in COORDINATORS)["leader"]
    net.isolate(leader)
    cluster.wait_for("new coordinator leader", lambda t: t["leader"] not in ("", leader))
    cluster.writes_flow()  # the chain keeps serving across the election
    net.heal()
    # A slow middle of the chain: every frame to and from it is delayed.
    middle = [m for m, state in cluster.topology()["members"] if state == "ACTIVE"][1]
    net.impair(middle, delay=0.03, jitter=0.01)
    cluster.writes_flow()
    net.heal()
    cluster.wait_healthy()
    healed_at = time.monotonic()
    cluster.writes_flow()
    history, acks = cluster.finish()
    assert_sound(history, acks)
    assert any(op.op == "put" and op.status == "ok" and op.start > healed_at for op in history)
