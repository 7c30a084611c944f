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
    INSUFFICIENT_STORAGE = 11


class MemberState(IntEnum):
    ACTIVE = 0
    SYNCING = 1


class OpKind(IntEnum):
    PUT = 0
    DELETE = 1


class EntryKind(IntEnum):
    PUT = 0
    DELETE = 1  # a tombstone: the key reads as absent from this version on
    NOOP = 2  # a write whose precondition failed, sequenced so its outcome is replicated


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


@dataclass(frozen=True, slots=True)
class WriteOp:
    request_id: str
    key: bytes
    kind: OpKind = OpKind.PUT
    value: bytes = b""
    if_version: int | None = None  # compare-and-set: current version must equal this (0 = absent)
    if_absent: bool = False  # create-only


@dataclass(frozen=True, slots=True)
class WriteResult:
    error: Error = OK
    version: int = 0
    current_version: int = 0  # PRECONDITION_FAILED: the version that was there (0 = absent)


@dataclass(frozen=True, slots=True)
class WriteReply:
    error: Error = OK
    results: tuple[WriteResult, ...] = ()


@dataclass(frozen=True, slots=True)
class ReadReply:
    error: Error = OK
    value: bytes = b""
    version: int = 0  # NOT_FOUND: the tombstone's version, 0 if the key was never written


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

    def result(self) -> WriteResult:
        if self.kind == EntryKind.NOOP:
            return WriteResult(
                error=Error(Code.PRECONDITION_FAILED, "precondition failed"),
                current_version=self.current_version,
            )
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
    return RequestOutcome(entry.request_id, entry.seq, entry.kind, entry.current_version)
