"""A chain node's links to its neighbours, as state the core keeps: the stream it opens to its
successor, the stream its predecessor opened to it, and the state transfers it sends.

Pure bookkeeping, no decisions: `ChainCore` decides when a link opens, streams, resets or hands
over a transfer (the protocol rules are in `keychain.node.core`'s docstring), and keeps the state
of each here. The size of a link message is bounded here too (`within_bytes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from keychain.node.messages import Entry, KeyVersion, TransferChunk, Welcome
from keychain.node.versions import VersionStore


class LinkState(Enum):
    IDLE = "idle"  # no successor, or a Hello is due
    HELLO = "hello"  # Hello sent, waiting for the Welcome
    TRANSFER = "transfer"  # the successor is installing a state transfer, then welcomes again
    STREAMING = "streaming"


@dataclass(slots=True)
class Downstream:
    """Our link stream to the successor.

    Invariant while STREAMING: acked <= sent_through <= the node's last_seq, and
    sent_through <= acked + max_inflight_entries. Both seqs are reset to 0 with the stream: they
    speak of the current stream only.
    """

    state: LinkState = LinkState.IDLE
    hello_due: bool = False  # a Hello goes out in the next Ready
    # The last seq put on the stream in a Batch. The Welcome sets it to the successor's last_seq:
    # entries up to there need not be sent again.
    sent_through: int = 0
    # The successor surely holds every entry through this seq: its Welcome's last_seq, then its
    # cumulative acks (its commit point, capped at sent_through). The log is not trimmed past it.
    acked: int = 0
    first_batch_due: bool = False  # a Batch goes out even if empty: it carries our commit point

    def reset(self, hello: bool) -> None:
        """The stream is gone (or renewed): nothing is sent on it until a Welcome; say Hello if `hello`."""
        self.state = LinkState.IDLE
        self.hello_due = hello
        self.sent_through = 0
        self.acked = 0
        self.first_batch_due = False

    def stream_from(self, last_seq: int) -> None:
        """The successor welcomed us holding everything through `last_seq`: stream from the next seq."""
        self.state = LinkState.STREAMING
        self.sent_through = last_seq
        self.acked = last_seq
        self.first_batch_due = True

    def can_send(self, last_seq: int, max_inflight: int) -> bool:
        """Whether entries wait to be sent within the window of unacknowledged entries."""
        return self.sent_through < min(last_seq, self.acked + max_inflight)


@dataclass(slots=True)
class Upstream:
    """The link stream our predecessor opened to us, and the state transfer we receive from it."""

    linked: bool = False  # a Hello of our epoch from our predecessor was welcomed on the live stream
    # The commit point we last acknowledged upstream (<= our committed_seq): an Ack goes out whenever
    # our commit point moves past it.
    acked: int = 0
    welcomes: list[tuple[str, Welcome]] = field(default_factory=list)  # decided, go out in the next Ready
    transfer_from: str | None = None  # installing a state transfer from this node: no batches meanwhile
    received: int = 0  # Hellos and Batches taken from the predecessor: its liveness, as link health sees it


@dataclass(slots=True)
class TransferSession:
    """A state transfer we send: every clean key, then every remembered request outcome, by chunks.
    The receiver's log then starts at `through` (our store's commit point when the transfer began)."""

    through: int
    key_cursor: bytes | None = None
    outcome_cursor: str | None = None
    keys_done: bool = False

    def next_chunk(self, store: VersionStore, chunk_keys: int, max_bytes: int) -> TransferChunk:
        """The next chunk, read from `store` as it is now; the last one has `last=True`."""
        if not self.keys_done:
            scanned = store.scan_clean(self.key_cursor, chunk_keys)
            keys = within_bytes(scanned, max_bytes)
            if len(scanned) < chunk_keys and len(keys) == len(scanned):
                self.keys_done = True
            if keys:
                self.key_cursor = keys[-1].key
                return TransferChunk(keys=tuple(keys))
        outcomes = store.scan_outcomes(self.outcome_cursor, chunk_keys)
        if len(outcomes) == chunk_keys:
            self.outcome_cursor = outcomes[-1].request_id
            return TransferChunk(outcomes=tuple(outcomes))
        return TransferChunk(outcomes=tuple(outcomes), through_seq=self.through, last=True)


def payload_bytes(item: Entry | KeyVersion) -> int:
    """What an entry or a transferred key weighs against `max_batch_bytes`: its key, value and request
    id. Protobuf framing adds a bounded amount per item (ENTRY_FRAMING_BYTES), which the shell allows for."""
    if not isinstance(item, Entry):
        return len(item.key) + len(item.value)
    size = len(item.key) + len(item.value) + len(item.request_id.encode())
    if item.writes or item.results:  # a transaction's; a plain entry skips the sums (every batch's entries come here)
        size += sum(len(w.key) + len(w.value) for w in item.writes) + sum(len(r.value) for r in item.results)
    return size


# Protobuf framing of one Entry or KeyVersion inside its message: field tags, length prefixes and
# varints (at most 10 bytes each). A generous upper bound. A TXN entry adds as much per write and
# per result (see TXN_OP_FRAMING_BYTES).
ENTRY_FRAMING_BYTES = 64
TXN_OP_FRAMING_BYTES = 32


def within_bytes[T: (Entry, KeyVersion)](items: list[T], limit: int) -> tuple[T, ...]:
    """The longest prefix of `items` whose payload fits in `limit`, but at least the first item."""
    total = 0
    for i, item in enumerate(items):
        total += payload_bytes(item)
        if total > limit and i > 0:
            return tuple(items[:i])
    return tuple(items)
