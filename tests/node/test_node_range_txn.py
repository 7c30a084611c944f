"""Transactions and snapshot ranges on a real `ChainNode` over real RocksDB, through its gRPC API: a
single-node chain (head and tail at once), so every write commits once it is on disk.

What the scenarios in tests/node/scenarios (txn.txt, range_snapshot.txt) show on pure cores, here
through the Write and Range RPCs, the protobuf mapping and the RocksDB store, across a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from keychain.node.core import ChainCore
from keychain.node.messages import ChainConfig, KeyVersion, Member
from keychain.node.server import ChainNode
from keychain.node.storage import RocksVersionStore
from keychain.node.versions import InstallKeys, MemoryVersionStore

from keychain.proto import chain_pb2 as pb
from keychain.proto import chain_pb2_grpc

CHAIN = "main"


class Node:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.node: ChainNode | None = None
        self.channel: grpc.aio.Channel | None = None
        self.stub: chain_pb2_grpc.ChainNodeStub

    async def start(self) -> None:
        self.node = ChainNode("n1", RocksVersionStore(self.root / "n1", "n1", CHAIN))
        port = await self.node.start("127.0.0.1:0")
        assert self.node.configure(ChainConfig(CHAIN, 1, (Member("n1", ""),)), None).ok
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.stub = chain_pb2_grpc.ChainNodeStub(self.channel)

    async def stop(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.node is not None:
            await self.node.stop(grace=0)
        self.node = self.channel = None

    async def txn(self, rid: str, compare: list[pb.Compare], success: list[pb.TxnOp],
                  failure: list[pb.TxnOp] | None = None) -> pb.WriteResult:
        op = pb.WriteOp(request_id=rid, kind=pb.TXN, txn=pb.Txn(compare=compare, success=success, failure=failure or []))
        reply = await self.stub.Write(pb.WriteRequest(epoch=1, ops=[op]), timeout=10)
        assert reply.error.code == pb.OK, reply.error
        return reply.results[0]

    async def range(self, start: bytes = b"", end: bytes = b"", **kw: object) -> pb.RangeReply:
        return await self.stub.Range(pb.RangeRequest(epoch=1, start=start, end=end, **kw), timeout=10)  # type: ignore[arg-type]


def put(key: bytes, value: bytes) -> pb.TxnOp:
    return pb.TxnOp(kind=pb.TXN_PUT, key=key, value=value)


def get(key: bytes) -> pb.TxnOp:
    return pb.TxnOp(kind=pb.TXN_GET, key=key)


def items(reply: pb.RangeReply) -> list[tuple[bytes, bytes, int]]:
    return [(i.key, i.value, i.version) for i in reply.items]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    n = Node(tmp_path)
    await n.start()
    try:
        yield n
    finally:
        await n.stop()


async def test_a_transaction_writes_its_branch_at_one_version_and_a_failing_compare_writes_nothing(node: Node) -> None:
    created = await node.txn("t1", [pb.Compare(key=b"a", exists=False)], [put(b"a", b"1"), put(b"b", b"1"), get(b"a")])
    assert created.error.code == pb.OK and created.succeeded
    assert [(r.found, r.value, r.version) for r in created.results] == [
        (False, b"", created.version), (False, b"", created.version), (True, b"1", created.version)]
    page = await node.range(b"a")
    assert items(page) == [(b"a", b"1", created.version), (b"b", b"1", created.version)]
    assert page.snapshot == created.version and not page.more

    refused = await node.txn("t2", [pb.Compare(key=b"a", value=b"0")], [put(b"a", b"2"), put(b"b", b"2")], [get(b"b")])
    assert not refused.succeeded and [(r.found, r.value) for r in refused.results] == [(True, b"1")]
    assert items(await node.range(b"a")) == [(b"a", b"1", created.version), (b"b", b"1", created.version)]

    again = await node.txn("t1", [pb.Compare(key=b"a", exists=True)], [put(b"a", b"9")])
    assert (again.version, again.succeeded, len(again.results)) == (created.version, True, 3)  # the first outcome

    too_many = pb.WriteOp(request_id="t3", kind=pb.TXN, txn=pb.Txn(success=[get(b"a")] * 129))
    reply = await node.stub.Write(pb.WriteRequest(epoch=1, ops=[too_many]), timeout=10)
    assert reply.results[0].error.code == pb.INVALID_ARGUMENT


async def test_pages_of_one_snapshot_read_the_same_versions_after_later_writes_and_a_restart(node: Node) -> None:
    first = await node.txn("w1", [], [put(b"k1", b"a"), put(b"k2", b"a"), put(b"k3", b"a")])
    page = await node.range(b"k", b"l", limit=1)
    assert items(page) == [(b"k1", b"a", first.version)] and page.more
    later = await node.txn("w2", [], [put(b"k2", b"b"), pb.TxnOp(kind=pb.TXN_DELETE, key=b"k3"), put(b"k0", b"b")])
    rest = await node.range(b"k1\x00", b"l", snapshot=page.snapshot)
    assert items(rest) == [(b"k2", b"a", first.version), (b"k3", b"a", first.version)] and not rest.more
    assert items(await node.range(b"k", b"l", keys_only=True)) == [
        (b"k0", b"", later.version), (b"k1", b"", first.version), (b"k2", b"", later.version)]

    await node.stop()
    await node.start()
    # The transaction's writes came back from the store together; snapshots from before the restart
    # are no longer vouched for (the node does not know what it compacted before).
    assert items(await node.range(b"k")) == [
        (b"k0", b"b", later.version), (b"k1", b"a", first.version), (b"k2", b"b", later.version)]
    old = await node.range(b"k", snapshot=first.version)
    assert old.error.code == pb.COMPACTED and old.compact_version == later.version


def test_a_node_restarted_in_the_middle_of_a_state_transfer_reads_no_snapshot_below_what_it_installed() -> None:
    # The keys installed may be newer than anything committed here, and their older versions were
    # never held: a snapshot between the commit point and them would read a key as absent.
    store = MemoryVersionStore()
    store.apply([InstallKeys((KeyVersion(b"k", 10, False, b"v"),))])
    core = ChainCore("n1", store)
    assert core.committed_seq == 0 and core.compact_version == 10
