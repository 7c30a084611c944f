"""The checker on ranges and transactions: checked against the whole key space of the keys they
link, so a half-applied transaction, a dirty read in a range or a wrong `succeeded` is caught."""

from __future__ import annotations

import itertools
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keychain.testing.checker import check
from keychain.testing.history import Compare, Operation, TxnOp, dump_lines, parse_lines


def put(client: str, key: str, value: str, start: float, end: float | None, status: str = "ok") -> Operation:
    return Operation(client, "put", key, value, start, end, status)  # type: ignore[arg-type]


def get(client: str, key: str, output: str | None, start: float, end: float) -> Operation:
    return Operation(client, "get", key, None, start, end, "ok", output)


def scan(
    client: str,
    items: dict[str, str | None],
    start: float,
    end: float,
    *,
    low: str = "",
    high: str | None = None,
    limit: int | None = None,
    keys_only: bool = False,
) -> Operation:
    return Operation(
        client,
        "range",
        low,
        None,
        start,
        end,
        "ok",
        range_end=high,
        limit=limit,
        keys_only=keys_only or None,
        items=tuple(items.items()),
    )


def txn(
    client: str,
    compare: list[Compare],
    success: list[TxnOp],
    failure: list[TxnOp],
    start: float,
    end: float | None,
    *,
    succeeded: bool | None = None,
    results: list[str | None] | None = None,
    status: str = "ok",
) -> Operation:
    return Operation(
        client,
        "txn",
        "",
        None,
        start,
        end,
        status,  # type: ignore[arg-type]
        compare=tuple(compare),
        success=tuple(success),
        failure=tuple(failure),
        succeeded=succeeded,
        results=None if results is None else tuple(results),
    )


def swap(client: str, start: float, end: float | None, a: str, b: str, **outcome) -> Operation:
    """Move both keys to new values at once, whatever they hold."""
    return txn(client, [], [TxnOp("put", "x", a), TxnOp("put", "y", b)], [], start, end, **outcome)


# ---- ranges ----


def test_a_range_that_sees_both_writes_of_a_transaction_or_neither_passes():
    history = [
        put("c1", "x", "x0", 0, 1),
        put("c1", "y", "y0", 1, 2),
        swap("c2", 3, 6, "x1", "y1", succeeded=True, results=[None, None]),
        scan("c3", {"x": "x0", "y": "y0"}, 3.5, 4),
        scan("c4", {"x": "x1", "y": "y1"}, 5, 7),
    ]
    assert check(history).ok, check(history).message


def test_a_range_that_returns_a_half_applied_transaction_fails():
    history = [
        put("c1", "x", "x0", 0, 1),
        put("c1", "y", "y0", 1, 2),
        swap("c2", 3, 6, "x1", "y1", succeeded=True, results=[None, None]),
        scan("c3", {"x": "x1", "y": "y0"}, 4, 5),
    ]
    result = check(history)
    assert not result.ok and result.verdict == "not linearizable"
    assert result.keys == ("x", "y")
    assert "c3 range" in result.message


def test_a_range_that_returns_a_write_which_then_never_committed_fails():
    history = [
        put("c1", "a", "a0", 0, 1),
        put("c2", "b", "dirty", 2, 3, "fail"),  # the head had it, it never committed
        scan("c3", {"a": "a0", "b": "dirty"}, 2.5, 3.5),
        scan("c4", {"a": "a0"}, 4, 5),
    ]
    result = check(history)
    assert not result.ok
    assert [op.client for op in result.window] == ["c3"], "a value nobody wrote needs no search"


def test_a_range_may_return_a_write_of_unknown_outcome_but_then_no_later_range_may_lose_it():
    landed = [
        put("c1", "a", "a0", 0, 1),
        put("c2", "b", "b?", 2, None, "unknown"),
        scan("c3", {"a": "a0", "b": "b?"}, 3, 4),
    ]
    assert check(landed).ok
    lost = [*landed, scan("c4", {"a": "a0"}, 5, 6)]
    assert not check(lost).ok


def test_a_range_missing_a_key_it_covers_fails_and_one_outside_it_does_not_matter():
    base = [put("c1", "k1", "1", 0, 1), put("c1", "k2", "2", 1, 2), put("c1", "z", "9", 2, 3)]
    assert check([*base, scan("c2", {"k1": "1", "k2": "2"}, 4, 5, low="k", high="l")]).ok
    assert not check([*base, scan("c2", {"k1": "1"}, 4, 5, low="k", high="l")]).ok
    assert not check([*base, scan("c2", {"k1": "1", "k2": "2", "z": "9"}, 4, 5, low="k", high="l")]).ok


