"""A coordinator member in the simulator: the real RaftCore and registry driven the way
`keychain.coordinator.member.RaftMember` drives them, and the real supervision core
(`keychain.coordinator.supervision.Supervisor`) asked every question
`keychain.coordinator.api.CoordinatorService` asks it, over virtual time and the simulated network.

The driver loop is the member's: inputs (Raft messages, ticks, proposals) step the core; each Ready
is persisted, and only once its sync is done (the disk's latency later) are its messages sent, its
snapshot restored, its committed entries applied to the registry and the core advanced. Inputs that
arrive during a sync wait in an inbox, as they do in the member's asyncio loop. A crash loses
whatever was not yet synced: the storage is rebuilt on restart from the operations that were. As
leader, the member begins a leadership round (a ReadIndex round of its own) every tick and keeps
the supervisor's evidence (`QuorumEvidence`) from the rounds a quorum answered.

The request handling is the service's, and like the service's handlers it runs while the driver
is busy with a sync (a stalled disk stalls the driver, not the handlers; only proposals wait): any
member answers; a follower forwards to the leader it knows; the leader serves only once an entry of
its term is applied. Each request is translated for the supervisor, its decision carried out:
a grant or refusal answered, a proposal proposed and its outcome handed back, a drain (`remove`)
answered once the removal applied. A refusal for want of leadership evidence waits a few ticks for
a round to complete, as the service's does. The supervisor's removals are proposed every tick.
Registry reads are served from the leader's applied state (the service adds a ReadIndex round;
staleness there costs only liveness, since every chain message is fenced by its epoch).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keychain import timing
from keychain.coordinator.lease import Removal
from keychain.coordinator.log import Entry, EntryType, MemoryStorage
from keychain.coordinator.messages import Message, MessageType
from keychain.coordinator.raft import ProposalDropped, RaftConfig, RaftCore, Ready, Role
from keychain.coordinator.registry import ChainState, Outcome, Registry, create_chain
from keychain.coordinator.supervision import (
    EVIDENCE_WAIT_TICKS,
    UNCONFIRMED,
    Grant,
    Heartbeat,
    Proposal,
    QuorumEvidence,
    Refusal,
    Registration,
    Supervisor,
)
from keychain.coordinator.suspicion import ProxyReport
from keychain.node.link_health import LinkReport
from keychain.testing.sim_invariants import Violation
from keychain.testing.sim_world import Process

if TYPE_CHECKING:
    from keychain.testing.sim_cluster import Simulation

# The service's figures (keychain.coordinator.api takes them from keychain.timing too).
NEW_LEADER_GRACE = timing.NEW_LEADER_GRACE
PROPOSAL_TIMEOUT = timing.PROPOSAL_TIMEOUT
CREATE_RETRY = 0.5  # seconds between two attempts of the leader to create its missing chain


@dataclass(frozen=True, slots=True)
class CoordRequest:
    op: str  # register | heartbeat | get_chain | remove (a drain: answered once the node left) | report
    chain: str
    node: str = ""
    address: str = ""
    epoch: int = 0
    caught_up: bool = False
    in_sync: bool = False  # the node holds every committed write in `epoch`
    links: LinkReport | None = None  # the node's link-health report
    committed_seq: int = 0
    seq: int = 0  # the heartbeat's number
    surrendered_below: int = 0  # the node gave up every lease granted to a request before heartbeat n
    reporter: str = ""  # report: the proxy that cannot use `node`
    unreachable_for: float = 0.0  # report: for this long


@dataclass(frozen=True, slots=True)
class CoordReply:
    error: str = ""  # "" = OK; UNAVAILABLE, NOT_FOUND or a registry error code
    chain: ChainState | None = None
    lease: float = 0.0
    clean_seq: int = 0  # the chain's clean point (Supervisor.clean_point): deletes through it may be collected


UNAVAILABLE = CoordReply("UNAVAILABLE")

Reply = Callable[[CoordReply], None]
Done = Callable[[Outcome | None, bool], None]  # (outcome or None if unknown, whether it entered the log)


class SimCoordinator(Process):
    kind = "coordinator"

    def __init__(self, sim: Simulation, cid: str, peers: tuple[str, ...], raft_class: type[RaftCore],
                 compact_every: int) -> None:
        super().__init__(sim.world, cid)
        self.sim = sim
        self.peers = peers
        self.raft_class = raft_class
        self.compact_every = compact_every
        self._durable: list[tuple[str, Any]] = []  # synced storage operations, replayed on restart
        self._ids = 0

    # ---- life cycle ----

    def start(self) -> None:
        self.incarnation += 1
        self.up = True
        storage = MemoryStorage()
        for op, arg in self._durable:
            getattr(storage, op)(arg)
        self.storage = storage
        cfg = RaftConfig(id=self.id, election_tick=timing.ELECTION_TICKS, heartbeat_tick=timing.HEARTBEAT_TICKS)
        self.core = self.raft_class(cfg, storage, self.world.rng, self.peers)
        snap = storage.snapshot()
        self.registry = Registry.restore(snap.data) if snap.index else Registry()
        self.applied = snap.index
        self.role = self.core.role
        self.leader = self.core.leader_id
        self.term = self.core.term
        self.leader_committed = False
        self.supervisor = self.sim.config.supervisor()
        self.supervisor.auto_chains.add(self.sim.chain)
        self.evidence = QuorumEvidence(self.id, timing.TICK)
        self.proposals: dict[int, tuple[int, Done]] = {}
        self.forwards: dict[int, Reply] = {}
        self.busy = False
        self.driving = False
        self.inbox: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        self.tick_queued = False
        self.create_after = -float("inf")
        self.timer(timing.TICK, self._tick)
        self.timer(timing.TICK, self._duties)
        self._drive()

    def crash(self) -> None:
        self.up = False
        self.sim.net.process_down(self)

    # ---- the driver ----

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Queue an input for the driver; it runs now unless a sync (or the driver itself) is busy."""
        if not self.up:
            return
        self.inbox.append((fn, args))
        if not self.busy and not self.driving:
            self._drive()

    def _drive(self) -> None:
        self.driving = True
        try:
            self._drive_ready()
        finally:
            self.driving = False

    def _drive_ready(self) -> None:
        core = self.core
        while not self.busy and self.up:
            while self.inbox and not self.busy:
                fn, args = self.inbox.pop(0)
                fn(*args)
            if self.busy or not core.has_ready():
                return
            rd = core.ready()
            rd.persist(self.storage)
            if rd.must_sync:
                self.busy = True
                self.world.after(self.sync_delay(), self._fire, self.incarnation, self._synced, (rd,))
                return
            self._handle(rd)

    def _synced(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self._durable.append(("apply_snapshot", rd.snapshot))
        if rd.entries:
            self._durable.append(("append", list(rd.entries)))
        if rd.hard_state is not None:
            self._durable.append(("set_hard_state", rd.hard_state))
        self.busy = False
        self._handle(rd)
        self._drive()

    def _handle(self, rd: Ready) -> None:
        net = self.sim.net
        for m in rd.messages:
            peer = self.sim.coordinators.get(m.to)
            if peer is None:
                continue
            sent = net.send(self, peer, "raft", peer.on_raft, m)
            if m.type is MessageType.SNAPSHOT:
                self.timer(0.01, self.submit, self.core.report_snapshot, m.to, sent)
            elif m.type is MessageType.VOTE_RESP and not m.reject and self.sim.nemesis.crash_now("vote"):
                self.world.after(0.0, self.sim.nemesis.crash, self)  # the worst moment: right after voting
        if rd.snapshot is not None:
            self.sim.inv.raft_snapshot(self.id, rd.snapshot)
            self.registry = Registry.restore(rd.snapshot.data)
            self.applied = rd.snapshot.index
            for index in [i for i in self.proposals if i <= rd.snapshot.index]:
                self.proposals.pop(index)[1](None, True)
        for e in rd.committed_entries:
            self._apply(e)
        for rs in rd.read_states:
            self.evidence.answered(rs.context)
        self.core.advance(rd)
        if rd.soft_state is not None or self.core.term != self.term:
            self._update_role()
        if self.applied - self.storage.snapshot().index >= self.compact_every:
            snap = self.core.snapshot_for_compaction(self.registry.snapshot(), self.applied)
            self.storage.compact(snap)
            self._durable.append(("compact", snap))

    def _apply(self, e: Entry) -> None:
        self.sim.inv.raft_applied(self.id, e)
        index, term = e.index, e.term
        outcome: Outcome | None = None
        if e.type is EntryType.NORMAL:
            outcome = self.registry.apply(e.data)
            if outcome.ok and outcome.changed and outcome.chain is not None:
                c = outcome.chain
                if self.sim.inv.configuration(c.name, c.epoch, ((m.id, m.state.value) for m in c.members)):
                    self.sim.inv.removed_unleased(c.name, c.epoch, (m.id for m in c.members),
                                                  self.sim.lease_holders())
        self.applied = index
        waiter = self.proposals.pop(index, None)
        if waiter is not None:
            waiter[1](outcome if waiter[0] == term else None, True)
        if self.role is Role.LEADER and term == self.core.term and not self.leader_committed:
            self.leader_committed = True

    def _update_role(self) -> None:
        was_leader = self.role is Role.LEADER
        self.term = self.core.term
        self.role, self.leader = self.core.role, self.core.leader_id
        if self.role is Role.LEADER:
            self.sim.inv.leader(self.term, self.id)
            if not was_leader:
                self.leader_committed = False
                self.supervisor.become_leader(self.local())
                self.sim.world.note("leader", self.id, self.term)
        elif was_leader:
            self.supervisor.step_down()
        if not (was_leader and self.role is Role.LEADER):
            self.evidence.reset()  # evidence belongs to one term of leadership

    def _tick(self) -> None:
        if self.busy:
            if not self.tick_queued:
                self.tick_queued = True
                self.inbox.append((self._queued_tick, ()))
        else:
            self.core.tick()
            self._confirm_leadership()
            self._drive()
        self.timer(timing.TICK, self._tick)

    def _queued_tick(self) -> None:
        self.tick_queued = False
        self.core.tick()
        self._confirm_leadership()

    def _confirm_leadership(self) -> None:
        """As leader, begin a quorum round unless one begun within the last tick is in flight."""
        if self.core.role is Role.LEADER:
            self.evidence.begin(self.local(), self.core.read_index)

    def on_raft(self, m: Message) -> None:
        self.submit(self._step, m)

    def _step(self, m: Message) -> None:
        try:
            self.core.step(m)
        except Violation:
            raise
        except Exception as exc:
            raise Violation("raft-core-error", f"{self.id} failed to step {m.describe()}: {exc!r}") from exc


    # ---- proposals ----

    def propose(self, data: bytes, done: Done) -> None:
        """Replicate a registry command through the driver's inbox, as the member does: later
        `done(outcome, True)` once applied, `done(None, True)` if it may apply but its outcome is
        unknown (a timeout, or another leader's entry took its place), `done(None, False)` if it
        never entered the log."""
        self.submit(self._propose, data, done)

    def _propose(self, data: bytes, done: Done) -> None:
        if self.core.role is not Role.LEADER:
            done(None, False)
            return
        try:
            self.core.propose(data)
        except ProposalDropped:
            done(None, False)
            return
        index = self.core.log.last_index()
        entry = (self.core.term, done)
        self.proposals[index] = entry
        self.timer(PROPOSAL_TIMEOUT, self._proposal_timeout, index, entry)

    def _proposal_timeout(self, index: int, entry: tuple[int, Done]) -> None:
        if self.proposals.get(index) is entry:
            del self.proposals[index]
            entry[1](None, True)

    def _propose_all(self, commands: tuple[bytes, ...], done: Callable[[Outcome | None], None]) -> None:
        """Propose `commands` one after the other; `done` with the last one's outcome (None if one
        did not apply)."""
        def next_one(outcome: Outcome | None, _entered: bool) -> None:
            if outcome is None or len(commands) == 1:
                done(outcome)
            else:
                self._propose_all(commands[1:], done)

        self.propose(commands[0], next_one)

    # ---- the leader's duties ----

    def _leading(self) -> bool:
        return self.role is Role.LEADER and self.leader_committed

    def _duties(self) -> None:
        """The service's background tasks: create the configured chain, propose the removals."""
        self.timer(timing.TICK, self._duties)
        if not self._leading():
            return
        now = self.local()
        for chain in sorted(self.supervisor.auto_chains):
            if self.registry.get(chain) is None and now >= self.create_after:
                self.create_after = now + CREATE_RETRY
                self.propose(create_chain(chain), lambda _outcome, _entered: None)
        for removal in self.supervisor.removals(now, list(self.registry.chains.values())):
            self.sim.world.note("remove", self.id, removal.node, removal.epoch)
            self._propose_removal(removal)

    def _propose_removal(self, removal: Removal) -> None:
        """As the service does: a removal refused, or never in the log, is reported back (the node
        is renewed again); one whose outcome is unknown stays in flight."""
        def removed(outcome: Outcome | None, entered: bool) -> None:
            if not entered or (outcome is not None and outcome.error is not None):
                self.supervisor.removal_failed(removal)

        self.propose(removal.command(), removed)

    # ---- requests ----

    def on_request(self, caller: Process, caller_inc: int, rpc_id: int, req: CoordRequest,
                   forwarded: bool = False) -> None:
        def reply(r: CoordReply) -> None:
            if caller.alive(caller_inc) and self.up:
                self.sim.net.send(self, caller, "coord-reply", caller.on_coord_reply, rpc_id, r)

        if self.up:
            self._request(req, reply, forwarded)

    def on_coord_reply(self, fid: int, r: CoordReply) -> None:
        reply = self.forwards.pop(fid, None)
        if reply is not None:
            reply(r)

    def _request(self, req: CoordRequest, reply: Reply, forwarded: bool) -> None:
        if self.role is Role.LEADER:
            if not self.leader_committed:
                reply(UNAVAILABLE)
                return
            self._serve(req, reply)
            return
        leader = self.sim.coordinators.get(self.leader)
        if leader is None or forwarded:
            reply(UNAVAILABLE)
            return
        self._ids += 1
        self.forwards[self._ids] = reply
        wait = timing.RPC_TIMEOUT + (self.supervisor.removal_wait if req.op == "remove" else 0.0)
        self.timer(wait, self.forwards.pop, self._ids, None)
        self.sim.net.send(self, leader, "coord-fwd", leader.on_request, self, self.incarnation, self._ids, req, True)

    def _serve(self, req: CoordRequest, reply: Reply) -> None:
        if req.op == "register":
            self._register(Registration(req.chain, req.node, req.address), reply)
        elif req.op == "heartbeat":
            self._heartbeat(Heartbeat(req.chain, req.node, req.epoch, req.caught_up, req.in_sync, links=req.links,
                                      committed_seq=req.committed_seq, seq=req.seq,
                                      surrendered_below=req.surrendered_below), reply)
        elif req.op == "report":
            decision = self.supervisor.report_unreachable(
                ProxyReport(req.chain, req.reporter, req.node, req.epoch, req.unreachable_for),
                self.registry.get(req.chain), self.local())
            reply(_refused(decision) if isinstance(decision, Refusal) else CoordReply())
        elif req.op == "get_chain":
            state = self.registry.get(req.chain)
            reply(CoordReply(chain=state) if state is not None else CoordReply("NOT_FOUND"))
        elif req.op == "remove":
            refusal = self.supervisor.drain(req.chain, req.node, self.registry.get(req.chain))
            if refusal is not None:
                reply(_refused(refusal))
            else:
                self._removed(req.chain, req.node, self.local() + self.supervisor.removal_wait, reply)
        else:
            raise ValueError(f"unknown coordinator request {req.op!r}")

    def _confirmed(self, decide: Callable[[float, float | None], Any], then: Callable[[Any], None],
                   deadline: float | None = None) -> None:
        """`then(decide(now, evidence))`; while the decision is UNCONFIRMED, first wait a few ticks
        (while still leader) for a leadership round to complete, as the service does."""
        now = self.local()
        if deadline is None:
            deadline = now + EVIDENCE_WAIT_TICKS * timing.TICK
        decision = decide(now, self.evidence.confirmed_at)
        if decision is UNCONFIRMED and now < deadline and self.role is Role.LEADER:
            self.timer(timing.TICK / 5, self._confirmed, decide, then, deadline)
            return
        then(decision)

    def _register(self, reg: Registration, reply: Reply) -> None:
        received_at = [0.0]

        def decide(now: float, confirmed_at: float | None) -> Refusal | Proposal:
            received_at[0] = now
            return self.supervisor.register(reg, self.registry.get(reg.chain), now, confirmed_at)

        def proposed(outcome: Outcome | None) -> None:
            if outcome is None:
                reply(UNAVAILABLE)
            else:
                reply(_answer(self.supervisor.registered(reg, outcome, received_at[0])))

        def decided(decision: Refusal | Proposal) -> None:
            if isinstance(decision, Refusal):
                reply(_refused(decision))
            else:
                self._propose_all(decision.commands, proposed)

        self._confirmed(decide, decided)

    def _heartbeat(self, beat: Heartbeat, reply: Reply) -> None:
        def decided(decision: Grant | Refusal | Proposal) -> None:
            if not isinstance(decision, Proposal):
                answer = _answer(decision)
                if isinstance(decision, Grant):
                    answer = dataclasses.replace(answer, clean_seq=self.supervisor.clean_point(decision.config))
                reply(answer)
                return

            def settled(_outcome: Outcome | None) -> None:
                reply(_answer(self.supervisor.promoted(beat, self.registry.get(beat.chain))))

            self._propose_all(decision.commands, settled)

        self._confirmed(lambda now, confirmed_at: self.supervisor.heartbeat(
            beat, self.registry.get(beat.chain), now, confirmed_at), decided)

    def _removed(self, chain: str, node: str, deadline: float, reply: Reply) -> None:
        """Answer a drain once `node` has left `chain` (checked every tick), as the service does."""
        progress = Supervisor.removal_progress(chain, node, self.registry.get(chain))
        if isinstance(progress, Refusal):
            reply(_refused(progress))
        elif progress is not None:
            reply(CoordReply(chain=progress))
        elif self.role is not Role.LEADER:
            reply(UNAVAILABLE)  # leadership moved: the caller repeats the request at the new leader
        elif self.local() >= deadline:
            reply(_refused(Supervisor.still_draining(node)))
        else:
            self.timer(timing.TICK, self._removed, chain, node, deadline, reply)


def _refused(refusal: Refusal) -> CoordReply:
    return CoordReply(refusal.code, chain=refusal.config)


def _answer(decision: Grant | Refusal) -> CoordReply:
    if isinstance(decision, Refusal):
        return _refused(decision)
    return CoordReply(chain=decision.config, lease=decision.lease)
