"""The version store contract, run against the in-memory store and the RocksDB store alike, plus what
only a durable store has: surviving a restart or a crash, and refusing a data directory not its own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import rocksdict
from keychain.node.messages import (
    ChainConfig,
    Entry,
    EntryKind,
    KeyVersion,
    Member,
    MemberState,
    RequestOutcome,
)
from keychain.node.storage import DataDirError, RocksVersionStore
from keychain.node.versions import (
    AppendEntries,
    Commit,
    ForgetOutcomes,
    InstallKeys,
    MemoryVersionStore,
    ResetLog,
    SaveConfig,
    StoreError,
    StoreState,
    TrimLog,
    Truncate,
    VersionStore,
)

PUT, DELETE, NOOP = EntryKind.PUT, EntryKind.DELETE, EntryKind.NOOP


def put(seq: int, key: bytes, value: bytes = b"", rid: str = "") -> Entry:
    return Entry(seq, rid, key, PUT, value or b"v%d" % seq)


def delete(seq: int, key: bytes, rid: str = "") -> Entry:
    return Entry(seq, rid, key, DELETE)


def noop(seq: int, key: bytes, rid: str, current: int) -> Entry:
    return Entry(seq, rid, key, NOOP, b"", current)


class Stores:
    """Opens the store under test and, for a durable one, reopens it as a restarted node would."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.path = tmp_path / "data"
        self.opened: list[RocksVersionStore] = []

    def open(self) -> VersionStore:
        if self.kind == "memory":
            return MemoryVersionStore()
        store = RocksVersionStore(self.path, "n1", "main")
        self.opened.append(store)
        return store

    def restart(self, store: VersionStore) -> VersionStore:
        """What a node finds after syncing and restarting (the same object for a store in memory)."""
        store.sync()
        if isinstance(store, MemoryVersionStore):
            return store
        store.close()
        return self.open()


