"""The chain node's vocabulary: plain value types the pure core consumes and produces.

They mirror keychain/proto/chain.proto field for field (see `keychain.node.wire` for the mapping),
so the core and its tests never touch protobuf objects and the shell only translates.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Code(IntEnum):
    OK = 0
    WRONG_EPOCH = 1
    NOT_HEAD = 2
    LEASE_EXPIRED = 3
    INVALID_ARGUMENT = 4
    TOO_LARGE = 5
    PRECONDITION_FAILED = 6
    UNAVAILABLE = 7
    OUTCOME_UNKNOWN = 8
    NOT_FOUND = 9
    COMPACTED = 10  # a range's snapshot is older than the versions this node keeps
    INSUFFICIENT_STORAGE = 11


class MemberState(IntEnum):
    ACTIVE = 0
    SYNCING = 1


class OpKind(IntEnum):
    PUT = 0
    DELETE = 1
    TXN = 2  # `txn` holds the compares and both branches; `key` is unused


class EntryKind(IntEnum):
    PUT = 0
    DELETE = 1  # a tombstone: the key reads as absent from this version on
    NOOP = 2  # a write whose precondition failed, sequenced so its outcome is replicated
    TXN = 3  # a transaction: its branch's writes (maybe none), all at this one seq


class Consistency(IntEnum):
    STRONG = 0
    EVENTUAL = 1


@dataclass(frozen=True, slots=True)
class Error:
    code: Code = Code.OK
    message: str = ""
    epoch: int = 0  # the replying node's epoch

    @property
    def ok(self) -> bool:
        return self.code == Code.OK


OK = Error()


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    address: str = ""
    state: MemberState = MemberState.ACTIVE


@dataclass(frozen=True, slots=True)
class ChainConfig:
    """Active members in order head .. tail, then syncing members (each after the previous one)."""

    chain: str
    epoch: int
    members: tuple[Member, ...] = ()

    def ids(self) -> list[str]:
        return [m.id for m in self.members]

    def member(self, node_id: str) -> Member | None:
        return next((m for m in self.members if m.id == node_id), None)

    def active(self) -> list[Member]:
        return [m for m in self.members if m.state == MemberState.ACTIVE]

    def validate(self) -> None:
        """Raise ValueError unless active members come first and ids are unique."""
        ids = self.ids()
        if len(set(ids)) != len(ids):
            raise ValueError(f"chain {self.chain!r} epoch {self.epoch}: duplicate member ids {ids}")
        seen_syncing = False
        for m in self.members:
            if m.state == MemberState.SYNCING:
                seen_syncing = True
            elif seen_syncing:
                raise ValueError(f"chain {self.chain!r} epoch {self.epoch}: active member {m.id} after a syncing one")
        if self.members and not self.active():
            raise ValueError(f"chain {self.chain!r} epoch {self.epoch}: no active member")


# ---- writes and reads (client -> node) ----


class CompareResult(IntEnum):
    EQUAL = 0
    NOT_EQUAL = 1
    GREATER = 2  # version targets only
    LESS = 3


class CompareTarget(IntEnum):
    VERSION = 0  # the key's version (0: absent or deleted)
    VALUE = 1  # the key's value (never equal when absent)
    EXISTS = 2  # whether the key is present


class TxnOpKind(IntEnum):
    PUT = 0
    DELETE = 1
    GET = 2


@dataclass(frozen=True, slots=True)
class Compare:
    """One comparison of a transaction: the key's `target` compared with the operand by `result`."""

    key: bytes
    result: CompareResult = CompareResult.EQUAL
    target: CompareTarget = CompareTarget.VERSION
    version: int = 0
    value: bytes = b""
    exists: bool = False


@dataclass(frozen=True, slots=True)
class TxnOp:
    kind: TxnOpKind
    key: bytes
    value: bytes = b""  # PUT only


