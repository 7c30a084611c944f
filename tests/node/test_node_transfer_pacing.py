"""The state transfers a node sends keep to its `--transfer-rate-mb`: a real `ChainNode` over real
RocksDB streams its keys to a joining successor (the test reads the Transfer stream itself), on a
clock the test owns, so the pacing the shell decided is checked exactly and costs no wall time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from keychain.node.core import CoreOptions
from keychain.node.messages import ChainConfig, Code, Member, MemberState, OpKind, WriteOp
from keychain.node.server import ChainNode
from keychain.node.storage import RocksVersionStore
from keychain.node.transfer_rate import MB

from keychain.proto import chain_pb2

CHAIN = "main"
CHUNK_BYTES = 8192  # the largest chunk payload, and so the bucket's burst
KEYS = 600
START = 1000.0  # the node's clock when the transfer begins


class ManualClock:
    """Time that moves only when the node sleeps; it records every sleep."""

    def __init__(self) -> None:
        self.t = START
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


class NoContext:
    async def abort(self, code: object, details: str) -> None:
        raise AssertionError(f"the transfer was aborted: {code} {details}")


async def sent_transfer(tmp_path: Path, rate_mb: float) -> tuple[ChainNode, ManualClock, list[tuple[float, int]]]:
    """n1 holds KEYS keys, then n2 joins after it and takes a state transfer: each chunk as
    (the clock when it was sent, its bytes)."""
    clock = ManualClock()
    node = ChainNode("n1", RocksVersionStore(tmp_path / "n1", "n1", CHAIN), CoreOptions(max_batch_bytes=CHUNK_BYTES),
                     clock=clock.now, sleep=clock.sleep, transfer_rate_mb=rate_mb)
    await node.start("127.0.0.1:0")
    n1 = Member("n1", "", MemberState.ACTIVE)
    assert node.configure(ChainConfig(CHAIN, 1, (n1,)), None).ok
    for lo in range(0, KEYS, 100):
        ops = [WriteOp(f"w{i}", b"key-%04d" % i, OpKind.PUT, b"v" * 100) for i in range(lo, lo + 100)]
        reply = await asyncio.wait_for(node.write(1, ops), 10)
        assert all(r.error.code == Code.OK for r in reply.results)
    joining = Member("n2", "127.0.0.1:1", MemberState.SYNCING)
    assert node.configure(ChainConfig(CHAIN, 2, (n1, joining)), None).ok
    sent = []
    request = chain_pb2.TransferRequest(epoch=2, from_id="n2")
    async for pb in node.serve_transfer(request, NoContext()):  # type: ignore[arg-type]
        sent.append((clock.now(), pb.ByteSize()))
    return node, clock, sent


async def test_a_transfer_is_sent_no_faster_than_the_nodes_rate(tmp_path: Path) -> None:
    rate = 0.01 * MB  # 10 kB/s: the 600 keys (about 70 kB) take several seconds of the node's clock
    node, clock, sent = await sent_transfer(tmp_path, rate_mb=0.01)
    try:
        total = sum(size for _, size in sent)
        assert total > 5 * CHUNK_BYTES and len(sent) > 5
        so_far = 0
        for at, size in sent:  # through every chunk: no more than the burst plus the rate since the start
            so_far += size
            assert so_far <= CHUNK_BYTES + rate * (at - START) + 1e-6, (at, so_far)
        assert clock.now() - START >= (total - CHUNK_BYTES) / rate - 1e-6
        assert len(clock.sleeps) >= len(sent) - 2  # paced chunk by chunk, not in one wait at the end
        assert node.metrics.transfer_sent_bytes._value.get() == total
        assert node.metrics.transfer_paced_seconds._value.get() == pytest.approx(sum(clock.sleeps))
    finally:
        await node.stop(grace=0)


async def test_rate_zero_sends_without_pacing(tmp_path: Path) -> None:
    node, clock, sent = await sent_transfer(tmp_path, rate_mb=0)
    try:
        assert sum(size for _, size in sent) > 5 * CHUNK_BYTES
        assert clock.sleeps == []
        assert node.metrics.transfer_paced_seconds._value.get() == 0
    finally:
        await node.stop(grace=0)
