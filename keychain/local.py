"""`keychain up`: the whole system on one machine, as child processes on 127.0.0.1.

Starts the coordinators, then the chain nodes, then one proxy; writes `<data-dir>/cluster.json`
(each component's name, kind, pid and address, kept current across restarts); prints the proxy
URL and a line with the word `ready` once a write and a read have gone through the proxy (and,
for at most JOIN_WAIT more seconds, once every node has joined the chain, so `ready` normally
means the whole chain serves); restarts a crashed child after a short delay, as a kubelet would; and on Ctrl-C or SIGTERM stops
every child, proxy first and coordinators last. Running it again on the same data dir resumes the
data: every component keeps its state under `<data-dir>/<name>/`, and the ports and sizes of the
first run are kept in cluster.json and reused unless given again. The coordinators' Raft
membership and the chain's member addresses are recorded with the base port's addresses, so a
different --base-port (or --coordinators, --chain) on an existing data dir is refused; the
proxy's --http-port/--grpc-port may change, as may --nodes (a new node joins the chain).

With --tls every component speaks mutual TLS with its own certificate, made on the first run under
`<data-dir>/tls/` and reused later (see keychain.local_certs), and the proxy serves HTTPS to
clients holding a certificate of the same CA; cluster.json names the CA and the admin client
certificate under `tls`.

On Linux each child asks the kernel for SIGTERM when the supervisor dies (PR_SET_PDEATHSIG), so
a supervisor killed with SIGKILL leaves no orphans holding the ports.

Written by hand: supervising a handful of local processes needs nothing a library would add.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when --tls is given: gRPC and cryptography are slow to load
    from keychain.local_certs import LocalCertificates

log = logging.getLogger("keychain.local")

READY_KEY = "keychain-up-ready-check"
RESTART_DELAYS = (0.5, 1.0, 2.0, 4.0)  # seconds before the 1st, 2nd, ... restart in a row
STABLE_AFTER = 30.0  # a child that ran this long has its restart backoff reset
JOIN_WAIT = 20.0  # seconds `ready` waits, after the first write and read, for every node to join
LOG_TAIL_LINES = 8  # lines of a failing child's log shown when the cluster does not become ready
PR_SET_PDEATHSIG = 1  # prctl option: the signal a child gets when its parent dies (Linux)


@dataclass
class Component:
    name: str
    kind: str  # coordinator | node | proxy
    address: str  # the gRPC address (coordinators, nodes) or the HTTP URL's host:port (proxy)
    argv: list[str]
    log_path: Path
    extra: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts_in_a_row: int = 0
    restart_at: float | None = None

    def describe(self) -> dict[str, object]:
        pid = self.process.pid if self.process and self.process.poll() is None else None
        return {"name": self.name, "kind": self.kind, "pid": pid, "address": self.address, **self.extra}


@dataclass
class Layout:
    """Where everything listens: fixed offsets from a base port, so a restart keeps its addresses."""

    data_dir: Path
    nodes: int
    coordinators: int
    http_port: int
    grpc_port: int
    base_port: int
    chain: str
    tls: bool = False

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def coordinator_port(self, i: int) -> int:
        return self.base_port + i

    def coordinator_http_port(self, i: int) -> int:
        return self.base_port + 80 + i

    def node_port(self, i: int) -> int:
        return self.base_port + 100 + i

    def pinned(self) -> dict[str, object]:
        """What a later run on the same data dir must keep: the addresses and the sizes."""
        return {
            "nodes": self.nodes, "coordinators": self.coordinators, "http_port": self.http_port,
            "grpc_port": self.grpc_port, "base_port": self.base_port, "chain": self.chain, "tls": self.tls,
        }

    def all_ports(self) -> list[int]:
        ports = [self.http_port, self.grpc_port]
        for i in range(1, self.coordinators + 1):
            ports += [self.coordinator_port(i), self.coordinator_http_port(i)]
        ports += [self.node_port(i) for i in range(1, self.nodes + 1)]
        return ports


def build_components(
    layout: Layout, python: list[str], log_level: str, certs: LocalCertificates | None = None
) -> list[Component]:
    """Every child of the cluster; with `certs`, each speaks mTLS with its own certificate."""
    logs = layout.data_dir / "logs"
    scheme = layout.scheme
    coord_addrs = [f"127.0.0.1:{layout.coordinator_port(i)}" for i in range(1, layout.coordinators + 1)]
    peers = ",".join(f"coord-{i}={a}" for i, a in enumerate(coord_addrs, start=1))
    coordinators = ",".join(coord_addrs)

    def tls_args(name: str) -> list[str]:
        return certs.component_args(name) if certs is not None else []

    out: list[Component] = []
    for i in range(1, layout.coordinators + 1):
        name = f"coord-{i}"
        http = f"127.0.0.1:{layout.coordinator_http_port(i)}"
        out.append(
            Component(
                name=name,
                kind="coordinator",
                address=coord_addrs[i - 1],
                argv=[
                    *python, "coordinator", "--id", name, "--listen", coord_addrs[i - 1], "--http", http,
                    "--data-dir", str(layout.data_dir / name), "--peers", peers, "--chain", layout.chain,
                    "--log-level", log_level, *tls_args(name),
                ],
                log_path=logs / f"{name}.log",
                extra={"http": f"{scheme}://{http}"},
            )
        )
    for i in range(1, layout.nodes + 1):
        name = f"node-{i}"
        addr = f"127.0.0.1:{layout.node_port(i)}"
        out.append(
            Component(
                name=name,
                kind="node",
                address=addr,
                argv=[
                    *python, "node", "--id", name, "--listen", addr, "--advertise", addr,
                    "--data-dir", str(layout.data_dir / name), "--chain", layout.chain,
                    "--coordinator", coordinators, "--log-level", log_level, *tls_args(name),
                ],
                log_path=logs / f"{name}.log",
            )
        )
    http = f"127.0.0.1:{layout.http_port}"
    grpc_addr = f"127.0.0.1:{layout.grpc_port}"
    out.append(
        Component(
            name="proxy",
            kind="proxy",
            address=http,
            argv=[
                *python, "proxy", "--listen", http, "--grpc", grpc_addr, "--coordinator", coordinators,
                "--chain", layout.chain, "--log-level", log_level, *tls_args("proxy"),
                *(certs.proxy_https_args() if certs is not None else []),
            ],
            log_path=logs / "proxy.log",
            extra={"url": f"{scheme}://{http}", "grpc": grpc_addr},
        )
    )
    return out


class Supervisor:
    """Starts, watches and stops the children; keeps cluster.json current."""

    def __init__(
        self,
        layout: Layout,
        components: list[Component],
        out=sys.stdout,
        certs: LocalCertificates | None = None,
    ) -> None:
        self.layout = layout
        self.components = components
        self.out = out
        self.certs = certs
        self.stopping = False

    @property
    def proxy_url(self) -> str:
        return f"{self.layout.scheme}://127.0.0.1:{self.layout.http_port}"

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def start(self, c: Component) -> None:
        c.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(c.log_path, "ab")  # noqa: SIM115 - the child owns it from here
        env = {**os.environ, "PYTHONSAFEPATH": "1", "PYTHONUNBUFFERED": "1"}
        c.process = subprocess.Popen(
            c.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops children in order
            preexec_fn=die_with_parent(os.getpid()),
        )
        log.close()
        c.started_at = time.monotonic()
        c.restart_at = None
        self.write_cluster_json()

    def write_cluster_json(self) -> None:
        doc = {
            "proxy": self.proxy_url,
            "chain": self.layout.chain,
            "data_dir": str(self.layout.data_dir),
            "supervisor_pid": os.getpid(),
            "layout": self.layout.pinned(),
            **({"tls": self.certs.describe()} if self.certs is not None else {}),
            "components": [c.describe() for c in self.components],
        }
        path = self.layout.data_dir / "cluster.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, path)

    def poll(self) -> None:
        """Notice exits and restart children whose delay has passed."""
        now = time.monotonic()
        for c in self.components:
            if c.process is None:
                continue
            code = c.process.poll()
            if code is not None and c.restart_at is None:
                if now - c.started_at > STABLE_AFTER:
                    c.restarts_in_a_row = 0
                delay = RESTART_DELAYS[min(c.restarts_in_a_row, len(RESTART_DELAYS) - 1)]
                c.restarts_in_a_row += 1
                c.restart_at = now + delay
                self.say(f"{c.name} exited ({describe_exit(code)}); restarting in {delay:.1f}s (log: {c.log_path})")
                self.write_cluster_json()
            elif code is not None and c.restart_at is not None and now >= c.restart_at:
                self.start(c)
                self.say(f"{c.name} restarted (pid {c.process.pid if c.process else '?'})")

    def stop_all(self, timeout: float = 10.0) -> None:
        self.stopping = True
        order = {"proxy": 0, "node": 1, "coordinator": 2}
        for kind in sorted(order, key=order.__getitem__):
            group = [c for c in self.components if c.kind == kind and c.process and c.process.poll() is None]
            for c in group:
                c.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            deadline = time.monotonic() + timeout
            for c in group:
                try:
                    c.process.wait(max(0.1, deadline - time.monotonic()))  # type: ignore[union-attr]
                except subprocess.TimeoutExpired:
                    c.process.kill()  # type: ignore[union-attr]
                    c.process.wait()  # type: ignore[union-attr]
        self.write_cluster_json()

    def wait_ready(self, deadline: float) -> bool:
        """True once a write and a read of the same value succeed through the proxy."""
        value = f"ready-{os.getpid()}-{time.time_ns()}".encode()
        url = f"{self.proxy_url}/v1/kv/{READY_KEY}"
        opener = self._opener()
        while time.monotonic() < deadline and not self.stopping:
            self.poll()
            try:
                put = urllib.request.Request(url, data=value, method="PUT")
                with opener.open(put, timeout=2) as resp:
                    resp.read()
                with opener.open(url, timeout=2) as resp:
                    if resp.read() == value:
                        return True
            except (urllib.error.URLError, OSError, TimeoutError):
                pass
            time.sleep(0.25)
        return False

    def _opener(self) -> urllib.request.OpenerDirector:
        # Loopback only: never through an HTTP proxy named in the environment.
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if self.certs is not None:  # the supervisor checks the proxy as the CLI would: the client certificate
            handlers.append(urllib.request.HTTPSHandler(context=self.certs.client_context()))
        return urllib.request.build_opener(*handlers)

    def active_nodes(self) -> int | None:
        """How many chain members /v1/cluster reports active (None: no answer)."""
        try:
            with self._opener().open(f"{self.proxy_url}/v1/cluster", timeout=2) as resp:
                report = json.loads(resp.read())
            members = [m for chain in report["chains"] for m in chain["members"]]
        except (urllib.error.URLError, OSError, TimeoutError, ValueError, KeyError, TypeError):
            return None
        return sum(1 for m in members if m.get("role") in ("head", "middle", "tail"))

    def wait_all_active(self, deadline: float) -> int | None:
        """Wait (until `deadline`) for every node to have joined the chain; the last count seen."""
        active = None
        while not self.stopping:
            self.poll()
            active = self.active_nodes()
            if active == self.layout.nodes or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        return active

    def failing_logs(self) -> list[str]:
        """The last lines of the log of every child that has exited at least once."""
        lines: list[str] = []
        for c in self.components:
            if c.restarts_in_a_row == 0 and (c.process is None or c.process.poll() is None):
                continue
            try:
                tail = c.log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            except OSError:
                continue
            lines += [f"--- {c.name}: {c.log_path}", *(f"    {line}" for line in tail)]
        return lines


def die_with_parent(parent: int):
    """A preexec_fn that makes the child receive SIGTERM when the supervisor dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def arm() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the supervisor died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def busy_ports(ports: list[int]) -> list[int]:
    busy = []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="keychain up", description="Run a local KeychainDB cluster on 127.0.0.1.")
    p.add_argument("--data-dir", default="keychain-data", help="where every component keeps its data (default: %(default)s)")
    p.add_argument("--nodes", type=int, help=f"chain nodes (default: {DEFAULTS['nodes']})")
    p.add_argument("--coordinators", type=int, choices=(1, 3, 5),
                   help=f"coordinator members (default: {DEFAULTS['coordinators']})")
    p.add_argument("--http-port", type=int, help=f"the proxy's HTTP port (default: {DEFAULTS['http_port']})")
    p.add_argument("--grpc-port", type=int, help="the proxy's gRPC port (default: HTTP port + 1)")
    p.add_argument("--base-port", type=int,
                   help="coordinators listen on base+1.., their HTTP admin on base+81.., nodes on base+101.. "
                   f"(default: {DEFAULTS['base_port']})")
    p.add_argument("--chain", help=f"the chain's name (default: {DEFAULTS['chain']})")
    p.add_argument("--tls", action=argparse.BooleanOptionalAction,
                   help="mutual TLS everywhere: a throwaway CA and a certificate per component under "
                   "<data-dir>/tls (kept for later runs), HTTPS on the proxy (default: off, or what the "
                   "data dir's first run chose)")
    p.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to wait for the first write and read")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    args = p.parse_args(argv)
    if args.nodes is not None and args.nodes < 1:
        p.error("--nodes must be at least 1")
    for name in ("http_port", "grpc_port", "base_port"):
        port = getattr(args, name)
        if port is not None and not 0 < port < 65536 - (200 if name == "base_port" else 0):
            p.error(f"--{name.replace('_', '-')} {port} is out of range")
    if args.chain is not None and not args.chain.strip():
        p.error("--chain must not be empty")
    return args


