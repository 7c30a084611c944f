"""Network faults between real processes: hosts in Linux network namespaces on a private bridge.

`Network` builds, for one test, a set of *hosts* (one network namespace each) joined by a
bridge that lives in a *hub* namespace of its own, each host wired to it by a veth pair:

    host a: eth0 10.77.0.1 ──veth── p1 ┐
    host b: eth0 10.77.0.2 ──veth── p2 ├─ br0  (hub namespace)
    host c: eth0 10.77.0.3 ──veth── p3 ┘

Nothing is created in the caller's own namespace: the veths are born inside the hub and their
host ends moved straight into the hosts, so the test range exists only inside namespaces the
test made, and every name carries a prefix unique to this run (parallel runs never collide).
Leaving the `with` block stops every process started in the hosts and deletes every namespace,
whatever happened inside it.

Faults:

- `partition(a, b)`, `drop(src, dst)` (one direction only), `isolate(host)`: policy-routing
  rules `from <src> blackhole` in the receiving host. `drop_port(host, port, "in" | "out")`: the
  same rules narrowed to one TCP port (`ipproto tcp dport|sport <port>`), one direction only. They act on the input path, so a dropped
  packet vanishes silently, as on a real broken link (a blackhole on the *output* path would
  instead fail the sender's syscalls at once with EINVAL, which no real partition does). The
  hosts' `local` routing rule is moved behind these rules so they are consulted first, and
  early demux is off so established TCP connections are cut too, not only new ones.
- `impair(host, delay=, jitter=, loss=)`: every frame to and from the host is delayed and/or
  dropped at random. With the kernel's `sch_netem` this is `tc qdisc ... netem` on both ends of
  the host's veth. Kernels built without netem (some minimal VM kernels) get the same effect
  from a relay process in the hub: the host's port is taken off the bridge and a small
  AF_PACKET forwarder (`FrameShaper` decides each frame's fate) carries its frames to a fresh
  veth on the bridge. Choose with `impairment="netem" | "relay" | "auto"`.
- `heal()`: removes every partition rule and impairment.

Written by hand around the `ip` and `tc` commands of iproute2: the Python wrappers of netlink
(pyroute2) would add a dependency for the handful of commands needed here, and the commands are
what an operator reproducing a failure would type. Linux only; needs root.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import heapq
import ipaddress
import json
import logging
import os
import random
import re
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

log = logging.getLogger(__name__)

Impairment = Literal["auto", "netem", "relay"]

DEFAULT_SUBNET = "10.77.0.0/24"
PARTITION_PREF = 10  # our blackhole rules; the `local` table is moved behind them
LOCAL_RULE_PREF = 100
COMMAND_TIMEOUT = 10.0  # seconds for one ip/tc command
STOP_TIMEOUT = 5.0  # seconds a process gets after SIGTERM before SIGKILL
_HOST_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


class NetnsError(RuntimeError):
    """A namespace could not be built, changed or torn down; the message says which command."""


def unavailable_reason() -> str | None:
    """Why network-namespace tests cannot run here, or None when they can."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (run the tests as root)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    try:
        probe = subprocess.run(["ip", "netns", "list"], capture_output=True, timeout=COMMAND_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns list` failed: {exc}"
    if probe.returncode != 0:
        return f"`ip netns` is unavailable: {probe.stderr.decode(errors='replace').strip()}"
    return None


def _run(argv: Sequence[str], *, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise NetnsError(f"`{' '.join(argv)}` timed out after {COMMAND_TIMEOUT:.0f}s") from exc
    if check and done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        where = f" (batch: {stdin.strip()!r})" if stdin else ""
        raise NetnsError(f"`{' '.join(argv)}` failed with exit code {done.returncode}: {detail}{where}")
    return done


def _ip_batch(namespace: str, commands: Sequence[str]) -> None:
    """Run several `ip` commands inside one namespace with a single process."""
    if commands:
        _run(["ip", "-netns", namespace, "-batch", "-"], stdin="\n".join(commands) + "\n")


def in_namespace[T](namespace: str, fn: Callable[[], T]) -> T:
    """Call `fn` on a short-lived thread that has entered `namespace`.

    Network namespaces are per thread: sockets `fn` creates belong to that namespace for life
    and can then be used from any thread of this process.
    """
    box: dict[str, object] = {}

    def target() -> None:
        try:
            fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
            try:
                os.setns(fd, os.CLONE_NEWNET)
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"netns-{namespace}", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


# ---- turning off veth offloads (the relay forwards frames as they are on the wire) ----

_SIOCETHTOOL = 0x8946
_ETHTOOL_STXCSUM = 0x17
_ETHTOOL_SSG = 0x19
_ETHTOOL_STSO = 0x1F
_ETHTOOL_SGSO = 0x24
_ETHTOOL_SGRO = 0x2C


def disable_offloads(interface: str) -> None:
    """Have the kernel finish checksums and segment packets before they reach `interface`.

    A frame captured from a veth may otherwise carry a partial checksum or be a 64 KiB GSO
    super-packet, neither of which can be re-sent as it is. Uses the ethtool ioctl directly
    (the ethtool program is often not installed). Acts in the calling thread's namespace.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for command in (_ETHTOOL_SGSO, _ETHTOOL_STSO, _ETHTOOL_SSG, _ETHTOOL_STXCSUM, _ETHTOOL_SGRO):
            value = ctypes.create_string_buffer(struct.pack("II", command, 0))
            request = struct.pack("16sP", interface.encode(), ctypes.addressof(value)).ljust(40, b"\0")
            try:
                fcntl.ioctl(sock.fileno(), _SIOCETHTOOL, request)
            except OSError as exc:
                raise NetnsError(f"turning off offload {command:#x} on {interface}: {exc}") from exc


# ---- the relay's pure core ----


@dataclass(frozen=True)
class Shaping:
    """How one direction of a link is impaired: a base delay, uniform jitter around it, and a
    loss probability. Times in seconds."""

    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.delay <= 10:
            raise ValueError(f"delay must be between 0 and 10 seconds, got {self.delay!r}")
        if not 0 <= self.jitter <= self.delay:
            raise ValueError(f"jitter must be between 0 and the delay ({self.delay}), got {self.jitter!r}")
        if not 0 <= self.loss <= 1:
            raise ValueError(f"loss must be a probability between 0 and 1, got {self.loss!r}")


class FrameShaper:
    """Decides when each frame of one direction leaves: `admit(now)` returns the release time,
    or None when the frame is lost. Frames never overtake each other (TCP would read reordering
    as loss); jitter therefore only stretches gaps, like netem with a rate. No I/O, no clock:
    time comes in as arguments, randomness from the injected generator.
    """

    def __init__(self, shaping: Shaping, rng: random.Random) -> None:
        self.shaping = shaping
        self.rng = rng
        self.last_release = float("-inf")

    def admit(self, now: float) -> float | None:
        s = self.shaping
        if s.loss and self.rng.random() < s.loss:
            return None
        delay = s.delay + (self.rng.uniform(-s.jitter, s.jitter) if s.jitter else 0.0)
        release = max(now + delay, self.last_release)
        self.last_release = release
        return release


def relay(
    port_a: str,
    port_b: str,
    shaping: Shaping,
    seed: int,
    stop: threading.Event,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Forward every frame between two interfaces of this namespace, both ways, shaped, until
    `stop` is set; `on_ready` is called once both sockets are bound."""
    ETH_P_ALL = 0x0003
    PACKET_OUTGOING = 4
    socks: dict[str, socket.socket] = {}
    for name in (port_a, port_b):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind((name, 0))
        s.setblocking(False)
        socks[name] = s
    other = {port_a: socks[port_b], port_b: socks[port_a]}
    # One generator per direction, so each direction's fate sequence depends on the seed alone.
    shapers = {
        port_a: FrameShaper(shaping, random.Random(seed * 2)),
        port_b: FrameShaper(shaping, random.Random(seed * 2 + 1)),
    }
    queue: list[tuple[float, int, socket.socket, bytes]] = []
    order = 0
    by_fd = {s.fileno(): name for name, s in socks.items()}
    poller = select.poll()
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    if on_ready is not None:
        on_ready()
    while not stop.is_set():
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, out, frame = heapq.heappop(queue)
            try:
                out.send(frame)
            except OSError as exc:  # e.g. the peer went down mid-test: the frame is lost
                log.debug("relay send failed err=%s", exc)
        timeout_ms = 200 if not queue else max(0, int((queue[0][0] - now) * 1000))
        for fd, _event in poller.poll(timeout_ms):
            name = by_fd[fd]
            for _ in range(64):  # bounded burst per wake-up
                try:
                    frame, address = socks[name].recvfrom(65535)
                except BlockingIOError:
                    break
                if address[2] == PACKET_OUTGOING:
                    continue
                release = shapers[name].admit(time.monotonic())
                if release is not None:
                    order += 1
                    heapq.heappush(queue, (release, order, other[name], frame))
    for s in socks.values():
        s.close()


# ---- the network ----


@dataclass
class Host:
    """One namespace on the bridge."""

    name: str
    namespace: str
    address: str  # its IPv4 address on the bridge
    port: str  # its veth's name on the hub side
    index: int
    processes: list[subprocess.Popen] = field(default_factory=list)
    extra_addresses: list[str] = field(default_factory=list)


@dataclass
class _RelayState:
    process: subprocess.Popen
    inner: str  # the hub-side veth between relay and bridge


class Network:
    """A bridge of namespaces with processes in them and faults between them (see module doc).

    >>> with Network(["a", "b"]) as net:                          # doctest: +SKIP
    ...     p = net.popen("a", [sys.executable, "-P", "-m", "http.server", "8000"])
    ...     net.partition("a", "b")
    """

    def __init__(
        self,
        hosts: Sequence[str],
        *,
        subnet: str = DEFAULT_SUBNET,
        impairment: Impairment = "auto",
        seed: int | None = None,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        names = list(hosts)
        if not names:
            raise ValueError("a network needs at least one host")
        for name in names:
            if not isinstance(name, str) or not _HOST_NAME.match(name):
                raise ValueError(f"host name {name!r} must be lowercase letters, digits and '-', at most 20")
        if len(set(names)) != len(names):
            raise ValueError(f"host names must be unique, got {names}")
        if impairment not in ("auto", "netem", "relay"):
            raise ValueError(f"impairment must be 'auto', 'netem' or 'relay', got {impairment!r}")
        net = ipaddress.ip_network(subnet)
        if not net.is_private or net.version != 4:
            raise ValueError(f"subnet must be a private IPv4 range, got {subnet}")
        addresses = list(net.hosts())
        if len(addresses) < len(names):
            raise ValueError(f"subnet {subnet} has room for {len(addresses)} hosts, not {len(names)}")
        self.prefix = f"kc{os.getpid() % 100000}{secrets.token_hex(3)}"
        self.prefixlen = net.prefixlen
        self.hub = f"{self.prefix}-hub"
        self.hosts: dict[str, Host] = {
            name: Host(name, f"{self.prefix}-{name}", str(addresses[i]), f"p{i + 1}", i + 1)
            for i, name in enumerate(names)
        }
        self.impairment = impairment
        self.stop_timeout = stop_timeout
        self.seed = secrets.randbits(32) if seed is None else seed
        self._rules: set[tuple[str, str]] = set()  # (receiving host, blocked source host)
        self._port_rules: set[tuple[str, str]] = set()  # (receiving host, rule selector) of drop_port
        self._netem: set[str] = set()
        self._relays: dict[str, _RelayState] = {}
        self._created: list[str] = []
        self._use_netem: bool | None = None
        self._net = net
        self._next_index = len(names) + 1
        self._handed_out: set[str] = {h.address for h in self.hosts.values()}

    # -- lifecycle --

    def __enter__(self) -> Network:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _add_namespace(self, name: str) -> None:
        _run(["ip", "netns", "add", name])
        self._created.append(name)

    def _build(self) -> None:
        self._add_namespace(self.hub)
        _ip_batch(self.hub, ["link set lo up", "link add br0 type bridge", "link set br0 up"])
        for host in self.hosts.values():
            self._wire(host)
        # Permanent neighbour entries: a partition then never leaves an address half-resolved
        # (ARP requests are dropped by the same rules), so healing takes effect at once.
        macs = {name: _mac_address(h.namespace, "eth0") for name, h in self.hosts.items()}
        for host in self.hosts.values():
            _ip_batch(host.namespace, [
                f"neigh replace {other.address} lladdr {macs[other.name]} dev eth0 nud permanent"
                for other in self.hosts.values() if other is not host
            ])
        log.info("netns network up prefix=%s hosts=%s", self.prefix, ",".join(self.hosts))

    def _wire(self, host: Host) -> None:
        """Make `host`'s namespace and join it to the bridge, ready for partition rules: the `local`
        routing rule behind ours, early demux and offloads off (see the module docstring)."""
        self._add_namespace(host.namespace)
        _ip_batch(self.hub, [
            f"link add {host.port} type veth peer name eth0 netns {host.namespace}",
            f"link set {host.port} master br0 up",
        ])
        _ip_batch(host.namespace, [
            "link set lo up",
            "link set eth0 up",
            f"addr add {host.address}/{self.prefixlen} dev eth0",
            f"rule add pref {LOCAL_RULE_PREF} lookup local",
            "rule del pref 0 lookup local",
        ])
        in_namespace(host.namespace, lambda: _write_sysctl("net/ipv4/ip_early_demux", "0"))
        in_namespace(host.namespace, lambda: _write_sysctl("net/ipv4/tcp_early_demux", "0"))
        in_namespace(host.namespace, lambda: disable_offloads("eth0"))

    def close(self) -> None:
        """Stop every process started in the hosts and delete every namespace; idempotent."""
        for state in list(self._relays.values()):
            _stop_process(state.process, self.stop_timeout)
        self._relays.clear()
        for host in self.hosts.values():
            for process in host.processes:
                _stop_process(process, self.stop_timeout)
            host.processes.clear()
        errors = []
        for namespace in reversed(self._created):
            _kill_stragglers(namespace)
            _remove_netns_etc(namespace)
            done = _run(["ip", "netns", "del", namespace], check=False)
            if done.returncode != 0:
                errors.append(f"{namespace}: {done.stderr.strip()}")
        self._created.clear()
        if errors:
            raise NetnsError("could not delete namespaces: " + "; ".join(errors))

    # -- hosts that come and go --

    def add_host(self, name: str, address: str | None = None) -> Host:
        """Wire a new host to the bridge of a running network (the next free address unless
        `address` is given); removed again by `remove_host` or when the network closes."""
        if not _HOST_NAME.match(name):
            raise ValueError(f"host name {name!r} must be lowercase letters, digits and '-', at most 20")
        if name in self.hosts:
            raise ValueError(f"host {name!r} exists already")
        if address is None:
            address = self.free_address()
        elif address in self._addresses_in_use():
            raise ValueError(f"address {address} is in use")
        self._handed_out.add(address)
        host = Host(name, f"{self.prefix}-{name}", address, f"p{self._next_index}", self._next_index)
        self._next_index += 1
        self.hosts[name] = host
        self._wire(host)
        return host

    def remove_host(self, name: str) -> None:
        """Stop the host's processes and delete its namespace, veth and hosts file."""
        host = self.host(name)
        for process in host.processes:
            _stop_process(process, self.stop_timeout)
        _kill_stragglers(host.namespace)
        _run(["ip", "netns", "exec", self.hub, "ip", "link", "del", host.port], check=False)
        _run(["ip", "netns", "del", host.namespace])
        _remove_netns_etc(host.namespace)
        self._created.remove(host.namespace)
        self._port_rules = {rule for rule in self._port_rules if rule[0] != name}  # gone with its namespace
        del self.hosts[name]

    def add_address(self, host: str, address: str) -> None:
        """Give `host` one more address on the bridge (as a Service's virtual IP)."""
        if address in self._addresses_in_use():
            raise ValueError(f"address {address} is in use")
        h = self.host(host)
        _ip_batch(h.namespace, [f"addr add {address}/{self.prefixlen} dev eth0"])
        h.extra_addresses.append(address)

    def free_address(self) -> str:
        """An address of the subnet never handed out before (a host that comes back may ask for
        its old address again by name, so no address is given to anyone else)."""
        taken = self._addresses_in_use() | self._handed_out
        for candidate in self._net.hosts():
            if str(candidate) not in taken:
                self._handed_out.add(str(candidate))
                return str(candidate)
        raise NetnsError(f"no free address left in {self._net}")

    def _addresses_in_use(self) -> set[str]:
        return {a for h in self.hosts.values() for a in (h.address, *h.extra_addresses)}

    def write_hosts_file(self, host: str, text: str) -> None:
        """Set the `/etc/hosts` the host's processes see (from their next lookup on).

        Rewritten in place: a process already running sees the file through a bind mount of
        this very inode, which a rename would leave behind."""
        path = Path("/etc/netns") / self.host(host).namespace / "hosts"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+", encoding="utf-8") as f:
            f.seek(0)
            if f.read() == text:
                return
            f.seek(0)
            f.truncate()
            f.write(text)

    @property
    def namespaces(self) -> list[str]:
        """Every namespace this network created and has not deleted yet."""
        return list(self._created)

    # -- hosts and processes --

    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise ValueError(f"no host {name!r}; hosts are {', '.join(self.hosts)}") from None

    def address(self, name: str) -> str:
        """The host's IPv4 address on the bridge."""
        return self.host(name).address

    def popen(
        self,
        host: str,
        argv: Sequence[str],
        *,
        stdin: int | IO | None = subprocess.DEVNULL,
        stdout: int | IO | None = subprocess.DEVNULL,
        stderr: int | IO | None = subprocess.STDOUT,
        text: bool = False,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> subprocess.Popen:
        """Start `argv` inside the host's namespace (its own session, so a stop reaches its
        children too); stopped when the network closes. Pipes as for subprocess.Popen."""
        h = self.host(host)
        full_env = {**os.environ, "PYTHONSAFEPATH": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
        process = subprocess.Popen(
            ["ip", "netns", "exec", h.namespace, *argv],
            stdin=stdin, stdout=stdout, stderr=stderr, text=text, env=full_env, cwd=cwd,
            start_new_session=True,
        )
        h.processes.append(process)
        log.debug("netns popen host=%s pid=%d argv=%s", host, process.pid, " ".join(argv))
        return process

    def keychain(self, host: str, args: Sequence[str], *, log_path: Path | None = None) -> subprocess.Popen[bytes]:
        """Run `keychain <args>` with this interpreter inside the host's namespace."""
        if log_path is None:
            return self.popen(host, [sys.executable, "-P", "-m", "keychain", *args])
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as out:
            return self.popen(host, [sys.executable, "-P", "-m", "keychain", *args], stdout=out)

    def stop(self, process: subprocess.Popen) -> int:
        """SIGTERM a process started here (SIGKILL if it lingers); returns its exit code."""
        return _stop_process(process, self.stop_timeout)

    def socket(self, host: str, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A new IPv4 socket that lives in the host's namespace, usable from this process."""
        return in_namespace(self.host(host).namespace, lambda: socket.socket(socket.AF_INET, kind))

    def connect(self, host: str, address: tuple[str, int], timeout: float) -> socket.socket:
        """A TCP connection from inside `host` to `address`."""
        sock = self.socket(host)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock

    # -- partitions --

    def drop(self, src: str, dst: str) -> None:
        """Drop every packet from `src` to `dst`; the other direction keeps flowing."""
        s, d = self.host(src), self.host(dst)
        if s is d:
            raise ValueError("a host cannot be partitioned from itself")
        if (dst, src) in self._rules:
            return
        _ip_batch(d.namespace, [f"rule add pref {PARTITION_PREF} from {s.address}/32 blackhole"])
        self._rules.add((dst, src))
        log.info("netns drop src=%s dst=%s", src, dst)

    def partition(self, a: str, b: str) -> None:
        """Cut the link between two hosts in both directions."""
        self.drop(a, b)
        self.drop(b, a)

    def isolate(self, host: str) -> None:
        """Cut `host` from every other host, both ways."""
        for other in self.hosts:
            if other != host:
                self.partition(host, other)

    def split(self, side_a: Sequence[str], side_b: Sequence[str]) -> None:
        """Partition every host of one side from every host of the other."""
        for a in side_a:
            for b in side_b:
                self.partition(a, b)

    def drop_port(self, host: str, port: int, direction: Literal["in", "out"]) -> None:
        """A one-way fault of one TCP port of `host`, every other connection of the host untouched:
        "in" drops every packet sent to the port (the host's own outgoing connections still work),
        "out" drops every packet the port sends (taken off at each receiving host)."""
        h = self.host(host)
        if direction == "in":
            where = [(h.name, f"iif eth0 ipproto tcp dport {port}")]
        elif direction == "out":
            where = [(other, f"iif eth0 from {h.address}/32 ipproto tcp sport {port}")
                     for other in self.hosts if other != host]
        else:
            raise ValueError(f"direction must be 'in' or 'out', got {direction!r}")
        for receiver, selector in where:
            if (receiver, selector) not in self._port_rules:
                _ip_batch(self.hosts[receiver].namespace, [f"rule add pref {PARTITION_PREF} {selector} blackhole"])
                self._port_rules.add((receiver, selector))
        log.info("netns drop port host=%s port=%d direction=%s", host, port, direction)

    def heal_partitions(self) -> None:
        for receiver, source in sorted(self._rules):
            r, s = self.hosts[receiver], self.hosts[source]
            _ip_batch(r.namespace, [f"rule del pref {PARTITION_PREF} from {s.address}/32 blackhole"])
        self._rules.clear()
        for receiver, selector in sorted(self._port_rules):
            _ip_batch(self.hosts[receiver].namespace, [f"rule del pref {PARTITION_PREF} {selector} blackhole"])
        self._port_rules.clear()
        log.info("netns partitions healed")

    # -- delay, jitter, loss --

    def netem_supported(self) -> bool:
        """Whether this kernel has the netem qdisc (probed once, on the hub's loopback)."""
        if self._use_netem is None:
            added = _run(["ip", "netns", "exec", self.hub, "tc", "qdisc", "add", "dev", "lo", "root",
                          "netem", "delay", "0ms"], check=False)
            self._use_netem = added.returncode == 0
            if self._use_netem:
                _run(["ip", "netns", "exec", self.hub, "tc", "qdisc", "del", "dev", "lo", "root"])
        return self._use_netem

    def impair(self, host: str, *, delay: float = 0.0, jitter: float = 0.0, loss: float = 0.0) -> str:
        """Delay (seconds, ± uniform jitter) and/or drop at random (probability `loss`) every
        frame to and from `host`, each direction on its own. Replaces an earlier impairment of
        the host. Returns the mechanism used: "netem" or "relay"."""
        h = self.host(host)
        shaping = Shaping(delay, jitter, loss)
        self.clear_impairment(host)
        use_netem = self.impairment == "netem" or (self.impairment == "auto" and self.netem_supported())
        if use_netem:
            if not self.netem_supported():
                raise NetnsError("this kernel has no netem qdisc (sch_netem); use impairment='relay'")
            spec = ["netem", "delay", f"{delay * 1000:.3f}ms"]
            if jitter:
                spec += [f"{jitter * 1000:.3f}ms"]
            if loss:
                spec += ["loss", f"{loss * 100:.4f}%"]
            _run(["ip", "netns", "exec", h.namespace, "tc", "qdisc", "replace", "dev", "eth0", "root", *spec])
            _run(["ip", "netns", "exec", self.hub, "tc", "qdisc", "replace", "dev", h.port, "root", *spec])
            self._netem.add(host)
            log.info("netns impair host=%s via=netem delay=%s jitter=%s loss=%s", host, delay, jitter, loss)
            return "netem"
        inner, outer = f"q{h.index}", f"r{h.index}"
        _ip_batch(self.hub, [
            f"link set {h.port} nomaster",
            f"link add {inner} type veth peer name {outer}",
            f"link set {outer} master br0 up",
            f"link set {inner} up",
        ])
        for name in (h.port, inner, outer):
            in_namespace(self.hub, lambda name=name: disable_offloads(name))
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.hub, sys.executable, "-P", "-m", "keychain.testing.netns", "relay",
             h.port, inner, repr(shaping.delay), repr(shaping.jitter), repr(shaping.loss), str(self.seed + h.index)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONSAFEPATH": "1"}, start_new_session=True,
        )
        self._relays[host] = _RelayState(process, inner)
        _wait_relay_ready(process)
        log.info("netns impair host=%s via=relay delay=%s jitter=%s loss=%s", host, delay, jitter, loss)
        return "relay"

    def clear_impairment(self, host: str) -> None:
        h = self.host(host)
        if host in self._netem:
            _run(["ip", "netns", "exec", h.namespace, "tc", "qdisc", "del", "dev", "eth0", "root"], check=False)
            _run(["ip", "netns", "exec", self.hub, "tc", "qdisc", "del", "dev", h.port, "root"], check=False)
            self._netem.discard(host)
        state = self._relays.pop(host, None)
        if state is not None:
            _stop_process(state.process)
            _ip_batch(self.hub, [f"link del {state.inner}", f"link set {h.port} master br0 up"])

    def heal(self) -> None:
        """Remove every partition and impairment."""
        self.heal_partitions()
        for host in sorted(self._netem | set(self._relays)):
            self.clear_impairment(host)


def _mac_address(namespace: str, interface: str) -> str:
    shown = _run(["ip", "-netns", namespace, "-json", "link", "show", "dev", interface])
    return json.loads(shown.stdout)[0]["address"]


def _write_sysctl(name: str, value: str) -> None:
    # /proc/sys/net shows the network namespace of the thread that opens it.
    path = Path("/proc/sys") / name
    with contextlib.suppress(FileNotFoundError):  # an older kernel without this knob
        path.write_text(value)


def _stop_process(process: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM the process group we started, then SIGKILL after `timeout` seconds."""
    if process.poll() is not None:
        return process.returncode
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.wait(STOP_TIMEOUT)


def _kill_stragglers(namespace: str) -> None:
    """SIGKILL any process still inside a namespace this network created (e.g. grandchildren)."""
    done = _run(["ip", "netns", "pids", namespace], check=False)
    for word in done.stdout.split():
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(word), signal.SIGKILL)


def _remove_netns_etc(namespace: str) -> None:
    """Delete `/etc/netns/<namespace>` (its hosts file), and `/etc/netns` once empty."""
    directory = Path("/etc/netns") / namespace
    if directory.is_dir():
        shutil.rmtree(directory, ignore_errors=True)
        with contextlib.suppress(OSError):  # another network's files are still there
            directory.parent.rmdir()


def _wait_relay_ready(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """The relay writes one line to stderr once its sockets are bound."""
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    buffered: deque[bytes] = deque(maxlen=20)
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stderr], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = process.stderr.readline()
        if not line:
            break
        if line.strip() == b"relay ready":
            return
        buffered.append(line)
    _stop_process(process)
    raise NetnsError("the relay did not start: " + b"".join(buffered).decode(errors="replace").strip())


def _relay_main(argv: list[str]) -> int:
    if len(argv) != 6:
        print("usage: python -m keychain.testing.netns relay PORT_A PORT_B DELAY JITTER LOSS SEED",
              file=sys.stderr)
        return 2
    port_a, port_b, delay, jitter, loss, seed = argv
    shaping = Shaping(float(delay), float(jitter), float(loss))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def announce() -> None:
        sys.stderr.write("relay ready\n")
        sys.stderr.flush()

    relay(port_a, port_b, shaping, int(seed), stop, on_ready=announce)
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "relay":
        sys.exit(_relay_main(sys.argv[2:]))
    print("usage: python -m keychain.testing.netns relay PORT_A PORT_B DELAY JITTER LOSS SEED", file=sys.stderr)
    sys.exit(2)
