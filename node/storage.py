"""The chain node's durable `VersionStore`: RocksDB through rocksdict, with group commit.

Semantics are exactly those of `keychain.node.versions.MemoryVersionStore` (its module docstring is
the contract); the tests run the same scenarios, and a stateful comparison, against both stores.

Group commit. `apply(records)` writes its records as one RocksDB WriteBatch without waiting for the
disk (the write-ahead log receives it, the memtable makes it readable at once); `sync()` makes
everything applied so far durable with ONE fsync of the write-ahead log. So a node that applies the
records of many client writes and then syncs pays one fsync for all of them. A crash before `sync()`
can lose a suffix of the unsynced batches, never a batch in part and never one out of order (the
log is replayed up to its first torn batch). A batch holds whole records, consecutive in apply
order, so what is lost is a suffix of whole records, newest first: what survives is always a state
the store has passed through, and nothing of it was announced to anyone before the sync returned.
A record that fails leaves the records before it in its list applied, as when each was written
alone: the batch up to it is written, then the error is raised. Records that scan a key range
(Truncate, ForgetOutcomes, ResetLog) write the batch gathered so far first, because range scans
read the database, not the batch; that splits a list into several batches, still of whole records.

Dirty index. The dirty versions of every key are also held in memory (`_DirtyKey`, rebuilt from
the store when it opens; their number is bounded by the uncommitted entries), with the seqs of the
dirty versions in seq order, so a Commit finds the keys it makes clean, their newest versions and
the versions to drop without reading the database.

Layout (one key space; the first byte names the kind of record):
    b"M"                            identity: JSON {format, node_id, chain}, written at creation
    b"S"                            counters: last_seq, committed_seq, log_start, live key count
    b"G"                            the saved ChainConfig (protobuf)
    b"I"                            the newest version a state transfer installed (absent: 0)
    b"l" + seq                      log entry (protobuf Entry)
    b"c" + key                      the key's clean version (protobuf KeyVersion)
    b"d" + len(key) + key + seq     a dirty version (protobuf KeyVersion)
    b"r" + request id               outcome of a request id (protobuf RequestOutcome)
    b"s" + seq + request id         the same outcomes ordered by seq, to forget or truncate by seq
    b"h" + len(key) + key + ~seq    a superseded version (protobuf KeyVersion); ~seq = 2**64-1-seq,
                                    so a forward seek finds the newest version <= a snapshot
    b"x" + superseded-at seq + len(key) + key + seq
                                    the same versions ordered by when they were superseded, to compact
    b"t" + seq + key                a clean tombstone of that version, to collect by seq (an entry
                                    whose key has a newer clean version since is stale, dropped when met)
Integers are big-endian so byte order is numeric order; request ids are UTF-8, whose byte order
is code-point order, the order of Python strings.

A data directory belongs to one node of one chain. Opening a directory of another node or chain,
a directory holding something other than a KeychainDB store, or a damaged database raises
`DataDirError` with a message saying which, so the node stops at start-up instead of serving an
empty or foreign store as the chain's data.
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import rocksdict
from keychain.node import wire
from keychain.node.messages import (
    ChainConfig,
    Entry,
    EntryKind,
    KeyVersion,
    Member,
    MemberState,
    RequestOutcome,
    entry_versions,
    outcome_of,
)
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
    StorageFull,
    StoreError,
    StoreState,
    TrimLog,
    Truncate,
    in_sweep,
)

from keychain.proto import chain_pb2

log = logging.getLogger(__name__)

FORMAT_VERSION = 1

_IDENTITY = b"M"
_COUNTERS = b"S"
_CONFIG = b"G"
_INSTALLED = b"I"
_LOG = b"l"
_CLEAN = b"c"
_DIRTY = b"d"
_OUTCOME = b"r"
_OUTCOME_BY_SEQ = b"s"
_HISTORY = b"h"
_HISTORY_BY_SUPERSEDED = b"x"
_MAX_U64 = (1 << 64) - 1
_TOMBSTONE_BY_SEQ = b"t"

# A wedged store (a write failed for want of space) is reopened at most this often: replaying its
# write-ahead log writes a table file, which may fail again while the disk is still full.
REOPEN_INTERVAL = 0.5

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_COUNTERS_FORMAT = struct.Struct(">QQQQ")

# Files a freshly formatted volume may hold before the node ever ran (ext4 creates lost+found).
_IGNORED_IN_EMPTY_DIR = {"lost+found"}


def _no_space(e: BaseException) -> bool:
    """Whether RocksDB failed for want of disk space (rocksdict raises a plain Exception with its status)."""
    return "No space left on device" in str(e) or (isinstance(e, OSError) and e.errno == 28)


class DataDirError(Exception):
    """The data directory cannot be used by this node; the message says why and what to do."""


# ---- encoding ----


def _seq(n: int) -> bytes:
    return _U64.pack(n)


def _prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with `prefix`."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        raise ValueError("prefix has no upper bound")
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _dirty_prefix(key: bytes) -> bytes:
    return _DIRTY + _U32.pack(len(key)) + key


def _history_prefix(key: bytes) -> bytes:
    return _HISTORY + _U32.pack(len(key)) + key


def _history_keys(key: bytes, version: int, superseded_at: int) -> tuple[bytes, bytes]:
    by_key = _history_prefix(key) + _seq(_MAX_U64 - version)
    by_superseded = _HISTORY_BY_SUPERSEDED + _seq(superseded_at) + _U32.pack(len(key)) + key + _seq(version)
    return by_key, by_superseded


def _encode_entry(e: Entry) -> bytes:
    return wire.entry_to_pb(e).SerializeToString()


def _decode_entry(data: bytes) -> Entry:
    return wire.entry_from_pb(chain_pb2.Entry.FromString(data))


def _encode_version(kv: KeyVersion) -> bytes:
    return chain_pb2.KeyVersion(
        key=kv.key, version=kv.version, tombstone=kv.tombstone, value=kv.value
    ).SerializeToString()


def _decode_version(data: bytes) -> KeyVersion:
    m = chain_pb2.KeyVersion.FromString(data)
    return KeyVersion(m.key, m.version, m.tombstone, m.value)


def _encode_outcome(o: RequestOutcome) -> bytes:
    return wire.outcome_to_pb(o).SerializeToString()


def _decode_outcome(data: bytes) -> RequestOutcome:
    return wire.outcome_from_pb(chain_pb2.RequestOutcome.FromString(data))


def _encode_config(c: ChainConfig) -> bytes:
    return chain_pb2.ChainConfig(
        chain=c.chain, epoch=c.epoch,
        members=[chain_pb2.Member(id=m.id, address=m.address, state=int(m.state)) for m in c.members],
    ).SerializeToString()


def _decode_config(data: bytes) -> ChainConfig:
    m = chain_pb2.ChainConfig.FromString(data)
    return ChainConfig(
        m.chain, m.epoch, tuple(Member(x.id, x.address, MemberState(x.state)) for x in m.members)
    )


def _outcome_keys(o: RequestOutcome) -> tuple[bytes, bytes]:
    rid = o.request_id.encode()
    return _OUTCOME + rid, _OUTCOME_BY_SEQ + _seq(o.seq) + rid


# ---- the writes of one apply() ----


class _Writes:
    """The writes of one `apply()` call, readable back before they are written.

    Point reads see earlier writes of the same call; the current record's writes are kept apart
    until it succeeds, so a failing record adds nothing to what is written. Range scans read the
    database only: a record that scans has the writes before it written first (`RocksVersionStore._flush`).
    Writes are gathered in dicts and put into a WriteBatch only when written: a key written twice
    goes into the batch once.
    """

    _DELETED = None

    def __init__(self, db: rocksdict.Rdict) -> None:
        self._db = db
        self.flushes = 0  # batches written to the database so far
        self.done: dict[bytes, bytes | None] = {}  # writes of the records that succeeded
        self.current: dict[bytes, bytes | None] = {}  # writes of the record being applied

    def get(self, key: bytes) -> bytes | None:
        if key in self.current:
            return self.current[key]
        if key in self.done:
            return self.done[key]
        return self._db.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.current[key] = value

    def delete(self, key: bytes) -> None:
        self.current[key] = self._DELETED

    def record_done(self) -> None:
        self.done.update(self.current)
        self.current = {}

    def batch(self) -> rocksdict.WriteBatch:
        """The succeeded records' writes as one WriteBatch (and forget them)."""
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in self.done.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self.done = {}
        return batch


