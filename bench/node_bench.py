"""Throughput of a 3-node chain driven over gRPC: batched writes at the head, strong reads on every node.

Starts three `keychain node --static` processes on 127.0.0.1 (real RocksDB under a temporary
directory), configures them head -> middle -> tail, then runs two timed phases:
- writes: `--writers` concurrent clients, each sending WriteRequests of `--batch` puts to the head;
- reads: `--readers` concurrent clients sending strong reads spread round-robin over all three nodes.
Prints writes/s, reads/s, latency percentiles and the command that reproduces the run.

    PYTHONSAFEPATH=1 .venv/bin/python bench/node_bench.py --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from keychain.proto import chain_pb2, chain_pb2_grpc

IDS = ["n1", "n2", "n3"]


def start_node(node_id: str, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "keychain", "node", "--id", node_id, "--listen", "127.0.0.1:0",
         "--data-dir", str(root / node_id), "--chain", "bench", "--static"],
        stdout=subprocess.PIPE, stderr=(root / f"{node_id}.log").open("wb"), stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if "listening on" not in line:
        raise SystemExit(f"node {node_id} did not start; see {root / f'{node_id}.log'}")
    return proc, line.rsplit(" ", 1)[1].strip()


@contextlib.contextmanager
def static_nodes() -> Iterator[dict[str, str]]:
    """The three nodes of IDS as `keychain node --static` processes over a temporary directory, by
    address; stopped (SIGTERM, then SIGKILL after 10 s) and removed on exit."""
    with tempfile.TemporaryDirectory(prefix="keychain-bench-") as tmp:
        procs = []
        try:
            addresses = {}
            for i in IDS:
                proc, addresses[i] = start_node(i, Path(tmp))
                procs.append(proc)
            yield addresses
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()


def percentile(samples: list[float], p: float) -> float:
    if not samples:
        return float("nan")
    samples = sorted(samples)
    return samples[min(len(samples) - 1, int(p / 100 * len(samples)))]


async def write_phase(head: chain_pb2_grpc.ChainNodeStub, epoch: int, writers: int, batch: int,
                      seconds: float, keys: int) -> tuple[int, list[float]]:
    deadline = time.monotonic() + seconds
    done = 0
    latencies: list[float] = []
    value = os.urandom(100)

    async def writer(w: int) -> None:
        nonlocal done
        n = 0
        while time.monotonic() < deadline:
            ops = [chain_pb2.WriteOp(request_id=f"w{w}-{n + i}", key=b"key-%d" % ((w * 7919 + n + i) % keys),
                                     value=value) for i in range(batch)]
            started = time.perf_counter()
            reply = await head.Write(chain_pb2.WriteRequest(epoch=epoch, ops=ops), timeout=30)
            latencies.append(time.perf_counter() - started)
            if reply.error.code != chain_pb2.OK:
                raise SystemExit(f"write failed: {reply.error}")
            done += sum(1 for r in reply.results if r.error.code == chain_pb2.OK)
            n += batch

    started = time.monotonic()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return int(done / (time.monotonic() - started)), latencies


async def read_phase(stubs: list[chain_pb2_grpc.ChainNodeStub], epoch: int, readers: int, seconds: float,
                     keys: int) -> tuple[int, list[float]]:
    deadline = time.monotonic() + seconds
    done = 0
    latencies: list[float] = []

    async def reader(r: int) -> None:
        nonlocal done
        n = r
        while time.monotonic() < deadline:
            stub = stubs[n % len(stubs)]
            started = time.perf_counter()
            reply = await stub.Read(chain_pb2.ReadRequest(epoch=epoch, key=b"key-%d" % (n % keys)), timeout=30)
            latencies.append(time.perf_counter() - started)
            if reply.error.code not in (chain_pb2.OK, chain_pb2.NOT_FOUND):
                raise SystemExit(f"read failed: {reply.error}")
            done += 1
            n += 1

    started = time.monotonic()
    await asyncio.gather(*(reader(r) for r in range(readers)))
    return int(done / (time.monotonic() - started)), latencies


async def run(args: argparse.Namespace, addresses: dict[str, str]) -> None:
    channels = {i: grpc.aio.insecure_channel(a) for i, a in addresses.items()}
    stubs = {i: chain_pb2_grpc.ChainNodeStub(ch) for i, ch in channels.items()}
    config = chain_pb2.ChainConfig(chain="bench", epoch=1, members=[
        chain_pb2.Member(id=i, address=addresses[i]) for i in IDS])
    for i in IDS:
        reply = await stubs[i].Configure(chain_pb2.ConfigureRequest(config=config), timeout=5)
        assert reply.error.code == chain_pb2.OK, reply.error
    await write_phase(stubs["n1"], 1, 1, 1, 0.2, args.keys)  # warm up the links

    wps, wlat = await write_phase(stubs["n1"], 1, args.writers, args.batch, args.seconds, args.keys)
    before = {i: (await stubs[i].GetStatus(chain_pb2.StatusRequest())).reads for i in IDS}
    rps, rlat = await read_phase([stubs[i] for i in IDS], 1, args.readers, args.seconds, args.keys)
    after = {i: (await stubs[i].GetStatus(chain_pb2.StatusRequest())).reads for i in IDS}
    for ch in channels.values():
        await ch.close()

    ms = 1000
    print(f"writes/s: {wps}   ({args.writers} writers x {args.batch} ops per WriteRequest; "
          f"request latency p50 {percentile(wlat, 50) * ms:.1f} ms, p99 {percentile(wlat, 99) * ms:.1f} ms)")
    print(f"reads/s:  {rps}   ({args.readers} readers, strong, spread over 3 nodes; "
          f"latency p50 {percentile(rlat, 50) * ms:.2f} ms, p99 {percentile(rlat, 99) * ms:.2f} ms, "
          f"mean {statistics.fmean(rlat) * ms:.2f} ms)")
    print("reads served per node: " + ", ".join(f"{i} {after[i] - before[i]}" for i in IDS))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each phase")
    p.add_argument("--writers", type=int, default=8)
    p.add_argument("--batch", type=int, default=64, help="ops per WriteRequest")
    p.add_argument("--readers", type=int, default=32)
    p.add_argument("--keys", type=int, default=10_000)
    args = p.parse_args()
    if args.seconds <= 0 or args.seconds > 120:
        raise SystemExit("--seconds must be in (0, 120]")
    with static_nodes() as addresses:
        asyncio.run(run(args, addresses))
    print("reproduce: PYTHONSAFEPATH=1 .venv/bin/python bench/node_bench.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]))


if __name__ == "__main__":
    main()
