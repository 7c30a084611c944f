"""A hand-wired chain of pure cores for scenario and property tests.

Each node is a ChainCore over a MemoryVersionStore, driven by the node driver (`keychain.node.driver`)
one Ready at a time, as a command says. Messages wait in per-link FIFO queues until a
command delivers them; "durable" means applied to the store (a crash loses the Ready in flight but
not the store). Every action returns trace lines, which the scenario files print.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from keychain.node.core import ChainCore, CoreOptions, Outbound, TransferStart, VersionQuery
from keychain.node.driver import NodeDriver
from keychain.node.messages import (
    Ack,
    Batch,
    ChainConfig,
    Code,
    Consistency,
    Entry,
    EntryKind,
    Error,
    Hello,
    Member,
    MemberState,
    RangeRead,
    RangeReply,
    ReadReply,
    TransferChunk,
    VersionQueryReply,
    Welcome,
    WriteOp,
    WriteReply,
)
from keychain.node.versions import (
    AppendEntries,
    CollectGarbage,
    Commit,
    CompactHistory,
    ForgetOutcomes,
    InstallKeys,
    MemoryVersionStore,
    Record,
    ResetLog,
    SaveConfig,
    TrimLog,
    Truncate,
)
from keychain.node.watch_history import DEFAULT_MAX_CHANGES, WatchHistory


def show_bytes(b: bytes) -> str:
    return b.decode("utf-8", "backslashreplace")


def show_entry(e: Entry) -> str:
    rid = f"@{e.request_id}" if e.request_id else ""
    if e.kind == EntryKind.PUT:
        return f"{e.seq}:put {show_bytes(e.key)}={show_bytes(e.value)}{rid}"
    if e.kind == EntryKind.DELETE:
        return f"{e.seq}:del {show_bytes(e.key)}{rid}"
    if e.kind == EntryKind.TXN:
        writes = " ".join(f"del {show_bytes(w.key)}" if w.tombstone else f"{show_bytes(w.key)}={show_bytes(w.value)}"
                          for w in e.writes)
        return f"{e.seq}:txn {'success' if e.succeeded else 'failure'} {{{writes}}}{rid}"
    return f"{e.seq}:noop {show_bytes(e.key)} cur={e.current_version}{rid}"


def show_entries(entries: tuple[Entry, ...] | list[Entry]) -> str:
    if len(entries) > 6:
        return f"{show_entry(entries[0])} .. {show_entry(entries[-1])} ({len(entries)} entries)"
    return " ".join(show_entry(e) for e in entries)


def show_record(r: Record) -> str:
    match r:
        case AppendEntries(entries):
            return f"append {entries[0].seq}-{entries[-1].seq}" if len(entries) > 1 else f"append {entries[0].seq}"
        case Commit(through):
            return f"commit {through}"
        case Truncate(after):
            return f"truncate after {after}"
        case TrimLog(through):
            return f"trim log through {through}"
        case ForgetOutcomes(through):
            return f"forget outcomes through {through}"
        case CompactHistory(through):
            return f"compact history through {through}"
        case InstallKeys(keys, outcomes):
            return f"install {len(keys)} keys {len(outcomes)} outcomes"
        case ResetLog(through):
            return f"reset log at {through}"
        case SaveConfig(config):
            return f"save config epoch {config.epoch}"
        case CollectGarbage(through):
            return f"collect deletes through {through}"
    raise AssertionError(r)


def show_body(body: object) -> str:
    match body:
        case Hello(epoch, _, first_seq):
            return f"hello e{epoch} first={first_seq}"
        case Welcome(error, last_seq, committed_seq, needs_transfer, epoch):
            if not error.ok:
                return f"welcome e{epoch} refused {error.code.name} (epoch {error.epoch}): {error.message}"
            return (f"welcome e{epoch} last={last_seq} committed={committed_seq}"
                    + (" needs-transfer" if needs_transfer else ""))
        case Batch(epoch, entries, committed_seq):
            return f"batch e{epoch} [{show_entries(entries)}] committed={committed_seq}"
        case Ack(epoch, committed_seq):
            return f"ack e{epoch} {committed_seq}"
    raise AssertionError(body)


def show_reply(reply: WriteReply | ReadReply | RangeReply | None) -> str:
    if reply is None:
        return "pending"
    if not reply.error.ok:
        compacted = f" compact_version={reply.compact_version}" if isinstance(reply, RangeReply) and \
            reply.error.code == Code.COMPACTED else ""
        return f"{reply.error.code.name} (epoch {reply.error.epoch}): {reply.error.message}{compacted}"
    if isinstance(reply, ReadReply):
        return f"ok v{reply.version} {show_bytes(reply.value)}"
    if isinstance(reply, RangeReply):
        items = " ".join(f"{show_bytes(i.key)}@{i.version}={show_bytes(i.value)}" for i in reply.items)
        return f"snapshot={reply.snapshot} [{items}]" + (" more" if reply.more else "")
    parts = []
    for r in reply.results:
        if r.error.ok and (r.succeeded or r.results):
            shown = " ".join(f"{show_bytes(x.value)}@{x.version}" if x.found else f"-@{x.version}" for x in r.results)
            parts.append(f"ok v{r.version} {'success' if r.succeeded else 'failure'} [{shown}]")
        elif r.error.ok:
            parts.append(f"ok v{r.version}")
        else:
            parts.append(f"{r.error.code.name}" + (f" cur={r.current_version}" if r.current_version else "")
                         + (f": {r.error.message}" if r.error.code.name not in ("PRECONDITION_FAILED",) else ""))
    return ", ".join(parts)


@dataclass
class Envelope:
    frm: str
    to: str
    kind: str  # link | vquery | vreply | transfer
    body: object


class NodeShell:
    """One node's `Storage` and `Transport` for the node driver: records go to the store in memory
    (a sync changes nothing there), outputs into the chain's queues, and each step's trace lines are
    gathered in `lines`."""

    def __init__(self, chain: Chain, node_id: str, store: MemoryVersionStore) -> None:
        self.chain = chain
        self.id = node_id
        self.store = store
        self.lines: list[str] = []

    def apply(self, records: list[Record]) -> None:
        observer = self.chain.commit_observer
        for record in records:
            if isinstance(record, Commit) and observer is not None:
                st = self.store.state()
                for seq in range(max(st.committed_seq, st.log_start) + 1, record.through_seq + 1):
                    observer(self.id, self.store.entries(seq, seq)[0])
            self.store.apply([record])
        self.lines.append(f"{self.id} persist: " + ", ".join(show_record(r) for r in records))

    def sync(self) -> None:
        self.store.sync()

    def send_link(self, message: Outbound) -> None:
        self.chain._queue(Envelope(self.id, message.to, "link", message.body))

    def send_version_query(self, query: VersionQuery) -> None:
        self.chain._queue(Envelope(self.id, query.to, "vquery", query))

    def start_transfer(self, start: TransferStart) -> None:
        self.chain._queue(Envelope(self.id, start.from_id, "transfer-start", start))

    def release_reply(self, ticket: int, reply: WriteReply | ReadReply | RangeReply) -> None:
        self.chain.replies[ticket] = reply
        self.lines.append(f"{self.id} reply t{ticket}: {show_reply(reply)}")

    def report_caught_up(self, through: int, epoch: int) -> None:
        self.chain.caught_up[self.id] = through
        self.lines.append(f"{self.id} caught up through {through}")


@dataclass
class Node:
    id: str
    store: MemoryVersionStore
    driver: NodeDriver | None

    @property
    def core(self) -> ChainCore | None:
        return self.driver.core if self.driver is not None else None


@dataclass
class Chain:
    options: CoreOptions = field(default_factory=CoreOptions)
    now: float = 0
    nodes: dict[str, Node] = field(default_factory=dict)
    queues: dict[tuple[str, str], deque[Envelope]] = field(default_factory=dict)
    replies: dict[int, WriteReply | ReadReply | RangeReply] = field(default_factory=dict)
    next_ticket: int = 1
    caught_up: dict[str, int] = field(default_factory=dict)
    commit_observer: Callable[[str, Entry], None] | None = None  # sees every entry a node commits
    watch_changes: int = DEFAULT_MAX_CHANGES  # each node's watch history bound

    # ---- membership ----

    def add(self, node_id: str) -> None:
        store = MemoryVersionStore()
        self.nodes[node_id] = Node(node_id, store, self._driver(node_id, store))

    def _driver(self, node_id: str, store: MemoryVersionStore) -> NodeDriver:
        shell = NodeShell(self, node_id, store)
        core = ChainCore(node_id, store, self.options)
        return NodeDriver(core, shell, shell, lambda: self.now, WatchHistory.rebuilt(core, self.watch_changes))

    def driver(self, node_id: str) -> NodeDriver:
        n = self.nodes[node_id]
        if n.driver is None:
            raise AssertionError(f"{node_id} is down")
        return n.driver

    def core(self, node_id: str) -> ChainCore:
        return self.driver(node_id).core

    def up(self, node_id: str) -> bool:
        return node_id in self.nodes and self.nodes[node_id].core is not None

    def configure(self, config: ChainConfig, to: list[str], lease_until: float | None) -> list[str]:
        out = []
        for nid in to:
            if not self.up(nid):
                continue
            err = self.core(nid).configure(config, lease_until)
            out.append(f"{nid}: {'ok' if err.ok else err.code.name + ': ' + err.message}")
        return out

    def crash(self, node_id: str) -> list[str]:
        n = self.nodes[node_id]
        n.driver = None
        for key in list(self.queues):
            if node_id in key:
                for env in self.queues[key]:
                    if env.kind in ("vquery", "transfer-start") and env.to == node_id:
                        self._call_failed(env)
                self.queues[key].clear()
        out = [f"{node_id} crashed"]
        for other in self.nodes.values():
            if other.core is not None:
                other.core.link_lost(node_id)
        return out

    def restart(self, node_id: str) -> list[str]:
        n = self.nodes[node_id]
        n.driver = self._driver(node_id, n.store)
        assert n.core is not None
        return [f"{node_id} restarted: last={n.core.last_seq} committed={n.core.committed_seq} "
                f"epoch={n.core.epoch} role={n.core.role.value}"]

    # ---- clients ----

    def write(self, node_id: str, ops: list[WriteOp], epoch: int | None = None) -> tuple[int, WriteReply | None]:
        driver = self.driver(node_id)
        ticket = self.next_ticket
        self.next_ticket += 1
        reply = driver.write(ticket, driver.core.epoch if epoch is None else epoch, ops)
        if reply is not None:
            self.replies[ticket] = reply
        return ticket, reply

    def read(self, node_id: str, key: bytes, consistency: Consistency = Consistency.STRONG,
             epoch: int | None = None) -> tuple[int, ReadReply | None]:
        driver = self.driver(node_id)
        ticket = self.next_ticket
        self.next_ticket += 1
        reply = driver.read(ticket, driver.core.epoch if epoch is None else epoch, key, consistency)
        if reply is not None:
            self.replies[ticket] = reply
        return ticket, reply

    def range(self, node_id: str, r: RangeRead, epoch: int | None = None) -> tuple[int, RangeReply | None]:
        driver = self.driver(node_id)
        ticket = self.next_ticket
        self.next_ticket += 1
        reply = driver.range(ticket, driver.core.epoch if epoch is None else epoch, r)
        if reply is not None:
            self.replies[ticket] = reply
        return ticket, reply

    # ---- the node driver ----

    def process(self, node_id: str) -> list[str]:
        """One Ready of one node, through the node driver: persist, queue its messages, release its
        replies, advance. Returns what it did as trace lines."""
        driver = self.driver(node_id)
        shell: NodeShell = driver.storage  # type: ignore[assignment]
        shell.lines = []
        driver.step_now()
        return shell.lines

    def _call_failed(self, env: Envelope) -> None:
        """What the shell does when a call to a node fails: every query gets an (error) answer."""
        if not self.up(env.frm):
            return
        if env.kind == "vquery":
            q: VersionQuery = env.body  # type: ignore[assignment]
            self.core(env.frm).on_version_reply(
                q.query_id, VersionQueryReply(Error(Code.UNAVAILABLE, f"{env.to} is unreachable")))
        elif env.kind == "transfer-start":
            self.core(env.frm).transfer_failed(env.to)

    def _queue(self, env: Envelope) -> None:
        if not self.up(env.frm):
            return
        if not self.up(env.to):
            self._call_failed(env)
            if env.kind == "link":
                self.core(env.frm).link_lost(env.to)
            return
        self.queues.setdefault((env.frm, env.to), deque()).append(env)

    def pending(self, frm: str | None = None, to: str | None = None) -> list[tuple[str, str]]:
        return [k for k, q in self.queues.items() if q and (frm in (None, k[0])) and (to in (None, k[1]))]

    def deliver_one(self, frm: str, to: str) -> list[str]:
        env = self.queues[(frm, to)].popleft()
        out = [f"{frm} -> {to}: {self._describe(env)}"]
        core = self.core(to)
        match env.kind:
            case "link":
                match env.body:
                    case Hello() as h:
                        core.on_hello(frm, h)
                    case Welcome() as w:
                        core.on_welcome(frm, w)
                    case Batch() as b:
                        core.on_batch(frm, b)
                    case Ack() as a:
                        core.on_ack(frm, a)
            case "vquery":
                q: VersionQuery = env.body  # type: ignore[assignment]
                reply = self.driver(to).version_query(q.epoch, list(q.keys))
                self._queue(Envelope(to, frm, "vreply", (q.query_id, reply)))
            case "vreply":
                qid, reply = env.body  # type: ignore[misc]
                core.on_version_reply(qid, reply)
            case "transfer-start":
                t: TransferStart = env.body  # type: ignore[assignment]
                err = core.begin_transfer(frm, t.epoch)
                if not err.ok:
                    out.append(f"{to}: transfer refused {err.code.name}: {err.message}")
                    self._queue(Envelope(to, frm, "transfer-failed", None))
                else:
                    while True:
                        chunk = core.transfer_chunk(frm)
                        self._queue(Envelope(to, frm, "transfer", chunk))
                        if chunk.last:
                            break
            case "transfer":
                core.on_transfer_chunk(frm, env.body)  # type: ignore[arg-type]
            case "transfer-failed":
                core.transfer_failed(frm)
        return out

    def _describe(self, env: Envelope) -> str:
        if env.kind == "link":
            return show_body(env.body)
        if env.kind == "vquery":
            q: VersionQuery = env.body  # type: ignore[assignment]
            return f"version query e{q.epoch} [{' '.join(show_bytes(k) for k in q.keys)}]"
        if env.kind == "vreply":
            _, r = env.body  # type: ignore[misc]
            assert isinstance(r, VersionQueryReply)
            if not r.error.ok:
                return f"version reply {r.error.code.name}: {r.error.message}"
            if not r.versions:  # a range's question: the tail's commit point
                return f"version reply committed={r.committed_seq}"
            return f"version reply [{' '.join(str(v) for v in r.versions)}]"
        if env.kind == "transfer-start":
            return "transfer request"
        if env.kind == "transfer":
            c: TransferChunk = env.body  # type: ignore[assignment]
            keys = " ".join(f"{show_bytes(k.key)}@{k.version}{'(del)' if k.tombstone else ''}" for k in c.keys)
            tail = f" through={c.through_seq} last" if c.last else ""
            return f"transfer chunk [{keys}] outcomes={len(c.outcomes)}{tail}"
        return env.kind

    def stabilize(self, only: list[str] | None = None, limit: int = 10_000) -> list[str]:
        """Process and deliver until nothing moves (among `only`, if given)."""
        out: list[str] = []
        for nid in sorted(self.nodes):  # link backoffs run out: broken links are retried once
            if self.up(nid) and (only is None or nid in only):
                self.core(nid).retry_link()
        for _ in range(limit):
            moved = False
            for nid in sorted(self.nodes):
                if self.up(nid) and (only is None or nid in only):
                    lines = self.process(nid)
                    out.extend(lines)
                    moved = moved or bool(lines)
            for frm, to in sorted(self.pending()):
                if only is not None and (frm not in only or to not in only):
                    continue
                while self.queues[(frm, to)]:
                    out.extend(self.deliver_one(frm, to))
                    moved = True
            if not moved and not any(self.up(n) and (only is None or n in only) and self.core(n).has_ready()
                                     for n in self.nodes):
                return out
        raise AssertionError("the chain did not settle")

    # ---- inspection ----

    def held(self, node_id: str) -> dict[int, Entry]:
        """Every log entry the node holds: its store's retained log and its in-memory window."""
        n = self.nodes[node_id]
        held = dict(n.store._log)
        if n.core is not None:  # the core's view: a truncation may still wait in its next Ready
            held = {s: e for s, e in held.items() if s <= n.core.last_seq}
            held.update(n.core.uncommitted.held())
        return held

    def dump(self, node_id: str) -> list[str]:
        n = self.nodes[node_id]
        st = n.store.state()
        out = [f"{node_id}: last={st.last_seq} committed={st.committed_seq} log_start={st.log_start} "
               f"epoch={st.config.epoch if st.config else 0}"]
        for kv in n.store.scan_clean(None, 1 << 30):
            val = "(deleted)" if kv.tombstone else show_bytes(kv.value)
            out.append(f"  {show_bytes(kv.key)}: clean v{kv.version} {val}")
        for key, seqs in sorted(n.store.dirty_versions().items()):
            out.append(f"  {show_bytes(key)}: dirty {' '.join(f'v{s}' for s in seqs)}")
        return out


def config_of(chain: str, epoch: int, active: list[str], syncing: list[str] | None = None) -> ChainConfig:
    members = [Member(m, f"{m}:7000") for m in active]
    members += [Member(m, f"{m}:7000", MemberState.SYNCING) for m in syncing or []]
    return ChainConfig(chain, epoch, tuple(members))
