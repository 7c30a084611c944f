"""CRAQ against tail-only reads on one static 3-node chain, driven over gRPC.

Starts three `keychain node --static` processes on 127.0.0.1 (real RocksDB in a temporary
directory), configures them n1 (head) -> n2 -> n3 (tail) and then measures strong reads sent two
ways, one right after the other on the same chain:

- CRAQ: reads spread round-robin over all three nodes; a node whose latest version of a key is
  dirty asks the tail for the committed version (a version query);
- tail-only: every read goes to the tail, as in plain chain replication (no apportioned queries).

under two loads:

- read-only: the key space is written once, then only read;
- read-mostly: `--writers` clients keep writing the same keys through the head meanwhile, so some
  reads find their key dirty at the head or the middle and need a version query.

The chain is driven directly over gRPC (no proxy): what is measured is the nodes. Reads travel in
ReadBatch calls of `--batch` keys, as the proxy sends them; latency is that of one call. For each
run it prints reads/s, p50/p99 latency, the share of reads that needed a version query, writes/s,
and per node the reads served and the CPU used (from /proc), with CRAQ/tail ratios and one JSON line.

On a machine with fewer cores than processes the nodes share the CPU, so spreading reads cannot
add capacity there; the CPU per read per node is the honest figure of what spreading buys: with
CRAQ every node spends about the same per read, so with a core per node reads/s would scale with
the chain's length, while tail-only reads are bounded by one node's core.

    PYTHONSAFEPATH=1 .venv/bin/python bench/craq_vs_tail.py [--seconds 5] [--readers 32] [--batch 8]
        [--keys 500] [--writers 2] [--write-batch 16] [--value-size 100]

The node processes are started and stopped by hand: three children and a line each to wait for
need nothing a library would add.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc

from keychain.proto import chain_pb2, chain_pb2_grpc

IDS = ("n1", "n2", "n3")
ROLES = {"n1": "head", "n2": "middle", "n3": "tail"}
CHAIN = "bench"
MAX_SECONDS = 60.0  # per run; four runs: the benchmark stays bounded
START_TIMEOUT = 30.0
CALL_TIMEOUT = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MODES = ("tail", "craq")
LOADS = ("read-only", "read-mostly")
RESULT_PREFIX = "BENCH_RESULT "


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


# ---- figures ----


def percentile(samples: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `samples`; NaN when there are none."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, int(p / 100 * len(ordered) + 0.5) - 1))]


@dataclass
class NodeFigures:
    """One node over one run: deltas of its counters and of its process's CPU time."""

    served: int
    version_queries: int
    cpu_seconds: float

    def cpu_us_per_read(self) -> float | None:
        return self.cpu_seconds / self.served * 1e6 if self.served else None


@dataclass
class RunResult:
    mode: str
    load: str
    seconds: float
    reads: int
    read_errors: int
    writes: int
    latencies: list[float] = field(repr=False)
    nodes: dict[str, NodeFigures]
    client_cpu_seconds: float

    @property
    def reads_per_s(self) -> float:
        return self.reads / self.seconds

    @property
    def writes_per_s(self) -> float:
        return self.writes / self.seconds

    def queried_share(self) -> float:
        """Share of the reads served that needed a version query to the tail."""
        served = sum(n.served for n in self.nodes.values())
        return sum(n.version_queries for n in self.nodes.values()) / served if served else 0.0

    def node_cpu_us_per_read(self) -> float:
        """All three nodes' CPU per read served, whichever node served it."""
        return sum(n.cpu_seconds for n in self.nodes.values()) / self.reads * 1e6 if self.reads else float("nan")

    def summary(self) -> dict[str, object]:
        return {
            "mode": self.mode, "load": self.load, "seconds": round(self.seconds, 3),
            "reads_per_s": round(self.reads_per_s, 1), "read_errors": self.read_errors,
            "writes_per_s": round(self.writes_per_s, 1),
            "latency_ms": {"p50": round(percentile(self.latencies, 50) * 1e3, 3),
                           "p99": round(percentile(self.latencies, 99) * 1e3, 3)},
            "version_query_share": round(self.queried_share(), 4),
            "node_cpu_us_per_read": round(self.node_cpu_us_per_read(), 1),
            "client_cpu_seconds": round(self.client_cpu_seconds, 3),
            "nodes": {i: asdict(n) | {"cpu_us_per_read": n.cpu_us_per_read()} for i, n in self.nodes.items()},
        }


def ratio(craq: float, tail: float) -> str:
    return f"{craq / tail:.2f}x" if tail else "-"


def report(results: list[RunResult], settings: str) -> str:
    """The table: per load, tail-only and CRAQ side by side with their ratio, then per node."""
    lines = [settings, ""]
    for load in LOADS:
        runs = {r.mode: r for r in results if r.load == load}
        if set(runs) != set(MODES):
            continue
        tail, craq = runs["tail"], runs["craq"]
        lines.append(f"{load:<34}{'tail-only':>11}{'CRAQ':>11}{'CRAQ/tail':>11}")
        rows: list[tuple[str, float, float, str]] = [
            ("reads/s", tail.reads_per_s, craq.reads_per_s, "{:,.0f}"),
            ("read call p50 ms", percentile(tail.latencies, 50) * 1e3, percentile(craq.latencies, 50) * 1e3,
             "{:.2f}"),
            ("read call p99 ms", percentile(tail.latencies, 99) * 1e3, percentile(craq.latencies, 99) * 1e3,
             "{:.2f}"),
            ("reads needing a version query %", tail.queried_share() * 100, craq.queried_share() * 100, "{:.2f}"),
            ("node CPU per read, all nodes us", tail.node_cpu_us_per_read(), craq.node_cpu_us_per_read(), "{:.1f}"),
            ("writes/s (concurrent)", tail.writes_per_s, craq.writes_per_s, "{:,.0f}"),
        ]
        for name, t, c, fmt in rows:
            lines.append(f"  {name:<32}{fmt.format(t):>11}{fmt.format(c):>11}{ratio(c, t):>11}")
        lines.append(f"  {'client CPU cores (load generator)':<32}{tail.client_cpu_seconds / tail.seconds:>11.2f}"
                     f"{craq.client_cpu_seconds / craq.seconds:>11.2f}")
        lines.append(f"  {'read errors':<32}{tail.read_errors:>11}{craq.read_errors:>11}")
        lines.append(f"  {'per node':<22}{'served':>10}{'queried %':>11}{'CPU cores':>11}{'us CPU/read':>13}")
        for i in IDS:
            for run, label in ((tail, f"{i} {ROLES[i]:<7}tail-only"), (craq, f"{'':<10}CRAQ")):
                n = run.nodes[i]
                per_read = n.cpu_us_per_read()
                queried = n.version_queries / n.served * 100 if n.served else 0.0
                lines.append(f"  {label:<22}{n.served:>10,}{queried:>11.2f}{n.cpu_seconds / run.seconds:>11.2f}"
                             f"{'-' if per_read is None else f'{per_read:.1f}':>13}")
        lines.append("")
    return "\n".join(lines)


# ---- the chain ----


@dataclass
class NodeProcess:
    id: str
    proc: subprocess.Popen[bytes]
    address: str


def start_node(node_id: str, root: Path) -> NodeProcess:
    log = (root / f"{node_id}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "keychain", "node", "--id", node_id, "--listen", "127.0.0.1:0",
         "--data-dir", str(root / node_id), "--chain", CHAIN, "--static"],
        stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
    )
    log.close()
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()  # the node prints its address once it serves
    if "listening on" not in line:
        proc.kill()
        raise BenchError(f"node {node_id} did not start; see {root / f'{node_id}.log'}")
    return NodeProcess(node_id, proc, line.rsplit(" ", 1)[1].strip())


def stop_nodes(nodes: list[NodeProcess]) -> None:
    for n in nodes:
        if n.proc.poll() is None:
            n.proc.send_signal(signal.SIGTERM)
    for n in nodes:
        try:
            n.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            n.proc.kill()
            n.proc.wait()
        if n.proc.stdout is not None:
            n.proc.stdout.close()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def key_name(i: int) -> bytes:
    return b"key-%06d" % i


