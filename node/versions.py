"""The chain node's storage as the core sees it: persist records, the `VersionStore` protocol, and
an in-memory store.

The core never does I/O. It reads committed data through the read methods of `VersionStore` and
hands the shell, in `Ready.persist`, the records that change it. The shell applies them with
`store.apply(records)`, makes them durable with `store.sync()` (one fsync for the whole list: group
commit), and only then sends that Ready's messages and replies. Two implementations obey this
contract exactly:

- `MemoryVersionStore` (here): scripted tests and the deterministic simulator.
- the RocksDB store of the node shell (`keychain.node.storage`).

What a store holds
- The log: entries `log_start+1 .. last_seq` (consecutive seqs). Entries at or below `log_start` were
  trimmed (or replaced by a state transfer). `committed_seq` is the node's commit point, with
  `log_start <= committed_seq <= last_seq`.
- Versions: per key, at most one *clean* version (committed, the newest committed one this node
  holds) and any number of *dirty* versions (seq > the clean one, not yet known committed). A
  version is (seq, tombstone, value); a tombstone is a delete and reads as absent. Tombstones are
  kept as clean versions until `CollectGarbage` drops them (the core's rule says when), so until then
  a read of a deleted key names the delete.
- History: the versions a commit superseded, each with the seq of the version that superseded it,
  until compacted. A range read at snapshot S needs, per key, the newest version <= S: the clean
  one if it is <= S, else the history's; a version superseded at c is needed by the snapshots
  below c only, so once `CompactHistory(through)` dropped those with c <= through, every snapshot
  S >= through still reads exactly. A tombstone is collected only at or below that point (the
  core's one garbage-collection rule), when the versions it superseded are gone already.
- Outcomes: request id -> RequestOutcome(seq, kind, current_version) for every entry with a
  non-empty request id, until forgotten (the deduplication window).
- The chain configuration last given to the node (its epoch), or None.

Records (applied in list order; each is all-or-nothing in a durable store):
- `AppendEntries(entries)`: entries[0].seq == last_seq + 1, consecutive. Each goes into the log; a PUT
  or DELETE entry also becomes a dirty version of its key, a TXN entry one of each key it writes
  (`messages.entry_versions`), unless the key's clean version is already at or above that seq
  (possible after a state transfer, whose keys may be newer than its point); a NOOP makes no
  version. Each non-empty request id records its outcome. last_seq advances.
- `Commit(through_seq)`: committed_seq <= through_seq <= last_seq. For every key written by a log
  entry in (committed_seq, through_seq], its newest stored version <= through_seq becomes clean if
  newer than the clean one; the clean one and the dirty ones it replaces go to the history, each
  superseded at the seq of the next of them. committed_seq advances.
- `CompactHistory(through_seq)`: history versions superseded at a seq <= through_seq dropped.
- `Truncate(after_seq)`: committed_seq <= after_seq. Log entries, dirty versions and outcomes with
  seq > after_seq are dropped; last_seq = after_seq. (A node rejoining as syncing drops writes that
  were never committed, so its history is again a prefix of the chain's.)
- `TrimLog(through_seq)`: log_start <= through_seq <= committed_seq; entries <= through_seq dropped.
- `ForgetOutcomes(through_seq)`: outcomes with seq <= through_seq dropped.
- `InstallKeys(keys, outcomes, sweep)`: a state-transfer chunk. Each key's version becomes its clean
  version if newer than the clean one it has (older versions dropped, none kept in the history);
  outcomes are added. `installed_through()` becomes the newest version ever installed, if newer.
  With `sweep = (lo, hi)`, the clean versions and the history of keys in (lo, hi] (None: unbounded)
  that are not among `keys` are dropped first: the sender holds nothing for them (never written, or
  a delete it already collected), so a receiver with older data does not keep a key the chain
  deleted, nor serve a snapshot from versions superseded by that delete.
- `CollectGarbage(through_seq)`: through_seq <= committed_seq. Every clean tombstone with version
  <= through_seq is dropped (the key then reads as never written).
- `ResetLog(through_seq)`: the last record of a state transfer. The whole log and every dirty version
  are dropped (the history is kept); log_start = committed_seq = last_seq = through_seq.
- `SaveConfig(config)`: the chain configuration (and so the epoch) the node now follows.

Read methods (see `VersionStore`) reflect every record applied so far, durable or not.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from keychain.node.messages import (
    ChainConfig,
    Entry,
    KeyVersion,
    RequestOutcome,
    entry_keys,
    entry_versions,
    outcome_of,
)


class StoreError(Exception):
    """A record cannot be applied as asked (a gap, a trimmed range, a broken invariant)."""


class StorageFull(Exception):
    """`apply` wrote none of the records it was given and cannot now (no space left): try again later.
    The node holds the Ready meanwhile (`keychain.node.driver`)."""


# ---- persist records ----


@dataclass(frozen=True, slots=True)
class AppendEntries:
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class Commit:
    through_seq: int


@dataclass(frozen=True, slots=True)
class Truncate:
    after_seq: int


@dataclass(frozen=True, slots=True)
class TrimLog:
    through_seq: int


@dataclass(frozen=True, slots=True)
class ForgetOutcomes:
    through_seq: int


@dataclass(frozen=True, slots=True)
class CompactHistory:
    through_seq: int


@dataclass(frozen=True, slots=True)
class InstallKeys:
    keys: tuple[KeyVersion, ...]
    outcomes: tuple[RequestOutcome, ...] = ()
    sweep: tuple[bytes | None, bytes | None] | None = None  # (lo, hi]: drop clean keys there not in `keys`


@dataclass(frozen=True, slots=True)
class CollectGarbage:
    through_seq: int


@dataclass(frozen=True, slots=True)
class ResetLog:
    through_seq: int


@dataclass(frozen=True, slots=True)
class SaveConfig:
    config: ChainConfig


Record = (AppendEntries | Commit | Truncate | TrimLog | ForgetOutcomes | CompactHistory | InstallKeys | ResetLog
          | SaveConfig | CollectGarbage)


def in_sweep(key: bytes, sweep: tuple[bytes | None, bytes | None]) -> bool:
    """Whether `key` lies in the sweep range (lo, hi] of an InstallKeys record (None: unbounded)."""
    lo, hi = sweep
    return (lo is None or key > lo) and (hi is None or key <= hi)


@dataclass(frozen=True, slots=True)
class StoreState:
    last_seq: int = 0
    committed_seq: int = 0
    log_start: int = 0  # entries log_start+1 .. last_seq are retained
    config: ChainConfig | None = None


class VersionStore(Protocol):
    def state(self) -> StoreState: ...

    def clean(self, key: bytes) -> KeyVersion | None:
        """The key's clean version (a tombstone included), or None if it has none."""
        ...

    def version(self, key: bytes, seq: int) -> KeyVersion | None:
        """A stored version of the key, clean or dirty, or None."""
        ...

    def entries(self, lo: int, hi: int) -> list[Entry]:
        """Log entries lo..hi inclusive; StoreError unless log_start < lo and hi <= last_seq."""
        ...

    def outcome(self, request_id: str) -> RequestOutcome | None: ...

    def scan_clean(self, after: bytes | None, limit: int) -> list[KeyVersion]:
        """Clean versions (tombstones included) of keys > `after` in byte order, at most `limit`."""
        ...

    def scan_outcomes(self, after: str | None, limit: int) -> list[RequestOutcome]:
        """Remembered outcomes with request id > `after` in string order, at most `limit`."""
        ...

    def scan_at(self, start: bytes, end: bytes, snapshot: int) -> Iterator[tuple[bytes, KeyVersion | None]]:
        """Every key in [start, end) (end empty: unbounded) with a clean version, in byte order, with its
        newest version <= `snapshot` from the clean one and the history (None: none held)."""
        ...

    def key_count(self) -> int:
        """Keys whose clean version is a value (not a tombstone)."""
        ...

    def installed_through(self) -> int:
        """The newest version a state transfer ever installed (0: none): the history holds nothing
        older of the keys it installed, so no snapshot below it is readable."""
        ...

    def apply(self, records: Iterable[Record]) -> None: ...

    def sync(self) -> None: ...


