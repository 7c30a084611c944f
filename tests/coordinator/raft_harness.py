"""An in-memory network of Raft cores for scripted scenarios and property tests.

Each member is a `RaftCore` over a `MemoryStorage`, driven exactly as a shell would: take a Ready,
persist it, queue its messages, apply its committed entries, advance. Messages wait in one FIFO
queue until delivered; partitions and explicit drops discard them. The "state machine" of a member
is the list of NORMAL commands it applied, which is what its snapshots contain.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from keychain.coordinator.log import EntryType, MemoryStorage
from keychain.coordinator.membership import ConfChange, ConfChangeOp
from keychain.coordinator.messages import Message, describe_entry
from keychain.coordinator.raft import ProposalDropped, RaftConfig, RaftCore, Ready, Role

from keychain.testing.datadriven import Case, ScenarioError


@dataclass
class Member:
    core: RaftCore
    storage: MemoryStorage
    config: RaftConfig
    rng: random.Random
    peers: list[str]
    applied: list[str] = field(default_factory=list)


class RaftNetwork:
    def __init__(self) -> None:
        self.members: dict[str, Member] = {}
        self.queue: list[Message] = []
        self.cut: set[tuple[str, str]] = set()  # (sender, receiver) pairs whose messages are lost
        self.defaults: dict[str, str] = {}

    # ---- building ----

    def _config(self, member: str, args: dict[str, str]) -> RaftConfig:
        opts = {**self.defaults, **args}
        return RaftConfig(
            id=member,
            election_tick=int(opts.get("election", "10")),
            heartbeat_tick=int(opts.get("heartbeat", "1")),
            pre_vote=opts.get("prevote", "true") == "true",
            check_quorum=opts.get("checkquorum", "true") == "true",
            max_size_per_msg=int(opts.get("maxsize", str(1 << 20))),
            max_inflight_msgs=int(opts.get("inflight", "64")),
        )

    def add(self, member: str, peers: list[str], args: dict[str, str], seed: int) -> None:
        if member in self.members:
            raise ScenarioError(f"{member} already exists")
        config = self._config(member, args)
        storage = MemoryStorage()
        rng = random.Random(f"{seed}-{member}")
        core = RaftCore(config, storage, rng, peers=peers)
        self.members[member] = Member(core, storage, config, rng, peers)

    def restart(self, member: str) -> None:
        """Throw the core away and build a new one over what it persisted (as a shell would, with
        the same bootstrap peers: they matter only if nothing was persisted yet)."""
        old = self.members[member]
        core = RaftCore(old.config, old.storage, old.rng, peers=old.peers)
        snap = old.storage.snapshot()
        applied = decode_state(snap.data)
        self.members[member] = Member(core, old.storage, old.config, old.rng, old.peers, applied)

    # ---- driving ----

    def handle_ready(self, member: str) -> Ready:
        m = self.members[member]
        rd = m.core.ready()
        rd.persist(m.storage)
        self.queue.extend(rd.messages)
        if rd.snapshot is not None:
            m.applied = decode_state(rd.snapshot.data)
        for e in rd.committed_entries:
            if e.type is EntryType.NORMAL:
                m.applied.append(e.data.decode())
        m.core.advance(rd)
        return rd

    def deliver(self, sender: str | None = None, to: str | None = None, limit: int | None = None) -> list[str]:
        """Deliver queued messages (those matching the filters); the lines describing them."""
        out: list[str] = []
        keep: list[Message] = []
        batch, self.queue = self.queue, []
        for msg in batch:
            wanted = (sender is None or msg.sender == sender) and (to is None or msg.to == to)
            if not wanted or (limit is not None and len(out) >= limit):
                keep.append(msg)
                continue
            if (msg.sender, msg.to) in self.cut or msg.to not in self.members:
                out.append(f"{msg.describe()} (dropped)")
                continue
            out.append(msg.describe())
            self.members[msg.to].core.step(msg)
        self.queue = keep + self.queue
        return out

    def drop(self, sender: str | None, to: str | None) -> list[str]:
        out, keep = [], []
        for msg in self.queue:
            if (sender is None or msg.sender == sender) and (to is None or msg.to == to):
                out.append(f"{msg.describe()} (dropped)")
            else:
                keep.append(msg)
        self.queue = keep
        return out

    def stabilize(self, only: list[str] | None = None, limit: int = 200) -> list[str]:
        """Handle Readies and deliver messages until nothing moves; a transcript of the Readies."""
        lines: list[str] = []
        names = only or sorted(self.members)
        for _ in range(limit):
            moved = False
            for name in names:
                if self.members[name].core.has_ready():
                    lines.append(f"> {name} ready")
                    lines += ["  " + line for line in describe_ready(self.handle_ready(name))]
                    moved = True
            pending = [m for m in self.queue if m.to in names]
            if pending:
                self.deliver_to(names)
                moved = True
            if not moved:
                return lines
        raise AssertionError(f"no stable state after {limit} rounds")

    def deliver_to(self, names: list[str]) -> None:
        batch, self.queue = self.queue, []
        for msg in batch:
            if msg.to not in names:
                self.queue.append(msg)
            elif (msg.sender, msg.to) not in self.cut and msg.to in self.members:
                self.members[msg.to].core.step(msg)

    def partition(self, groups: list[list[str]]) -> None:
        self.cut.clear()
        named = [g for g in groups]
        rest = [n for n in self.members if not any(n in g for g in named)]
        if rest:
            named.append(rest)
        for g in named:
            for h in named:
                if g is not h:
                    self.cut.update((a, b) for a in g for b in h)

    # ---- describing ----

    def state_line(self, name: str) -> str:
        st = self.members[name].core.status()
        return (
            f"{name}: {st.role.value} term={st.term} vote={st.vote or '-'} leader={st.leader or '-'} "
            f"commit={st.commit} applied={st.applied} last={st.last_index} "
            f"voters={','.join(st.voters)}" + (f" learners={','.join(st.learners)}" if st.learners else "")
        )

    def log_lines(self, name: str) -> list[str]:
        m = self.members[name]
        snap = m.storage.snapshot()
        lines = [f"snapshot {snap.term}/{snap.index} applied={','.join(m.applied) or '-'}"] if snap.index else []
        ents = m.storage.entries(m.storage.first_index(), m.storage.last_index() + 1)
        lines.append(" ".join(describe_entry(e) for e in ents) or "(no entries)")
        return lines


def describe_ready(rd: Ready) -> list[str]:
    lines: list[str] = []
    if rd.soft_state is not None:
        lines.append(f"role={rd.soft_state.role.value} leader={rd.soft_state.leader or '-'}")
    if rd.hard_state is not None:
        hs = rd.hard_state
        lines.append(f"hard term={hs.term} vote={hs.vote or '-'} commit={hs.commit}")
    if rd.snapshot is not None:
        s = rd.snapshot
        lines.append(f"install snapshot {s.term}/{s.index} voters={','.join(s.voters)}")
    if rd.entries:
        lines.append("persist " + " ".join(describe_entry(e) for e in rd.entries))
    lines += ["send " + m.describe() for m in rd.messages]
    if rd.committed_entries:
        lines.append("apply " + " ".join(describe_entry(e) for e in rd.committed_entries))
    lines += [f"read index={r.index} context={r.context.decode()}" for r in rd.read_states]
    return lines


def encode_state(applied: list[str]) -> bytes:
    return ",".join(applied).encode()


def decode_state(data: bytes) -> list[str]:
    return [part for part in data.decode().split(",") if part]


class ScenarioRunner:
    """Turns scenario commands into calls on a RaftNetwork."""

    def __init__(self) -> None:
        self.net = RaftNetwork()

    def __call__(self, case: Case) -> str:
        handler = getattr(self, "cmd_" + case.command.replace("-", "_"), None)
        if handler is None:
            raise ScenarioError(f"{case.where}: unknown command {case.command}")
        return "\n".join(handler(case))

    def _names(self, case: Case) -> list[str]:
        return case.words or sorted(self.net.members)

    def cmd_cluster(self, case: Case) -> list[str]:
        voters = case.list_arg("voters")
        opts = {k: v for k, v in case.args.items() if k not in ("voters", "seed")}
        self.net.defaults = opts
        for v in voters:
            self.net.add(v, voters, {}, case.int_arg("seed", 1))
        return [self.net.state_line(v) for v in voters]

    def cmd_add_member(self, case: Case) -> list[str]:
        (name,) = case.words
        self.net.add(name, [], {}, case.int_arg("seed", 1))
        return [self.net.state_line(name)]

    def cmd_tick(self, case: Case) -> list[str]:
        for name in case.words:
            for _ in range(case.int_arg("times", 1)):
                self.net.members[name].core.tick()
        return []

    def cmd_tick_election(self, case: Case) -> list[str]:
        """Tick each named member through its whole (randomized) election timeout."""
        for name in case.words:
            core = self.net.members[name].core
            for _ in range(2 * core.cfg.election_tick):
                core.tick()
        return []

    def cmd_tick_until_campaign(self, case: Case) -> list[str]:
        """Tick the named members in lockstep until one of them starts an election."""
        cores = [self.net.members[n].core for n in case.words]
        for tick in range(1, 4 * max(c.cfg.election_tick for c in cores)):
            sent_before = [len(c.msgs) for c in cores]
            for c in cores:
                c.tick()
            started = [c.id for c, before in zip(cores, sent_before, strict=True) if len(c.msgs) > before]
            if started:
                return [f"{','.join(started)} campaigned after {tick} ticks"]
        return ["no one campaigned"]

    def cmd_campaign(self, case: Case) -> list[str]:
        for name in case.words:
            self.net.members[name].core.campaign()
        return []

    def cmd_stabilize(self, case: Case) -> list[str]:
        return self.net.stabilize(case.words or None)

    def cmd_process_ready(self, case: Case) -> list[str]:
        lines: list[str] = []
        for name in case.words:
            lines.append(f"> {name} ready")
            lines += ["  " + line for line in describe_ready(self.net.handle_ready(name))]
        return lines

    def cmd_deliver(self, case: Case) -> list[str]:
        limit = case.args.get("count")
        return self.net.deliver(case.args.get("from"), case.args.get("to"), int(limit) if limit else None)

    def cmd_drop(self, case: Case) -> list[str]:
        return self.net.drop(case.args.get("from"), case.args.get("to"))

    def cmd_partition(self, case: Case) -> list[str]:
        self.net.partition([w.split(",") for w in case.words])
        return []

    def cmd_heal(self, case: Case) -> list[str]:
        self.net.cut.clear()
        return []

    def cmd_propose(self, case: Case) -> list[str]:
        name, data = case.words
        try:
            self.net.members[name].core.propose(data.encode())
        except ProposalDropped as exc:
            return [f"dropped: {exc}"]
        return ["ok"]

    def cmd_propose_conf_change(self, case: Case) -> list[str]:
        (name,) = case.words
        change = ConfChange(ConfChangeOp(case.arg("op")), node=case.arg("node"))
        try:
            self.net.members[name].core.propose_conf_change(change)
        except (ProposalDropped, ValueError) as exc:
            return [f"refused: {exc}"]
        return ["ok"]

    def cmd_read_index(self, case: Case) -> list[str]:
        (name,) = case.words
        try:
            self.net.members[name].core.read_index(case.arg("context").encode())
        except ProposalDropped as exc:
            return [f"dropped: {exc}"]
        return ["ok"]

    def cmd_transfer_leadership(self, case: Case) -> list[str]:
        (name,) = case.words
        self.net.members[name].core.transfer_leadership(case.arg("to"))
        return []

    def cmd_compact(self, case: Case) -> list[str]:
        (name,) = case.words
        m = self.net.members[name]
        snap = m.core.snapshot_for_compaction(encode_state(m.applied))
        m.storage.compact(snap)
        return [f"compacted {name} through {snap.term}/{snap.index}"]

    def cmd_restart(self, case: Case) -> list[str]:
        for name in case.words:
            self.net.restart(name)
        return [self.net.state_line(n) for n in case.words]

    def cmd_state(self, case: Case) -> list[str]:
        return [self.net.state_line(n) for n in self._names(case)]

    def cmd_log(self, case: Case) -> list[str]:
        lines: list[str] = []
        for name in self._names(case):
            lines += [f"{name}: {line}" for line in self.net.log_lines(name)]
        return lines

    def cmd_applied(self, case: Case) -> list[str]:
        return [f"{n}: {','.join(self.net.members[n].applied) or '-'}" for n in self._names(case)]

    def cmd_progress(self, case: Case) -> list[str]:
        (name,) = case.words
        core = self.net.members[name].core
        if core.role is not Role.LEADER:
            return [f"{name} is not the leader"]
        return [f"{peer}: {pr.describe()}" for peer, pr in sorted(core.progress.items()) if peer != name]
