"""Bugs the simulator found in the chain core, each pinned down directly on the core.

Every test drives `ChainCore`s over in-memory stores by hand (persist, then deliver), in the
smallest sequence that showed the bug in a simulated run. Each failed before its fix in
keychain/node/core.py; test_sim_regressions.py keeps the seeds that found them.
"""

from __future__ import annotations

from keychain.node.core import ChainCore, CoreOptions, Outbound, Role, TransferStart, VersionQuery
from keychain.node.driver import NodeDriver
from keychain.node.messages import (
    Batch,
    ChainConfig,
    Code,
    Consistency,
    Hello,
    Member,
    MemberState,
    OpKind,
    ReadReply,
    WriteOp,
    WriteReply,
)
from keychain.node.versions import MemoryVersionStore

ACTIVE, SYNCING = MemberState.ACTIVE, MemberState.SYNCING


def config(epoch: int, *members: tuple[str, MemberState]) -> ChainConfig:
    return ChainConfig("main", epoch, tuple(Member(m, f"{m}:1", state) for m, state in members))


class Node:
    """A core driven by the node driver over its store; what a step releases is kept here, and a
    test delivers the link messages by hand."""

    def __init__(self, node_id: str, options: CoreOptions | None = None, store: MemoryVersionStore | None = None):
        self.store = store or MemoryVersionStore()
        self.core = ChainCore(node_id, self.store, options)
        self.driver = NodeDriver(self.core, self.store, self, lambda: 0.0)
        self.ticket = 0
        self.sent: list[Outbound] = []
        self.queries: list[VersionQuery] = []
        self.transfers: list[TransferStart] = []
        self.replies: dict[int, WriteReply | ReadReply] = {}

    def send_link(self, message: Outbound) -> None:
        self.sent.append(message)

    def send_version_query(self, query: VersionQuery) -> None:
        self.queries.append(query)

    def start_transfer(self, start: TransferStart) -> None:
        self.transfers.append(start)

    def release_reply(self, ticket: int, reply: WriteReply | ReadReply) -> None:
        self.replies[ticket] = reply

    def report_caught_up(self, through: int, epoch: int) -> None:
        self.caught_up = through

    def step(self) -> list[Outbound]:
        """Persist and release one Ready; its messages."""
        self.sent = []
        self.driver.step_now()
        return self.sent

    def settle(self) -> list[Outbound]:
        out: list[Outbound] = []
        while self.core.has_ready():
            out += self.step()
        return out

    def put(self, key: str, value: str) -> None:
        self.ticket += 1
        self.core.client_write(self.ticket, self.core.epoch, [WriteOp(f"r{self.ticket}", key.encode(), OpKind.PUT,
                                                                    value.encode())], now=0.0)

    def read(self, key: str):
        self.ticket += 1
        return self.core.client_read(self.ticket, self.core.epoch, key.encode(), Consistency.STRONG, now=0.0)


def deliver(nodes: dict[str, Node], sender: str, messages: list[Outbound]) -> None:
    for m in messages:
        core = nodes[m.to].core
        handler = {"Hello": core.on_hello, "Welcome": core.on_welcome, "Batch": core.on_batch, "Ack": core.on_ack}
        handler[type(m.body).__name__](sender, m.body)


def exchange(nodes: dict[str, Node], rounds: int = 20) -> None:
    """Persist and deliver everything, in node order, until quiet."""
    for _ in range(rounds):
        moved = False
        for name, node in nodes.items():
            out = node.settle()
            moved = moved or bool(out)
            deliver(nodes, name, out)
        if not moved:
            return


def test_a_promoted_tail_serves_nothing_until_it_has_committed_what_its_predecessor_had():
    # a alone commits v1 and v2 (v2 after b caught up, before a hears of b's promotion).
    a, b = Node("a"), Node("b")
    nodes = {"a": a, "b": b}
    one = config(1, ("a", ACTIVE), ("b", SYNCING))
    a.core.configure(one)
    b.core.configure(one)
    a.put("k", "v1")
    exchange(nodes)
    assert b.core.last_seq == 1
    two = config(2, ("a", ACTIVE), ("b", ACTIVE))
    b.core.configure(two)
    a.put("k", "v2")
    a.settle()  # its batch to b is lost
    assert a.core.committed_seq == 2  # acknowledged to its client
    a.core.configure(two)
    deliver(nodes, "a", a.settle())  # Hello
    deliver(nodes, "b", b.settle())  # Welcome(last=1)
    deliver(nodes, "a", a.settle())  # the batch with seq 2, committed=2
    assert b.core.last_seq == 2 and b.core.committed_seq == 1  # held, not yet persisted
    # Before the fix b counted itself in sync here and, as tail, served its clean v1: a stale read.
    assert b.read("k").error.code == Code.UNAVAILABLE
    b.settle()
    reply = b.read("k")
    assert reply.error.ok and reply.value == b"v2"


