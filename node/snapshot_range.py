"""Range reads at a snapshot: every key in [start, end) at its newest version <= S, on any node.

The snapshot. A strong range with no snapshot asks the tail once for its commit point T (a version
query with no keys) and reads at S = max(T, the node's own commit point): every write acknowledged
before the range began has a seq <= T, and every seq <= S is committed, so the page is a
linearizable, consistent cut of the whole key space. An eventual range reads at the node's own
commit point, with no query. A following page passes the S of the first one: a node whose commit
point has reached S reads at once; one behind it asks the tail whether S is committed (a snapshot
the tail has not committed is refused, so a client cannot make a node serve dirty versions).

What a node keeps. Per key, the newest version <= S is the clean one if it is <= S; else an entry
still above the store's commit point (`UncommittedLog.at`), or a version a commit superseded,
which the store keeps in its history (`VersionStore.scan_at`) until the node compacts it. The node
compacts the history `retain_versions` seqs behind its commit point, and knows no history from
before it opened its store or installed a state transfer: a snapshot below that point (its
`compact_version`) is refused with COMPACTED and the oldest snapshot it still reads.

Bookkeeping and the page itself live here; `ChainCore` decides when a range is served.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from keychain.node.messages import OK, Code, Error, KeyVersion, RangeItem, RangeRead, RangeReply
from keychain.node.uncommitted_log import UncommittedLog
from keychain.node.versions import VersionStore

# What one item weighs against the page's byte budget beyond its key and value: protobuf framing.
ITEM_FRAMING_BYTES = 32


def check(r: RangeRead, max_items: int, max_key_bytes: int, epoch: int) -> Error | None:
    """Why the range cannot be read (bounds, limit), or None."""
    if r.limit > max_items:
        return Error(Code.INVALID_ARGUMENT, f"a limit of {r.limit} is above the maximum of {max_items}", epoch)
    if len(r.start) > max_key_bytes or len(r.end) > max_key_bytes + 1:
        return Error(Code.TOO_LARGE, f"a range bound is above the key limit of {max_key_bytes} bytes", epoch)
    if r.end and r.end < r.start:
        return Error(Code.INVALID_ARGUMENT, "the range's end is before its start", epoch)
    return None


def read_page(store: VersionStore, log: UncommittedLog, r: RangeRead, snapshot: int, max_items: int,
              max_bytes: int) -> RangeReply:
    """One page at `snapshot`: live keys in order, at most `r.limit` (0: `max_items`) of them and
    `max_bytes` of keys, values and framing (at least one item); `more` when keys remain."""
    limit = r.limit or max_items
    items: list[RangeItem] = []
    size = 0
    more = False
    for key, kv in _merged(store, log, r.start, r.end, snapshot):
        if kv is None or kv.tombstone:
            continue
        value = b"" if r.keys_only else kv.value
        weight = len(key) + len(value) + ITEM_FRAMING_BYTES
        if len(items) >= limit or (items and size + weight > max_bytes):
            more = True
            break
        items.append(RangeItem(key, value, kv.version))
        size += weight
    return RangeReply(OK, tuple(items), snapshot, more)


def _merged(store: VersionStore, log: UncommittedLog, start: bytes, end: bytes,
            snapshot: int) -> Iterator[tuple[bytes, KeyVersion | None]]:
    """Every key in range either source knows, in order, with its newest version <= snapshot."""
    held = ((key, log.at(key, snapshot)) for key in log.keys_between(start, end))
    current: bytes | None = None
    best: KeyVersion | None = None
    for key, kv in heapq.merge(store.scan_at(start, end, snapshot), held, key=lambda pair: pair[0]):
        if key != current:
            if current is not None:
                yield current, best
            current, best = key, None
        if kv is not None and (best is None or kv.version > best.version):
            best = kv
    if current is not None:
        yield current, best


class WaitingRanges:
    """Strong ranges waiting for the tail's commit point: first in a backlog, then attached to the
    version query of the Ready that asks the tail (`ChainCore` shares one query with the reads)."""

    def __init__(self) -> None:
        self.backlog: list[tuple[int, RangeRead]] = []  # (ticket, range), not yet asked about
        self._queries: dict[int, list[tuple[int, RangeRead]]] = {}

    def hold(self, ticket: int, r: RangeRead) -> None:
        self.backlog.append((ticket, r))

    def take_backlog(self) -> list[tuple[int, RangeRead]]:
        backlog, self.backlog = self.backlog, []
        return backlog

    def attach(self, query_id: int, ranges: list[tuple[int, RangeRead]]) -> None:
        if ranges:
            self._queries[query_id] = ranges

    def answered(self, query_id: int) -> list[tuple[int, RangeRead]]:
        """The ranges waiting for `query_id` (no longer held)."""
        return self._queries.pop(query_id, [])
