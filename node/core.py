"""The CRAQ chain node as a deterministic state machine: inputs are method calls, outputs a `Ready`.

`ChainCore` does no I/O and reads no clock. The shell (gRPC + RocksDB) or a test harness drives it:

    core = ChainCore("n1", store, CoreOptions())
    core.configure(config, lease_until=now + lease)      # from the coordinator (or a static config)
    reply = core.client_write(ticket, epoch, ops, now)    # WriteReply now, or None: released later
    reply = core.client_read(ticket, epoch, key, consistency, now)
    reply = core.client_range(ticket, epoch, range_read, now)     # RangeReply now, or None: later
    core.on_hello / on_welcome / on_batch / on_ack        # link traffic from neighbours
    core.on_version_query(epoch, keys, now) -> VersionQueryReply     (we are the tail)
    core.on_version_reply(query_id, VersionQueryReply)                (answer to our query)
    core.begin_transfer(from_id, epoch) / transfer_chunk(to_id)       (we send state)
    core.on_transfer_chunk(from_id, chunk) / transfer_failed(from_id) (we receive state)
    core.downlink_lost(peer_id) / uplink_lost(peer_id)                (a link stream broke)
    while core.has_ready():                             # keychain.node.driver runs this loop
        rd = core.ready()
        store.apply(rd.persist); store.sync()      # durable first: one fsync for the batch
        send rd.messages, rd.version_queries; start rd.transfers; release rd.replies
        core.advance()

Its state is split by concern: the entries above the store's commit point and their indexes
(`keychain.node.uncommitted_log`), the link streams and the transfers it sends (`keychain.node.links`),
and the client requests waiting for their outcome (`keychain.node.waiting`). Decisions stay here.

Contract of a Ready: everything in `persist` is durable before any message, query or reply of the
same Ready leaves the process, and `ready()` is not called again before `advance()`. A Ready whose
`must_sync` is False persists only bookkeeping a crash may lose (commit points, log trims, forgotten
request ids): the shell applies it without an fsync, and the next fsync covers it. This is what
makes "persisted before forwarded" and "replied only after commit" hold. Inputs may arrive between
`ready()` and `advance()`; their outputs go into the next Ready (this is where batching and group
commit come from), except acks upstream and write replies, which `early()` lets out at once: they
only ever speak of entries already durable here (see `early`).

Protocol rules (docs/architecture.md, "The write path" and "Reconfiguration"):
- The head sequences every write (gap-free seq = the key's version). A write whose precondition
  failed is sequenced too, as a NOOP entry, so its outcome (412) is replicated like any other.
  Compare-and-set and create-only are decided against the latest version, dirty included, and so
  are a transaction's compares: all writes of its branch go into ONE entry at one seq
  (keychain.node.txn), which every node applies, commits and cleans as one.
- Each node persists entries dirty, then forwards them in seq order, in batches of at most
  `max_batch_entries` entries and `max_batch_bytes` payload bytes (an entry larger than that goes
  alone), with at most `max_inflight_entries` unacknowledged on a link. Transfer chunks are bounded
  by `transfer_chunk_keys` keys and the same byte limit, so every link message has a known size. The tail commits
  what it has persisted and sends cumulative acks upstream; an ack commits (cleans) those versions.
  Write replies are released when the entry is committed at the head.
- Reads (any active node): clean latest version -> it; dirty -> a version query to the tail and the
  node's own stored copy of the version the tail names. EVENTUAL reads return the latest clean version.
  Ranges read every key at one snapshot, the tail's commit point when strong (keychain.node.snapshot_range).
- Every message carries the epoch; a different one is refused with WRONG_EPOCH and our epoch.
  Reads and writes need a valid lease (`now < lease_until`).
- Links: the predecessor says Hello(epoch, first_seq it can still resend); the successor answers
  Welcome(last_seq, committed_seq, needs_transfer), echoing the Hello's epoch: a Welcome (or Ack) of
  another epoch is late traffic of an older link, and ignored. The predecessor resends from last_seq + 1. A
  successor whose last_seq + 1 < first_seq asks for a state transfer (Transfer RPC to the
  predecessor); after installing it, it sends a second Welcome on the same link and the live stream
  resumes from the transfer's point. A batch that would leave a gap is answered with a Welcome too.
  Every Hello, and every batch refused, gets exactly one Welcome, a reconfiguration in between included:
  the sender waits for it with no timeout.
- Reconfiguration (`configure` with a newer epoch): the new head keeps the dirty entries it holds
  (they flow on and commit); a node that becomes tail commits everything it has persisted; every
  link is re-established, so a new successor states what it lacks. A syncing member first drops its
  uncommitted entries (they may have been sequenced by a head that was then removed, and would break
  the prefix property), then catches up from the tail and emits `Ready.caught_up`; once that Ready
  is advanced (durable), `caught_up` says so for the epoch it was reached in.
- In sync: a node that was not active in its previous configuration (a promoted syncing node, a
  fresh member) serves no reads, version queries or writes until a batch on its inbound link shows
  it holds everything its predecessor had committed. This closes the window where a promoted tail
  lacks writes the old tail had already committed and acknowledged.
- Pending writes at a node that stops being head: their outcome is OUTCOME_UNKNOWN (the entry may
  have been forwarded and commit later, or be lost with the old head). A client retries with the
  same request id at the new head: if the entry reached it, the retry waits for its commit and gets
  the original outcome; if not, the write is applied then, once. While a node stays head across
  epochs its pending writes keep waiting for their commit.
- Full disks (etcd's NOSPACE alarm; `keychain.node.disk_alarm` decides when a disk counts as full): the
  shell tells the core which members of the chain have their storage alarm raised (its own, and the
  others' as the coordinator relays them). While any has, the head refuses every PUT op, and every
  transaction with a put in either branch (`may_put`, before its compares are read), before it is
  sequenced, with INSUFFICIENT_STORAGE naming those nodes: nothing of it is applied anywhere. Deletes
  and transactions that only delete or get are still sequenced (deletes are how space is freed), and
  so are retries of known request ids (their outcome is already decided). Reads are served as always.
- Garbage collection, one rule in one place (`_collect`), for superseded versions and tombstones
  alike. The horizon H = this node's durable commit point - `retain_versions` (which counts as 0
  while this node's own storage alarm is raised: on a full disk a delete must free its key's space at once, so no
  superseded version is kept) is the oldest snapshot a range can still read here (older ones answer
  COMPACTED, `compact_version`, and the proxy reads them from another member):
  - a superseded version is kept in the history until the seq that superseded it is <= H
    (`CompactHistory(H)`): every snapshot >= H still reads exactly;
  - a tombstone (a deleted key's clean version) at seq T is dropped once T <= min(H, the chain's
    clean point) (`CollectGarbage`). The chain's clean point is the lowest commit point any member
    of the chain reported to the coordinator (relayed by the shell, `set_chain_clean_point`; 0,
    collecting nothing, until one is known): every member has then committed the delete, so no
    member's reads, version queries or transfers still need the tombstone. T <= H means the versions
    the delete superseded were compacted first (same Ready, in order), so no snapshot >= H can read an
    older value of the key through its history once the tombstone is gone, and snapshots < H are
    refused. Collecting at a seq above H instead would let a range at a snapshot >= T (after the key
    is written again) see the value the delete superseded.
  The watch history (`keychain.node.watch_history`) is kept in memory from the committed log, not
  from the store's versions, so neither drop affects a watch's resume. A transfer no longer carries
  collected deletes, so its receiver sweeps every key range a chunk covers (InstallKeys.sweep): a key
  it holds that the sender does not is dropped, with its history. A read whose tail names a version
  this node collected reads as not found.
- Request ids: the outcome of every sequenced entry is remembered (store outcomes, replicated with
  the entries and in state transfers) for `dedup_window` seqs behind the commit point. A retry of a
  committed id is answered at once; of an uncommitted one, when it commits.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from enum import Enum

from keychain.node import snapshot_range, txn
from keychain.node.links import Downstream, LinkState, TransferSession, Upstream, within_bytes
from keychain.node.messages import (
    OK,
    Ack,
    Batch,
    ChainConfig,
    Code,
    Consistency,
    Entry,
    EntryKind,
    Error,
    Hello,
    KeyVersion,
    MemberState,
    NodeStatus,
    OpKind,
    RangeRead,
    RangeReply,
    ReadReply,
    RequestOutcome,
    TransferChunk,
    Txn,
    TxnOpKind,
    VersionQueryReply,
    Welcome,
    WriteOp,
    WriteReply,
    WriteResult,
    outcome_of,
)
from keychain.node.snapshot_range import WaitingRanges
from keychain.node.uncommitted_log import UncommittedLog
from keychain.node.versions import (
    AppendEntries,
    CollectGarbage,
    Commit,
    CompactHistory,
    ForgetOutcomes,
    InstallKeys,
    Record,
    ResetLog,
    SaveConfig,
    TrimLog,
    Truncate,
    VersionStore,
)
from keychain.node.waiting import WaitingReads, WaitingWrites

log = logging.getLogger("keychain.node.core")


@dataclass(frozen=True, slots=True)
class CoreOptions:
    max_key_bytes: int = 4096
    max_value_bytes: int = 1 << 20
    max_request_id_bytes: int = 256  # bounds an entry's size, hence every link message's
    max_batch_entries: int = 256  # entries per Batch message
    max_batch_bytes: int = 1 << 20  # payload bytes (see links.payload_bytes) per Batch message or transfer chunk
    max_inflight_entries: int = 8192  # sent but not yet acknowledged, per link
    retain_entries: int = 10_000  # log kept behind the commit point for incremental catch-up
    dedup_window: int = 100_000  # request-id outcomes remembered for this many seqs
    transfer_chunk_keys: int = 256
    max_txn_ops: int = 128  # compares and ops of both branches, per transaction
    max_txn_bytes: int = 2 << 20  # keys and values a transaction names, and its entry's writes and reads
    max_range_items: int = 10_000  # items per range page (a range's limit may not exceed it)
    max_range_bytes: int = 3 << 20  # keys, values and framing per range page
    retain_versions: int = 100_000  # superseded versions kept this many seqs: ranges at older snapshots fail

    def __post_init__(self) -> None:
        for name in ("max_key_bytes", "max_request_id_bytes", "max_batch_entries", "max_batch_bytes", "max_inflight_entries",
                     "transfer_chunk_keys", "max_txn_ops", "max_txn_bytes", "max_range_items", "max_range_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_value_bytes < 0 or self.retain_entries < 0 or self.dedup_window < 0 or self.retain_versions < 0:
            raise ValueError("size limits and windows must not be negative")


class Role(Enum):
    HEAD = "head"  # a single-node chain is head (and tail)
    MIDDLE = "middle"
    TAIL = "tail"
    SYNCING = "syncing"
    NONE = "none"


# ---- outputs ----


@dataclass(frozen=True, slots=True)
class Outbound:
    """A link message. A Hello opens (or reopens) the link stream to `to`; Batch goes down it;
    Welcome and Ack go up the stream our predecessor opened."""

    to: str
    body: Hello | Welcome | Batch | Ack


@dataclass(frozen=True, slots=True)
class VersionQuery:
    """Ask `to` (the tail) for the committed versions of `keys`. The shell answers every query
    exactly once with `on_version_reply(query_id, reply)`, an error reply if the call failed."""

    query_id: int
    to: str
    epoch: int
    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class TransferStart:
    """Open the Transfer stream to `from_id` and feed its chunks to `on_transfer_chunk`."""

    from_id: str
    epoch: int


@dataclass
class Ready:
    persist: list[Record] = field(default_factory=list)
    messages: list[Outbound] = field(default_factory=list)
    replies: list[tuple[int, WriteReply | ReadReply | RangeReply]] = field(default_factory=list)
    version_queries: list[VersionQuery] = field(default_factory=list)
    transfers: list[TransferStart] = field(default_factory=list)
    caught_up: int | None = None  # a syncing node is level with its predecessor through this seq

    def empty(self) -> bool:
        return not (self.persist or self.messages or self.replies or self.version_queries
                    or self.transfers or self.caught_up is not None)

    @property
    def must_sync(self) -> bool:
        """Whether `persist` must be durable before this Ready's outputs leave. Commit, TrimLog and
        ForgetOutcomes need not be: a commit point rests on the tail's durable entries, not on this
        node's record of it (a restarted tail commits what it holds, any other node relearns it from
        its successor's Welcome and acks), and a lost trim or forget only keeps more. Half of all Readys
        under load are such acks and commits; an fsync each put one on every hop of the ack path."""
        return any(not isinstance(r, _LAZY_RECORDS) for r in self.persist)


# Records a crash may lose without harm (see Ready.must_sync). The store's write-ahead log keeps records
# in order, so a later fsync makes them durable together with everything applied before.
_LAZY_RECORDS = (Commit, TrimLog, ForgetOutcomes, CompactHistory, CollectGarbage)


def _plain(records: list[Record]) -> bool:
    """Only new entries and lazy records: nothing that moves the commit point or the log back."""
    return all(isinstance(r, (AppendEntries, *_LAZY_RECORDS)) for r in records)


def may_put(op: WriteOp) -> bool:
    """Whether `op` may write a value (a PUT, or a transaction with a put in either branch): what a
    storage alarm refuses. Deletes and gets free or keep space, whichever branch runs."""
    if op.kind == OpKind.PUT:
        return True
    if op.kind == OpKind.TXN and op.txn is not None:
        return any(t.kind == TxnOpKind.PUT for t in (*op.txn.success, *op.txn.failure))
    return False


# ---- internal bookkeeping ----


@dataclass(frozen=True, slots=True)
class _Inflight:
    """The Ready handed out, as the core stood when it was built: what `advance` makes durable."""

    last_seq: int  # persisted_seq becomes this (or less, if a truncation came meanwhile)
    committed_seq: int  # applied_commit becomes this: the Ready carried the Commit record through it
    epoch: int
    caught_up: bool  # the Ready reported a syncing node level
    # Only entries and lazy records, and no Hello or Welcome: acks and write replies may overtake it
    # (see `ChainCore.early`).
    plain: bool


class ChainCore:
    """One chain node's protocol state (see the module docstring for its inputs, outputs and rules)."""

    def __init__(self, node_id: str, store: VersionStore, options: CoreOptions | None = None) -> None:
        if not node_id:
            raise ValueError("node id must not be empty")
        self.id = node_id
        self.store = store
        self.options = options or CoreOptions()
        st = store.state()
        self.config: ChainConfig | None = st.config
        self.epoch = st.config.epoch if st.config else 0
        # ---- sequence numbers ----
        # Seqs number the entries the head sequenced, from 1, gap-free (an entry's seq is its key's
        # version). At every moment between inputs:
        #     log_start <= applied_commit <= committed_seq <= last_seq,   persisted_seq <= last_seq,
        #     uncommitted.low == applied_commit + 1.
        # The last seq this node holds (in memory; durable once persisted_seq reaches it). Only a
        # truncation of uncommitted entries or an installed state transfer moves it back.
        self.last_seq = st.last_seq
        # This node's commit point: entries through it are clean. It never goes back (a state transfer
        # behind it is asked for again), a transfer moves it up to its point. A tail (or syncing node) commits what it persisted,
        # any other node what its successor acked (its Welcome's committed_seq, then its acks).
        self.committed_seq = st.committed_seq
        # The log is retained from log_start + 1: a successor lacking an entry at or below log_start
        # needs a state transfer. Trimmed behind applied_commit (by retain_entries), never past what
        # a successor or a transfer we send may still need.
        self.log_start = st.log_start
        # The last seq the store holds durably: last_seq as of the last Ready that was advanced (less
        # after a truncation or transfer).
        self.persisted_seq = st.last_seq
        # The commit point the store holds (its last Commit record made durable by an advanced Ready):
        # entries through it live in the store only, those above it also in `uncommitted`.
        self.applied_commit = st.committed_seq
        self.uncommitted = UncommittedLog(store, st.committed_seq + 1)
        if st.last_seq > st.committed_seq:
            for e in store.entries(st.committed_seq + 1, st.last_seq):
                self.uncommitted.add(e)
        self.lease_until = -math.inf
        self.role = Role.NONE
        self.pred: str | None = None
        self.succ: str | None = None
        self.tail_id: str | None = None
        self._place()
        me = self.config.member(self.id) if self.config else None
        # A restart with data: only a head surely holds every committed entry. Another active member
        # may never have caught up in this epoch (a promoted tail), so it levels with its
        # predecessor again before it serves.
        self.in_sync = me is not None and me.state == MemberState.ACTIVE and self.pred is None
        # Not in sync: the commit point our predecessor advertised in a batch of this epoch; we are in
        # sync once committed_seq reaches it. None until such a batch (reset by every configure).
        self._sync_target: int | None = None
        # links (sent_through, acked: see Downstream; Upstream.acked <= committed_seq)
        self.down = Downstream(hello_due=self.succ is not None)
        self.up = Upstream()
        self._sessions: dict[str, TransferSession] = {}  # transfers we send, by receiver
        # clients waiting for their outcome
        self.waiting_writes = WaitingWrites()
        self.waiting_reads = WaitingReads()
        self.waiting_ranges = WaitingRanges()
        # Range snapshots below this are refused (COMPACTED): the history the store keeps starts here.
        # Nothing is known of what was compacted before the store was opened (compactions are not
        # made durable at once), nor of versions older than a state transfer's.
        self.history_floor = max(st.committed_seq, store.installed_through())
        self._compacted = 0  # the last CompactHistory record's point
        self._installed_through = 0  # the newest version installed by the state transfer under way
        # Members of the chain whose disk is over its high-water mark (set by the shell, see set_storage_alarms).
        self.storage_alarms: frozenset[str] = frozenset()
        # The lowest commit point of any member of the chain (set by the shell) and the point through
        # which tombstones were collected here (see _collect; 0 after a restart: collected again, cheaply).
        self.chain_clean_point = 0
        self.collected_seq = 0
        # The transfer we receive: the last key of its last chunk of keys (its sweep resumes after it)
        # and whether the chunks of keys are done (the rest of the key space was swept).
        self._sweep_after: bytes | None = None
        self._swept_all = False
        # counters
        self.reads = 0
        self.writes = 0
        self.version_queries = 0
        # outputs being gathered
        self._persist: list[Record] = []
        self._replies: list[tuple[int, WriteReply | ReadReply | RangeReply]] = []
        # Write replies released by commits: they need nothing of this node's disk (see `early`).
        self._commit_replies: list[tuple[int, WriteReply | ReadReply | RangeReply]] = []
        self._transfers: list[TransferStart] = []
        # A syncing node became level with its predecessor at this seq (its last_seq then): reported
        # in the next Ready, once per configuration (_caught_up_reported).
        self._caught_up: int | None = None
        self._caught_up_reported = False
        self._caught_up_epoch: int | None = None  # a Ready reporting caught_up was made durable in this epoch
        # Request outcomes at or below this seq are forgotten (ForgetOutcomes sent): it trails
        # applied_commit by dedup_window. 0 after a restart: the first advance forgets again.
        self._outcomes_floor = 0
        self._inflight: _Inflight | None = None  # the Ready handed out and not yet advanced
        if self._commits_on_persist():  # a restarted tail commits what it had persisted
            self._commit_to(self.persisted_seq)

    # ------------------------------------------------------------------ configuration and lease

    def configure(self, config: ChainConfig, lease_until: float | None = None) -> Error:
        """Adopt a chain configuration (epoch) and a lease valid until `lease_until` (None: forever)."""
        config.validate()
        if self.config is not None:
            if config.epoch < self.epoch:
                return Error(Code.WRONG_EPOCH, f"configuration epoch {config.epoch} is older than ours", self.epoch)
            if config.epoch == self.epoch:
                if config != self.config:
                    return Error(Code.INVALID_ARGUMENT, f"a different configuration for epoch {config.epoch}",
                                 self.epoch)
                self.renew_lease(lease_until)
                return OK
        was_head = self.role == Role.HEAD
        old = self.config.member(self.id) if self.config else None
        old_succ = self.succ
        self.config = config
        self.epoch = config.epoch
        self._persist.append(SaveConfig(config))
        self.renew_lease(lease_until)
        self._place()
        me = config.member(self.id)
        log.info("configure node=%s chain=%s epoch=%d role=%s pred=%s succ=%s", self.id, config.chain,
                 config.epoch, self.role.value, self.pred, self.succ)
        if was_head and self.role != Role.HEAD:
            self._fail_pending_writes()
        self._sync_target = None
        if me is None:
            self.in_sync = False
        elif me.state == MemberState.SYNCING:
            self.in_sync = False
            if self.last_seq > self.committed_seq:
                self._truncate(self.committed_seq)
        else:
            # Active now: in sync if we were active before, or nobody precedes us.
            self.in_sync = (old is not None and old.state == MemberState.ACTIVE and self.in_sync) or self.pred is None
        # Every link is re-established under the new epoch.
        self._reset_downstream()
        if self.succ is None or self.succ != old_succ:
            self._sessions.clear()
        self.up.linked = False
        # Welcomes already decided still go out: each answers a Hello (or batch) whose sender waits for
        # it with no timeout. A refusal of a Hello of the epoch we are adopting now is the one answer
        # that sender gets (it has no newer epoch to move to and say Hello again); an answer of an older
        # epoch is ignored by a sender that moved on (it echoes that epoch), or refused at its next batch.
        self.up.transfer_from = None
        self._caught_up_reported = False
        if self._commits_on_persist():
            self._commit_to(self.persisted_seq)
        return OK

    def set_storage_alarms(self, nodes: frozenset[str] | set[str]) -> None:
        """The nodes whose storage alarm is raised: this node's own and the chain's, as the coordinator
        relays them. Replaces the previous set (an alarm clears when its node stops reporting it). While
        this node's own is raised it keeps no superseded versions (see `_collect`)."""
        self.storage_alarms = frozenset(nodes)
        self._collect()

    def set_chain_clean_point(self, seq: int) -> None:
        """The lowest commit point any member of the chain reported: every member holds the chain's
        writes through it committed (see `_collect`). It only moves up."""
        self.chain_clean_point = max(self.chain_clean_point, seq)
        self._collect()

    def full_members(self) -> tuple[str, ...]:
        """The members of the current configuration whose storage alarm is raised, in chain order."""
        if self.config is None or not self.storage_alarms:
            return ()
        return tuple(i for i in self.config.ids() if i in self.storage_alarms)

    def renew_lease(self, until: float | None) -> None:
        self.lease_until = math.inf if until is None else until

    def lease_valid(self, now: float) -> bool:
        return now < self.lease_until

    def _place(self) -> None:
        cfg = self.config
        self.role, self.pred, self.succ, self.tail_id = Role.NONE, None, None, None
        if cfg is None:
            return
        ids = cfg.ids()
        active = cfg.active()
        self.tail_id = active[-1].id if active else None
        if self.id not in ids:
            return
        i = ids.index(self.id)
        self.pred = ids[i - 1] if i > 0 else None
        self.succ = ids[i + 1] if i + 1 < len(ids) else None
        if cfg.members[i].state == MemberState.SYNCING:
            self.role = Role.SYNCING
        elif i == 0:
            self.role = Role.HEAD
        elif i == len(active) - 1:
            self.role = Role.TAIL
        else:
            self.role = Role.MIDDLE

    @property
    def link(self) -> LinkState:
        """The state of our link to the successor."""
        return self.down.state

    @property
    def transfer_from(self) -> str | None:
        """The predecessor whose state transfer we are installing, if any."""
        return self.up.transfer_from

    @property
    def is_tail(self) -> bool:
        return self.tail_id == self.id and self.role != Role.NONE

    def _commits_on_persist(self) -> bool:
        # The tail commits what it has persisted. A syncing node only ever receives entries the tail
        # had persisted, i.e. committed ones.
        return self.is_tail or self.role == Role.SYNCING

    def _reset_downstream(self, hello: bool = True) -> None:
        self.down.reset(hello and self.succ is not None)

    # ------------------------------------------------------------------ client writes

    def client_write(self, ticket: int, epoch: int, ops: list[WriteOp], now: float) -> WriteReply | None:
        """A batch of writes. Returns the reply at once if it is already known (a rejection, or only
        retries of committed request ids); otherwise None and the reply comes in a later Ready."""
        if ticket in self.waiting_writes:
            raise ValueError(f"ticket {ticket} is already pending")
        err = self._gate(epoch, now, write=True)
        if err is not None:
            return WriteReply(err)
        results: list[WriteResult | None] = [None] * len(ops)
        waits: list[tuple[int, int, RequestOutcome]] = []
        full = self.full_members()
        for i, op in enumerate(ops):
            bad = self._check_write(op)
            if bad is not None:
                results[i] = WriteResult(bad)
                continue
            known = self.uncommitted.find_request(op.request_id) if op.request_id else None
            if known is None and full and may_put(op):
                results[i] = WriteResult(self._storage_full(full))
                continue
            if known is None:
                entry = self._sequence_txn(op) if op.kind == OpKind.TXN else self._sequence(op)
                if isinstance(entry, Error):
                    results[i] = WriteResult(entry)
                    continue
                known = outcome_of(entry)
            if known.seq <= self.committed_seq:
                results[i] = known.result()
            else:
                waits.append((known.seq, i, known))
        if not waits:
            return WriteReply(results=tuple(r for r in results if r is not None))
        self.waiting_writes.wait(ticket, results, waits)
        return None

    def _storage_full(self, full: tuple[str, ...]) -> Error:
        # Refused before the compares are read: whichever branch they chose, a put could be written.
        names = ", ".join(full)
        noun = "node" if len(full) == 1 else "nodes"
        return Error(Code.INSUFFICIENT_STORAGE,
                     f"the disk of {noun} {names} is full (over its high-water mark): writes are refused until "
                     f"space is freed (deletes are still accepted)", self.epoch)

    def _check_write(self, op: WriteOp) -> Error | None:
        bad = None if op.kind == OpKind.TXN else self._check_key(op.key)
        if bad is not None:
            return bad
        if op.kind == OpKind.TXN:
            o = self.options
            bad = txn.check(op.txn or Txn(), o.max_txn_ops, o.max_txn_bytes, self._check_key, o.max_value_bytes,
                            self.epoch)
            if bad is not None:
                return bad
        rid = len(op.request_id.encode())
        if rid > self.options.max_request_id_bytes:
            return Error(Code.TOO_LARGE, f"request id of {rid} bytes is above the limit of "
                                         f"{self.options.max_request_id_bytes}", self.epoch)
        if op.kind == OpKind.PUT and len(op.value) > self.options.max_value_bytes:
            return Error(Code.TOO_LARGE, f"value of {len(op.value)} bytes is above the limit of "
                                         f"{self.options.max_value_bytes}", self.epoch)
        if op.if_version is not None and op.if_absent:
            return Error(Code.INVALID_ARGUMENT, "if_version and if_absent exclude each other", self.epoch)
        return None

    def _check_key(self, key: bytes) -> Error | None:
        if not key:
            return Error(Code.INVALID_ARGUMENT, "the key is empty", self.epoch)
        if len(key) > self.options.max_key_bytes:
            return Error(Code.TOO_LARGE, f"key of {len(key)} bytes is above the limit of "
                                         f"{self.options.max_key_bytes}", self.epoch)
        return None

    def _sequence(self, op: WriteOp) -> Entry:
        seq = self.last_seq + 1
        failed, current = False, 0
        if op.if_version is not None or op.if_absent:  # only a condition needs the key's version (a store read)
            latest = self._latest(op.key, clean_only=False)
            current = 0 if latest is None or latest.tombstone else latest.version
            failed = (op.if_version is not None and op.if_version != current) or (op.if_absent and current != 0)
        if failed:
            entry = Entry(seq, op.request_id, op.key, EntryKind.NOOP, b"", current)
        elif op.kind == OpKind.DELETE:
            entry = Entry(seq, op.request_id, op.key, EntryKind.DELETE)
        else:
            entry = Entry(seq, op.request_id, op.key, EntryKind.PUT, op.value)
        self._append_local([entry])
        return entry

    def _sequence_txn(self, op: WriteOp) -> Entry | Error:
        """A transaction: its compares decided against the newest state, its branch's writes all under
        one new seq (see keychain.node.txn). Refused, with nothing sequenced, if what the branch writes
        and reads is above the bytes limit."""
        entry = txn.evaluate(op.txn or Txn(), self.last_seq + 1, op.request_id,
                             lambda key: self._latest(key, clean_only=False))
        size = txn.entry_bytes(entry)
        if size > self.options.max_txn_bytes:
            return Error(Code.TOO_LARGE, f"the transaction writes and reads {size} bytes, above the limit of "
                                         f"{self.options.max_txn_bytes}", self.epoch)
        self._append_local([entry])
        return entry

    def _fail_pending_writes(self) -> None:
        self._replies.extend(self.abandon_writes("this node stopped being the head before the write committed"))

    def abandon_writes(self, why: str) -> list[tuple[int, WriteReply]]:
        """Every write still waiting for its commit, answered now: OUTCOME_UNKNOWN for each op not yet
        decided (it is sequenced, maybe persisted and forwarded, and may yet commit), the others as they
        were decided. Returned directly, not through a Ready: the shell calls this when it can no
        longer drive the core (a failed fsync)."""
        unknown = WriteResult(Error(Code.OUTCOME_UNKNOWN, f"{why}; retry with the same request id", self.epoch))
        return self.waiting_writes.abandon(unknown)

    # ------------------------------------------------------------------ client reads

    def client_read(self, ticket: int, epoch: int, key: bytes, consistency: Consistency,
                    now: float) -> ReadReply | None:
        """Returns the reply at once, or None when a version query is needed (reply in a later Ready)."""
        err = self._gate(epoch, now, write=False) or self._check_key(key)
        if err is not None:
            return ReadReply(err)
        clean = self._latest(key, clean_only=True)
        if consistency == Consistency.EVENTUAL or self.is_tail or not self.uncommitted.is_dirty(key, self.committed_seq):
            return self._served(clean)
        self.waiting_reads.hold(ticket, key)
        return None

    def check_read(self, epoch: int, now: float) -> Error | None:
        """The part of `client_read`'s checks that does not depend on the key (epoch, membership,
        lease, in sync): a batch of reads that fails it is refused as a whole."""
        return self._gate(epoch, now, write=False)

    # ------------------------------------------------------------------ range reads

    def client_range(self, ticket: int, epoch: int, r: RangeRead, now: float) -> RangeReply | None:
        """A range at a snapshot (see keychain.node.snapshot_range). Returns the page at once, or None
        when the tail's commit point is needed first (the page comes in a later Ready)."""
        o = self.options
        err = self._gate(epoch, now, write=False) or snapshot_range.check(r, o.max_range_items, o.max_key_bytes,
                                                                           self.epoch)
        if err is not None:
            return RangeReply(err)
        if r.snapshot == 0:
            if r.consistency == Consistency.EVENTUAL or self.is_tail:
                return self._range_page(r, self.committed_seq)
        elif r.snapshot <= self.committed_seq:
            return self._range_page(r, r.snapshot)
        elif r.snapshot > self.last_seq or self.is_tail:
            return self._uncommitted_snapshot(r.snapshot)
        self.waiting_ranges.hold(ticket, r)
        return None

    def _uncommitted_snapshot(self, snapshot: int) -> RangeReply:
        # Beyond every seq this node holds: no chain committed it (every in-sync node holds what the
        # tail committed). Held but not known committed: a tail that took over may not have synced it
        # yet, so the caller retries (a page must never read versions that are not committed).
        if snapshot > self.last_seq:
            return RangeReply(Error(Code.INVALID_ARGUMENT, f"snapshot {snapshot} is not a committed seq of this chain",
                                    self.epoch))
        return RangeReply(Error(Code.UNAVAILABLE, f"snapshot {snapshot} is not known committed yet", self.epoch))

    @property
    def compact_version(self) -> int:
        """The oldest snapshot a range can be read at here (tombstones are collected only below it)."""
        return max(self.history_floor, self._compacted)

    def _range_page(self, r: RangeRead, snapshot: int) -> RangeReply:
        if snapshot < self.compact_version:
            return RangeReply(Error(Code.COMPACTED, f"snapshot {snapshot} is compacted on this node", self.epoch),
                              compact_version=self.compact_version)
        if snapshot > self.last_seq:
            return self._uncommitted_snapshot(snapshot)
        self.reads += 1
        o = self.options
        return snapshot_range.read_page(self.store, self.uncommitted, r, snapshot, o.max_range_items,
                                        o.max_range_bytes)

    def _resolve_range(self, r: RangeRead, tail_committed: int) -> RangeReply:
        """A range held for the tail's commit point: read at max(it, ours), or at the snapshot asked
        for if the tail has committed it."""
        if r.snapshot == 0:
            return self._range_page(r, max(tail_committed, self.committed_seq))
        if r.snapshot > max(tail_committed, self.committed_seq):
            return self._uncommitted_snapshot(r.snapshot)
        return self._range_page(r, r.snapshot)

    # ------------------------------------------------------------------ serving reads

    def _served(self, kv: KeyVersion | None) -> ReadReply:
        self.reads += 1
        if kv is None or kv.tombstone:
            # the tombstone's version (0: never written) tells which delete the read observed
            return ReadReply(Error(Code.NOT_FOUND, "no such key", self.epoch), version=kv.version if kv else 0)
        return ReadReply(value=kv.value, version=kv.version)

    def on_version_reply(self, query_id: int, reply: VersionQueryReply) -> None:
        waiting = self.waiting_reads.answered(query_id)
        if waiting is None:
            log.debug("version reply for unknown query node=%s query=%d", self.id, query_id)
            return
        ranges = self.waiting_ranges.answered(query_id)
        keys = list(dict.fromkeys(k for _, k in waiting))
        if not reply.error.ok or len(reply.versions) != len(keys):
            why = reply.error.message or "malformed version reply"
            failed = Error(Code.UNAVAILABLE, f"version query to the tail failed: {reply.error.code.name}: {why}",
                           self.epoch)
            for ticket, _ in waiting:
                self._replies.append((ticket, ReadReply(failed)))
            for ticket, _ in ranges:
                self._replies.append((ticket, RangeReply(failed)))
            return
        for ticket, r in ranges:
            self._replies.append((ticket, self._resolve_range(r, reply.committed_seq)))
        version_of = dict(zip(keys, reply.versions, strict=True))
        for ticket, key in waiting:
            self._replies.append((ticket, self._resolve_read(key, version_of[key])))

    def _resolve_read(self, key: bytes, version: int) -> ReadReply:
        if version == 0:
            return self._served(None)
        kv = self.uncommitted.version(key, version)
        if kv is None:
            # Committed and then superseded while the query was out: a newer committed version is
            # as good an answer (it committed during this read).
            clean = self._latest(key, clean_only=True)
            if clean is not None and clean.version > version:
                kv = clean
            elif clean is None and version <= self.collected_seq:
                return self._served(None)  # a delete every member had committed, collected here since
        if kv is None:
            return ReadReply(Error(Code.UNAVAILABLE, f"version {version} of the key is not held here", self.epoch))
        return self._served(kv)

    def on_version_query(self, epoch: int, keys: list[bytes], now: float) -> VersionQueryReply:
        """We are the tail: the committed version of each key (0 = never written)."""
        err = self._epoch_error(epoch)
        if err is None and not self.is_tail:
            err = Error(Code.UNAVAILABLE, "not the tail", self.epoch)
        if err is None and not self.lease_valid(now):
            err = Error(Code.LEASE_EXPIRED, "lease expired", self.epoch)
        if err is None and not self.in_sync:
            err = Error(Code.UNAVAILABLE, "catching up with the previous tail", self.epoch)
        if err is not None:
            return VersionQueryReply(err)
        return VersionQueryReply(versions=tuple(
            kv.version if (kv := self._latest(k, clean_only=True)) is not None else 0 for k in keys),
            committed_seq=self.committed_seq)

    # ------------------------------------------------------------------ gates

    def _epoch_error(self, epoch: int) -> Error | None:
        if self.config is None or epoch != self.epoch:
            return Error(Code.WRONG_EPOCH, f"epoch {epoch} is not ours", self.epoch)
        return None

    def _gate(self, epoch: int, now: float, write: bool) -> Error | None:
        err = self._epoch_error(epoch)
        if err is not None:
            return err
        if self.role == Role.NONE:
            return Error(Code.UNAVAILABLE, "not a member of the chain", self.epoch)
        if not self.lease_valid(now):
            return Error(Code.LEASE_EXPIRED, "lease expired: not serving", self.epoch)
        if write and self.role != Role.HEAD:
            return Error(Code.NOT_HEAD, f"writes go to the head; this node is {self.role.value}", self.epoch)
        if self.role == Role.SYNCING:
            return Error(Code.UNAVAILABLE, "syncing: not serving yet", self.epoch)
        if not self.in_sync or self.up.transfer_from is not None:
            return Error(Code.UNAVAILABLE, "catching up with the chain", self.epoch)
        return None

    # ------------------------------------------------------------------ local data view

    def _latest(self, key: bytes, clean_only: bool) -> KeyVersion | None:
        return self.uncommitted.latest(key, self.committed_seq if clean_only else None)

    def _append_local(self, entries: list[Entry]) -> None:
        for e in entries:
            self.uncommitted.add(e)
            if e.kind != EntryKind.NOOP:
                self.writes += 1
        self.last_seq = entries[-1].seq
        if self._persist and isinstance(self._persist[-1], AppendEntries):
            self._persist[-1] = AppendEntries(self._persist[-1].entries + tuple(entries))
        else:
            self._persist.append(AppendEntries(tuple(entries)))

    def _truncate(self, after: int) -> None:
        self.uncommitted.drop_after(after)
        self.last_seq = after
        self.persisted_seq = min(self.persisted_seq, after)
        self._persist.append(Truncate(after))

    # ------------------------------------------------------------------ commit

    def _commit_to(self, seq: int) -> None:
        seq = min(seq, self.last_seq)
        if seq <= self.committed_seq:
            return
        self.committed_seq = seq
        if self._persist and isinstance(self._persist[-1], Commit):
            self._persist[-1] = Commit(seq)
        else:
            self._persist.append(Commit(seq))
        self._commit_replies.extend(self.waiting_writes.commit_through(seq))
        self._check_in_sync()

    # ------------------------------------------------------------------ links

    def on_hello(self, from_id: str, hello: Hello) -> None:
        """Our predecessor opens a link. The Welcome goes out in the next Ready."""
        err = self._epoch_error(hello.epoch)
        if err is None and from_id != self.pred:
            err = Error(Code.UNAVAILABLE, f"{from_id} is not this node's predecessor", self.epoch)
        if err is not None:
            log.info("link refused node=%s from=%s code=%s", self.id, from_id, err.code.name)
            self.up.welcomes.append((from_id, Welcome(err, epoch=hello.epoch)))
            return
        self.up.linked = True
        self.up.received += 1
        self.up.acked = self.committed_seq
        needs_transfer = self.last_seq + 1 < hello.first_seq
        if needs_transfer:
            self.up.transfer_from = from_id
            self._request_transfer(from_id)
        else:
            self.up.transfer_from = None
        self.up.welcomes.append((from_id, Welcome(OK, self.last_seq, self.committed_seq, needs_transfer, self.epoch)))

    def on_welcome(self, from_id: str, welcome: Welcome) -> None:
        # A Welcome answering a message of another epoch is late traffic of a link we already renewed
        # (the shell may still feed us the old stream until the new one replaces it): taken for the
        # answer to our new Hello it would move sent_through and the commit point, or drop the new link.
        if from_id != self.succ or self.down.state == LinkState.IDLE or welcome.epoch != self.epoch:
            log.debug("stray welcome node=%s from=%s epoch=%d", self.id, from_id, welcome.epoch)
            return
        if not welcome.error.ok:
            log.info("link refused by successor node=%s succ=%s code=%s", self.id, from_id, welcome.error.code.name)
            self._reset_downstream(hello=False)  # the shell calls retry_link() after a backoff
            return
        if welcome.last_seq > self.last_seq:
            log.error("successor is ahead node=%s succ=%s its_last=%d our_last=%d", self.id, from_id,
                      welcome.last_seq, self.last_seq)
            self._reset_downstream(hello=False)
            return
        if welcome.needs_transfer:
            self.down.state = LinkState.TRANSFER
            return
        if welcome.last_seq < self.log_start:
            self._reset_downstream()  # trimmed meanwhile: the next Hello makes it ask for a transfer
            return
        self.down.stream_from(welcome.last_seq)
        if not self._commits_on_persist():
            self._commit_to(welcome.committed_seq)

    def retry_link(self) -> None:
        """The shell's backoff after a broken or refused link ran out: say Hello again if it is down."""
        if self.down.state == LinkState.IDLE and self.succ is not None:
            self.down.hello_due = True

    def keepalive(self) -> None:
        """The downlink has been idle a while: send an empty Batch (it carries our commit point) in the
        next Ready, so that the successor can tell an idle predecessor from a dead link."""
        if self.down.state == LinkState.STREAMING and self.succ is not None:
            self.down.first_batch_due = True

    def downlink_lost(self, peer: str) -> None:
        """Our link stream to `peer` broke (or could not be opened). The shell calls `retry_link()`
        after its backoff to reopen it."""
        if peer == self.succ:
            self._reset_downstream(hello=False)
            self._sessions.pop(peer, None)

    def uplink_lost(self, peer: str) -> None:
        """The link stream `peer` opened to us broke. It says nothing about our own stream to `peer`:
        after a reconfiguration our old predecessor may be our successor, and the teardown of its old
        stream must not reset the new link we opened to it (nobody would reopen that one)."""
        if peer == self.pred:
            self.up.linked = False

    def link_lost(self, peer: str) -> None:
        """Both link streams with `peer` are gone (it crashed)."""
        self.downlink_lost(peer)
        self.uplink_lost(peer)

    def on_batch(self, from_id: str, batch: Batch) -> None:
        if from_id != self.pred or batch.epoch != self.epoch or not self.up.linked:
            err = self._epoch_error(batch.epoch) or Error(Code.UNAVAILABLE, "no link from this node", self.epoch)
            self.up.welcomes.append((from_id, Welcome(err, epoch=batch.epoch)))
            return
        self.up.received += 1
        if self.up.transfer_from is not None:
            return  # installing a state transfer; the stream resumes after our next Welcome
        new = [e for e in batch.entries if e.seq > self.last_seq]
        if new and new[0].seq != self.last_seq + 1:
            log.info("gap on link node=%s from=%s have=%d got=%d", self.id, from_id, self.last_seq, new[0].seq)
            self.up.welcomes.append((from_id, Welcome(OK, self.last_seq, self.committed_seq, epoch=self.epoch)))
            return
        if new:
            self._append_local(new)
        if not self.in_sync and batch.committed_seq <= self.last_seq:
            self._sync_target = batch.committed_seq
        self._check_in_sync()

    def _check_in_sync(self) -> None:
        # In sync once we have COMMITTED everything our predecessor had committed: holding those
        # entries is not enough, a tail (or syncing node) serves only what it has committed, and
        # commits only what it has persisted.
        if not self.in_sync and self._sync_target is not None and self.committed_seq >= self._sync_target:
            self.in_sync = True
            log.info("in sync node=%s epoch=%d through=%d", self.id, self.epoch, self.last_seq)
            if self.down.state == LinkState.STREAMING:
                self.down.first_batch_due = True  # now we can vouch for our successor: tell it
        if self.in_sync and self.role == Role.SYNCING and not self._caught_up_reported:
            self._caught_up_reported = True
            self._caught_up = self.last_seq

    def on_ack(self, from_id: str, ack: Ack) -> None:
        if from_id != self.succ or ack.epoch != self.epoch or self.down.state != LinkState.STREAMING:
            log.debug("stray ack node=%s from=%s epoch=%d", self.id, from_id, ack.epoch)
            return
        self.down.acked = max(self.down.acked, min(ack.committed_seq, self.down.sent_through))
        if not self._commits_on_persist():
            self._commit_to(min(ack.committed_seq, self.down.sent_through))

    # ------------------------------------------------------------------ state transfer

    def begin_transfer(self, to_id: str, epoch: int) -> Error:
        """`to_id` (our successor) asks for our state; chunks come from `transfer_chunk(to_id)`."""
        err = self._epoch_error(epoch)
        if err is None and to_id != self.succ:
            err = Error(Code.UNAVAILABLE, f"{to_id} is not this node's successor", self.epoch)
        if err is None and not self.in_sync:
            err = Error(Code.UNAVAILABLE, "catching up: cannot send state", self.epoch)
        if err is not None:
            return err
        self._sessions[to_id] = TransferSession(through=self.applied_commit)
        log.info("transfer begins node=%s to=%s through=%d", self.id, to_id, self.applied_commit)
        return OK

    def transfer_chunk(self, to_id: str) -> TransferChunk:
        """The next chunk of a transfer begun with `begin_transfer`; the last one has `last=True`.

        Keys are read from the store as they are when asked (the scan is not a snapshot: a key may
        carry a version newer than `through_seq`); the live stream from `through_seq + 1` replays
        everything after, and applying an older version under a newer clean one changes nothing."""
        s = self._sessions.get(to_id)
        if s is None:
            raise ValueError(f"no state transfer to {to_id} is in progress")
        chunk = s.next_chunk(self.store, self.options.transfer_chunk_keys, self.options.max_batch_bytes)
        if chunk.last:
            del self._sessions[to_id]
            log.info("transfer done node=%s to=%s through=%d", self.id, to_id, s.through)
        return chunk

    def on_transfer_chunk(self, from_id: str, chunk: TransferChunk) -> None:
        if from_id != self.up.transfer_from:
            log.debug("stray transfer chunk node=%s from=%s", self.id, from_id)
            return
        # The chunks of keys cover the key space in order, each (the previous one's last key, its own
        # last key]; the first chunk without keys means the sender has no more, up to the end.
        sweep: tuple[bytes | None, bytes | None] | None = None
        if chunk.keys:
            sweep = (self._sweep_after, chunk.keys[-1].key)
            self._sweep_after = chunk.keys[-1].key
        elif not self._swept_all:
            sweep = (self._sweep_after, None)
            self._swept_all = True
        if chunk.keys or chunk.outcomes or sweep is not None:
            self._persist.append(InstallKeys(chunk.keys, chunk.outcomes, sweep))
            self._installed_through = max(self._installed_through, *(kv.version for kv in chunk.keys), 0)
        if not chunk.last:
            return
        if chunk.through_seq < self.committed_seq:
            log.error("transfer behind our commit point node=%s through=%d committed=%d", self.id,
                      chunk.through_seq, self.committed_seq)
            self._request_transfer(from_id)
            return
        self._persist.append(ResetLog(chunk.through_seq))
        # The transfer's keys may be newer than its point, and their older versions are not here.
        self.history_floor = max(self.history_floor, chunk.through_seq, self._installed_through)
        self._installed_through = 0
        self.uncommitted.restart_at(chunk.through_seq)
        self.last_seq = self.committed_seq = self.log_start = chunk.through_seq
        self.persisted_seq = self.applied_commit = chunk.through_seq
        self.up.transfer_from = None
        # Our log now starts at the transfer's point: the successor handshakes again, and takes a
        # transfer from us if it lacks entries from before it.
        self._reset_downstream()
        self._sessions.clear()
        self.up.welcomes.append((from_id, Welcome(OK, self.last_seq, self.committed_seq, epoch=self.epoch)))

    def transfer_failed(self, from_id: str) -> None:
        """The Transfer stream broke before its last chunk: ask again (the shell backs off)."""
        if from_id == self.up.transfer_from:
            self._request_transfer(from_id)

    def _request_transfer(self, from_id: str) -> None:
        # Every transfer is read from the start of the key space: so is its sweep.
        self._sweep_after, self._swept_all = None, False
        self._transfers.append(TransferStart(from_id, self.epoch))

    # ------------------------------------------------------------------ Ready

    def has_ready(self) -> bool:
        if self._inflight is not None:
            return False
        return bool(self._persist) or self._has_outputs()

    def lazy_only(self) -> bool:
        """Whether the next Ready would carry only records a crash may lose (commit points, trims: see
        `Ready.must_sync`) and no output at all. Nothing waits on such a Ready: an acknowledged write's
        reply and the ack upstream left already (`early`), and reads see entries above the store's commit
        point in memory. So a shell under load may hold it back a little, and its records then go with
        the next Ready's (one store write and one Ready cycle less per batch); it must still take it
        soon, so that the store's commit point and the memory the core holds for it do not lag."""
        if self._inflight is not None or not self._persist:
            return False
        return all(isinstance(r, _LAZY_RECORDS) for r in self._persist) and not self._has_outputs()

    def _has_outputs(self) -> bool:
        """Whether the next Ready would carry anything but records."""
        return bool(
            self._replies or self._commit_replies or self.waiting_reads.backlog or self.waiting_ranges.backlog
            or self._transfers or self.up.welcomes
            or self._caught_up is not None
            or (self.down.hello_due and self.succ is not None)
            or (self.down.state == LinkState.STREAMING and (self.down.first_batch_due or self.down.can_send(self.last_seq, self.options.max_inflight_entries)))
            or (self.pred is not None and self.up.linked and self.committed_seq > self.up.acked)
        )

    def ready(self) -> Ready:
        if self._inflight is not None:
            raise RuntimeError("ready() called again before advance()")
        rd = Ready(persist=self._persist, replies=self._commit_replies + self._replies, transfers=self._transfers,
                   caught_up=self._caught_up)
        self._persist, self._replies, self._commit_replies, self._transfers, self._caught_up = [], [], [], [], None
        for to, welcome in self.up.welcomes:
            rd.messages.append(Outbound(to, welcome))
        self.up.welcomes = []
        if self.down.hello_due and self.succ is not None:
            rd.messages.append(Outbound(self.succ, Hello(self.epoch, self.id, self.log_start + 1)))
            self.down.hello_due = False
            self.down.state = LinkState.HELLO
        if self.down.state == LinkState.STREAMING and self.succ is not None:
            # A node not in sync itself cannot vouch that its successor is level with the chain: it
            # advertises a commit point beyond its last seq, which no successor can reach.
            level = self.committed_seq if self.in_sync else self.last_seq + 1
            hi = min(self.last_seq, self.down.acked + self.options.max_inflight_entries)
            while self.down.sent_through < hi:
                top = min(hi, self.down.sent_through + self.options.max_batch_entries)
                entries = within_bytes(self.uncommitted.entries(self.down.sent_through + 1, top), self.options.max_batch_bytes)
                rd.messages.append(Outbound(self.succ, Batch(self.epoch, entries, level)))
                self.down.sent_through = entries[-1].seq
                self.down.first_batch_due = False
            if self.down.first_batch_due:
                rd.messages.append(Outbound(self.succ, Batch(self.epoch, (), level)))
                self.down.first_batch_due = False
        if self.pred is not None and self.up.linked and self.committed_seq > self.up.acked:
            rd.messages.append(Outbound(self.pred, Ack(self.epoch, self.committed_seq)))
            self.up.acked = self.committed_seq
        if self.waiting_reads.backlog or self.waiting_ranges.backlog:
            self._flush_reads(rd)
        plain = _plain(rd.persist) and not any(isinstance(m.body, (Hello, Welcome)) for m in rd.messages)
        self._inflight = _Inflight(self.last_seq, self.committed_seq, self.epoch, rd.caught_up is not None, plain)
        return rd

    def has_early(self) -> bool:
        """Whether `early()` has outputs: an ack or write replies that need not wait for the Ready in flight."""
        return self._early_allowed() and bool(self._commit_replies or self._ack_due())

    def early(self) -> Ready:
        """Acks upstream and write replies, taken out of turn: they may leave at once, even while the
        Ready in flight (if any) waits for its sync, and even between `ready()` and `advance()`.

        Neither rests on this node's pending records. A commit point moves only over entries already
        durable here: the tail's (and a syncing node's) over what an advanced Ready persisted, any other
        node's over what its successor acked, which it forwarded only once durable. So an ack, and the
        reply of a write it commits, says nothing a crash of this node could take back; holding them for
        the next Ready cycle only put a sync on every hop of the ack path. Not while a Ready carries
        anything else but entries and lazy records (a truncation, an installed transfer, a new
        configuration) or a Hello or Welcome (an ack must not overtake the Welcome that opens its stream),
        nor while the commit point is above what this node has made durable (a successor's Welcome can
        move it over entries still in a Ready's sync): then they wait for their Ready, as everything
        else does."""
        rd = Ready()
        if not self._early_allowed():
            return rd
        rd.replies, self._commit_replies = self._commit_replies, []
        if self._ack_due():
            rd.messages.append(Outbound(self.pred, Ack(self.epoch, self.committed_seq)))  # type: ignore[arg-type]
            self.up.acked = self.committed_seq
        return rd

    def _ack_due(self) -> bool:
        return self.pred is not None and self.up.linked and self.committed_seq > self.up.acked

    def _early_allowed(self) -> bool:
        inflight = self._inflight
        return ((inflight is None or inflight.plain) and _plain(self._persist) and not self.up.welcomes
                and self.up.transfer_from is None and self.committed_seq <= self.persisted_seq)

    def _flush_reads(self, rd: Ready) -> None:
        """Dirty reads and strong ranges share one version query to the tail per Ready: the reads ask
        for their keys' committed versions, the ranges for its commit point (in every reply)."""
        backlog = self.waiting_reads.take_backlog()
        ranges = self.waiting_ranges.take_backlog()
        if self.is_tail:  # became the tail meanwhile: our commit point is the chain's
            for ticket, key in backlog:
                rd.replies.append((ticket, self._served(self._latest(key, clean_only=True))))
            for ticket, r in ranges:
                rd.replies.append((ticket, self._resolve_range(r, self.committed_seq)))
            return
        if self.tail_id is None:
            for ticket, _ in backlog:
                rd.replies.append((ticket, ReadReply(Error(Code.UNAVAILABLE, "no tail", self.epoch))))
            for ticket, _ in ranges:
                rd.replies.append((ticket, RangeReply(Error(Code.UNAVAILABLE, "no tail", self.epoch))))
            return
        qid = self.waiting_reads.ask(backlog)
        self.waiting_ranges.attach(qid, ranges)
        self.version_queries += len(backlog)
        keys = tuple(dict.fromkeys(k for _, k in backlog))
        rd.version_queries.append(VersionQuery(qid, self.tail_id, self.epoch, keys))

    def advance(self) -> None:
        """The last Ready is durable and its outputs are on their way."""
        done = self._inflight
        if done is None:
            raise RuntimeError("advance() without a ready()")
        self._inflight = None
        if done.caught_up:
            self._caught_up_epoch = done.epoch
        self.persisted_seq = min(done.last_seq, self.last_seq)
        if done.committed_seq > self.applied_commit:
            self.applied_commit = done.committed_seq
            self.uncommitted.forget_through(done.committed_seq)
        if self._commits_on_persist():
            self._commit_to(self.persisted_seq)
        self._trim()
        self._collect()

    def _collect(self) -> None:
        """The one garbage-collection rule (module docstring): superseded versions are compacted through
        the horizon H (durable commit point - retain_versions, or the commit point itself while this
        node's storage alarm is raised), then tombstones through min(H, the chain's clean point) are
        collected, never above what was compacted."""
        # A node whose own disk is full keeps no history: its deletes must free space now (its ranges
        # at older snapshots are COMPACTED, and the proxy reads them from another member).
        kept = 0 if self.id in self.storage_alarms else self.options.retain_versions
        horizon = self.applied_commit - kept
        if horizon > self._compacted:
            self._persist.append(CompactHistory(horizon))
            self._compacted = horizon
        through = min(self._compacted, self.chain_clean_point)
        if through > self.collected_seq:
            self._persist.append(CollectGarbage(through))
            self.collected_seq = through

    def _trim(self) -> None:
        target = self.applied_commit - self.options.retain_entries
        if self.succ is not None:  # keep what our successor may still need
            target = min(target, self.down.acked, *(s.through for s in self._sessions.values()))
        if target > self.log_start:
            self._persist.append(TrimLog(target))
            self.log_start = target
        forget = self.applied_commit - self.options.dedup_window
        if forget > self._outcomes_floor:
            self._persist.append(ForgetOutcomes(forget))
            self._outcomes_floor = forget

    # ------------------------------------------------------------------ status

    @property
    def caught_up(self) -> bool:
        """A syncing node holds everything its predecessor committed, durably, in the current epoch:
        what the coordinator is told to promote it. Level in an earlier epoch says nothing about this
        one (a configure landing while the Ready's fsync ran starts the catch-up over)."""
        return self.role == Role.SYNCING and self._caught_up_epoch == self.epoch

    def serving(self, now: float) -> bool:
        """Whether this node serves reads now in its own epoch: the same checks `client_read` makes
        (membership, lease, in sync, no state transfer being installed)."""
        return self._gate(self.epoch, now, write=False) is None

    def status(self, now: float) -> NodeStatus:
        return NodeStatus(
            id=self.id,
            chain=self.config.chain if self.config else "",
            epoch=self.epoch,
            role=self.role.value,
            last_seq=self.last_seq,
            committed_seq=self.committed_seq,
            reads=self.reads,
            writes=self.writes,
            version_queries=self.version_queries,
            lease_valid=self.lease_valid(now),
            keys=self.store.key_count(),
            in_sync=self.in_sync,
            storage_alarm=self.id in self.storage_alarms,
            storage_alarms=self.full_members(),
        )
