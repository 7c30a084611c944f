"""What mutual TLS costs KeychainDB: the same load on `keychain up` and on `keychain up --tls`.

Starts a local cluster without TLS, measures a write phase and a read phase, stops it; then the
same on a fresh `keychain up --tls` (mTLS on every internal channel, HTTPS with a client
certificate on the proxy), one after the other so each has the machine to itself:

- write phase: `PUT /v1/kv/{key}` with an idempotency key, `--concurrency` requests in flight;
- read phase: every key written once first (not timed), then `GET /v1/kv/{key}?consistency=strong`.

The load comes from `keychain bench`'s generator (aiohttp, one keep-alive connection per request
in flight): wrk, which `vs_etcd.py` uses, cannot present a client certificate. The generator runs
in this process and takes CPU from the same cores; it is the same in both runs, and with TLS it
pays for its own encryption as any client would.

Prints writes/s, reads/s, p50 and p99 for both with the TLS/plain ratios, the CPU the cluster
used, the machine's load average before the run, and one JSON line with everything.

    PYTHONSAFEPATH=1 .venv/bin/python bench/tls_cost.py [--duration 10] [--concurrency 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

from keychain.client import tls_context
from keychain.commands import BenchResult, run_bench

# vs_etcd.py starts and stops `keychain up` and measures the CPU of its process tree; share it.
_spec = importlib.util.spec_from_file_location("bench_vs_etcd", Path(__file__).resolve().with_name("vs_etcd.py"))
assert _spec and _spec.loader
vs_etcd = importlib.util.module_from_spec(_spec)
sys.modules["bench_vs_etcd"] = vs_etcd  # dataclasses look their module up by name
_spec.loader.exec_module(vs_etcd)

MAX_DURATION = 120.0
MODES = ("plain", "tls")


@dataclass
class Phase:
    """One measured phase: the generator's result and the cluster's CPU meanwhile."""

    result: BenchResult
    op: str  # write | read
    server_cores: float  # CPU the cluster's processes used, in cores
    generator_cores: float  # CPU this process (the load generator) used, in cores

    @property
    def ops_per_second(self) -> float:
        return len(self.result.latencies[self.op]) / self.result.seconds if self.result.seconds else 0.0

    @property
    def server_ms_per_op(self) -> float:
        """Cluster CPU per operation: what TLS costs, less sensitive to other load than ops/s."""
        return self.server_cores * 1000 / self.ops_per_second if self.ops_per_second else 0.0

    @property
    def errors(self) -> int:
        return sum(self.result.errors.values())

    def to_json(self) -> dict[str, object]:
        return {
            "ops_per_s": round(self.ops_per_second, 1),
            "p50_ms": round(self.result.percentile(self.op, 0.50) * 1000, 3),
            "p99_ms": round(self.result.percentile(self.op, 0.99) * 1000, 3),
            "errors": self.result.errors,
            "server_cpu_cores": round(self.server_cores, 2),
            "server_cpu_ms_per_op": round(self.server_ms_per_op, 3),
            "generator_cpu_cores": round(self.generator_cores, 2),
        }


def bench_args(opts: argparse.Namespace, target: vs_etcd.Target, mix: str) -> argparse.Namespace:
    """The options `keychain bench` would parse, for one phase against `target`."""
    return argparse.Namespace(
        url=target.url, token=None, timeout=10.0, duration=opts.duration, concurrency=opts.concurrency,
        value_size=opts.value_size, keys=opts.keys, mix=mix, prefix="tls-cost/",
        tls=tls_context(**target.client_tls) if target.client_tls else None,
    )


def measure(opts: argparse.Namespace, target: vs_etcd.Target, mix: str) -> Phase:
    pids = vs_etcd.process_tree(target.pids)
    before: list[float] = []

    def timed_part_starts() -> None:  # after the read phase's preload, which is not measured
        before[:] = [vs_etcd.cpu_seconds(pids), own_cpu_seconds()]

    result = asyncio.run(run_bench(bench_args(opts, target, mix), on_start=timed_part_starts))
    seconds = result.seconds or 1.0
    server = (vs_etcd.cpu_seconds(pids) - before[0]) / seconds
    return Phase(result, "write" if mix == "writes" else "read", server, (own_cpu_seconds() - before[1]) / seconds)


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_mode(opts: argparse.Namespace, mode: str) -> dict[str, Phase]:
    say(f"starting keychain up{' --tls' if mode == 'tls' else ''} ...")
    with vs_etcd.keychain_cluster(opts.http_port, opts.base_port, opts.verbose, tls=mode == "tls") as target:
        say(f"{mode}: write phase, {opts.duration:g}s at {opts.concurrency} in flight ...")
        phases = {"write": measure(opts, target, "writes")}
        say(f"{mode}: read phase (after writing every key once) ...")
        phases["read"] = measure(opts, target, "reads")
    return phases


def run_rounds(opts: argparse.Namespace) -> dict[str, dict[str, list[Phase]]]:
    """Every round benchmarks both modes, in alternating order (plain first, then mTLS first, ...),
    so a machine whose other load drifts during the run favours neither."""
    results: dict[str, dict[str, list[Phase]]] = {mode: {"write": [], "read": []} for mode in MODES}
    for round_index in range(opts.rounds):
        for mode in MODES if round_index % 2 == 0 else MODES[::-1]:
            for phase, measured in bench_mode(opts, mode).items():
                results[mode][phase].append(measured)
    return results


def median_phase(phases: list[Phase]) -> Phase:
    """The phase whose ops/s is the median (the lower one of an even count)."""
    ordered = sorted(phases, key=lambda p: p.ops_per_second)
    return ordered[(len(ordered) - 1) // 2]


def render(results: dict[str, dict[str, Phase]]) -> str:
    rows = [["", "plain", "mTLS", "mTLS/plain"]]
    getters = [
        ("writes/s", "write", lambda p: p.ops_per_second),
        ("write p50 ms", "write", lambda p: p.result.percentile("write", 0.5) * 1000),
        ("write p99 ms", "write", lambda p: p.result.percentile("write", 0.99) * 1000),
        ("reads/s", "read", lambda p: p.ops_per_second),
        ("read p50 ms", "read", lambda p: p.result.percentile("read", 0.5) * 1000),
        ("read p99 ms", "read", lambda p: p.result.percentile("read", 0.99) * 1000),
        ("errors, writes", "write", lambda p: p.errors),
        ("errors, reads", "read", lambda p: p.errors),
        ("cluster CPU, writes (cores)", "write", lambda p: p.server_cores),
        ("cluster CPU, reads (cores)", "read", lambda p: p.server_cores),
        ("cluster CPU ms per write", "write", lambda p: p.server_ms_per_op),
        ("cluster CPU ms per read", "read", lambda p: p.server_ms_per_op),
        ("load generator CPU, writes (cores)", "write", lambda p: p.generator_cores),
        ("load generator CPU, reads (cores)", "read", lambda p: p.generator_cores),
    ]
    for name, phase, get in getters:
        plain, tls = get(results["plain"][phase]), get(results["tls"][phase])
        ratio = "-" if "errors" in name or not plain else f"{tls / plain:.2f}x"
        rows.append([name, vs_etcd.fmt(plain), vs_etcd.fmt(tls), ratio])
    return vs_etcd.aligned(rows)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Throughput of KeychainDB without and with mutual TLS.")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per phase (default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight (default: %(default)s)")
    p.add_argument("--value-size", type=int, default=100, help="bytes per value (default: %(default)s)")
    p.add_argument("--keys", type=int, default=1000, help="size of the key space (default: %(default)s)")
    p.add_argument("--http-port", type=int, default=18080, help="the proxy's port (default: %(default)s)")
    p.add_argument("--base-port", type=int, default=17000, help="`keychain up --base-port` (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=1,
                   help="runs of both modes, alternating which goes first; the median is shown (default: %(default)s)")
    p.add_argument("--verbose", action="store_true", help="show the clusters' output")
    opts = p.parse_args(argv)
    if not 0 < opts.duration <= MAX_DURATION:
        p.error(f"--duration must be in (0, {MAX_DURATION:g}] seconds")
    if not 1 <= opts.concurrency <= 1024 or opts.value_size < 1 or opts.keys < 1:
        p.error("--concurrency (1..1024), --value-size and --keys must be positive")
    if not 1 <= opts.rounds <= 10:
        p.error("--rounds must be in 1..10")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    load = os.getloadavg()
    try:
        rounds = run_rounds(opts)
    except vs_etcd.BenchError as e:
        print(f"tls_cost: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tls_cost: interrupted; the clusters it started are stopped", file=sys.stderr)
        return 130
    results = {mode: {phase: median_phase(runs) for phase, runs in phases.items()} for mode, phases in rounds.items()}
    after = os.getloadavg()
    print(f"\n{opts.concurrency} in flight, {opts.value_size}-byte values, {opts.keys} keys, "
          f"{opts.duration:g}s per phase, median of {opts.rounds} round(s); load average before: "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f} "
          f"on {os.cpu_count()} cores\n")
    print(render(results))
    summary = {
        "benchmark": "keychain-tls-cost",
        "config": {"duration_s": opts.duration, "concurrency": opts.concurrency, "value_size": opts.value_size,
                   "keys": opts.keys, "rounds": opts.rounds, "load_average_before": [round(x, 2) for x in load],
                   "load_average_after": [round(x, 2) for x in after]},
        "results": {mode: {phase: p.to_json() for phase, p in phases.items()} for mode, phases in results.items()},
        "rounds": {mode: {phase: [p.to_json() for p in runs] for phase, runs in phases.items()}
                   for mode, phases in rounds.items()},
    }
    print(json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
