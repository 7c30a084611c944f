"""Random writes, reads, message schedules, crashes and reconfigurations over a chain of pure cores.

Hypothesis drives a chain of three nodes (a fourth can join) through a random schedule: client
writes at the head (plain, compare-and-set, create-only, deletes, retries of earlier request ids),
strong and eventual reads anywhere, single message deliveries in random order, crashes and
restarts, and the coordinator's moves (drop a dead or lease-expired member, add a node as syncing,
promote a caught-up one), with each new configuration reaching the nodes at random times. After
every step and at the end it checks:

- prefix: along the current chain, each node's entries agree with its predecessor's and it holds
  no seq its predecessor lacks;
- committed agreement: whatever any node commits at a seq is the same entry everywhere;
- no acknowledged write lost: every write acknowledged OK is committed with its key and value;
- exactly once: a request id is committed at most once, and every reply for it says the same;
- reads return committed values and are never stale: a read returns a committed version of its key,
  at least as new as every write acknowledged before the read began and every read that ended
  before it began;
- after healing, every member holds the same clean data, equal to the last committed write per key.

Coordinator rule modelled here (docs/architecture.md, "Leases and removals"): a live node is removed only after its lease expired.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from chain_harness import Chain, config_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keychain.node.core import CoreOptions
from keychain.node.messages import Code, Consistency, Entry, EntryKind, OpKind, ReadReply, WriteOp, WriteReply

NODES = ["n1", "n2", "n3", "n4"]
KEYS = [b"a", b"b", b"c"]


@dataclass
class Issued:
    kind: str  # write | read
    key: bytes
    start: int
    op: WriteOp | None = None


@dataclass
class World:
    chain: Chain
    epoch: int = 1
    active: list[str] = field(default_factory=list)
    syncing: list[str] = field(default_factory=list)
    step: int = 0
    issued: dict[int, Issued] = field(default_factory=dict)
    seen_replies: set[int] = field(default_factory=set)
    committed: dict[int, Entry] = field(default_factory=dict)  # seq -> the entry committed there
    seen_commit: dict[str, int] = field(default_factory=dict)
    acked: list[tuple[int, bytes, int, Entry | None, int]] = field(default_factory=list)
    reads: list[tuple[bytes, int, int, int]] = field(default_factory=list)  # key, start, end, version
    outcome_by_id: dict[str, tuple[int, int]] = field(default_factory=dict)  # rid -> (code, version)
    ops: list[WriteOp] = field(default_factory=list)
    values: int = 0

    def config(self):
        return config_of("c", self.epoch, self.active, self.syncing)

    def members(self) -> list[str]:
        return self.active + self.syncing


def _reconfigure(w: World, data: st.DataObject) -> None:
    w.epoch += 1
    cfg = w.config()
    for nid in NODES:  # the new configuration reaches a random subset now, the rest on heartbeats
        if w.chain.up(nid) and data.draw(st.booleans(), label=f"tell {nid}"):
            w.chain.core(nid).configure(cfg, None)


def _heartbeat(w: World, nid: str) -> None:
    if w.chain.up(nid) and nid in w.members():
        w.chain.core(nid).configure(w.config(), None)


def _committed(w: World, nid: str, e: Entry) -> None:
    prev = w.committed.setdefault(e.seq, e)
    assert prev == e, f"{nid} committed {e} at seq {e.seq}, but {prev} was committed there"


def _observe(w: World) -> None:
    """Collect what nodes committed (a tail commits what it persisted, before its Commit record is
    written) and check the replies released since the last step."""
    for nid in NODES:
        if not w.chain.up(nid):
            continue
        core = w.chain.core(nid)
        held = w.chain.held(nid)
        for seq in range(w.seen_commit.get(nid, 0) + 1, core.committed_seq + 1):
            if seq in held:  # not when a state transfer jumped over it
                _committed(w, nid, held[seq])
        w.seen_commit[nid] = core.committed_seq
    for ticket, reply in w.chain.replies.items():
        if ticket in w.seen_replies:
            continue
        w.seen_replies.add(ticket)
        issued = w.issued[ticket]
        if isinstance(reply, WriteReply):
            _check_write(w, issued, reply)
        else:
            _check_read(w, issued, reply)


def _check_write(w: World, issued: Issued, reply: WriteReply) -> None:
    if not reply.error.ok:
        return
    (result,) = reply.results
    op = issued.op
    assert op is not None
    if op.request_id and result.error.code in (Code.OK, Code.PRECONDITION_FAILED):
        got = (int(result.error.code), result.version)
        first = w.outcome_by_id.setdefault(op.request_id, got)
        assert first == got, f"request {op.request_id} answered {got} after {first}"
    if result.error.ok:
        e = w.committed.get(result.version)
        assert e is not None, f"write acknowledged at v{result.version} before it committed"
        assert e.key == op.key and e.request_id == op.request_id, f"v{result.version} holds {e}, not {op}"
        w.acked.append((w.step, op.key, result.version, e, issued.start))


def _check_read(w: World, issued: Issued, reply: ReadReply) -> None:
    if reply.error.code not in (Code.OK, Code.NOT_FOUND):
        return
    v = reply.version
    if v:
        e = w.committed.get(v)
        assert e is not None, f"read of {issued.key!r} returned v{v}, which is not committed"
        assert e.key == issued.key, f"read of {issued.key!r} returned v{v} of {e.key!r}"
        if reply.error.ok:
            assert e.kind == EntryKind.PUT and e.value == reply.value, f"read returned {reply}, committed {e}"
        else:
            assert e.kind == EntryKind.DELETE, f"NOT_FOUND at v{v}, but {e} is committed there"
    if issued.kind == "eventual":
        return
    for end, key, version, _, _ in w.acked:
        if key == issued.key and end < issued.start:
            assert v >= version, f"stale read of {key!r}: v{v}, but v{version} was acknowledged before"
    for key, _, end, version in w.reads:
        if key == issued.key and end < issued.start:
            assert v >= version, f"read of {key!r} went back from v{version} to v{v}"
    w.reads.append((issued.key, issued.start, w.step, v))


def _check_prefix(w: World) -> None:
    chain = w.chain
    order = w.members()
    for pred, succ in itertools.pairwise(order):
        if not (chain.up(pred) and chain.up(succ)):
            continue
        p, s = chain.core(pred), chain.core(succ)
        if p.epoch != w.epoch or s.epoch != w.epoch or s.transfer_from is not None:
            continue
        assert s.last_seq <= p.last_seq, f"{succ} holds seq {s.last_seq} beyond its predecessor's {p.last_seq}"
        ph, sh = chain.held(pred), chain.held(succ)
        for seq, e in sh.items():
            if seq in ph:
                assert ph[seq] == e, f"{succ} holds {e} at {seq}, its predecessor {ph[seq]}"


def _write(w: World, data: st.DataObject) -> None:
    head = w.active[0]
    if not w.chain.up(head):
        return
    if w.ops and data.draw(st.integers(0, 4), label="retry?") == 0:
        op = data.draw(st.sampled_from(w.ops), label="retry")
    else:
        key = data.draw(st.sampled_from(KEYS), label="key")
        w.values += 1
        kind = data.draw(st.sampled_from(["put", "put", "delete", "cas", "create"]), label="kind")
        known = [v for _, k, v, _, _ in w.acked if k == key]
        if_version = None
        if kind == "cas":
            if_version = data.draw(st.sampled_from([0, *known[-2:]] if known else [0, 1]), label="if_version")
        op = WriteOp(
            request_id=f"r{w.values}",
            key=key,
            kind=OpKind.DELETE if kind == "delete" else OpKind.PUT,
            value=b"" if kind == "delete" else b"v%d" % w.values,
            if_version=if_version,
            if_absent=kind == "create",
        )
        w.ops.append(op)
    ticket, _ = w.chain.write(head, [op])
    w.issued[ticket] = Issued("write", op.key, w.step, op)


def _read(w: World, data: st.DataObject) -> None:
    nid = data.draw(st.sampled_from(w.members()), label="reader")
    if not w.chain.up(nid):
        return
    key = data.draw(st.sampled_from(KEYS), label="read key")
    consistency = data.draw(st.sampled_from([Consistency.STRONG, Consistency.STRONG, Consistency.EVENTUAL]))
    ticket, _ = w.chain.read(nid, key, consistency)
    if consistency == Consistency.STRONG:
        w.issued[ticket] = Issued("read", key, w.step)
    else:  # eventual reads may be stale: only check that they return committed data
        w.issued[ticket] = Issued("eventual", key, w.step)


def _deliver(w: World, data: st.DataObject) -> None:
    pending = sorted(w.chain.pending())
    if not pending:
        return
    frm, to = data.draw(st.sampled_from(pending), label="link")
    w.chain.deliver_one(frm, to)


def _process(w: World, data: st.DataObject) -> None:
    nid = data.draw(st.sampled_from(NODES), label="process")
    if w.chain.up(nid):
        w.chain.process(nid)


def _crash_or_restart(w: World, data: st.DataObject) -> None:
    nid = data.draw(st.sampled_from(NODES), label="crash/restart")
    if w.chain.up(nid):
        w.chain.crash(nid)
    else:
        w.chain.restart(nid)
        _heartbeat(w, nid)


def _membership(w: World, data: st.DataObject) -> None:
    move = data.draw(st.sampled_from(["remove", "add", "promote", "heartbeat"]), label="membership")
    chain = w.chain
    if move == "heartbeat":
        for nid in NODES:
            _heartbeat(w, nid)
        return
    if move == "remove" and len(w.active) > 1:
        nid = data.draw(st.sampled_from(w.members()), label="remove")
        if chain.up(nid):
            chain.core(nid).renew_lease(-math.inf)  # only a node whose lease certainly expired
        if nid in w.active:
            w.active.remove(nid)
        else:
            w.syncing.remove(nid)
        _reconfigure(w, data)
    elif move == "add":
        outside = [n for n in NODES if n not in w.members() and chain.up(n)]
        if outside:
            w.syncing.append(data.draw(st.sampled_from(outside), label="add"))
            _reconfigure(w, data)
    elif move == "promote" and w.syncing:
        nid = w.syncing[0]
        if chain.caught_up.get(nid) is not None and chain.up(nid) and chain.core(nid).epoch == w.epoch:
            w.syncing.remove(nid)
            w.active.append(nid)
            chain.caught_up.pop(nid)
            _reconfigure(w, data)


ACTIONS = [_write, _write, _read, _read, _deliver, _deliver, _deliver, _deliver, _process, _process, _process,
           _crash_or_restart, _membership]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_schedules_keep_the_chain_consistent(data: st.DataObject) -> None:
    options = CoreOptions(max_batch_entries=3, retain_entries=data.draw(st.sampled_from([2, 50]), label="retain"),
                          transfer_chunk_keys=2)
    chain = Chain(options=options)
    for nid in NODES:
        chain.add(nid)
    w = World(chain, active=["n1", "n2", "n3"])
    chain.commit_observer = lambda nid, e: _committed(w, nid, e)
    for nid in w.active:
        chain.core(nid).configure(w.config(), None)
    for w.step in range(1, data.draw(st.integers(10, 80), label="steps") + 1):
        action = data.draw(st.sampled_from(ACTIONS), label="action")
        action(w, data)
        _observe(w)
        _check_prefix(w)

    # Heal: everyone up, every member told the configuration, links retried, until it settles.
    for nid in NODES:
        if not chain.up(nid):
            chain.restart(nid)
        _heartbeat(w, nid)
    for _ in range(3):
        chain.stabilize()
        _observe(w)
    _check_prefix(w)
    tail = w.active[-1]
    final = {kv.key: kv for kv in chain.nodes[tail].store.scan_clean(None, 100)}
    latest: dict[bytes, Entry] = {}
    for seq in sorted(w.committed):
        e = w.committed[seq]
        if e.kind != EntryKind.NOOP:
            latest[e.key] = e
    assert {k: (kv.version, kv.tombstone, kv.value) for k, kv in final.items()} == {
        k: (e.seq, e.kind == EntryKind.DELETE, e.value) for k, e in latest.items()}
    for nid in w.active:
        clean = {kv.key: kv for kv in chain.nodes[nid].store.scan_clean(None, 100)}
        assert clean == final, f"{nid} holds {clean}, the tail {final}"
    for _, key, version, e, _ in w.acked:
        assert w.committed.get(version) == e, f"acknowledged write v{version} of {key!r} lost"
    ids = [e.request_id for e in w.committed.values() if e.request_id]
    assert len(ids) == len(set(ids)), "a request id was committed twice"
