"""A chain node's log above its store's commit point, in memory, and its data as reads see it.

The store holds the dataset: every clean (committed) version, and the retained log. The entries above
the store's commit point are few (the in-flight window of the chain, not the dataset), and every
write, read and forwarded batch asks about them, so the core keeps them here, indexed by key and by
request id, and reads the store below them. `ChainCore` owns the commit point, the last seq and
the store's records; this module keeps the entries and answers questions about them, as the Raft
log (`keychain.coordinator.raft_log`) does for the coordinator.
"""

from __future__ import annotations

from keychain.node.messages import (
    Entry,
    EntryKind,
    KeyVersion,
    RequestOutcome,
    entry_keys,
    entry_versions,
    outcome_of,
)
from keychain.node.versions import VersionStore


class UncommittedLog:
    """The entries `low` .. the node's last seq, consecutive, above the commit point the store holds
    (`low` - 1). Appending, truncating and forgetting keep the two indexes in step with the entries."""

    def __init__(self, store: VersionStore, low: int) -> None:
        self.store = store
        # The first seq held here: the store's commit point + 1. Entries below it are in the store.
        self.low = low
        self._entries: dict[int, Entry] = {}
        self._by_key: dict[bytes, list[int]] = {}  # seqs of the key's PUT and DELETE entries, ascending
        self._by_request: dict[str, int] = {}  # request id -> the seq of its entry

    # ---- changes ----

    def add(self, e: Entry) -> None:
        """Hold `e`, the entry after the last one held."""
        self._entries[e.seq] = e
        for key in entry_keys(e):
            self._by_key.setdefault(key, []).append(e.seq)
        if e.request_id:
            self._by_request[e.request_id] = e.seq

    def forget_through(self, seq: int) -> None:
        """The store now holds `seq` and everything before it as committed: drop them from memory."""
        # Consecutive seqs from `low` up: walk only the part being dropped.
        for s in range(self.low, seq + 1):
            e = self._entries.pop(s, None)
            if e is not None:
                self._unindex(e)
        self.low = max(self.low, seq + 1)

    def drop_after(self, after: int) -> None:
        """Remove every entry above `after` (a truncation of uncommitted entries)."""
        for s in [s for s in self._entries if s > after]:
            self._unindex(self._entries.pop(s))

    def restart_at(self, through: int) -> None:
        """Drop every entry held: the store's commit point is now `through` (a state transfer was installed)."""
        self._entries.clear()
        self._by_key.clear()
        self._by_request.clear()
        self.low = through + 1

    def _unindex(self, e: Entry) -> None:
        for key in entry_keys(e):
            seqs = self._by_key.get(key)
            if not seqs:
                continue
            if seqs[0] == e.seq:  # forgotten in seq order: the key's oldest seq
                del seqs[0]
            elif e.seq in seqs:  # dropped from the top (a truncation)
                seqs.remove(e.seq)
            if not seqs:
                del self._by_key[key]
        if self._by_request.get(e.request_id) == e.seq:
            del self._by_request[e.request_id]

    # ---- reads ----

    def held(self) -> dict[int, Entry]:
        """The entries held, by seq (a copy)."""
        return dict(self._entries)

    def entries(self, lo: int, hi: int) -> list[Entry]:
        """Entries `lo` .. `hi`: from the store's retained log below `low`, from memory above."""
        out: list[Entry] = []
        if lo < self.low:
            out = self.store.entries(lo, min(hi, self.low - 1))
            lo = self.low
        out.extend(self._entries[s] for s in range(lo, hi + 1))
        return out

    def find_request(self, request_id: str) -> RequestOutcome | None:
        """The outcome of the entry sequenced for `request_id`, held here or remembered by the store."""
        seq = self._by_request.get(request_id)
        if seq is not None:
            return outcome_of(self._entries[seq])
        return self.store.outcome(request_id)

    def latest(self, key: bytes, committed_seq: int | None) -> KeyVersion | None:
        """The key's newest version (a tombstone included), or None if it has none. With
        `committed_seq`, the newest clean one: at or below it."""
        stored = self.store.clean(key)
        for s in reversed(self._by_key.get(key, ())):
            if committed_seq is not None and s > committed_seq:
                continue
            if stored is None or s > stored.version:
                return _version_in(self._entries[s], key)
            break
        return stored

    def at(self, key: bytes, snapshot: int) -> KeyVersion | None:
        """The key's newest version held here at or below `snapshot`, or None."""
        for s in reversed(self._by_key.get(key, ())):
            if s <= snapshot:
                return _version_in(self._entries[s], key)
        return None

    def keys_between(self, start: bytes, end: bytes) -> list[bytes]:
        """The keys written by the entries held, in [start, end) (end empty: unbounded), sorted."""
        return sorted(k for k in self._by_key if k >= start and (not end or k < end))

    def is_dirty(self, key: bytes, committed_seq: int) -> bool:
        """Whether the key's newest version is above `committed_seq`."""
        seqs = self._by_key.get(key)
        return bool(seqs) and seqs[-1] > committed_seq

    def version(self, key: bytes, seq: int) -> KeyVersion | None:
        """The key's version `seq`, if this node holds it (in memory or in the store)."""
        e = self._entries.get(seq)
        if e is not None:
            kv = _version_in(e, key)
            if kv is not None:
                return kv
        return self.store.version(key, seq)


def _version_in(e: Entry, key: bytes) -> KeyVersion | None:
    """The version entry `e` makes of `key`, if it writes the key."""
    if e.kind == EntryKind.TXN:
        return next((kv for kv in entry_versions(e) if kv.key == key), None)
    if e.kind == EntryKind.NOOP or e.key != key:
        return None
    return KeyVersion(key, e.seq, e.kind == EntryKind.DELETE, e.value)
