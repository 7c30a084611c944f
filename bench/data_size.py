"""Cost of data size: a static 3-node chain measured at 10 thousand keys and again at 1 million.

Starts `keychain node --static` processes on 127.0.0.1 (real RocksDB in a temporary directory),
configures them n1 (head) -> n2 -> n3 (tail), drives them directly over gRPC (no proxy: what is
measured is the nodes), and runs these phases, each bounded in time:

1. sizes: the key space is loaded up to `--small-keys`, then to `--keys` (and to `--big-gb` GB of
   keys and values if asked and the disk has room). Loading writes batches of `--load-batch`
   distinct keys straight to the head from `--load-writers` clients (the load rate is printed).
   At each size the same load generator measures writes/s (`--writers` clients, WriteRequests of
   `--write-batch` puts to random keys of the space) and strong reads/s (`--readers` clients,
   ReadBatch of `--read-batch` random keys, spread over the three nodes), then samples every node's
   resident memory (VmRSS) and the disk its data directory takes (du) against the logical bytes,
   keys x (key + value).
2. joins: while writers keep writing, a new node joins after the tail and takes a state transfer;
   once level it becomes the tail in the sender's place. Timed once per `--join-rates` entry, the
   sender started with that --transfer-rate-mb (default: the node's default, then 0, unpaced).
   Prints the time to become the tail, the transfer's MB/s (bytes the sender sent, from its
   metrics), and the foreground writes/s and latency during the transfer against the seconds just
   before it.
3. restart: the middle node is stopped, the chain writes without it for `--missed-seconds`, then it
   restarts on its data and joins after the tail: the time until it is level again.

Prints the load average before and after (the machine may be shared: compare figures within one
run), a table, and one JSON line.

    PYTHONSAFEPATH=1 .venv/bin/python bench/data_size.py [--keys 1000000] [--small-keys 10000]
        [--seconds 5] [--missed-seconds 60] [--join-rates 16,0] [--big-gb 10]

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
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
from keychain.node.transfer_rate import DEFAULT_TRANSFER_RATE_MB

from keychain.proto import chain_pb2, chain_pb2_grpc

CHAIN = "bench"
START_TIMEOUT = 30.0
CALL_TIMEOUT = 30.0
LEVEL_TIMEOUT = 180.0  # a join or a catch-up that takes longer fails the bench
MB = 1_000_000
RECONFIGURED_RETRIES = 300  # 10 ms apart: a reconfiguration reaches every node well within 3 s
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


def key_name(i: int) -> bytes:
    return b"key-%09d" % i


KEY_BYTES = len(key_name(0))


def percentile(samples: list[float], p: float) -> float:
    if not samples:
        return float("nan")
    s = sorted(samples)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ---------------------------------------------------------------------------------------- processes

@dataclass
class Node:
    id: str
    root: Path
    rate_mb: float
    proc: subprocess.Popen[bytes] | None = None
    address: str = ""
    metrics_port: int = 0
    channel: grpc.aio.Channel | None = None
    stub: chain_pb2_grpc.ChainNodeStub | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / self.id

    @property
    def log_path(self) -> Path:
        return self.root / f"{self.id}.log"

    def start(self) -> None:
        self.metrics_port = free_port()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "keychain", "node", "--id", self.id, "--listen", "127.0.0.1:0",
             "--data-dir", str(self.data_dir), "--chain", CHAIN, "--static", "--log-level", "info",
             "--metrics-listen", f"127.0.0.1:{self.metrics_port}", "--transfer-rate-mb", f"{self.rate_mb:g}"],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
        )
        log.close()
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()  # the node prints its address once it serves
        if "listening on" not in line:
            self.proc.kill()
            raise BenchError(f"node {self.id} did not start:\n{self.log_path.read_text()[-2000:]}")
        self.address = line.rsplit(" ", 1)[1].strip()
        self.channel = grpc.aio.insecure_channel(self.address, options=[("grpc.max_receive_message_length", 64 << 20)])
        self.stub = chain_pb2_grpc.ChainNodeStub(self.channel)

    async def stop(self) -> None:
        if self.channel is not None:
            await self.channel.close()
            self.channel = None
        kill(self.proc)

    def rss_bytes(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise BenchError(f"no VmRSS for node {self.id}")

    def disk_bytes(self) -> int:
        """What `du` says the data directory takes: allocated blocks, not apparent sizes."""
        total = 0
        for dirpath, _, files in os.walk(self.data_dir):
            for f in files:
                with contextlib.suppress(FileNotFoundError):  # RocksDB replaces files as it compacts
                    total += os.stat(os.path.join(dirpath, f)).st_blocks * 512
        return total

    def cpu_seconds(self) -> float:
        """User + system CPU time of the node process, from /proc/<pid>/stat."""
        assert self.proc is not None
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()  # after the command name, which may hold spaces
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0


def kill(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


# ---------------------------------------------------------------------------------------- load

@dataclass
class Window:
    """Foreground figures over one stretch of time."""

    ops_per_s: float
    p50_ms: float
    p99_ms: float


def window(samples: list[tuple[float, float, int]], start: float, end: float) -> Window:
    """The requests that finished in [start, end): (finished at, latency s, ops done)."""
    inside = [(lat, ops) for at, lat, ops in samples if start <= at < end]
    seconds = max(end - start, 1e-9)
    lats = [lat for lat, _ in inside]
    return Window(sum(ops for _, ops in inside) / seconds, percentile(lats, 50) * 1000, percentile(lats, 99) * 1000)


class Chain:
    """The static chain the bench plays the coordinator for: its members in order, and its epoch."""

    def __init__(self, args: argparse.Namespace, nodes: dict[str, Node]) -> None:
        self.args = args
        self.nodes = nodes
        self.active: list[str] = []
        self.epoch = 0
        self.keys = 0  # keys loaded so far: key_name(0) .. key_name(keys - 1)
        self.written = 0  # foreground writes acknowledged in total

    def stub(self, node_id: str) -> chain_pb2_grpc.ChainNodeStub:
        stub = self.nodes[node_id].stub
        assert stub is not None, f"node {node_id} is not running"
        return stub

    async def configure(self, active: list[str], syncing: list[str] = ()) -> None:
        self.epoch += 1
        members = [chain_pb2.Member(id=i, address=self.nodes[i].address) for i in active]
        members += [chain_pb2.Member(id=i, address=self.nodes[i].address, state=chain_pb2.SYNCING) for i in syncing]
        config = chain_pb2.ChainConfig(chain=CHAIN, epoch=self.epoch, members=members)
        for i in [*active, *syncing]:
            reply = await self.stub(i).Configure(chain_pb2.ConfigureRequest(config=config), timeout=CALL_TIMEOUT)
            if reply.error.code != chain_pb2.OK:
                raise BenchError(f"configuring {i} failed: {reply.error.message}")
        self.active = list(active)

    def value(self, rng: random.Random) -> bytes:
        """A random value: RocksDB compresses its blocks, and repeated values would flatter the disk figures."""
        return rng.randbytes(self.args.value_size)

    async def write(self, ops: list[chain_pb2.WriteOp]) -> int:
        """Write `ops` at the head. A request caught by a reconfiguration (sent in an epoch the head
        has left, or not yet reached) is sent again in the bench's current epoch, as a proxy does; the
        ops carry no request id: a repeated put changes nothing here."""
        for _ in range(RECONFIGURED_RETRIES):
            epoch = self.epoch
            reply = await self.stub(self.active[0]).Write(chain_pb2.WriteRequest(epoch=epoch, ops=ops),
                                                          timeout=CALL_TIMEOUT)
            done = sum(1 for r in reply.results if r.error.code == chain_pb2.OK)
            if reply.error.code == chain_pb2.OK and done == len(ops):
                return done
            if reply.error.code != chain_pb2.WRONG_EPOCH and self.epoch == epoch:
                break
            await asyncio.sleep(0.01)
        if reply.error.code != chain_pb2.OK:
            raise BenchError(f"the head refused a write: {chain_pb2.Code.Name(reply.error.code)} {reply.error.message}")
        raise BenchError(f"{len(ops) - done} of {len(ops)} writes failed")

    async def load(self, keys: int, deadline: float) -> tuple[float, float]:
        """Write keys self.keys .. keys - 1 once each; returns (seconds, keys/s)."""
        args = self.args
        todo = iter(range(self.keys, keys, args.load_batch))
        started = time.perf_counter()

        async def loader(rng: random.Random) -> None:
            for lo in todo:
                if time.perf_counter() > deadline:
                    raise BenchError(f"loading {keys} keys did not finish in time (raise --load-timeout)")
                await self.write([chain_pb2.WriteOp(key=key_name(i), value=self.value(rng))
                                  for i in range(lo, min(keys, lo + args.load_batch))])

        await asyncio.gather(*(loader(random.Random(keys + n)) for n in range(args.load_writers)))
        seconds = time.perf_counter() - started
        loaded, self.keys = keys - self.keys, keys
        return seconds, loaded / seconds

    async def writers(self, stop: asyncio.Event, samples: list[tuple[float, float, int]], seed: int) -> None:
        """The foreground writes: `--writers` clients overwriting random keys until `stop`."""
        args = self.args
        rng = random.Random(seed)

        async def writer() -> None:
            while not stop.is_set():
                ops = [chain_pb2.WriteOp(key=key_name(rng.randrange(self.keys)), value=self.value(rng))
                       for _ in range(args.write_batch)]
                t0 = time.perf_counter()
                done = await self.write(ops)
                t1 = time.perf_counter()
                samples.append((t1, t1 - t0, done))
                self.written += done

        await asyncio.gather(*(writer() for _ in range(args.writers)))

    async def measure_writes(self, seed: int) -> Window:
        samples: list[tuple[float, float, int]] = []
        stop = asyncio.Event()
        start = time.perf_counter()
        task = asyncio.ensure_future(self.writers(stop, samples, seed))
        await asyncio.sleep(self.args.seconds)
        stop.set()
        end = time.perf_counter()
        await asyncio.wait_for(task, CALL_TIMEOUT)
        return window(samples, start, end)

    async def measure_reads(self, seed: int) -> Window:
        args = self.args
        rng = random.Random(seed)
        targets = [self.stub(i) for i in self.active]
        samples: list[tuple[float, float, int]] = []
        start = time.perf_counter()
        deadline = start + args.seconds

        async def reader(r: int) -> None:
            n = r
            while time.perf_counter() < deadline:
                ops = [chain_pb2.ReadOp(key=key_name(rng.randrange(self.keys))) for _ in range(args.read_batch)]
                t0 = time.perf_counter()
                reply = await targets[n % len(targets)].ReadBatch(
                    chain_pb2.ReadBatchRequest(epoch=self.epoch, ops=ops), timeout=CALL_TIMEOUT)
                t1 = time.perf_counter()
                if reply.error.code != chain_pb2.OK:
                    raise BenchError(f"a read batch was refused: {reply.error.message}")
                ok = sum(1 for x in reply.results if x.error.code == chain_pb2.OK)
                if ok != len(ops):
                    raise BenchError(f"{len(ops) - ok} of {len(ops)} reads failed (every key was loaded)")
                samples.append((t1, t1 - t0, ok))
                n += 1

        await asyncio.gather(*(reader(r) for r in range(args.readers)))
        return window(samples, start, time.perf_counter())

    async def level(self, syncing: str, timeout: float) -> float:
        """Wait until `syncing` holds everything the tail had committed when last asked; returns when."""
        deadline = time.perf_counter() + timeout
        tail = self.active[-1]
        while time.perf_counter() < deadline:
            committed = (await self.stub(tail).GetStatus(chain_pb2.StatusRequest(), timeout=CALL_TIMEOUT)).committed_seq
            mine = (await self.stub(syncing).GetStatus(chain_pb2.StatusRequest(), timeout=CALL_TIMEOUT)).committed_seq
            if mine >= committed:
                return time.perf_counter()
            await asyncio.sleep(0.05)
        raise BenchError(f"{syncing} was not level with the tail {tail} after {timeout:.0f}s")


# ---------------------------------------------------------------------------------------- phases

@dataclass
class SizeRow:
    keys: int
    logical_bytes: int
    load_seconds: float
    load_keys_per_s: float
    writes: Window
    reads: Window
    rss_bytes: dict[str, int]
    disk_bytes: dict[str, int]

    @property
    def disk_per_logical(self) -> float:
        return sum(self.disk_bytes.values()) / len(self.disk_bytes) / self.logical_bytes


@dataclass
class JoinRow:
    label: str
    sender_rate_mb: float
    seconds_to_level: float
    seconds_to_tail: float
    sent_bytes: float
    paced_seconds: float
    sender_cpu: float  # CPU seconds the sender and the joiner spent from the join to level
    joiner_cpu: float
    before: Window
    during: Window

    @property
    def transfer_mb_per_s(self) -> float:
        return self.sent_bytes / MB / self.seconds_to_level


@dataclass
class RestartRow:
    missed_seconds: float
    missed_writes: int
    seconds_to_level: float
    by_state_transfer: bool


@dataclass
class Results:
    load_before: str
    sizes: list[SizeRow] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    joins: list[JoinRow] = field(default_factory=list)
    restart: RestartRow | None = None
    load_after: str = ""


async def size_phase(chain: Chain, keys: int, deadline: float, seed: int) -> SizeRow:
    print(f"loading to {keys} keys ...", file=sys.stderr, flush=True)
    load_seconds, rate = await chain.load(keys, deadline)
    print(f"  {rate:,.0f} keys/s; measuring writes and reads, {chain.args.seconds:g}s each ...",
          file=sys.stderr, flush=True)
    writes = await chain.measure_writes(seed)
    reads = await chain.measure_reads(seed)
    ids = chain.active
    return SizeRow(keys, keys * (KEY_BYTES + chain.args.value_size), load_seconds, rate, writes, reads,
                   {i: chain.nodes[i].rss_bytes() for i in ids}, {i: chain.nodes[i].disk_bytes() for i in ids})


async def join_phase(chain: Chain, joiner: str, label: str) -> JoinRow:
    """`joiner` joins after the tail while the writers write; once level it replaces the tail."""
    args = chain.args
    sender = chain.nodes[chain.active[-1]]
    chain.nodes[joiner].start()
    print(f"join ({label}): {joiner} after {sender.id} ...", file=sys.stderr, flush=True)
    sent0, paced0 = sender.metric("keychain_node_transfer_sent_bytes_total"), \
        sender.metric("keychain_node_transfer_paced_seconds_total")
    samples: list[tuple[float, float, int]] = []
    stop = asyncio.Event()
    task = asyncio.ensure_future(chain.writers(stop, samples, seed=len(label)))
    try:
        before_start = time.perf_counter()
        await asyncio.sleep(args.seconds)
        t0 = time.perf_counter()
        cpu0 = (sender.cpu_seconds(), chain.nodes[joiner].cpu_seconds())
        await chain.configure(chain.active, syncing=[joiner])
        t_level = await chain.level(joiner, LEVEL_TIMEOUT)
        cpu = (sender.cpu_seconds() - cpu0[0], chain.nodes[joiner].cpu_seconds() - cpu0[1])
        await chain.configure([*chain.active[:-1], joiner])  # the joiner is the tail in the sender's place
        t_tail = time.perf_counter()
    finally:
        stop.set()
        await asyncio.wait_for(task, CALL_TIMEOUT)
    sent = sender.metric("keychain_node_transfer_sent_bytes_total") - sent0
    paced = sender.metric("keychain_node_transfer_paced_seconds_total") - paced0
    await sender.stop()
    return JoinRow(label, sender.rate_mb, t_level - t0, t_tail - t0, sent, paced, *cpu,
                   window(samples, before_start, t0), window(samples, t0, t_level))


async def restart_phase(chain: Chain, node_id: str) -> RestartRow:
    """`node_id` stops, misses `--missed-seconds` of writes, restarts on its data and catches up."""
    args = chain.args
    node = chain.nodes[node_id]
    print(f"restart: {node_id} misses {args.missed_seconds:g}s of writes ...", file=sys.stderr, flush=True)
    await node.stop()
    await chain.configure([i for i in chain.active if i != node_id])
    samples: list[tuple[float, float, int]] = []
    stop = asyncio.Event()
    written0 = chain.written
    task = asyncio.ensure_future(chain.writers(stop, samples, seed=7))
    try:
        await asyncio.sleep(args.missed_seconds)
        missed = chain.written - written0
        log_size = node.log_path.stat().st_size
        node.start()
        t0 = time.perf_counter()
        await chain.configure(chain.active, syncing=[node_id])
        t_level = await chain.level(node_id, LEVEL_TIMEOUT)
    finally:
        stop.set()
        await asyncio.wait_for(task, CALL_TIMEOUT)
    with node.log_path.open("rb") as f:
        f.seek(log_size)
        transferred = b"transfer received" in f.read()
    return RestartRow(args.missed_seconds, missed, t_level - t0, transferred)


BIG_GB = 10.0  # the size of the row --big-gb asks for, when it is only described


def big_keys(args: argparse.Namespace) -> tuple[int, str | None]:
    """The key count of the `--big-gb` row, or why it is skipped (the disk first: it is checked even
    when the row is not asked for, so the report says whether it could run here)."""
    gb = args.big_gb or BIG_GB
    keys = int(gb * 1e9 / (KEY_BYTES + args.value_size))
    free = shutil.disk_usage(tempfile.gettempdir()).free
    # Three replicas, each taking about as much disk as it holds logically, plus room for compactions.
    need = int(3 * 2 * gb * 1e9)
    if free < need:
        return 0, (f"{gb:g} GB row: skipped, the disk has {free / 1e9:.1f} GB free and three replicas "
                   f"with compaction headroom need about {need / 1e9:.0f} GB")
    if args.big_gb <= 0:
        return 0, (f"{gb:g} GB row: skipped, not asked for (--big-gb {gb:g} adds it): the disk would allow it "
                   f"({free / 1e9:.0f} GB free, about {need / 1e9:.0f} GB needed), but it is {keys:,} keys to load")
    return keys, None


def big_load_estimate(skip: str, sizes: list[SizeRow]) -> str:
    """The reason a big row was skipped, with how long its load would take at the rate measured last."""
    if not sizes or "not asked for" not in skip:
        return skip
    keys = int(BIG_GB * 1e9 / (sizes[-1].logical_bytes / sizes[-1].keys))  # bytes per key as measured
    hours = (keys - sizes[-1].keys) / sizes[-1].load_keys_per_s / 3600
    return f"{skip}, about {hours:.1f} h at the {sizes[-1].load_keys_per_s:,.0f} keys/s measured here"


async def bench(args: argparse.Namespace, root: Path, results: Results) -> None:
    # Join k is sent by the tail of the moment, which was started with the k-th rate: n3 first, then
    # the node that joined before (each join takes the sender's place as the tail).
    rates = args.join_rates
    joiners = [f"n{4 + k}" for k in range(len(rates))]
    nodes = {i: Node(i, root, DEFAULT_TRANSFER_RATE_MB) for i in ("n1", "n2")}
    for i, rate in zip(["n3", *joiners], [*rates, DEFAULT_TRANSFER_RATE_MB], strict=True):
        nodes[i] = Node(i, root, rate)
    chain = Chain(args, nodes)
    try:
        for i in ("n1", "n2", "n3"):
            nodes[i].start()
        await chain.configure(["n1", "n2", "n3"])
        deadline = time.perf_counter() + args.load_timeout
        big, skip = big_keys(args)
        sizes = [args.small_keys, args.keys] + ([big] if big > args.keys else [])
        for n, keys in enumerate(sizes):
            results.sizes.append(await size_phase(chain, keys, deadline, seed=n))
        if skip:
            results.skipped.append(big_load_estimate(skip, results.sizes))
        for joiner, rate in zip(joiners, rates, strict=True):
            label = f"sender paced at {rate:g} MB/s" if rate else "sender unpaced"
            results.joins.append(await join_phase(chain, joiner, label))
        results.restart = await restart_phase(chain, "n2")
    finally:
        for n in nodes.values():
            await n.stop()


# ---------------------------------------------------------------------------------------- report

def report(r: Results, command: str) -> str:
    lines = [f"command: {command}", f"load average before: {r.load_before}   after: {r.load_after}", ""]
    rows = [["keys", "logical MB", "load keys/s", "writes/s", "write p50/p99 ms", "reads/s", "read p50/p99 ms",
             "RSS MB per node", "disk/logical"]]
    for s in r.sizes:
        rows.append([f"{s.keys:,}", f"{s.logical_bytes / MB:,.1f}", f"{s.load_keys_per_s:,.0f}",
                     f"{s.writes.ops_per_s:,.0f}", f"{s.writes.p50_ms:.1f} / {s.writes.p99_ms:.1f}",
                     f"{s.reads.ops_per_s:,.0f}", f"{s.reads.p50_ms:.1f} / {s.reads.p99_ms:.1f}",
                     " ".join(f"{v / MB:.0f}" for v in s.rss_bytes.values()), f"{s.disk_per_logical:.2f}"])
    lines.append(table(rows))
    if len(r.sizes) >= 2:
        small, large = r.sizes[0], r.sizes[1]
        grown = (large.keys - small.keys) / 1e6
        rss = [(large.rss_bytes[i] - small.rss_bytes[i]) / grown / MB for i in large.rss_bytes if i in small.rss_bytes]
        lines.append(f"{large.keys:,} keys against {small.keys:,}: writes/s x{ratio(large.writes, small.writes)}, "
                     f"reads/s x{ratio(large.reads, small.reads)}; RSS grows by "
                     + ", ".join(f"{x:.0f}" for x in rss) + " MB per million keys (per node)")
    lines.extend(r.skipped)
    lines.append("")
    rows = [["join (state transfer while writing)", "to level s", "to tail s", "sent MB", "MB/s", "paced s",
             "CPU s sender/joiner", "writes/s before", "writes/s during", "p50/p99 ms before", "p50/p99 ms during"]]
    for j in r.joins:
        rows.append([j.label, f"{j.seconds_to_level:.1f}", f"{j.seconds_to_tail:.1f}", f"{j.sent_bytes / MB:,.1f}",
                     f"{j.transfer_mb_per_s:.1f}", f"{j.paced_seconds:.1f}", f"{j.sender_cpu:.1f} / {j.joiner_cpu:.1f}",
                     f"{j.before.ops_per_s:,.0f}",
                     f"{j.during.ops_per_s:,.0f}", f"{j.before.p50_ms:.1f} / {j.before.p99_ms:.1f}",
                     f"{j.during.p50_ms:.1f} / {j.during.p99_ms:.1f}"])
    lines.append(table(rows))
    if r.restart:
        x = r.restart
        how = "a state transfer" if x.by_state_transfer else "the log (no state transfer)"
        lines.append(f"\nrestart: missed {x.missed_seconds:g}s of writes ({x.missed_writes:,} writes); level again "
                     f"{x.seconds_to_level:.1f}s after rejoining, by {how}")
    return "\n".join(lines)


def ratio(a: Window, b: Window) -> str:
    return f"{a.ops_per_s / b.ops_per_s:.2f}" if b.ops_per_s else "-"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) if c else cell.ljust(w) for c, (cell, w) in enumerate(zip(row, widths, strict=True)))
                     for row in rows)


def rates(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of numbers") from None
    if any(not v >= 0 for v in values):
        raise argparse.ArgumentTypeError("rates are at least 0")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--keys", type=int, default=1_000_000, help="the large key space")
    p.add_argument("--small-keys", type=int, default=10_000, help="the small key space measured first")
    p.add_argument("--value-size", type=int, default=100)
    p.add_argument("--big-gb", type=float, default=0, help="add a row at this many GB of keys and values (0: none)")
    p.add_argument("--seconds", type=float, default=5.0, help="each measurement, and the foreground before a join")
    p.add_argument("--missed-seconds", type=float, default=60.0, help="writes a restarted node missed")
    p.add_argument("--join-rates", type=rates, default=[DEFAULT_TRANSFER_RATE_MB, 0.0], metavar="MB,MB,...",
                   help="one join per rate: the sender's --transfer-rate-mb, 0 unpaced (default: the node's "
                        f"default, {DEFAULT_TRANSFER_RATE_MB:g}, then 0)")
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--write-batch", type=int, default=16)
    p.add_argument("--readers", type=int, default=16)
    p.add_argument("--read-batch", type=int, default=16)
    p.add_argument("--load-writers", type=int, default=4)
    p.add_argument("--load-batch", type=int, default=1000, help="distinct keys per WriteRequest while loading")
    p.add_argument("--load-timeout", type=float, default=600.0, help="bound on all the loading together")
    p.add_argument("--timeout", type=float, default=900.0, help="bound on the whole run")
    args = p.parse_args(argv)
    if not 0 < args.small_keys < args.keys:
        p.error("--small-keys must be above 0 and below --keys")
    return args


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="keychain-data-size-") as tmp:
        yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "PYTHONSAFEPATH=1 .venv/bin/python bench/data_size.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    results = Results(load_before=load_average())
    with scratch() as root:
        try:
            asyncio.run(asyncio.wait_for(bench(args, root, results), args.timeout))
        except (BenchError, TimeoutError, grpc.aio.AioRpcError) as e:
            print(f"data_size: {type(e).__name__}: {e}", file=sys.stderr)
            for log in sorted(root.glob("*.log")):
                print(f"--- {log.name} (last lines)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]),
                      file=sys.stderr)
            return 1
    results.load_after = load_average()
    print(report(results, command))
    print(json.dumps({"bench": "data_size", **asdict(results)}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
