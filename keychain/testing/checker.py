"""Linearizability checker for key-value histories, and the `keychain check-history` command.

A history is linearizable when every operation can be given one instant between its start and
its end such that, in that order, the operations behave like a single key-value map. Keys are
independent registers, and linearizability is compositional (Herlihy & Wing), so each key is
checked on its own.

Per key, the search is Wing & Gong's: repeatedly pick an operation that may come next (no
pending operation finished before it started), apply it to the register and go on, backtracking
when a read cannot be explained. Lowe's memoisation prunes it: a configuration (set of
operations already ordered, as an int bitset, and the register's value) seen once is never
explored again. Two further rules keep it fast and are exact, not heuristics:

- a read whose output equals the current value is taken at once with no alternative tried
  (moving a read to the front of any valid completion keeps it valid: it changes nothing);
- an `unknown` write is placed only right before a read that returned its value (in any valid
  order an unknown write is either followed at once by such a read, or could be left out), so
  one whose value nobody read is dropped up front; the search succeeds once every `ok`
  operation is ordered, the `unknown` ones left over having never happened.

Operations that `fail` had no effect and are dropped; so are reads that did not complete.
Operations that touch at equal times count as concurrent, so clock granularity never causes a
false rejection.

When a key fails, the checker explains it with a *window*: a small set of that key's operations
that by themselves admit no order. It is found in two steps, each of which only removes or
weakens operations in ways that can never turn a linearizable history into a failing one, so
the window is a genuine witness:

1. the shortest failing prefix in time: cutting the history at time t (operations started
   after t dropped, writes still running at t made `unknown`, reads still running dropped)
   fails for every t past the first violation, so a binary search over read completion times
   finds the earliest moment the history stops making sense;
2. shrinking that prefix by delta debugging: drop chunks of operations, halving the chunk size
   down to one, and keep every drop under which it still fails. A read is dropped alone; a
   write is dropped together with every read that returned the value it wrote (in any valid
   order those reads sit right after it, so nothing else can come to depend on it).

Ranges and transactions touch several keys at once, so their keys are not independent: the keys
they link (a transaction's keys, every key of the history inside a range) are checked together
as one group, on a model of the group's whole key space (keyspace_search.py); keys no multi-key
operation touches are still checked one by one as above. A failing group is explained by the
shortest failing prefix in time, then by dropping the reads it does not need. Watch streams are
checked after the operations, against the committed order (watch_check.py).

The search is bounded by a step budget (and optionally wall-clock seconds for the command);
when it runs out the verdict is `unknown: search budget exhausted`, never a guess.

Written by hand: no maintained Python library checks linearizability; the algorithm follows
Wing & Gong (1993) and Lowe (2017), the approach of Go's porcupine and Jepsen's knossos.
"""

from __future__ import annotations

import argparse
import bisect
import logging
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from keychain.testing import keyspace_search, watch_check
from keychain.testing.history import SINGLE_KEY_KINDS, HistoryError, Operation, parse_lines, read_history

log = logging.getLogger(__name__)

Verdict = Literal["linearizable", "not linearizable", "unknown"]

DEFAULT_MAX_STEPS = 2_000_000
# Steps allowed to each trial while shrinking a failure's window.
_TRIAL_STEPS = 50_000
BUDGET_EXHAUSTED = "unknown: search budget exhausted"

_INF = float("inf")
_PUT, _DELETE, _GET = 0, 1, 2
_KIND_CODES = {"put": _PUT, "delete": _DELETE, "get": _GET}

EXIT_LINEARIZABLE, EXIT_NOT_LINEARIZABLE, EXIT_INVALID, EXIT_UNKNOWN = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Result:
    """The verdict on a history. `key` and `window` name the failing (or undecided) key and the
    operations that could not be ordered; both are empty for a linearizable history."""

    ok: bool
    key: str | None
    window: tuple[Operation, ...]
    message: str
    verdict: Verdict = "linearizable"
    steps: int = 0
    keys: tuple[str, ...] = ()  # every key of a failing group of multi-key operations

    @property
    def exhausted(self) -> bool:
        return self.verdict == "unknown"


class BudgetExhausted(Exception):
    """The search used up its step or time budget before reaching a verdict."""


