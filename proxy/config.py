"""The proxy's configuration and its command line (`keychain proxy ...`)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from keychain.tls_files import TlsFiles, add_tls_arguments, tls_files_from_args

TOKEN_ENV = "KEYCHAIN_AUTH_TOKEN"


@dataclass(frozen=True)
class PublicTls:
    """The certificate the proxy's public ports present, and the CA their clients must hold a
    certificate of (`client_ca`; None: no client certificate asked, the bearer token still applies)."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def check_readable(self) -> None:
        """Raise ValueError naming the first file that cannot be read."""
        files = (("--https-cert", self.cert), ("--https-key", self.key), ("--https-client-ca", self.client_ca))
        for flag, path in files:
            if path is not None and not os.access(path, os.R_OK):
                raise ValueError(f"{flag} {path}: not a readable file")


@dataclass(frozen=True)
class ProxyConfig:
    coordinators: tuple[str, ...]
    chain: str
    listen: tuple[str, int] = ("127.0.0.1", 8080)
    grpc_listen: tuple[str, int] | None = None
    max_key_bytes: int = 1024
    max_value_bytes: int = 1 << 20
    auth_token: str | None = field(default=None, repr=False)
    read_consistency: str = "strong"
    request_timeout: float = 5.0  # an operation's whole budget, retries included
    attempt_timeout: float = 2.0  # one RPC to a node
    max_batch_ops: int = 256
    max_batch_bytes: int = 3 << 20  # below gRPC's default 4 MiB message limit on the node
    max_pending_writes: int = 10_000
    max_read_batch_ops: int = 256  # reads per ReadBatch to one member
    max_pending_reads: int = 10_000  # per member
    max_txn_ops: int = 128  # compares plus the ops of both branches of one transaction
    max_txn_bytes: int = 1 << 20  # the keys and values of one transaction, decoded
    watch_heartbeat: float = 10.0  # seconds of silence before a watch stream gets a heartbeat
    retry_after_seconds: int = 1
    topology_poll_interval: float = 5.0  # GetChain besides the watch stream, in case it goes silent
    log_level: str = "warning"
    tls_files: TlsFiles | None = None  # mutual TLS to nodes and coordinators (None: plaintext)
    public_tls: PublicTls | None = None  # HTTPS and gRPC over TLS on the public ports when set

    def __post_init__(self) -> None:
        if not self.coordinators:
            raise ValueError("at least one coordinator address is needed")
        if not self.chain:
            raise ValueError("the chain name is empty")
        if self.read_consistency not in ("strong", "eventual"):
            raise ValueError(f"read consistency is strong or eventual, not {self.read_consistency!r}")
        if self.max_key_bytes < 1 or self.max_value_bytes < 0:
            raise ValueError("size limits must be positive")
        if min(self.max_batch_ops, self.max_batch_bytes, self.max_pending_writes, self.max_read_batch_ops,
               self.max_pending_reads) < 1:
            raise ValueError("batch and queue limits must be positive")
        if self.max_txn_ops < 1 or self.max_txn_bytes < 1:
            raise ValueError("transaction limits must be positive")
        if self.watch_heartbeat <= 0:
            raise ValueError("the watch heartbeat must be positive")
        if self.request_timeout <= 0 or self.attempt_timeout <= 0:
            raise ValueError("timeouts must be positive")