class Driver:
    """The load: gRPC stubs to the three nodes, and the read and write loops of one run."""

    def __init__(self, nodes: list[NodeProcess], args: argparse.Namespace) -> None:
        self.nodes = {n.id: n for n in nodes}
        self.args = args
        self.channels = {n.id: grpc.aio.insecure_channel(n.address) for n in nodes}
        self.stubs = {i: chain_pb2_grpc.ChainNodeStub(ch) for i, ch in self.channels.items()}
        self.epoch = 1
        self.value = b"v" * args.value_size

    async def close(self) -> None:
        for ch in self.channels.values():
            await ch.close()

    async def configure(self) -> None:
        members = [chain_pb2.Member(id=i, address=self.nodes[i].address) for i in IDS]
        config = chain_pb2.ChainConfig(chain=CHAIN, epoch=self.epoch, members=members)
        for i in IDS:
            reply = await self.stubs[i].Configure(chain_pb2.ConfigureRequest(config=config), timeout=CALL_TIMEOUT)
            if reply.error.code != chain_pb2.OK:
                raise BenchError(f"configuring {i} failed: {reply.error.message}")

    async def write(self, ops: list[chain_pb2.WriteOp]) -> int:
        reply = await self.stubs[IDS[0]].Write(chain_pb2.WriteRequest(epoch=self.epoch, ops=ops),
                                               timeout=CALL_TIMEOUT)
        if reply.error.code != chain_pb2.OK:
            raise BenchError(f"the head refused a write: {chain_pb2.Code.Name(reply.error.code)} "
                             f"{reply.error.message}")
        return sum(1 for r in reply.results if r.error.code == chain_pb2.OK)

    async def prefill(self) -> None:
        """Every key written (and committed: the head answers after the tail's ack) before reading."""
        keys = self.args.keys
        for lo in range(0, keys, 256):
            ops = [chain_pb2.WriteOp(key=key_name(i), value=self.value) for i in range(lo, min(keys, lo + 256))]
            if await self.write(ops) != len(ops):
                raise BenchError("the prefill was not fully applied")

    async def snapshot(self) -> dict[str, tuple[int, int, float]]:
        out = {}
        for i in IDS:
            s = await self.stubs[i].GetStatus(chain_pb2.StatusRequest(), timeout=CALL_TIMEOUT)
            out[i] = (s.reads, s.version_queries, process_cpu_seconds(self.nodes[i].proc.pid))
        return out

    async def run(self, mode: str, load: str, seed: int) -> RunResult:
        args = self.args
        targets = [self.stubs[i] for i in (IDS if mode == "craq" else IDS[-1:])]
        writers = args.writers if load == "read-mostly" else 0
        rng = random.Random(seed)
        latencies: list[float] = []
        reads = errors = writes = 0
        before = await self.snapshot()
        client_before = own_cpu_seconds()
        started = time.perf_counter()
        deadline = started + args.seconds

        async def reader(r: int) -> None:
            nonlocal reads, errors
            n = r
            while time.perf_counter() < deadline:
                ops = [chain_pb2.ReadOp(key=key_name(rng.randrange(args.keys))) for _ in range(args.batch)]
                request = chain_pb2.ReadBatchRequest(epoch=self.epoch, ops=ops)
                t0 = time.perf_counter()
                reply = await targets[n % len(targets)].ReadBatch(request, timeout=CALL_TIMEOUT)
                latencies.append(time.perf_counter() - t0)
                if reply.error.code != chain_pb2.OK:
                    raise BenchError(f"a read batch was refused: {reply.error.message}")
                ok = sum(1 for x in reply.results if x.error.code == chain_pb2.OK)
                reads += ok
                errors += len(reply.results) - ok  # every key exists: NOT_FOUND is an error too
                n += 1

        async def writer() -> None:
            nonlocal writes
            while time.perf_counter() < deadline:
                ops = [chain_pb2.WriteOp(key=key_name(rng.randrange(args.keys)), value=self.value)
                       for _ in range(args.write_batch)]
                writes += await self.write(ops)

        await asyncio.gather(*(reader(r) for r in range(args.readers)), *(writer() for _ in range(writers)))
        seconds = time.perf_counter() - started
        client_cpu = own_cpu_seconds() - client_before
        after = await self.snapshot()
        nodes = {i: NodeFigures(after[i][0] - before[i][0], after[i][1] - before[i][1], after[i][2] - before[i][2])
                 for i in IDS}
        return RunResult(mode, load, seconds, reads, errors, writes, latencies, nodes, client_cpu)


async def bench(args: argparse.Namespace, nodes: list[NodeProcess]) -> list[RunResult]:
    driver = Driver(nodes, args)
    try:
        await driver.configure()
        await driver.prefill()
        results = []
        for load in LOADS:
            for mode in MODES:
                print(f"{load}, {mode}: {args.seconds:g}s ...", file=sys.stderr, flush=True)
                results.append(await driver.run(mode, load, seed=len(results)))
        return results
    finally:
        await driver.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each of the four runs")
    p.add_argument("--readers", type=int, default=32, help="concurrent read clients")
    p.add_argument("--batch", type=int, default=8, help="keys per ReadBatch call")
    p.add_argument("--keys", type=int, default=500, help="size of the key space (small: writes hit read keys)")
    p.add_argument("--writers", type=int, default=2, help="concurrent write clients in the read-mostly load")
    p.add_argument("--write-batch", type=int, default=16, help="puts per WriteRequest")
    p.add_argument("--value-size", type=int, default=100)
    args = p.parse_args(argv)
    if not 0 < args.seconds <= MAX_SECONDS:
        p.error(f"--seconds must be in (0, {MAX_SECONDS:g}]")
    for name in ("readers", "batch", "keys", "write_batch", "value_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.writers < 0:
        p.error("--writers must not be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = (f"static chain n1 -> n2 -> n3 over gRPC; {args.readers} readers x {args.batch} keys per ReadBatch "
                f"(strong), {args.keys} keys of {args.value_size} bytes, {args.seconds:g}s per run; read-mostly: "
                f"{args.writers} writers x {args.write_batch} puts per WriteRequest; {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="keychain-craq-bench-") as tmp:
        nodes: list[NodeProcess] = []
        try:
            for i in IDS:
                nodes.append(start_node(i, Path(tmp)))
            try:
                import uvloop
                results = uvloop.run(bench(args, nodes))
            except ImportError:
                results = asyncio.run(bench(args, nodes))
        except BenchError as e:
            print(f"craq_vs_tail: {e}", file=sys.stderr)
            return 1
        finally:
            stop_nodes(nodes)
    print(report(results, settings))
    print(RESULT_PREFIX + json.dumps({"benchmark": "craq-vs-tail", "config": vars(args),
                                      "runs": [r.summary() for r in results]}))
    print("reproduce: PYTHONSAFEPATH=1 .venv/bin/python bench/craq_vs_tail.py "
          + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