class _Budget:
    """Steps left for a search, plus an optional external stop condition polled now and then."""

    __slots__ = ("should_stop", "steps_left", "used")

    def __init__(self, steps: int, should_stop: Callable[[], bool] | None = None) -> None:
        self.steps_left = steps
        self.used = 0
        self.should_stop = should_stop


# One operation of one key as the search sees it: a plain tuple keeps the hot loop fast.
# (start, end, kind, argument, required, index into the key's original operations)
_Entry = tuple[float, float, int, "str | None", bool, int]


def _entries(ops: Sequence[Operation]) -> list[_Entry]:
    """The operations that constrain the key: `ok` ones, and writes of unknown outcome."""
    entries: list[_Entry] = []
    for index, op in enumerate(ops):
        if op.status == "fail" or (op.status == "unknown" and op.op == "get"):
            continue
        kind = _KIND_CODES[op.op]
        arg = op.value if kind == _PUT else op.output if kind == _GET else None
        required = op.status == "ok"
        end = op.end if required and op.end is not None else _INF
        entries.append((op.start, end, kind, arg, required, index))
    return entries


def _prune_invisible(entries: list[_Entry]) -> list[_Entry]:
    """Drop unknown writes whose resulting value no read returned: they can always go last."""
    observed = {e[3] for e in entries if e[2] == _GET}
    return [e for e in entries if e[4] or e[2] == _GET or (e[3] if e[2] == _PUT else None) in observed]


def _search(entries: Sequence[_Entry], budget: _Budget) -> bool:
    """Wing & Gong search with Lowe's memoisation on one key's register (initially absent).

    Returns whether some order explains every required entry; raises BudgetExhausted.
    """
    order = sorted(range(len(entries)), key=lambda i: entries[i][0])
    starts = [entries[i][0] for i in order]
    ends = [entries[i][1] for i in order]
    kinds = [entries[i][2] for i in order]
    # A put's argument is its value, a read's its output; a delete leaves the key absent.
    args = [None if entries[i][2] == _DELETE else entries[i][3] for i in order]
    readers: dict[str | None, list[int]] = {}
    writers: dict[str | None, list[int]] = {}
    for pos in range(len(order)):
        (readers if kinds[pos] == _GET else writers).setdefault(args[pos], []).append(pos)
    for value, positions in readers.items():
        # A value read before anything could have written it: no order helps (absent is initial).
        first_write = min((starts[w] for w in writers.get(value, ())), default=_INF)
        if value is not None and any(ends[r] < first_write for r in positions):
            return False
    required_ids = [pos for pos, i in enumerate(order) if entries[i][4]]
    optional_ids = [pos for pos, i in enumerate(order) if not entries[i][4]]
    by_end = sorted(required_ids, key=lambda pos: ends[pos])
    required = 0
    for pos in required_ids:
        required |= 1 << pos
    n_required = len(required_ids)
    if n_required == 0:
        return True

    cache: set[tuple[int, str | None]] = set()
    # A frame: [linearized set, value, pointer into required_ids, pointer into by_end, children, next]
    stack: list[list] = []
    linearized, value, p_start, p_end = 0, None, 0, 0
    steps = 0
    stop = budget.should_stop
    limit = budget.steps_left
    try:
        while True:
            steps += 1
            if steps > limit or (stop is not None and steps & 0xFFF == 0 and stop()):
                raise BudgetExhausted
            if linearized & required == required:
                return True
            while (linearized >> required_ids[p_start]) & 1:
                p_start += 1
            while (linearized >> by_end[p_end]) & 1:
                p_end += 1
            horizon = ends[by_end[p_end]]  # nothing that starts after this can come next
            children: list[tuple[int, str | None]] = []
            wanted: set[str | None] = set()
            chosen_read = -1
            j = p_start
            while j < n_required:
                pos = required_ids[j]
                if starts[pos] > horizon:
                    break
                if not (linearized >> pos) & 1:
                    kind = kinds[pos]
                    if kind == _GET:
                        if args[pos] == value:
                            chosen_read = pos
                            break
                        wanted.add(args[pos])
                    else:
                        children.append((pos, args[pos]))
                j += 1
            if chosen_read >= 0:
                children = [(chosen_read, value)]
            elif any(
                all((linearized >> w) & 1 for w in reversed(writers.get(wish, ()))) for wish in wanted
            ) or (
                all((linearized >> w) & 1 for w in reversed(writers.get(value, ())))
                and any(not (linearized >> r) & 1 for r in reversed(readers.get(value, ())))
            ):
                # A waiting read wants a value nothing left can write, or a read still needs the
                # current value and nothing left can write it again (so it must not be overwritten).
                children = []
            else:
                # An unknown write is only worth placing right before a read of its value: in
                # any valid order it either is, or it could be left out altogether.
                for pos in optional_ids:
                    if starts[pos] > horizon:
                        break
                    if not (linearized >> pos) & 1 and args[pos] in wanted:
                        children.append((pos, args[pos]))
                if wanted and len(children) > 1:
                    # Try first the writes that let a waiting read succeed.
                    children.sort(key=lambda child: child[1] not in wanted)
            stack.append([linearized, value, p_start, p_end, children, 0])
            # Descend into the next unexplored child, backtracking as needed.
            while stack:
                frame = stack[-1]
                kids = frame[4]
                if frame[5] < len(kids):
                    pos, new_value = kids[frame[5]]
                    frame[5] += 1
                    config = (frame[0] | (1 << pos), new_value)
                    if config in cache:
                        continue
                    cache.add(config)
                    linearized, value = config
                    p_start, p_end = frame[2], frame[3]
                    break
                stack.pop()
            else:
                return False
    finally:
        budget.steps_left -= min(steps, limit)
        budget.used += min(steps, limit)


