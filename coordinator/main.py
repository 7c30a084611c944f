"""`keychain coordinator`: run one member of the coordinator's Raft cluster.

    keychain coordinator --id coord-1 --listen 127.0.0.1:7001 --http 127.0.0.1:7081 \\
        --data-dir data/coord-1 --peers coord-1=127.0.0.1:7001,coord-2=...,coord-3=... \\
        [--chain main ...] [--log-level warning]

In a container the member listens on every interface and is reached at a DNS name; --advertise
says that name, which is what --peers must give for this member (a wildcard --listen with no
--advertise takes its address from --peers):

    keychain coordinator --id c-0 --listen 0.0.0.0:7000 --advertise c-0.coord.ns.svc:7000 \\
        --data-dir /data --peers c-0=c-0.coord.ns.svc:7000,c-1=c-1.coord.ns.svc:7000,...

A member that joins a running cluster names any of its members instead of --peers (or, with
--join-unlisted, is given the initial members' --peers that do not name it), then is added
through the admin API of any member (it becomes a learner, catches up, and is promoted to voter):

    keychain coordinator --id coord-4 --listen 127.0.0.1:7004 --http 127.0.0.1:7084 \\
        --data-dir data/coord-4 --join 127.0.0.1:7001,127.0.0.1:7002
    curl -X POST http://127.0.0.1:7081/v1/members -d '{"id": "coord-4", "address": "127.0.0.1:7004"}'

Exit codes: 0 after a clean shutdown (SIGTERM or SIGINT; a leader hands leadership over first),
1 when the Raft log cannot be opened (corrupt, another member's, in use) or the member fails,
2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from keychain.coordinator.admin_auth import read_token_file
from keychain.coordinator.log import StorageError
from keychain.coordinator.server import CoordinatorOptions, CoordinatorServer

from keychain.tls_files import add_tls_arguments, tls_files_from_args

log = logging.getLogger("keychain.coordinator")


def parse_address(text: str, what: str) -> str:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{what} must be host:port, got {text!r}")
    return text


# Hosts that mean "every interface": a member listening on one is reached at another name.
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]", ""})


def is_wildcard(address: str) -> bool:
    return address.rpartition(":")[0] in WILDCARD_HOSTS


def parse_peers(text: str) -> dict[str, str]:
    peers: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        member, sep, address = item.partition("=")
        if not sep or not member:
            raise argparse.ArgumentTypeError(f"--peers items must be id=host:port, got {item!r}")
        if member in peers:
            raise argparse.ArgumentTypeError(f"--peers names {member!r} twice")
        peers[member] = parse_address(address, f"the address of {member}")
    if not peers:
        raise argparse.ArgumentTypeError("--peers must name at least one member")
    return peers


def parse_join(text: str) -> list[str]:
    addresses = [parse_address(a.strip(), "--join addresses") for a in text.split(",") if a.strip()]
    if not addresses:
        raise argparse.ArgumentTypeError("--join must name at least one host:port")
    return list(dict.fromkeys(addresses))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="keychain coordinator", description="Run one coordinator (Raft) member.",
        epilog="A new cluster: start every initial member with the same --peers. Growing a running cluster: "
               "start the new member with --join (empty --data-dir), then POST /v1/members "
               '{"id": ..., "address": ...} to any member\'s --http; DELETE /v1/members/{id} removes one. '
               "Once a member has data, its log is what it trusts: --peers or --join only help it start.")
    p.add_argument("--id", required=True, help="this member's id (one of the --peers ids when bootstrapping)")
    p.add_argument("--listen", required=True, type=lambda s: parse_address(s, "--listen"),
                   help="host:port of the gRPC server (Coordinator API and Raft peers)")
    p.add_argument("--advertise", type=lambda s: parse_address(s, "--advertise"),
                   help="host:port the other members and clients reach this one at: its entry in --peers, "
                        "or the address an admin adds it with (default: the --listen address; with a wildcard "
                        "--listen such as 0.0.0.0:PORT, this member's --peers entry)")
    p.add_argument("--http", type=lambda s: parse_address(s, "--http"), help="host:port of the HTTP admin API")
    p.add_argument("--data-dir", required=True, type=Path, help="where the Raft log is kept")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--peers", type=parse_peers,
                       help="bootstrap a new cluster: every initial member, this one included, the same list on "
                            "each: id1=host:port,id2=host:port,...")
    start.add_argument("--join", type=parse_join,
                       help="join a running cluster: host:port[,host:port] of any of its members; the member is "
                            "added by POST /v1/members and learns the membership from the leader's log")
    p.add_argument("--join-unlisted", action="store_true",
                   help="a member that --peers does not name joins the cluster they form (as with --join and "
                        "their addresses) instead of refusing to start: one command line for the initial members "
                        "and for those added later")
    p.add_argument("--chain", action="append", default=[], help="a chain the leader creates if missing (repeatable)")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    add_tls_arguments(p)
    p.add_argument("--admin-token-file", type=Path,
                   help="a bearer token the admin HTTP API accepts (with TLS, operator and admin certificates too)")
    p.add_argument("--admin-open-reads", action="store_true",
                   help="the admin HTTP API answers GET (status, health, metrics) without credentials, for probes")
    args = p.parse_args(argv)
    args.tls_files = tls_files_from_args(args, p)
    if args.admin_token_file is not None:
        try:
            read_token_file(str(args.admin_token_file))
        except (OSError, ValueError) as exc:
            p.error(f"cannot use --admin-token-file: {exc}")
    if args.join_unlisted and args.peers and args.id not in args.peers:
        args.join, args.peers = list(args.peers.values()), None
    if args.join:
        args.advertise = args.advertise or args.listen
        if args.advertise in args.join or args.listen in args.join:
            p.error(f"--join names this member's own address {args.advertise}; name a running member")
        return args
    if args.id not in args.peers:
        p.error(f"--peers must include this member {args.id!r}")
    listed = args.peers[args.id]
    if args.advertise is None:
        # A wildcard listener is reached at whatever name --peers gives it, on the port it listens on.
        wildcard = is_wildcard(args.listen) and port_of(listed) == port_of(args.listen)
        args.advertise = listed if wildcard else args.listen
    if listed != args.advertise:
        told = "--advertise" if args.advertise != args.listen else "--listen"
        p.error(f"--peers gives {args.id} the address {listed}, but {told} is {args.advertise}")
    return args


def port_of(address: str) -> str:
    return address.rpartition(":")[2]


async def serve(options: CoordinatorOptions) -> int:
    server = CoordinatorServer(options)
    try:
        await server.start()
    except StorageError as exc:
        print(f"keychain coordinator: cannot open the Raft log: {exc}", file=sys.stderr)
        await server.shutdown()
        return 1
    except OSError as exc:
        print(f"keychain coordinator: {exc}", file=sys.stderr)
        await server.shutdown()
        return 1
    loop = asyncio.get_running_loop()
    def on_signal(sig: signal.Signals) -> None:
        log.info("coordinator stopping id=%s signal=%s", options.id, sig.name)
        server.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    code = 0
    try:
        await server.wait()
    except Exception as exc:
        print(f"keychain coordinator: the Raft member failed: {exc!r}", file=sys.stderr)
        code = 1
    finally:
        await server.shutdown()
    return code


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    return asyncio.run(serve(options_of(args)))


def options_of(args: argparse.Namespace) -> CoordinatorOptions:
    """The server's options from parsed arguments."""
    return CoordinatorOptions(
        id=args.id, listen=args.listen, advertise=args.advertise, data_dir=args.data_dir, peers=args.peers or {},
        http=args.http, chains=list(dict.fromkeys(args.chain)), join=args.join or [],
        tls_files=args.tls_files, admin_token_file=args.admin_token_file, admin_open_reads=args.admin_open_reads,
    )