@pytest.fixture(params=["memory", "rocksdb"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    s = Stores(request.param, tmp_path)
    yield s
    for store in s.opened:
        store.close()


# ---- the contract, for both stores ----


def test_appended_writes_are_dirty_until_committed(stores: Stores) -> None:
    store = stores.open()
    store.apply([AppendEntries((put(1, b"a", rid="r1"), put(2, b"b"), put(3, b"a", rid="r3")))])
    store = stores.restart(store)

    assert store.state() == StoreState(last_seq=3, committed_seq=0, log_start=0)
    assert store.clean(b"a") is None
    assert store.version(b"a", 1) == KeyVersion(b"a", 1, False, b"v1")
    assert store.version(b"a", 3) == KeyVersion(b"a", 3, False, b"v3")
    assert store.dirty_versions() == {b"a": [1, 3], b"b": [2]}  # type: ignore[attr-defined]
    assert store.outcome("r1") == RequestOutcome("r1", 1, PUT)
    assert store.outcome("r3") == RequestOutcome("r3", 3, PUT)
    assert store.key_count() == 0


def test_commit_cleans_the_newest_version_and_drops_older_ones(stores: Stores) -> None:
    store = stores.open()
    store.apply([AppendEntries((put(1, b"a"), put(2, b"b"), put(3, b"a"), put(4, b"a")))])
    store.apply([Commit(3)])
    store = stores.restart(store)

    assert store.state().committed_seq == 3
    assert store.clean(b"a") == KeyVersion(b"a", 3, False, b"v3")
    assert store.clean(b"b") == KeyVersion(b"b", 2, False, b"v2")
    assert store.version(b"a", 1) is None
    assert store.version(b"a", 4) == KeyVersion(b"a", 4, False, b"v4")
    assert store.dirty_versions() == {b"a": [4]}  # type: ignore[attr-defined]
    assert store.key_count() == 2


def test_a_committed_delete_is_a_clean_tombstone_that_counts_as_absent(stores: Stores) -> None:
    store = stores.open()
    store.apply([AppendEntries((put(1, b"a"), put(2, b"b"))), Commit(2)])
    assert store.key_count() == 2
    store.apply([AppendEntries((delete(3, b"a"),)), Commit(3)])
    store = stores.restart(store)

    assert store.clean(b"a") == KeyVersion(b"a", 3, True, b"")
    assert store.key_count() == 1
    assert [kv.key for kv in store.scan_clean(None, 10)] == [b"a", b"b"]  # tombstones are scanned too


def test_a_failed_precondition_is_logged_without_a_version(stores: Stores) -> None:
    store = stores.open()
    store.apply([AppendEntries((put(1, b"a"), noop(2, b"a", "cas", current=1))), Commit(2)])
    store = stores.restart(store)

    assert store.entries(2, 2) == [noop(2, b"a", "cas", 1)]
    assert store.version(b"a", 2) is None
    assert store.clean(b"a") == KeyVersion(b"a", 1, False, b"v1")
    assert store.outcome("cas") == RequestOutcome("cas", 2, NOOP, 1)


def test_a_reused_request_id_remembers_only_its_latest_outcome(stores: Stores) -> None:
    store = stores.open()
    store.apply([AppendEntries((put(1, b"a", rid="r"), put(2, b"b", rid="r")))])
    store.apply([ForgetOutcomes(1)])
    store = stores.restart(store)

    assert store.outcome("r") == RequestOutcome("r", 2, PUT)  # its entry for seq 1 was replaced


def test_appending_below_a_newer_clean_version_makes_no_dirty_version(stores: Stores) -> None:
    store = stores.open()
    store.apply([InstallKeys((KeyVersion(b"a", 5, False, b"moved"),)), ResetLog(3)])
    store.apply([AppendEntries((put(4, b"a"), put(5, b"b")))])
    store = stores.restart(store)

    assert store.dirty_versions() == {b"b": [5]}  # type: ignore[attr-defined]
    assert store.clean(b"a") == KeyVersion(b"a", 5, False, b"moved")


def test_the_log_reads_back_in_order_and_refuses_what_it_does_not_hold(stores: Stores) -> None:
    store = stores.open()
    entries = tuple(put(s, b"k%d" % s) for s in range(1, 7))
    store.apply([AppendEntries(entries), Commit(4), TrimLog(2)])
    store = stores.restart(store)

    assert store.entries(3, 6) == list(entries[2:])
    assert store.state().log_start == 2
    with pytest.raises(StoreError, match="trimmed"):
        store.entries(2, 3)
    with pytest.raises(StoreError, match="beyond"):
        store.entries(5, 7)


def test_truncate_drops_uncommitted_writes_and_their_outcomes(stores: Stores) -> None:
    store = stores.open()
    store.apply([AppendEntries((put(1, b"a", rid="r1"), put(2, b"a", rid="r2"), put(3, b"b", rid="r3")))])
    store.apply([Commit(1), Truncate(1)])
    store = stores.restart(store)

    assert store.state() == StoreState(last_seq=1, committed_seq=1, log_start=0)
    assert store.dirty_versions() == {}  # type: ignore[attr-defined]
    assert store.outcome("r1") == RequestOutcome("r1", 1, PUT)
    assert store.outcome("r2") is None and store.outcome("r3") is None
    with pytest.raises(StoreError):
        store.entries(2, 2)
    store.apply([AppendEntries((put(2, b"c"),))])  # the history continues from the cut
    assert store.entries(2, 2) == [put(2, b"c")]


def test_forget_outcomes_drops_old_request_ids_only(stores: Stores) -> None:
    store = stores.open()
    store.apply([AppendEntries(tuple(put(s, b"k", rid=f"r{s}") for s in range(1, 5))), ForgetOutcomes(2)])
    store = stores.restart(store)

    assert [o.request_id for o in store.scan_outcomes(None, 10)] == ["r3", "r4"]


def test_state_transfer_installs_keys_and_outcomes_then_resets_the_log(stores: Stores) -> None:
    store = stores.open()
    store.apply([AppendEntries((put(1, b"a", rid="old"), put(2, b"z")))])  # a stale uncommitted history
    store.apply([
        InstallKeys((KeyVersion(b"a", 7, False, b"A"), KeyVersion(b"b", 9, True)),
                    (RequestOutcome("x", 7, PUT), RequestOutcome("old", 99, PUT))),
        InstallKeys((KeyVersion(b"c", 8, False, b"C"),)),
        ResetLog(9),
    ])
    store = stores.restart(store)

    assert store.state() == StoreState(last_seq=9, committed_seq=9, log_start=9)
    assert store.scan_clean(None, 10) == [
        KeyVersion(b"a", 7, False, b"A"), KeyVersion(b"b", 9, True), KeyVersion(b"c", 8, False, b"C")]
    assert store.key_count() == 2
    assert store.dirty_versions() == {}  # type: ignore[attr-defined]
    assert store.outcome("x") == RequestOutcome("x", 7, PUT)
    assert store.outcome("old") == RequestOutcome("old", 1, PUT)  # an outcome already known is kept
    store.apply([AppendEntries((put(10, b"a"),))])
    assert store.version(b"a", 10) is not None


def test_a_transfer_chunk_naming_a_key_twice_keeps_the_newer_version(stores: Stores) -> None:
    store = stores.open()
    store.apply([InstallKeys((KeyVersion(b"a", 5, False, b"new"), KeyVersion(b"a", 3, False, b"old")))])
    store = stores.restart(store)

    assert store.clean(b"a") == KeyVersion(b"a", 5, False, b"new")
    assert store.key_count() == 1


def test_scans_page_in_byte_and_string_order(stores: Stores) -> None:
    store = stores.open()
    keys = [b"b", b"a\xff", b"a", b"\x00", b"ab"]
    rids = ["r-b", "r-a", "r-\u00e9", "r-Z"]
    store.apply([AppendEntries(tuple(put(i + 1, k, rid=rids[i] if i < len(rids) else "")
                                     for i, k in enumerate(keys))), Commit(len(keys))])
    store = stores.restart(store)

    assert [kv.key for kv in store.scan_clean(None, 3)] == [b"\x00", b"a", b"ab"]
    assert [kv.key for kv in store.scan_clean(b"ab", 3)] == [b"a\xff", b"b"]
    assert [kv.key for kv in store.scan_clean(b"b", 3)] == []
    assert [o.request_id for o in store.scan_outcomes(None, 2)] == ["r-Z", "r-a"]
    assert [o.request_id for o in store.scan_outcomes("r-a", 5)] == ["r-b", "r-\u00e9"]


def test_the_saved_configuration_is_read_back(stores: Stores) -> None:
    store = stores.open()
    config = ChainConfig("main", 4, (Member("n1", "127.0.0.1:1"), Member("n2", "127.0.0.1:2", MemberState.SYNCING)))
    store.apply([SaveConfig(config)])
    store = stores.restart(store)

    assert store.state().config == config


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([AppendEntries((put(4, b"a"),))], "gap"),
        ([AppendEntries((put(3, b"a"), put(5, b"a")))], "consecutive"),
        ([Commit(5)], "commit"),
        ([Commit(1), Truncate(0)], "below the commit point"),
        ([TrimLog(2)], "trim"),
        ([Commit(2), ResetLog(1)], "below the commit point"),
    ],
)
def test_an_impossible_record_is_refused_and_changes_nothing(
    stores: Stores, records: list, message: str
) -> None:
    store = stores.open()
    store.apply([AppendEntries((put(1, b"a"), put(2, b"b")))])
    *good, bad = records
    store.apply(good)
    before = store.state()
    with pytest.raises(StoreError, match=message):
        store.apply([bad])
    store = stores.restart(store)

    assert store.state() == before
    assert store.entries(1, 2) == [put(1, b"a"), put(2, b"b")]


