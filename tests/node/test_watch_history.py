"""The committed stream watches read (node/watch_history.py): bounds, compact point, whole seqs, and
a cursor that resumes with no gap and no duplicate."""

from __future__ import annotations

import pytest
from keychain.node.messages import Code, Entry, EntryKind, TxnWrite
from keychain.node.watch_history import CHANGE_OVERHEAD_BYTES, WatchCursor, WatchHistory


def put(seq: int, key: str, value: str = "v") -> Entry:
    return Entry(seq, "", key.encode(), EntryKind.PUT, value.encode())


def noop(seq: int) -> Entry:
    return Entry(seq, "", b"x", EntryKind.NOOP, b"", 1)


def versions(history: WatchHistory, after: int, start: str = "", end: str = "", **limits: int) -> list[int]:
    return [c.version for c in history.read(after, start.encode(), end.encode(), **limits).changes]


def test_the_oldest_seqs_are_evicted_first_and_the_compact_point_rises() -> None:
    h = WatchHistory(0, max_changes=3)
    h.extend([put(1, "a"), noop(2), put(3, "b"), put(4, "c"), put(5, "a")])
    assert (len(h), h.floor, h.last) == (3, 1, 5)  # 1 evicted; the NOOP 2 takes no room
    assert versions(h, 1) == [3, 4, 5]
    with pytest.raises(ValueError, match="compact point"):
        h.read(0, b"", b"")


def test_a_byte_bound_keeps_a_single_large_seq_whole() -> None:
    h = WatchHistory(0, max_bytes=2 * (CHANGE_OVERHEAD_BYTES + 2))
    h.extend([put(1, "a", "1"), put(2, "b", "2")])
    assert (len(h), h.floor) == (2, 0)
    h.extend([put(3, "c", "x" * 1000)])
    assert (len(h), h.floor, versions(h, 2)) == (1, 2, [3])


def test_reads_filter_by_range_and_stop_between_seqs() -> None:
    h = WatchHistory()
    h.extend([put(1, "app/a"), put(2, "other"), put(3, "app/b"), put(4, "app0")])
    assert versions(h, 0, "app/", "app0") == [1, 3]
    assert h.read(3, b"app/", b"app0").through == 4  # looked at 4, nothing to send
    first = h.read(0, b"", b"", max_changes=2)
    assert ([c.version for c in first.changes], first.through) == ([1, 2], 2)


def test_a_cursor_resumes_exactly_after_what_it_sent_and_is_cut_when_it_falls_behind() -> None:
    h = WatchHistory(0, max_changes=4)
    h.extend([put(1, "a"), put(2, "b")])
    cursor = WatchCursor(b"", b"", after=0)
    batch = cursor.next(h)
    assert batch is not None and [c.version for c in batch.changes] == [1, 2] and batch.committed_seq == 2
    assert cursor.next(h) is None  # nothing new and no heartbeat due
    beat = cursor.next(h, heartbeat=True)
    assert beat is not None and (beat.changes, beat.committed_seq) == ((), 2)
    h.extend([put(3, "c")])
    batch = cursor.next(h)
    assert batch is not None and [c.version for c in batch.changes] == [3]
    h.extend([put(s, "d") for s in range(4, 9)])  # 4 kept: 5..8, compact point 4
    cut = cursor.next(h)
    assert cut is not None and (cut.error.code, cut.compact_version, cut.committed_seq) == (Code.COMPACTED, 4, 3)
    assert cursor.done and cursor.next(h) is None


def test_a_state_transfer_restarts_the_history_at_its_point() -> None:
    h = WatchHistory()
    h.extend([put(1, "a")])
    h.restart_at(40)
    assert (len(h), h.floor, h.last, h.restarts) == (0, 40, 40, 1)
    h.extend([put(41, "a")])
    assert versions(h, 40) == [41]
    with pytest.raises(ValueError, match="does not follow"):
        h.extend([put(43, "a")])


def test_a_transactions_changes_share_its_seq_and_are_never_split_between_batches() -> None:
    h = WatchHistory(0, max_changes=2)
    txn = Entry(2, "", b"", EntryKind.TXN, writes=(TxnWrite(b"a", False, b"1"), TxnWrite(b"b", True)))
    h.extend([put(1, "c"), txn])
    assert (len(h), h.floor) == (2, 1)  # the txn's two changes evicted 1, never each other
    first = h.read(1, b"", b"", max_changes=1)
    assert [(c.version, c.key, c.kind) for c in first.changes] == [(2, b"a", EntryKind.PUT), (2, b"b", EntryKind.DELETE)]
    h.extend([put(3, "d")])  # 3 changes above the bound: the whole txn goes, not half of it
    assert (len(h), h.floor) == (1, 2)
