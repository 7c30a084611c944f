"""The Raft log as the core sees it: entry and state types, the storage protocol, and an in-memory store.

The Raft core never does I/O. It reads its log through `RaftStorage` and hands the shell what to
persist in `Ready`; the shell writes it through the same object's mutating methods and syncs before
sending the messages of that `Ready`. Two implementations obey this contract exactly:

- `MemoryStorage` (here): tests and the deterministic simulator.
- `keychain.coordinator.storage.FileStorage`: an fsynced, checksummed append-only log on disk.

Indexes start at 1. The log holds entries (first_index .. last_index); everything at or below
`snapshot().index` has been compacted into the snapshot, and `term(snapshot().index)` is still known.

Contract of the mutating methods (all durable once `sync()` returns; MemoryStorage's `sync` is a no-op):
- `append(entries)`: entries are consecutive; if the first one's index is <= last_index, the stored
  suffix from that index on is dropped first (a conflicting suffix is replaced, never merged).
  Appending with a gap after last_index is an error.
- `set_hard_state(hs)`: term, vote and commit index; written before any message that depends on them.
- `apply_snapshot(snap)`: replaces the whole log with the snapshot (used by InstallSnapshot).
- `compact(snap)`: records the snapshot and drops entries up to and including `snap.index`
  (the entries after it are kept); snap.index must be <= last_index and > the current snapshot's index.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol


class EntryType(IntEnum):
    NORMAL = 0  # a state machine command (the chain registry)
    CONF_CHANGE = 1  # a change of the coordinator cluster's own membership
    NOOP = 2  # appended by a new leader to commit entries of earlier terms


@dataclass(frozen=True, slots=True)
class Entry:
    index: int
    term: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class HardState:
    term: int = 0
    vote: str = ""  # "" = voted for no one in this term
    commit: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    index: int = 0  # last index the snapshot covers (0 = no snapshot)
    term: int = 0  # term of that entry
    voters: tuple[str, ...] = ()
    learners: tuple[str, ...] = ()
    data: bytes = b""  # the state machine's own snapshot (the chain registry)


class StorageError(Exception):
    """The log cannot be read or extended as asked (a gap, a compacted index, corruption)."""


class RaftStorage(Protocol):
    def hard_state(self) -> HardState: ...
    def snapshot(self) -> Snapshot: ...
    def first_index(self) -> int: ...
    def last_index(self) -> int: ...
    def term(self, index: int) -> int: ...
    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]: ...
    def append(self, entries: list[Entry]) -> None: ...
    def set_hard_state(self, hs: HardState) -> None: ...
    def apply_snapshot(self, snap: Snapshot) -> None: ...
    def compact(self, snap: Snapshot) -> None: ...
    def sync(self) -> None: ...


@dataclass
class MemoryStorage:
    """RaftStorage held in memory: exact semantics of the contract, no durability."""

    _hard: HardState = field(default_factory=HardState)
    _snap: Snapshot = field(default_factory=Snapshot)
    _entries: list[Entry] = field(default_factory=list)

    def hard_state(self) -> HardState:
        return self._hard

    def snapshot(self) -> Snapshot:
        return self._snap

    def first_index(self) -> int:
        return self._snap.index + 1

    def last_index(self) -> int:
        return self._snap.index + len(self._entries)

    def term(self, index: int) -> int:
        if index == self._snap.index:
            return self._snap.term
        if index < self._snap.index:
            raise StorageError(f"index {index} is compacted (snapshot at {self._snap.index})")
        if index > self.last_index():
            raise StorageError(f"index {index} is beyond the last index {self.last_index()}")
        return self._entries[index - self._snap.index - 1].term

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries lo..hi-1; with max_bytes, at least one and then as many as fit."""
        if lo < self.first_index():
            raise StorageError(f"index {lo} is compacted (snapshot at {self._snap.index})")
        if hi > self.last_index() + 1:
            raise StorageError(f"index {hi - 1} is beyond the last index {self.last_index()}")
        base = self._snap.index + 1
        out = self._entries[lo - base : hi - base]
        if max_bytes is None:
            return list(out)
        kept: list[Entry] = []
        size = 0
        for e in out:
            size += len(e.data) + 16
            if kept and size > max_bytes:
                break
            kept.append(e)
        return kept

    def append(self, entries: list[Entry]) -> None:
        if not entries:
            return
        first = entries[0].index
        for prev, nxt in itertools.pairwise(entries):
            if nxt.index != prev.index + 1:
                raise StorageError("appended entries are not consecutive")
        if first <= self._snap.index:
            raise StorageError(f"cannot append at {first}: compacted up to {self._snap.index}")
        if first > self.last_index() + 1:
            raise StorageError(f"gap: appending {first} after last index {self.last_index()}")
        del self._entries[first - self._snap.index - 1 :]
        self._entries.extend(entries)

    def set_hard_state(self, hs: HardState) -> None:
        self._hard = hs

    def apply_snapshot(self, snap: Snapshot) -> None:
        self._snap = snap
        self._entries = []

    def compact(self, snap: Snapshot) -> None:
        if snap.index <= self._snap.index:
            raise StorageError(f"snapshot {snap.index} is not newer than {self._snap.index}")
        if snap.index > self.last_index():
            raise StorageError(f"cannot compact to {snap.index} beyond the last index {self.last_index()}")
        keep = self._entries[snap.index - self._snap.index :]
        self._snap = snap
        self._entries = keep

    def sync(self) -> None:
        return None