# ---- durability: only the RocksDB store ----


def test_synced_records_survive_a_crash_of_the_process(tmp_path: Path) -> None:
    """The writer dies without closing anything (as `kill -9` would) right after sync()."""
    script = textwrap.dedent(f"""
        import os
        from keychain.node.messages import Entry, EntryKind
        from keychain.node.storage import RocksVersionStore
        from keychain.node.versions import AppendEntries, Commit
        store = RocksVersionStore({str(tmp_path / "data")!r}, "n1", "main")
        store.apply([AppendEntries(tuple(Entry(s, f"r{{s}}", b"k%d" % (s % 7), EntryKind.PUT, b"x" * 100)
                                         for s in range(1, 501)))])
        store.apply([Commit(400)])
        store.sync()
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-P", "-c", script], check=True, timeout=60)

    with RocksVersionStore(tmp_path / "data", "n1", "main") as store:
        assert store.state() == StoreState(last_seq=500, committed_seq=400, log_start=0)
        assert store.clean(b"k1") == KeyVersion(b"k1", 400, False, b"x" * 100)
        assert store.outcome("r500") == RequestOutcome("r500", 500, PUT)


def test_group_commit_is_one_fsync_per_sync_not_per_record(tmp_path: Path) -> None:
    """Count the write-ahead log syncs RocksDB reports: many applied records, one sync."""
    with RocksVersionStore(tmp_path / "data", "n1", "main") as store:
        before = store.wal_syncs()
        for s in range(1, 51):
            store.apply([AppendEntries((put(s, b"k"),)), Commit(s)])
        assert store.wal_syncs() == before
        store.sync()
        assert store.wal_syncs() == before + 1


def test_a_request_id_never_seen_is_ruled_out_by_a_bloom_filter_not_by_reading_table_files(tmp_path: Path) -> None:
    """Every appended entry looks its (new) request id up: a miss must not read every table file."""
    with RocksVersionStore(tmp_path / "data", "n1", "main") as store:
        store.apply([AppendEntries(tuple(put(s, b"k%d" % s, b"v", f"r{s}") for s in range(1, 201))), Commit(200)])
        store.compact()  # into table files
        before = store._ticker("rocksdb.bloom.filter.useful")
        assert all(store.outcome(f"new-{i}") is None for i in range(20))
        assert store._ticker("rocksdb.bloom.filter.useful") - before >= 20


def test_writes_left_uncommitted_at_a_restart_are_made_clean_by_a_later_commit(stores: Stores) -> None:
    store = stores.open()
    store.apply([AppendEntries((put(1, b"k"), put(2, b"gone"), put(3, b"k"), put(4, b"j"))),
                 Commit(2), AppendEntries((delete(5, b"gone"),))])
    store = stores.restart(store)
    store.apply([Commit(5)])
    assert store.clean(b"k") == KeyVersion(b"k", 3, False, b"v3")
    assert store.clean(b"gone") == KeyVersion(b"gone", 5, True, b"")
    assert store.clean(b"j") == KeyVersion(b"j", 4, False, b"v4")
    assert store.dirty_versions() == {}
    assert store.key_count() == 2


def test_a_record_refused_mid_list_keeps_the_records_before_it(stores: Stores) -> None:
    store = stores.open()
    with pytest.raises(StoreError, match="gap"):
        store.apply([AppendEntries((put(1, b"k"), put(2, b"k"))), Commit(1),
                      AppendEntries((put(9, b"k"),)), SaveConfig(ChainConfig("main", 7, ()))])
    for restarted in (False, True):
        if restarted:
            store = stores.restart(store)
        assert store.state() == StoreState(last_seq=2, committed_seq=1, log_start=0)
        assert store.clean(b"k") == KeyVersion(b"k", 1, False, b"v1")
        assert store.dirty_versions() == {b"k": [2]}
    store.apply([AppendEntries((put(3, b"k"),)), Commit(3)])
    assert store.clean(b"k") == KeyVersion(b"k", 3, False, b"v3")
    assert store.dirty_versions() == {}
    assert store.key_count() == 1


# ---- data-directory identity ----


def test_a_new_empty_directory_is_formatted_for_this_node(tmp_path: Path) -> None:
    (tmp_path / "data" / "lost+found").mkdir(parents=True)  # a fresh volume's root
    with RocksVersionStore(tmp_path / "data", "n1", "main") as store:
        assert store.state() == StoreState()


def test_another_nodes_directory_is_refused(tmp_path: Path) -> None:
    with RocksVersionStore(tmp_path / "data", "n1", "main") as store:
        store.apply([AppendEntries((put(1, b"a"),))])
        store.sync()
    with pytest.raises(DataDirError, match=r"belongs to node 'n1' of chain 'main', not to node 'n2'"):
        RocksVersionStore(tmp_path / "data", "n2", "main")
    with pytest.raises(DataDirError, match=r"of chain 'main', not to node 'n1' of chain 'other'"):
        RocksVersionStore(tmp_path / "data", "n1", "other")
    with RocksVersionStore(tmp_path / "data", "n1", "main") as store:  # its owner still opens it
        assert store.state().last_seq == 1


def test_a_directory_with_other_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("hello")
    with pytest.raises(DataDirError, match="holds no KeychainDB store"):
        RocksVersionStore(tmp_path / "data", "n1", "main")
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["notes.txt"]  # nothing written


def test_a_file_instead_of_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("x")
    with pytest.raises(DataDirError, match="not a directory"):
        RocksVersionStore(tmp_path / "data", "n1", "main")


def test_a_rocksdb_database_of_something_else_is_refused(tmp_path: Path) -> None:
    opts = rocksdict.Options(raw_mode=True)
    opts.create_if_missing(True)
    db = rocksdict.Rdict(str(tmp_path / "data"), opts)
    db[b"user:1"] = b"somebody else's data"
    db.close()
    del db
    with pytest.raises(DataDirError, match="not a KeychainDB node's store"):
        RocksVersionStore(tmp_path / "data", "n1", "main")


def test_a_database_created_but_never_formatted_is_formatted(tmp_path: Path) -> None:
    """A crash between creating the database and writing its identity left it empty."""
    opts = rocksdict.Options(raw_mode=True)
    opts.create_if_missing(True)
    db = rocksdict.Rdict(str(tmp_path / "data"), opts)
    db.close()
    del db
    with RocksVersionStore(tmp_path / "data", "n1", "main") as store:
        assert store.state() == StoreState()
    with pytest.raises(DataDirError, match="belongs to node 'n1'"):
        RocksVersionStore(tmp_path / "data", "n2", "main")


def _corrupt_current(path: Path) -> None:
    (path / "CURRENT").write_text("MANIFEST-999999\n")


def _corrupt_manifest(path: Path) -> None:
    manifest = next(path.glob("MANIFEST-*"))
    manifest.write_bytes(b"\x00garbage" * 64)


def _corrupt_tables(path: Path) -> None:
    tables = list(path.glob("*.sst"))
    assert tables, "the store should have flushed a table"
    for t in tables:
        size = t.stat().st_size
        t.write_bytes(os.urandom(size))


@pytest.mark.parametrize("damage", [_corrupt_current, _corrupt_manifest, _corrupt_tables])
def test_a_damaged_database_stops_the_node_instead_of_opening_empty(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    with RocksVersionStore(tmp_path / "data", "n1", "main") as store:
        store.apply([AppendEntries(tuple(put(s, b"k%d" % s) for s in range(1, 101))), Commit(100)])
        store.sync()
        store._db.flush()  # write the memtable into a table file
    damage(tmp_path / "data")
    with pytest.raises(DataDirError, match="corrupt"):
        RocksVersionStore(tmp_path / "data", "n1", "main")


def test_a_directory_in_use_by_a_running_node_is_refused(tmp_path: Path) -> None:
    with RocksVersionStore(tmp_path / "data", "n1", "main"), pytest.raises(DataDirError, match="in use"):
        RocksVersionStore(tmp_path / "data", "n1", "main")
