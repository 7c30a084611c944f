"""The RocksDB store on a volume that fills up: a write RocksDB refuses for want of space raises
StorageFull with none of its records applied, the store keeps answering reads, and once space is back
the next apply reopens the database and writes, with everything applied before still there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from keychain.node.messages import Entry, EntryKind
from keychain.node.storage import RocksVersionStore
from keychain.node.versions import AppendEntries, Commit, StorageFull

MiB = 1 << 20

pytestmark = pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0,
                                reason="mounting a tmpfs volume needs root on Linux")


@pytest.fixture
def volume(tmp_path: Path):
    where = tmp_path / "volume"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={16 * MiB}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)]).returncode != 0:
            subprocess.run(["umount", "-l", str(where)])


def put(seq: int, size: int = 128 * 1024) -> AppendEntries:
    return AppendEntries((Entry(seq, f"r{seq}", f"k{seq}".encode(), EntryKind.PUT, os.urandom(size)),))


def test_a_full_volume_refuses_whole_writes_and_the_store_resumes_once_space_is_back(volume: Path):
    filler = volume / "filler"
    filler.write_bytes(b"\0" * (8 * MiB))
    store = RocksVersionStore(volume / "db", "n1", "c")
    try:
        seq = 0
        with pytest.raises(StorageFull):
            for seq in range(1, 10_000):
                store.apply([put(seq), Commit(seq)])
                store.sync()
        failed = seq
        st = store.state()
        assert (st.last_seq, st.committed_seq) == (failed - 1, failed - 1), "nothing of the refused call applied"
        assert store.clean(f"k{failed - 1}".encode()) is not None, "reads are still served"
        with pytest.raises(StorageFull):
            store.apply([put(failed), Commit(failed)])  # still full: the reopen fails the same way

        filler.unlink()
        store.apply([put(failed), Commit(failed)])
        store.sync()
        assert store.state().last_seq == failed
        assert all(store.clean(f"k{s}".encode()) is not None for s in range(1, failed + 1))
    finally:
        store.close()
    reopened = RocksVersionStore(volume / "db", "n1", "c")
    assert reopened.state().committed_seq == failed
    reopened.close()