# What an existing data dir's cluster recorded with its addresses; a later run cannot change it.
PINNED_FOR_GOOD = ("coordinators", "chain", "base_port")

DEFAULTS: dict[str, object] = {
    "nodes": 3, "coordinators": 3, "http_port": 8080, "base_port": 7000, "chain": "main", "tls": False,
}


def previous_layout(data_dir: Path) -> dict[str, object]:
    """The layout a previous run on this data dir recorded in cluster.json ({} when none)."""
    try:
        doc = json.loads((data_dir / "cluster.json").read_text())
    except (OSError, ValueError):
        return {}
    layout = doc.get("layout") if isinstance(doc, dict) else None
    return layout if isinstance(layout, dict) else {}


def resolve_layout(args: argparse.Namespace, data_dir: Path, previous: dict[str, object]) -> Layout:
    """Options given now win; then what the previous run on this data dir used; then defaults."""

    def pick(name: str) -> object:
        given = getattr(args, name)
        if given is not None:
            return given
        kept = previous.get(name)
        return kept if kept is not None else DEFAULTS.get(name)

    http_port = int(pick("http_port"))  # type: ignore[arg-type]
    grpc_port = args.grpc_port if args.grpc_port is not None else previous.get("grpc_port")
    if args.http_port is not None and args.grpc_port is None:
        grpc_port = None  # a new HTTP port moves the default gRPC port with it
    return Layout(
        data_dir=data_dir, nodes=int(pick("nodes")), coordinators=int(pick("coordinators")),  # type: ignore[arg-type]
        http_port=http_port, grpc_port=int(grpc_port) if grpc_port is not None else http_port + 1,  # type: ignore[arg-type]
        base_port=int(pick("base_port")), chain=str(pick("chain")),  # type: ignore[arg-type]
        tls=bool(pick("tls")),
    )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    previous = previous_layout(data_dir)
    layout = resolve_layout(args, data_dir, previous)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    # Fixed by the first run: the coordinators' Raft membership (with their base-port addresses in
    # its address book) and the chain with its members' addresses. The proxy's ports may move: it
    # keeps no state.
    changed = [k for k in PINNED_FOR_GOOD if k in previous and previous[k] != layout.pinned()[k]]
    if changed:
        print(f"keychain up: {data_dir} holds a cluster with "
              + ", ".join(f"{k}={previous[k]}" for k in changed)
              + "; changing that on an existing data dir is not supported (use a new --data-dir)",
              file=sys.stderr)
        return 2
    busy = busy_ports(layout.all_ports())
    if busy:
        print(f"keychain up: ports in use: {', '.join(map(str, busy))} "
              "(is another cluster running? choose --http-port / --base-port)", file=sys.stderr)
        return 1
    certs = None
    if layout.tls:
        from keychain.local_certs import LocalCertificates

        names = [(c.name, c.kind) for c in build_components(layout, [], args.log_level)]
        certs = LocalCertificates.ensure(data_dir / "tls", layout.chain, names)
    components = build_components(layout, [sys.executable, "-P", "-m", "keychain"], args.log_level, certs)
    sup = Supervisor(layout, components, certs=certs)

    def on_signal(signum: int, _frame: object) -> None:
        sup.stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    for kind in ("coordinator", "node", "proxy"):
        for c in components:
            if c.kind == kind:
                sup.start(c)
    sup.say(f"KeychainDB proxy: {sup.proxy_url}  (data: {data_dir}, cluster: {data_dir / 'cluster.json'})")
    if certs is not None:
        files = certs.describe()
        sup.say(f"mutual TLS: clients need --cacert {files['ca']} --cert {files['cert']} --key {files['key']}")
    started = time.monotonic()
    if sup.wait_ready(started + args.ready_timeout):
        # Serving already; give the other nodes a moment to join so `ready` means the whole chain.
        active = sup.wait_all_active(min(started + args.ready_timeout, time.monotonic() + JOIN_WAIT))
        log.info("ready seconds=%.2f active=%s", time.monotonic() - started, active)
        nodes = plural(layout.nodes, "node") if active == layout.nodes else f"{active or '?'} of {layout.nodes} nodes active"
        sup.say(f"ready: {nodes}, {plural(layout.coordinators, 'coordinator')}, proxy at {sup.proxy_url}")
    elif not sup.stopping:
        sup.say(f"keychain up: no successful write and read within {args.ready_timeout:.0f}s; "
                f"see the logs under {data_dir / 'logs'}")
        for line in sup.failing_logs():
            sup.say(line)
        sup.stop_all()
        return 1
    try:
        while not sup.stopping:
            sup.poll()
            time.sleep(0.2)
    finally:
        sup.say("stopping ...")
        sup.stop_all()
        sup.say("stopped")
    return 0