def test_a_page_is_the_first_limit_keys_at_or_after_its_start():
    base = [put("c1", k, k.upper(), n, n + 0.5) for n, k in enumerate(["a", "b", "c", "d"])]
    assert check([*base, scan("c2", {"b": "B", "c": "C"}, 10, 11, low="b", limit=2)]).ok
    assert check([*base, scan("c2", {"b": None, "c": None}, 10, 11, low="b", limit=2, keys_only=True)]).ok
    assert not check([*base, scan("c2", {"c": "C", "d": "D"}, 10, 11, low="b", limit=2)]).ok, "skipped b"
    assert not check([*base, scan("c2", {"b": "B"}, 10, 11, low="b", limit=2)]).ok, (
        "a short page with more keys"
    )
    assert not check([*base, scan("c2", {"b": None}, 10, 11, low="b", limit=2, keys_only=True)]).ok


def test_a_keys_only_range_sees_a_delete():
    history = [
        put("c1", "a", "1", 0, 1),
        Operation("c1", "delete", "a", None, 2, 3, "ok"),
        scan("c2", {"a": None}, 4, 5, keys_only=True),
    ]
    assert not check(history).ok


# ---- transactions ----


def cas(
    client: str, key: str, old: str | None, new: str, start: float, end: float | None, **outcome
) -> Operation:
    return txn(
        client, [Compare(key, old)], [TxnOp("put", key, new)], [TxnOp("get", key)], start, end, **outcome
    )


def test_compare_and_swap_transactions_that_agree_with_the_state_pass():
    history = [
        put("c1", "k", "v0", 0, 1),
        cas("c2", "k", "v0", "v1", 2, 3, succeeded=True, results=[None]),
        cas("c3", "k", "v0", "v2", 4, 5, succeeded=False, results=["v1"]),
        get("c4", "k", "v1", 6, 7),
    ]
    assert check(history).ok, check(history).message


def test_a_transaction_whose_succeeded_flag_contradicts_the_state_fails():
    history = [
        put("c1", "k", "v0", 0, 1),
        cas("c2", "k", "v0", "v1", 2, 3, succeeded=True, results=[None]),
        cas("c3", "k", "v0", "v2", 4, 5, succeeded=True, results=[None]),  # k was v1 by then
    ]
    result = check(history)
    assert not result.ok and result.verdict == "not linearizable"
    assert "c3 txn" in result.message


def test_a_failed_compare_writes_nothing():
    history = [
        put("c1", "k", "v0", 0, 1),
        cas("c2", "k", "other", "v1", 2, 3, succeeded=False, results=["v0"]),
        get("c3", "k", "v1", 4, 5),
    ]
    assert not check(history).ok


def test_the_gets_of_a_branch_read_at_the_transactions_point():
    history = [
        put("c1", "a", "a0", 0, 1),
        txn(
            "c2",
            [Compare("b", exists=False)],
            [TxnOp("get", "a"), TxnOp("put", "b", "b0")],
            [],
            2,
            3,
            succeeded=True,
            results=["a0", None],
        ),
        put("c1", "a", "a1", 4, 5),
        txn(
            "c3",
            [Compare("b", exists=True)],
            [TxnOp("get", "a"), TxnOp("get", "b")],
            [],
            6,
            7,
            succeeded=True,
            results=["a0", "b0"],
        ),
    ]
    result = check(history)
    assert not result.ok, "a was a1 when c3 read it"
    fixed = [
        *history[:3],
        Operation(
            **{
                **history[3].to_dict(),
                "results": ("a1", "b0"),
                "compare": history[3].compare,
                "success": history[3].success,
                "failure": history[3].failure,
            }
        ),
    ]
    assert check(fixed).ok, check(fixed).message


def test_a_transaction_of_unknown_outcome_may_or_may_not_have_happened():
    before = [
        put("c1", "x", "x0", 0, 1),
        put("c1", "y", "y0", 1, 2),
        swap("c2", 3, None, "x1", "y1", status="unknown"),
    ]
    assert check([*before, scan("c3", {"x": "x0", "y": "y0"}, 10, 11)]).ok
    assert check([*before, scan("c3", {"x": "x1", "y": "y1"}, 10, 11)]).ok
    assert not check([*before, scan("c3", {"x": "x1", "y": "y0"}, 10, 11)]).ok, "never half of it"
    assert not check([*before, scan("c3", {"x": "x1", "y": "y1"}, 10, 11), get("c4", "x", "x0", 12, 13)]).ok