@dataclass(slots=True)
class _DirtyKey:
    """A key's dirty versions, in seq order, and whether its clean version is a live value."""

    clean_live: bool  # the clean version exists and is not a tombstone
    versions: list[tuple[int, bool, bytes]]  # (seq, tombstone, encoded KeyVersion)
    clean: tuple[int, bytes] | None = None  # the clean version's seq and encoding: the history's next entry


class RocksVersionStore:
    """VersionStore on RocksDB. Open with the node's id and chain; `close()` when done."""

    def __init__(self, path: str | Path, node_id: str, chain: str) -> None:
        if not node_id or not chain:
            raise ValueError("a store needs a node id and a chain name")
        self.path = Path(path)
        self.node_id = node_id
        self.chain = chain
        self._db = self._open()
        self._wedged = False  # a write failed for want of space: reopen before the next one
        self._reopen_after = 0.0  # monotonic time before which no reopen is tried again
        self._unsynced = rocksdict.WriteOptions()
        self._unsynced.sync = False
        self._dirty: dict[bytes, _DirtyKey] = {}
        # (seq, key) of dirty versions in seq order; may name versions dropped since (by InstallKeys).
        self._uncommitted: deque[tuple[int, bytes]] = deque()
        try:
            self._load()
        except DataDirError:
            self.close()
            raise
        except Exception as e:  # a damaged table surfaces on the first reads
            self.close()
            raise DataDirError(f"data directory {self.path} is corrupt: {e}") from e

    # ---- opening ----

    def _options(self, create: bool) -> rocksdict.Options:
        opts = rocksdict.Options(raw_mode=True)
        opts.create_if_missing(create)
        opts.set_paranoid_checks(True)
        # Replay the write-ahead log up to its first damaged record: a torn unsynced tail is cut.
        opts.set_wal_recovery_mode(rocksdict.DBRecoveryMode.point_in_time())
        opts.set_keep_log_file_num(3)
        opts.enable_statistics()  # counts write-ahead log syncs: see `wal_syncs`
        # Bloom filters on whole keys, in the table files and the memtable: every appended entry looks
        # its request id up (a new one: a miss), and without a filter a miss reads an index and a data
        # block of every table file it could be in (about 8 us against 1 us with six files).
        tables = rocksdict.BlockBasedOptions()
        tables.set_bloom_filter(10, False)
        opts.set_block_based_table_factory(tables)
        opts.set_memtable_prefix_bloom_ratio(0.05)
        opts.set_memtable_whole_key_filtering(True)
        return opts

    def _open(self) -> rocksdict.Rdict:
        p = self.path
        if p.exists() and not p.is_dir():
            raise DataDirError(f"data directory {p} is not a directory")
        fresh = not p.exists() or not (set(x.name for x in p.iterdir()) - _IGNORED_IN_EMPTY_DIR)
        if not fresh and not (p / "CURRENT").exists():
            raise DataDirError(
                f"data directory {p} is not empty and holds no KeychainDB store; "
                "point --data-dir at an empty directory or at this node's own data"
            )
        try:
            return rocksdict.Rdict(str(p), self._options(create=fresh))
        except Exception as e:
            text = str(e)
            if "lock" in text.lower():
                raise DataDirError(f"data directory {p} is in use by another process: {text}") from e
            raise DataDirError(f"data directory {p} cannot be opened (corrupt database?): {text}") from e

    def _load(self) -> None:
        identity = self._db.get(_IDENTITY)
        if identity is None:
            if self._is_empty():
                self._format()
            else:
                raise DataDirError(
                    f"data directory {self.path} holds a RocksDB database that is not a KeychainDB "
                    "node's store; point --data-dir at an empty directory or at this node's own data"
                )
        else:
            self._check_identity(identity)
        counters = self._db.get(_COUNTERS)
        if counters is None or len(counters) != _COUNTERS_FORMAT.size:
            raise DataDirError(f"data directory {self.path} is corrupt: its counters record is missing or damaged")
        self._last, self._committed, self._log_start, self._live_keys = _COUNTERS_FORMAT.unpack(counters)
        raw_config = self._db.get(_CONFIG)
        self._config = None if raw_config is None else _decode_config(raw_config)
        self._load_dirty()
        log.info("store opened path=%s node=%s chain=%s last_seq=%d committed_seq=%d",
                 self.path, self.node_id, self.chain, self._last, self._committed)

    def _load_dirty(self) -> None:
        """Rebuild the in-memory dirty index from the stored dirty versions."""
        self._dirty = {}
        found: list[tuple[int, bytes]] = []
        for k, raw in self._scan(_DIRTY, _prefix_end(_DIRTY)):
            (n,) = _U32.unpack_from(k, 1)
            key = k[5 : 5 + n]
            (seq,) = _U64.unpack_from(k, 5 + n)
            d = self._dirty.get(key)
            if d is None:
                raw_clean = self._db.get(_CLEAN + key)
                clean = None if raw_clean is None else _decode_version(raw_clean)
                d = self._dirty[key] = _DirtyKey(clean is not None and not clean.tombstone, [],
                                                 None if clean is None else (clean.version, raw_clean))
            d.versions.append((seq, _decode_version(raw).tombstone, raw))
            found.append((seq, key))
        found.sort()
        self._uncommitted = deque(found)

    def _is_empty(self) -> bool:
        it = self._db.iter()
        it.seek_to_first()
        return not it.valid()

    def _format(self) -> None:
        """Write the identity of a new store, durably, before anything else can be written."""
        identity = {"format": FORMAT_VERSION, "node_id": self.node_id, "chain": self.chain}
        batch = rocksdict.WriteBatch(raw_mode=True)
        batch.put(_IDENTITY, json.dumps(identity, sort_keys=True).encode())
        batch.put(_COUNTERS, _COUNTERS_FORMAT.pack(0, 0, 0, 0))
        synced = rocksdict.WriteOptions()
        synced.sync = True
        self._db.write(batch, synced)
        log.info("store created path=%s node=%s chain=%s", self.path, self.node_id, self.chain)

    def _check_identity(self, raw: bytes) -> None:
        try:
            identity = json.loads(raw)
            fmt, node_id, chain = identity["format"], identity["node_id"], identity["chain"]
        except (ValueError, KeyError, TypeError) as e:
            raise DataDirError(f"data directory {self.path} is corrupt: unreadable identity record") from e
        if fmt != FORMAT_VERSION:
            raise DataDirError(
                f"data directory {self.path} has store format {fmt}; this version reads format {FORMAT_VERSION}"
            )
        if (node_id, chain) != (self.node_id, self.chain):
            raise DataDirError(
                f"data directory {self.path} belongs to node {node_id!r} of chain {chain!r}, "
                f"not to node {self.node_id!r} of chain {self.chain!r}"
            )

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def __enter__(self) -> RocksVersionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reads ----

    def state(self) -> StoreState:
        return StoreState(self._last, self._committed, self._log_start, self._config)

    def clean(self, key: bytes) -> KeyVersion | None:
        raw = self._db.get(_CLEAN + key)
        return None if raw is None else _decode_version(raw)

    def version(self, key: bytes, seq: int) -> KeyVersion | None:
        clean = self.clean(key)
        if clean is not None and clean.version == seq:
            return clean
        if seq < 0:
            return None
        raw = self._db.get(_dirty_prefix(key) + _seq(seq))
        return None if raw is None else _decode_version(raw)

    def entries(self, lo: int, hi: int) -> list[Entry]:
        if lo <= self._log_start:
            raise StoreError(f"seq {lo} is trimmed (log starts after {self._log_start})")
        if hi > self._last:
            raise StoreError(f"seq {hi} is beyond the last seq {self._last}")
        if hi < lo:
            return []
        out = [_decode_entry(v) for _, v in self._scan(_LOG + _seq(lo), _LOG + _seq(hi + 1))]
        if len(out) != hi - lo + 1:
            raise StoreError(f"log entries {lo}..{hi} are missing from the store")
        return out

    def outcome(self, request_id: str) -> RequestOutcome | None:
        raw = self._db.get(_OUTCOME + request_id.encode())
        return None if raw is None else _decode_outcome(raw)

    def scan_clean(self, after: bytes | None, limit: int) -> list[KeyVersion]:
        start = _CLEAN if after is None else _CLEAN + after + b"\x00"
        return [_decode_version(v) for _, v in self._scan(start, _prefix_end(_CLEAN), limit)]

    def scan_outcomes(self, after: str | None, limit: int) -> list[RequestOutcome]:
        start = _OUTCOME if after is None else _OUTCOME + after.encode() + b"\x00"
        return [_decode_outcome(v) for _, v in self._scan(start, _prefix_end(_OUTCOME), limit)]

    def scan_at(self, start: bytes, end: bytes, snapshot: int) -> Iterator[tuple[bytes, KeyVersion | None]]:
        upper = _CLEAN + end if end else _prefix_end(_CLEAN)
        for k, raw in self._scan(_CLEAN + start, upper):
            clean = _decode_version(raw)
            if clean.version <= snapshot:
                yield k[1:], clean
                continue
            prefix = _history_prefix(k[1:])
            older = next(self._scan(prefix + _seq(_MAX_U64 - snapshot), _prefix_end(prefix), 1), None)
            yield k[1:], None if older is None else _decode_version(older[1])

    def key_count(self) -> int:
        return self._live_keys

    def installed_through(self) -> int:
        raw = self._db.get(_INSTALLED)
        return 0 if raw is None else _U64.unpack(raw)[0]

    def history_versions(self) -> dict[bytes, list[int]]:
        """For tests: the superseded versions kept per key, ascending."""
        out: dict[bytes, list[int]] = {}
        for k, _ in self._scan(_HISTORY, _prefix_end(_HISTORY)):
            (n,) = _U32.unpack_from(k, 1)
            out.setdefault(k[5 : 5 + n], []).insert(0, _MAX_U64 - _U64.unpack_from(k, 5 + n)[0])
        return out

    def wal_syncs(self) -> int:
        """How many times RocksDB has synced the write-ahead log since the store was opened."""
        return self._ticker("rocksdb.wal.synced")

    def keys_skipped(self) -> int:
        """How many deleted or overwritten entries iterators have stepped over since opening."""
        return self._ticker("rocksdb.number.iter.skip")

    def _ticker(self, name: str) -> int:
        stats = self._db.property_value("rocksdb.options-statistics") or ""
        for line in stats.splitlines():
            if line.startswith(f"{name} COUNT"):
                return int(line.rsplit(":", 1)[1])
        return 0

    def dirty_versions(self) -> dict[bytes, list[int]]:
        """For tests: the dirty seqs held per key."""
        out: dict[bytes, list[int]] = {}
        for k, _ in self._scan(_DIRTY, _prefix_end(_DIRTY)):
            (n,) = _U32.unpack_from(k, 1)
            out.setdefault(k[5 : 5 + n], []).append(_U64.unpack_from(k, 5 + n)[0])
        return out

    def _bounded_iter(self, upper: bytes) -> rocksdict.RdictIter:
        """An iterator that ends before `upper`.

        The bound matters for speed, not only for correctness: making a version clean deletes the
        key's dirty versions, and without a bound a seek skips over all of those tombstones in
        the key space until the next live key (tens of milliseconds per seek once a node has
        taken a few hundred thousand writes); with it the seek stops at `upper`. Only an upper
        bound: rocksdict's `set_iterate_lower_bound` does not bound reverse seeks as RocksDB's
        does, so the code below never seeks backwards.
        """
        bound = rocksdict.ReadOptions()
        bound.set_iterate_upper_bound(upper)
        return self._db.iter(bound)

    def _scan(self, start: bytes, end: bytes, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Stored (key, value) pairs with start <= key < end, in key order."""
        if limit is not None and limit <= 0:
            return
        it = self._bounded_iter(end)
        it.seek(start)
        count = 0
        while it.valid():
            k = it.key()
            if k >= end:
                break
            yield k, it.value()
            count += 1
            if limit is not None and count >= limit:
                break
            it.next()

    # ---- writes ----

    def apply(self, records: Iterable[Record]) -> None:
        """Write `records` (not yet durable: see `sync`). Raises `StorageFull`, having written none of
        them, when the volume is full; the next call reopens the database first (RocksDB accepts no
        write after a failed append to its write-ahead log until it is reopened)."""
        if self._wedged:
            if time.monotonic() < self._reopen_after:
                raise StorageFull("the store waits to be reopened")
            self._reopen_after = time.monotonic() + REOPEN_INTERVAL
            self._reopen()
        w = _Writes(self._db)
        try:
            for record in records:
                self._apply(w, record)
                w.record_done()
            self._flush(w)
        except BaseException as e:
            # Write the records that succeeded; the in-memory state is then read back from the store,
            # which holds exactly those (or, if even that write failed, none of this call's).
            try:
                self._flush(w)
            except Exception as again:
                if not _no_space(again):
                    raise
            finally:
                self._reload()
            if _no_space(e):
                self._wedged = True
                if w.flushes == 0:
                    raise StorageFull(str(e)) from e
            raise

    def sync(self) -> None:
        """Make every applied record durable: one fsync of the write-ahead log."""
        self._db.flush_wal(True)

    @property
    def wedged(self) -> bool:
        """A write failed for want of space: the next `apply` reopens the database."""
        return self._wedged

    def compact(self) -> None:
        """Give space back: write the memtables out (their write-ahead logs are then deleted) and compact
        the whole key space, dropping what deletes and garbage collection left behind. Safe to run in a
        thread while the node writes; not while the store is wedged (see `apply`)."""
        self._db.flush()
        self._db.compact_range(None, None)

    def _flush(self, w: _Writes) -> None:
        if w.done:
            self._db.write(w.batch(), self._unsynced)
            w.flushes += 1

    def _reopen(self) -> None:
        """Reopen the database after a write failed for want of space: `StorageFull` while that fails.
        Everything written before the failure is in the write-ahead log and is replayed; replaying it
        writes a table file, so it needs room. Until it succeeds the database stays open read-only, so
        the node keeps serving reads."""
        try:
            self._db.close()
        except Exception as e:  # the writer's error is reported again on close; the files are released
            log.debug("closing the wedged store path=%s error=%r", self.path, str(e))
        try:
            self._db = rocksdict.Rdict(str(self.path), self._options(create=False))
        except Exception as e:
            self._db = rocksdict.Rdict(str(self.path), self._options(create=False),
                                       access_type=rocksdict.AccessType.read_only())
            if _no_space(e):
                raise StorageFull(str(e)) from e
            raise
        self._wedged = False
        self._reload()
        log.info("store reopened after the disk was full path=%s", self.path)

    def _reload(self) -> None:
        counters = self._db.get(_COUNTERS)
        self._last, self._committed, self._log_start, self._live_keys = _COUNTERS_FORMAT.unpack(counters)
        raw_config = self._db.get(_CONFIG)
        self._config = None if raw_config is None else _decode_config(raw_config)
        self._load_dirty()

    def _apply(self, w: _Writes, record: Record) -> None:
        # Counters change only when the record succeeds, so a failing record changes nothing.
        last, committed, log_start, live = self._last, self._committed, self._log_start, self._live_keys
        config = self._config
        match record:
            case AppendEntries(entries):
                last = self._append(w, entries)
            case Commit(through):
                live = self._commit(w, through)
                committed = through
            case Truncate(after):
                self._flush(w)
                self._truncate(w, after)
                last = min(last, after)
            case TrimLog(through):
                if not log_start <= through <= committed:
                    raise StoreError(f"cannot trim the log to {through}: log_start {log_start}, "
                                     f"committed {committed}")
                for s in range(log_start + 1, through + 1):
                    w.delete(_LOG + _seq(s))
                log_start = through
            case ForgetOutcomes(through):
                self._flush(w)
                for k, _ in self._scan(_OUTCOME_BY_SEQ, _OUTCOME_BY_SEQ + _seq(max(through + 1, 0))):
                    w.delete(k)
                    w.delete(_OUTCOME + k[9:])
            case CompactHistory(through):
                self._flush(w)
                end = _HISTORY_BY_SUPERSEDED + _seq(max(through + 1, 0))
                for k, _ in self._scan(_HISTORY_BY_SUPERSEDED, end):
                    w.delete(k)
                    (n,) = _U32.unpack_from(k, 9)
                    key = k[13 : 13 + n]
                    (version,) = _U64.unpack_from(k, 13 + n)
                    w.delete(_history_prefix(key) + _seq(_MAX_U64 - version))
            case InstallKeys(keys, outcomes, sweep):
                if sweep is not None:
                    live = self._sweep(w, sweep, {kv.key for kv in keys}, live)
                for kv in keys:
                    live = self._install(w, kv, live)
                newest = max((kv.version for kv in keys), default=0)
                raw = w.get(_INSTALLED)
                if newest > (0 if raw is None else _U64.unpack(raw)[0]):
                    w.put(_INSTALLED, _seq(newest))
                for o in outcomes:
                    by_id, by_seq = _outcome_keys(o)
                    if w.get(by_id) is None:
                        w.put(by_id, _encode_outcome(o))
                        w.put(by_seq, b"")
            case ResetLog(through):
                if through < committed:
                    raise StoreError(f"cannot reset the log to {through} below the commit point {committed}")
                self._flush(w)
                for k, _ in self._scan(_LOG, _prefix_end(_LOG)):
                    w.delete(k)
                for k, _ in self._scan(_DIRTY, _prefix_end(_DIRTY)):
                    w.delete(k)
                self._dirty = {}
                self._uncommitted = deque()
                log_start = committed = last = through
            case SaveConfig(new_config):
                w.put(_CONFIG, _encode_config(new_config))
                config = new_config
            case CollectGarbage(through):
                if through > committed:
                    raise StoreError(f"cannot collect through {through} above the commit point {committed}")
                self._collect(w, through)
            case _:
                raise StoreError(f"unknown record {record!r}")
        w.put(_COUNTERS, _COUNTERS_FORMAT.pack(last, committed, log_start, live))
        self._last, self._committed, self._log_start, self._live_keys = last, committed, log_start, live
        self._config = config

    def _append(self, w: _Writes, entries: tuple[Entry, ...]) -> int:
        if not entries:
            return self._last
        if entries[0].seq != self._last + 1:
            raise StoreError(f"gap: appending seq {entries[0].seq} after last seq {self._last}")
        for i in range(1, len(entries)):
            if entries[i].seq != entries[i - 1].seq + 1:
                raise StoreError("appended entries are not consecutive")
        dirty, uncommitted = self._dirty, self._uncommitted
        # Every entry of every batch comes through here, on every node: PUT and DELETE entries, their
        # versions and outcomes are encoded directly (the same messages _encode_entry, _encode_version
        # and _encode_outcome build), with no intermediate KeyVersion or RequestOutcome.
        put, get = w.put, w.get
        for e in entries:
            seq = _U64.pack(e.seq)
            kind = e.kind
            if kind == EntryKind.PUT or kind == EntryKind.DELETE:
                put(_LOG + seq, chain_pb2.Entry(seq=e.seq, request_id=e.request_id, key=e.key, kind=kind, value=e.value,
                                                current_version=e.current_version).SerializeToString())
                versions: tuple[KeyVersion, ...] | None = None
            else:
                put(_LOG + seq, _encode_entry(e))
                versions = entry_versions(e)
            for key, tombstone, value in ((e.key, kind == EntryKind.DELETE, e.value),) if versions is None else (
                    (kv.key, kv.tombstone, kv.value) for kv in versions):
                d = dirty.get(key)
                if d is None:
                    # A key with dirty versions has its clean one below them, so below this entry.
                    raw = get(_CLEAN + key)
                    clean = None if raw is None else _decode_version(raw)
                    if clean is None or clean.version < e.seq:
                        d = dirty[key] = _DirtyKey(clean is not None and not clean.tombstone, [],
                                                   None if clean is None else (clean.version, raw))
                if d is not None:
                    encoded = chain_pb2.KeyVersion(key=key, version=e.seq, tombstone=tombstone,
                                                   value=value).SerializeToString()
                    put(_DIRTY + _U32.pack(len(key)) + key + seq, encoded)
                    d.versions.append((e.seq, tombstone, encoded))
                    uncommitted.append((e.seq, key))
            if e.request_id:
                rid = e.request_id.encode()
                by_id = _OUTCOME + rid
                previous = get(by_id)
                if previous is not None:
                    w.delete(_outcome_keys(_decode_outcome(previous))[1])
                if kind == EntryKind.TXN:
                    put(by_id, _encode_outcome(outcome_of(e)))
                else:
                    put(by_id, chain_pb2.RequestOutcome(request_id=e.request_id, seq=e.seq, kind=kind,
                                                        current_version=e.current_version).SerializeToString())
                put(_OUTCOME_BY_SEQ + seq + rid, b"")
        return entries[-1].seq

    def _commit(self, w: _Writes, through: int) -> int:
        if not self._committed <= through <= self._last:
            raise StoreError(f"cannot commit through {through}: committed {self._committed}, last {self._last}")
        # Every dirty version is above the commit point (committing drops those at or below it), so
        # the keys with dirty versions up to `through` are the keys the committed entries wrote
        # that have a version to make clean.
        live = self._live_keys
        touched = set()
        uncommitted = self._uncommitted
        while uncommitted and uncommitted[0][0] <= through:
            touched.add(uncommitted.popleft()[1])
        for key in touched:
            d = self._dirty.get(key)
            if d is None:
                continue
            versions = d.versions
            n = 0
            while n < len(versions) and versions[n][0] <= through:
                n += 1
            if n == 0:
                continue
            newest, tombstone, encoded = versions[n - 1]
            # The dirty versions are all newer than the clean one: the newest of them replaces it,
            # and the ones it supersedes go to the history (see scan_at).
            previous = d.clean
            for seq, _, raw in versions[:n]:
                if previous is not None:
                    by_key, by_superseded = _history_keys(key, previous[0], seq)
                    w.put(by_key, previous[1])
                    w.put(by_superseded, b"")
                previous = (seq, raw)
            w.put(_CLEAN + key, encoded)
            if tombstone:
                w.put(_TOMBSTONE_BY_SEQ + _seq(newest) + key, b"")
            live += (0 if tombstone else 1) - (1 if d.clean_live else 0)
            prefix = _dirty_prefix(key)
            for seq, _, _ in versions[:n]:
                w.delete(prefix + _seq(seq))
            del versions[:n]
            if versions:
                d.clean_live = not tombstone
                d.clean = previous
            else:
                del self._dirty[key]
        return live

    def _install(self, w: _Writes, kv: KeyVersion, live: int) -> int:
        """Make `kv` the key's clean version unless it has a newer one; returns the live key count."""
        raw = w.get(_CLEAN + kv.key)
        clean = None if raw is None else _decode_version(raw)
        if clean is not None and clean.version >= kv.version:
            return live
        encoded = _encode_version(kv)
        w.put(_CLEAN + kv.key, encoded)
        if kv.tombstone:
            w.put(_TOMBSTONE_BY_SEQ + _seq(kv.version) + kv.key, b"")
        live += (0 if kv.tombstone else 1) - (0 if clean is None or clean.tombstone else 1)
        d = self._dirty.get(kv.key)
        if d is not None:
            prefix = _dirty_prefix(kv.key)
            kept = []
            for version in d.versions:
                if version[0] <= kv.version:
                    w.delete(prefix + _seq(version[0]))
                else:
                    kept.append(version)
            if kept:
                d.versions = kept
                d.clean_live = not kv.tombstone
                d.clean = (kv.version, encoded)
            else:
                del self._dirty[kv.key]
        return live

    def _sweep(self, w: _Writes, sweep: tuple[bytes | None, bytes | None], sent: set[bytes], live: int) -> int:
        """Drop the clean versions of keys in the sweep range that a transfer chunk does not carry, and their
        history (a snapshot must not read a version the chain's delete superseded; their entries in the
        superseded-at index are left to `CompactHistory`, which deletes what is already gone)."""
        self._flush(w)
        lo, hi = sweep
        start = _CLEAN if lo is None else _CLEAN + lo + b"\0"
        end = _prefix_end(_CLEAN) if hi is None else _CLEAN + hi + b"\0"
        for k, raw in self._scan(start, end):
            key = k[1:]
            if key in sent or not in_sweep(key, sweep):
                continue
            w.delete(k)
            if not _decode_version(raw).tombstone:
                live -= 1
            prefix = _history_prefix(key)
            for h, _ in self._scan(prefix, _prefix_end(prefix)):
                w.delete(h)
            d = self._dirty.get(key)
            if d is not None:
                d.clean_live = False
                d.clean = None
        return live

    def _collect(self, w: _Writes, through: int) -> None:
        """Drop the clean tombstones with version <= through, and their index entries."""
        self._flush(w)
        for k, _ in self._scan(_TOMBSTONE_BY_SEQ, _TOMBSTONE_BY_SEQ + _seq(through + 1)):
            version, key = _U64.unpack(k[1:9])[0], k[9:]
            w.delete(k)
            raw = w.get(_CLEAN + key)
            if raw is not None:
                clean = _decode_version(raw)
                if clean.tombstone and clean.version == version:
                    w.delete(_CLEAN + key)

    def _truncate(self, w: _Writes, after: int) -> None:
        if after < self._committed:
            raise StoreError(f"cannot truncate to {after} below the commit point {self._committed}")
        # Every dirty version above the commit point comes from a log entry still held: drop both.
        for k, raw in self._scan(_LOG + _seq(after + 1), _prefix_end(_LOG)):
            e = _decode_entry(raw)
            w.delete(k)
            for kv in entry_versions(e):
                w.delete(_dirty_prefix(kv.key) + _seq(e.seq))
        for k, _ in self._scan(_OUTCOME_BY_SEQ + _seq(after + 1), _prefix_end(_OUTCOME_BY_SEQ)):
            w.delete(k)
            w.delete(_OUTCOME + k[9:])
        uncommitted = self._uncommitted
        while uncommitted and uncommitted[-1][0] > after:
            _, key = uncommitted.pop()
            d = self._dirty.get(key)
            if d is None:
                continue
            while d.versions and d.versions[-1][0] > after:
                d.versions.pop()
            if not d.versions:
                del self._dirty[key]