@dataclass
class MemoryVersionStore:
    """VersionStore held in memory: exact semantics of the contract, no durability."""

    _log: dict[int, Entry] = field(default_factory=dict)
    _log_start: int = 0
    _last: int = 0
    _committed: int = 0
    _clean: dict[bytes, KeyVersion] = field(default_factory=dict)
    _dirty: dict[bytes, dict[int, KeyVersion]] = field(default_factory=dict)
    _outcomes: dict[str, RequestOutcome] = field(default_factory=dict)
    _config: ChainConfig | None = None
    # key -> [(version, superseded at)], ascending by version
    _history: dict[bytes, list[tuple[KeyVersion, int]]] = field(default_factory=dict)
    _installed_through: int = 0

    # ---- reads ----

    def state(self) -> StoreState:
        return StoreState(self._last, self._committed, self._log_start, self._config)

    def clean(self, key: bytes) -> KeyVersion | None:
        return self._clean.get(key)

    def version(self, key: bytes, seq: int) -> KeyVersion | None:
        clean = self._clean.get(key)
        if clean is not None and clean.version == seq:
            return clean
        return self._dirty.get(key, {}).get(seq)

    def entries(self, lo: int, hi: int) -> list[Entry]:
        if lo <= self._log_start:
            raise StoreError(f"seq {lo} is trimmed (log starts after {self._log_start})")
        if hi > self._last:
            raise StoreError(f"seq {hi} is beyond the last seq {self._last}")
        return [self._log[s] for s in range(lo, hi + 1)]

    def outcome(self, request_id: str) -> RequestOutcome | None:
        return self._outcomes.get(request_id)

    def scan_clean(self, after: bytes | None, limit: int) -> list[KeyVersion]:
        keys = sorted(k for k in self._clean if after is None or k > after)
        return [self._clean[k] for k in keys[:limit]]

    def scan_outcomes(self, after: str | None, limit: int) -> list[RequestOutcome]:
        ids = sorted(r for r in self._outcomes if after is None or r > after)
        return [self._outcomes[r] for r in ids[:limit]]

    def scan_at(self, start: bytes, end: bytes, snapshot: int) -> Iterator[tuple[bytes, KeyVersion | None]]:
        for key in sorted(k for k in self._clean if k >= start and (not end or k < end)):
            clean = self._clean[key]
            if clean.version <= snapshot:
                yield key, clean
                continue
            older = [kv for kv, _ in self._history.get(key, ()) if kv.version <= snapshot]
            yield key, (older[-1] if older else None)

    def key_count(self) -> int:
        return sum(1 for v in self._clean.values() if not v.tombstone)

    def installed_through(self) -> int:
        return self._installed_through

    def history_versions(self) -> dict[bytes, list[int]]:
        """For tests: the superseded versions kept per key."""
        return {k: [kv.version for kv, _ in v] for k, v in self._history.items() if v}

    def dirty_versions(self) -> dict[bytes, list[int]]:
        """For tests: the dirty seqs held per key."""
        return {k: sorted(v) for k, v in self._dirty.items() if v}

    # ---- writes ----

    def apply(self, records: Iterable[Record]) -> None:
        for record in records:
            self._apply(record)

    def sync(self) -> None:
        return None

    def _apply(self, record: Record) -> None:
        match record:
            case AppendEntries(entries):
                self._append(entries)
            case Commit(through):
                self._commit(through)
            case Truncate(after):
                self._truncate(after)
            case TrimLog(through):
                if not self._log_start <= through <= self._committed:
                    raise StoreError(f"cannot trim the log to {through}: log_start {self._log_start}, "
                                     f"committed {self._committed}")
                for s in range(self._log_start + 1, through + 1):
                    self._log.pop(s, None)
                self._log_start = through
            case ForgetOutcomes(through):
                for rid in [r for r, o in self._outcomes.items() if o.seq <= through]:
                    del self._outcomes[rid]
            case CompactHistory(through):
                for key in list(self._history):
                    kept = [(kv, c) for kv, c in self._history[key] if c > through]
                    if kept:
                        self._history[key] = kept
                    else:
                        del self._history[key]
            case InstallKeys(keys, outcomes, sweep):
                if sweep is not None:
                    sent = {kv.key for kv in keys}
                    for key in [k for k in self._clean if in_sweep(k, sweep) and k not in sent]:
                        del self._clean[key]
                    for key in [k for k in self._history if in_sweep(k, sweep) and k not in sent]:
                        del self._history[key]
                for kv in keys:
                    self._make_clean(kv)
                    self._installed_through = max(self._installed_through, kv.version)
                for o in outcomes:
                    self._outcomes.setdefault(o.request_id, o)
            case ResetLog(through):
                if through < self._committed:
                    raise StoreError(f"cannot reset the log to {through} below the commit point {self._committed}")
                self._log.clear()
                self._dirty.clear()
                self._log_start = self._committed = self._last = through
            case SaveConfig(config):
                self._config = config
            case CollectGarbage(through):
                if through > self._committed:
                    raise StoreError(f"cannot collect through {through} above the commit point {self._committed}")
                for key in [k for k, v in self._clean.items() if v.tombstone and v.version <= through]:
                    del self._clean[key]
            case _:
                raise StoreError(f"unknown record {record!r}")

    def _append(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        if entries[0].seq != self._last + 1:
            raise StoreError(f"gap: appending seq {entries[0].seq} after last seq {self._last}")
        for prev, nxt in itertools.pairwise(entries):
            if nxt.seq != prev.seq + 1:
                raise StoreError("appended entries are not consecutive")
        for e in entries:
            self._log[e.seq] = e
            for kv in entry_versions(e):
                clean = self._clean.get(kv.key)
                if clean is None or clean.version < e.seq:
                    self._dirty.setdefault(kv.key, {})[e.seq] = kv
            if e.request_id:
                self._outcomes[e.request_id] = outcome_of(e)
        self._last = entries[-1].seq

    def _commit(self, through: int) -> None:
        if not self._committed <= through <= self._last:
            raise StoreError(f"cannot commit through {through}: committed {self._committed}, last {self._last}")
        touched = {key for s in range(self._committed + 1, through + 1) for key in entry_keys(self._log[s])}
        for key in touched:
            dirty = self._dirty.get(key, {})
            committed = sorted(s for s in dirty if s <= through)
            if not committed:
                continue
            previous = self._clean.get(key)
            for s in committed:
                if previous is not None:
                    self._remember(previous, s)
                previous = dirty[s]
            self._make_clean(dirty[committed[-1]])
        self._committed = through

    def _remember(self, kv: KeyVersion, superseded_at: int) -> None:
        versions = self._history.setdefault(kv.key, [])
        bisect.insort(versions, (kv, superseded_at), key=lambda item: item[0].version)

    def _make_clean(self, kv: KeyVersion) -> None:
        clean = self._clean.get(kv.key)
        if clean is not None and clean.version >= kv.version:
            return
        self._clean[kv.key] = kv
        dirty = self._dirty.get(kv.key)
        if dirty:
            for s in [s for s in dirty if s <= kv.version]:
                del dirty[s]
            if not dirty:
                del self._dirty[kv.key]

    def _truncate(self, after: int) -> None:
        if after < self._committed:
            raise StoreError(f"cannot truncate to {after} below the commit point {self._committed}")
        for s in range(after + 1, self._last + 1):
            self._log.pop(s, None)
        for key in list(self._dirty):
            versions = self._dirty[key]
            for s in [s for s in versions if s > after]:
                del versions[s]
            if not versions:
                del self._dirty[key]
        for rid in [r for r, o in self._outcomes.items() if o.seq > after]:
            del self._outcomes[rid]
        self._last = min(self._last, after)