@dataclass(frozen=True, slots=True)
class Txn:
    """etcd's shape: if every compare holds, `success` runs, else `failure`, at one seq."""

    compare: tuple[Compare, ...] = ()
    success: tuple[TxnOp, ...] = ()
    failure: tuple[TxnOp, ...] = ()


@dataclass(frozen=True, slots=True)
class TxnOpResult:
    """One per op of the chosen branch: a get's finding, or a write's version (the txn's seq)."""

    found: bool = False
    value: bytes = b""
    version: int = 0


@dataclass(frozen=True, slots=True)
class TxnWrite:
    """A put or delete of a transaction's entry."""

    key: bytes
    tombstone: bool = False
    value: bytes = b""


@dataclass(frozen=True, slots=True)
class WriteOp:
    request_id: str
    key: bytes
    kind: OpKind = OpKind.PUT
    value: bytes = b""
    if_version: int | None = None  # compare-and-set: current version must equal this (0 = absent)
    if_absent: bool = False  # create-only
    txn: Txn | None = None  # TXN only


@dataclass(frozen=True, slots=True)
class WriteResult:
    error: Error = OK
    version: int = 0  # TXN: the transaction's seq
    current_version: int = 0  # PRECONDITION_FAILED: the version that was there (0 = absent)
    succeeded: bool = False  # TXN: every compare held and the success branch ran
    results: tuple[TxnOpResult, ...] = ()  # TXN: the chosen branch's results


@dataclass(frozen=True, slots=True)
class WriteReply:
    error: Error = OK
    results: tuple[WriteResult, ...] = ()


@dataclass(frozen=True, slots=True)
class ReadReply:
    error: Error = OK
    value: bytes = b""
    version: int = 0  # NOT_FOUND: the tombstone's version, 0 if the key was never written


@dataclass(frozen=True, slots=True)
class RangeRead:
    """A range at one snapshot: the keys in [start, end) (end empty: to the end of the key space)."""

    start: bytes
    end: bytes = b""
    limit: int = 0  # 0: the node's maximum
    keys_only: bool = False
    consistency: Consistency = Consistency.STRONG
    snapshot: int = 0  # 0: the node picks one; else exactly this one, or COMPACTED


@dataclass(frozen=True, slots=True)
class RangeItem:
    key: bytes
    value: bytes
    version: int


@dataclass(frozen=True, slots=True)
class RangeReply:
    error: Error = OK
    items: tuple[RangeItem, ...] = ()  # ascending by key, tombstones left out
    snapshot: int = 0  # the seq the page was read at
    more: bool = False  # keys remain after the last item
    compact_version: int = 0  # COMPACTED: the oldest snapshot still readable here


# ---- replication ----


@dataclass(frozen=True, slots=True)
class Entry:
    """One write as the head sequenced it; `seq` is the key's version (NOOP entries make none)."""

    seq: int
    request_id: str
    key: bytes
    kind: EntryKind
    value: bytes = b""
    current_version: int = 0  # NOOP: the version that made the precondition fail
    writes: tuple[TxnWrite, ...] = ()  # TXN: one per key written, its last write in the branch
    succeeded: bool = False  # TXN: the outcome, replicated so a retry on any node gets it
    results: tuple[TxnOpResult, ...] = ()  # TXN: as answered to the client


@dataclass(frozen=True, slots=True)
class Hello:
    """Opens a link downstream."""

    epoch: int
    from_id: str
    # The lowest seq the sender can still resend: its log_start + 1. A successor whose last_seq + 1
    # is below it asks for a state transfer.
    first_seq: int = 1


@dataclass(frozen=True, slots=True)
class Welcome:
    """The successor's answer to a Hello (and, later on the same link, a request to resume)."""

    error: Error = OK
    # The successor's last seq (<= the sender's last_seq, or the link is refused): the stream
    # resumes at last_seq + 1.
    last_seq: int = 0
    # The successor's commit point (<= last_seq): a sender that does not commit on persist adopts it.
    committed_seq: int = 0
    needs_transfer: bool = False
    epoch: int = 0  # the epoch of the Hello (or Batch) answered, echoed; error.epoch is the successor's own


