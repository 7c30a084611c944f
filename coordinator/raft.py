"""The Raft consensus core of the coordinator: a deterministic state machine that does no I/O.

Inputs: `step(message)`, `tick()`, `propose(data)`, `propose_conf_change(change)`,
`read_index(context)`, `transfer_leadership(target)`, `campaign()`, `report_snapshot(...)`.
Outputs come out of `ready()` as one `Ready`; the shell handles it in this order, then calls
`advance(ready)`:

1. **Persist** (`Ready.persist(storage)` does exactly this): install `snapshot`, append `entries`,
   write `hard_state`, then `sync()`. Only then may anything leave the process: the vote and term
   a message implies, and the entries an APPEND_RESP acknowledges, must survive a crash, or a
   restarted member could vote twice in a term or forget an entry a leader counted on.
2. **Send** `messages`. For each SNAPSHOT, call `report_snapshot(peer, ok)` once the send
   succeeded or failed: until then (or the follower's answer) the leader sends that follower
   nothing, so a snapshot lost without a report would starve it.
3. **Apply**: if `snapshot` is set, restore the state machine from it; then apply
   `committed_entries` in order (NORMAL: the registry command; CONF_CHANGE and NOOP: the core
   already acted on them). Serve `read_states` whose index is applied.
4. `advance(ready)`. It checks that step 1 happened (the storage holds this Ready's hard state and
   entries) and raises `RaftError` otherwise. One Ready is outstanding at a time.

The leader counts itself toward a commit only for entries it has persisted (in `advance`), so a
commit never rests on an entry that is durable on fewer than a majority of members.

Design choices:
- Election timeouts are randomized in [election_tick, 2*election_tick) from the injected
  `random.Random`; ticks are the only clock.
- PreVote (thesis §9.6) and CheckQuorum (§6.2) are on by default: a partitioned member rejoining
  with a higher term cannot depose a healthy leader, and a leader cut off from its quorum steps
  down after one election timeout. A member that heard from a leader within the election
  timeout ignores vote requests (the leader lease), unless the request is a leadership transfer.
- Replication: PROBE / REPLICATE / SNAPSHOT per follower (progress.py); appends are pipelined up
  to `max_inflight_msgs` and batched: proposals accumulate and go out together when the shell
  next calls `ready()`, up to `max_size_per_msg` bytes per message. A refused append carries a
  hint (index, term) so the leader skips a whole conflicting term per round trip.
- Commit rule: the leader commits by counting replicas only an entry of its own term (§5.4.2,
  Figure 8); earlier entries commit with it. A new leader appends a NOOP at once for this.
- Membership changes one server at a time (membership.py), effective at commit; a leader accepts
  a change only after an entry of its term has committed and no other change is pending, and
  promotes a learner only once the learner holds everything committed.
- Leader forwarding: every member knows `leader_id`. A proposal, ReadIndex request or transfer
  request made at a follower is forwarded to the leader as a message; with no known leader it
  fails with `ProposalDropped` so the shell can retry after the election. A forwarded message
  may be lost like any message; the shell retries on a timeout (registry commands are written to
  be safe to repeat where that matters).
- Restart: a core built over a storage holding a hard state, snapshot and log resumes as a
  follower in that term with that vote; the configuration is recomputed from the snapshot and
  the committed membership entries.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from keychain.coordinator.log import Entry, EntryType, HardState, RaftStorage, Snapshot
from keychain.coordinator.membership import ConfChange, ConfChangeError, ConfChangeOp, Membership
from keychain.coordinator.messages import RESPONSE_TYPE, TRANSFER_CONTEXT, Message, MessageType
from keychain.coordinator.progress import Progress, ProgressState
from keychain.coordinator.raft_log import RaftLog
from keychain.coordinator.read_index import ReadIndexQueue, ReadState

log = logging.getLogger(__name__)


class RaftError(Exception):
    """The core was used against its contract, or its storage contradicts Raft's invariants."""


class ProposalDropped(Exception):
    """A request cannot be accepted now (no leader, a transfer under way, a change pending); retry."""


class ChangePending(ProposalDropped):
    """Another membership change is still uncommitted: one server at a time."""


class LearnerBehind(ProposalDropped):
    """A learner cannot be promoted yet: it does not hold everything committed."""


