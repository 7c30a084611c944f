"""Watch streams checked against the committed order of changes.

A watcher that starts after version V must receive exactly the committed changes to its keys
with versions above V, in version order (a transaction's changes share one version and arrive
together, in any order among themselves), with no gap, no duplicate and nothing uncommitted.

The committed order is not given by the store, so it is rebuilt from what clients saw:

- every write acknowledged `ok` with its `version` is a committed change at that version (a
  transaction's chosen branch: all its puts and deletes at the transaction's version; one whose
  branch only reads changed nothing, and its version is only the point it read at);
- every change a watcher received is evidence that it was committed at that version, if some
  operation of the history could have made it: a put of that value or a delete of that key (or
  a transaction holding one) that did not `fail`. Values are unique in test histories, so a put
  event names its write; an acknowledged write received at another version, two different
  changes to one key at one version, or a change nobody wrote, is a violation;
- acknowledged versions must agree with real time: a write that finished before another
  started has the smaller version.

A change committed by a write of unknown outcome that no watcher received is not in this order,
so no watcher is blamed for missing it; one that some watcher received and another, watching
the same keys over the same versions, did not, is a gap. A watcher is held to the versions up to
the last one it received: whether it would have seen later changes is beyond its history.

Written by hand: checking a stream against a reconstructed order is specific to this store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from keychain.testing.history import Operation, WatchEvent


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change: a put of `value` or a delete of `key`, at `version`."""

    version: int
    type: str
    key: str
    value: str | None


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a watcher's stream (or the order it is checked against) is wrong."""

    watch: Operation
    message: str


def check_stream(
    committed: Iterable[Change], from_version: int, events: Sequence[WatchEvent], watched: Operation
) -> str | None:
    """None when `events` are exactly the committed changes to `watched`'s keys after
    `from_version`, up to the last version received, in version order; else what is wrong."""
    received = [Change(e.version, e.type, e.key, e.value) for e in events]
    last = from_version
    seen: set[tuple[int, str]] = set()
    for change in received:
        if change.version <= from_version:
            return f"received {_show(change)}, at or before its start version {from_version}"
        if change.version < last:
            return f"received {_show(change)} after version {last}: out of order"
        if not watched.in_range(change.key):
            return f"received {_show(change)}, outside the keys it watches"
        if (change.version, change.key) in seen:
            return f"received {_show(change)} twice"
        seen.add((change.version, change.key))
        last = change.version
    expected = {c for c in committed if from_version < c.version <= last and watched.in_range(c.key)}
    for change in received:
        if change not in expected:
            return f"received {_show(change)}, which was never committed"
    missing = sorted(expected - set(received), key=lambda c: (c.version, c.key))
    if missing:
        return f"missed {_show(missing[0])} (a gap; {len(missing)} committed changes missed in all)"
    return None


def committed_order(history: Sequence[Operation]) -> tuple[list[Change], str | None, Operation | None]:
    """The committed changes the history proves, and the first contradiction in them (with the
    operation it concerns), if any."""
    writes = [op for op in history if op.is_write]
    at_version: dict[tuple[int, str], Change] = {}
    owner: dict[int, Operation] = {}

    def add(change: Change, op: Operation) -> str | None:
        other = at_version.setdefault((change.version, change.key), change)
        if other != change:
            return f"{_show(other)} and {_show(change)} claim one key at one version"
        return None

    # A transaction whose chosen branch only reads changed nothing: its version is a read point.
    acknowledged = sorted(
        (op for op in writes if op.status == "ok" and op.version is not None and _changes(op)),
        key=lambda op: op.start,
    )
    for op in acknowledged:
        previous = owner.setdefault(op.version, op)  # type: ignore[arg-type]
        if previous is not op:
            return [], f"two writes were acknowledged with version {op.version}", op
        for change in _changes(op):
            problem = add(change, op)
            if problem:
                return [], problem, op
    by_end = sorted(acknowledged, key=lambda op: op.end or 0.0)
    finished, newest = 0, 0  # the newest version acknowledged before the current start
    for later in acknowledged:
        while finished < len(by_end) and (by_end[finished].end or 0.0) < later.start:
            newest = max(newest, by_end[finished].version or 0)
            finished += 1
        if (later.version or 0) <= newest:
            return [], f"version {later.version} was acknowledged after version {newest} had been", later
    puts = {}
    deleted_keys = set()
    for op in writes:
        if op.status == "fail":
            continue
        for kind, key, value in _possible(op):
            if kind == "put":
                puts[value] = (key, op)
            else:
                deleted_keys.add(key)
    for watch in (op for op in history if op.op == "watch"):
        for event in watch.events or ():
            change = Change(event.version, event.type, event.key, event.value)
            if change.type == "put":
                made = puts.get(change.value)
                if made is None or made[0] != change.key:
                    return [], f"{_show(change)} was never written (or its write failed)", watch
                writer = made[1]
                if writer.status == "ok" and writer.version is not None and writer.version != change.version:
                    return [], f"{_show(change)} was acknowledged at version {writer.version}", watch
            elif change.key not in deleted_keys:
                return [], f"{_show(change)}: nothing deleted that key", watch
            problem = add(change, watch)
            if problem:
                return [], problem, watch
    return sorted(at_version.values(), key=lambda c: (c.version, c.key)), None, None


def check_watches(history: Sequence[Operation]) -> Problem | None:
    """None when every watch of the history saw exactly the committed changes it should."""
    committed, problem, op = committed_order(history)
    if problem is not None and op is not None:
        return Problem(op, problem)
    for watch in (op for op in history if op.op == "watch"):
        wrong = check_stream(committed, watch.from_version or 0, watch.events or (), watch)
        if wrong is not None:
            return Problem(watch, f"{watch.client}: {wrong}")
    return None


def _changes(op: Operation) -> list[Change]:
    """The changes an acknowledged write made at its version."""
    assert op.version is not None
    if op.op == "put":
        return [Change(op.version, "put", op.key, op.value)]
    if op.op == "delete":
        return [Change(op.version, "delete", op.key, None)]
    branch = op.success if op.succeeded else op.failure
    return [Change(op.version, o.op, o.key, o.value) for o in branch or () if o.op != "get"]


def _possible(op: Operation) -> list[tuple[str, str, str | None]]:
    """Every change a write not known to have failed might have made (a txn: either branch,
    unless its outcome is known)."""
    if op.op in ("put", "delete"):
        return [(op.op, op.key, op.value)]
    branches = [op.success if op.succeeded else op.failure] if op.status == "ok" else [op.success, op.failure]
    return [(o.op, o.key, o.value) for branch in branches for o in branch or () if o.op != "get"]


def _show(change: Change) -> str:
    what = f"put {change.key!r}={change.value!r}" if change.type == "put" else f"delete {change.key!r}"
    return f"{what} at version {change.version}"
