"""Snapshot ranges and transactions on a 3-node chain over gRPC, straight to the nodes (no proxy).

Starts three `keychain node --static` processes (real RocksDB under a temporary directory), loads
`--keys` keys, then runs timed phases:
- ranges: for each limit in `--limits` and each node, `--readers` concurrent clients send strong
  Range requests of that limit from random start keys to that one node (each page asks the tail
  for its commit point, unless the node is the tail);
- transactions: `--writers` concurrent clients each run a 2-key compare-and-swap on their own pair
  of keys ("if a's version is the one I last wrote, put a and b"), sent to the head.
Prints pages/s and items/s per node and limit, transactions/s and latency percentiles.

    PYTHONSAFEPATH=1 .venv/bin/python bench/range_txn_bench.py --seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shlex
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))

from node_bench import IDS, percentile, static_nodes

from keychain.proto import chain_pb2 as pb
from keychain.proto import chain_pb2_grpc

EPOCH = 1


def key(i: int) -> bytes:
    return b"key-%06d" % i


async def load(head: chain_pb2_grpc.ChainNodeStub, keys: int) -> None:
    value = b"v" * 100
    for lo in range(0, keys, 500):
        ops = [pb.WriteOp(request_id=f"load-{i}", key=key(i), value=value) for i in range(lo, min(keys, lo + 500))]
        reply = await head.Write(pb.WriteRequest(epoch=EPOCH, ops=ops), timeout=30)
        assert reply.error.code == pb.OK, reply.error


async def range_phase(stub: chain_pb2_grpc.ChainNodeStub, readers: int, limit: int, keys: int,
                      seconds: float) -> tuple[float, float, list[float]]:
    deadline = time.monotonic() + seconds
    pages = items = 0
    latencies: list[float] = []
    rng = random.Random(limit)

    async def reader() -> None:
        nonlocal pages, items
        while time.monotonic() < deadline:
            start = key(rng.randrange(max(1, keys - limit)))
            started = time.perf_counter()
            reply = await stub.Range(pb.RangeRequest(epoch=EPOCH, start=start, limit=limit), timeout=30)
            latencies.append(time.perf_counter() - started)
            if reply.error.code != pb.OK:
                raise SystemExit(f"range failed: {reply.error}")
            pages += 1
            items += len(reply.items)

    began = time.monotonic()
    await asyncio.gather(*(reader() for _ in range(readers)))
    elapsed = time.monotonic() - began
    return pages / elapsed, items / elapsed, latencies


async def txn_phase(head: chain_pb2_grpc.ChainNodeStub, writers: int, seconds: float) -> tuple[float, int, list[float]]:
    deadline = time.monotonic() + seconds
    done = failed = 0
    latencies: list[float] = []

    async def writer(w: int) -> None:
        nonlocal done, failed
        a, b = b"cas-%d-a" % w, b"cas-%d-b" % w
        version = 0  # a's version as this writer last wrote it (0: absent)
        n = 0
        while time.monotonic() < deadline:
            n += 1
            txn = pb.Txn(compare=[pb.Compare(key=a, result=pb.EQUAL, version=version)],
                         success=[pb.TxnOp(kind=pb.TXN_PUT, key=a, value=b"%d" % n),
                                  pb.TxnOp(kind=pb.TXN_PUT, key=b, value=b"%d" % n)])
            op = pb.WriteOp(request_id=f"cas-{w}-{n}", kind=pb.TXN, txn=txn)
            started = time.perf_counter()
            reply = await head.Write(pb.WriteRequest(epoch=EPOCH, ops=[op]), timeout=30)
            latencies.append(time.perf_counter() - started)
            result = reply.results[0] if reply.results else None
            if reply.error.code != pb.OK or result is None or result.error.code != pb.OK:
                raise SystemExit(f"transaction failed: {reply}")
            if result.succeeded:
                version = result.version
                done += 1
            else:
                failed += 1

    began = time.monotonic()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return done / (time.monotonic() - began), failed, latencies


async def run(args: argparse.Namespace, addresses: dict[str, str]) -> None:
    channels = {i: grpc.aio.insecure_channel(a, options=[("grpc.max_receive_message_length", 16 << 20)])
                for i, a in addresses.items()}
    stubs = {i: chain_pb2_grpc.ChainNodeStub(ch) for i, ch in channels.items()}
    config = pb.ChainConfig(chain="bench", epoch=EPOCH, members=[pb.Member(id=i, address=addresses[i]) for i in IDS])
    for i in IDS:
        reply = await stubs[i].Configure(pb.ConfigureRequest(config=config), timeout=5)
        assert reply.error.code == pb.OK, reply.error
    await load(stubs["n1"], args.keys)
    ms = 1000
    for limit in args.limits:
        for i, role in zip(IDS, ("head", "middle", "tail"), strict=True):
            pages, items, lat = await range_phase(stubs[i], args.readers, limit, args.keys, args.seconds)
            print(f"range limit {limit:>5} at {i} ({role:>6}): {pages:8.0f} pages/s {items:10.0f} items/s  "
                  f"(p50 {percentile(lat, 50) * ms:.1f} ms, p99 {percentile(lat, 99) * ms:.1f} ms)")
    tps, failed, lat = await txn_phase(stubs["n1"], args.writers, args.seconds)
    print(f"2-key compare-and-swap transactions/s: {tps:.0f}  ({args.writers} writers, {failed} compares failed; "
          f"p50 {percentile(lat, 50) * ms:.1f} ms, p99 {percentile(lat, 99) * ms:.1f} ms)")
    for ch in channels.values():
        await ch.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=3.0, help="duration of each phase")
    p.add_argument("--keys", type=int, default=20_000)
    p.add_argument("--limits", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--readers", type=int, default=8)
    p.add_argument("--writers", type=int, default=16)
    args = p.parse_args()
    if not 0 < args.seconds <= 120 or args.keys < 1:
        raise SystemExit("--seconds must be in (0, 120] and --keys positive")
    with static_nodes() as addresses:
        asyncio.run(run(args, addresses))
    print("reproduce: PYTHONSAFEPATH=1 .venv/bin/python bench/range_txn_bench.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]))


if __name__ == "__main__":
    main()
