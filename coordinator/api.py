"""The coordinator's client-facing operations (keychain/proto/coordinator.proto), shared by gRPC and HTTP.

`CoordinatorService` holds the logic; `CoordinatorServicer` adapts it to grpc.aio and the HTTP admin
API (admin_http.py) calls it directly.

Any member answers any request. Operations that change or read the registry, and heartbeats, are
done by the Raft leader: a follower FORWARDS the request to the leader's gRPC address (the same
Coordinator service; the forwarded call is marked, so it is never forwarded twice) and relays the
answer. While there is no leader (an election) the request waits up to `forward_wait` for one, then
answers UNAVAILABLE, a retryable code; it never answers from possibly stale state. A proposal that
did not apply within its timeout is answered UNAVAILABLE too ("outcome unknown"); registry commands
are safe to repeat (a repeated register is a no-op, a repeated removal is NOT_FOUND).

Reads of the registry (GetChain, GetClusterStatus, the start of WatchChains) are linearizable: the
member first completes a ReadIndex round, so its state includes every change committed before the
request arrived.

Supervision of chain nodes (the leader only): registration, heartbeats and their leases, drains
(RemoveMember), removal of silent or drained nodes, promotion of caught-up joiners and the new
leader's grace are decided by the supervision core (supervision.py, which states the rules; lease.py
keeps the record of grants). This service only translates: a request becomes the core's plain
input (the registry's state, the event loop's time, the member's leadership evidence), and its
decision becomes a reply, or a Raft proposal whose outcome goes back to the core. Its waits are
its own: for a leadership round to complete before refusing a lease (a few ticks), for a
promotion to commit before answering the heartbeat that asked for it, and for a drained node's
removal to commit before answering RemoveMember, bounded by `removal_wait` (then UNAVAILABLE: the
drain goes on, repeat to wait for it; a repeat after the removal is NOT_FOUND). The failure
detector runs every tick at the leader and proposes the core's removals; a removal refused, or
that never entered the log, is reported back (the node is renewed again), one whose outcome is
unknown stays in flight.

Gray failures: each heartbeat's link report and each proxy's ReportUnreachable go to the same core
(supervision.py, suspicion.py); the member it revokes is answered lease 0 until it surrenders its
lease or the lease has expired, then removed by the failure detector like a drained node. Cluster
status shows each member's last link report and any revocation, and per chain the removed nodes
whose registration is held back (re-admission backoff); the holds imposed and the members removed
for gray failures are counted in metrics (server.py).

Membership of the coordinator cluster (AddCoordinatorMember, RemoveCoordinatorMember), at the
leader, one server at a time:
- add: the server joins as a learner (with its address, so every member's transport learns it),
  the leader waits up to `catch_up_timeout` until it holds everything committed, then promotes it
  to voter. Repeating the request is safe: a learner already added at that address is only
  promoted, a voter at that address is answered OK. While another server is a learner (an add in
  progress or abandoned) or a change is uncommitted, the answer is FAILED_PRECONDITION: finish or
  remove that one first. A learner that does not catch up in time stays a learner (UNAVAILABLE,
  repeat the request once it runs).
- remove: if the leader itself is to go, it first hands leadership to the most up-to-date voter
  and the request is passed on to the new leader (one extra hop, allowed for this case only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc
from keychain.coordinator.lease import LeaseTracker, Removal
from keychain.coordinator.member import Applied, OutcomeUnknown, RaftMember, Unavailable
from keychain.coordinator.membership import ConfChange, ConfChangeError, ConfChangeOp, Membership
from keychain.coordinator.raft import ChangePending, LearnerBehind, Role, Status
from keychain.coordinator.registry import ChainState, Outcome, Registry, create_chain, delete_chain
from keychain.coordinator.supervision import (
    EVIDENCE_WAIT_TICKS,
    UNCONFIRMED,
    Grant,
    Heartbeat,
    Proposal,
    Refusal,
    Registration,
    Supervisor,
)
from keychain.coordinator.suspicion import ProxyReport
from keychain.coordinator.transport import CHANNEL_OPTIONS
from keychain.node.link_health import LinkReport
from keychain.node.link_health_wire import link_report_from_pb, link_report_to_pb

from keychain import timing, tls
from keychain.proto import chain_pb2, coordinator_pb2, coordinator_pb2_grpc

log = logging.getLogger(__name__)

FORWARDED_HEADER = "keychain-forwarded-by"  # gRPC metadata on a request a follower forwarded
FORWARD_WAIT = 2.0  # seconds a request waits for a leader (an election) before UNAVAILABLE
PROPOSAL_TIMEOUT = timing.PROPOSAL_TIMEOUT
CATCH_UP_TIMEOUT = 10.0  # seconds a new coordinator member may take to catch up before promotion
NEW_LEADER_GRACE = timing.NEW_LEADER_GRACE
FOLLOWER_RECHECK = 1.0  # seconds a follower's failure detector sleeps unless its role changes first

Decision = TypeVar("Decision", Refusal | Proposal, Grant | Refusal | Proposal)
Reply = TypeVar("Reply", coordinator_pb2.RegisterReply, coordinator_pb2.HeartbeatReply,
                coordinator_pb2.ChainReply, coordinator_pb2.ClusterStatus, coordinator_pb2.CoordinatorMembersReply)


class LeadershipMoved(Unavailable):
    """This member handed leadership over to serve the request: pass it on to the new leader."""


class RegistryMachine:
    """The chain registry as the member driver's state machine."""

    def __init__(self) -> None:
        self.registry = Registry()

    def apply(self, data: bytes) -> Outcome:
        return self.registry.apply(data)

    def snapshot(self) -> bytes:
        return self.registry.snapshot()

    def restore(self, data: bytes) -> None:
        self.registry = Registry.restore(data)


