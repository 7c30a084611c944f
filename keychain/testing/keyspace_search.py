"""Linearizability of multi-key operations: a search over a small key space as a whole.

Ranges and transactions touch several keys at one instant, so a history holding them does not
decompose per key. The checker groups the keys that multi-key operations link (a transaction's
keys; every key of the history inside a range's interval) and hands each group here, with all
of its operations. The model is the group's key space: a tuple holding each key's value (None:
absent), in key order, so a range is a slice of it.

The search is Wing & Gong's with Lowe's memoisation, as for one key (checker.py), on the whole
tuple: pick an operation that may come next in real time, apply it, go on, backtrack when an
observed result cannot be explained; a configuration (operations ordered, key space) seen once
is never explored again. Two exact rules keep it small:

- an operation that only reads (a get, a range, a transaction whose chosen branch writes
  nothing) and agrees with the current key space is taken at once, with no alternative tried:
  moving such a read to the front of any valid completion keeps it valid;
- an operation of unknown outcome whose effect nobody could observe is dropped up front: a put
  of a value no read returned, on a key no transaction compares and no keys-only range covers,
  can always be left out. A transaction of unknown outcome may
  take either branch, evaluated where it is placed, like a write that may or may not happen.

A transaction applies its chosen branch in order at its one instant: a get in the branch sees
the branch's earlier writes, as in etcd.

Written by hand, as checker.py: no maintained Python library checks linearizability.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from keychain.testing.history import Compare, Operation, TxnOp

State = tuple[str | None, ...]
Apply = Callable[[State], State | None]  # the key space after the operation; None: contradicted

_INF = float("inf")


class SearchExhausted(Exception):
    """The search used up its step budget."""


@dataclass(frozen=True, slots=True)
class Step:
    """One operation as the search applies it."""

    start: float
    end: float  # inf for an operation of unknown outcome
    required: bool  # ok operations must be ordered; unknown ones may never happen
    reads_only: bool
    apply: Apply
    index: int  # into the group's operations
    touches: int = 0  # the keys it reads or writes, as a bitset of key positions
    is_txn: bool = False
    tests: int = 0  # the keys whose presence or equality it tests (compares, keys-only ranges)
    unseen: bool = False  # a put of a value no operation saw: only a test can tell it happened


class KeySpace:
    """The keys of one group, in order, and the operations compiled against them."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = sorted(set(keys))
        self.position = {key: i for i, key in enumerate(self.keys)}

    def initial(self) -> State:
        return (None,) * len(self.keys)

    def steps(self, ops: Sequence[Operation]) -> list[Step] | None:
        """The operations that constrain the group; None when one can never be explained."""
        presence = self._presence_observed(ops)
        observed = _observed_values(ops)
        out: list[Step] = []
        for index, op in enumerate(ops):
            if op.status == "fail" or op.op == "watch":
                continue
            required = op.status == "ok"
            if not required and not self._may_matter(op, observed, presence):
                continue
            apply = self._compile(op)
            if apply is None:
                return None
            end = op.end if required and op.end is not None else _INF
            unseen = op.op == "put" and op.value not in observed
            touches, tests = self._touches(op), self._tests(op)
            out.append(
                Step(
                    op.start,
                    end,
                    required,
                    self._reads_only(op),
                    apply,
                    index,
                    touches,
                    op.op == "txn",
                    tests,
                    unseen,
                )
            )
        return out

    def _presence_observed(self, ops: Sequence[Operation]) -> set[int]:
        """Keys on which any write may matter, whatever value it writes: keys whose existence a
        keys-only range sees, and keys a transaction compares (overwriting a value with any other
        makes an equality fail)."""
        keys: set[int] = set()
        for op in ops:
            if op.op == "range" and op.keys_only:
                keys.update(range(*self._slice(op)))
            elif op.op == "txn":
                keys.update(self.position[c.key] for c in op.compare or ())
        return keys

    def _may_matter(self, op: Operation, observed: set[str], presence: set[int]) -> bool:
        """Whether placing an operation of unknown outcome could explain anything."""
        if op.op in ("get", "range"):
            return False
        writes = [TxnOp(op.op, op.key, op.value)] if op.op in ("put", "delete") else []
        if op.op == "txn":
            writes = [w for w in (op.success or ()) + (op.failure or ()) if w.op != "get"]
        return any(
            w.op == "delete" or w.value in observed or self.position[w.key] in presence for w in writes
        )

    def _touches(self, op: Operation) -> int:
        if op.op == "range":
            low, high = self._slice(op)
            return ((1 << high) - 1) ^ ((1 << low) - 1)
        mask = 0
        for key in op.keys:
            mask |= 1 << self.position[key]
        return mask

    def _tests(self, op: Operation) -> int:
        mask = 0
        if op.op == "range" and op.keys_only:
            mask = self._touches(op)
        elif op.op == "txn":
            for c in op.compare or ():
                mask |= 1 << self.position[c.key]
        return mask

    @staticmethod
    def _reads_only(op: Operation) -> bool:
        if op.op in ("get", "range"):
            return True
        if op.op == "txn" and op.status == "ok":
            branch = op.success if op.succeeded else op.failure
            return all(o.op == "get" for o in branch or ())
        return False

    def _slice(self, op: Operation) -> tuple[int, int]:
        low = bisect.bisect_left(self.keys, op.key)
        high = len(self.keys) if op.range_end is None else bisect.bisect_left(self.keys, op.range_end)
        return low, max(low, high)

    def _compile(self, op: Operation) -> Apply | None:
        known = op.status == "ok"
        if op.op == "get":
            return _get(self.position[op.key], op.output)
        if op.op in ("put", "delete"):
            return _write(self.position[op.key], op.value if op.op == "put" else None)
        if op.op == "range":
            if any(not op.in_range(key) for key, _ in op.items or ()):
                return None  # a key outside the range was returned
            low, high = self._slice(op)
            expected = tuple((self.position[k], None if op.keys_only else v) for k, v in op.items or ())
            return _range(low, high, op.limit, bool(op.keys_only), expected)
        compares = [(self.position[c.key], c) for c in op.compare or ()]
        success = [(self.position[o.key], o) for o in op.success or ()]
        failure = [(self.position[o.key], o) for o in op.failure or ()]
        if known:
            return _txn(compares, success, failure, op.succeeded, op.results)
        return _txn(compares, success, failure, None, None)


