"""CRAQ against tail-only reads on static chains of 1 to 7 nodes, driven over gRPC.

For each chain length N in `--nodes` (default 1,3,5,7) it starts N `keychain node --static`
processes on 127.0.0.1 (real RocksDB in a temporary directory), configures them n1 (head) -> ...
-> nN (tail) and then measures strong reads sent two ways, one right after the other on the same
chain:

- CRAQ: reads spread round-robin over all N nodes; a node whose latest version of a key is dirty
  asks the tail for the committed version (a version query);
- tail-only: every read goes to the tail, as in plain chain replication (no apportioned queries).

under two loads:

- read-only: the key space is written once, then only read;
- read-mostly: besides the readers, up to 16 writers send batches of `--batch` puts to the head,
  on the same keys, paced so that puts are `--write-share` (default 10%) of all operations; some
  reads then find their key dirty at a non-tail node and need a version query.

The chain is driven directly over gRPC (no proxy): what is measured is the nodes. Reads travel in
ReadBatch calls of `--batch` keys, as the proxy sends them; latency is that of one call. It prints
the scaling table (strong reads/s per chain length, tail-only and CRAQ, their ratio and the goal
0.9*N), then per chain length: reads/s, p50/p99 latency, the share of reads that needed a version
query, writes/s, and per node the reads served and the CPU used, and one JSON line.

On a machine with fewer cores than processes the nodes share the CPU, so spreading reads cannot
add capacity there. `--member-cpu C` gives each node a cgroup of its own capped at C CPUs (see
bench/member_cpu.py; needs root and the cgroup cpu controller), as if each had a small machine of
its own: then CRAQ reads/s can grow with N while tail-only reads stay bounded by the tail's C. The
load generator (this script's process) stays outside the caps; its CPU is printed too.

    PYTHONSAFEPATH=1 .venv/bin/python bench/craq_vs_tail.py [--nodes 1,3,5,7] [--member-cpu 0.15]
        [--seconds 5] [--readers 32] [--batch 8] [--keys 500] [--write-share 0.1] [--value-size 100]

The node processes are started and stopped by hand: a few children and a line each to wait for
need nothing a library would add.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import member_cpu  # a sibling module of this script, not a package

CHAIN = "bench"
MAX_SECONDS = 60.0  # per run; four runs per chain length: the benchmark stays bounded
MAX_NODES = 9
START_TIMEOUT = 30.0
CALL_TIMEOUT = 30.0
WRITERS = 16  # concurrent write calls at most in the read-mostly load: capped chains write slowly
WRITE_PACE = 0.002  # seconds a writer waits while puts are ahead of their share
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MODES = ("tail", "craq")
LOADS = ("read-only", "read-mostly")
RESULT_PREFIX = "BENCH_RESULT "


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


def node_ids(n: int) -> list[str]:
    return [f"n{i}" for i in range(1, n + 1)]


def role(node_id: str, n: int) -> str:
    i = int(node_id[1:])
    if n == 1:
        return "only"
    return "head" if i == 1 else "tail" if i == n else "middle"


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
    capped_periods: float | None = None  # with --member-cpu: share of CFS periods it hit its cap

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
    member_cpu: float | None = None

    @property
    def chain_length(self) -> int:
        return len(self.nodes)

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
        """All nodes' CPU per read served, whichever node served it."""
        return sum(n.cpu_seconds for n in self.nodes.values()) / self.reads * 1e6 if self.reads else float("nan")

    def summary(self) -> dict[str, object]:
        return {
            "nodes_in_chain": self.chain_length, "member_cpu": self.member_cpu,
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


def goal(chain_length: int) -> float:
    """The CRAQ/tail-only ratio aimed at: 0.9 per node (reads served by every node, not just the tail)."""
    return 0.9 * chain_length


def scaling_table(results: list[RunResult]) -> list[str]:
    """Strong reads/s per chain length and load, tail-only against CRAQ, with the goal 0.9*N."""
    lines = [f"{'nodes':>5}  {'load':<12}{'tail-only/s':>12}{'CRAQ/s':>10}{'CRAQ/tail':>11}{'goal 0.9N':>11}"
             f"{'met':>5}{'writes/s':>10}"]
    for n in sorted({r.chain_length for r in results}):
        for load in LOADS:
            runs = {r.mode: r for r in results if r.load == load and r.chain_length == n}
            if set(runs) != set(MODES):
                continue
            tail, craq = runs["tail"], runs["craq"]
            met = "-" if not tail.reads_per_s else "yes" if craq.reads_per_s / tail.reads_per_s >= goal(n) else "no"
            writes = f"{tail.writes_per_s:,.0f}/{craq.writes_per_s:,.0f}" if load != "read-only" else "-"
            lines.append(f"{n:>5}  {load:<12}{tail.reads_per_s:>12,.0f}{craq.reads_per_s:>10,.0f}"
                         f"{ratio(craq.reads_per_s, tail.reads_per_s):>11}{goal(n):>10.1f}x{met:>5}{writes:>10}")
    return lines


def detail(tail: RunResult, craq: RunResult) -> list[str]:
    """One chain length and load: tail-only and CRAQ side by side with their ratio, then per node."""
    lines = [f"{tail.chain_length} nodes, {tail.load:<24}{'tail-only':>11}{'CRAQ':>11}{'CRAQ/tail':>11}"]
    rows: list[tuple[str, float, float, str]] = [
        ("reads/s", tail.reads_per_s, craq.reads_per_s, "{:,.0f}"),
        ("read call p50 ms", percentile(tail.latencies, 50) * 1e3, percentile(craq.latencies, 50) * 1e3, "{:.2f}"),
        ("read call p99 ms", percentile(tail.latencies, 99) * 1e3, percentile(craq.latencies, 99) * 1e3, "{:.2f}"),
        ("reads needing a version query %", tail.queried_share() * 100, craq.queried_share() * 100, "{:.2f}"),
        ("node CPU per read, all nodes us", tail.node_cpu_us_per_read(), craq.node_cpu_us_per_read(), "{:.1f}"),
        ("writes/s (concurrent)", tail.writes_per_s, craq.writes_per_s, "{:,.0f}"),
    ]
    for name, t, c, fmt in rows:
        lines.append(f"  {name:<32}{fmt.format(t):>11}{fmt.format(c):>11}{ratio(c, t):>11}")
    lines.append(f"  {'client CPU cores (load generator)':<32}{tail.client_cpu_seconds / tail.seconds:>11.2f}"
                 f"{craq.client_cpu_seconds / craq.seconds:>11.2f}")
    lines.append(f"  {'read errors':<32}{tail.read_errors:>11}{craq.read_errors:>11}")
    capped = tail.member_cpu is not None
    lines.append(f"  {'per node':<22}{'served':>10}{'queried %':>11}{'CPU cores':>11}{'us CPU/read':>13}"
                 + (f"{'capped periods':>16}" if capped else ""))
    n = tail.chain_length
    for i in node_ids(n):
        for run, label in ((tail, f"{i} {role(i, n):<7}tail-only"), (craq, f"{'':<10}CRAQ")):
            f = run.nodes[i]
            per_read = f.cpu_us_per_read()
            queried = f.version_queries / f.served * 100 if f.served else 0.0
            line = (f"  {label:<22}{f.served:>10,}{queried:>11.2f}{f.cpu_seconds / run.seconds:>11.2f}"
                    f"{'-' if per_read is None else f'{per_read:.1f}':>13}")
            if capped:
                line += f"{f.capped_periods or 0.0:>16.0%}"
            lines.append(line)
    return lines


def report(results: list[RunResult], settings: str) -> str:
    """The scaling table, then per chain length and load the two modes side by side and per node."""
    lines = [settings, "", *scaling_table(results), ""]
    for n in sorted({r.chain_length for r in results}):
        for load in LOADS:
            runs = {r.mode: r for r in results if r.load == load and r.chain_length == n}
            if set(runs) == set(MODES):
                lines += [*detail(runs["tail"], runs["craq"]), ""]
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
    """The load: gRPC stubs to the chain's nodes, and the client loops of one run."""

    def __init__(self, nodes: list[NodeProcess], args: argparse.Namespace,
                 groups: member_cpu.MemberCgroups | None = None) -> None:
        self.nodes = {n.id: n for n in nodes}
        self.ids = [n.id for n in nodes]
        self.args = args
        self.groups = groups
        self.channels = {n.id: grpc.aio.insecure_channel(n.address) for n in nodes}
        self.stubs = {i: chain_pb2_grpc.ChainNodeStub(ch) for i, ch in self.channels.items()}
        self.epoch = 1
        self.value = b"v" * args.value_size

    async def close(self) -> None:
        for ch in self.channels.values():
            await ch.close()

    async def configure(self) -> None:
        members = [chain_pb2.Member(id=i, address=self.nodes[i].address) for i in self.ids]
        config = chain_pb2.ChainConfig(chain=CHAIN, epoch=self.epoch, members=members)
        for i in self.ids:
            reply = await self.stubs[i].Configure(chain_pb2.ConfigureRequest(config=config), timeout=CALL_TIMEOUT)
            if reply.error.code != chain_pb2.OK:
                raise BenchError(f"configuring {i} failed: {reply.error.message}")

    async def write(self, ops: list[chain_pb2.WriteOp]) -> int:
        reply = await self.stubs[self.ids[0]].Write(chain_pb2.WriteRequest(epoch=self.epoch, ops=ops),
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

    async def snapshot(self) -> dict[str, tuple[int, int, float, tuple[int, int] | None]]:
        """Per node: reads served, version queries, CPU seconds (its cgroup's when capped), CFS periods."""
        usage = self.groups.usage_seconds() if self.groups else {}
        periods = self.groups.throttle_counts() if self.groups else {}
        out = {}
        for i in self.ids:
            s = await self.stubs[i].GetStatus(chain_pb2.StatusRequest(), timeout=CALL_TIMEOUT)
            cpu = usage[i] if i in usage else process_cpu_seconds(self.nodes[i].proc.pid)
            out[i] = (s.reads, s.version_queries, cpu, periods.get(i))
        return out

    async def run(self, mode: str, load: str, seed: int) -> RunResult:
        args = self.args
        targets = [self.stubs[i] for i in (self.ids if mode == "craq" else self.ids[-1:])]
        write_share = args.write_share if load == "read-mostly" else 0.0
        rng = random.Random(seed)
        latencies: list[float] = []
        reads = errors = writes = sent = 0
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
            # Paced to the readers: puts stay `write_share` of all operations while reads run flat out
            # (a closed loop of mixed calls would park readers behind the slower writes instead).
            nonlocal writes, sent
            while time.perf_counter() < deadline:
                if sent >= (reads + sent) * write_share:
                    await asyncio.sleep(WRITE_PACE)
                    continue
                ops = [chain_pb2.WriteOp(key=key_name(rng.randrange(args.keys)), value=self.value)
                       for _ in range(args.batch)]
                sent += len(ops)
                if await self.write(ops) != len(ops):
                    raise BenchError("a write batch was not fully applied")
                writes += len(ops)

        await asyncio.gather(*(reader(r) for r in range(args.readers)),
                             *(writer() for _ in range(WRITERS if write_share else 0)))
        seconds = time.perf_counter() - started
        client_cpu = own_cpu_seconds() - client_before
        after = await self.snapshot()
        nodes = {}
        for i in self.ids:
            b, a = before[i], after[i]
            capped = None if a[3] is None or b[3] is None else member_cpu.throttled_share(b[3], a[3])
            nodes[i] = NodeFigures(a[0] - b[0], a[1] - b[1], a[2] - b[2], capped)
        return RunResult(mode, load, seconds, reads, errors, writes, latencies, nodes, client_cpu,
                         self.groups.cpus if self.groups else None)


async def bench(args: argparse.Namespace, nodes: list[NodeProcess],
                groups: member_cpu.MemberCgroups | None) -> list[RunResult]:
    driver = Driver(nodes, args, groups)
    try:
        await driver.configure()
        await driver.prefill()
        results = []
        for load in LOADS:
            for mode in MODES:
                print(f"{len(nodes)} nodes, {load}, {mode}: {args.seconds:g}s ...", file=sys.stderr, flush=True)
                results.append(await driver.run(mode, load, seed=len(results)))
        return results
    finally:
        await driver.close()


def parse_node_counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected chain lengths like 1,3,5,7, got {text!r}") from None
    if not counts or any(not 1 <= n <= MAX_NODES for n in counts):
        raise argparse.ArgumentTypeError(f"each chain length must be between 1 and {MAX_NODES}")
    return counts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=parse_node_counts, default=[1, 3, 5, 7],
                   help="chain lengths to measure, comma-separated (default: 1,3,5,7)")
    p.add_argument("--member-cpu", type=float, default=None, metavar="C",
                   help="cap every node at C CPUs, each in its own cgroup (needs root)")
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each of the four runs per chain")
    p.add_argument("--readers", type=int, default=32, help="concurrent read clients")
    p.add_argument("--batch", type=int, default=8, help="keys per ReadBatch call (and puts per write call)")
    p.add_argument("--keys", type=int, default=500, help="size of the key space (small: writes hit read keys)")
    p.add_argument("--write-share", type=float, default=0.1,
                   help="puts as a share of all operations in the read-mostly load (default: 0.1)")
    p.add_argument("--value-size", type=int, default=100)
    args = p.parse_args(argv)
    if not 0 < args.seconds <= MAX_SECONDS:
        p.error(f"--seconds must be in (0, {MAX_SECONDS:g}]")
    for name in ("readers", "batch", "keys", "value_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.write_share < 1:
        p.error("--write-share must be between 0 and 1 (exclusive)")
    if args.member_cpu is not None and not args.member_cpu > 0:
        p.error("--member-cpu must be above 0")
    return args


def run_chain(args: argparse.Namespace, n: int, root: Path) -> list[RunResult]:
    """Start a chain of n nodes (each in its own capped cgroup with --member-cpu), measure, stop it."""
    nodes: list[NodeProcess] = []
    with contextlib.ExitStack() as stack:
        groups = stack.enter_context(member_cpu.MemberCgroups(args.member_cpu)) if args.member_cpu else None
        try:
            for i in node_ids(n):
                nodes.append(start_node(i, root / f"chain{n}"))
                if groups is not None:
                    groups.add(i, [nodes[-1].proc.pid])
            try:
                import uvloop
                return uvloop.run(bench(args, nodes, groups))
            except ImportError:
                return asyncio.run(bench(args, nodes, groups))
        finally:
            stop_nodes(nodes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    caps = f"{args.member_cpu:g} CPU per node (own cgroup)" if args.member_cpu else "nodes share the cores"
    settings = (f"static chains of {','.join(map(str, args.nodes))} nodes over gRPC; {caps}; {args.readers} readers, "
                f"{args.batch} keys per ReadBatch (strong), {args.keys} keys of {args.value_size} bytes, "
                f"{args.seconds:g}s per run; read-mostly: puts paced to {args.write_share:.0%} of operations, "
                f"{args.batch} per write call to the head; {os.cpu_count()} cores")
    load_before = os.getloadavg()
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="keychain-craq-bench-") as tmp:
        try:
            for n in args.nodes:
                (Path(tmp) / f"chain{n}").mkdir()
                results += run_chain(args, n, Path(tmp))
        except member_cpu.MemberCpuError as e:
            print(f"craq_vs_tail: --member-cpu: {e}", file=sys.stderr)
            return 2
        except BenchError as e:
            print(f"craq_vs_tail: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("craq_vs_tail: interrupted; its nodes and cgroups are gone", file=sys.stderr)
            return 130
    load_after = os.getloadavg()
    print(report(results, settings))
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(RESULT_PREFIX + json.dumps({"benchmark": "craq-vs-tail", "config": vars(args),
                                      "load_average": [load_before[0], load_after[0]],
                                      "runs": [r.summary() for r in results]}))
    print("reproduce: PYTHONSAFEPATH=1 .venv/bin/python bench/craq_vs_tail.py "
          + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
