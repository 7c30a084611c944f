"""Safety properties the simulator checks while a run goes on, from a global view no process has.

The simulation shells report what the cores do (a Raft member became leader, applied an entry;
a chain node committed a seq; a client was told its write succeeded) and `Invariants` checks it
against everything reported before. The first broken property raises `Violation`, which names it.

Properties:
- `raft-one-leader-per-term`: no two members lead in the same term.
- `raft-committed-entry-stable`: every member applies the same entry at a given index, and a
  snapshot never contradicts an entry known committed.
- `epoch-unique`: the registry never issues two different configurations under one epoch.
- `removed-node-unleased`: when a configuration is issued, no node it leaves out still holds a
  lease in an older epoch (the lease rule: a node is removed only once its lease has certainly
  lapsed, so it serves nothing the new configuration could contradict).
- `chain-committed-entry-stable`: every chain node that commits seq s commits the same write; a
  state transfer installs only committed versions.
- `chain-prefix`: in one epoch, each in-sync active node's log is a prefix of its predecessor's.
- `acked-write-committed`: a write acknowledged to a client is committed at the version it was
  told, as the write it sent; a compare-and-set acknowledged as applied replaced exactly the
  version it named (no other write to the key committed in between).
- `read-committed`: a strong read returns a committed version of the key, with its value.
- `acked-write-durable`: at the end of a run, the chain's tail holds every acknowledged write of a
  key or something newer (nothing, if the key's newest committed write is a delete the tail has
  garbage-collected).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from keychain.coordinator.log import Entry as RaftEntry
from keychain.coordinator.log import Snapshot
from keychain.node.messages import Entry, EntryKind, KeyVersion, entry_keys, entry_versions
from keychain.node.versions import StoreError, VersionStore


class Violation(Exception):
    """A safety property does not hold; `prop` names it."""

    def __init__(self, prop: str, detail: str) -> None:
        super().__init__(f"{prop}: {detail}")
        self.prop = prop
        self.detail = detail


def _same_write(a: Entry, b: Entry) -> bool:
    return (a.request_id, a.key, a.kind, a.value, a.current_version, a.writes, a.succeeded, a.results) == (
        b.request_id, b.key, b.kind, b.value, b.current_version, b.writes, b.succeeded, b.results)


def _version_of(e: Entry | None, key: bytes) -> KeyVersion | None:
    """The version committed entry `e` made of `key`, if it wrote the key."""
    return None if e is None else next((kv for kv in entry_versions(e) if kv.key == key), None)


class Invariants:
    def __init__(self) -> None:
        self.leaders: dict[int, str] = {}  # term -> leader
        self.raft_committed: dict[int, tuple[int, int, bytes]] = {}  # index -> (term, type, data)
        self.configs: dict[tuple[str, int], tuple[tuple[str, str], ...]] = {}  # (chain, epoch) -> members
        self.committed: dict[int, Entry] = {}  # chain seq -> the committed write
        self.key_seqs: dict[bytes, list[int]] = {}  # committed PUT/DELETE seqs per key, ascending
        self.acked: dict[bytes, int] = {}  # highest acknowledged version per key
        self.acks = 0
        self.reads = 0

    # ---- Raft ----

    def leader(self, term: int, member: str) -> None:
        other = self.leaders.setdefault(term, member)
        if other != member:
            raise Violation("raft-one-leader-per-term", f"{other} and {member} both lead term {term}")

    def raft_applied(self, member: str, e: RaftEntry) -> None:
        mine = (e.term, int(e.type), e.data)
        known = self.raft_committed.setdefault(e.index, mine)
        if known != mine:
            raise Violation("raft-committed-entry-stable",
                            f"{member} applied {mine[:2]} at index {e.index}, committed before as {known[:2]}")

    def raft_snapshot(self, member: str, snap: Snapshot) -> None:
        known = self.raft_committed.get(snap.index)
        if known is not None and known[0] != snap.term:
            raise Violation("raft-committed-entry-stable",
                            f"{member} installed a snapshot at {snap.index} of term {snap.term}; "
                            f"the committed entry there has term {known[0]}")

    def configuration(self, chain: str, epoch: int, members: Iterable[tuple[str, str]]) -> bool:
        """A coordinator applied this configuration; True if it is the first to (it is issued now)."""
        mine = tuple(members)
        known = self.configs.setdefault((chain, epoch), mine)
        if known is mine:
            return True
        if known != mine:
            raise Violation("epoch-unique", f"chain {chain} epoch {epoch} is both {known} and {mine}")
        return False

    def removed_unleased(self, chain: str, epoch: int, members: Iterable[str],
                         lease_holders: Iterable[tuple[str, int]]) -> None:
        """Configuration `epoch` of `chain` was just issued; `lease_holders` are the (node, epoch) of
        the nodes holding a valid lease now, by their own clocks."""
        kept = set(members)
        for node, node_epoch in lease_holders:
            if node not in kept and node_epoch < epoch:
                raise Violation("removed-node-unleased",
                                f"chain {chain} epoch {epoch} leaves out {node}, which still holds a lease "
                                f"in epoch {node_epoch}")

    # ---- chain ----

    def chain_committed(self, node: str, e: Entry) -> None:
        known = self.committed.get(e.seq)
        if known is None:
            self.committed[e.seq] = e
            for key in entry_keys(e):
                seqs = self.key_seqs.setdefault(key, [])
                if not seqs or seqs[-1] < e.seq:
                    seqs.append(e.seq)
                else:
                    bisect.insort(seqs, e.seq)
        elif not _same_write(known, e):
            raise Violation("chain-committed-entry-stable",
                            f"{node} committed seq {e.seq} as {_show(e)}; committed before as {_show(known)}")

    def installed(self, node: str, kv: KeyVersion) -> None:
        """A state transfer gave `node` this clean version: it must be a committed one."""
        e = self.committed.get(kv.version)
        made = _version_of(e, kv.key)
        ok = made is not None and made.tombstone == kv.tombstone and (kv.tombstone or made.value == kv.value)
        if not ok:
            raise Violation("chain-committed-entry-stable",
                            f"{node} installed version {kv.version} of {kv.key!r} by state transfer, "
                            f"but the committed write there is {_show(e) if e else 'none'}")

    def prefix(self, pred: str, pred_store: VersionStore, succ: str, succ_store: VersionStore) -> None:
        """`succ` follows `pred` in one epoch, both active and in sync: succ's log is a prefix of pred's."""
        ps, ss = pred_store.state(), succ_store.state()
        if ss.last_seq > ps.last_seq:
            raise Violation("chain-prefix", f"{succ} holds through seq {ss.last_seq}, beyond its predecessor "
                                            f"{pred} (through {ps.last_seq})")
        lo = max(ss.committed_seq, ss.log_start, ps.log_start) + 1
        if lo > ss.last_seq:
            return
        try:
            theirs = pred_store.entries(lo, ss.last_seq)
            mine = succ_store.entries(lo, ss.last_seq)
        except StoreError:
            return
        for a, b in zip(theirs, mine, strict=True):
            if not _same_write(a, b):
                raise Violation("chain-prefix", f"seq {a.seq}: {succ} holds {_show(b)}, its predecessor {pred} "
                                                f"holds {_show(a)}")

    # ---- clients ----

    def write_acked(self, client: str, request_id: str, key: bytes, version: int, kind: EntryKind,
                    expected: int | None) -> None:
        """`client` was told its write `request_id` applied as `version`; `expected` is the version a
        compare-and-set named (0 = absent), None for an unconditional write."""
        self.acks += 1
        e = self.committed.get(version)
        if e is None or e.request_id != request_id or e.key != key or e.kind != kind:
            raise Violation("acked-write-committed",
                            f"{client}'s write {request_id} to {key!r} was acknowledged as version {version}, "
                            f"but the committed write there is {_show(e) if e else 'none'}")
        if version > self.acked.get(key, 0):
            self.acked[key] = version
        if expected is None:
            return
        seqs = self.key_seqs.get(key, [])
        i = bisect.bisect_left(seqs, version)
        before = _version_of(self.committed[seqs[i - 1]], key) if i > 0 else None
        found = 0 if before is None or before.tombstone else before.version
        if found != expected:
            raise Violation("acked-write-committed",
                            f"{client}'s compare-and-set {request_id} on {key!r} expected version {expected} "
                            f"and was applied as {version}, but the version it replaced is {found}")

    def txn_acked(self, client: str, request_id: str, version: int, succeeded: bool) -> None:
        """`client` was told its transaction `request_id` committed at `version`, taking the success
        branch if `succeeded`."""
        self.acks += 1
        e = self.committed.get(version)
        if e is None or e.request_id != request_id or e.kind != EntryKind.TXN or e.succeeded != succeeded:
            raise Violation("acked-write-committed",
                            f"{client}'s transaction {request_id} was acknowledged as version {version} "
                            f"({'success' if succeeded else 'failure'}), but the committed write there is "
                            f"{_show(e) if e else 'none'}")
        for w in e.writes:
            if version > self.acked.get(w.key, 0):
                self.acked[w.key] = version

    def read_served(self, client: str, key: bytes, value: bytes | None, version: int) -> None:
        """A strong read of `key` returned `value` (None: absent) at `version`."""
        self.reads += 1
        if version == 0:
            if value is not None:
                raise Violation("read-committed", f"{client} read {key!r} = {value!r} at version 0")
            return
        e = self.committed.get(version)
        made = _version_of(e, key)
        if value is None:
            ok = made is not None and made.tombstone
        else:
            ok = made is not None and not made.tombstone and made.value == value
        if not ok:
            got = "absent" if value is None else repr(value)
            raise Violation("read-committed", f"{client} read {key!r} -> {got} at version {version}, but the "
                                              f"committed write there is {_show(e) if e else 'none'}")

    def tail_holds_acked(self, tail: str, store: VersionStore) -> None:
        """End of run: the tail's clean version of every key is at least its last acknowledged one."""
        for key, version in sorted(self.acked.items()):
            kv = store.clean(key)
            newest = self.key_seqs.get(key, [0])[-1]
            collected = kv is None and newest >= version and self.committed[newest].kind == EntryKind.DELETE
            if not collected and (kv is None or kv.version < version):
                raise Violation("acked-write-durable",
                                f"version {version} of {key!r} was acknowledged, but the tail {tail} holds "
                                f"{kv.version if kv else 'nothing'}")


def _show(e: Entry) -> str:
    if e.kind == EntryKind.TXN:
        writes = ", ".join(f"{w.key!r} " + ("delete" if w.tombstone else f"put {w.value!r}") for w in e.writes)
        return f"{e.request_id or '-'} txn {'success' if e.succeeded else 'failure'} [{writes}]"
    what = {EntryKind.PUT: f"put {e.value!r}", EntryKind.DELETE: "delete",
            EntryKind.NOOP: f"noop (current {e.current_version})"}[e.kind]
    return f"{e.request_id or '-'} {e.key!r} {what}"
