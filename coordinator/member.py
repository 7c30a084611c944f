"""The coordinator member's driver: one asyncio task that owns a RaftCore, its storage and the state machine.

The driver is the only code that touches the core. Everything else (the Raft transport, the gRPC and
HTTP APIs) talks to it through methods that queue work into its inbox and wake it; the driver then,
in one place and in the order `keychain.coordinator.raft` documents:

1. ticks the core every `tick` seconds of the event loop's clock;
2. steps queued inputs (peer messages, proposals, ReadIndex requests, transport reports);
3. handles every Ready: persists it (fsync in a worker thread, so the event loop keeps serving),
   sends its messages, restores a received snapshot, applies committed entries to the state
   machine, releases ReadIndex reads whose index is applied, then advances the core;
4. compacts the log with a state machine snapshot every `compact_every` applied entries.

As leader, the driver also confirms its leadership every tick with a ReadIndex round of its own
(a heartbeat round a quorum of voters must acknowledge). `quorum_confirmed_at` is the loop time
at which the newest acknowledged round began: evidence, in this process's own clock, that no
other leader was elected before then. Leases are granted only while it is recent (supervision.py
`leadership_fresh`), so a leader whose driver is stalled (a slow fsync) stops granting them even
though its gRPC handlers still run.

The driver also keeps the coordinator's address book (address_book.py) as of the applied log:
it applies each committed membership change to it, saves it inside every snapshot it writes and
reads it back from every snapshot it restores, and tells `on_members_change` listeners (the Raft
transport, the API's forwarding) whenever it changes.

Inputs that arrive while a Ready is being persisted wait in the inbox: the core and its storage are
never used from two threads at once.

A proposal is made only at the leader (the API layer forwards client requests to the leader over
gRPC, so it learns the outcome). The leader appends it at a known (index, term); the proposal's
result is the state machine's answer when that index is applied with that term. If a different term
is applied there, another leader overwrote it and the caller is told `ProposalLost` (retryable).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from keychain.coordinator.address_book import AddressBook, pack_snapshot, unpack_snapshot
from keychain.coordinator.log import Entry, EntryType, RaftStorage, Snapshot
from keychain.coordinator.membership import ConfChange, ConfChangeError, Membership
from keychain.coordinator.messages import Message
from keychain.coordinator.raft import ChangePending, LearnerBehind, ProposalDropped, RaftCore, Ready, Role
from keychain.coordinator.supervision import QuorumEvidence

from keychain import timing

log = logging.getLogger(__name__)

DEFAULT_COMPACT_EVERY = 1000  # applied entries between log compactions


class StateMachine(Protocol):
    """What the driver applies committed commands to (the chain registry)."""

    def apply(self, data: bytes) -> object: ...
    def snapshot(self) -> bytes: ...
    def restore(self, data: bytes) -> None: ...


class Unavailable(Exception):
    """The member cannot do this now (no leader, a transfer under way, shutting down); retry."""


class NotLeader(Unavailable):
    """A proposal was made at a member that is not the leader; `leader` is who is, if known."""

    def __init__(self, leader: str) -> None:
        super().__init__(f"not the leader (leader: {leader or 'unknown'})")
        self.leader = leader


class ProposalLost(Unavailable):
    """The proposal's log slot was taken by another leader's entry: it was not applied; retry."""


class OutcomeUnknown(Unavailable):
    """The proposal was appended but did not apply in time: it may still commit later."""


@dataclass(frozen=True, slots=True)
class Applied:
    """One applied NORMAL command, as seen by listeners (watch streams, the failure detector)."""

    index: int
    data: bytes
    result: object


class Transport(Protocol):
    def send(self, message: Message) -> None: ...


class RaftMember:
    def __init__(
        self,
        core: RaftCore,
        storage: RaftStorage,
        machine: StateMachine,
        transport: Transport,
        *,
        tick: float = timing.TICK,
        compact_every: int = DEFAULT_COMPACT_EVERY,
    ) -> None:
        if compact_every < 1:
            raise ValueError(f"compact_every must be >= 1, got {compact_every}")
        self.core = core
        self.id = core.id
        self.storage = storage
        self.machine = machine
        self.transport = transport
        self.tick_interval = tick
        self.compact_every = compact_every
        snap = storage.snapshot()
        self.book = self._restore(snap) if snap.index else AddressBook()
        self.applied = snap.index
        self.role = core.role
        self.leader = core.leader_id
        self.term = core.term
        self.leader_since: float | None = None  # loop time when this member last became leader
        self.leader_committed = False  # as leader: an entry of this term is applied (state is current)
        self.evidence = QuorumEvidence(core.id, tick)  # as leader: its leadership rounds (see the module docstring)
        self._inbox: deque[Callable[[], None]] = deque()
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()  # set and replaced whenever role or leader changes
        self._proposals: dict[int, tuple[int, asyncio.Future[object]]] = {}
        self._reads: dict[bytes, asyncio.Future[None]] = {}
        self._reads_waiting_apply: list[tuple[int, asyncio.Future[None]]] = []
        self._read_ids = itertools.count(1)
        self._apply_listeners: list[Callable[[Applied], None]] = []
        self._role_listeners: list[Callable[[], None]] = []
        self._members_listeners: list[Callable[[AddressBook], None]] = []
        self._stopped = False
        self._task: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None  # why the driver stopped, if it failed

    # ---- life cycle ----

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"raft-member-{self.id}")
        return self._task

    async def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._fail_waiters(Unavailable("the member is shutting down"))

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # ---- inputs (any coroutine or callback on the loop) ----

    def step(self, message: Message) -> None:
        """A message from a peer (dropped once the member stopped, like any message may be)."""
        if not self._stopped:
            self._submit(lambda: self._step(message))

    def report_unreachable(self, peer: str) -> None:
        if not self._stopped:
            self._submit(lambda: self.core.report_unreachable(peer))

    def report_snapshot(self, peer: str, ok: bool) -> None:
        if not self._stopped:
            self._submit(lambda: self.core.report_snapshot(peer, ok))

    async def propose(self, data: bytes, timeout: float) -> object:
        """Replicate `data` and return the state machine's result of applying it (leader only)."""
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()

        def do() -> None:
            if self.core.role is not Role.LEADER:
                fut.set_exception(NotLeader(self.core.leader_id))
                return
            try:
                self.core.propose(data)
            except ProposalDropped as exc:
                fut.set_exception(Unavailable(str(exc)))
                return
            self._proposals[self.core.log.last_index()] = (self.core.term, fut)

        self._submit(do)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            if not fut.done():
                fut.cancel()
            raise OutcomeUnknown("the proposal was not applied in time; it may still be") from None

    async def propose_conf_change(self, change: ConfChange, timeout: float) -> Membership:
        """Replicate a membership change (leader only) and return the configuration once it applied.

        Raises ChangePending (another change is uncommitted), LearnerBehind (a promotion that must
        wait), ConfChangeError (it does not fit the configuration), or Unavailable (retry)."""
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()

        def do() -> None:
            if self.core.role is not Role.LEADER:
                fut.set_exception(NotLeader(self.core.leader_id))
                return
            try:
                self.core.propose_conf_change(change)
            except (ChangePending, LearnerBehind, ConfChangeError) as exc:
                fut.set_exception(exc)
                return
            except ProposalDropped as exc:
                fut.set_exception(Unavailable(str(exc)))
                return
            self._proposals[self.core.log.last_index()] = (self.core.term, fut)

        self._submit(do)
        try:
            result = await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            if not fut.done():
                fut.cancel()
            raise OutcomeUnknown("the membership change was not applied in time; it may still be") from None
        assert isinstance(result, Membership)
        return result

    async def read_barrier(self, timeout: float) -> None:
        """Return once the local state machine reflects every write committed before the call
        (ReadIndex: the leader confirms it still leads, then this member applies that far)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        context = f"{self.id}/{next(self._read_ids)}".encode()

        def do() -> None:
            try:
                self.core.read_index(context)
            except ProposalDropped as exc:
                fut.set_exception(Unavailable(str(exc)))
                return
            self._reads[context] = fut

        self._submit(do)
        try:
            await self._await(fut, timeout, "no read point from the leader in time")
        finally:
            self._reads.pop(context, None)

    async def transfer_leadership(self, target: str, timeout: float) -> bool:
        """Ask the core to hand leadership to `target`; True once someone else leads."""
        self._submit(lambda: self._transfer(target))
        deadline = asyncio.get_running_loop().time() + timeout
        while self.leader == self.id or not self.leader:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            await self.wait_changed(left)
        return True

    async def wait_for_leader(self, timeout: float) -> str:
        """The current leader's id, waiting up to `timeout` for an election to finish; "" if none."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.leader:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0 or not self.running:
                return ""
            await self.wait_changed(left)
        return self.leader

    async def wait_changed(self, timeout: float) -> None:
        """Wait until the role or the leader changes (or the timeout passes)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._changed.wait()), timeout)

    def on_apply(self, listener: Callable[[Applied], None]) -> Callable[[], None]:
        """Call `listener` for every applied NORMAL command, and with `Applied(index, b"", None)`
        after the state machine was replaced by a snapshot; returns an unsubscribe function."""
        self._apply_listeners.append(listener)
        return lambda: self._apply_listeners.remove(listener) if listener in self._apply_listeners else None

    def on_role_change(self, listener: Callable[[], None]) -> None:
        self._role_listeners.append(listener)

    def on_members_change(self, listener: Callable[[AddressBook], None]) -> None:
        """Call `listener` with the address book whenever an applied change or a snapshot alters it."""
        self._members_listeners.append(listener)

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    @property
    def quorum_confirmed_at(self) -> float | None:
        """As leader: the loop time the newest round a quorum acknowledged began (None: none yet)."""
        return self.evidence.confirmed_at

    # ---- the driver ----

    def _submit(self, work: Callable[[], None]) -> None:
        if self._stopped:
            raise Unavailable("the member is shutting down")
        self._inbox.append(work)
        self._wake.set()

    async def _await[T](self, fut: asyncio.Future[T], timeout: float, what: str) -> T:
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            if not fut.done():
                fut.cancel()
            raise Unavailable(what) from None

    def _step(self, message: Message) -> None:
        try:
            self.core.step(message)
        except Exception as exc:  # a malformed message from a peer must not stop the member
            log.warning("raft drop message id=%s from=%s type=%s reason=%s", self.id, message.sender,
                        message.type, exc)

    def _transfer(self, target: str) -> None:
        with contextlib.suppress(ProposalDropped):
            self.core.transfer_leadership(target)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self.tick_interval
        try:
            while not self._stopped:
                timeout = next_tick - loop.time()
                if timeout > 0 and not self._inbox:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout)
                self._wake.clear()
                now = loop.time()
                if now >= next_tick:
                    self.core.tick()
                    self._confirm_leadership(now)
                    # After a stall (a slow fsync), tick once and resume the cadence: no burst of
                    # ticks that would fire an election timeout all at once.
                    next_tick = max(next_tick + self.tick_interval, now + self.tick_interval / 2)
                while self._inbox:
                    self._inbox.popleft()()
                while self.core.has_ready():
                    await self._handle(self.core.ready())
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.failure = exc
            log.exception("raft member failed id=%s", self.id)
            raise
        finally:
            self._stopped = True
            self.role, self.leader = Role.FOLLOWER, ""
            self._fail_waiters(Unavailable("the member stopped"))
            self._signal_change()

    async def _handle(self, rd: Ready) -> None:
        if rd.must_sync:
            await asyncio.to_thread(rd.persist, self.storage)
        for m in rd.messages:
            self.transport.send(m)
        if rd.snapshot is not None:
            self.book = self._restore(rd.snapshot)
            self._members_changed()
            self.applied = rd.snapshot.index
            self._fail_proposals_through(rd.snapshot.index)
            restored = Applied(rd.snapshot.index, b"", None)
            for listener in list(self._apply_listeners):
                listener(restored)
        for e in rd.committed_entries:
            self._apply(e)
        for rs in rd.read_states:
            if self.evidence.answered(rs.context):
                continue
            fut = self._reads.pop(rs.context, None)
            if fut is not None and not fut.done():
                self._reads_waiting_apply.append((rs.index, fut))
        self._release_reads()
        self.core.advance(rd)
        if rd.soft_state is not None or self.core.term != self.term:
            self._update_role(rd)
        if self.applied - self.storage.snapshot().index >= self.compact_every:
            await self._compact()

    def _apply(self, e: Entry) -> None:
        result: object = None
        if e.type is EntryType.NORMAL:
            result = self.machine.apply(e.data)
        elif e.type is EntryType.CONF_CHANGE:
            with contextlib.suppress(ConfChangeError):
                change = ConfChange.decode(e.data)
                if self.book.apply(change):
                    log.info("coordinator membership change id=%s op=%s node=%s address=%s", self.id,
                             change.op, change.node or ",".join(change.voters), change.address or "-")
                    self._members_changed()
            result = self.book.membership
        self.applied = e.index
        waiter = self._proposals.pop(e.index, None)
        if waiter is not None:
            term, fut = waiter
            if not fut.done():
                if term == e.term:
                    fut.set_result(result)
                else:
                    fut.set_exception(ProposalLost(f"log index {e.index} was taken by a later leader"))
        if self.role is Role.LEADER and e.term == self.core.term and not self.leader_committed:
            self.leader_committed = True
            self._signal_change()
        if e.type is EntryType.NORMAL:
            applied = Applied(e.index, e.data, result)
            for listener in list(self._apply_listeners):
                listener(applied)

    def _confirm_leadership(self, now: float) -> None:
        """As leader, begin a quorum round unless one begun within the last tick is in flight."""
        if self.core.role is Role.LEADER:
            self.evidence.begin(now, self.core.read_index)

    def _release_reads(self) -> None:
        still: list[tuple[int, asyncio.Future[None]]] = []
        for index, fut in self._reads_waiting_apply:
            if fut.done():
                continue
            if index <= self.applied:
                fut.set_result(None)
            else:
                still.append((index, fut))
        self._reads_waiting_apply = still

    def _update_role(self, rd: Ready) -> None:
        soft = rd.soft_state
        old_role, old_leader = self.role, self.leader
        self.term = self.core.term
        if soft is not None:
            self.role, self.leader = soft.role, soft.leader
        if self.role is Role.LEADER and old_role is not Role.LEADER:
            self.leader_since = asyncio.get_running_loop().time()
            self.leader_committed = False
        if self.role is not Role.LEADER or old_role is not Role.LEADER:
            self.evidence.reset()
        if (self.role, self.leader) != (old_role, old_leader):
            log.info("raft role id=%s role=%s leader=%s term=%d", self.id, self.role, self.leader or "-",
                     self.term)
            if old_leader and self.leader != old_leader:
                # Reads queued at the old leader are gone with its term: let the callers retry.
                for fut in self._reads.values():
                    if not fut.done():
                        fut.set_exception(Unavailable("the leader changed; retry"))
                self._reads.clear()
            self._signal_change()

    def _members_changed(self) -> None:
        for listener in list(self._members_listeners):
            listener(self.book)

    def _restore(self, snap: Snapshot) -> AddressBook:
        """Load the state machine and the address book from a snapshot; the book it holds is returned."""
        data, addresses = unpack_snapshot(snap.data)
        self.machine.restore(data)
        return AddressBook(Membership.of(snap.voters, snap.learners), addresses)

    def _signal_change(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        for listener in list(self._role_listeners):
            listener()

    async def _compact(self) -> None:
        data = pack_snapshot(self.machine.snapshot(), self.book.addresses())
        snap = self.core.snapshot_for_compaction(data, self.applied)
        await asyncio.to_thread(self.storage.compact, snap)
        log.info("raft compacted id=%s index=%d term=%d", self.id, snap.index, snap.term)

    def _fail_proposals_through(self, index: int) -> None:
        for i in [i for i in self._proposals if i <= index]:
            _, fut = self._proposals.pop(i)
            if not fut.done():
                fut.set_exception(ProposalLost("replaced by a snapshot from the leader; outcome unknown"))

    def _fail_waiters(self, exc: Exception) -> None:
        for _, fut in self._proposals.values():
            if not fut.done():
                fut.set_exception(exc)
        self._proposals.clear()
        for fut in self._reads.values():
            if not fut.done():
                fut.set_exception(exc)
        self._reads.clear()
        for _, fut in self._reads_waiting_apply:
            if not fut.done():
                fut.set_exception(exc)
        self._reads_waiting_apply = []
