"""`keychain node`: run one CRAQ chain node.

    keychain node --id n1 --listen 127.0.0.1:7001 --data-dir data/n1 --chain main --coordinator 127.0.0.1:6001
    keychain node --id n1 --listen 127.0.0.1:0 --data-dir data/n1 --chain main --static

With --coordinator the node registers and heartbeats; with --static it waits for a Configure RPC
(tests and hand-built chains drive the configuration). Once serving it prints one line,
`keychain node <id> listening on <host:port>`, so a parent process can learn an ephemeral port.
SIGTERM or SIGINT stops it gracefully. A data directory that is not this node's stops it at once
with exit status 2 and a message saying why.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from keychain.node.core import CoreOptions
from keychain.node.disk_alarm import DEFAULT_HIGH_WATER, HighWater
from keychain.node.storage import DataDirError
from keychain.node.transfer_rate import DEFAULT_TRANSFER_RATE_MB
from keychain.node.watch_history import DEFAULT_MAX_BYTES, DEFAULT_MAX_CHANGES

from keychain.tls_files import add_tls_arguments, tls_files_from_args

log = logging.getLogger("keychain.node")


def _address(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not host:port")
    return text


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number of at least 0")
    return value


def _high_water(text: str) -> HighWater:
    try:
        return HighWater.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="keychain node", description="Run one CRAQ chain node.")
    p.add_argument("--id", required=True, help="this node's id, unique in its chain")
    p.add_argument("--listen", required=True, type=_address, help="host:port to serve gRPC on (port 0: any)")
    p.add_argument("--advertise", type=_address,
                   help="host:port other nodes reach this one at (default: the listen address)")
    p.add_argument("--data-dir", required=True, help="the node's RocksDB directory (created if absent)")
    p.add_argument("--chain", required=True, help="the chain this node serves")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--coordinator", help="coordinator addresses, host:port[,host:port...]")
    mode.add_argument("--static", action="store_true", help="no coordinator: wait for a Configure RPC")
    defaults = CoreOptions()
    p.add_argument("--max-key-bytes", type=_positive, default=defaults.max_key_bytes,
                   help="largest key accepted (default: %(default)s)")
    p.add_argument("--max-value-bytes", type=_positive, default=defaults.max_value_bytes,
                   help="largest value accepted (default: %(default)s)")
    p.add_argument("--max-txn-ops", type=_positive, default=defaults.max_txn_ops,
                   help="compares and ops of both branches a transaction may hold (default: %(default)s)")
    p.add_argument("--max-txn-bytes", type=_positive, default=defaults.max_txn_bytes,
                   help="bytes of keys and values a transaction may name, write and read (default: %(default)s)")
    p.add_argument("--retain-versions", type=_positive, default=defaults.retain_versions,
                   help="seqs for which superseded versions are kept, so the following pages of a range read "
                        "the same snapshot; an older snapshot gets COMPACTED (default: %(default)s)")
    p.add_argument("--max-batch-bytes", type=_positive, default=defaults.max_batch_bytes,
                   help="payload bytes per message to the next node (default: %(default)s)")
    p.add_argument("--transfer-rate-mb", type=_rate, default=DEFAULT_TRANSFER_RATE_MB, metavar="MB_PER_S",
                   help="pace of the state transfers this node sends to a joining successor, in MB (10^6 "
                        "bytes) per second, so they do not starve the traffic it serves; 0: unlimited "
                        "(default: %(default)s)")
    p.add_argument("--disk-high-water", type=_high_water, default=HighWater.parse(DEFAULT_HIGH_WATER),
                   metavar="FREE",
                   help="free space on the data volume below which the storage alarm is raised and the chain "
                        "refuses writes (reads and deletes are still served): bytes (256MiB), a percentage of "
                        f"the volume (5%%), or both, the larger applying (default: {DEFAULT_HIGH_WATER.replace('%', '%%')})")
    p.add_argument("--watch-history-changes", type=_positive, default=DEFAULT_MAX_CHANGES,
                   help="committed changes kept for watches to resume from; an older from_version gets "
                        "COMPACTED (default: %(default)s)")
    p.add_argument("--watch-history-bytes", type=_positive, default=DEFAULT_MAX_BYTES,
                   help="bytes of keys and values kept for watches, whichever bound is reached first "
                        "(default: %(default)s)")
    p.add_argument("--metrics-listen", type=_address, help="host:port to serve Prometheus /metrics on")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                   help="default: %(default)s")
    add_tls_arguments(p)
    return p


async def run(args: argparse.Namespace) -> int:
    # Imported here so `keychain node --help` and a bad data dir answer without loading grpc.
    from keychain.node.coordinator_link import CoordinatorLink, parse_addresses
    from keychain.node.fault_injection import open_store
    from keychain.node.server import ChainNode

    coordinators = parse_addresses(args.coordinator) if args.coordinator else []
    store = open_store(args.data_dir, args.id, args.chain)  # a test-only fault may wrap it
    api_limits = {"max_txn_ops": args.max_txn_ops, "max_txn_bytes": args.max_txn_bytes,
                  "retain_versions": args.retain_versions}
    options = CoreOptions(max_key_bytes=args.max_key_bytes, max_value_bytes=args.max_value_bytes,
                          max_batch_bytes=args.max_batch_bytes, **api_limits)
    node = ChainNode(args.id, store, options, static=args.static, tls_files=args.tls_files,
                     disk_high_water=args.disk_high_water,
                     watch_history_changes=args.watch_history_changes,
                     watch_history_bytes=args.watch_history_bytes,
                     transfer_rate_mb=args.transfer_rate_mb)
    try:
        port = await node.start(args.listen)
    except Exception:
        store.close()
        raise
    host = args.listen.rpartition(":")[0]
    advertise = args.advertise or f"{host}:{port}"
    if args.metrics_listen:
        mhost, _, mport = args.metrics_listen.rpartition(":")
        node.metrics.serve(mhost, int(mport))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(stop.wait()), asyncio.create_task(node.stopped.wait())]
    if coordinators:
        link = CoordinatorLink(node, args.chain, advertise, coordinators, tls_files=args.tls_files)
        tasks.append(asyncio.create_task(link.run()))
    print(f"keychain node {args.id} listening on {host}:{port}", flush=True)
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
    await node.stop()
    if node.failed is not None:
        print(f"keychain node: stopped after an internal failure: {node.failed!r}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    p = parser()
    args = p.parse_args(argv)
    args.tls_files = tls_files_from_args(args, p)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        return asyncio.run(run(args))
    except DataDirError as e:
        print(f"keychain node: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"keychain node: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"keychain node: error: {e}", file=sys.stderr)
        return 1