def parse_address(text: str) -> tuple[str, int]:
    """host:port (IPv6 as [::1]:port) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected host:port, got {text!r}")
    return host.strip("[]"), int(port)


def _address(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _coordinators(text: str) -> tuple[str, ...]:
    members = tuple(part.strip() for part in text.split(",") if part.strip())
    for member in members:
        _address(member)
    if not members:
        raise argparse.ArgumentTypeError("no coordinator address given")
    return members


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="keychain proxy",
        description="Serve the KeychainDB HTTP and gRPC API in front of one chain.",
    )
    p.add_argument("--listen", type=_address, default=("127.0.0.1", 8080), help="HTTP host:port")
    p.add_argument("--grpc", type=_address, default=None, help="gRPC KV API host:port (off if omitted)")
    p.add_argument(
        "--coordinator",
        type=_coordinators,
        required=True,
        help="coordinator members host:port[,host:port...]",
    )
    p.add_argument("--chain", required=True, help="the chain this proxy serves")
    p.add_argument("--max-key-bytes", type=int, default=1024)
    p.add_argument("--max-value-bytes", type=int, default=1 << 20)
    p.add_argument("--auth-token-file", type=Path, help=f"bearer token required on /v1 (or env {TOKEN_ENV})")
    p.add_argument("--read-consistency", choices=("strong", "eventual"), default="strong")
    p.add_argument(
        "--request-timeout", type=float, default=5.0, help="seconds per operation, retries included"
    )
    p.add_argument("--attempt-timeout", type=float, default=2.0, help="seconds per RPC to a node")
    p.add_argument("--max-batch-ops", type=int, default=256, help="writes per WriteRequest to the head")
    p.add_argument("--max-read-batch-ops", type=int, default=256, help="reads per ReadBatch to one member")
    p.add_argument("--max-txn-ops", type=int, default=128, help="compares and ops in one transaction")
    p.add_argument("--max-txn-bytes", type=int, default=1 << 20, help="keys and values of one transaction")
    p.add_argument(
        "--watch-heartbeat", type=float, default=10.0, help="seconds of silence before a watch heartbeat"
    )
    p.add_argument("--https-cert", type=Path, help="serve HTTPS (and gRPC over TLS) with this PEM certificate")
    p.add_argument("--https-key", type=Path, help="the PEM private key of --https-cert")
    p.add_argument(
        "--https-client-ca", type=Path,
        help="require a client certificate signed by this PEM CA on the public ports (with --https-cert)",
    )
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="warning")
    add_tls_arguments(p)
    return p


def _public_tls(args: argparse.Namespace, parser: argparse.ArgumentParser) -> PublicTls | None:
    if (args.https_cert is None) != (args.https_key is None):
        parser.error("--https-cert and --https-key go together")
    if args.https_cert is None:
        if args.https_client_ca is not None:
            parser.error("--https-client-ca needs --https-cert and --https-key")
        return None
    tls = PublicTls(cert=args.https_cert, key=args.https_key, client_ca=args.https_client_ca)
    try:
        tls.check_readable()
    except ValueError as exc:
        parser.error(str(exc))
    return tls


def config_from_args(argv: list[str], environ: dict[str, str] | None = None) -> ProxyConfig:
    """Parse `keychain proxy` arguments; exits with a usage message on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    token: str | None = None
    if args.auth_token_file is not None:
        try:
            token = args.auth_token_file.read_text().strip()
        except OSError as exc:
            parser.error(f"cannot read --auth-token-file: {exc}")
        if not token:
            parser.error("--auth-token-file is empty")
    elif env.get(TOKEN_ENV, "").strip():
        token = env[TOKEN_ENV].strip()
    try:
        return ProxyConfig(
            coordinators=args.coordinator,
            chain=args.chain,
            listen=args.listen,
            grpc_listen=args.grpc,
            max_key_bytes=args.max_key_bytes,
            max_value_bytes=args.max_value_bytes,
            auth_token=token,
            read_consistency=args.read_consistency,
            request_timeout=args.request_timeout,
            attempt_timeout=args.attempt_timeout,
            max_batch_ops=args.max_batch_ops,
            max_read_batch_ops=args.max_read_batch_ops,
            max_txn_ops=args.max_txn_ops,
            max_txn_bytes=args.max_txn_bytes,
            watch_heartbeat=args.watch_heartbeat,
            log_level=args.log_level,
            tls_files=tls_files_from_args(args, parser),
            public_tls=_public_tls(args, parser),
        )
    except ValueError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits
