"""The durable Raft log: same contract as MemoryStorage, survives restarts, and tells damage from torn writes."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from keychain.coordinator.log import (
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    RaftStorage,
    Snapshot,
    StorageError,
)
from keychain.coordinator.storage import (
    HARDSTATE_FILE,
    META_FILE,
    SNAPSHOT_FILE,
    FileStorage,
    MemberMismatch,
    StorageCorrupt,
    segment_name,
)


def ents(lo: int, hi: int, term: int, data: bytes = b"cmd") -> list[Entry]:
    return [Entry(i, term, EntryType.NORMAL, data + str(i).encode()) for i in range(lo, hi + 1)]


def everything(s: RaftStorage) -> tuple[HardState, Snapshot, int, int, list[Entry]]:
    return (
        s.hard_state(),
        s.snapshot(),
        s.first_index(),
        s.last_index(),
        s.entries(s.first_index(), s.last_index() + 1),
    )


@pytest.fixture
def open_file(tmp_path: Path) -> Iterator[Callable[..., FileStorage]]:
    opened: list[FileStorage] = []

    def open_(member: str = "c1", sub: str = "raft") -> FileStorage:
        s = FileStorage(tmp_path / sub, member)
        opened.append(s)
        return s

    yield open_
    for s in opened:
        s.close()


@pytest.fixture(params=["memory", "file"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RaftStorage]:
    if request.param == "memory":
        yield MemoryStorage()
    else:
        with FileStorage(tmp_path / "raft", "c1") as s:
            yield s


# -- the contract, run against both implementations --------------------------------------------


def test_appended_entries_are_read_back_with_their_terms(storage: RaftStorage) -> None:
    storage.append([*ents(1, 3, term=1), Entry(4, 2, EntryType.NOOP)])
    storage.sync()
    assert (storage.first_index(), storage.last_index()) == (1, 4)
    assert [storage.term(i) for i in range(0, 5)] == [0, 1, 1, 1, 2]
    assert storage.entries(2, 5) == [*ents(2, 3, term=1), Entry(4, 2, EntryType.NOOP)]
    with pytest.raises(StorageError, match="beyond"):
        storage.term(5)
    with pytest.raises(StorageError, match="beyond"):
        storage.entries(1, 6)


def test_a_conflicting_suffix_is_replaced_not_merged(storage: RaftStorage) -> None:
    storage.append(ents(1, 5, term=1))
    storage.sync()
    storage.append(ents(3, 3, term=2, data=b"new"))
    storage.sync()
    assert storage.last_index() == 3
    assert storage.entries(1, 4) == ents(1, 2, term=1) + ents(3, 3, term=2, data=b"new")


def test_gaps_non_consecutive_and_compacted_appends_are_refused(storage: RaftStorage) -> None:
    storage.append(ents(1, 2, term=1))
    with pytest.raises(StorageError, match="gap"):
        storage.append(ents(4, 4, term=1))
    with pytest.raises(StorageError, match="consecutive"):
        storage.append([Entry(3, 1), Entry(5, 1)])
    storage.compact(Snapshot(2, 1))
    with pytest.raises(StorageError, match="compacted"):
        storage.append(ents(2, 3, term=1))
    assert storage.last_index() == 2


def test_entries_with_max_bytes_return_at_least_one_then_what_fits(storage: RaftStorage) -> None:
    storage.append([Entry(i, 1, data=b"x" * 100) for i in range(1, 6)])
    assert len(storage.entries(1, 6, max_bytes=1)) == 1
    assert len(storage.entries(1, 6, max_bytes=3 * 116)) == 3
    assert len(storage.entries(1, 6, max_bytes=10_000)) == 5


def test_compact_keeps_the_tail_and_the_term_at_the_snapshot_index(storage: RaftStorage) -> None:
    storage.append(ents(1, 4, term=1) + ents(5, 6, term=2))
    storage.compact(Snapshot(4, 1, ("c1", "c2", "c3"), (), b"registry"))
    assert (storage.first_index(), storage.last_index()) == (5, 6)
    assert storage.term(4) == 1
    assert storage.entries(5, 7) == ents(5, 6, term=2)
    with pytest.raises(StorageError, match="compacted"):
        storage.term(3)
    with pytest.raises(StorageError, match="compacted"):
        storage.entries(4, 6)
    with pytest.raises(StorageError, match="not newer"):
        storage.compact(Snapshot(4, 1))
    with pytest.raises(StorageError, match="beyond"):
        storage.compact(Snapshot(7, 2))
    storage.compact(Snapshot(6, 2))
    assert (storage.first_index(), storage.last_index()) == (7, 6)


def test_apply_snapshot_replaces_the_whole_log(storage: RaftStorage) -> None:
    storage.append(ents(1, 3, term=1))
    storage.apply_snapshot(Snapshot(10, 4, ("c1",), ("c9",), b"state"))
    assert (storage.first_index(), storage.last_index(), storage.term(10)) == (11, 10, 4)
    assert storage.snapshot() == Snapshot(10, 4, ("c1",), ("c9",), b"state")
    storage.append(ents(11, 12, term=4))
    assert storage.entries(11, 13) == ents(11, 12, term=4)


# -- durability ----------------------------------------------------------------------------------


def test_hard_state_log_and_snapshot_survive_a_restart(open_file: Callable[..., FileStorage]) -> None:
    s = open_file()
    s.append(ents(1, 8, term=1) + ents(9, 10, term=3))
    s.compact(Snapshot(5, 1, ("c1", "c2", "c3"), ("c4",), b"registry v5"))
    s.append(ents(10, 12, term=3, data=b"again"))  # conflicting suffix after a compaction
    s.set_hard_state(HardState(term=3, vote="c2", commit=11))
    s.sync()
    before = everything(s)
    s.close()

    again = open_file()
    assert everything(again) == before
    assert again.term(5) == 1 and again.term(12) == 3


def test_a_restart_mid_term_keeps_term_vote_and_log(open_file: Callable[..., FileStorage]) -> None:
    s = open_file()
    s.set_hard_state(HardState(term=7, vote="c3", commit=0))
    s.append(ents(1, 3, term=7))
    s.sync()
    s.close()
    again = open_file()
    assert again.hard_state() == HardState(term=7, vote="c3", commit=0)
    assert again.entries(1, 4) == ents(1, 3, term=7)
    again.append(ents(4, 4, term=7))  # and the log goes on from there
    again.sync()
    again.close()
    assert open_file().last_index() == 4


def test_a_durable_truncation_is_not_undone_by_a_restart(open_file: Callable[..., FileStorage]) -> None:
    s = open_file()
    s.append(ents(1, 6, term=1))
    s.sync()
    s.append(ents(2, 2, term=2))  # no sync: the conflicting suffix is already cut on disk
    s.close()
    again = open_file()
    assert again.last_index() == 1
    assert again.entries(1, 2) == ents(1, 1, term=1)


def test_appending_ten_thousand_entries_with_one_sync_is_fast(open_file: Callable[..., FileStorage]) -> None:
    s = open_file()
    batch = [Entry(i, 1, data=b"k=v" * 10) for i in range(1, 10_001)]
    started = time.perf_counter()
    s.append(batch)
    s.sync()
    assert time.perf_counter() - started < 1.0
    started = time.perf_counter()
    for lo in range(1, 10_001, 10):  # 1,000 reads must not go back to the file each time
        assert s.entries(lo, lo + 10)[0].index == lo
    assert time.perf_counter() - started < 1.0


def test_an_io_error_stops_all_further_changes(
    open_file: Callable[..., FileStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = open_file()
    s.append(ents(1, 2, term=1))

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(StorageError, match="I/O error"):
        s.sync()
    monkeypatch.undo()
    with pytest.raises(StorageError, match="failed earlier"):
        s.append(ents(3, 3, term=1))
    with pytest.raises(StorageError, match="failed earlier"):
        s.sync()


# -- damage on disk ----------------------------------------------------------------------------


def segment_path(s: FileStorage) -> Path:
    [seg] = sorted(s.path.glob("log-*.seg"))
    return seg


def test_a_torn_tail_is_cut_back_to_the_last_complete_record(
    open_file: Callable[..., FileStorage], caplog: pytest.LogCaptureFixture
) -> None:
    s = open_file()
    s.append(ents(1, 5, term=1))
    s.sync()
    entry5_at = s._offsets[4]
    s.close()
    seg = segment_path(s)
    os.truncate(seg, seg.stat().st_size - 3)  # a crash in the middle of writing entry 5

    with caplog.at_level(logging.WARNING, logger="keychain.coordinator.storage"):
        again = open_file()
    assert again.last_index() == 4
    assert again.entries(1, 5) == ents(1, 4, term=1)
    assert "event=torn_tail" in caplog.text and "last_index=4" in caplog.text
    assert seg.stat().st_size == entry5_at  # the partial record is gone from the disk too
    again.append(ents(5, 6, term=2))
    again.sync()
    again.close()
    assert open_file().entries(5, 7) == ents(5, 6, term=2)


def test_zeroes_after_the_last_record_are_a_torn_tail(open_file: Callable[..., FileStorage]) -> None:
    s = open_file()
    s.append(ents(1, 3, term=1))
    s.sync()
    s.close()
    with segment_path(s).open("ab") as f:
        f.write(b"\0" * 4096)  # the file grew but the data never reached the disk
    assert open_file().last_index() == 3


def test_a_flipped_byte_in_the_middle_refuses_to_open(open_file: Callable[..., FileStorage]) -> None:
    s = open_file()
    s.append(ents(1, 10, term=1))
    s.sync()
    offset = s._offsets[4] + 20  # inside entry 5's payload
    s.close()
    seg = segment_path(s)
    blob = bytearray(seg.read_bytes())
    blob[offset] ^= 0x40
    seg.write_bytes(bytes(blob))

    with pytest.raises(
        StorageCorrupt, match=rf"{seg.name}: offset {offset - 20}: damaged record \(entry 5\)"
    ):
        open_file()


def test_a_commit_index_beyond_the_log_refuses_to_open(open_file: Callable[..., FileStorage]) -> None:
    s = open_file()
    s.append(ents(1, 5, term=1))
    s.set_hard_state(HardState(1, "c1", commit=5))
    s.sync()
    s.close()
    seg = segment_path(s)
    os.truncate(seg, seg.stat().st_size - 1)  # synced data lost under the commit index

    with pytest.raises(
        StorageCorrupt, match=r"hardstate: offset \d+: commit index 5 is beyond the last log index 4"
    ):
        open_file()


def test_a_damaged_hard_state_refuses_to_open(open_file: Callable[..., FileStorage]) -> None:
    s = open_file()
    s.set_hard_state(HardState(2, "c1", 0))
    s.sync()
    s.close()
    hs = s.path / HARDSTATE_FILE
    blob = bytearray(hs.read_bytes())
    blob[-1] ^= 1
    hs.write_bytes(bytes(blob))
    with pytest.raises(StorageCorrupt, match=r"hardstate: offset 16: .*checksum"):
        open_file()


# -- crash in the middle of a compaction -------------------------------------------------------


def compaction_states(tmp_path: Path) -> tuple[Path, Path, tuple[object, ...], tuple[object, ...]]:
    """A directory before and a copy after `compact`, with the state each must reopen to."""
    before_dir, after_dir = tmp_path / "before", tmp_path / "after"
    with FileStorage(before_dir, "c1") as s:
        s.append(ents(1, 6, term=1))
        s.set_hard_state(HardState(1, "c1", 6))
        s.sync()
        old = everything(s)
    shutil.copytree(before_dir, after_dir)
    with FileStorage(after_dir, "c1") as s:
        s.compact(Snapshot(4, 1, ("c1",), (), b"upto4"))
        new = everything(s)
    return before_dir, after_dir, old, new


def test_crash_after_writing_the_new_segment_reopens_the_old_state(tmp_path: Path) -> None:
    before_dir, after_dir, old, _ = compaction_states(tmp_path)
    shutil.copy(after_dir / segment_name(1), before_dir / segment_name(1))  # step 1 done, no snapshot yet
    (before_dir / (SNAPSHOT_FILE + ".tmp")).write_bytes(b"half a snapsh")  # step 2 torn
    with FileStorage(before_dir, "c1") as s:
        assert everything(s) == old
    assert sorted(p.name for p in before_dir.iterdir()) == [HARDSTATE_FILE, segment_name(0), META_FILE]


def test_crash_after_the_new_snapshot_reopens_the_new_state(tmp_path: Path) -> None:
    _, after_dir, _, new = compaction_states(tmp_path)
    old_segment = (tmp_path / "before" / segment_name(0)).read_bytes()
    (after_dir / segment_name(0)).write_bytes(old_segment)  # step 3 (delete the old segment) not done
    with FileStorage(after_dir, "c1") as s:
        assert everything(s) == new
        s.append(ents(7, 7, term=2))
        s.sync()
    assert not (after_dir / segment_name(0)).exists()
    with FileStorage(after_dir, "c1") as s:
        assert s.entries(5, 8) == ents(5, 6, term=1) + ents(7, 7, term=2)


def test_a_missing_live_segment_refuses_to_open(tmp_path: Path) -> None:
    _, after_dir, _, _ = compaction_states(tmp_path)
    (after_dir / segment_name(1)).unlink()
    with pytest.raises(StorageCorrupt, match="live log segment is missing"):
        FileStorage(after_dir, "c1")


# -- identity ----------------------------------------------------------------------------------


def test_another_members_directory_refuses_to_open(open_file: Callable[..., FileStorage]) -> None:
    open_file("c1").close()
    with pytest.raises(MemberMismatch, match="holds the log of member 'c1', not 'c2'"):
        open_file("c2")


def test_a_foreign_directory_refuses_to_open(tmp_path: Path) -> None:
    (tmp_path / "raft").mkdir()
    (tmp_path / "raft" / "CURRENT").write_text("MANIFEST-000001\n")
    with pytest.raises(StorageCorrupt, match="not a KeychainDB raft log directory"):
        FileStorage(tmp_path / "raft", "c1")


def test_a_foreign_file_format_refuses_to_open(tmp_path: Path) -> None:
    with FileStorage(tmp_path / "raft", "c1"):
        pass
    (tmp_path / "raft" / META_FILE).write_bytes(b"SQLite format 3\0" + b"\0" * 64)
    with pytest.raises(StorageCorrupt, match=r"meta: offset 0: not a KeychainDB META file"):
        FileStorage(tmp_path / "raft", "c1")


def test_a_second_opener_of_the_same_directory_is_refused(open_file: Callable[..., FileStorage]) -> None:
    open_file()
    with pytest.raises(StorageError, match="in use by another process"):
        open_file()


# -- FileStorage, reopened at random points, behaves exactly like MemoryStorage ----------------


class AgreesWithMemoryStorage(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="raftlog-")
        self.file = FileStorage(self.dir, "c1")
        self.model = MemoryStorage()

    def both(self, op: Callable[[RaftStorage], object]) -> None:
        outcomes = []
        for s in (self.model, self.file):
            try:
                op(s)
                outcomes.append("ok")
            except StorageError as exc:
                outcomes.append(type(exc).__name__)
        assert outcomes[0] == outcomes[1], outcomes

    @rule(
        back=st.integers(-1, 4), count=st.integers(1, 5), term=st.integers(1, 5), data=st.binary(max_size=8)
    )
    def append(self, back: int, count: int, term: int, data: bytes) -> None:
        # Raft never replaces committed entries; a commit index past the log is corruption on reopen.
        lo = max(self.model.last_index() + 1 - back, self.model.hard_state().commit + 1)
        self.both(lambda s: s.append([Entry(i, term, EntryType.NORMAL, data) for i in range(lo, lo + count)]))

    @rule(term=st.integers(0, 9), vote=st.sampled_from(["", "c1", "c2"]), commit=st.integers(0, 3))
    def hard_state(self, term: int, vote: str, commit: int) -> None:
        commit = min(commit, self.model.last_index())
        self.both(lambda s: s.set_hard_state(HardState(term, vote, commit)))

    @rule(ahead=st.integers(0, 4), data=st.binary(max_size=8))
    def compact(self, ahead: int, data: bytes) -> None:
        index = self.model.snapshot().index + ahead
        term = self.model.term(index) if self.model.first_index() <= index <= self.model.last_index() else 0
        self.both(lambda s: s.compact(Snapshot(index, term, ("c1", "c2"), (), data)))

    @rule(ahead=st.integers(0, 6), term=st.integers(1, 9))
    def apply_snapshot(self, ahead: int, term: int) -> None:
        snap = Snapshot(self.model.last_index() + ahead, term, ("c1",), ("c2",), b"snap")
        self.both(lambda s: s.apply_snapshot(snap))

    @rule()
    def sync_and_reopen(self) -> None:
        self.file.sync()
        self.file.close()
        self.file = FileStorage(self.dir, "c1")

    @invariant()
    def same_state(self) -> None:
        assert everything(self.file) == everything(self.model)
        snap_index = self.model.snapshot().index
        assert self.file.term(snap_index) == self.model.term(snap_index)

    def teardown(self) -> None:
        self.file.close()
        shutil.rmtree(self.dir)


TestAgreesWithMemoryStorage = AgreesWithMemoryStorage.TestCase
TestAgreesWithMemoryStorage.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
