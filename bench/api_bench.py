"""The multi-key API under load: range reads per node, 2-key compare-and-swap transactions, watch fan-out.

Starts `keychain up` on free ports (or uses a running proxy with --url) and measures, one phase
after the other:

- range reads/s at limit 100 and at limit 1000, served by each node: `--concurrency` Range calls in
  flight straight to one node's gRPC port (snapshot picked by the node, so every call asks the tail
  for its commit point as a strong range does), over `--keys` keys written first;
- transactions/s: `--concurrency` clients each swapping its own pair of keys with
  `POST /v1/txn` (compare both versions, put both), through the proxy;
- watch fan-out: `--watchers` Server-Sent Events streams on one prefix while one writer puts
  `--watch-writes` values as fast as they are acknowledged; events/s delivered to all of them,
  and the delay from a write's acknowledgement to each watcher's receipt of its event (p50, p99).

Prints a table, the machine's load average before the run (`uptime`), and one JSON line.

    PYTHONSAFEPATH=1 .venv/bin/python bench/api_bench.py [--duration 5] [--concurrency 16] [--watchers 100]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.util
import json
import os
import sys
import time
import uuid
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import aiohttp
import grpc

from keychain.client import AsyncClient, Client, KeychainError
from keychain.local import busy_ports
from keychain.proto import chain_pb2, chain_pb2_grpc

_spec = importlib.util.spec_from_file_location("bench_vs_etcd", Path(__file__).resolve().with_name("vs_etcd.py"))
assert _spec and _spec.loader
vs_etcd = importlib.util.module_from_spec(_spec)
sys.modules["bench_vs_etcd"] = vs_etcd  # dataclasses look their module up by name
_spec.loader.exec_module(vs_etcd)

MAX_DURATION = 60.0
PREFIX = "apibench/"
PHASES = {"range", "txn", "watch"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="a running proxy (default: start `keychain up`)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per measured phase")
    p.add_argument("--concurrency", type=int, default=16, help="calls in flight in the range and txn phases")
    p.add_argument("--keys", type=int, default=2000, help="keys written before the range phase")
    p.add_argument("--limits", default="100,1000", help="range page sizes measured")
    p.add_argument("--watchers", type=int, default=100)
    p.add_argument("--watch-writes", type=int, default=500, help="writes during the fan-out phase")
    p.add_argument("--txn-client", choices=("aiohttp", "keychain", "both"), default="aiohttp",
                   help="what sends the transactions: aiohttp (the proxy's figure), keychain.client's "
                        "AsyncClient, or both one after the other")
    p.add_argument("--phases", default="range,txn,watch", help="phases to run, comma-separated")
    p.add_argument("--verbose", action="store_true")
    opts = p.parse_args(argv)
    if not 0 < opts.duration <= MAX_DURATION:
        p.error(f"--duration is in (0, {MAX_DURATION:.0f}]")
    if min(opts.concurrency, opts.keys, opts.watchers, opts.watch_writes) < 1:
        p.error("counts are positive")
    opts.limits = [int(x) for x in opts.limits.split(",")]
    opts.phases = set(opts.phases.split(","))
    if not opts.phases or not opts.phases <= PHASES:
        p.error(f"--phases is a comma-separated subset of {','.join(sorted(PHASES))}")
    return opts


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def prefill(url: str, keys: int) -> None:
    async with AsyncClient(url, max_connections=32) as kc:
        queue = list(range(keys))

        async def worker() -> None:
            while queue:
                i = queue.pop()
                await kc.put(f"{PREFIX}r/{i:06d}", b"v" * 64)

        await asyncio.gather(*(worker() for _ in range(32)))


def members(url: str) -> list[dict[str, Any]]:
    with Client(url) as kc:
        report = kc.cluster()
    chain = report["chains"][0]
    return [m | {"epoch": chain["epoch"]} for m in chain["members"] if m.get("role") in ("head", "middle", "tail")]


async def range_phase(member: dict[str, Any], limit: int, opts: argparse.Namespace) -> dict[str, float]:
    """Range calls/s and items/s of one node at one page size."""
    request = chain_pb2.RangeRequest(epoch=member["epoch"], start=f"{PREFIX}r/".encode(),
                                     end=f"{PREFIX}r0".encode(), limit=limit)
    calls, items, errors = 0, 0, 0
    async with grpc.aio.insecure_channel(member["address"]) as channel:
        stub = chain_pb2_grpc.ChainNodeStub(channel)
        deadline = time.monotonic() + opts.duration

        async def worker() -> None:
            nonlocal calls, items, errors
            while time.monotonic() < deadline:
                reply = await stub.Range(request, timeout=10)
                if reply.error.code != chain_pb2.Code.OK:
                    errors += 1
                    continue
                calls += 1
                items += len(reply.items)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(opts.concurrency)))
        seconds = time.monotonic() - started
    return {"ranges_per_s": calls / seconds, "items_per_s": items / seconds, "errors": errors}


class TxnRefused(Exception):
    """The proxy answered a transaction with an error status."""


async def txn_load(opts: argparse.Namespace, txn: Any) -> dict[str, float]:
    """2-key compare-and-swap transactions/s: each of `--concurrency` clients swaps its own pair of
    keys, sending its transactions with `txn(compare, success) -> (succeeded, version)`."""
    done, failed, errors = 0, 0, 0
    latencies: list[float] = []

    async def worker(w: int) -> None:
        nonlocal done, failed, errors
        a, b = f"{PREFIX}t/{w}/a", f"{PREFIX}t/{w}/b"
        version = 0  # 0: not known, set both keys unconditionally first
        n = 0
        while time.monotonic() < deadline:
            n += 1
            put_both = [{"op": "put", "key": a, "value": str(n)}, {"op": "put", "key": b, "value": str(n)}]
            if not version:
                try:
                    _, version = await txn([], put_both)
                except TxnRefused:
                    errors += 1
                continue
            started = time.monotonic()
            try:
                succeeded, new_version = await txn([{"key": a, "version": version}, {"key": b, "version": version}],
                                                   put_both)
            except TxnRefused:
                errors += 1
                version = 0  # it may have been applied: learn the versions again
                continue
            latencies.append(time.monotonic() - started)
            if succeeded:
                done += 1
                version = new_version
            else:
                failed += 1
                version = 0

    deadline = time.monotonic() + opts.duration
    started = time.monotonic()
    await asyncio.gather(*(worker(w) for w in range(opts.concurrency)))
    seconds = time.monotonic() - started
    return {"txns_per_s": done / seconds, "compare_failed": failed, "errors": errors,
            "p50_ms": percentile(latencies, 0.5) * 1e3, "p99_ms": percentile(latencies, 0.99) * 1e3}


async def txn_phase(url: str, opts: argparse.Namespace) -> dict[str, float]:
    """The transactions sent with aiohttp, as `keychain bench` sends its load: the Python client's
    httpx connection pool costs milliseconds of CPU per request at this concurrency, so it
    measured itself more than the proxy (see `--txn-client`)."""
    connector = aiohttp.TCPConnector(limit=opts.concurrency + 4)
    async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def txn(compare: list[dict[str, Any]], success: list[dict[str, Any]]) -> tuple[bool, int]:
            body = {"compare": compare, "success": [op | {"value": b64(op["value"])} for op in success]}
            async with session.post("/v1/txn", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}) as response:
                if response.status != 200:
                    await response.read()
                    raise TxnRefused(response.status)
                reply = await response.json()
            return bool(reply["succeeded"]), int(reply["version"])

        return await txn_load(opts, txn)


async def txn_phase_keychain_client(url: str, opts: argparse.Namespace) -> dict[str, float]:
    """The transactions sent with `keychain.client.AsyncClient` (httpx), retries included."""
    async with AsyncClient(url, max_connections=opts.concurrency + 4) as kc:

        async def txn(compare: list[dict[str, Any]], success: list[dict[str, Any]]) -> tuple[bool, int]:
            try:
                result = await kc.txn(compare=compare, success=success)
            except KeychainError as exc:
                raise TxnRefused(str(exc)) from exc
            return result.succeeded, result.version

        return await txn_load(opts, txn)


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


async def watch_phase(url: str, opts: argparse.Namespace) -> dict[str, float]:
    """Events/s delivered to `watchers` streams while writes run; delay from ack to receipt."""
    acked: dict[int, float] = {}
    received: list[tuple[int, float]] = []
    prefix = f"{PREFIX}w/"
    async with AsyncClient(url, max_connections=opts.watchers + 8, timeout=30) as kc:
        start_version = (await kc.range(prefix=prefix, limit=1, keys_only=True)).version
        ready = asyncio.Event()
        opened = 0

        async def watcher() -> None:
            nonlocal opened
            count = 0
            stream = kc.watch(prefix, from_version=start_version + 1)
            opened += 1
            if opened == opts.watchers:
                ready.set()
            async for event in stream:
                received.append((event.version, time.monotonic()))
                count += 1
                if count == opts.watch_writes:
                    break

        tasks = [asyncio.create_task(watcher()) for _ in range(opts.watchers)]
        await asyncio.wait_for(ready.wait(), 30)
        await asyncio.sleep(0.5)  # the streams' requests are out and answered
        started = time.monotonic()
        for i in range(opts.watch_writes):
            version = await kc.put(f"{prefix}{i % 50}", f"{i}")
            acked[version] = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), max(30.0, opts.duration * 4))
        except TimeoutError:
            for task in tasks:
                task.cancel()
        seconds = max(t for _, t in received) - started if received else float("nan")
    delays = [(at - acked[v]) * 1e3 for v, at in received if v in acked]
    return {"events": len(received), "events_per_s": len(received) / seconds if seconds else 0.0,
            "delay_p50_ms": percentile(delays, 0.5), "delay_p99_ms": percentile(delays, 0.99),
            "watchers": opts.watchers, "writes": opts.watch_writes}


async def run(url: str, opts: argparse.Namespace) -> dict[str, Any]:
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if opts.verbose else (lambda text: None)
    results: dict[str, Any] = {}
    if "range" in opts.phases:
        say(f"prefilling {opts.keys} keys ...")
        await prefill(url, opts.keys)
        results["range"] = {}
        for member in members(url):
            for limit in opts.limits:
                say(f"range limit {limit} on {member['id']} ({member['role']}) ...")
                results["range"][f"{member['id']}/{member['role']}/limit={limit}"] = \
                    await range_phase(member, limit, opts)
    if "txn" in opts.phases and opts.txn_client in ("aiohttp", "both"):
        say("2-key CAS transactions (aiohttp) ...")
        results["txn"] = await txn_phase(url, opts)
    if "txn" in opts.phases and opts.txn_client in ("keychain", "both"):
        say("2-key CAS transactions (keychain.client) ...")
        results["txn_keychain_client"] = await txn_phase_keychain_client(url, opts)
    if "watch" in opts.phases:
        say(f"watch fan-out to {opts.watchers} watchers ...")
        results["watch"] = await watch_phase(url, opts)
    return results


def report(results: dict[str, Any], load: str) -> str:
    lines = [f"load before the run: {load}", ""]
    if "range" in results:
        lines.append("range reads (straight to each node):")
        for name, r in results["range"].items():
            lines.append(f"  {name:<32} {r['ranges_per_s']:>9.1f} ranges/s {r['items_per_s']:>11.0f} items/s")
    for name, sender in (("txn", "aiohttp"), ("txn_keychain_client", "keychain.client")):
        if name in results:
            t = results[name]
            lines.append(f"2-key CAS transactions ({sender}): {t['txns_per_s']:.1f}/s  compare failed "
                         f"{t['compare_failed']}  errors {t['errors']}  p50 {t['p50_ms']:.1f} ms  p99 {t['p99_ms']:.1f} ms")
    if "watch" in results:
        w = results["watch"]
        lines.append(f"watch fan-out: {w['watchers']} watchers, {w['writes']} writes: {w['events_per_s']:.0f} "
                     f"events/s delivered, ack-to-event p50 {w['delay_p50_ms']:.1f} ms p99 {w['delay_p99_ms']:.1f} ms")
    return "\n".join(lines)


def uptime() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    load = uptime()
    cluster: AbstractContextManager[Any]
    if opts.url:
        cluster = nullcontext(vs_etcd.Target("keychain", opts.url))
    else:
        base = next(b for b in range(21_000, 31_000, 300) if not busy_ports([*range(b, b + 210), b + 250]))
        cluster = vs_etcd.keychain_cluster(base + 250, base, opts.verbose)
    with cluster as target:
        results = asyncio.run(run(target.url, opts))
    print(report(results, load))
    print(json.dumps({"load": load, **results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
