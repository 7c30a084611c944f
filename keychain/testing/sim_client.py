"""A client in the simulator: issues put, get, delete, compare-and-set, range reads and two-key
transactions through a routing layer that decides like the proxy's (`keychain.proxy.routing`), and
records what it saw.

Routing: writes go to the head of the client's topology, reads to an active member picked by the
proxy's `ReadBalancer`; a refused or timed-out attempt is retried (a write with the same request
id) after the proxy's backoff, with a topology refresh from a coordinator, until the operation's
deadline. Then a write that may have reached the chain (a timeout, or OUTCOME_UNKNOWN) is recorded
`unknown`, one that certainly did not `fail`; a read that got no answer is dropped.

History: each operation goes into the shared `Recorder` on the true clock. A compare-and-set is
recorded as a put of its value when it applied and as `fail` when its precondition did not hold
(the history model has no conditional write; the invariants check the version it replaced).
Every acknowledged write and every read is also shown to the invariants.

Multi-key operations (a `multikey` share of them, see SimConfig; none by default): a strong range over part or all
of the small key space, sometimes limited or keys-only, routed like a get; and a transaction on
two keys, routed like a write: "if the first key still holds the value this client last saw
(or is absent), then get the second, put the first, put or delete the second; else get both".
The checker verifies both against a model of the whole key space.

Reports: each client keeps, as the proxy does, the production `NodeReachability` over its calls to
nodes (sent, answered, given up). A node silent for longer than PROXY_SILENCE is probed (a
`probe`, answered by any live node it reaches); one that leaves its probe unanswered for
PROXY_PROBE_TIMEOUT is reported to a coordinator (a `report` request: ReportUnreachable), again
every PROXY_REPORT_EVERY while that lasts. That is how a head nobody can connect to, whose own
links work, is found. Clients report in liveness mode only, for now: the random-fault runs keep
the trajectories their pinned seeds (regression tests, broken variants caught) were found on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from keychain import timing
from keychain.coordinator.registry import ChainState
from keychain.coordinator.registry import MemberState as RegistryState
from keychain.node.messages import (
    Code,
    Compare,
    CompareResult,
    CompareTarget,
    Consistency,
    EntryKind,
    OpKind,
    RangeRead,
    RangeReply,
    ReadReply,
    Txn,
    TxnOp,
    TxnOpKind,
    WriteOp,
    WriteReply,
)
from keychain.proxy.reachability import NodeReachability
from keychain.proxy.routing import (
    RETRY_BACKOFF,
    Disposition,
    ReadBalancer,
    Retry,
    classify,
    write_may_have_applied,
)
from keychain.proxy.topology import Member
from keychain.testing import history
from keychain.testing.sim_coordinator import CoordReply, CoordRequest
from keychain.testing.sim_world import Process

if TYPE_CHECKING:
    from keychain.testing.sim_cluster import Simulation

REQUEST_TIMEOUT = 2.0  # an operation's deadline
ATTEMPT_TIMEOUT = 0.5  # one call to a node
REFRESH_EVERY = 0.3  # topology refresh, besides the one before every retry
THINK = 0.03  # at most this long between a client's operations
REPORT_LATER = 0.001  # how long after a report falls due the client checks (as the proxy's reporter)


@dataclass
class _Op:
    kind: str  # put | delete | cas | get | range | txn
    key: str
    value: str | None
    call: int
    retry: Retry
    request_id: str = ""
    expected: int | None = None  # cas: the version it must replace (0 = absent)
    avoid: set[str] = field(default_factory=set)
    member: Member | None = None
    served_by: str = ""
    range: RangeRead | None = None
    txn: Txn | None = None
    branches: tuple[tuple[history.TxnOp, ...], tuple[history.TxnOp, ...]] = ((), ())  # txn: success, failure

    @property
    def reads(self) -> bool:
        return self.kind in ("get", "range")


class SimClient(Process):
    kind = "client"

    def __init__(self, sim: Simulation, cid: str) -> None:
        super().__init__(sim.world, cid)
        self.sim = sim
        self.topology: ChainState | None = None
        self.balancer = ReadBalancer()
        self.backoff = RETRY_BACKOFF
        self.versions: dict[str, int] = {}  # last version this client saw per key
        self.values: dict[str, str | None] = {}  # last value this client saw per key (None: absent)
        self.pending: dict[int, _Op] = {}  # rpc id -> operation
        self.op: _Op | None = None
        self._ids = 0
        self._writes = 0
        self.coord = sim.world.rng.randrange(len(sim.coordinator_ids))
        self.reachability = NodeReachability()
        self.calls: dict[int, tuple[str, int]] = {}  # rpc id -> (node, its request id in `reachability`)
        self._report_wake: float | None = None  # a check of the reports due is scheduled then

    def start(self) -> None:
        self.incarnation += 1
        self.up = True
        self.timer(self.world.rng.uniform(0, REFRESH_EVERY), self._refresh_loop)
        self.timer(self.world.rng.uniform(0, THINK), self._next_op)

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    # ---- topology ----

    def _refresh_loop(self) -> None:
        self.timer(REFRESH_EVERY, self._refresh_loop)
        self._refresh()

    def _refresh(self) -> None:
        ids = self.sim.coordinator_ids
        self.coord += 1
        coord = self.sim.coordinators[ids[self.coord % len(ids)]]
        self.sim.net.send(self, coord, "coord-req", coord.on_request, self, self.incarnation, self._next_id(),
                          CoordRequest("get_chain", self.sim.chain))

    def on_coord_reply(self, rid: int, reply: CoordReply) -> None:
        c = reply.chain
        if c is not None and not reply.error and (self.topology is None or c.epoch > self.topology.epoch):
            self.topology = c
            self.reachability.retain({m.id for m in c.members})

    # ---- reports of silent nodes (as the proxy's) ----

    def _called(self, rpc: int, node: str) -> None:
        if not self.sim.config.liveness:
            return  # only in liveness mode, for now: see the module docstring
        self.calls[rpc] = (node, self.reachability.sent(node, self.world.now))
        self._wake_for_reports()

    def _wake_for_reports(self) -> None:
        at = self.reachability.next_due(timing.PROXY_SILENCE, timing.PROXY_REPORT_EVERY)
        if at is not None and (self._report_wake is None or at < self._report_wake):
            self._report_wake = at
            # Just past `at`: `due` names a node only once it has been silent for longer than the bound.
            self.timer(max(0.0, at - self.world.now) + REPORT_LATER, self._report_due, at)

    def _report_due(self, at: float) -> None:
        if self._report_wake != at:
            return  # superseded by an earlier wake
        self._report_wake = None
        self._act_on_silence()

    def _act_on_silence(self) -> None:
        """Probe the nodes silent for too long, report those whose probe went unanswered, and
        wake again when the next probe or report may fall due."""
        topo = self.topology
        if topo is not None:
            for node in self.reachability.to_probe(self.world.now, timing.PROXY_SILENCE):
                rpc = self._next_id()
                self.calls[rpc] = (node, self.reachability.probe_sent(node, self.world.now))
                target = self.sim.nodes[node]
                self.sim.net.send(self, target, "probe", target.on_probe, self, self.incarnation, rpc)
                self.timer(timing.PROXY_PROBE_TIMEOUT, self._probe_timeout, rpc)
        for silent in self.reachability.due(self.world.now, timing.PROXY_SILENCE, timing.PROXY_REPORT_EVERY):
            if topo is None:
                break
            coord = self.sim.coordinators[self.sim.coordinator_ids[self.coord % len(self.sim.coordinator_ids)]]
            self.sim.net.send(self, coord, "coord-req", coord.on_request, self, self.incarnation, self._next_id(),
                              CoordRequest("report", self.sim.chain, silent.address, epoch=topo.epoch,
                                           reporter=self.id, unreachable_for=silent.silent_for))
        self._wake_for_reports()

    def on_probe_reply(self, rpc: int) -> None:
        call = self.calls.pop(rpc, None)
        if call is not None:
            self.reachability.answered(*call)
            self._wake_for_reports()

    def _probe_timeout(self, rpc: int) -> None:
        call = self.calls.pop(rpc, None)
        if call is not None:
            self.reachability.failed(*call)
            self._act_on_silence()

    # ---- operations ----

    def _next_op(self) -> None:
        if self.world.now >= self.sim.ops_until:
            return
        rng = self.world.rng
        key = f"k{rng.randrange(self.sim.config.keys)}"
        roll = rng.random()
        retry = Retry(self.world.now + REQUEST_TIMEOUT, self.backoff, rng)
        rec = self.sim.recorder
        multikey = self.sim.config.multikey
        if roll < multikey:
            self.op = self._range_op(retry) if roll < multikey / 2 else self._txn_op(retry)
            self._attempt(self.op)
            return
        roll = (roll - multikey) / (1 - multikey)
        if roll < 0.45:
            self.op = _Op("get", key, None, rec.invoke(self.id, "get", key, at=self.world.now), retry)
        else:
            self._writes += 1
            rid = f"{self.id}-{self._writes}"
            if roll < 0.55:
                op = _Op("delete", key, None, rec.invoke(self.id, "delete", key, at=self.world.now), retry, rid)
            else:
                value = f"{self.id}.{self._writes}"
                kind = "cas" if roll >= 0.85 else "put"
                op = _Op(kind, key, value, rec.invoke(self.id, "put", key, value, at=self.world.now), retry, rid)
                if kind == "cas":
                    op.expected = self.versions.get(key, 0)
            self.op = op
        self._attempt(self.op)

    def _range_op(self, retry: Retry) -> _Op:
        rng = self.world.rng
        keys = self.sim.config.keys
        first = rng.randrange(keys)
        start = f"k{first}" if rng.random() < 0.6 else "k"
        end = f"k{rng.randrange(first + 1, keys + 1)}" if rng.random() < 0.5 else None
        limit = rng.choice((None, None, 1, 2))
        keys_only = rng.random() < 0.2
        call = self.sim.recorder.invoke(self.id, "range", start, at=self.world.now, range_end=end, limit=limit,
                                        keys_only=keys_only)
        r = RangeRead(start.encode(), (end or "").encode(), limit or 0, keys_only, Consistency.STRONG)
        return _Op("range", start, None, call, retry, range=r)

    def _txn_op(self, retry: Retry) -> _Op:
        rng = self.world.rng
        a, b = rng.sample(range(self.sim.config.keys), 2)
        first, second = f"k{a}", f"k{b}"
        self._writes += 1
        rid = f"{self.id}-{self._writes}"
        seen = self.values.get(first)
        if rng.random() < 0.3:
            compare = history.Compare(first, exists=seen is not None)
            node_compare = Compare(first.encode(), CompareResult.EQUAL, CompareTarget.EXISTS, exists=seen is not None)
        else:
            compare = history.Compare(first, value=seen)
            node_compare = (Compare(first.encode(), CompareResult.EQUAL, CompareTarget.EXISTS, exists=False)
                            if seen is None else
                            Compare(first.encode(), CompareResult.EQUAL, CompareTarget.VALUE, value=seen.encode()))
        second_write = (history.TxnOp("delete", second) if rng.random() < 0.25
                        else history.TxnOp("put", second, f"{self.id}.{self._writes}b"))
        success = (history.TxnOp("get", second), history.TxnOp("put", first, f"{self.id}.{self._writes}a"), second_write)
        failure = (history.TxnOp("get", first), history.TxnOp("get", second))
        call = self.sim.recorder.invoke(self.id, "txn", "", at=self.world.now, compare=(compare,), success=success,
                                        failure=failure)
        kinds = {"put": TxnOpKind.PUT, "delete": TxnOpKind.DELETE, "get": TxnOpKind.GET}

        def node_ops(ops: tuple[history.TxnOp, ...]) -> tuple[TxnOp, ...]:
            return tuple(TxnOp(kinds[o.op], o.key.encode(), (o.value or "").encode()) for o in ops)

        txn = Txn((node_compare,), node_ops(success), node_ops(failure))
        return _Op("txn", "", None, call, retry, rid, txn=txn, branches=(success, failure))

    def _attempt(self, op: _Op) -> None:
        topo = self.topology
        active = [m for m in topo.members if m.state is RegistryState.ACTIVE] if topo is not None else []
        if not active:
            self._failed(op, "no topology", False)
            return
        assert topo is not None
        rpc = self._next_id()
        if op.reads:
            member = self.balancer.pick([Member(m.id, m.address) for m in active], frozenset(op.avoid))
            assert member is not None
            self.balancer.started(member)
            op.member = member
            node = self.sim.nodes[member.id]
            self.pending[rpc] = op
            self._called(rpc, node.id)
            if op.range is not None:
                self.sim.net.send(self, node, "range", node.on_range, self, self.incarnation, rpc, topo.epoch, op.range)
            else:
                self.sim.net.send(self, node, "read", node.on_read, self, self.incarnation, rpc, topo.epoch,
                                  op.key.encode(), Consistency.STRONG)
        elif op.txn is not None:
            node = self.sim.nodes[active[0].id]
            wop = WriteOp(op.request_id, b"", OpKind.TXN, txn=op.txn)
            self.pending[rpc] = op
            self._called(rpc, node.id)
            self.sim.net.send(self, node, "write", node.on_write, self, self.incarnation, rpc, topo.epoch, (wop,))
        else:
            node = self.sim.nodes[active[0].id]
            value = op.value.encode() if op.value is not None else b""
            kind = OpKind.DELETE if op.kind == "delete" else OpKind.PUT
            wop = WriteOp(op.request_id, op.key.encode(), kind, value, if_version=op.expected)
            self.pending[rpc] = op
            self._called(rpc, node.id)
            self.sim.net.send(self, node, "write", node.on_write, self, self.incarnation, rpc, topo.epoch, (wop,))
        self.timer(ATTEMPT_TIMEOUT, self._attempt_timeout, rpc)

    def _attempt_timeout(self, rpc: int) -> None:
        call = self.calls.pop(rpc, None)
        if call is not None:
            self.reachability.failed(*call)
        op = self.pending.pop(rpc, None)
        if op is None:
            return
        if op.member is not None:
            self.balancer.finished(op.member)
            op.avoid.add(op.member.id)
            op.member = None
        self._failed(op, "timeout", not op.reads)

    def on_kv_reply(self, rpc: int, node: str, reply: WriteReply | ReadReply | RangeReply) -> None:
        call = self.calls.pop(rpc, None)
        if call is not None:
            self.reachability.answered(*call)
        op = self.pending.pop(rpc, None)
        if op is None:
            return  # a late or duplicated answer to an attempt already given up
        op.served_by = node
        if isinstance(reply, RangeReply):
            if op.member is not None:
                self.balancer.finished(op.member)
                op.member = None
            if not reply.error.ok:
                op.avoid.add(node)
                self._failed(op, reply.error.code.name, False)
                return
            keys_only = op.range is not None and op.range.keys_only
            items = []
            for item in reply.items:
                if not keys_only:
                    self.sim.inv.read_served(self.id, item.key, item.value, item.version)
                    self.values[item.key.decode()] = item.value.decode()
                items.append((item.key.decode(), None if keys_only else item.value.decode()))
            self._done(op, "ok", items=tuple(items), version=reply.snapshot)
            return
        if isinstance(reply, ReadReply):
            if op.member is not None:
                self.balancer.finished(op.member)
                op.member = None
            code = reply.error.code
            if code == Code.OK or code == Code.NOT_FOUND:
                value = reply.value if code == Code.OK else None
                self.sim.inv.read_served(self.id, op.key.encode(), value, reply.version)
                self.versions[op.key] = reply.version if value is not None else 0
                self.values[op.key] = None if value is None else value.decode()
                self._done(op, "ok", None if value is None else value.decode())
                return
            op.avoid.add(node)
            self._failed(op, code.name, False)
            return
        if not reply.error.ok:
            self._failed(op, reply.error.code.name, False)
            return
        result = reply.results[0]
        code = result.error.code
        if classify(code) is not Disposition.FINAL:
            self._failed(op, code.name, write_may_have_applied(code))
            return
        if code == Code.OK and op.txn is not None:
            self.sim.inv.txn_acked(self.id, op.request_id, result.version, result.succeeded)
            self.sim.acked_at.append(self.world.now)
            branch = op.branches[0] if result.succeeded else op.branches[1]
            results = tuple(r.value.decode() if o.op == "get" and r.found else None
                            for o, r in zip(branch, result.results, strict=True))
            for o, value in zip(branch, results, strict=True):
                if o.op != "get":
                    value = o.value
                self.values[o.key] = value
            self._done(op, "ok", succeeded=result.succeeded, results=results, version=result.version)
        elif code == Code.OK:
            kind = EntryKind.DELETE if op.kind == "delete" else EntryKind.PUT
            self.sim.inv.write_acked(self.id, op.request_id, op.key.encode(), result.version, kind, op.expected)
            self.sim.acked_at.append(self.world.now)
            self.versions[op.key] = 0 if op.kind == "delete" else result.version
            self.values[op.key] = op.value
            self._done(op, "ok")
        else:  # PRECONDITION_FAILED: certainly no effect
            if code == Code.PRECONDITION_FAILED:
                self.versions[op.key] = result.current_version
            self._done(op, "fail")

    def _failed(self, op: _Op, reason: str, maybe_applied: bool) -> None:
        delay = op.retry.failed(self.world.now, reason, maybe_applied=maybe_applied)
        if delay is None:
            self._done(op, "unknown" if not op.reads and op.retry.outcome_unknown else "fail")
            return
        self._refresh()
        self.timer(delay, self._attempt, op)

    def _done(self, op: _Op, status: str, output: str | None = None, **outcome: object) -> None:
        rec = self.sim.recorder
        self.world.note("done", self.id, op.kind, op.key, op.value, status, output, op.served_by)
        if status == "ok":
            rec.ok(op.call, at=self.world.now, output=output, **outcome)
        elif status == "fail":
            rec.fail(op.call, at=self.world.now)
        else:
            rec.unknown(op.call)
        self.op = None
        self.timer(self.world.rng.uniform(0, THINK), self._next_op)
