"""Client commands of the `keychain` CLI: put, get, delete, list, txn, watch, status, bench.

    keychain put KEY [VALUE]        VALUE or stdin; prints the new version
    keychain get KEY                the raw value on stdout
    keychain delete KEY
    keychain list PREFIX            every key under PREFIX at one snapshot: key, version, value
    keychain txn FILE|-             an etcd-shaped JSON transaction (values as text); prints the reply
    keychain watch PREFIX           committed changes as they come (--json: one JSON object a line)
    keychain status                 the chain head -> tail, the coordinator
    keychain bench --mix mixed      load with a progress bar; throughput, p50, p99

All take --url (env KEYCHAIN_URL, default http://127.0.0.1:8080) and --token (env
KEYCHAIN_AUTH_TOKEN); for an https:// URL, --cacert (env KEYCHAIN_CACERT) and a client
certificate --cert/--key (env KEYCHAIN_CERT, KEYCHAIN_KEY). Exit codes: 0 done, 1 refused or failed
(for txn: also when its compares did not hold), 2 usage, 3 a write whose outcome is unknown, 4 key
not found, 5 a watch's or range's version is compacted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import ssl
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from keychain.client import (
    DEFAULT_URL,
    Client,
    Compacted,
    KeychainError,
    KeyNotFound,
    OutcomeUnknown,
    PreconditionFailed,
    key_path,
    tls_context,
)

EXIT_FAILED, EXIT_USAGE, EXIT_UNKNOWN, EXIT_NOT_FOUND, EXIT_COMPACTED = 1, 2, 3, 4, 5
COMMANDS = ("put", "get", "delete", "list", "txn", "watch", "status", "bench")
MAX_BENCH_SECONDS = 600
MAX_CONCURRENCY = 1024


def _parser(command: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"keychain {command}")
    p.add_argument("--url", default=os.environ.get("KEYCHAIN_URL", DEFAULT_URL), help="proxy URL")
    p.add_argument("--token", default=os.environ.get("KEYCHAIN_AUTH_TOKEN"), help="bearer token")
    p.add_argument("--cacert", default=os.environ.get("KEYCHAIN_CACERT"),
                   help="CA (PEM) to check an https:// proxy against (default: the system's)")
    # dest client_*: `key` is the positional KEY of put/get/delete.
    p.add_argument("--cert", dest="client_cert", default=os.environ.get("KEYCHAIN_CERT"),
                   help="client certificate (PEM)")
    p.add_argument("--key", dest="client_key", default=os.environ.get("KEYCHAIN_KEY"),
                   help="the client certificate's private key (PEM)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    if command == "put":
        p.description = "Write a key. The value is the argument, or stdin when omitted."
        p.add_argument("key")
        p.add_argument("value", nargs="?")
        cond = p.add_mutually_exclusive_group()
        cond.add_argument("--if-version", type=int, help="compare-and-set: only if the version is this")
        cond.add_argument("--if-absent", action="store_true", help="create only")
    elif command == "get":
        p.description = "Read a key; the raw value goes to stdout."
        p.add_argument("key")
        p.add_argument(
            "--consistency", choices=("strong", "eventual"), default=None, help="default: the proxy's setting"
        )
        p.add_argument("--print-version", action="store_true", help="print the version to stderr too")
    elif command == "delete":
        p.description = "Delete a key."
        p.add_argument("key")
        p.add_argument("--if-version", type=int, help="only if the version is this")
    elif command == "list":
        p.description = "List the keys under PREFIX (all pages, one snapshot): key, version, value."
        p.add_argument("prefix", nargs="?", default="")
        p.add_argument("--keys-only", action="store_true", help="leave the values out")
        p.add_argument("--limit", type=int, default=None, help="keys per page (1..10000)")
        p.add_argument(
            "--consistency", choices=("strong", "eventual"), default=None, help="default: the proxy's setting"
        )
        p.add_argument("--json", action="store_true", help="one JSON object a line (values as text)")
    elif command == "txn":
        p.description = (
            'Run a transaction: {"compare": [...], "success": [...], "failure": [...]} from FILE or stdin (-); '
            "values are text. Prints the reply as JSON; exit 1 when the compares did not hold."
        )
        p.add_argument("file")
        p.add_argument("--idempotency-key", default=None, help="to learn the outcome of an earlier attempt")
    elif command == "watch":
        p.description = "Print every committed change under PREFIX as it comes, until interrupted."
        p.add_argument("prefix", nargs="?", default="")
        p.add_argument("--from-version", type=int, default=None, help="the first version wanted (default: now)")
        p.add_argument("--json", action="store_true", help="one JSON object a line")
    elif command == "status":
        p.description = "Show the chain head -> tail and the coordinator."
        p.add_argument("--json", action="store_true", help="print the raw /v1/cluster report")
    elif command == "bench":
        p.description = "Drive load against a running cluster and report throughput and latency."
        p.add_argument("--duration", type=float, default=10.0, help=f"seconds (at most {MAX_BENCH_SECONDS})")
        p.add_argument(
            "--concurrency", type=int, default=32, help=f"requests in flight (1..{MAX_CONCURRENCY})"
        )
        p.add_argument("--value-size", type=int, default=128, help="bytes per value")
        p.add_argument("--keys", type=int, default=1000, help="size of the key space")
        p.add_argument(
            "--mix", choices=("writes", "reads", "mixed"), default="mixed", help="mixed: 1 write : 9 reads"
        )
        p.add_argument("--prefix", default="bench/", help="key prefix")
    return p


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: keychain {'|'.join(COMMANDS)} ...", file=sys.stderr)
        return EXIT_USAGE
    command = argv[0]
    parser = _parser(command)
    args = parser.parse_args(argv[1:])
    try:
        args.tls = tls_context(args.cacert, args.client_cert, args.client_key)
    except (OSError, ssl.SSLError, ValueError) as exc:
        parser.error(f"cannot load --cacert/--cert/--key: {exc}")
    try:
        if command == "bench":
            return _bench(args)
        tls_files = {"cacert": args.cacert, "cert": args.client_cert, "key": args.client_key}
        with Client(args.url, timeout=args.timeout, token=args.token, **tls_files) as client:
            run = {"put": _put, "get": _get, "delete": _delete, "list": _list, "txn": _txn, "watch": _watch,
                   "status": _status}[command]
            return run(client, args)
    except OutcomeUnknown as exc:
        print(
            f"keychain: outcome unknown: {exc.message} (idempotency key {exc.idempotency_key})",
            file=sys.stderr,
        )
        return EXIT_UNKNOWN
    except KeyNotFound:
        print(f"keychain: key not found: {args.key}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except Compacted as exc:
        print(f"keychain: compacted: {exc.message} (oldest version kept {exc.compact_version})", file=sys.stderr)
        return EXIT_COMPACTED
    except KeyboardInterrupt:
        return 0
    except PreconditionFailed as exc:
        print(f"keychain: precondition failed (current version {exc.current_version})", file=sys.stderr)
        return EXIT_FAILED
    except KeychainError as exc:
        print(f"keychain: {exc.code or 'error'}: {exc.message}", file=sys.stderr)
        return EXIT_FAILED


def _put(client: Client, args: argparse.Namespace) -> int:
    value = args.value.encode() if args.value is not None else sys.stdin.buffer.read()
    version = client.put(args.key, value, if_version=args.if_version, if_absent=args.if_absent)
    print(version)
    return 0


def _get(client: Client, args: argparse.Namespace) -> int:
    value, version = client.get(args.key, consistency=args.consistency)
    sys.stdout.buffer.write(value)
    if sys.stdout.isatty() and not value.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()
    if args.print_version:
        print(f"version {version}", file=sys.stderr)
    return 0


def _delete(client: Client, args: argparse.Namespace) -> int:
    print(client.delete(args.key, if_version=args.if_version))
    return 0


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", errors="replace")


def _list(client: Client, args: argparse.Namespace) -> int:
    items = client.list(args.prefix, limit=args.limit, keys_only=args.keys_only, consistency=args.consistency)
    if args.json:
        for item in items:
            print(json.dumps({"key": item.key, "value": _text(item.value), "version": item.version}), flush=True)
        return 0
    table = Table("key", "version", *(() if args.keys_only else ("value",)))
    for item in items:
        table.add_row(item.key, str(item.version), *(() if args.keys_only else (_text(item.value) or "",)))
    Console().print(table)
    return 0


def _txn(client: Client, args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()  # noqa: SIM115
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        print(f"keychain: the transaction is not JSON: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not isinstance(document, dict):
        print("keychain: the transaction is a JSON object", file=sys.stderr)
        return EXIT_USAGE
    result = client.txn(
        document.get("compare", []), document.get("success", []), document.get("failure", []),
        idempotency_key=args.idempotency_key,
    )
    results = [r | ({"value": _text(r["value"])} if "value" in r else {}) for r in result.results]
    print(json.dumps({"succeeded": result.succeeded, "version": result.version, "results": results}))
    return 0 if result.succeeded else EXIT_FAILED


def _watch(client: Client, args: argparse.Namespace) -> int:
    for event in client.watch(args.prefix, from_version=args.from_version):
        if args.json:
            data = {"type": event.type, "key": event.key, "value": _text(event.value), "version": event.version}
            print(json.dumps(data), flush=True)
        else:
            shown = "" if event.value is None else f" {_text(event.value)}"
            print(f"{event.version} {event.type.upper()} {event.key}{shown}", flush=True)
    return 0


def _status(client: Client, args: argparse.Namespace) -> int:
    report = client.cluster()
    console = Console()
    if args.json:
        console.print_json(data=report)
        return 0
    for table in status_tables(report):
        console.print(table)
    return 0


def status_tables(report: dict[str, Any]) -> list[Table]:
    """Readable tables for a /v1/cluster report: one per chain (head first), one for the coordinator."""
    tables = []
    for chain in report.get("chains", []):
        members = chain.get("members", [])
        path = " -> ".join(m["id"] for m in members if m.get("role") != "syncing") or "(no active member)"
        title = f"chain {chain['name']}  epoch {chain['epoch']}  {path}"
        full = chain.get("storage_alarms") or []
        if full:
            title += f"  [red]DISK FULL on {', '.join(full)}: writes refused[/red]"
        table = Table(title=title, title_justify="left")
        for column in ("#", "member", "address", "role", "health", "disk", "reads", "writes"):
            table.add_column(column, justify="right" if column in ("#", "reads", "writes") else "left")
        for index, m in enumerate(members, 1):
            health = "[green]healthy[/green]" if m.get("healthy") else "[red]unhealthy[/red]"
            disk = "[red]full[/red]" if m.get("storage_alarm") else "ok"
            table.add_row(
                str(index), m["id"], m["address"], m["role"], health, disk, f"{m['reads']:,}", f"{m['writes']:,}"
            )
        tables.append(table)
    coordinator = report.get("coordinator", {})
    leader = coordinator.get("leader") or "(none)"
    table = Table(title=f"coordinator  leader {leader}", title_justify="left")
    for column in ("member", "address", "role"):
        table.add_column(column)
    for m in coordinator.get("members", []):
        role = f"[bold]{m['role']}[/bold]" if m["id"] == coordinator.get("leader") else m["role"]
        table.add_row(m["id"], m["address"], role)
    tables.append(table)
    return tables


# ---- bench ----


@dataclass
class BenchResult:
    seconds: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"write": [], "read": []})
    errors: dict[str, int] = field(default_factory=dict)

    def percentile(self, op: str, fraction: float) -> float:
        values = sorted(self.latencies[op])
        if not values:
            return 0.0
        return values[min(len(values) - 1, int(fraction * len(values)))]


def _bench(args: argparse.Namespace) -> int:
    if not 0 < args.duration <= MAX_BENCH_SECONDS:
        print(f"keychain bench: --duration must be in (0, {MAX_BENCH_SECONDS}]", file=sys.stderr)
        return EXIT_USAGE
    if not 1 <= args.concurrency <= MAX_CONCURRENCY or args.keys < 1 or args.value_size < 0:
        print("keychain bench: bad --concurrency, --keys or --value-size", file=sys.stderr)
        return EXIT_USAGE
    result = asyncio.run(run_bench(args))
    console = Console()
    table = Table(
        title=f"bench {args.mix}: {args.concurrency} in flight, {args.value_size}-byte values, {result.seconds:.1f}s",
        title_justify="left",
    )
    for column in ("op", "count", "ops/s", "p50 ms", "p99 ms", "errors"):
        table.add_column(column, justify="left" if column == "op" else "right")
    for op in ("write", "read"):
        count = len(result.latencies[op])
        errors = sum(n for (name, n) in result.errors.items() if name.startswith(op))
        if count or errors:
            table.add_row(
                op,
                f"{count:,}",
                f"{count / result.seconds:,.0f}",
                f"{result.percentile(op, 0.50) * 1000:.2f}",
                f"{result.percentile(op, 0.99) * 1000:.2f}",
                f"{errors:,}",
            )
    console.print(table)
    for name, n in sorted(result.errors.items()):
        console.print(f"  {name}: {n}")
    return 0 if not result.errors else EXIT_FAILED


async def run_bench(args: argparse.Namespace, on_start: Callable[[], None] | None = None) -> BenchResult:
    """Closed-loop load: `concurrency` workers, each one request at a time, until the duration ends.

    `on_start` is called when the timed part begins (after the preload of a read mix).

    The load goes through one shared aiohttp session (keep-alive connections, one per worker)
    rather than `AsyncClient`: httpx's connection pool costs several milliseconds of CPU per
    request at this concurrency, which made the bench measure itself. Requests are the ones
    `AsyncClient` sends (same paths, idempotency keys, consistency), without its retries.
    """
    value = os.urandom(args.value_size)
    paths = [key_path(f"{args.prefix}{i}") for i in range(args.keys)]
    result = BenchResult()
    base = args.url.rstrip("/")
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    connector = aiohttp.TCPConnector(
        limit=args.concurrency, force_close=False, ssl=args.tls if args.tls is not None else True
    )
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:

        async def put(path: str) -> str | None:
            write_headers = {"Content-Type": "application/octet-stream", "Idempotency-Key": uuid.uuid4().hex}
            async with session.put(base + path, data=value, headers=write_headers) as response:
                return await _bench_error(response)

        async def get(path: str) -> str | None:
            async with session.get(base + path + "?consistency=strong") as response:
                return await _bench_error(response)

        if args.mix != "writes":  # reads need something to read
            failed = await _preload(put, paths, args.concurrency)
            if failed:
                result.errors["preload"] = failed
        rng = random.Random()
        write_share = {"writes": 1.0, "reads": 0.0, "mixed": 0.1}[args.mix]
        if on_start is not None:
            on_start()
        started = time.perf_counter()
        deadline = started + args.duration

        async def worker() -> None:
            while (now := time.perf_counter()) < deadline:
                path = paths[rng.randrange(len(paths))]
                op = "write" if rng.random() < write_share else "read"
                try:
                    error = await (put(path) if op == "write" else get(path))
                except (aiohttp.ClientError, TimeoutError) as exc:
                    error = f"unavailable ({type(exc).__name__})"
                if error is not None:
                    name = f"{op} {error}"
                    result.errors[name] = result.errors.get(name, 0) + 1
                    continue
                result.latencies[op].append(time.perf_counter() - now)

        progress = Progress(
            TextColumn("bench"), BarColumn(), TextColumn("{task.fields[ops]:,} ops"), TimeRemainingColumn()
        )
        with progress:
            task = progress.add_task("bench", total=args.duration, ops=0)
            workers = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
            while not all(w.done() for w in workers):
                await asyncio.wait(workers, timeout=0.2)
                done = len(result.latencies["write"]) + len(result.latencies["read"])
                progress.update(task, completed=min(args.duration, time.perf_counter() - started), ops=done)
            await asyncio.gather(*workers)
        result.seconds = time.perf_counter() - started
    return result


async def _bench_error(response: aiohttp.ClientResponse) -> str | None:
    """None for a success, else the error code of the JSON body (or the status)."""
    body = await response.read()
    if response.status < 400:
        return None
    try:
        code = json.loads(body).get("error")
    except (ValueError, AttributeError):
        code = None
    return str(code) if code else f"http_{response.status}"


async def _preload(
    put: Callable[[str], Awaitable[str | None]], paths: list[str], concurrency: int
) -> int:
    """Write every key once; returns how many writes failed."""
    queue = list(paths)
    failed = 0

    async def loader() -> None:
        nonlocal failed
        while queue:
            try:
                error = await put(queue.pop())
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise KeychainError(f"preload failed: {type(exc).__name__}: {exc}", code="unavailable") from exc
            failed += error is not None

    await asyncio.gather(*(loader() for _ in range(min(concurrency, len(paths)))))
    return failed