def _observed_values(ops: Sequence[Operation]) -> set[str]:
    """Every value some operation saw or tested for."""
    seen: set[str] = set()
    for op in ops:
        if op.status != "ok":
            continue
        if op.op == "get" and op.output is not None:
            seen.add(op.output)
        elif op.op == "range":
            seen.update(v for _, v in op.items or () if v is not None)
        elif op.op == "txn":
            seen.update(r for r in op.results or () if r is not None)
    for op in ops:
        if op.op == "txn":
            seen.update(c.value for c in op.compare or () if c.value is not None)
    return seen


def _get(i: int, output: str | None) -> Apply:
    def apply(state: State) -> State | None:
        return state if state[i] == output else None

    return apply


def _write(i: int, value: str | None) -> Apply:
    def apply(state: State) -> State | None:
        return (*state[:i], value, *state[i + 1 :])

    return apply


def _range(low: int, high: int, limit: int | None, keys_only: bool, expected: tuple) -> Apply:
    def apply(state: State) -> State | None:
        present = [(j, None if keys_only else state[j]) for j in range(low, high) if state[j] is not None]
        if limit is not None:
            present = present[:limit]
        return state if tuple(present) == expected else None

    return apply


def _txn(
    compares: list[tuple[int, Compare]],
    success: list[tuple[int, TxnOp]],
    failure: list[tuple[int, TxnOp]],
    succeeded: bool | None,
    results: tuple[str | None, ...] | None,
) -> Apply:
    """A transaction; with `succeeded` None (unknown outcome) any branch, results unchecked."""

    def apply(state: State) -> State | None:
        holds = all(c.holds(state[i]) for i, c in compares)
        if succeeded is not None and holds != succeeded:
            return None
        values = list(state)
        for n, (i, o) in enumerate(success if holds else failure):
            if o.op == "get":
                if results is not None and results[n] != values[i]:
                    return None
            else:
                values[i] = o.value if o.op == "put" else None
        return tuple(values)

    return apply


