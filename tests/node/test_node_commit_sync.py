"""Which Readys the node fsyncs: entries, configurations and state installs always; a Ready that
only records a commit point, trims the log or forgets old request ids rides on the next fsync
(`Ready.must_sync`). The simulator crashes nodes between the two and checks linearizability."""

from __future__ import annotations

import asyncio
from pathlib import Path

from keychain.node.core import Ready
from keychain.node.messages import ChainConfig, Entry, EntryKind, Member, MemberState, OpKind, WriteOp
from keychain.node.server import ChainNode
from keychain.node.storage import RocksVersionStore
from keychain.node.versions import (
    AppendEntries,
    Commit,
    ForgetOutcomes,
    InstallKeys,
    ResetLog,
    SaveConfig,
    TrimLog,
    Truncate,
)

CHAIN = "main"
SOLO = ChainConfig(CHAIN, 1, (Member("solo", "", MemberState.ACTIVE),))


def test_only_commit_points_trims_and_forgotten_ids_skip_the_fsync() -> None:
    entry = Entry(1, "r1", b"k", EntryKind.PUT, b"v")
    assert not Ready(persist=[Commit(1)]).must_sync
    assert not Ready(persist=[Commit(9), TrimLog(3), ForgetOutcomes(2)]).must_sync
    assert not Ready().must_sync
    for record in (AppendEntries((entry,)), SaveConfig(SOLO), Truncate(0), ResetLog(4), InstallKeys((), ())):
        assert Ready(persist=[Commit(1), record]).must_sync, record


class CountingStore(RocksVersionStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path, "solo", CHAIN)
        self.synced = 0

    def sync(self) -> None:
        super().sync()
        self.synced += 1


async def test_a_write_costs_one_fsync_its_commit_rides_on_the_next(tmp_path: Path) -> None:
    # A single-node chain: the write's entry is fsynced, then the commit (a Ready of its own) releases
    # the reply without a second fsync. The writes are in the log the store reopens with.
    store = CountingStore(tmp_path / "solo")
    node = ChainNode("solo", store, static=True)
    await node.start("127.0.0.1:0")
    try:
        assert node.configure(SOLO, None).ok
        for _ in range(200):
            if store.synced:
                break
            await asyncio.sleep(0.01)
        before = store.synced
        for i in range(3):
            reply = await asyncio.wait_for(node.write(1, [WriteOp(f"w{i}", b"k%d" % i, OpKind.PUT, b"v")]), 10)
            assert [r.error.ok for r in reply.results] == [True]
        assert store.synced - before == 3
        assert store.state().last_seq == 3
    finally:
        await node.stop(grace=0)
    reopened = RocksVersionStore(tmp_path / "solo", "solo", CHAIN)
    try:
        assert [e.key for e in reopened.entries(1, 3)] == [b"k0", b"k1", b"k2"]
    finally:
        reopened.close()