def _cut(entries: Sequence[_Entry], at: float) -> list[_Entry]:
    """The history as it stood at time `at`: later operations dropped, running ones unresolved."""
    out: list[_Entry] = []
    for e in entries:
        start, end, kind, arg, _required, index = e
        if start > at:
            continue
        if end <= at:
            out.append(e)
        elif kind != _GET:
            out.append((start, _INF, kind, arg, False, index))
    return _prune_invisible(out)


def _fails(entries: Sequence[_Entry], budget: _Budget, cap: int | None = None) -> bool:
    """True only if the entries certainly admit no order; a trial that runs past `cap` steps (or
    the budget) counts as not failing, which keeps the explanation sound, only less small."""
    trial = _Budget(budget.steps_left if cap is None else min(cap, budget.steps_left), budget.should_stop)
    try:
        return not _search(entries, trial)
    except BudgetExhausted:
        return False
    finally:
        budget.steps_left -= trial.used
        budget.used += trial.used


def _drop(window: Sequence[_Entry], chosen: set[int]) -> list[_Entry]:
    """Drop the chosen operations; a dropped write takes along every read of the value it wrote.

    Never a false failure: in any valid order, the reads that saw a write's value are exactly
    the ones between it and the next write, so removing all of them leaves a valid order.
    """
    gone = {e[3] for e in window if e[5] in chosen and e[2] != _GET}
    return _prune_invisible([e for e in window if e[5] not in chosen and not (e[2] == _GET and e[3] in gone)])


