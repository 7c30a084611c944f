"""Transactions at the head: check a transaction against the limits, evaluate its compares against
the newest state (dirty versions included), and turn the chosen branch into one TXN entry.

Pure functions: `ChainCore` calls them when it sequences a TXN write, with a lookup of each key's
newest version, and appends the entry they build. All writes of the branch go under the entry's one
seq, so every node applies them (and later cleans them) together, and a reader sees all or none.

Semantics (etcd's, on KeychainDB's versions):
- a compare on `version` compares the key's version (0: absent or deleted) by EQUAL, NOT_EQUAL,
  GREATER or LESS; on `value` the key's value, EQUAL or NOT_EQUAL (an absent key equals no value);
  on `exists` whether the key is present, EQUAL or NOT_EQUAL;
- the branch's ops run in order at the transaction's seq: a get sees the branch's earlier writes
  (found, value, and the version it read: the transaction's seq for a key the branch wrote); a
  write's result carries the transaction's seq;
- a key written twice in the branch keeps its last write: the entry holds one write per key.
"""

from __future__ import annotations

from collections.abc import Callable

from keychain.node.messages import (
    Code,
    Compare,
    CompareResult,
    CompareTarget,
    Entry,
    EntryKind,
    Error,
    KeyVersion,
    Txn,
    TxnOpKind,
    TxnOpResult,
    TxnWrite,
)

Latest = Callable[[bytes], KeyVersion | None]  # a key's newest version (a tombstone included), or None


def ops_count(txn: Txn) -> int:
    """What counts against the ops limit: every compare and every op of both branches."""
    return len(txn.compare) + len(txn.success) + len(txn.failure)


def request_bytes(txn: Txn) -> int:
    """What counts against the bytes limit on the way in: every key and value named."""
    total = sum(len(c.key) + len(c.value) for c in txn.compare)
    return total + sum(len(o.key) + len(o.value) for o in (*txn.success, *txn.failure))


def entry_bytes(entry: Entry) -> int:
    """What a TXN entry carries: its writes and the values its gets read."""
    return sum(len(w.key) + len(w.value) for w in entry.writes) + sum(len(r.value) for r in entry.results)


def check(txn: Txn, max_ops: int, max_bytes: int, check_key: Callable[[bytes], Error | None],
          max_value_bytes: int, epoch: int) -> Error | None:
    """Why the transaction cannot be sequenced (limits, keys, operands), or None."""
    n = ops_count(txn)
    if n > max_ops:
        return Error(Code.INVALID_ARGUMENT, f"a transaction of {n} compares and ops is above the limit of {max_ops}",
                     epoch)
    size = request_bytes(txn)
    if size > max_bytes:
        return Error(Code.TOO_LARGE, f"a transaction of {size} bytes is above the limit of {max_bytes}", epoch)
    for c in txn.compare:
        bad = check_key(c.key)
        if bad is not None:
            return bad
        if c.target != CompareTarget.VERSION and c.result in (CompareResult.GREATER, CompareResult.LESS):
            return Error(Code.INVALID_ARGUMENT, f"a compare on {c.target.name.lower()} takes EQUAL or NOT_EQUAL only",
                         epoch)
    for op in (*txn.success, *txn.failure):
        bad = check_key(op.key)
        if bad is not None:
            return bad
        if op.kind == TxnOpKind.PUT and len(op.value) > max_value_bytes:
            return Error(Code.TOO_LARGE, f"value of {len(op.value)} bytes is above the limit of {max_value_bytes}",
                         epoch)
        if op.kind != TxnOpKind.PUT and op.value:
            return Error(Code.INVALID_ARGUMENT, f"a transaction's {op.kind.name.lower()} takes no value", epoch)
    return None


def holds(c: Compare, current: KeyVersion | None) -> bool:
    """Whether one compare holds against the key's newest version."""
    present = current is not None and not current.tombstone
    if c.target == CompareTarget.EXISTS:
        same = present == c.exists
    elif c.target == CompareTarget.VALUE:
        same = present and current is not None and current.value == c.value
    else:
        version = current.version if present and current is not None else 0
        if c.result == CompareResult.GREATER:
            return version > c.version
        if c.result == CompareResult.LESS:
            return version < c.version
        same = version == c.version
    return same if c.result == CompareResult.EQUAL else not same


def evaluate(txn: Txn, seq: int, request_id: str, latest: Latest) -> Entry:
    """The TXN entry at `seq`: the compares decided against `latest`, the chosen branch run."""
    succeeded = all(holds(c, latest(c.key)) for c in txn.compare)
    written: dict[bytes, TxnWrite] = {}  # in the order of each key's last write
    results: list[TxnOpResult] = []
    for op in txn.success if succeeded else txn.failure:
        if op.kind == TxnOpKind.GET:
            w = written.get(op.key)
            if w is not None:
                results.append(TxnOpResult() if w.tombstone else TxnOpResult(True, w.value, seq))
                continue
            kv = latest(op.key)
            if kv is None or kv.tombstone:
                results.append(TxnOpResult())
            else:
                results.append(TxnOpResult(True, kv.value, kv.version))
            continue
        written.pop(op.key, None)
        written[op.key] = TxnWrite(op.key, op.kind == TxnOpKind.DELETE, op.value if op.kind == TxnOpKind.PUT else b"")
        results.append(TxnOpResult(version=seq))
    return Entry(seq, request_id, b"", EntryKind.TXN, writes=tuple(written.values()), succeeded=succeeded,
                 results=tuple(results))
