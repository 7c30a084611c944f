"""The Raft log as one sequence: durable entries in `RaftStorage` followed by unstable ones.

Entries the core has accepted but the shell has not yet persisted are *unstable*; they live here
until `stable_to` is called after the shell's sync. A snapshot received from the leader is
likewise unstable until installed. Reads (`term`, `slice`) see the combined log, so the core never
waits on the disk to make a decision — but nothing it sends depends on unstable data, because the
shell persists a Ready's entries before sending that Ready's messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from keychain.coordinator.log import Entry, RaftStorage, Snapshot, StorageError


class LogError(Exception):
    """A change to the log would break a Raft invariant (e.g. rewrite a committed entry)."""


@dataclass
class RaftLog:
    storage: RaftStorage
    committed: int = 0
    applied: int = 0
    unstable: list[Entry] = field(default_factory=list)  # consecutive, starting at `offset`
    offset: int = 0
    pending_snapshot: Snapshot | None = None  # received, not yet installed by the shell

    def __post_init__(self) -> None:
        self.offset = self.storage.last_index() + 1
        self.applied = self.storage.snapshot().index
        self.committed = max(self.committed, self.applied)

    # ---- reading ----

    def snapshot(self) -> Snapshot:
        return self.pending_snapshot if self.pending_snapshot is not None else self.storage.snapshot()

    def first_index(self) -> int:
        if self.pending_snapshot is not None:
            return self.pending_snapshot.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        if self.unstable:
            return self.unstable[-1].index
        if self.pending_snapshot is not None:
            return self.pending_snapshot.index
        return self.storage.last_index()

    def last_term(self) -> int:
        term = self.term(self.last_index())
        assert term is not None, "the last index always has a known term"
        return term

    def term(self, index: int) -> int | None:
        """The term of the entry at `index`, or None if it is compacted away or beyond the log."""
        if self.unstable and index >= self.offset:
            if index > self.unstable[-1].index:
                return None
            return self.unstable[index - self.offset].term
        snap = self.pending_snapshot
        if snap is not None:
            return snap.term if index == snap.index else None
        try:
            return self.storage.term(index)
        except StorageError:
            return None

    def matches(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def slice(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry] | None:
        """Entries lo..hi-1 (at least one if any, then up to max_bytes); None if lo is compacted."""
        if lo >= hi:
            return []
        if lo < self.first_index():
            return None
        out: list[Entry] = []
        stable_hi = min(hi, self.offset)
        if lo < stable_hi:
            try:
                out = self.storage.entries(lo, stable_hi, max_bytes)
            except StorageError:
                return None
            if len(out) < stable_hi - lo:  # the byte limit cut it short
                return out
        if hi > self.offset:
            start = max(lo, self.offset)
            out.extend(self.unstable[start - self.offset : hi - self.offset])
        if max_bytes is not None:
            out = _limit(out, max_bytes)
        return out

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a log ending at (last_index, last_term) is at least as current as ours (§5.4.1)."""
        ours = self.last_term()
        return last_term > ours or (last_term == ours and last_index >= self.last_index())

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The last (index, term) at or below `index` whose term is <= `term`.

        Used for fast backtracking: every entry between it and `index` has a larger term than the
        other side's, so none of them can match and the next probe can skip them all.
        """
        index = min(index, self.last_index())
        while index > 0:
            t = self.term(index)
            if t is None:  # compacted: everything below is committed and matches
                break
            if t <= term:
                return index, t
            index -= 1
        return index, self.term(index) or 0

    def next_committed_entries(self, max_bytes: int | None = None) -> list[Entry]:
        lo = max(self.applied + 1, self.first_index())
        if self.committed < lo:
            return []
        ents = self.slice(lo, self.committed + 1, max_bytes)
        return ents or []

    # ---- changing ----

    def append(self, entries: list[Entry]) -> None:
        """Append entries, replacing any suffix they overlap (never a committed one)."""
        if not entries:
            return
        first = entries[0].index
        if first <= self.committed:
            raise LogError(f"refusing to overwrite committed entry {first} (committed {self.committed})")
        if first > self.last_index() + 1:
            raise LogError(f"gap: appending {first} after last index {self.last_index()}")
        if first >= self.offset:
            del self.unstable[first - self.offset :]
        else:
            # Truncating into the durable part: the unstable suffix restarts at `first`, and the
            # shell's append replaces the durable suffix from there (storage contract).
            self.unstable = []
            self.offset = first
        if not self.unstable:
            self.offset = first
        self.unstable.extend(entries)

    def maybe_append(self, prev_index: int, prev_term: int, entries: list[Entry]) -> int | None:
        """The AppendEntries consistency check; the index of the last new entry, or None if refused."""
        if not self.matches(prev_index, prev_term):
            return None
        for i, e in enumerate(entries):
            existing = self.term(e.index)
            if existing is None and e.index <= self.last_index():
                continue  # compacted (hence committed and identical)
            if existing != e.term:
                self.append(entries[i:])
                break
        return prev_index + len(entries)

    def commit_to(self, index: int) -> bool:
        if index <= self.committed:
            return False
        if index > self.last_index():
            raise LogError(f"commit {index} is beyond the last index {self.last_index()}")
        self.committed = index
        return True

    def restore(self, snap: Snapshot) -> None:
        """Replace the log by a snapshot received from the leader."""
        self.pending_snapshot = snap
        self.unstable = []
        self.offset = snap.index + 1
        self.committed = snap.index

    def stable_to(self, index: int, term: int) -> None:
        """The shell persisted entries through `index` (of `term`)."""
        if not self.unstable or index < self.offset or self.term(index) != term:
            return  # rewritten since that Ready was taken; the new entries are still unstable
        del self.unstable[: index - self.offset + 1]
        self.offset = index + 1

    def snapshot_installed(self, index: int) -> None:
        if self.pending_snapshot is not None and self.pending_snapshot.index == index:
            self.pending_snapshot = None

    def persisted_index(self) -> int:
        """The last index whose entry (and everything before it) is durable."""
        if self.pending_snapshot is not None:
            return 0
        return min(self.offset - 1, self.storage.last_index())


def _limit(entries: list[Entry], max_bytes: int) -> list[Entry]:
    kept: list[Entry] = []
    size = 0
    for e in entries:
        size += len(e.data) + 16
        if kept and size > max_bytes:
            break
        kept.append(e)
    return kept
