"""One coordinator member as a running server: storage, Raft driver, gRPC and HTTP, wired together.

    server = CoordinatorServer(options)
    await server.start()         # opens the log (StorageError if corrupt), binds the ports
    await server.wait()          # until the member fails or shutdown() is called
    await server.shutdown()      # leader: hand leadership over first; then stop everything

One gRPC server on `listen` carries both the Coordinator API (nodes, proxies, admin) and the Raft
peer service, so a member's peer address and its client address are the same; the HTTP admin API
runs on `http` in the same event loop.

Where the other members are: the address book (address_book.py) kept from the applied log is the
truth; the command line only gives hints, used for ids the book does not know. An initial member
gets `peers` (every initial member, written into the BOOTSTRAP entry, so they must be the same on
every initial member). A member that joins a running cluster gets `join` instead: one or more
members' addresses, which it asks (GetClusterStatus) who the members are until its own log tells
it; it starts with empty storage and never bootstraps, and an admin adds it with
AddCoordinatorMember (POST /v1/members), before or after it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from keychain.coordinator.admin_auth import AdminAuth, read_token_file
from keychain.coordinator.admin_http import build_app, make_server
from keychain.coordinator.api import CoordinatorService, CoordinatorServicer, RegistryMachine, transfer_target
from keychain.coordinator.member import DEFAULT_COMPACT_EVERY, RaftMember
from keychain.coordinator.raft import RaftConfig, RaftCore, Role
from keychain.coordinator.storage import FileStorage
from keychain.coordinator.transport import RaftTransport
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from keychain import channel_policy, timing, tls
from keychain.proto import coordinator_pb2, coordinator_pb2_grpc
from keychain.tls import TlsFiles

log = logging.getLogger(__name__)

TRANSFER_TIMEOUT = 2 * timing.ELECTION_TICKS * timing.TICK  # the core aborts a transfer after one election timeout
JOIN_RETRY = 0.5  # seconds between a joining member's attempts to reach the cluster
GRPC_GRACE = 0.5  # seconds in-flight RPCs get on shutdown
HTTP_GRACE = 1.0  # seconds the HTTP server gets to close its connections


@dataclass
class CoordinatorOptions:
    id: str
    listen: str  # host:port of the gRPC server (Coordinator API + Raft peers)
    data_dir: Path
    peers: dict[str, str]  # every initial member, self included: id -> gRPC address ({} when joining)
    http: str | None = None  # host:port of the HTTP admin API
    chains: list[str] = field(default_factory=list)  # created by the leader if missing
    tick: float = timing.TICK
    election_ticks: int = timing.ELECTION_TICKS
    heartbeat_ticks: int = timing.HEARTBEAT_TICKS
    compact_every: int = DEFAULT_COMPACT_EVERY
    join: list[str] = field(default_factory=list)  # host:port of running members, to join their cluster
    advertise: str | None = None  # host:port the others reach this member at (default: listen)
    tls_files: TlsFiles | None = None  # mutual TLS on gRPC and HTTPS on the admin API (None: plaintext)
    admin_token_file: Path | None = None  # a bearer token the admin API accepts
    admin_open_reads: bool = False  # the admin API's GET endpoints answer without credentials

    @property
    def address(self) -> str:
        """This member's address as the others know it: its --peers entry, or what an admin adds it with."""
        return self.advertise or self.listen