@dataclass(frozen=True, slots=True)
class Batch:
    epoch: int
    entries: tuple[Entry, ...] = ()
    # The sender's commit point: lets a catching-up successor know when it is level. A sender not in
    # sync itself sends one beyond its last seq, which no successor can be level with.
    committed_seq: int = 0


@dataclass(frozen=True, slots=True)
class Ack:
    epoch: int
    # The successor's commit point, cumulative: every entry through it is committed (the sender
    # caps it at what it sent on this stream before it commits on it).
    committed_seq: int


@dataclass(frozen=True, slots=True)
class VersionQueryReply:
    error: Error = OK
    versions: tuple[int, ...] = ()  # committed version per key; 0 = never written
    committed_seq: int = 0  # the tail's commit point (a range's snapshot asks with no keys)


# ---- state transfer ----


@dataclass(frozen=True, slots=True)
class KeyVersion:
    key: bytes
    version: int  # the seq of the entry that wrote it
    tombstone: bool = False
    value: bytes = b""


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """What a request id resolved to: enough to rebuild its WriteResult."""

    request_id: str
    seq: int  # the seq of the entry sequenced for the request (its version, for a PUT or DELETE)
    kind: EntryKind
    current_version: int = 0
    succeeded: bool = False  # TXN
    results: tuple[TxnOpResult, ...] = ()  # TXN

    def result(self) -> WriteResult:
        if self.kind == EntryKind.NOOP:
            return WriteResult(
                error=Error(Code.PRECONDITION_FAILED, "precondition failed"),
                current_version=self.current_version,
            )
        if self.kind == EntryKind.TXN:
            return WriteResult(version=self.seq, succeeded=self.succeeded, results=self.results)
        return WriteResult(version=self.seq)


@dataclass(frozen=True, slots=True)
class TransferChunk:
    keys: tuple[KeyVersion, ...] = ()
    outcomes: tuple[RequestOutcome, ...] = ()
    through_seq: int = 0  # last chunk: the state is complete through this seq
    last: bool = False


@dataclass(frozen=True, slots=True)
class NodeStatus:
    id: str
    chain: str = ""
    epoch: int = 0
    role: str = "none"  # head | middle | tail | syncing | none
    last_seq: int = 0  # the core's last_seq and committed_seq (see ChainCore)
    committed_seq: int = 0
    reads: int = 0
    writes: int = 0
    version_queries: int = 0
    lease_valid: bool = False
    keys: int = 0
    in_sync: bool = False  # not on the wire: False while the node may still lack committed entries
    storage_alarm: bool = False  # this node's disk is over its high-water mark
    disk_free_bytes: int = 0
    storage_alarms: tuple[str, ...] = ()  # the chain's members whose disk is full, as this node knows them


def outcome_of(entry: Entry) -> RequestOutcome:
    return RequestOutcome(entry.request_id, entry.seq, entry.kind, entry.current_version, entry.succeeded,
                          entry.results)


def entry_versions(entry: Entry) -> tuple[KeyVersion, ...]:
    """The versions an entry makes, one per key: a PUT's or DELETE's, a TXN's writes; a NOOP none."""
    if entry.kind == EntryKind.PUT or entry.kind == EntryKind.DELETE:
        return (KeyVersion(entry.key, entry.seq, entry.kind == EntryKind.DELETE, entry.value),)
    if entry.kind == EntryKind.TXN:
        return tuple(KeyVersion(w.key, entry.seq, w.tombstone, w.value) for w in entry.writes)
    return ()


def entry_keys(entry: Entry) -> tuple[bytes, ...]:
    """The keys an entry writes."""
    if entry.kind == EntryKind.PUT or entry.kind == EntryKind.DELETE:
        return (entry.key,)
    if entry.kind == EntryKind.TXN:
        return tuple(w.key for w in entry.writes)
    return ()