def _shrink(window: list[_Entry], budget: _Budget) -> list[_Entry]:
    """Drop ever smaller chunks of a failing window (delta debugging), keeping what still fails.

    Big chunks first, oldest first: operations far from the violation usually go all at once.
    """
    size = max(1, len(window) // 2)
    while budget.steps_left > 0:
        order = [e[5] for e in sorted(window, key=lambda e: (e[0], e[5]))]
        changed = False
        for at in range(0, len(order), size):
            trial = _drop(window, set(order[at : at + size]))
            if trial != window and _fails(trial, budget, _TRIAL_STEPS):
                window, changed = trial, True
        if size == 1 and not changed:
            break
        size = max(1, size // 2)
    return window


def _explain(entries: list[_Entry], budget: _Budget) -> tuple[list[_Entry], float]:
    """A small failing window of a failing key history, and the time by which it had failed."""
    read_ends = sorted({e[1] for e in entries if e[2] == _GET})
    low, high = 0, len(read_ends) - 1
    while low < high:  # the smallest cut time at which the history already fails
        mid = (low + high) // 2
        if _fails(_cut(entries, read_ends[mid]), budget):
            high = mid
        else:
            low = mid + 1
    failed_at = read_ends[low] if read_ends else _INF
    window = _cut(entries, failed_at)
    if not _fails(window, budget):  # only when the budget ran short; fall back to the whole key
        return entries, failed_at
    return _shrink(window, budget), failed_at


def _these(count: int) -> str:
    return "this operation" if count == 1 else f"these {count} operations"


def _check_key(key: str, ops: Sequence[Operation], budget: _Budget) -> Result | None:
    """None when the key is linearizable; otherwise the failing or undecided Result."""
    entries = _prune_invisible(_entries(ops))
    try:
        if _search(entries, budget):
            return None
    except BudgetExhausted:
        return Result(
            ok=False,
            key=key,
            window=tuple(ops),
            verdict="unknown",
            steps=budget.used,
            message=f"{BUDGET_EXHAUSTED} on key {key!r} ({len(ops)} operations, {budget.used} steps)",
        )
    explain_budget = _Budget(budget.used + budget.steps_left, budget.should_stop)
    window_entries, failed_at = _explain(entries, explain_budget)
    window = tuple(ops[i] for i in sorted(e[5] for e in window_entries))
    lines = [
        f"not linearizable: key {key!r}: no order of {_these(len(window))} agrees with "
        f"real time and the results (the key's history already fails by t={failed_at:.6g}):"
    ]
    lines += [f"  {op.describe()}" for op in sorted(window, key=lambda op: op.start)]
    return Result(
        ok=False,
        key=key,
        window=window,
        message="\n".join(lines),
        verdict="not linearizable",
        steps=budget.used,
    )


def check(
    history: Iterable[Operation],
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
    should_stop: Callable[[], bool] | None = None,
) -> Result:
    """Decide whether a key-value history is linearizable, and its watch streams right.

    `max_steps` bounds the configurations explored for each key or group of keys (explaining a
    failure gets as much again); `should_stop` is polled every few thousand steps (for a
    wall-clock limit). A failing key wins over an undecided one.
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be positive, got {max_steps}")
    ops: list[Operation] = []
    watches: list[Operation] = []
    by_key: dict[str, list[Operation]] = {}
    multi = False
    for op in history:  # one pass: the common single-key history needs nothing more
        ops.append(op)
        if op.op in SINGLE_KEY_KINDS:
            by_key.setdefault(op.key, []).append(op)
        elif op.op == "watch":
            watches.append(op)
        else:
            multi = True
    groups: list[tuple[list[str], list[Operation]]] = []
    if multi:
        groups, by_key = _groups([op for op in ops if op.op != "watch"])
    undecided: Result | None = None
    steps = 0
    for key, key_ops in by_key.items():
        budget = _Budget(max_steps, should_stop)
        result = _check_key(key, key_ops, budget)
        steps += budget.used
        if result is None:
            continue
        if result.verdict == "not linearizable":
            log.debug("history rejected key=%s window=%d steps=%d", key, len(result.window), steps)
            return result
        undecided = undecided or result
    for keys, group_ops in groups:
        result, used = _check_group(keys, group_ops, max_steps)
        steps += used
        if result is None:
            continue
        if result.verdict == "not linearizable":
            log.debug("history rejected keys=%s window=%d steps=%d", keys, len(result.window), steps)
            return result
        undecided = undecided or result
    if undecided is not None:
        return undecided
    if watches:
        problem = watch_check.check_watches(ops)
        if problem is not None:
            return Result(
                ok=False,
                key=problem.watch.key,
                window=(problem.watch,),
                verdict="not linearizable",
                steps=steps,
                message=f"watch stream wrong: {problem.message}\n  {problem.watch.describe()}",
            )
    key_count = len(by_key) + sum(len(keys) for keys, _ in groups)
    return Result(
        ok=True,
        key=None,
        window=(),
        verdict="linearizable",
        steps=steps,
        message=f"linearizable: {len(ops)} operations over {key_count} keys",
    )


def _groups(
    ops: Sequence[Operation],
) -> tuple[list[tuple[list[str], list[Operation]]], dict[str, list[Operation]]]:
    """Keys linked by multi-key operations, with their operations; and every other key's own.

    A transaction links its keys; a range links every key of the history inside its interval
    (an absent key it did not return constrains it as much as a present one it did).
    """
    multi = [op for op in ops if op.op in ("range", "txn")]
    universe = sorted({key for op in ops for key in op.keys})
    parent = {key: key for key in universe}

    def root(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    anchors: list[tuple[Operation, str]] = []
    for op in multi:
        linked = list(op.keys)
        if op.op == "range":
            low = bisect.bisect_left(universe, op.key)
            high = len(universe) if op.range_end is None else bisect.bisect_left(universe, op.range_end)
            linked += universe[low:high]
        if not linked:
            continue  # a range over no key of the history that returned nothing: nothing to check
        for key in linked[1:]:
            parent[root(key)] = root(linked[0])
        anchors.append((op, linked[0]))
    grouped: dict[str, tuple[list[str], list[Operation]]] = {}
    for _, key in anchors:
        grouped.setdefault(root(key), ([], []))
    by_key: dict[str, list[Operation]] = {}
    for key in universe:
        if root(key) in grouped:
            grouped[root(key)][0].append(key)
    for op in ops:
        if op.op in ("range", "txn"):
            continue
        group = grouped.get(root(op.key))
        (group[1] if group is not None else by_key.setdefault(op.key, [])).append(op)
    for op, key in anchors:
        grouped[root(key)][1].append(op)
    # Keep each group's operations in history order: explanations list them so.
    order = {id(op): n for n, op in enumerate(ops)}
    groups = [(keys, sorted(group_ops, key=lambda op: order[id(op)])) for keys, group_ops in grouped.values()]
    return groups, by_key


class _GroupBudget:
    """Steps left for explaining one group's failure, shared by all its trials."""

    def __init__(self, steps: int) -> None:
        self.left = steps

    def fails(self, space: keyspace_search.KeySpace, ops: Sequence[Operation], cap: int) -> bool:
        """True only if the operations certainly admit no order; a trial that runs past `cap`
        steps (or the budget) counts as not failing."""
        steps = space.steps(ops)
        if steps is None:
            return True
        cap = min(cap, self.left)
        if cap < 1:
            return False
        try:
            ok, used = keyspace_search.search(steps, space.initial(), cap)
        except keyspace_search.SearchExhausted:
            self.left -= cap
            return False
        self.left -= used
        return not ok


def _read_from_nowhere(ops: Sequence[Operation]) -> Operation | None:
    """An `ok` operation that returned a value no write of that key (not failed) had started to
    write by the time it ended: no order explains it, whatever else happened."""
    first_write: dict[tuple[str, str | None], float] = {}
    for op in ops:
        if op.status == "fail" or not op.is_write:
            continue
        puts = [(op.key, op.value)] if op.op == "put" else []
        if op.op == "txn":
            puts = [(o.key, o.value) for o in (op.success or ()) + (op.failure or ()) if o.op == "put"]
        for put in puts:
            first_write[put] = min(first_write.get(put, _INF), op.start)
    for op in ops:
        if op.status != "ok" or op.end is None:
            continue
        seen: list[tuple[str, str | None]] = []
        if op.op == "get":
            seen = [(op.key, op.output)]
        elif op.op == "range":
            seen = list(op.items or ())
        elif op.op == "txn":
            branch = op.success if op.succeeded else op.failure
            seen = [(o.key, r) for o, r in zip(branch or (), op.results or (), strict=False) if o.op == "get"]
        if any(value is not None and first_write.get((key, value), _INF) > op.end for key, value in seen):
            return op
    return None


def _check_group(keys: list[str], ops: list[Operation], max_steps: int) -> tuple[Result | None, int]:
    """None when the group is linearizable; otherwise the failing or undecided Result."""
    space = keyspace_search.KeySpace(keys)
    steps = space.steps(ops)
    used = 0
    nowhere = _read_from_nowhere(ops)
    if steps is not None and nowhere is None:
        try:
            ok, used = keyspace_search.search(steps, space.initial(), max_steps)
        except keyspace_search.SearchExhausted:
            message = f"{BUDGET_EXHAUSTED} on keys {keys!r} ({len(ops)} operations, {max_steps} steps)"
            result = Result(False, keys[0], tuple(ops), message, "unknown", max_steps, tuple(keys))
            return result, max_steps
        if ok:
            return None, used
    if nowhere is not None:
        window, failed_at = [nowhere], nowhere.end or _INF
    else:
        window, failed_at = _explain_group(space, ops, _GroupBudget(max_steps))
    lines = [
        f"not linearizable: keys {keys!r}: no order of {_these(len(window))} agrees with real time "
        f"and the results over the whole key space (it already fails by t={failed_at:.6g}):"
    ]
    lines += [f"  {op.describe()}" for op in sorted(window, key=lambda op: op.start)]
    return Result(
        False, keys[0], tuple(window), "\n".join(lines), "not linearizable", used, tuple(keys)
    ), used


def _cut_ops(ops: Sequence[Operation], at: float) -> list[Operation]:
    """The group's history as it stood at time `at`: later operations dropped, running writes
    and transactions of unknown outcome, running reads dropped."""
    out: list[Operation] = []
    for op in ops:
        if op.start > at or op.status == "fail":
            continue
        if (op.end is not None and op.end <= at) or op.status == "unknown":
            out.append(op)
        elif op.is_write:
            out.append(replace(op, end=None, status="unknown", version=None, succeeded=None, results=None))
    return out


def _explain_group(
    space: keyspace_search.KeySpace, ops: list[Operation], budget: _GroupBudget
) -> tuple[list[Operation], float]:
    """A small failing window: the shortest failing prefix, then without the reads it can spare.

    Both steps only remove reads or weaken writes to unknown outcome, which can never make a
    linearizable history fail, so the window is a genuine witness. A trial that runs out of
    steps counts as not failing; when the budget runs out the window is only less small.
    """
    ends = sorted({op.end for op in ops if op.status == "ok" and op.end is not None and op.op != "put"})
    low, high = 0, len(ends) - 1
    while low < high:
        mid = (low + high) // 2
        if budget.fails(space, _cut_ops(ops, ends[mid]), _TRIAL_STEPS):
            high = mid
        else:
            low = mid + 1
    failed_at = ends[low] if ends else _INF
    window = _cut_ops(ops, failed_at)
    if not budget.fails(space, window, _TRIAL_STEPS):
        return ops, failed_at
    # Delta debugging over the reads: big chunks first, halving down to one.
    size = max(1, len(window) // 2)
    while budget.left > 0:
        reads = [op for op in window if op.status == "ok" and not op.is_write]
        changed = False
        for at in range(0, len(reads), size):
            gone = {id(op) for op in reads[at : at + size]}
            trial = [op for op in window if id(op) not in gone]
            if len(trial) < len(window) and budget.fails(space, trial, _TRIAL_STEPS):
                window, changed = trial, True
        if size == 1 and not changed:
            break
        size = max(1, size // 2)
    return window, failed_at


def main(argv: list[str] | None = None) -> int:
    """`keychain check-history FILE`: 0 linearizable, 1 not, 2 invalid input, 3 undecided."""
    parser = argparse.ArgumentParser(
        prog="keychain check-history",
        description="Check a JSON-lines client history for linearizability (single-key operations, "
        "ranges and transactions) and its watch streams against the committed order. Exit status: "
        "0 linearizable, 1 not linearizable, 2 invalid input, 3 search budget exhausted.",
    )
    parser.add_argument("file", help="history file, one JSON operation a line ('-' reads stdin)")
    parser.add_argument(
        "--max-steps",
        type=int,
        default=DEFAULT_MAX_STEPS,
        help="search configurations to explore before giving up (default %(default)s)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="also give up after this many seconds",
    )
    args = parser.parse_args(argv)
    if args.max_steps < 1:
        parser.error("--max-steps must be positive")
    try:
        ops = parse_lines(sys.stdin, source="<stdin>") if args.file == "-" else read_history(args.file)
    except OSError as exc:
        print(f"keychain check-history: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_INVALID
    except HistoryError as exc:
        print(f"keychain check-history: invalid history: {exc}", file=sys.stderr)
        return EXIT_INVALID
    should_stop = None
    if args.time_limit is not None:
        deadline = time.monotonic() + args.time_limit
        should_stop = lambda: time.monotonic() > deadline  # noqa: E731
    result = check(ops, max_steps=args.max_steps, should_stop=should_stop)
    print(result.message)
    if result.ok:
        return EXIT_LINEARIZABLE
    return EXIT_UNKNOWN if result.exhausted else EXIT_NOT_LINEARIZABLE
