"""Watch fan-out at the nodes: events/s delivered to many concurrent Watch streams while writes run,
and the delay from a write's acknowledgement to its event.

Starts three `keychain node --static` processes on 127.0.0.1 (real RocksDB under a temporary
directory), configures them head -> middle -> tail, opens `--watchers` Watch streams over the whole
key space (spread round-robin over the three nodes, all from the current version, once every node serves), then runs
`--writers` clients writing batches of `--batch` puts to the head for `--seconds`. Prints the events
delivered per second (all watchers together), the delay from each write's acknowledgement at its
client to its arrival at each watcher (p50, p99; negative when a watcher on a node that commits
earlier than the head sees the change before the head's reply reaches the writer), and checks that
every watcher received every acknowledged write exactly once, in version order.

    PYTHONSAFEPATH=1 .venv/bin/python bench/watch_fanout_node.py --seconds 5 --watchers 100
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from node_bench import IDS, percentile, static_nodes

from keychain.proto import chain_pb2, chain_pb2_grpc


async def run(args: argparse.Namespace, addresses: dict[str, str]) -> None:
    channels = {i: grpc.aio.insecure_channel(a) for i, a in addresses.items()}
    stubs = {i: chain_pb2_grpc.ChainNodeStub(ch) for i, ch in channels.items()}
    config = chain_pb2.ChainConfig(chain="bench", epoch=1, members=[
        chain_pb2.Member(id=i, address=addresses[i]) for i in IDS])
    for i in IDS:
        reply = await stubs[i].Configure(chain_pb2.ConfigureRequest(config=config), timeout=5)
        assert reply.error.code == chain_pb2.OK, reply.error
    # One write, then wait until every node serves (a node not yet level with its predecessor refuses
    # watches like reads): the watches start after it.
    first = await stubs["n1"].Write(chain_pb2.WriteRequest(epoch=1, ops=[chain_pb2.WriteOp(key=b"warm-up")]), timeout=10)
    start_version = first.results[0].version
    for i in IDS:
        while True:
            probe = stubs[i].Watch(chain_pb2.WatchRequest(epoch=1, after_version=start_version))
            first_batch = await probe.read()
            probe.cancel()
            if first_batch.error.code == chain_pb2.OK:
                break
            await asyncio.sleep(0.05)

    acked: dict[int, float] = {}  # version -> when its writer got the acknowledgement
    received: list[list[tuple[int, float]]] = [[] for _ in range(args.watchers)]
    ready = asyncio.Event()
    opened = 0

    async def watcher(w: int) -> None:
        nonlocal opened
        call = stubs[IDS[w % len(IDS)]].Watch(chain_pb2.WatchRequest(epoch=1, after_version=start_version))
        got = received[w]
        try:
            async for batch in call:
                if batch.error.code != chain_pb2.OK:
                    raise SystemExit(f"watch {w} ended: {batch.error}")
                if not got and not batch.events and opened < args.watchers:
                    opened += 1
                    if opened == args.watchers:
                        ready.set()
                now = time.perf_counter()
                got.extend((e.version, now) for e in batch.events)
        except asyncio.CancelledError:
            call.cancel()
            raise

    async def writer(wid: int, deadline: float) -> int:
        n = 0
        value = b"x" * args.value_size
        while time.perf_counter() < deadline:
            ops = [chain_pb2.WriteOp(request_id=f"w{wid}-{n + i}", key=b"key-%d" % ((wid * 7919 + n + i) % args.keys),
                                     value=value) for i in range(args.batch)]
            reply = await stubs["n1"].Write(chain_pb2.WriteRequest(epoch=1, ops=ops), timeout=30)
            now = time.perf_counter()
            if reply.error.code != chain_pb2.OK:
                raise SystemExit(f"write failed: {reply.error}")
            for r in reply.results:
                acked[r.version] = now
            n += args.batch
        return n

    watchers = [asyncio.create_task(watcher(w)) for w in range(args.watchers)]
    await asyncio.wait_for(ready.wait(), 30)
    started = time.perf_counter()
    written = sum(await asyncio.gather(*(writer(w, started + args.seconds) for w in range(args.writers))))
    last = max(acked)
    drain_deadline = time.perf_counter() + 10
    while any(not got or got[-1][0] < last for got in received) and time.perf_counter() < drain_deadline:
        await asyncio.sleep(0.01)
    elapsed = max(t for got in received for _, t in got) - started
    for task in watchers:
        task.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)
    for ch in channels.values():
        await ch.close()

    expected = sorted(acked)
    wrong = sum(1 for got in received if [v for v, _ in got] != expected)
    delays = [t - acked[v] for got in received for v, t in got]
    events = sum(len(got) for got in received)
    ms = 1000
    print(f"writes: {written} acknowledged in {args.seconds:g} s ({written / args.seconds:.0f}/s, "
          f"{args.writers} writers x {args.batch} puts per request)")
    print(f"events delivered: {events} to {args.watchers} watchers on {len(IDS)} nodes, "
          f"{events / elapsed:.0f}/s")
    print(f"delay from write ack to event: p50 {percentile(delays, 50) * ms:.1f} ms, "
          f"p99 {percentile(delays, 99) * ms:.1f} ms, max {max(delays) * ms:.1f} ms")
    print(f"watchers that missed, repeated or reordered an acknowledged write: {wrong}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=5.0, help="duration of the write phase")
    p.add_argument("--watchers", type=int, default=100)
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--batch", type=int, default=16, help="puts per WriteRequest")
    p.add_argument("--value-size", type=int, default=100)
    p.add_argument("--keys", type=int, default=10_000)
    args = p.parse_args()
    if not 0 < args.seconds <= 120 or not 1 <= args.watchers <= 1000:
        raise SystemExit("--seconds must be in (0, 120] and --watchers in [1, 1000]")
    with static_nodes() as addresses:
        asyncio.run(run(args, addresses))
    print("reproduce: PYTHONSAFEPATH=1 .venv/bin/python bench/watch_fanout_node.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]))


if __name__ == "__main__":
    main()