def test_keys_no_multi_key_operation_touches_are_still_checked_alone():
    history = [
        put("c1", "solo", "s1", 0, 1),
        put("c1", "solo", "s2", 2, 3),
        get("c2", "solo", "s1", 4, 5),  # stale
        swap("c3", 0, 1, "x1", "y1", succeeded=True, results=[None, None]),
    ]
    result = check(history)
    assert not result.ok and result.key == "solo" and result.keys == ()


def test_multi_key_lines_round_trip_through_the_file_format():
    history = [
        scan("c1", {"a": "1"}, 0, 1, low="a", high="b", limit=5),
        cas("c2", "k", None, "v", 0, 1, succeeded=True, results=[None]),
        txn("c3", [Compare("k", exists=True)], [TxnOp("delete", "k")], [], 2, None, status="unknown"),
    ]
    assert parse_lines(dump_lines(history).splitlines()) == history
    assert '"items": [["a", "1"]]' in dump_lines(history[:1])


def test_a_random_linearizable_history_over_four_keys_checks_quickly():
    """Several clients issue puts, gets, ranges and 2-key compare-and-swaps over 4 keys; every
    operation takes effect at a random instant in its interval on a real key-value map."""
    rng = random.Random(7)
    keys = ["a", "b", "c", "d"]
    store: dict[str, str] = {}
    clock = [0.0] * 5
    planned = []
    for n in range(300):
        client = rng.randrange(5)
        start = clock[client] + rng.uniform(0, 0.002)
        end = start + rng.uniform(0.001, 0.02)
        clock[client] = end
        planned.append(
            (rng.uniform(start, end), n, client, start, end, rng.choice(["put", "get", "range", "txn"]))
        )
    history = []
    for _effect, n, client, start, end, kind in sorted(planned):
        name = f"c{client}"
        k1, k2 = rng.sample(keys, 2)
        if kind == "put":
            store[k1] = f"v{n}"
            history.append(put(name, k1, f"v{n}", start, end))
        elif kind == "get":
            history.append(get(name, k1, store.get(k1), start, end))
        elif kind == "range":
            history.append(scan(name, {k: store[k] for k in sorted(store) if k >= "b"}, start, end, low="b"))
        else:
            old = store.get(k1)
            holds = old == (old if rng.random() < 0.7 else "stale")
            expect = old if holds else "stale"
            if holds:
                store[k1], store[k2] = f"v{n}", f"w{n}"
            history.append(
                txn(
                    name,
                    [Compare(k1, expect)],
                    [TxnOp("put", k1, f"v{n}"), TxnOp("put", k2, f"w{n}")],
                    [TxnOp("get", k2)],
                    start,
                    end,
                    succeeded=holds,
                    results=[None, None] if holds else [store.get(k2)],
                )
            )
    history.sort(key=lambda op: op.start)
    result = check(history)
    assert result.ok, result.message
    assert result.steps < 20 * len(history), "memoisation and the read rule keep the search near linear"


# ---- against the definition ----


def brute_force_linearizable(ops: list[Operation]) -> bool:
    """Every order of every choice of operations of unknown outcome, tried one by one."""
    required = [op for op in ops if op.status == "ok"]
    optional = [op for op in ops if op.status == "unknown" and op.is_write]
    for size in range(len(optional) + 1):
        for chosen in itertools.combinations(optional, size):
            for order in itertools.permutations([*required, *chosen]):
                if _valid_order(order):
                    return True
    return False


