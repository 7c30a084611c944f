"""The RocksDB store stays fast as deleted dirty versions pile up.

Making a version clean deletes the key's dirty versions, so a busy node's key space fills with
tombstones until compaction. A seek that is not bounded to the key's own range steps over every
one of them (once per scan); these tests count the steps through RocksDB's statistics.
"""

from __future__ import annotations

from pathlib import Path

from keychain.node.messages import Entry, EntryKind
from keychain.node.storage import RocksVersionStore
from keychain.node.versions import AppendEntries, Commit

EARLIER_KEYS = 2000


def _put(seq: int, key: bytes) -> Entry:
    return Entry(seq, f"r{seq}", key, EntryKind.PUT, b"value")


def test_committing_a_key_does_not_step_over_other_keys_deleted_dirty_versions(tmp_path: Path) -> None:
    store = RocksVersionStore(tmp_path / "node", "n1", "main")
    try:
        seq = 0
        for _ in range(EARLIER_KEYS // 100):  # committed in batches: each leaves 100 tombstones
            entries = tuple(_put(seq + i + 1, f"key-{seq + i:06d}".encode()) for i in range(100))
            seq += 100
            store.apply([AppendEntries(entries), Commit(seq)])
        assert store.dirty_versions() == {}, "every dirty version was deleted when it became clean"

        # Dirty versions are ordered by key length, then key: b"a" sorts before every earlier
        # key's tombstones, a 12-byte key after them; a forward or a reverse seek that is not
        # bounded to the key's own range would cross them all.
        before = store.keys_skipped()
        store.apply([AppendEntries((_put(seq + 1, b"a"), _put(seq + 2, b"z" * 12))), Commit(seq + 2)])

        for key, version in ((b"a", seq + 1), (b"z" * 12, seq + 2)):
            clean = store.clean(key)
            assert clean is not None and clean.version == version
        assert store.keys_skipped() - before < 10, "the commit's scans stay within the key's own range"
    finally:
        store.close()


def test_the_newest_dirty_version_at_or_below_the_commit_point_becomes_clean(tmp_path: Path) -> None:
    store = RocksVersionStore(tmp_path / "node", "n1", "main")
    try:
        store.apply([AppendEntries((_put(1, b"k"), _put(2, b"other"), _put(3, b"k"), _put(4, b"k")))])
        store.apply([Commit(3)])
        clean = store.clean(b"k")
        assert clean is not None and clean.version == 3, "seq 4 is above the commit point"
        assert store.dirty_versions() == {b"k": [4]}, "older dirty versions are dropped, newer kept"
    finally:
        store.close()
