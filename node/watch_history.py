"""A node's committed stream: a bounded history of committed changes, and one watcher's position in it.

Pure and deterministic (no I/O, no clock): the node driver feeds the history from the core after
every Ready (`WatchHistory.catch_up`), and the gRPC shell (`keychain.node.watch_hub`), the simulator's
node and the scenario tests decide what each watcher is sent with the same `WatchCursor`.

What the history holds. Every change with a seq in (`floor`, `last`], in seq order, and nothing
else: `last` is the core's commit point when it was last fed, so an uncommitted change is never
here; `floor` is the compact point (etcd's compact revision): a watcher resuming after a version
below it would miss changes, and is answered COMPACTED with `floor` instead. Whole seqs only: a
transaction's changes share its seq and are kept, evicted and sent together. A NOOP entry (a write
whose precondition failed) changes nothing and takes no room, but its seq is covered all the same.

Bounds. At most `max_changes` changes and `max_bytes` bytes of keys and values (a single seq larger
than that is kept alone): the oldest seqs are evicted first and `floor` rises. The defaults (10 000
changes, 64 MiB) match the log a node keeps behind its commit point for catch-up: a watcher that
drops out for a few seconds of a busy chain resumes without a gap, and a node's memory stays
bounded whatever the value sizes.

After a restart. The history is rebuilt from the store's retained log, which holds every entry
after its `log_start` in full: the node serves watches after `log_start` (or after what fits in
the bounds) and answers COMPACTED below. The store's versions cannot rebuild more: a clean version
is only the newest committed write of its key, the writes it superseded are gone, so a history
built from versions would silently skip changes. A state transfer (a node that was too far behind)
restarts the history empty at the transfer's point, for the same reason.

Written by hand: a ring of committed changes with a compact point is specific to this protocol.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from keychain.node.messages import Code, Entry, EntryKind, Error, entry_versions

if TYPE_CHECKING:
    from keychain.node.core import ChainCore

# What a change costs beyond its key and value: its seq, kind and the list's bookkeeping.
CHANGE_OVERHEAD_BYTES = 64
DEFAULT_MAX_CHANGES = 10_000
DEFAULT_MAX_BYTES = 64 << 20
# One watch message: at most this many changes and bytes, cut only between seqs.
BATCH_CHANGES = 256
BATCH_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change: a put of `value` to `key`, or a delete of `key`, at `version` (its seq)."""

    version: int
    kind: EntryKind  # PUT or DELETE
    key: bytes
    value: bytes = b""

    @property
    def size(self) -> int:
        return len(self.key) + len(self.value) + CHANGE_OVERHEAD_BYTES


def changes_of(entry: Entry) -> list[Change]:
    """The changes a committed entry made: a put's or delete's, a transaction's writes (one per key,
    all at its seq), none for a NOOP."""
    if entry.kind == EntryKind.PUT:  # the common cases without the intermediate KeyVersion
        return [Change(entry.seq, EntryKind.PUT, entry.key, entry.value)]
    if entry.kind == EntryKind.DELETE:
        return [Change(entry.seq, EntryKind.DELETE, entry.key)]
    return [Change(kv.version, EntryKind.DELETE if kv.tombstone else EntryKind.PUT, kv.key,
                   b"" if kv.tombstone else kv.value) for kv in entry_versions(entry)]


def in_range(key: bytes, start: bytes, end: bytes) -> bool:
    """Whether `key` lies in [start, end); an empty `end` is the end of the key space."""
    return start <= key and (not end or key < end)


@dataclass(frozen=True, slots=True)
class HistoryRead:
    """What `WatchHistory.read` found: the matching changes, and how far it looked (every change to
    the range with a seq in (after, through] is in `changes`)."""

    changes: tuple[Change, ...]
    through: int


class WatchHistory:
    """The committed changes with seqs in (`floor`, `last`], bounded (see the module docstring)."""

    def __init__(self, start: int = 0, max_changes: int = DEFAULT_MAX_CHANGES,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_changes < 1 or max_bytes < 1:
            raise ValueError("a watch history must hold at least one change and one byte")
        self.max_changes = max_changes
        self.max_bytes = max_bytes
        self.floor = start  # compact point: changes at or below it are not held
        self.last = start  # complete through this committed seq
        self.bytes = 0
        self._changes: list[Change] = []
        self._head = 0  # evicted changes still at the front of the list (dropped in bulk)
        self.restarts = 0  # times the history restarted empty (a state transfer jumped the commit point)

    def __len__(self) -> int:
        return len(self._changes) - self._head

    # ---- feeding ----

    def extend(self, entries: Iterable[Entry]) -> None:
        """Add committed entries: consecutive seqs from `last` + 1."""
        for e in entries:
            if e.seq != self.last + 1:
                raise ValueError(f"watch history: entry {e.seq} does not follow {self.last}")
            for change in changes_of(e):
                self._changes.append(change)
                self.bytes += change.size
            self.last = e.seq
        self._evict()

    def restart_at(self, seq: int) -> None:
        """Drop everything: the node's committed state jumped to `seq` without the entries between."""
        self._changes, self._head, self.bytes = [], 0, 0
        self.floor = self.last = seq
        self.restarts += 1

    def catch_up(self, core: ChainCore) -> bool:
        """Add what `core` committed since the last call. The driver calls this before every
        `advance()`, while the entries above the store's commit point are still in the core's memory;
        returns whether anything was added."""
        hi = core.committed_seq
        if hi <= self.last:
            return False
        lo = self.last + 1
        if lo <= core.log_start:  # trimmed, or a state transfer jumped past them: they are gone
            self.restart_at(hi)
            return True
        self.extend(core.uncommitted.entries(lo, hi))
        return True

    @classmethod
    def rebuilt(cls, core: ChainCore, max_changes: int = DEFAULT_MAX_CHANGES,
                max_bytes: int = DEFAULT_MAX_BYTES) -> WatchHistory:
        """The history a (re)started node can vouch for: its retained log after `log_start`, up to its
        commit point (within the bounds: the newest seqs are kept)."""
        history = cls(core.log_start, max_changes, max_bytes)
        history.catch_up(core)
        return history

    def _evict(self) -> None:
        changes = self._changes
        while len(self) > self.max_changes or self.bytes > self.max_bytes:
            seq = changes[self._head].version
            if changes[-1].version == seq:  # changes are in seq order: only this seq is left
                break  # one seq alone is kept whatever its size
            while changes[self._head].version == seq:
                self.bytes -= changes[self._head].size
                self._head += 1
            self.floor = seq
        if self._head > 1024 and self._head * 2 > len(changes):
            del changes[: self._head]
            self._head = 0

    # ---- reading ----

    def read(self, after: int, start: bytes, end: bytes, max_changes: int = BATCH_CHANGES,
             max_bytes: int = BATCH_BYTES) -> HistoryRead:
        """The changes to keys in [start, end) after seq `after`, at most about `max_changes` and
        `max_bytes` (whole seqs: the last seq taken is taken whole). `after` must not be below `floor`."""
        if after < self.floor:
            raise ValueError(f"seq {after} is below the compact point {self.floor}")
        changes = self._changes
        i = bisect.bisect_right(changes, after, lo=self._head, key=lambda c: c.version)
        out: list[Change] = []
        size = 0
        while i < len(changes):
            c = changes[i]
            if (len(out) >= max_changes or size >= max_bytes) and c.version != out[-1].version:
                return HistoryRead(tuple(out), out[-1].version)
            if in_range(c.key, start, end):
                out.append(c)
                size += c.size
            i += 1
        return HistoryRead(tuple(out), max(after, self.last))


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """One message of a watch stream (chain.proto WatchBatch)."""

    error: Error
    changes: tuple[Change, ...] = ()
    committed_seq: int = 0  # everything up to it has been sent
    compact_version: int = 0  # on COMPACTED: the oldest after_version still served


class WatchCursor:
    """One watcher's position in a node's committed stream: what it is sent next.

    Opening and every wake-up go through `gate`: a watch is served under the rules of reads (the
    request's epoch at opening; then the node must stay a serving member with a valid lease, in
    whatever epoch). A node that stops serving ends the stream with the error, and the client resumes
    elsewhere with its last version: nothing it was sent can be contradicted (it was committed), so
    staying across an epoch change is safe, and a member that left the chain or lost its lease ends
    its streams instead of letting them go quiet."""

    def __init__(self, start: bytes, end: bytes, after: int) -> None:
        self.start = start
        self.end = end
        self.sent_through = after  # the client has every change to its range up to here
        self.done = False

    def gate(self, core: ChainCore, now: float, epoch: int | None = None) -> WatchBatch | None:
        """None while the node may serve this watch; else the batch that ends the stream."""
        err = core.check_read(core.epoch if epoch is None else epoch, now)
        if err is None and self.end and self.end <= self.start:
            err = Error(Code.INVALID_ARGUMENT, "the range is empty: end must be above start", core.epoch)
        if err is None:
            return None
        self.done = True
        return WatchBatch(err, committed_seq=self.sent_through)

    def next(self, history: WatchHistory, heartbeat: bool = False, max_changes: int = BATCH_CHANGES,
             max_bytes: int = BATCH_BYTES) -> WatchBatch | None:
        """The next batch to send: changes not yet sent, or COMPACTED (which ends the stream), or with
        `heartbeat` an empty batch carrying the position when there is nothing new; else None."""
        if self.done:
            return None
        if self.sent_through < history.floor:
            self.done = True
            return WatchBatch(
                Error(Code.COMPACTED, f"changes after {self.sent_through} are no longer kept here; "
                                      f"the oldest version to resume after is {history.floor}"),
                committed_seq=self.sent_through, compact_version=history.floor)
        got = history.read(self.sent_through, self.start, self.end, max_changes, max_bytes)
        self.sent_through = got.through
        if got.changes or heartbeat:
            return WatchBatch(Error(), got.changes, self.sent_through)
        return None