def _valid_order(order: tuple[Operation, ...]) -> bool:
    for i, first in enumerate(order):
        if any(then.end is not None and then.end < first.start for then in order[i + 1 :]):
            return False
    state: dict[str, str] = {}
    for op in order:
        if op.op == "put":
            state[op.key] = op.value  # type: ignore[assignment]
        elif op.op == "delete":
            state.pop(op.key, None)
        elif op.op == "get":
            if state.get(op.key) != op.output:
                return False
        elif op.op == "range":
            inside = [(k, None if op.keys_only else state[k]) for k in sorted(state) if op.in_range(k)]
            if tuple(inside[: op.limit] if op.limit else inside) != op.items:
                return False
        else:
            holds = all(c.holds(state.get(c.key)) for c in op.compare or ())
            if op.status == "ok" and holds != op.succeeded:
                return False
            for n, o in enumerate(op.success if holds else op.failure):  # type: ignore[arg-type]
                if o.op == "get":
                    if op.status == "ok" and op.results[n] != state.get(o.key):  # type: ignore[index]
                        return False
                elif o.op == "put":
                    state[o.key] = o.value  # type: ignore[assignment]
                else:
                    state.pop(o.key, None)
    return True


values = st.sampled_from(["1", "2", None])
keys = st.sampled_from(["a", "b"])


@st.composite
def small_multikey_histories(draw):
    ops = []
    for n in range(draw(st.integers(1, 6))):
        start = float(draw(st.integers(0, 6)))
        end = start + draw(st.integers(0, 3))
        kind = draw(st.sampled_from(["put", "get", "delete", "range", "txn", "txn"]))
        status = draw(st.sampled_from(["ok", "ok", "ok", "unknown", "fail"]))
        end_at = None if status == "unknown" else end
        key = draw(keys)
        if kind == "put":
            ops.append(
                Operation(f"c{n}", "put", key, draw(st.sampled_from(["1", "2"])), start, end_at, status)
            )
        elif kind == "delete":
            ops.append(Operation(f"c{n}", "delete", key, None, start, end_at, status))
        elif kind == "get":
            ops.append(
                Operation(
                    f"c{n}", "get", key, None, start, end_at, status, draw(values) if status == "ok" else None
                )
            )
        elif kind == "range":
            low, high = draw(st.sampled_from([("", None), ("a", "b"), ("b", None)]))
            keys_only = draw(st.booleans())
            items = None
            if status == "ok":
                chosen = draw(st.lists(st.sampled_from(["a", "b"]), unique=True, max_size=2))
                items = tuple(
                    (k, None if keys_only else draw(st.sampled_from(["1", "2"]))) for k in sorted(chosen)
                )
            limit = draw(st.sampled_from([None, 1]))
            ops.append(
                Operation(
                    f"c{n}",
                    "range",
                    low,
                    None,
                    start,
                    end_at,
                    status,
                    range_end=high,
                    limit=limit,
                    keys_only=keys_only or None,
                    items=items,
                )
            )
        else:
            compare = (
                Compare(key, exists=draw(st.booleans()))
                if draw(st.booleans())
                else Compare(key, draw(values)),
            )
            branch = st.lists(st.builds(TxnOp, st.sampled_from(["put", "delete", "get"]), keys), max_size=2)
            success = tuple(
                TxnOp(o.op, o.key, draw(st.sampled_from(["1", "2"])) if o.op == "put" else None)
                for o in draw(branch)
            )
            failure = tuple(
                TxnOp(o.op, o.key, draw(st.sampled_from(["1", "2"])) if o.op == "put" else None)
                for o in draw(branch)
            )
            succeeded = draw(st.booleans()) if status == "ok" else None
            results = None
            if status == "ok":
                results = tuple(
                    draw(values) if o.op == "get" else None for o in (success if succeeded else failure)
                )
            ops.append(
                Operation(
                    f"c{n}",
                    "txn",
                    "",
                    None,
                    start,
                    end_at,
                    status,
                    compare=compare,
                    success=success,
                    failure=failure,
                    succeeded=succeeded,
                    results=results,
                )
            )
    return ops


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_multikey_histories())
def test_the_verdict_agrees_with_trying_every_order_and_the_window_is_itself_a_violation(ops):
    result = check(ops)
    assert result.ok == brute_force_linearizable(ops), result.message
    if not result.ok:
        assert not brute_force_linearizable(list(result.window)), result.message


def test_a_write_of_unknown_outcome_nobody_read_can_still_explain_a_failed_compare():
    refused = txn("c3", [Compare("k", "2")], [TxnOp("put", "k", "3")], [], 4, 5, succeeded=False, results=[])
    maybe = put("c2", "k", "1", 2, None, "unknown")  # nobody reads "1", but it makes k == "2" false
    assert check([put("c1", "k", "2", 0, 1), maybe, refused]).ok
    assert not check([put("c1", "k", "2", 0, 1), refused]).ok