def test_a_node_not_in_sync_does_not_let_its_successor_count_itself_in_sync():
    # Epoch 2: a (head, in sync), b (just promoted: not in sync), c (just promoted after b).
    a, b, c = Node("a"), Node("b"), Node("c")
    nodes = {"a": a, "b": b, "c": c}
    two = config(2, ("a", ACTIVE), ("b", ACTIVE), ("c", ACTIVE))
    for n in (a, b, c):
        n.core.configure(config(1, ("a", ACTIVE), ("b", SYNCING), ("c", SYNCING)))
    a.put("k", "v1")
    exchange(nodes)
    a.put("k", "v2")  # committed by a alone: b and c have not heard of it
    a.settle()
    b.core.configure(two)
    c.core.configure(two)
    deliver(nodes, "b", b.settle())  # b -> c Hello
    deliver(nodes, "c", c.settle())  # Welcome
    out = b.settle()
    batches = [m.body for m in out if isinstance(m.body, Batch)]
    assert batches and all(x.committed_seq > b.core.last_seq for x in batches)
    deliver(nodes, "b", out)
    c.settle()
    # Before the fix b vouched with its own (stale) commit point and c, the tail, served v1.
    assert not c.core.in_sync and c.read("k").error.code == Code.UNAVAILABLE
    a.core.configure(two)
    exchange(nodes)
    assert b.core.in_sync and c.core.in_sync
    reply = c.read("k")
    assert reply.error.ok and reply.value == b"v2"


def test_a_restarted_tail_levels_with_its_predecessor_before_it_serves():
    # b was promoted to tail in epoch 2 but never caught up; it crashes and restarts.
    a, b = Node("a"), Node("b")
    one = config(1, ("a", ACTIVE), ("b", SYNCING))
    a.core.configure(one)
    b.core.configure(one)
    a.put("k", "v1")
    exchange({"a": a, "b": b})
    two = config(2, ("a", ACTIVE), ("b", ACTIVE))
    b.core.configure(two)
    b.settle()
    a.put("k", "v2")
    a.settle()  # committed by a, still in epoch 1
    b = Node("b", store=b.store)  # restart: same store
    b.core.renew_lease(None)
    assert b.core.role is Role.TAIL
    # Before the fix a restarted active member counted itself in sync and served v1.
    assert not b.core.in_sync and b.read("k").error.code == Code.UNAVAILABLE
    a.core.configure(two)
    exchange({"a": a, "b": b})
    reply = b.read("k")
    assert reply.error.ok and reply.value == b"v2"


def test_a_node_that_installed_a_state_transfer_handshakes_its_successor_again():
    # a trims its log at once, so b (syncing after a) needs a state transfer; c syncs after b.
    opts = CoreOptions(retain_entries=0)
    a, b, c = Node("a", opts), Node("b", opts), Node("c", opts)
    nodes = {"a": a, "b": b, "c": c}
    a.core.configure(config(1, ("a", ACTIVE)))
    for v in ("v1", "v2", "v3"):
        a.put("k", v)
    a.settle()
    assert a.core.log_start == 3
    cfg = config(2, ("a", ACTIVE), ("b", SYNCING), ("c", SYNCING))
    for n in (a, b, c):
        n.core.configure(cfg)
    deliver(nodes, "b", b.settle())  # b -> c Hello
    deliver(nodes, "c", c.settle())  # Welcome(last=0): b streams to c from seq 1
    assert b.core.link.value == "streaming"
    deliver(nodes, "a", a.settle())  # a -> b Hello(first_seq=4)
    b.settle()  # b asks a for a transfer
    assert b.core.transfer_from == "a"
    assert a.core.begin_transfer("b", 2).ok
    while True:
        chunk = a.core.transfer_chunk("b")
        b.core.on_transfer_chunk("a", chunk)
        if chunk.last:
            break
    # Before the fix b went on streaming seqs 1..3 to c, which it no longer holds (StoreError).
    out = b.settle()
    hellos = [m.body for m in out if m.to == "c" and isinstance(m.body, Hello)]
    assert hellos and hellos[-1].first_seq == 4
    assert not any(isinstance(m.body, Batch) and m.body.entries for m in out if m.to == "c")
