"""A coordinator member in the simulator: the real RaftCore, registry and lease tracker, driven the
way `keychain.coordinator.member.RaftMember` and `keychain.coordinator.api.CoordinatorService` drive
them, over virtual time and the simulated network.

The driver loop is the member's: inputs (Raft messages, ticks, requests) step the core; each Ready
is persisted, and only once its sync is done (the disk's latency later) are its messages sent, its
snapshot restored, its committed entries applied to the registry and the core advanced. Inputs that
arrive during a sync wait in an inbox, as they do in the member's asyncio loop. A crash loses
whatever was not yet synced: the storage is rebuilt on restart from the operations that were.

The request handling is the service's: any member answers; a follower forwards to the leader it
knows; the leader serves only once an entry of its term is applied; heartbeats renew leases and feed
the `LeaseTracker` (with the node's in-sync reports), whose removals the leader proposes every
heartbeat interval; a node whose removal is in flight gets no lease; a caught-up syncing node is
promoted; the leader creates the chain if it is missing. A removal on request is proposed at once
(the service drains the node first; the fault injector retires the node itself once removed), but
only if it keeps an in-sync active member, the failure detector's rule. Registry reads are served from the
leader's applied state (the service adds a ReadIndex round; staleness there costs only liveness,
since every chain message is fenced by its epoch).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keychain import timing
from keychain.coordinator.lease import LeaseTracker, Removal
from keychain.coordinator.log import Entry, EntryType, MemoryStorage
from keychain.coordinator.messages import Message, MessageType
from keychain.coordinator.raft import ProposalDropped, RaftConfig, RaftCore, Ready, Role
from keychain.coordinator.registry import (
    ChainState,
    MemberState,
    Outcome,
    Registry,
    create_chain,
    promote_node,
    register_node,
    remove_node,
)
from keychain.testing.sim_invariants import Violation
from keychain.testing.sim_world import Process

if TYPE_CHECKING:
    from keychain.testing.sim_cluster import Simulation

# The service's figures (keychain.coordinator.api), restated here so the simulator does not import
# grpc: a new leader's extra wait before removing anyone, and how long a proposal may take.
NEW_LEADER_GRACE = 2 * 2 * timing.ELECTION_TICKS * timing.TICK
PROPOSAL_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class CoordRequest:
    op: str  # register | heartbeat | get_chain | remove
    chain: str
    node: str = ""
    address: str = ""
    epoch: int = 0
    caught_up: bool = False
    in_sync: bool = False  # the node holds every committed write in `epoch`


@dataclass(frozen=True, slots=True)
class CoordReply:
    error: str = ""  # "" = OK; UNAVAILABLE, NOT_FOUND or a registry error code
    chain: ChainState | None = None
    lease: float = 0.0


UNAVAILABLE = CoordReply("UNAVAILABLE")

Reply = Callable[[CoordReply], None]


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
        self.leases = LeaseTracker(lease=timing.LEASE, margin=timing.REMOVAL_AFTER - timing.LEASE)
        self.proposals: dict[int, tuple[int, Callable[[Outcome | None], None]]] = {}
        self.forwards: dict[int, Reply] = {}
        self.promoting: dict[tuple[str, str], bool] = {}
        self.busy = False
        self.inbox: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        self.tick_queued = False
        self.create_after = -math.inf
        self.timer(timing.TICK, self._tick)
        self.timer(timing.HEARTBEAT_INTERVAL, self._duties)
        self._drive()

    def crash(self) -> None:
        self.up = False
        self.sim.net.process_down(self)

    # ---- the driver ----

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        if not self.up:
            return
        if self.busy:
            self.inbox.append((fn, args))
            return
        fn(*args)
        self._drive()

    def _drive(self) -> None:
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
                self.proposals.pop(index)[1](None)
        for e in rd.committed_entries:
            self._apply(e)
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
                self.sim.inv.configuration(c.name, c.epoch, ((m.id, m.state.value) for m in c.members))
        self.applied = index
        waiter = self.proposals.pop(index, None)
        if waiter is not None:
            waiter[1](outcome if waiter[0] == term else None)
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
                self.leases.become_leader(self.local() + NEW_LEADER_GRACE)
                self.sim.world.note("leader", self.id, self.term)
        elif was_leader:
            self.leases.step_down()

    def _tick(self) -> None:
        if self.busy:
            if not self.tick_queued:
                self.tick_queued = True
                self.inbox.append((self._queued_tick, ()))
        else:
            self.core.tick()
            self._drive()
        self.timer(timing.TICK, self._tick)

    def _queued_tick(self) -> None:
        self.tick_queued = False
        self.core.tick()

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

    def propose(self, data: bytes, done: Callable[[Outcome | None], None]) -> bool:
        """Replicate a registry command; `done(outcome)` once applied, `done(None)` if it may not be.
        False if it never entered the log (then `done(None)` was called already)."""
        if self.core.role is not Role.LEADER:
            done(None)
            return False
        try:
            self.core.propose(data)
        except ProposalDropped:
            done(None)
            return False
        index = self.core.log.last_index()
        entry = (self.core.term, done)
        self.proposals[index] = entry
        self.timer(PROPOSAL_TIMEOUT, self._proposal_timeout, index, entry)
        return True

    def _proposal_timeout(self, index: int, entry: tuple[int, Callable[[Outcome | None], None]]) -> None:
        if self.proposals.get(index) is entry:
            del self.proposals[index]
            entry[1](None)

    # ---- the leader's duties ----

    def _duties(self) -> None:
        self.timer(timing.HEARTBEAT_INTERVAL, self._duties)
        if self.busy or not (self.core.role is Role.LEADER and self.leader_committed):
            return
        now = self.local()
        chain = self.sim.chain
        if self.registry.get(chain) is None:
            if now >= self.create_after:
                self.create_after = now + 0.5
                self.propose(create_chain(chain), lambda _: None)
        else:
            for removal in self.leases.expired(now, list(self.registry.chains.values())):
                self.sim.world.note("remove", self.id, removal.node, removal.epoch)
                self._propose_removal(removal)
        self._drive()

    def _propose_removal(self, removal: Removal) -> None:
        """As the service does: a removal refused, or never in the log, is withdrawn (the node is
        renewed again); one whose outcome is unknown stays in flight."""
        def removed(outcome: Outcome | None) -> None:
            if outcome is not None and outcome.error is not None:
                self.leases.withdraw(removal)

        if not self.propose(removal.command(), removed):
            self.leases.withdraw(removal)

    # ---- requests ----

    def on_request(self, caller: Process, caller_inc: int, rpc_id: int, req: CoordRequest,
                   forwarded: bool = False) -> None:
        def reply(r: CoordReply) -> None:
            if caller.alive(caller_inc) and self.up:
                self.sim.net.send(self, caller, "coord-reply", caller.on_coord_reply, rpc_id, r)

        self.submit(self._request, req, reply, forwarded)

    def on_coord_reply(self, fid: int, r: CoordReply) -> None:
        reply = self.forwards.pop(fid, None)
        if reply is not None:
            reply(r)

    def _request(self, req: CoordRequest, reply: Reply, forwarded: bool) -> None:
        core = self.core
        if core.role is Role.LEADER:
            if not self.leader_committed:
                reply(UNAVAILABLE)
                return
            self._serve(req, reply)
            return
        leader = self.sim.coordinators.get(core.leader_id)
        if leader is None or forwarded:
            reply(UNAVAILABLE)
            return
        self._ids += 1
        self.forwards[self._ids] = reply
        self.timer(timing.RPC_TIMEOUT, self.forwards.pop, self._ids, None)
        self.sim.net.send(self, leader, "coord-fwd", leader.on_request, self, self.incarnation, self._ids, req, True)

    def _serve(self, req: CoordRequest, reply: Reply) -> None:
        now = self.local()
        if req.op == "register":
            def registered(outcome: Outcome | None) -> None:
                if outcome is None:
                    reply(UNAVAILABLE)
                elif outcome.error is not None or outcome.chain is None:
                    reply(CoordReply(outcome.error.code.value if outcome.error else "NOT_FOUND"))
                else:
                    granted = self.leases.observe(req.chain, req.node, now, outcome.chain.epoch)
                    reply(CoordReply(chain=outcome.chain, lease=timing.LEASE if granted else 0.0))

            self.propose(register_node(req.chain, req.node, req.address), registered)
        elif req.op == "heartbeat":
            state = self.registry.get(req.chain)
            me = state.member(req.node) if state is not None else None
            if state is None or me is None:
                reply(CoordReply("NOT_FOUND", chain=state))
                return
            granted = self.leases.observe(req.chain, req.node, now, state.epoch)
            if req.in_sync:
                self.leases.record_in_sync(req.chain, req.node, req.epoch)
            if granted and req.caught_up and me.state is MemberState.SYNCING and req.epoch == state.epoch:
                self._promote(req, state, reply)
                return
            reply(CoordReply(chain=state, lease=timing.LEASE if granted else 0.0))
        elif req.op == "get_chain":
            state = self.registry.get(req.chain)
            reply(CoordReply(chain=state) if state is not None else CoordReply("NOT_FOUND"))
        elif req.op == "remove":
            state = self.registry.get(req.chain)
            if state is not None and not self.leases.keeps_every_write(state, req.node):
                reply(UNAVAILABLE)  # no other active member known to be in sync: not now
                return

            def removed(outcome: Outcome | None) -> None:
                if outcome is None:
                    reply(UNAVAILABLE)
                else:
                    reply(CoordReply(outcome.error.code.value if outcome.error else "", chain=outcome.chain))

            # Conditional on the epoch the check above was made in.
            self.propose(remove_node(req.chain, req.node, if_epoch=state.epoch if state else None), removed)
        else:
            raise ValueError(f"unknown coordinator request {req.op!r}")

    def _promote(self, req: CoordRequest, state: ChainState, reply: Reply) -> None:
        key = (req.chain, req.node)
        if key in self.promoting:
            reply(CoordReply(chain=state, lease=timing.LEASE))
            return
        self.promoting[key] = True

        def promoted(outcome: Outcome | None) -> None:
            self.promoting.pop(key, None)
            chain = outcome.chain if outcome is not None and outcome.ok and outcome.chain else state
            reply(CoordReply(chain=chain, lease=timing.LEASE))

        self.propose(promote_node(req.chain, req.node), promoted)