def search(steps: Sequence[Step], initial: State, max_steps: int) -> tuple[bool, int]:
    """Whether some order explains every required step, and the search steps used.

    Raises SearchExhausted past `max_steps` configurations.
    """
    order = sorted(range(len(steps)), key=lambda i: steps[i].start)
    ops = [steps[i] for i in order]
    required = [pos for pos, s in enumerate(ops) if s.required]
    optional = [pos for pos, s in enumerate(ops) if not s.required]
    by_end = sorted(required, key=lambda pos: ops[pos].end)
    all_required = 0
    for pos in required:
        all_required |= 1 << pos
    if not required:
        return True, 0
    n_required = len(required)
    cache: set[tuple[int, State]] = {(0, initial)}
    # A node: (operations ordered, key space, first unordered required op, the same by end).
    stack: list[tuple[int, State, int, int]] = [(0, initial, 0, 0)]
    used = 0
    while stack:
        used += 1
        if used > max_steps:
            raise SearchExhausted
        done, state, p_start, p_end = stack.pop()
        if done & all_required == all_required:
            return True, used
        while (done >> required[p_start]) & 1:
            p_start += 1
        while (done >> by_end[p_end]) & 1:
            p_end += 1
        horizon = ops[by_end[p_end]].end  # nothing that starts after this can come next
        children: list[int] = []
        states: list[State] = []
        taken = False
        waiting = 0  # the keys the required operations that may come next touch
        stuck = 0  # the keys of those that cannot come next in the current key space
        stuck_tests = 0  # the keys whose presence or equality those test
        for j in range(p_start, n_required):
            pos = required[j]
            step = ops[pos]
            if step.start > horizon:
                break
            if (done >> pos) & 1:
                continue
            waiting |= step.touches
            after = step.apply(state)
            if after is None:
                stuck |= step.touches
                stuck_tests |= step.tests
                continue
            if step.reads_only:  # a read that agrees now: take it, nothing else
                children, states, taken = [pos], [after], True
                break
            children.append(pos)
            states.append(after)
        if not taken and optional:
            # An operation of unknown outcome can always be moved later, up to the next operation
            # that touches its keys, or dropped when none does: so it is placed only where such
            # an operation may come next. A put or delete (its effect does not depend on the key
            # space) can even be moved past, or dropped before, a required operation that can
            # come next without it: the required operation's branch is known, so both orders
            # give it the same result and leave the same key space (or its write hides the
            # put's). So a put or delete is placed only before a required operation that cannot
            # come next as things stand, or a transaction of unknown outcome.
            pending = [pos for pos in optional if ops[pos].start <= horizon and not (done >> pos) & 1]
            txn_keys = 0
            for pos in pending:
                if ops[pos].is_txn:
                    txn_keys |= ops[pos].touches
            for pos in pending:
                step = ops[pos]
                if step.is_txn:
                    others = waiting
                    for other in pending:
                        if other != pos:
                            others |= ops[other].touches
                else:
                    # A put of a value nobody saw only helps an operation that tests its key's
                    # presence or equality: one that read the key would have seen the value.
                    others = (stuck_tests if step.unseen else stuck) | txn_keys
                if not step.touches & others:
                    continue
                after = step.apply(state)
                if after is not None:
                    children.append(pos)
                    states.append(after)
        for n in range(len(children) - 1, -1, -1):  # depth first, in start order
            config = (done | (1 << children[n]), states[n])
            if config not in cache:
                cache.add(config)
                stack.append((config[0], config[1], p_start, p_end))
    return False, used