class CoordinatorServer:
    def __init__(self, options: CoordinatorOptions) -> None:
        if options.join and options.peers:
            raise ValueError("give either peers (a new cluster) or join (a running one), not both")
        if not options.join and options.id not in options.peers:
            raise ValueError(f"--peers must include this member {options.id!r}")
        self.options = options
        self.storage: FileStorage | None = None
        self.member: RaftMember | None = None
        self.service: CoordinatorService | None = None
        self.transport: RaftTransport | None = None
        self.grpc_server: grpc.aio.Server | None = None
        self.http_server = None
        self.metrics = CollectorRegistry()
        self._tasks: list[asyncio.Task[None]] = []
        self._http_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.hints = dict(options.peers)  # addresses from the command line or join discovery

    async def start(self) -> None:
        o = self.options
        self.storage = await asyncio.to_thread(FileStorage, o.data_dir / "raft", o.id)
        config = RaftConfig(id=o.id, election_tick=o.election_ticks, heartbeat_tick=o.heartbeat_ticks)
        core = RaftCore(config, self.storage, random.Random(), peers=dict(o.peers))
        machine = RegistryMachine()
        self.transport = RaftTransport(o.id, o.peers, o.tls_files)
        self.member = RaftMember(core, self.storage, machine, self.transport, tick=o.tick,
                                 compact_every=o.compact_every)
        self.transport.attach(self.member)
        self.service = CoordinatorService(self.member, machine, o.peers)
        self.service.tls_files = o.tls_files
        self.member.on_members_change(lambda _: self._addresses_changed())
        self._addresses_changed()
        self.metrics.register(MemberCollector(self.member, self.service))

        # Nodes and proxies ping their channels to notice a dead connection (keychain.channel_policy).
        self.grpc_server = grpc.aio.server(options=channel_policy.server_options(),
                                           interceptors=tls.server_interceptors(o.tls_files))
        coordinator_pb2_grpc.add_CoordinatorServicer_to_server(CoordinatorServicer(self.service), self.grpc_server)
        self.transport.add_to_server(self.grpc_server)
        if tls.add_port(self.grpc_server, o.listen, o.tls_files) == 0:
            raise OSError(f"cannot listen on {o.listen}")
        await self.grpc_server.start()
        self._tasks.append(self.member.start())
        self._tasks.append(asyncio.create_task(self.service.run_failure_detector(), name="failure-detector"))
        if o.chains:
            self._tasks.append(asyncio.create_task(self.service.ensure_chains(o.chains), name="ensure-chains"))
        if o.join:
            self._tasks.append(asyncio.create_task(self._discover_members(), name="join"))
        if o.http:
            host, _, port = o.http.rpartition(":")
            # Bound here, so a busy port fails start() with a clear OSError rather than inside uvicorn.
            sock = socket.create_server((host, int(port)), reuse_port=False)
            auth = AdminAuth(token=read_token_file(str(o.admin_token_file)) if o.admin_token_file else None,
                             tls=o.tls_files is not None, open_reads=o.admin_open_reads)
            ssl_context = None
            if o.tls_files is not None:
                ssl_context = tls.server_ssl_context(o.tls_files, require_client_cert=False)
                self._tasks.append(asyncio.create_task(tls.reload_server_context(ssl_context, o.tls_files),
                                                       name="admin-https-reload"))
            self.http_server = make_server(build_app(self.service, self.metrics, auth), host, int(port), ssl_context)
            self._http_task = asyncio.create_task(self.http_server.serve(sockets=[sock]), name="admin-http")
        log.info("coordinator started id=%s listen=%s advertise=%s http=%s peers=%s join=%s",
                 o.id, o.listen, o.address, o.http or "-",
                 ",".join(f"{k}={v}" for k, v in sorted(self.addresses().items())) or "-",
                 ",".join(o.join) or "-")

    def addresses(self) -> dict[str, str]:
        """Every member's gRPC address: the address book's, and a hint for a member it has none for
        (all hints while the log has named no members yet: a joining or brand-new member)."""
        assert self.member is not None
        book = self.member.book
        members = book.membership.members
        if not members:
            return dict(self.hints)
        return {m: book.address(m) or self.hints.get(m, "") for m in sorted(members)
                if book.address(m) or m in self.hints}

    def _addresses_changed(self) -> None:
        assert self.member is not None and self.transport is not None and self.service is not None
        addresses = self.addresses()
        mine = self.member.book.address(self.options.id)
        if mine and mine != self.options.address:
            log.warning("coordinator address mismatch id=%s advertise=%s membership_address=%s",
                        self.options.id, self.options.address, mine)
        self.transport.set_addresses(addresses)
        self.service.set_peers(addresses)

    async def _discover_members(self) -> None:
        """Joining: until the log names the members, learn their addresses from a running member."""
        assert self.member is not None
        while not self.member.book.membership.members:
            for address in self.options.join:
                members = await _ask_members(address, self.options.tls_files)
                if members:
                    known = {m: a for m, a in members.items() if m != self.options.id}
                    if any(self.hints.get(m) != a for m, a in known.items()):
                        self.hints.update(known)
                        log.info("coordinator join learned id=%s from=%s members=%s", self.options.id, address,
                                 ",".join(f"{m}={a}" for m, a in sorted(known.items())))
                        self._addresses_changed()
                    break
            await asyncio.sleep(JOIN_RETRY)

    async def wait(self) -> None:
        """Until shutdown is requested or the Raft member stops; re-raises the member's failure."""
        assert self.member is not None
        member_task = self._tasks[0]
        stop = asyncio.create_task(self._stopping.wait())
        await asyncio.wait([member_task, stop], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if member_task.done() and not member_task.cancelled() and member_task.exception() is not None:
            raise member_task.exception()  # type: ignore[misc]

    def request_stop(self) -> None:
        self._stopping.set()

    async def shutdown(self) -> None:
        member = self.member
        if member is not None and member.running and member.role is Role.LEADER:
            target = transfer_target(member.core.status())
            if target:
                ok = await member.transfer_leadership(target, TRANSFER_TIMEOUT)
                log.info("leadership transfer on shutdown id=%s to=%s done=%s", member.id, target, ok)
        if self.grpc_server is not None:
            await self.grpc_server.stop(GRPC_GRACE)
        if self.http_server is not None and self._http_task is not None:
            self.http_server.should_exit = True
            try:
                await asyncio.wait_for(self._http_task, HTTP_GRACE)
            except (TimeoutError, asyncio.CancelledError, Exception) as exc:
                log.debug("admin http stop reason=%r", exc)
        if member is not None:
            await member.stop()
        for task in self._tasks[1:]:
            task.cancel()
        for task in self._tasks[1:]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.service is not None:
            await self.service.close()
        if self.transport is not None:
            await self.transport.close()
        if self.storage is not None:
            self.storage.close()


async def _ask_members(address: str, tls_files: TlsFiles | None) -> dict[str, str]:
    """id -> address of the coordinator members, per the member at `address` ({} if it did not answer)."""
    async with tls.channel(address, tls_files) as channel:
        try:
            status = await coordinator_pb2_grpc.CoordinatorStub(channel).GetClusterStatus(
                coordinator_pb2.ClusterStatusRequest(), timeout=timing.RPC_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            log.debug("coordinator join no answer from=%s code=%s", address, exc.code().name)
            return {}
    if status.error.code != coordinator_pb2.OK:
        log.debug("coordinator join refused from=%s reason=%s", address, status.error.message)
        return {}
    return {m.id: m.address for m in status.members if m.address}


class MemberCollector(Collector):
    """Prometheus metrics read from the member at scrape time."""

    def __init__(self, member: RaftMember, service: CoordinatorService) -> None:
        self.member = member
        self.service = service

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        st = self.member.core.status()
        labels = ["member"]
        for name, doc, value in (
            ("keychain_coordinator_term", "current Raft term", st.term),
            ("keychain_coordinator_commit_index", "Raft commit index", st.commit),
            ("keychain_coordinator_applied_index", "last index applied to the registry", self.member.applied),
            ("keychain_coordinator_is_leader", "1 if this member is the Raft leader", int(st.role is Role.LEADER)),
            ("keychain_coordinator_chains", "chains in the registry", len(self.service.registry.chains)),
            ("keychain_coordinator_readmission_holds", "removed nodes whose registration is held back now",
             self.service.holds_now()),
        ):
            g = GaugeMetricFamily(name, doc, labels=labels)
            g.add_metric([st.id], value)
            yield g
        supervisor = self.service.supervisor
        for name, doc, count in (
            ("keychain_coordinator_gray_removals", "members this leader removed for gray failures (dead links, "
             "no progress)", supervisor.gray_removals),
            ("keychain_coordinator_readmission_holds_imposed", "re-registrations held back after a removal for "
             "link failures (exponential backoff)", supervisor.readmission.imposed),
        ):
            c = CounterMetricFamily(name, doc, labels=labels)
            c.add_metric([st.id], count)
            yield c
        # Kept by the leader only (soft state from heartbeats): a follower reports none.
        alarms = GaugeMetricFamily("keychain_coordinator_storage_alarms",
                                   "chain members whose disk is over its high-water mark (the chain refuses writes)",
                                   labels=["member", "chain"])
        for chain in sorted(self.service.registry.chains.values(), key=lambda c: c.name):
            alarms.add_metric([st.id, chain.name], len(self.service.supervisor.storage_alarms(chain)))
        yield alarms