def member_role(config: chain_pb2.ChainConfig, node: str) -> str:
    """head | middle | tail | syncing, by position among the active members (one alone is head)."""
    active = [m.id for m in config.members if m.state == chain_pb2.ACTIVE]
    if node not in active:
        return "syncing"
    i = active.index(node)
    if i == 0:
        return "head"
    return "tail" if i == len(active) - 1 else "middle"


def deleted_config(state: ChainState) -> chain_pb2.ChainConfig:
    """What a watch stream says when a chain is deleted: no members, at the next epoch."""
    return chain_pb2.ChainConfig(chain=state.name, epoch=state.epoch + 1)


def transfer_target(status: Status) -> str:
    """The voter, other than this leader, to hand leadership to: one heard from since the last
    CheckQuorum round (a dead voter could never take over), then the one holding the most of the
    log (it can take over soonest). "" if there is none, or `status` is not a leader's."""
    candidates = [(pr.recent_active, pr.match, pid) for pid, pr in status.progress.items()
                  if pid != status.id and pid in status.voters]
    return max(candidates)[2] if candidates else ""


def _is_address(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def _error(code: int, message: str) -> coordinator_pb2.Error:
    return coordinator_pb2.Error(code=code, message=message)  # type: ignore[arg-type]


def _outcome_error(outcome: Outcome) -> coordinator_pb2.Error | None:
    if outcome.error is None:
        return None
    return _error(coordinator_pb2.Code.Value(outcome.error.code.value), outcome.error.message)


def _refused(refusal: Refusal) -> coordinator_pb2.Error:
    return _error(coordinator_pb2.Code.Value(refusal.code), refusal.message)


def _heartbeat_refused(refusal: Refusal) -> coordinator_pb2.HeartbeatReply:
    """An error and no lease; with the chain's configuration if the node is no longer in it."""
    if refusal.config is None:
        return coordinator_pb2.HeartbeatReply(error=_refused(refusal))
    return coordinator_pb2.HeartbeatReply(error=_refused(refusal), config=refusal.config.to_proto())


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


@dataclass
class NodeHealth:
    """A node's figures from its last heartbeat (when that was is the LeaseTracker's record)."""

    reads: int = 0
    writes: int = 0
    last_seq: int = 0
    committed_seq: int = 0
    links: LinkReport | None = None
    storage_alarm: bool = False
    disk_free_bytes: int = 0


class CoordinatorService:
    # Mutual TLS on the channels that forward to the leader (None: plaintext); set by the server.
    tls_files: tls.TlsFiles | None = None

    def __init__(
        self,
        member: RaftMember,
        machine: RegistryMachine,
        peers: dict[str, str],
        *,
        forward_wait: float = FORWARD_WAIT,
        proposal_timeout: float = PROPOSAL_TIMEOUT,
        lease: float = timing.LEASE,
        removal_after: float = timing.REMOVAL_AFTER,
        new_leader_grace: float = NEW_LEADER_GRACE,
        catch_up_timeout: float = CATCH_UP_TIMEOUT,
        removal_wait: float | None = None,
        leader_evidence: float = timing.LEADER_EVIDENCE,
    ) -> None:
        self.member = member
        self.machine = machine
        self.peers = dict(peers)  # member id -> gRPC address (see set_peers)
        self.catch_up_timeout = catch_up_timeout
        self.forward_wait = forward_wait
        self.proposal_timeout = proposal_timeout
        self.supervisor = Supervisor(lease=lease, removal_after=removal_after, new_leader_grace=new_leader_grace,
                                     leader_evidence=leader_evidence, proposal_timeout=proposal_timeout,
                                     removal_wait=removal_wait)
        self.removal_wait = self.supervisor.removal_wait
        self.health: dict[tuple[str, str], NodeHealth] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stale_channels: list[grpc.aio.Channel] = []
        self._was_leader = False
        member.on_role_change(self._role_changed)

    @property
    def registry(self) -> Registry:
        return self.machine.registry

    @property
    def leases(self) -> LeaseTracker:
        """The supervisor's record of the leases granted (health reports, tests)."""
        return self.supervisor.leases

    @property
    def auto_chains(self) -> set[str]:
        """Chains the leader creates when missing (--chain)."""
        return self.supervisor.auto_chains

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _role_changed(self) -> None:
        leader = self.member.is_leader
        if leader and not self._was_leader:
            self.supervisor.become_leader(self._now())
            self.health.clear()
        elif not leader and self._was_leader:
            self.supervisor.step_down()
            self.health.clear()
        self._was_leader = leader

    # ---- routing: local at the leader, else forwarded ----

    async def _at_leader(
        self,
        method: str,
        request: object,
        local: Callable[[], Awaitable[Reply]],
        unavailable: Callable[[str], Reply],
        forwarded: bool,
        budget: float | None = None,
        relayed: Callable[[Reply, str], None] | None = None,
    ) -> Reply:
        """Run `local` at the leader, or forward the request to it; `budget` (default
        `forward_wait`) bounds the whole, waiting for a leader included. `relayed(reply, address)`
        sees a reply this member relayed from the leader at `address`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.forward_wait if budget is None else budget)
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return unavailable("no coordinator leader answered in time (election in progress?); retry")
            leader = await self.member.wait_for_leader(left)
            if not leader:
                continue
            try:
                if leader == self.member.id:
                    if not self.member.leader_committed:
                        await self.member.wait_changed(min(left, 0.05))
                        continue
                    return await local()
                if forwarded:
                    return unavailable(f"this member is not the leader ({leader} is); retry")
                stub = coordinator_pb2_grpc.CoordinatorStub(self._channel(leader))
                call = getattr(stub, method)
                reply = await call(request, timeout=left, metadata=((FORWARDED_HEADER, self.member.id),))
                if relayed is not None:
                    relayed(reply, self.peers.get(leader, ""))
                return reply
            except OutcomeUnknown as exc:
                return unavailable(f"outcome unknown: {exc}")
            except LeadershipMoved as exc:
                log.info("coordinator pass on method=%s reason=%s", method, exc)
                forwarded = False  # the one extra hop: to the leader this member just made
            except Unavailable as exc:  # not applied: safe to try again within the deadline
                log.debug("coordinator retry method=%s reason=%s", method, exc)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    return unavailable(f"forwarding to {leader} failed: {exc.code().name} {exc.details()}")
                log.debug("coordinator forward failed leader=%s code=%s", leader, exc.code().name)
            await self.member.wait_changed(min(max(deadline - loop.time(), 0), 0.05))

    def set_peers(self, peers: dict[str, str]) -> None:
        """New member addresses (from the address book); channels to moved members are replaced."""
        for member_id, channel in list(self._channels.items()):
            if peers.get(member_id) != self.peers.get(member_id):
                self._stale_channels.append(channel)
                del self._channels[member_id]
        self.peers = dict(peers)

    def _channel(self, member_id: str) -> grpc.aio.Channel:
        channel = self._channels.get(member_id)
        if channel is None:
            address = self.peers.get(member_id)
            if address is None:
                raise Unavailable(f"the address of coordinator member {member_id!r} is unknown")
            channel = tls.channel(address, self.tls_files, CHANNEL_OPTIONS)
            self._channels[member_id] = channel
        return channel

    async def close(self) -> None:
        for channel in [*self._channels.values(), *self._stale_channels]:
            await channel.close()
        self._channels.clear()
        self._stale_channels.clear()

    async def _propose(self, command: bytes) -> Outcome:
        result = await self.member.propose(command, self.proposal_timeout)
        assert isinstance(result, Outcome)
        return result

    # ---- nodes: translations around the supervision core ----

    async def _confirmed(self, decide: Callable[[float, float | None], Decision]) -> Decision:
        """`decide(now, quorum_confirmed_at)`, the supervisor's decision; while it is UNCONFIRMED,
        wait a few ticks (while still leader) for a leadership round to complete and decide again."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + EVIDENCE_WAIT_TICKS * self.member.tick_interval
        while True:
            decision = decide(loop.time(), self.member.quorum_confirmed_at)
            if decision is not UNCONFIRMED or loop.time() >= deadline or not self.member.is_leader:
                return decision
            await asyncio.sleep(self.member.tick_interval / 5)

    async def register(self, req: coordinator_pb2.RegisterRequest, forwarded: bool = False
                       ) -> coordinator_pb2.RegisterReply:
        reg = Registration(req.chain, req.node_id, req.address)

        async def local() -> coordinator_pb2.RegisterReply:
            received_at = 0.0

            def decide(now: float, confirmed_at: float | None) -> Refusal | Proposal:
                nonlocal received_at
                received_at = now
                return self.supervisor.register(reg, self.registry.get(req.chain), now, confirmed_at)

            decision = await self._confirmed(decide)
            if isinstance(decision, Refusal):
                return coordinator_pb2.RegisterReply(error=_refused(decision))
            outcomes = [await self._propose(command) for command in decision.commands]
            answer = self.supervisor.registered(reg, outcomes[-1], received_at)
            if isinstance(answer, Refusal):
                return coordinator_pb2.RegisterReply(error=_refused(answer))
            self.health[(req.chain, req.node_id)] = NodeHealth()
            log.info("node registered chain=%s node=%s epoch=%d", req.chain, req.node_id, answer.config.epoch)
            return coordinator_pb2.RegisterReply(config=answer.config.to_proto(), lease_ms=_ms(answer.lease))

        return await self._at_leader(
            "Register", req, local,
            lambda msg: coordinator_pb2.RegisterReply(error=_error(coordinator_pb2.UNAVAILABLE, msg)), forwarded,
        )

    async def heartbeat(self, req: coordinator_pb2.HeartbeatRequest, forwarded: bool = False
                        ) -> coordinator_pb2.HeartbeatReply:
        links = link_report_from_pb(req.link_health) if req.HasField("link_health") else None
        beat = Heartbeat(req.chain, req.node_id, req.epoch, req.caught_up, req.in_sync, links=links,
                         committed_seq=req.committed_seq, seq=req.seq, surrendered_below=req.surrendered_below,
                         storage_alarm=req.storage_alarm)

        async def local() -> coordinator_pb2.HeartbeatReply:
            decision = await self._confirmed(
                lambda now, confirmed_at: self.supervisor.heartbeat(beat, self.registry.get(req.chain), now,
                                                                    confirmed_at))
            if isinstance(decision, Refusal):
                return _heartbeat_refused(decision)
            self.health[(req.chain, req.node_id)] = NodeHealth(req.reads, req.writes, req.last_seq,
                                                               req.committed_seq, links, req.storage_alarm,
                                                               req.disk_free_bytes)
            if isinstance(decision, Proposal):
                answer: Grant | Refusal = Refusal("UNAVAILABLE", "the promotion did not settle")
                try:
                    await self._promote(req.chain, req.node_id, decision.commands[0])
                finally:
                    answer = self.supervisor.promoted(beat, self.registry.get(req.chain))
                if isinstance(answer, Refusal):
                    return _heartbeat_refused(answer)
                decision = answer
            return coordinator_pb2.HeartbeatReply(config=decision.config.to_proto(), lease_ms=_ms(decision.lease),
                                                  storage_alarms=self.supervisor.storage_alarms(decision.config),
                                                  clean_seq=self.supervisor.clean_point(decision.config))

        return await self._at_leader(
            "Heartbeat", req, local,
            lambda msg: coordinator_pb2.HeartbeatReply(error=_error(coordinator_pb2.UNAVAILABLE, msg)), forwarded,
            relayed=_point_to_leader,
        )

    async def report_unreachable(self, req: coordinator_pb2.ReportUnreachableRequest, forwarded: bool = False
                                 ) -> coordinator_pb2.ReportReply:
        """A proxy cannot use a node: weighed, at the leader, with the nodes' link reports."""
        report = ProxyReport(req.chain, req.reporter, req.node_id, req.epoch, req.unreachable_ms / 1000)
        if not req.reporter:
            return coordinator_pb2.ReportReply(
                error=_error(coordinator_pb2.INVALID_ARGUMENT, "a report names its reporter"))

        async def local() -> coordinator_pb2.ReportReply:
            decision = self.supervisor.report_unreachable(report, self.registry.get(req.chain), self._now())
            if isinstance(decision, Refusal):
                return coordinator_pb2.ReportReply(error=_refused(decision))
            if decision:
                log.info("proxy reports a node unusable chain=%s node=%s reporter=%s for_ms=%d", req.chain,
                         req.node_id, req.reporter, req.unreachable_ms)
            return coordinator_pb2.ReportReply(accepted=decision)

        return await self._at_leader(
            "ReportUnreachable", req, local,
            lambda msg: coordinator_pb2.ReportReply(error=_error(coordinator_pb2.UNAVAILABLE, msg)), forwarded,
        )

    async def _promote(self, chain: str, node: str, command: bytes) -> None:
        try:
            outcome = await self._propose(command)
        except Unavailable as exc:
            log.info("promotion pending chain=%s node=%s reason=%s", chain, node, exc)
            return
        if outcome.error is not None:
            log.info("promotion refused chain=%s node=%s reason=%s", chain, node, outcome.error)
            return
        log.info("node promoted to tail chain=%s node=%s epoch=%d", chain, node,
                 outcome.chain.epoch if outcome.chain else 0)

    # ---- chains ----

    async def _change(self, method: str, request: object, command: Callable[[], bytes], forwarded: bool
                      ) -> coordinator_pb2.ChainReply:
        async def local() -> coordinator_pb2.ChainReply:
            try:
                data = command()
            except (TypeError, ValueError) as exc:
                return coordinator_pb2.ChainReply(error=_error(coordinator_pb2.INVALID_ARGUMENT, str(exc)))
            outcome = await self._propose(data)
            err = _outcome_error(outcome)
            if err is not None:
                return coordinator_pb2.ChainReply(error=err)
            assert outcome.chain is not None
            log.info("registry change method=%s chain=%s", method, outcome.chain.describe())
            return coordinator_pb2.ChainReply(config=outcome.chain.to_proto())

        return await self._at_leader(
            method, request, local,
            lambda msg: coordinator_pb2.ChainReply(error=_error(coordinator_pb2.UNAVAILABLE, msg)), forwarded,
        )

    async def create_chain(self, req: coordinator_pb2.CreateChainRequest, forwarded: bool = False
                           ) -> coordinator_pb2.ChainReply:
        return await self._change("CreateChain", req, lambda: create_chain(req.chain), forwarded)

    async def delete_chain(self, req: coordinator_pb2.DeleteChainRequest, forwarded: bool = False
                           ) -> coordinator_pb2.ChainReply:
        return await self._change("DeleteChain", req, lambda: delete_chain(req.chain), forwarded)

    async def remove_member(self, req: coordinator_pb2.RemoveMemberRequest, forwarded: bool = False
                            ) -> coordinator_pb2.ChainReply:
        async def local() -> coordinator_pb2.ChainReply:
            state = self.registry.get(req.chain)
            started = not self.supervisor.draining(req.chain, req.node_id)
            refusal = self.supervisor.drain(req.chain, req.node_id, state)
            if refusal is not None:
                return coordinator_pb2.ChainReply(error=_refused(refusal))
            if started and state is not None:
                log.info("node draining chain=%s node=%s epoch=%d", req.chain, req.node_id, state.epoch)
            return await self._removed(req.chain, req.node_id)

        return await self._at_leader(
            "RemoveMember", req, local,
            lambda msg: coordinator_pb2.ChainReply(error=_error(coordinator_pb2.UNAVAILABLE, msg)), forwarded,
            budget=self.forward_wait + self.removal_wait,
        )

    async def _removed(self, chain: str, node: str) -> coordinator_pb2.ChainReply:
        """Wait (at the leader) until `node` has left `chain`; the configuration then."""
        changed = asyncio.Event()
        unsubscribe = self.member.on_apply(lambda _: changed.set())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.removal_wait
        try:
            while True:
                progress = Supervisor.removal_progress(chain, node, self.registry.get(chain))
                if isinstance(progress, Refusal):
                    return coordinator_pb2.ChainReply(error=_refused(progress))
                if progress is not None:
                    log.info("node removed on request chain=%s node=%s epoch=%d", chain, node, progress.epoch)
                    return coordinator_pb2.ChainReply(config=progress.to_proto())
                if not self.member.is_leader:
                    raise Unavailable("leadership moved during the removal; the new leader drains it again")
                left = deadline - loop.time()
                if left <= 0:
                    return coordinator_pb2.ChainReply(error=_refused(Supervisor.still_draining(node)))
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(left, self.member.tick_interval))
        finally:
            unsubscribe()

    async def get_chain(self, req: coordinator_pb2.GetChainRequest, forwarded: bool = False
                        ) -> coordinator_pb2.ChainReply:
        async def local() -> coordinator_pb2.ChainReply:
            await self.member.read_barrier(self.forward_wait)
            state = self.registry.get(req.chain)
            if state is None:
                return coordinator_pb2.ChainReply(
                    error=_error(coordinator_pb2.NOT_FOUND, f"chain {req.chain!r} does not exist"))
            return coordinator_pb2.ChainReply(config=state.to_proto())

        return await self._at_leader(
            "GetChain", req, local,
            lambda msg: coordinator_pb2.ChainReply(error=_error(coordinator_pb2.UNAVAILABLE, msg)), forwarded,
        )

    async def cluster_status(self, req: coordinator_pb2.ClusterStatusRequest | None = None,
                             forwarded: bool = False) -> coordinator_pb2.ClusterStatus:
        req = req or coordinator_pb2.ClusterStatusRequest()

        async def local() -> coordinator_pb2.ClusterStatus:
            await self.member.read_barrier(self.forward_wait)
            return self._status()

        return await self._at_leader(
            "GetClusterStatus", req, local,
            lambda msg: coordinator_pb2.ClusterStatus(error=_error(coordinator_pb2.UNAVAILABLE, msg)), forwarded,
        )

    def _members(self, membership: Membership, leader: str) -> list[coordinator_pb2.CoordinatorMember]:
        members = []
        for mid in sorted(membership.members):
            voter = mid in membership.voters
            role = "learner" if not voter else Role.LEADER.value if mid == leader else Role.FOLLOWER.value
            members.append(coordinator_pb2.CoordinatorMember(
                id=mid, address=self.peers.get(mid, ""), role=role, suffrage="voter" if voter else "learner"))
        return members

    def _status(self) -> coordinator_pb2.ClusterStatus:
        raft = self.member.core.status()
        members = self._members(Membership.of(raft.voters, raft.learners), raft.leader)
        now = self._now()
        chains = []
        for state in sorted(self.registry.chains.values(), key=lambda c: c.name):
            alarms = set(self.supervisor.storage_alarms(state))
            health = []
            for m in state.members:
                h = self.health.get((state.name, m.id))
                health.append(coordinator_pb2.MemberHealth(
                    id=m.id,
                    healthy=self.supervisor.lease_valid(state.name, m.id, now),
                    reads=h.reads if h else 0,
                    writes=h.writes if h else 0,
                    last_seq=h.last_seq if h else 0,
                    committed_seq=h.committed_seq if h else 0,
                    link_health=link_report_to_pb(h.links) if h and h.links else None,
                    suspected=self.supervisor.suspected(state.name, m.id),
                    storage_alarm=m.id in alarms,
                    disk_free_bytes=h.disk_free_bytes if h else 0,
                ))
            held = [coordinator_pb2.ReadmissionHold(node_id=hold.node, remaining_ms=_ms(hold.remaining(now)),
                                                    removals=hold.removals, reason=hold.reason)
                    for hold in self.supervisor.held(state.name, now)]
            chains.append(coordinator_pb2.ChainStatus(config=state.to_proto(), health=health, held=held))
        return coordinator_pb2.ClusterStatus(leader=raft.leader, members=members, chains=chains)

    # ---- the coordinator cluster's own membership ----

    async def add_coordinator(self, req: coordinator_pb2.AddCoordinatorMemberRequest, forwarded: bool = False
                              ) -> coordinator_pb2.CoordinatorMembersReply:
        def refuse(code: int, message: str) -> coordinator_pb2.CoordinatorMembersReply:
            return coordinator_pb2.CoordinatorMembersReply(error=_error(code, message))

        if not req.id or not _is_address(req.address):
            return refuse(coordinator_pb2.INVALID_ARGUMENT,
                          f"a coordinator member needs an id and a host:port address, got {req.id!r} {req.address!r}")

        async def local() -> coordinator_pb2.CoordinatorMembersReply:
            book = self.member.book
            current = book.address(req.id)
            if req.id in book.membership.members and current and current != req.address:
                return refuse(coordinator_pb2.ALREADY_EXISTS,
                              f"coordinator {req.id} is already a member at {current}, not {req.address}")
            if req.id in book.membership.voters:
                return self._members_reply(book.membership)
            others = sorted(book.membership.learners - {req.id})
            if others:
                return refuse(coordinator_pb2.FAILED_PRECONDITION,
                              f"coordinator {others[0]} is still a learner (a change in progress); one server at "
                              f"a time: repeat its add or remove it first")
            if req.id not in book.membership.learners:
                await self._change_membership(ConfChange(ConfChangeOp.ADD_LEARNER, req.id, req.address))
                log.info("coordinator member added as learner id=%s address=%s", req.id, req.address)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.catch_up_timeout
            while True:
                try:
                    membership = await self._change_membership(ConfChange(ConfChangeOp.PROMOTE, req.id))
                except LearnerBehind as exc:
                    if loop.time() >= deadline:
                        return refuse(coordinator_pb2.UNAVAILABLE,
                                      f"{exc} within {self.catch_up_timeout:g}s; it stays a learner: check that it "
                                      f"runs and repeat the request")
                    await asyncio.sleep(self.member.tick_interval)
                    continue
                log.info("coordinator member promoted to voter id=%s", req.id)
                return self._members_reply(membership)

        return await self._membership_at_leader("AddCoordinatorMember", req, local, refuse, forwarded)

    async def remove_coordinator(self, req: coordinator_pb2.RemoveCoordinatorMemberRequest, forwarded: bool = False
                                 ) -> coordinator_pb2.CoordinatorMembersReply:
        def refuse(code: int, message: str) -> coordinator_pb2.CoordinatorMembersReply:
            return coordinator_pb2.CoordinatorMembersReply(error=_error(code, message))

        async def local() -> coordinator_pb2.CoordinatorMembersReply:
            membership = self.member.book.membership
            if req.id not in membership.members:
                return refuse(coordinator_pb2.NOT_FOUND, f"{req.id!r} is not a coordinator member")
            if req.id == self.member.id and membership.voters != {req.id}:
                target = transfer_target(self.member.core.status())
                if not target:
                    raise Unavailable("no other voter is reachable to take over the leadership")
                if not await self.member.transfer_leadership(target, self.forward_wait):
                    raise Unavailable(f"leadership transfer to {target} did not finish; retry")
                raise LeadershipMoved(f"the leader {req.id} is to be removed; handed leadership to {target}")
            membership = await self._change_membership(ConfChange(ConfChangeOp.REMOVE, req.id))
            log.info("coordinator member removed id=%s", req.id)
            return self._members_reply(membership)

        return await self._membership_at_leader("RemoveCoordinatorMember", req, local, refuse, forwarded)

    async def _membership_at_leader(
        self, method: str, req: object, local: Callable[[], Awaitable[coordinator_pb2.CoordinatorMembersReply]],
        refuse: Callable[[int, str], coordinator_pb2.CoordinatorMembersReply], forwarded: bool,
    ) -> coordinator_pb2.CoordinatorMembersReply:
        async def guarded() -> coordinator_pb2.CoordinatorMembersReply:
            try:
                return await local()
            except ChangePending as exc:
                return refuse(coordinator_pb2.FAILED_PRECONDITION, f"{exc}; one server at a time, retry later")
            except ConfChangeError as exc:
                return refuse(coordinator_pb2.FAILED_PRECONDITION, str(exc))

        budget = self.forward_wait + self.catch_up_timeout + 3 * self.proposal_timeout
        return await self._at_leader(method, req, guarded, lambda msg: refuse(coordinator_pb2.UNAVAILABLE, msg),
                                     forwarded, budget=budget)

    async def _change_membership(self, change: ConfChange) -> Membership:
        return await self.member.propose_conf_change(change, self.proposal_timeout)

    def _members_reply(self, membership: Membership) -> coordinator_pb2.CoordinatorMembersReply:
        return coordinator_pb2.CoordinatorMembersReply(members=self._members(membership, self.member.leader))

    # ---- watch ----

    async def watch(self, req: coordinator_pb2.WatchRequest) -> AsyncIterator[chain_pb2.ChainConfig]:
        """The current configuration(s), then every change, served by this member after a ReadIndex
        round. Raises Unavailable if no read point can be had (no leader)."""
        queue: asyncio.Queue[Applied] = asyncio.Queue()
        unsubscribe = self.member.on_apply(queue.put_nowait)
        sent: dict[str, int] = {}

        def fresh(configs: list[chain_pb2.ChainConfig]) -> list[chain_pb2.ChainConfig]:
            out = []
            for c in configs:
                if (not req.chain or c.chain == req.chain) and c.epoch > sent.get(c.chain, 0):
                    sent[c.chain] = c.epoch
                    out.append(c)
            return out

        def current() -> list[chain_pb2.ChainConfig]:
            return [s.to_proto() for s in sorted(self.registry.chains.values(), key=lambda c: c.name)]

        try:
            await self._barrier_with_retry()
            for c in fresh(current()):
                yield c
            while True:
                applied = await queue.get()
                if not isinstance(applied.result, Outcome):  # the state machine came from a snapshot
                    for c in fresh(current()):
                        yield c
                    continue
                outcome = applied.result
                if not outcome.changed or outcome.chain is None:
                    continue
                gone = json.loads(applied.data).get("op") == "delete_chain"
                config = deleted_config(outcome.chain) if gone else outcome.chain.to_proto()
                for c in fresh([config]):
                    yield c
        finally:
            unsubscribe()

    async def _barrier_with_retry(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.forward_wait
        while True:
            try:
                await self.member.read_barrier(max(deadline - loop.time(), 0.01))
                return
            except Unavailable:
                if loop.time() >= deadline:
                    raise
                await self.member.wait_changed(0.05)

    # ---- the leader's background duties ----

    async def run_failure_detector(self, interval: float = timing.TICK) -> None:
        """At the leader: propose the removal of nodes whose lease has certainly expired."""
        pending: set[asyncio.Task[None]] = set()
        while True:
            if not (self.member.is_leader and self.member.leader_committed):
                # A follower has nothing to detect: it sleeps until its role changes (or a second
                # passes), not waking every tick for nothing.
                await self.member.wait_changed(FOLLOWER_RECHECK)
                continue
            await asyncio.sleep(interval)
            if not (self.member.is_leader and self.member.leader_committed):
                continue
            known = set(self.supervisor.verdicts)
            for removal in self.supervisor.removals(self._now(), list(self.registry.chains.values())):
                why = self.supervisor.suspected(removal.chain, removal.node) or "silent past its lease, or drained"
                log.warning("removing node chain=%s node=%s epoch=%d reason=%r",
                            removal.chain, removal.node, removal.epoch, why)
                task = asyncio.create_task(self._propose_removal(removal))
                pending.add(task)
                task.add_done_callback(pending.discard)
            for key, verdict in self.supervisor.verdicts.items():
                if key not in known:
                    log.warning("gray failure: revoking the lease of chain=%s node=%s epoch=%d reason=%r",
                                verdict.chain, verdict.node, verdict.epoch, verdict.reason)
            self._forget_departed()

    def holds_now(self) -> int:
        """Removed nodes whose registration is held back now, over every chain (a metric)."""
        now = self._now()
        return sum(len(self.supervisor.held(chain, now)) for chain in list(self.registry.chains))

    def _forget_departed(self) -> None:
        """Drop the heartbeat figures of nodes no longer in a chain (removed, or the chain deleted)."""
        for chain, node in list(self.health):
            state = self.registry.get(chain)
            if state is None or state.member(node) is None:
                del self.health[(chain, node)]

    async def ensure_chains(self, names: list[str], interval: float = 0.1) -> None:
        """At the leader: create each chain in `names` that does not exist; returns when all exist
        (at any member: the registry it applied has them)."""
        self.auto_chains.update(names)
        missing = list(names)
        while missing:
            leading = self.member.is_leader and self.member.leader_committed
            for name in list(missing):
                if leading and self.registry.get(name) is None:
                    await self._propose_quietly(create_chain(name), f"create chain {name}", logging.INFO)
                if self.registry.get(name) is not None:
                    missing.remove(name)
            if missing:
                await asyncio.sleep(interval)

    async def _propose_removal(self, removal: Removal) -> None:
        """Propose a removal the failure detector decided; tell it when the entry will never apply."""
        try:
            outcome = await self._propose(removal.command())
        except OutcomeUnknown as exc:  # in the log: it may still commit, the node stays without a lease
            log.info("removal pending chain=%s node=%s reason=%s", removal.chain, removal.node, exc)
            return
        except Unavailable as exc:  # never entered the log (or lost with the leadership)
            log.info("removal not proposed chain=%s node=%s reason=%s", removal.chain, removal.node, exc)
            self.supervisor.removal_failed(removal)
            return
        if outcome.error is not None:
            log.info("removal refused chain=%s node=%s reason=%s", removal.chain, removal.node, outcome.error)
            self.supervisor.removal_failed(removal)
        elif outcome.chain is not None:
            log.warning("registry changed what=remove %s chain=%s", removal.node, outcome.chain.describe())

    async def _propose_quietly(self, command: bytes, what: str, level: int = logging.WARNING) -> None:
        with contextlib.suppress(Unavailable):
            outcome = await self._propose(command)
            if outcome.error is not None:
                log.info("registry command refused what=%s reason=%s", what, outcome.error)
            elif outcome.chain is not None:
                log.log(level, "registry changed what=%s chain=%s", what, outcome.chain.describe())


def _point_to_leader(reply: coordinator_pb2.HeartbeatReply, address: str) -> None:
    """A node heartbeats ten times a second: tell it where the leader is, so that its next
    heartbeats go there instead of costing this member a forwarded call each."""
    reply.leader_address = address


class CoordinatorServicer(coordinator_pb2_grpc.CoordinatorServicer):
    """grpc.aio adapter of CoordinatorService."""

    def __init__(self, service: CoordinatorService) -> None:
        self.service = service

    @staticmethod
    def _forwarded(context: grpc.aio.ServicerContext) -> bool:
        return any(k == FORWARDED_HEADER for k, _ in (context.invocation_metadata() or ()))

    async def Register(self, request, context):
        return await self.service.register(request, self._forwarded(context))

    async def Heartbeat(self, request, context):
        return await self.service.heartbeat(request, self._forwarded(context))

    async def CreateChain(self, request, context):
        return await self.service.create_chain(request, self._forwarded(context))

    async def DeleteChain(self, request, context):
        return await self.service.delete_chain(request, self._forwarded(context))

    async def RemoveMember(self, request, context):
        return await self.service.remove_member(request, self._forwarded(context))

    async def GetChain(self, request, context):
        return await self.service.get_chain(request, self._forwarded(context))

    async def ReportUnreachable(self, request, context):
        return await self.service.report_unreachable(request, self._forwarded(context))

    async def GetClusterStatus(self, request, context):
        return await self.service.cluster_status(request, self._forwarded(context))

    async def AddCoordinatorMember(self, request, context):
        return await self.service.add_coordinator(request, self._forwarded(context))

    async def RemoveCoordinatorMember(self, request, context):
        return await self.service.remove_coordinator(request, self._forwarded(context))

    async def WatchChains(self, request, context):
        try:
            async for config in self.service.watch(request):
                yield config
        except Unavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"no coordinator leader; retry ({exc})")
