"""Supervision of chain nodes: every decision the coordinator leader makes about a node.

A pure core: no gRPC, protobuf or asyncio, and no clock. Its inputs are plain values: the chain's
configuration as the registry holds it (`ChainState`), the request (`Registration`, `Heartbeat`, a
drain), the time from the caller's clock (`now`) and the leadership evidence (`confirmed_at`: when
the newest quorum round that acknowledged this leader began, `QuorumEvidence`). Its outputs are
decisions: a `Grant` (the configuration to answer with and the lease, 0 for none), a `Refusal`
(a code and message), a `Proposal` (registry entries the shell must propose, then report back), or
the `Removal`s to propose. The gRPC service (api.py) and the simulator's coordinator
(keychain.testing.sim_coordinator) translate their requests into these calls and the decisions back
into replies, and own only what is theirs: proposing, waiting, forwarding.

The rules, in the order a request meets them:
- A lease (to a heartbeat or a registration) is granted only while the leadership is fresh: a
  quorum acknowledged this leader at most `leader_evidence` ago (`leadership_fresh`). Otherwise the
  answer is `UNCONFIRMED` (UNAVAILABLE); the shell may wait up to `EVIDENCE_WAIT_TICKS` ticks for a
  round to complete (a leader just elected has not finished its first) before sending it. So a
  leader whose driver is stalled (a slow fsync: no ticks, no rounds) stops granting leases although
  its request handlers still run, and another leader elected meanwhile can rely on its grace.
- Registration: the chain is created first if the leader is configured to (`auto_chains`), then the
  node is registered (a registry entry); the lease counts from when the request arrived, and is
  withheld while the node is draining or its removal is in flight (lease.py).
- Heartbeat: a node not in the chain is answered NOT_FOUND with the configuration (so it sees it
  left). Otherwise its lease is renewed (the same exceptions), its in-sync report recorded for the
  removal rule, and a SYNCING member that reports `caught_up` in the current epoch is promoted to
  tail (a registry entry; one at a time per node), then answered with the configuration as it is
  after the promotion, never the one read before.
- Drain (RemoveMember): the last active member is refused at once (FAILED_PRECONDITION); any other
  member stops being renewed and is removed by the failure detector like a silent node, once its
  last lease has certainly expired and (if active) another active member reported in sync in the
  current epoch. The request is answered when the removal applied (`removal_progress`), at most
  `removal_wait` later.
- Failure detection (`removals`, every tick at the leader): lease.py's LeaseTracker decides which
  silent or drained member goes, one per chain at a time, each conditional on its epoch; a removal
  whose entry was refused or never entered the log is withdrawn (`removal_failed`). An active
  member is removed only while another active member reported in sync in the current epoch (it
  holds every acknowledged write): a chain whose only up-to-date members failed stays stuck rather
  than losing acknowledged writes.
- A new leader removes nobody before `new_leader_grace` plus the removal silence have passed: a
  deposed leader that has not yet noticed (CheckQuorum steps it down within two election timeouts
  of losing its quorum) may have renewed leases until then, and those must have lapsed first.
- Gray failures (a node that heartbeats but its neighbours cannot use, or that makes no progress):
  each heartbeat's link report, and each proxy's report (`report_unreachable`), goes to the
  suspicion core (suspicion.py), which names at most one member per chain to remove, never one the
  removal rule above would keep. That member's lease is revoked (lease.py: it is answered with
  lease 0 and asked to surrender its lease; it is removed as soon as it says it did, or once its
  lease has certainly expired), so it has stopped serving before the new configuration can commit
  a write without it. Its re-registration is then held back with an exponential backoff
  (readmission.py); a drained node's, for a while, as its process is stopping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from keychain.coordinator.lease import LeaseTracker, Removal
from keychain.coordinator.raft import ProposalDropped
from keychain.coordinator.readmission import Hold, Readmission
from keychain.coordinator.registry import (
    ChainState,
    MemberState,
    Outcome,
    create_chain,
    promote_node,
    register_node,
)
from keychain.coordinator.suspicion import ProxyReport, Suspicion, Verdict
from keychain.node.link_health import LinkReport

from keychain import timing

NOT_CONFIRMED = "this leader has not heard from a quorum lately (stalled or cut off?); try another coordinator"
EVIDENCE_WAIT_TICKS = 3  # how long a request may wait for a leadership round to complete, in ticks


@dataclass(frozen=True, slots=True)
class Registration:
    chain: str
    node: str
    address: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    chain: str
    node: str
    epoch: int = 0  # the epoch the node runs
    caught_up: bool = False  # a syncing node holds everything its predecessor had
    in_sync: bool = False  # the node holds every committed write in `epoch`
    links: LinkReport | None = None  # what it sees of its links and its own progress
    committed_seq: int = 0  # its commit point (weighed against its predecessor's `successor_acked`)
    seq: int = 0  # numbers the node process's heartbeats, in the order sent
    surrendered_below: int = 0  # it holds no lease, ignoring every grant to a request before heartbeat n


@dataclass(frozen=True, slots=True)
class Grant:
    """Answer the node with `config` and a lease of `lease` seconds (0: no lease)."""

    config: ChainState
    lease: float


@dataclass(frozen=True, slots=True)
class Refusal:
    """Answer with an error: `code` is a name of keychain.coordinator.Code."""

    code: str
    message: str
    config: ChainState | None = None  # for a node no longer in the chain: the chain as it is


@dataclass(frozen=True, slots=True)
class Proposal:
    """Propose these registry entries, in order, then report the outcome back to the core."""

    commands: tuple[bytes, ...]


UNCONFIRMED = Refusal("UNAVAILABLE", NOT_CONFIRMED)


def leadership_fresh(confirmed_at: float | None, now: float, bound: float) -> bool:
    """May a leader grant a lease at `now`? Only if a quorum of voters acknowledged it as leader
    in a round begun at `confirmed_at`, at most `bound` ago. Each of them votes for another
    leader only after acknowledging, so no other leader was elected before `confirmed_at`, and
    this leader's last grant comes at most `bound` after that: within a new leader's grace
    (timing.NEW_LEADER_GRACE), which must therefore exceed `bound`."""
    return confirmed_at is not None and 0 <= now - confirmed_at <= bound


@dataclass
class QuorumEvidence:
    """A leader's record of its leadership rounds (ReadIndex rounds of its own): which are in flight
    (context -> when begun), and when the newest one a quorum acknowledged began."""

    owner: str  # the member's id, in each round's context
    interval: float  # at most one round in flight begun within this long
    confirmed_at: float | None = None
    rounds: dict[bytes, float] = field(default_factory=dict)
    begun: int = 0  # rounds begun so far (numbers their contexts)

    def due(self, now: float) -> bool:
        """Whether to begin a round now: none begun within the last `interval` is in flight."""
        return not self.rounds or now - max(self.rounds.values()) >= self.interval

    def begin(self, now: float, read_index: Callable[[bytes], None]) -> None:
        """Begin a round if one is due: `read_index(context)` asks the Raft core for it (a round the
        core drops, as a follower's, is not begun)."""
        if not self.due(now):
            return
        self.begun += 1
        context = f"{self.owner}/leadership/{self.begun}".encode()
        try:
            read_index(context)
        except ProposalDropped:
            return
        self.rounds[context] = now

    def answered(self, context: bytes) -> bool:
        """A quorum acknowledged round `context` (False: not a leadership round). Every round begun
        before it is answered by it too."""
        begun = self.rounds.pop(context, None)
        if begun is None:
            return False
        self.rounds = {c: t for c, t in self.rounds.items() if t > begun}
        self.confirmed_at = max(begun, self.confirmed_at or begun)
        return True

    def reset(self) -> None:
        """Evidence belongs to one term of leadership."""
        self.confirmed_at = None
        self.rounds.clear()


class Supervisor:
    """The coordinator leader's decisions about chain nodes (see the module docstring)."""

    def __init__(
        self,
        *,
        lease: float = timing.LEASE,
        removal_after: float = timing.REMOVAL_AFTER,
        new_leader_grace: float = timing.NEW_LEADER_GRACE,
        leader_evidence: float = timing.LEADER_EVIDENCE,
        proposal_timeout: float = timing.PROPOSAL_TIMEOUT,
        removal_wait: float | None = None,
        link_timeout: float = timing.LINK_TIMEOUT,
        suspicion: Suspicion | None = None,
        readmission: Readmission | None = None,
    ) -> None:
        # The longest a quorum's acknowledgement counts as proof of leadership when granting a
        # lease; shorter than new_leader_grace, which relies on it.
        if not 0 < leader_evidence < new_leader_grace:
            raise ValueError(f"leader_evidence must be in (0, new_leader_grace), got {leader_evidence}")
        self.lease = lease
        self.new_leader_grace = new_leader_grace
        self.leader_evidence = leader_evidence
        self.leases = LeaseTracker(lease=lease, margin=removal_after - lease)
        # Long enough for a drained node's lease to lapse after a fresh leader's grace, a first
        # removal refused (the chain moved on) and decided again, and the commit.
        self.removal_wait = (new_leader_grace + removal_after + lease + proposal_timeout
                             if removal_wait is None else removal_wait)
        self.auto_chains: set[str] = set()  # chains the leader creates when missing
        self.promoting: set[tuple[str, str]] = set()  # promotions proposed, not yet answered
        self.link_timeout = link_timeout  # a proxy's report counts once it could not use a node this long
        self.suspicion = suspicion or Suspicion()
        self.readmission = readmission or Readmission()
        self.verdicts: dict[tuple[str, str], Verdict] = {}  # revoked for a gray failure, not yet removed
        self.gray_removals = 0  # members removed for gray failures (a metric)

    # ---- leadership ----

    def become_leader(self, now: float) -> None:
        """This member was elected at `now`: it knows nothing of its predecessor's grants."""
        self.leases.become_leader(now + self.new_leader_grace)
        self.verdicts.clear()

    def step_down(self) -> None:
        self.leases.step_down()
        self.verdicts.clear()

    def leadership_fresh(self, confirmed_at: float | None, now: float) -> bool:
        """Whether this leader may grant a lease at `now` (see `leadership_fresh`)."""
        return leadership_fresh(confirmed_at, now, self.leader_evidence)

    # ---- registration ----

    def register(self, req: Registration, current: ChainState | None, now: float, confirmed_at: float | None
                 ) -> Refusal | Proposal:
        """The entries to propose for `req` (`current`: its chain now), or UNCONFIRMED."""
        if not self.leadership_fresh(confirmed_at, now):
            return UNCONFIRMED
        hold = self.readmission.hold(req.chain, req.node, now)
        if hold is not None and (current is None or current.member(req.node) is None):
            return Refusal("FAILED_PRECONDITION",
                           f"node {req.node!r} was removed from chain {req.chain!r} ({hold.reason}); its registration "
                           f"is held back for {hold.remaining(now):.1f}s more")
        commands = [register_node(req.chain, req.node, req.address)]
        if req.chain in self.auto_chains and current is None:
            commands.insert(0, create_chain(req.chain))  # a configured chain: create it first
        return Proposal(tuple(commands))

    def registered(self, req: Registration, outcome: Outcome, received_at: float) -> Grant | Refusal:
        """The answer once the registration applied as `outcome` (`received_at`: the request's
        arrival). It is observed at the epoch it left: no lease while the node is drained or its
        removal may still apply."""
        if outcome.error is not None or outcome.chain is None:
            return _refusal(outcome)
        granted = self.leases.observe(req.chain, req.node, received_at, outcome.chain.epoch)
        return Grant(outcome.chain, self.lease if granted else 0.0)

    # ---- heartbeats ----

    def heartbeat(self, req: Heartbeat, state: ChainState | None, now: float, confirmed_at: float | None
                  ) -> Grant | Refusal | Proposal:
        """Renew the node's lease (or not) and record its report; a Proposal is a promotion, to be
        answered by `promoted` once it settled."""
        refusal = _not_a_member(req.chain, req.node, state)
        if refusal is not None:
            return refusal
        assert state is not None
        me = state.member(req.node)
        assert me is not None
        if not self.leadership_fresh(confirmed_at, now):
            return UNCONFIRMED
        # No lease while the node is drained, revoked or its removal is in flight.
        granted = self.leases.observe(req.chain, req.node, now, state.epoch, req.seq)
        if req.in_sync:
            self.leases.record_in_sync(req.chain, req.node, req.epoch)
        if req.links is not None:
            self.suspicion.node_reported(req.chain, req.node, req.links, req.committed_seq, now)
        else:
            self.suspicion.heartbeat(req.chain, req.node, now)
        if req.surrendered_below:
            self.leases.surrender(req.chain, req.node, req.surrendered_below)
        key = (req.chain, req.node)
        if (granted and req.caught_up and me.state is MemberState.SYNCING and req.epoch == state.epoch
                and key not in self.promoting):
            self.promoting.add(key)
            return Proposal((promote_node(req.chain, req.node),))
        return Grant(state, self.lease if granted else 0.0)

    def promoted(self, req: Heartbeat, state: ChainState | None) -> Grant | Refusal:
        """The answer once the promotion settled (applied, refused or lost): other changes may have
        committed meanwhile, so with `state`, the configuration as it is now."""
        self.promoting.discard((req.chain, req.node))
        refusal = _not_a_member(req.chain, req.node, state)
        if refusal is not None:
            return refusal
        assert state is not None
        return Grant(state, self.lease)

    # ---- gray failures ----

    def report_unreachable(self, report: ProxyReport, state: ChainState | None, now: float) -> Refusal | bool:
        """A proxy cannot use `report.node`: True if the report counts (a member, the current epoch),
        False if it is stale; a Refusal if the chain or node is unknown."""
        refusal = _not_a_member(report.chain, report.node, state)
        if refusal is not None:
            return Refusal(refusal.code, refusal.message)
        assert state is not None
        if report.epoch != state.epoch or report.unreachable_for < self.link_timeout:
            return False
        self.suspicion.proxy_reported(report, now)
        return True

    def suspected(self, chain: str, node: str) -> str:
        """Why `node` is being removed for a gray failure ("" if it is not)."""
        return self.leases.revocation(chain, node) or ""

    def held(self, chain: str, now: float) -> list[Hold]:
        """Removed nodes of `chain` whose registration is held back now."""
        return self.readmission.held(chain, now)

    def _judge(self, now: float, chains: list[ChainState]) -> None:
        """Note the removals of revoked and drained members that applied; revoke the next culprit."""
        members = {(c.name, m.id) for c in chains for m in c.members}
        for key, verdict in list(self.verdicts.items()):
            if key not in members:
                del self.verdicts[key]
                self.suspicion.removed(verdict, now)
                self.readmission.removed_for_links(verdict.chain, verdict.node, now, verdict.reason)
                self.gray_removals += 1
            elif self.leases.revocation(*key) is None:  # the chain moved on first: judged afresh
                del self.verdicts[key]
        for key in self.leases.draining - members:
            self.readmission.drained(*key, now)
        self.suspicion.forget(chains, now)
        self.readmission.forget_old(now)
        if not self.leases.may_remove(now):
            return  # a new leader's grace: no lease it may rely on yet, no revocation either
        for chain in chains:
            busy = any(k[0] == chain.name for k in [*self.verdicts, *self.leases.draining, *self.leases.proposed])
            if busy:
                continue  # one removal per chain at a time

            def removable(node: str, chain: ChainState = chain) -> bool:
                return self.leases.keeps_every_write(chain, node) and [m.id for m in chain.active] != [node]

            verdict = self.suspicion.verdict(chain, now, removable)
            if verdict is not None:
                self.verdicts[(chain.name, verdict.node)] = verdict
                self.leases.revoke(chain.name, verdict.node, chain.epoch, verdict.reason)

    # ---- drains: removal on request ----

    def drain(self, chain: str, node: str, state: ChainState | None) -> Refusal | None:
        """Begin removing `node` on request: None if it is draining now (answer once
        `removal_progress` says so), else why it cannot be."""
        if state is None:
            return Refusal("NOT_FOUND", f"chain {chain!r} does not exist")
        me = state.member(node)
        if me is None:
            return Refusal("NOT_FOUND", f"node {node!r} is not a member of chain {chain!r}")
        if me.state is MemberState.ACTIVE and len(state.active) == 1:
            return Refusal("FAILED_PRECONDITION",
                           f"node {node!r} is the last active member of chain {chain!r} and cannot be removed")
        self.leases.drain(chain, node)
        return None

    def draining(self, chain: str, node: str) -> bool:
        return (chain, node) in self.leases.draining

    @staticmethod
    def removal_progress(chain: str, node: str, state: ChainState | None) -> ChainState | Refusal | None:
        """A drain's answer, given the chain as it is now: the configuration once `node` left,
        NOT_FOUND if the chain was deleted, None while it is still draining."""
        if state is None:
            return Refusal("NOT_FOUND", f"chain {chain!r} was deleted")
        if state.member(node) is None:
            return state
        return None

    @staticmethod
    def still_draining(node: str) -> Refusal:
        """A drain's answer when `removal_wait` passed before the removal applied."""
        return Refusal("UNAVAILABLE", f"node {node!r} is draining; it is removed once its lease has certainly "
                                      f"expired and another active member is in sync in the current epoch: "
                                      f"repeat the request to wait for it")

    # ---- failure detection ----

    def removals(self, now: float, chains: list[ChainState]) -> list[Removal]:
        """The removals to propose now: silent, drained or revoked members whose lease has certainly
        expired (or, revoked, that surrendered it); first the gray failures are judged."""
        self._judge(now, chains)
        return self.leases.expired(now, chains)

    def removal_failed(self, removal: Removal) -> None:
        """`removal`'s entry was refused or never entered the log: the node is renewed again."""
        self.leases.withdraw(removal)

    def lease_valid(self, chain: str, node: str, now: float) -> bool:
        """Whether the last lease this leader granted `node` may still be running (health reports)."""
        return self.leases.lease_valid(chain, node, now)


def _not_a_member(chain: str, node: str, state: ChainState | None) -> Refusal | None:
    """NOT_FOUND, with the chain's configuration (so the node sees it was removed), or None."""
    if state is None:
        return Refusal("NOT_FOUND", f"chain {chain!r} does not exist")
    if state.member(node) is None:
        return Refusal("NOT_FOUND", f"node {node!r} is not a member of chain {chain!r}; register again", state)
    return None


def _refusal(outcome: Outcome) -> Refusal:
    if outcome.error is None:
        return Refusal("NOT_FOUND", "the registry answered without a chain")
    return Refusal(outcome.error.code.value, outcome.error.message)