class Role(StrEnum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class RaftConfig:
    id: str
    election_tick: int = 10  # ticks without a leader before campaigning (randomized up to 2x)
    heartbeat_tick: int = 1  # ticks between leader heartbeats
    pre_vote: bool = True
    check_quorum: bool = True
    max_size_per_msg: int = 1 << 20  # bytes of entries per APPEND
    max_inflight_msgs: int = 64  # unanswered APPENDs per follower in REPLICATE state

    def validate(self) -> None:
        if not self.id:
            raise RaftError("a member needs a non-empty id")
        if self.heartbeat_tick < 1:
            raise RaftError(f"heartbeat_tick must be >= 1, got {self.heartbeat_tick}")
        if self.election_tick <= self.heartbeat_tick:
            raise RaftError(
                f"election_tick ({self.election_tick}) must exceed heartbeat_tick ({self.heartbeat_tick})"
            )
        if self.max_inflight_msgs < 1 or self.max_size_per_msg < 1:
            raise RaftError("max_inflight_msgs and max_size_per_msg must be positive")


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state the shell may want to show or act on (not persisted)."""

    leader: str
    role: Role


@dataclass(frozen=True, slots=True)
class Ready:
    """Everything the shell must do, in the order of the module docstring."""

    hard_state: HardState | None = None  # None: unchanged since the last Ready
    soft_state: SoftState | None = None
    snapshot: Snapshot | None = None  # install into storage and the state machine
    entries: tuple[Entry, ...] = ()  # append to storage (replacing any overlapping suffix)
    messages: tuple[Message, ...] = ()  # send only after persisting
    committed_entries: tuple[Entry, ...] = ()
    read_states: tuple[ReadState, ...] = ()

    @property
    def must_sync(self) -> bool:
        return self.hard_state is not None or bool(self.entries) or self.snapshot is not None

    def persist(self, storage: RaftStorage) -> None:
        """Step 1 of handling a Ready: make its snapshot, entries and hard state durable."""
        if self.snapshot is not None:
            storage.apply_snapshot(self.snapshot)
        if self.entries:
            storage.append(list(self.entries))
        if self.hard_state is not None:
            storage.set_hard_state(self.hard_state)
        if self.must_sync:
            storage.sync()

    def is_empty(self) -> bool:
        return not (
            self.must_sync
            or self.soft_state
            or self.messages
            or self.committed_entries
            or self.read_states
        )


@dataclass(frozen=True, slots=True)
class Status:
    id: str
    role: Role
    term: int
    vote: str
    leader: str
    commit: int
    applied: int
    last_index: int
    voters: tuple[str, ...]
    learners: tuple[str, ...]
    progress: dict[str, Progress] = field(default_factory=dict)  # leader only
    transferee: str = ""


class RaftCore:
    def __init__(
        self,
        config: RaftConfig,
        storage: RaftStorage,
        rng: random.Random,
        peers: tuple[str, ...] | list[str] | Mapping[str, str] = (),
    ) -> None:
        """A member over `storage`. `peers` bootstraps a new cluster (all initial voters, self
        included) and is ignored when the storage already holds state; a member joining an
        existing cluster starts with empty storage and no peers and waits to be contacted.
        Given as a mapping id -> address, the addresses are written into the BOOTSTRAP entry
        for the shell's address book."""
        config.validate()
        self.cfg = config
        self.id = config.id
        self.storage = storage
        self.rng = rng
        self.log = RaftLog(storage)
        hs = storage.hard_state()
        if hs.commit > self.log.last_index():
            raise RaftError(
                f"stored commit index {hs.commit} lies outside the stored log "
                f"({storage.first_index()}..{self.log.last_index()})"
            )
        self.term = hs.term
        self.vote = hs.vote
        self.log.committed = max(hs.commit, self.log.committed)
        self.role = Role.FOLLOWER
        self.leader_id = ""
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = config.election_tick
        self.votes: dict[str, bool] = {}
        self.progress: dict[str, Progress] = {}
        self.transferee = ""
        self.pending_conf_index = 0
        self.reads = ReadIndexQueue()
        self.waiting_reads: list[Message] = []  # ReadIndex before this leader committed in its term
        self.read_states: list[ReadState] = []
        self.msgs: list[Message] = []
        self.outstanding: Ready | None = None
        # Membership as of the commit index, and its history above `applied` (for snapshots).
        snap = storage.snapshot()
        self.membership = Membership.of(snap.voters, snap.learners)
        self.membership_history: list[tuple[int, Membership]] = [(snap.index, self.membership)]
        self._apply_committed_membership(self.log.applied, self.log.committed)
        if storage.last_index() == 0 and snap.index == 0 and hs == HardState() and peers:
            addresses = tuple(sorted(peers.items())) if isinstance(peers, Mapping) else ()
            self._bootstrap(tuple(sorted(set(peers))), addresses)
        self.prev_hard = hs
        self.prev_soft = SoftState(self.leader_id, self.role)
        self._reset(self.term)
        log.debug("raft start id=%s term=%d commit=%d last=%d", self.id, self.term, self.log.committed,
                  self.log.last_index())

    def _bootstrap(self, voters: tuple[str, ...], addresses: tuple[tuple[str, str], ...]) -> None:
        if self.id not in voters:
            raise RaftError(f"bootstrap peers {list(voters)} do not include this member {self.id}")
        change = ConfChange(ConfChangeOp.BOOTSTRAP, voters=voters, addresses=addresses)
        entry = Entry(1, 1, EntryType.CONF_CHANGE, change.encode())
        self.log.append([entry])
        self.term = 1
        self.log.commit_to(1)
        self._apply_committed_membership(0, 1)

    # ---- public inputs ----

    def tick(self) -> None:
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self._tick_election()

    def campaign(self) -> None:
        """Start an election now, as if the election timeout had fired."""
        self._hup(transfer=False)

    def propose(self, data: bytes) -> None:
        """Append a state machine command (at the leader) or forward it to the leader."""
        self._propose_entry(EntryType.NORMAL, data)

    def propose_conf_change(self, change: ConfChange) -> None:
        if change.op is ConfChangeOp.BOOTSTRAP:
            raise ConfChangeError("bootstrap is only written when a cluster is created")
        self._propose_entry(EntryType.CONF_CHANGE, change.encode())

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read point; it comes back as a ReadState with this context."""
        if not context:
            raise RaftError("a ReadIndex request needs a non-empty, unique context")
        m = Message(MessageType.READ_INDEX, to=self.id, sender=self.id, context=context)
        if self.role is Role.LEADER:
            self._leader_read_index(m, local=True)
        elif self.leader_id:
            self._send(Message(MessageType.READ_INDEX, to=self.leader_id, sender=self.id, context=context))
        else:
            raise ProposalDropped("no leader is known; retry after the election")

    def transfer_leadership(self, target: str) -> None:
        """Hand leadership to `target` (a voter). At a follower the request goes to the leader."""
        if self.role is Role.LEADER:
            self._leader_transfer(target)
        elif self.leader_id:
            self._send(Message(MessageType.TRANSFER_LEADER, to=self.leader_id, sender=target))
        else:
            raise ProposalDropped("no leader is known; retry after the election")

    def report_snapshot(self, peer: str, ok: bool) -> None:
        """The shell's report on a snapshot it was asked to send to `peer`."""
        pr = self.progress.get(peer)
        if self.role is not Role.LEADER or pr is None or pr.state is not ProgressState.SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = 0
        pr.become_probe()
        pr.probe_sent = True  # wait for the next heartbeat answer before probing again

    def report_unreachable(self, peer: str) -> None:
        """A send to `peer` failed: stop pipelining to it until it answers again."""
        pr = self.progress.get(peer)
        if self.role is Role.LEADER and pr is not None and pr.state is ProgressState.REPLICATE:
            pr.become_probe()

    def step(self, m: Message) -> None:
        if not isinstance(m.type, MessageType):
            raise RaftError(f"unknown message type {m.type!r}")
        if m.to != self.id:
            raise RaftError(f"message for {m.to!r} stepped into {self.id!r}")
        if m.type in (MessageType.PROPOSE, MessageType.READ_INDEX):
            self._step_forwarded(m)
            return
        if m.type is MessageType.TRANSFER_LEADER:
            if self.role is Role.LEADER:
                self._leader_transfer(m.sender)
            elif self.leader_id:
                self._send(Message(MessageType.TRANSFER_LEADER, to=self.leader_id, sender=m.sender))
            return
        if not self._check_term(m):
            return
        if m.type in (MessageType.VOTE, MessageType.PRE_VOTE):
            self._answer_vote(m)
            return
        match self.role:
            case Role.LEADER:
                self._step_leader(m)
            case Role.CANDIDATE | Role.PRE_CANDIDATE:
                self._step_candidate(m)
            case Role.FOLLOWER:
                self._step_follower(m)

    def has_ready(self) -> bool:
        if self.outstanding is not None:
            return False
        self._flush_appends()
        return (
            bool(self.msgs)
            or bool(self.read_states)
            or self.log.pending_snapshot is not None
            or bool(self.log.unstable)
            or self._hard_state() != self.prev_hard
            or SoftState(self.leader_id, self.role) != self.prev_soft
            or bool(self.log.next_committed_entries(1))
        )

    def ready(self) -> Ready:
        if self.outstanding is not None:
            raise RaftError("the previous Ready has not been advanced")
        self._flush_appends()
        hs = self._hard_state()
        soft = SoftState(self.leader_id, self.role)
        snap = self.log.pending_snapshot
        committed = self.log.next_committed_entries(self.cfg.max_size_per_msg)
        rd = Ready(
            hard_state=hs if hs != self.prev_hard else None,
            soft_state=soft if soft != self.prev_soft else None,
            snapshot=snap,
            entries=tuple(self.log.unstable),
            messages=tuple(self.msgs),
            committed_entries=tuple(committed),
            read_states=tuple(self.read_states),
        )
        self.msgs = []
        self.read_states = []
        self.prev_hard = hs
        self.prev_soft = soft
        self.outstanding = rd
        return rd

    def advance(self, rd: Ready) -> None:
        if rd is not self.outstanding:
            raise RaftError("advance() must be given the Ready most recently returned by ready()")
        self._check_persisted(rd)
        self.outstanding = None
        if rd.snapshot is not None:
            self.log.snapshot_installed(rd.snapshot.index)
            self.log.applied = max(self.log.applied, rd.snapshot.index)
        if rd.entries:
            last = rd.entries[-1]
            self.log.stable_to(last.index, last.term)
        if rd.committed_entries:
            self.log.applied = max(self.log.applied, rd.committed_entries[-1].index)
        self._prune_membership_history()
        if self.role is Role.LEADER:
            me = self.progress.get(self.id)
            if me is not None and me.maybe_update(self.log.persisted_index()) and self._maybe_commit():
                self._broadcast_append()

    def snapshot_for_compaction(self, data: bytes, index: int | None = None) -> Snapshot:
        """A snapshot of the state machine `data` as of `index` (default: applied), for
        `storage.compact`. The state machine must have applied exactly through `index`."""
        index = self.log.applied if index is None else index
        if index > self.log.applied:
            raise RaftError(f"cannot snapshot at {index}: only {self.log.applied} is applied")
        term = self.log.term(index)
        if term is None:
            raise RaftError(f"cannot snapshot at {index}: its term is no longer known")
        m = self._membership_at(index)
        return Snapshot(index, term, tuple(sorted(m.voters)), tuple(sorted(m.learners)), data)

    def status(self) -> Status:
        return Status(
            id=self.id,
            role=self.role,
            term=self.term,
            vote=self.vote,
            leader=self.leader_id,
            commit=self.log.committed,
            applied=self.log.applied,
            last_index=self.log.last_index(),
            voters=tuple(sorted(self.membership.voters)),
            learners=tuple(sorted(self.membership.learners)),
            progress=dict(self.progress) if self.role is Role.LEADER else {},
            transferee=self.transferee,
        )

    @property
    def promotable(self) -> bool:
        return self.id in self.membership.voters

    # ---- roles ----

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = ""
        self.leader_id = ""
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = self.cfg.election_tick + self.rng.randrange(self.cfg.election_tick)
        self.votes = {}
        self.transferee = ""
        self.reads.clear()
        self.waiting_reads = []
        self.progress = {}

    def _become_follower(self, term: int, leader: str) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader_id = leader
        log.debug("raft follower id=%s term=%d leader=%s", self.id, term, leader or "-")

    def _become_pre_candidate(self) -> None:
        # PreVote changes neither term nor vote: a losing pre-candidate disturbs no one.
        self.role = Role.PRE_CANDIDATE
        self.votes = {}
        self.leader_id = ""

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader_id = self.id
        last = self.log.last_index()
        for member in self.membership.members:
            self.progress[member] = self._new_progress(member, last + 1)
        me = self.progress.get(self.id)
        if me is not None:
            me.become_replicate()
            me.match = self.log.persisted_index()
            me.next = last + 1
        # Any membership entry not yet committed may still take effect: treat it as pending.
        self.pending_conf_index = last
        self.log.append([Entry(last + 1, self.term, EntryType.NOOP)])
        log.info("raft leader id=%s term=%d", self.id, self.term)

    def _new_progress(self, member: str, next_index: int) -> Progress:
        return Progress(
            next=next_index,
            max_inflight=self.cfg.max_inflight_msgs,
            learner=member in self.membership.learners,
            recent_active=True,
        )

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable and self.election_elapsed >= self.randomized_timeout:
            self.election_elapsed = 0
            self._hup(transfer=False)

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_tick:
            self.election_elapsed = 0
            if self.cfg.check_quorum and not self._quorum_active():
                log.info("raft step down id=%s term=%d reason=quorum-inactive", self.id, self.term)
                self._become_follower(self.term, "")
                return
            if self.transferee:
                log.info("raft transfer aborted id=%s to=%s reason=timeout", self.id, self.transferee)
                self.transferee = ""
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self._broadcast_heartbeat(self.reads.last_context() or b"")

    def _quorum_active(self) -> bool:
        active = {
            member
            for member, pr in self.progress.items()
            if member == self.id or (pr.recent_active and not pr.learner)
        }
        for member, pr in self.progress.items():
            if member != self.id:
                pr.recent_active = False
        return len(active & self.membership.voters) >= self.membership.quorum()

    # ---- elections ----

    def _hup(self, transfer: bool) -> None:
        if self.role is Role.LEADER or not self.promotable:
            return
        if self.cfg.pre_vote and not transfer:
            self._campaign(MessageType.PRE_VOTE)
        else:
            self._campaign(MessageType.VOTE, transfer)

    def _campaign(self, vote_type: MessageType, transfer: bool = False) -> None:
        if vote_type is MessageType.PRE_VOTE:
            self._become_pre_candidate()
            term = self.term + 1
        else:
            self._become_candidate()
            term = self.term
        log.debug("raft campaign id=%s kind=%s term=%d", self.id, vote_type.name, term)
        self.votes[self.id] = True
        if self._tally_votes(vote_type):
            return
        for voter in sorted(self.membership.voters - {self.id}):
            self._send(
                Message(
                    vote_type,
                    to=voter,
                    sender=self.id,
                    term=term,
                    index=self.log.last_index(),
                    log_term=self.log.last_term(),
                    context=TRANSFER_CONTEXT if transfer else b"",
                )
            )

    def _tally_votes(self, vote_type: MessageType) -> bool:
        """Act on the votes so far; True if the election is decided."""
        result = self.membership.vote_result(self.votes)
        if result is None:
            return False
        if result is False:
            self._become_follower(self.term, "")
        elif vote_type is MessageType.PRE_VOTE:
            self._campaign(MessageType.VOTE)
        else:
            self._become_leader()
        return True

    def _check_term(self, m: Message) -> bool:
        """Term bookkeeping common to every role; False if the message is to be ignored."""
        if m.term > self.term:
            if m.type in (MessageType.VOTE, MessageType.PRE_VOTE):
                in_lease = (
                    self.cfg.check_quorum
                    and self.leader_id != ""
                    and self.election_elapsed < self.cfg.election_tick
                )
                if in_lease and m.context != TRANSFER_CONTEXT:
                    log.debug("raft ignore vote id=%s from=%s reason=leader-lease", self.id, m.sender)
                    return False
            if m.type is MessageType.PRE_VOTE or (m.type is MessageType.PRE_VOTE_RESP and not m.reject):
                return True  # a pre-vote neither raises our term nor answers for one we hold
            leader = m.sender if m.type in (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT) else ""
            self._become_follower(m.term, leader)
            return True
        if m.term < self.term:
            if m.type in (MessageType.APPEND, MessageType.HEARTBEAT) and (
                self.cfg.check_quorum or self.cfg.pre_vote
            ):
                # A deposed leader that cannot see the new term would otherwise keep trying;
                # tell it, so it steps down (harmless without a lease, needed with PreVote).
                self._send(Message(MessageType.APPEND_RESP, to=m.sender, sender=self.id, term=self.term))
            elif m.type is MessageType.PRE_VOTE:
                self._send(
                    Message(MessageType.PRE_VOTE_RESP, to=m.sender, sender=self.id, term=self.term, reject=True)
                )
            return False
        return True

    def _answer_vote(self, m: Message) -> None:
        can_vote = (
            self.vote == m.sender
            or (self.vote == "" and self.leader_id == "")
            or (m.type is MessageType.PRE_VOTE and m.term > self.term)
        )
        resp = RESPONSE_TYPE[m.type]
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # A granted answer carries the term asked for, so a pre-candidate can count it.
            self._send(Message(resp, to=m.sender, sender=self.id, term=m.term))
            if m.type is MessageType.VOTE:
                self.election_elapsed = 0
                self.vote = m.sender
        else:
            self._send(Message(resp, to=m.sender, sender=self.id, term=self.term, reject=True))

    def _step_candidate(self, m: Message) -> None:
        own_vote = MessageType.PRE_VOTE_RESP if self.role is Role.PRE_CANDIDATE else MessageType.VOTE_RESP
        match m.type:
            case MessageType.APPEND:
                self._become_follower(m.term, m.sender)
                self._handle_append(m)
            case MessageType.HEARTBEAT:
                self._become_follower(m.term, m.sender)
                self._handle_heartbeat(m)
            case MessageType.SNAPSHOT:
                self._become_follower(m.term, m.sender)
                self._handle_snapshot(m)
            case t if t is own_vote:
                self.votes.setdefault(m.sender, not m.reject)
                self._tally_votes(MessageType.PRE_VOTE if t is MessageType.PRE_VOTE_RESP else MessageType.VOTE)
            case _:
                pass

    def _step_follower(self, m: Message) -> None:
        match m.type:
            case MessageType.APPEND:
                self.election_elapsed = 0
                self.leader_id = m.sender
                self._handle_append(m)
            case MessageType.HEARTBEAT:
                self.election_elapsed = 0
                self.leader_id = m.sender
                self._handle_heartbeat(m)
            case MessageType.SNAPSHOT:
                self.election_elapsed = 0
                self.leader_id = m.sender
                self._handle_snapshot(m)
            case MessageType.TIMEOUT_NOW:
                log.info("raft timeout-now id=%s from=%s term=%d", self.id, m.sender, self.term)
                self._hup(transfer=True)
            case MessageType.READ_INDEX_RESP:
                self.read_states.append(ReadState(m.index, m.context))
            case _:
                pass

    # ---- proposals and forwarding ----

    def _propose_entry(self, kind: EntryType, data: bytes) -> None:
        if self.role is Role.LEADER:
            self._leader_append(kind, data)
        elif self.leader_id:
            entry = Entry(0, 0, kind, data)
            self._send(Message(MessageType.PROPOSE, to=self.leader_id, sender=self.id, entries=(entry,)))
        else:
            raise ProposalDropped("no leader is known; retry after the election")

    def _step_forwarded(self, m: Message) -> None:
        if self.role is not Role.LEADER:
            if self.leader_id and self.leader_id != m.sender:
                self._send(Message(m.type, to=self.leader_id, sender=m.sender, entries=m.entries, context=m.context))
            else:
                log.debug("raft drop forwarded id=%s from=%s reason=no-leader", self.id, m.sender)
            return
        if m.type is MessageType.READ_INDEX:
            self._leader_read_index(m, local=False)
            return
        for e in m.entries:
            try:
                self._leader_append(e.type, e.data)
            except (ProposalDropped, ConfChangeError) as exc:
                log.info("raft drop forwarded proposal id=%s from=%s reason=%s", self.id, m.sender, exc)

    def _leader_append(self, kind: EntryType, data: bytes) -> None:
        if self.transferee:
            raise ProposalDropped(f"leadership is being transferred to {self.transferee}")
        if kind is EntryType.CONF_CHANGE:
            self._check_conf_change(ConfChange.decode(data))
        elif kind is not EntryType.NORMAL:
            raise RaftError(f"only NORMAL and CONF_CHANGE entries can be proposed, not {kind.name}")
        index = self.log.last_index() + 1
        self.log.append([Entry(index, self.term, kind, data)])
        if kind is EntryType.CONF_CHANGE:
            self.pending_conf_index = index

    def _check_conf_change(self, change: ConfChange) -> None:
        if change.op is ConfChangeOp.BOOTSTRAP:
            raise ConfChangeError("bootstrap is only written when a cluster is created")
        if not self._committed_in_current_term():
            raise ProposalDropped("the new leader has not yet committed an entry of its term")
        if self.pending_conf_index > self.log.committed:
            raise ChangePending(f"membership change at {self.pending_conf_index} is still pending")
        self.membership.applied(change)  # raises if it does not fit
        if change.op is ConfChangeOp.PROMOTE:
            pr = self.progress[change.node]
            if pr.match < self.log.committed:
                raise LearnerBehind(
                    f"learner {change.node} has not caught up (match {pr.match} < commit {self.log.committed})"
                )

    def _committed_in_current_term(self) -> bool:
        return self.log.term(self.log.committed) == self.term

    # ---- leader ----

    def _step_leader(self, m: Message) -> None:
        pr = self.progress.get(m.sender)
        if pr is None:
            return  # not (or no longer) a member
        match m.type:
            case MessageType.APPEND_RESP:
                pr.recent_active = True
                self._handle_append_resp(m, pr)
            case MessageType.HEARTBEAT_RESP:
                pr.recent_active = True
                pr.probe_sent = False
                if pr.state is ProgressState.REPLICATE and len(pr.inflight) >= pr.max_inflight:
                    pr.inflight.popleft()  # a lost answer must not stall the pipeline for good
                if pr.match < self.log.last_index():
                    self._send_append(m.sender)
                if m.context:
                    self._acknowledge_read(m.context, m.sender)
            case _:
                pass

    def _handle_append_resp(self, m: Message, pr: Progress) -> None:
        if m.reject:
            hint = m.reject_hint
            if m.log_term > 0:
                hint, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decrease_to(m.index, hint):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.sender)
            return
        was_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
            pr.become_probe()
            pr.become_replicate()
        elif pr.state is ProgressState.REPLICATE:
            pr.free_acknowledged(m.index)
        if self._maybe_commit():
            self._broadcast_append()
        elif was_paused:
            # A broadcast may have skipped it while paused: make sure it learns the commit index.
            self._send_append(m.sender)
        if m.sender not in self.progress:
            return  # its own acknowledgement committed its removal (it got the parting heartbeat)
        while self._send_append(m.sender, send_empty=False):
            pass
        if m.sender == self.transferee and pr.match == self.log.last_index():
            self._send(Message(MessageType.TIMEOUT_NOW, to=m.sender, sender=self.id, term=self.term))

    def _maybe_commit(self) -> bool:
        index = self.membership.committed_index({k: p.match for k, p in self.progress.items()})
        # Figure 8: counting replicas commits only entries of the leader's own term.
        if index <= self.log.committed or self.log.term(index) != self.term:
            return False
        self._commit_to(index)
        return True

    def _commit_to(self, index: int) -> None:
        old = self.log.committed
        if not self.log.commit_to(index):
            return
        self._apply_committed_membership(old, index)
        if self.role is Role.LEADER and self.waiting_reads and self._committed_in_current_term():
            waiting, self.waiting_reads = self.waiting_reads, []
            for m in waiting:
                self._leader_read_index(m, local=m.sender == self.id)

    def _flush_appends(self) -> None:
        """Batching: send every follower what accumulated since the last Ready."""
        if self.role is not Role.LEADER:
            return
        for member in sorted(self.progress):
            if member != self.id:
                while self._send_append(member, send_empty=False):
                    pass

    def _broadcast_append(self) -> None:
        for member in sorted(self.progress):
            if member != self.id:
                self._send_append(member)

    def _send_append(self, to: str, send_empty: bool = True) -> bool:
        pr = self.progress[to]
        if pr.is_paused():
            return False
        prev_index = pr.next - 1
        prev_term = self.log.term(prev_index)
        entries = None
        if prev_term is not None:
            entries = self.log.slice(pr.next, self.log.last_index() + 1, self.cfg.max_size_per_msg)
        if prev_term is None or entries is None:
            return self._send_snapshot(to, pr)
        if not entries and not send_empty:
            return False
        self._send(
            Message(
                MessageType.APPEND,
                to=to,
                sender=self.id,
                term=self.term,
                index=prev_index,
                log_term=prev_term,
                entries=tuple(entries),
                commit=self.log.committed,
            )
        )
        if entries:
            pr.sent_entries(entries[-1].index)
        elif pr.state is ProgressState.PROBE:
            pr.probe_sent = True
        return True

    def _send_snapshot(self, to: str, pr: Progress) -> bool:
        if not pr.recent_active:
            return False
        snap = self.storage.snapshot()
        if snap.index == 0:
            raise RaftError(f"entries for {to} are compacted but the storage holds no snapshot")
        pr.become_snapshot(snap.index)
        log.info("raft send snapshot id=%s to=%s index=%d", self.id, to, snap.index)
        self._send(Message(MessageType.SNAPSHOT, to=to, sender=self.id, term=self.term, snapshot=snap))
        return True

    def _broadcast_heartbeat(self, context: bytes) -> None:
        for member in sorted(self.progress):
            if member == self.id:
                continue
            commit = min(self.progress[member].match, self.log.committed)
            self._send(
                Message(
                    MessageType.HEARTBEAT, to=member, sender=self.id, term=self.term, commit=commit, context=context
                )
            )

    def _leader_read_index(self, m: Message, local: bool) -> None:
        if self.membership.voters == {self.id}:
            self._release_read(self.log.committed, m.sender, m.context)
            return
        if not self._committed_in_current_term():
            # Our commit index may lag the true one until an entry of this term commits.
            self.waiting_reads.append(m)
            return
        if not self.reads.add(self.log.committed, m.sender, m.context):
            if local:
                raise RaftError(f"a ReadIndex request with context {m.context!r} is already pending")
            return
        self._acknowledge_read(m.context, self.id)
        self._broadcast_heartbeat(m.context)

    def _acknowledge_read(self, context: bytes, member: str) -> None:
        acks = self.reads.acknowledge(context, member)
        if len(acks & self.membership.voters) >= self.membership.quorum():
            for read in self.reads.release_through(context):
                self._release_read(read.index, read.requester, read.context)

    def _release_read(self, index: int, requester: str, context: bytes) -> None:
        if requester == self.id:
            self.read_states.append(ReadState(index, context))
        else:
            self._send(
                Message(
                    MessageType.READ_INDEX_RESP, to=requester, sender=self.id, term=self.term, index=index,
                    context=context,
                )
            )

    def _leader_transfer(self, target: str) -> None:
        if target == self.id:
            return
        if target not in self.membership.voters:
            log.info("raft transfer refused id=%s to=%s reason=not-a-voter", self.id, target)
            return
        if self.transferee == target:
            return
        self.transferee = target
        self.election_elapsed = 0  # the transfer must finish within one election timeout
        log.info("raft transfer id=%s to=%s term=%d", self.id, target, self.term)
        if self.progress[target].match == self.log.last_index():
            self._send(Message(MessageType.TIMEOUT_NOW, to=target, sender=self.id, term=self.term))
        else:
            self._send_append(target)

    # ---- follower ----

    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            self._send(
                Message(MessageType.APPEND_RESP, to=m.sender, sender=self.id, term=self.term, index=self.log.committed)
            )
            return
        last_new = self.log.maybe_append(m.index, m.log_term, list(m.entries))
        if last_new is not None:
            self._commit_to(min(m.commit, last_new))
            self._send(Message(MessageType.APPEND_RESP, to=m.sender, sender=self.id, term=self.term, index=last_new))
            return
        hint_index, hint_term = self.log.find_conflict_by_term(min(m.index, self.log.last_index()), m.log_term)
        self._send(
            Message(
                MessageType.APPEND_RESP,
                to=m.sender,
                sender=self.id,
                term=self.term,
                index=m.index,
                reject=True,
                reject_hint=hint_index,
                log_term=hint_term,
            )
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self._commit_to(min(m.commit, self.log.last_index()))
        self._send(
            Message(MessageType.HEARTBEAT_RESP, to=m.sender, sender=self.id, term=self.term, context=m.context)
        )

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot
        if snap is None:
            raise RaftError(f"SNAPSHOT message from {m.sender} carries no snapshot")
        if snap.index <= self.log.committed:
            index = self.log.committed
        elif self.log.matches(snap.index, snap.term):
            # We already hold that entry: only the commit index moves.
            self._commit_to(snap.index)
            index = self.log.last_index()
        else:
            log.info("raft restore snapshot id=%s index=%d term=%d", self.id, snap.index, snap.term)
            self.log.restore(snap)
            self.membership = Membership.of(snap.voters, snap.learners)
            self.membership_history = [(snap.index, self.membership)]
            index = snap.index
        self._send(Message(MessageType.APPEND_RESP, to=m.sender, sender=self.id, term=self.term, index=index))

    # ---- membership ----

    def _apply_committed_membership(self, lo: int, hi: int) -> None:
        """Take the membership changes committed in (lo, hi] into effect."""
        if hi <= lo:
            return
        start = max(lo + 1, self.log.first_index())
        entries = self.log.slice(start, hi + 1) or []
        for e in entries:
            if e.type is not EntryType.CONF_CHANGE:
                continue
            try:
                change = ConfChange.decode(e.data)
                new = self.membership.applied(change)
            except ConfChangeError as exc:
                # Committed, so every member skips it alike; the leader should not have let it in.
                log.warning("raft skip membership change id=%s index=%d reason=%s", self.id, e.index, exc)
                continue
            self._set_membership(e.index, new)

    def _set_membership(self, index: int, new: Membership) -> None:
        old = self.membership
        self.membership = new
        self.membership_history.append((index, new))
        log.info("raft membership id=%s index=%d voters=%s learners=%s", self.id, index,
                 ",".join(sorted(new.voters)), ",".join(sorted(new.learners)))
        if self.role is not Role.LEADER:
            if self.role is not Role.FOLLOWER and self.id not in new.voters:
                self._become_follower(self.term, "")
            return
        if self.id not in new.voters:
            log.info("raft step down id=%s term=%d reason=removed", self.id, self.term)
            self._become_follower(self.term, "")
            return
        last = self.log.last_index()
        for member in new.members - old.members:
            self.progress[member] = self._new_progress(member, last + 1)
        for member in sorted(old.members - new.members):
            pr = self.progress.pop(member, None)
            if pr is not None:
                # A parting heartbeat: if it holds its removal entry it learns that it committed,
                # and stops campaigning for a cluster it no longer belongs to.
                self._send(
                    Message(
                        MessageType.HEARTBEAT, to=member, sender=self.id, term=self.term,
                        commit=min(pr.match, self.log.committed),
                    )
                )
            if member == self.transferee:
                self.transferee = ""
        for member, pr in self.progress.items():
            pr.learner = member in new.learners
        if self._maybe_commit():
            self._broadcast_append()

    def _membership_at(self, index: int) -> Membership:
        current = self.membership_history[0][1]
        for at, m in self.membership_history:
            if at > index:
                break
            current = m
        if self.membership_history[0][0] > index:
            raise RaftError(f"membership at {index} is no longer known")
        return current

    def _prune_membership_history(self) -> None:
        applied = self.log.applied
        keep = [h for h in self.membership_history if h[0] <= applied][-1:]
        self.membership_history = keep + [h for h in self.membership_history if h[0] > applied]

    # ---- plumbing ----

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def _send(self, m: Message) -> None:
        self.msgs.append(m)

    def _check_persisted(self, rd: Ready) -> None:
        if rd.hard_state is not None and self.storage.hard_state() != rd.hard_state:
            raise RaftError("Ready not persisted: the storage does not hold its hard state")
        if rd.snapshot is not None and self.storage.snapshot().index < rd.snapshot.index:
            raise RaftError("Ready not persisted: the storage does not hold its snapshot")
        if rd.entries:
            last = rd.entries[-1]
            try:
                stored = self.storage.term(last.index)
            except Exception as exc:
                raise RaftError(f"Ready not persisted: entry {last.index} is not in the storage") from exc
            if stored != last.term:
                raise RaftError(f"Ready not persisted: entry {last.index} is not in the storage")
