"""What an idle leader sends: one heartbeat per follower per heartbeat interval, which also carries the
leadership round its shell begins when the heartbeat is due (coordinator.member)."""

import random
from collections import Counter

from keychain.coordinator.log import MemoryStorage
from keychain.coordinator.messages import Message, MessageType
from keychain.coordinator.raft import RaftConfig, RaftCore, Role

IDS = ("n1", "n2", "n3")


class Cluster:
    def __init__(self, heartbeat_tick: int) -> None:
        self.storages = {i: MemoryStorage() for i in IDS}
        self.cores = {
            i: RaftCore(RaftConfig(i, election_tick=6, heartbeat_tick=heartbeat_tick), self.storages[i],
                        random.Random(7), peers=list(IDS))
            for i in IDS
        }
        self.sent: list[Message] = []
        self.read_states: list[bytes] = []

    def pump(self) -> None:
        """Persist every Ready and deliver its messages at once, until nothing moves."""
        while any(c.has_ready() for c in self.cores.values()):
            outbox: list[Message] = []
            for i, core in self.cores.items():
                if core.has_ready():
                    rd = core.ready()
                    rd.persist(self.storages[i])
                    outbox += rd.messages
                    if i == "n1":
                        self.read_states += [rs.context for rs in rd.read_states]
                    core.advance(rd)
            self.sent += outbox
            for m in outbox:
                self.cores[m.to].step(m)


def elected(heartbeat_tick: int) -> Cluster:
    cluster = Cluster(heartbeat_tick)
    cluster.pump()
    cluster.cores["n1"].campaign()
    cluster.pump()
    for _ in range(3):  # the leader's first entry commits, followers learn the commit index
        for core in cluster.cores.values():
            core.tick()
        cluster.pump()
    assert cluster.cores["n1"].role is Role.LEADER
    cluster.sent.clear()
    cluster.read_states.clear()
    return cluster


def test_an_idle_leader_sends_one_heartbeat_per_interval_carrying_its_leadership_round():
    cluster = elected(heartbeat_tick=2)
    leader = cluster.cores["n1"]
    rounds: list[bytes] = []
    for t in range(20):
        if leader.heartbeat_due:  # as the shell does, before the tick
            rounds.append(f"round-{t}".encode())
            leader.read_index(rounds[-1], on_heartbeat=True)
        for core in cluster.cores.values():
            core.tick()
        cluster.pump()
    heartbeats = Counter(m.to for m in cluster.sent if m.sender == "n1" and m.type is MessageType.HEARTBEAT)
    assert heartbeats == {"n2": 10, "n3": 10}  # 20 ticks, one every two: no extra broadcast per round
    assert len(rounds) == 10 and cluster.read_states == rounds  # every round confirmed by its heartbeat
    assert all(m.type in (MessageType.HEARTBEAT, MessageType.HEARTBEAT_RESP) for m in cluster.sent)


def test_a_read_not_on_the_heartbeat_is_confirmed_by_a_round_of_its_own_at_once():
    cluster = elected(heartbeat_tick=2)
    cluster.cores["n1"].read_index(b"client-read")
    cluster.pump()
    assert cluster.read_states == [b"client-read"]
    assert sum(m.type is MessageType.HEARTBEAT for m in cluster.sent) == 2  # one per follower, no tick
