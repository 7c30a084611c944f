"""Property test: a 3-5 member cluster under random ticks, proposals, message loss, reordering,
duplication, partitions, restarts and compaction keeps Raft's safety properties:

- election safety: at most one leader per term, over the whole run;
- committed entries never change: every entry handed out as committed, by any member at any
  time, is the same (term, type, data) at that index;
- state machine safety: the applied command lists of all members are prefixes of one another;

and, once the network heals, it elects a leader and commits again (liveness, bounded).

Messages travel as the gRPC transport carries them: a lost message is simply gone, except that the
sender of a SNAPSHOT learns whether it got through (`report_snapshot`), exactly as the transport
and the simulator tell the core. The leader sends a follower nothing else while a snapshot is
outstanding, so a network that swallowed snapshots without that report would stall the follower
for good, which no real shell does.
"""

from __future__ import annotations

import contextlib
import os
import random

from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from keychain.coordinator.messages import Message, MessageType
from keychain.coordinator.raft import ProposalDropped, Ready, Role
from raft_harness import RaftNetwork, encode_state

OPS = ["tick", "tick-all", "tick-all"] + ["ready"] * 4 + ["deliver"] * 6 + ["propose"] * 3 + [
    "drop",
    "duplicate",
    "partition",
    "heal",
    "restart",
    "compact",
    "flush",
    "flush",
]


STEPS = 600


class Checked:
    def __init__(self, size: int, seed: int) -> None:
        self.net = RaftNetwork()
        self.names = [f"n{i}" for i in range(1, size + 1)]
        for name in self.names:
            self.net.add(name, self.names, {"election": "5", "heartbeat": "1"}, seed)
        self.leaders: dict[int, str] = {}
        self.committed: dict[int, tuple[int, int, bytes]] = {}
        self.proposals = 0

    def check_leaders(self) -> None:
        for name in self.names:
            core = self.net.members[name].core
            if core.role is Role.LEADER:
                other = self.leaders.setdefault(core.term, name)
                assert other == name, f"two leaders in term {core.term}: {other} and {name}"

    def handle(self, name: str) -> None:
        core = self.net.members[name].core
        if not core.has_ready():
            return
        rd: Ready = self.net.handle_ready(name)
        for e in rd.committed_entries:
            seen = self.committed.setdefault(e.index, (e.term, int(e.type), e.data))
            assert seen == (e.term, int(e.type), e.data), f"{name} committed {e} where {seen} was committed"

    def check_applied(self) -> None:
        lists = sorted((self.net.members[n].applied for n in self.names), key=len)
        longest = lists[-1]
        for applied in lists:
            assert applied == longest[: len(applied)], f"divergent state machines: {applied} vs {longest}"

    def deliver(self, msg: Message) -> None:
        """Hand `msg` to its receiver unless a partition cuts the link."""
        delivered = (msg.sender, msg.to) not in self.net.cut
        if delivered:
            self.net.members[msg.to].core.step(msg)
        if msg.type is MessageType.SNAPSHOT:
            self.net.members[msg.sender].core.report_snapshot(msg.to, delivered)

    def lose(self, msg: Message) -> None:
        if msg.type is MessageType.SNAPSHOT:
            self.net.members[msg.sender].core.report_snapshot(msg.to, False)

    def flush(self) -> None:
        for _ in range(20):
            for name in self.names:
                self.handle(name)
            if not self.net.queue:
                return
            batch, self.net.queue = self.net.queue, []
            for msg in batch:
                self.deliver(msg)

    def step(self, op: str, pick: int, rng: random.Random) -> None:
        name = self.names[pick % len(self.names)]
        queue = self.net.queue
        match op:
            case "tick":
                self.net.members[name].core.tick()
            case "tick-all":
                for member in self.names:
                    self.net.members[member].core.tick()
            case "ready":
                self.handle(name)
            case "deliver" if queue:
                self.deliver(queue.pop(pick % len(queue)))
            case "drop" if queue:
                self.lose(queue.pop(pick % len(queue)))
            case "duplicate" if queue:
                queue.append(queue[pick % len(queue)])
            case "propose":
                self.proposals += 1
                with contextlib.suppress(ProposalDropped):  # no leader known: a shell would retry
                    self.net.members[name].core.propose(f"v{self.proposals}".encode())
            case "partition":
                group = [n for n in self.names if rng.random() < 0.5] or [name]
                self.net.partition([group])
            case "heal":
                self.net.cut.clear()
            case "restart":
                self.net.restart(name)
            case "compact":
                member = self.net.members[name]
                core = member.core
                if core.log.applied > member.storage.snapshot().index and core.outstanding is None:
                    snap = core.snapshot_for_compaction(encode_state(member.applied))
                    member.storage.compact(snap)
            case "flush":
                self.flush()
            case _:
                pass
        self.check_leaders()
        self.check_applied()

    def heal_and_settle(self) -> None:
        self.net.cut.clear()
        for _ in range(200):
            for name in self.names:
                self.net.members[name].core.tick()
            self.flush()
            self.check_leaders()
            leaders = [n for n in self.names if self.net.members[n].core.role is Role.LEADER]
            if leaders:
                leader = self.net.members[leaders[0]].core
                if leader.log.committed == leader.log.last_index():
                    break
        else:
            raise AssertionError("no leader committed its log within 200 rounds after healing")
        # One more proposal reaches everyone.
        leader.propose(b"final")
        for _ in range(10):
            for name in self.names:
                self.net.members[name].core.tick()
            self.flush()
        self.check_applied()
        assert all(self.net.members[n].applied[-1:] == ["final"] for n in self.names)


# KEYCHAIN_RAFT_EXAMPLES raises the count for a long local search; CI runs the default.
@settings(
    max_examples=int(os.environ.get("KEYCHAIN_RAFT_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# A snapshot lost on a cut link during a flush, with no report to the leader: n3 starved (replayed
# with the report it now gets).
@example(size=3, seed=10374)
@given(size=st.integers(min_value=3, max_value=5), seed=st.integers(min_value=0, max_value=2**32))
def test_safety_under_random_faults(size: int, seed: int) -> None:
    # Long random walks find far more interleavings than short drawn lists; replaying a seed is
    # deterministic. The replay line is our own note: Hypothesis's printout of the arguments
    # comes out blank whenever schemathesis's pytest plugin is loaded (it swaps Hypothesis's
    # printer for one that prints nothing, for every test of the run).
    note(f"replay: @example(size={size}, seed={seed})")
    cluster = Checked(size, seed)
    rng = random.Random(seed)
    for _ in range(STEPS):
        cluster.step(rng.choice(OPS), rng.randrange(1000), rng)
    cluster.heal_and_settle()
