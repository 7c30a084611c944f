"""The linearizability checker: known bad histories rejected with the key and a small window,
known good ones accepted, the search bounded, and generated histories judged correctly."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keychain.testing.checker import BUDGET_EXHAUSTED, check
from keychain.testing.history import Operation, read_history

HISTORIES = Path(__file__).parent / "histories"


def put(client: str, key: str, value: str, start: float, end: float | None, status: str = "ok") -> Operation:
    return Operation(client, "put", key, value, start, end, status)  # type: ignore[arg-type]


def get(client: str, key: str, output: str | None, start: float, end: float) -> Operation:
    return Operation(client, "get", key, None, start, end, "ok", output)


def delete(client: str, key: str, start: float, end: float | None, status: str = "ok") -> Operation:
    return Operation(client, "delete", key, None, start, end, status)  # type: ignore[arg-type]


# fixture -> (key named, operations in the window, as "client op")
NOT_LINEARIZABLE = {
    "stale_read": ("x", ["c1 put", "c1 put", "c2 get"]),
    "lost_acknowledged_write": ("cart", ["c1 put", "c2 get"]),
    "non_monotonic_reads": ("x", ["c1 put", "c2 put", "c3 get", "c4 get"]),
    "resurrected_delete": ("session", ["c1 put", "c2 delete", "c3 get"]),
    "failed_write_observed": ("x", ["c3 get"]),
    "read_from_the_future": ("x", ["c1 get"]),  # by its end, nobody had started writing that value
}
LINEARIZABLE = [
    "unknown_write_shows_up_late",
    "unknown_write_never_happens",
    "concurrent_writes_read_in_either_order",
    "reads_overlapping_a_write",
    "delete_then_absent",
]


@pytest.mark.parametrize("name", sorted(NOT_LINEARIZABLE))
def test_known_violations_are_rejected_naming_the_key_and_window(name):
    key, window = NOT_LINEARIZABLE[name]
    result = check(read_history(HISTORIES / f"{name}.jsonl"))
    assert not result.ok and result.verdict == "not linearizable"
    assert result.key == key
    assert [f"{op.client} {op.op}" for op in result.window] == window
    assert all(op.key == key for op in result.window)
    assert result.message.startswith(f"not linearizable: key {key!r}")


@pytest.mark.parametrize("name", LINEARIZABLE)
def test_known_linearizable_histories_are_accepted(name):
    result = check(read_history(HISTORIES / f"{name}.jsonl"))
    assert result.ok, result.message
    assert result.verdict == "linearizable" and result.key is None and result.window == ()


def test_the_window_of_a_stale_read_in_a_long_history_is_just_the_writes_and_the_read():
    ops = []
    for n in range(60):  # a long healthy prefix the window must leave out
        ops.append(put("c1", "k", f"v{n}", 2 * n, 2 * n + 1))
        ops.append(get("c2", "k", f"v{n}", 2 * n + 1.2, 2 * n + 1.8))
    ops.append(get("c3", "k", "v40", 200.0, 201.0))
    result = check(ops)
    assert not result.ok
    assert [op.describe() for op in result.window] == [
        "c1 put 'v40' [80, 81] ok",
        "c1 put 'v41' [82, 83] ok",
        "c3 get -> 'v40' [200, 201] ok",
    ]
    assert "already fails by t=201" in result.message


def test_a_failed_write_has_no_effect_and_an_unknown_read_constrains_nothing():
    ops = [
        put("c1", "k", "a", 0, 1),
        put("c2", "k", "b", 2, 3, status="fail"),
        Operation("c3", "get", "k", None, 2, None, "unknown", None),
        get("c3", "k", "a", 4, 5),
    ]
    assert check(ops).ok
    assert not check([*ops, get("c4", "k", "b", 6, 7)]).ok


def test_operations_touching_at_the_same_instant_count_as_concurrent():
    ops = [put("c1", "k", "a", 0, 1), get("c2", "k", None, 1, 2)]
    assert check(ops).ok
    assert not check([put("c1", "k", "a", 0, 1), get("c2", "k", None, 1.001, 2)]).ok


def test_many_unknown_writes_are_decided_quickly():
    ops = [put(f"u{n}", "k", f"u{n}", 0.0, None, "unknown") for n in range(40)]
    ops += [get("r", "k", f"u{n}", 10 + n, 10.5 + n) for n in range(0, 40, 2)]
    assert check(ops, max_steps=5_000).ok
    # u0 was read after u2: it cannot come back after that.
    assert check([*ops, get("r", "k", "u0", 100, 101)], max_steps=50_000).key == "k"


def test_an_exhausted_budget_is_reported_as_unknown_not_as_a_verdict():
    ops = [put("c1", "k", "a", 0, 1), put("c2", "k", "b", 0, 1), get("c3", "k", "b", 2, 3)]
    result = check(ops, max_steps=1)
    assert not result.ok and result.exhausted and result.verdict == "unknown"
    assert result.key == "k" and result.message.startswith(BUDGET_EXHAUSTED)
    assert check(ops, max_steps=100).ok


def test_an_external_stop_condition_ends_a_long_search_as_unknown():
    # Twelve concurrent writes, then two reads that no order of them explains: proving that
    # takes thousands of steps, so a stop polled along the way gets its say.
    ops = [put(f"c{n}", "k", f"v{n}", 0, 10) for n in range(12)]
    ops += [get("r", "k", "v0", 11, 12), get("r", "k", "v1", 13, 14)]
    assert check(ops).verdict == "not linearizable"
    assert check(ops, should_stop=lambda: True).verdict == "unknown"


def test_a_failing_key_wins_over_an_undecided_one():
    undecided = [put("c1", "a", "1", 0, 1), put("c2", "a", "2", 0, 1), get("c3", "a", "2", 2, 3)]
    failing = [put("c1", "b", "1", 0, 1), get("c2", "b", None, 2, 3)]
    result = check(undecided + failing, max_steps=2)
    assert result.verdict == "not linearizable" and result.key == "b"


def test_a_non_positive_budget_is_refused():
    with pytest.raises(ValueError, match="max_steps"):
        check([], max_steps=0)


# --- generated histories -------------------------------------------------------------------


@st.composite
def register_runs(draw):
    """A run of a real sequential map: each operation takes effect at its own instant (1, 2, 3, ...)
    and is reported over an interval around it, so intervals overlap at random."""
    keys = draw(st.sampled_from([["k"], ["k", "j"]]))
    count = draw(st.integers(1, 30))
    state: dict[str, str | None] = {}
    ops: list[Operation] = []
    for n in range(count):
        point = float(n + 1)
        key = draw(st.sampled_from(keys))
        client = f"c{draw(st.integers(0, 3))}"
        start = point - draw(st.sampled_from([0.0, 0.3, 1.5, 4.0]))
        end = point + draw(st.sampled_from([0.0, 0.3, 1.5, 4.0]))
        kind = draw(st.sampled_from(["put", "put", "get", "get", "delete"]))
        if kind == "get":
            ops.append(Operation(client, "get", key, None, start, end, "ok", state.get(key)))
            continue
        outcome = draw(st.sampled_from(["ok", "ok", "ok", "unknown", "lost", "fail"]))
        value = f"v{n}" if kind == "put" else None
        if outcome in ("ok", "unknown"):
            state[key] = value  # an unknown write that did happen
        status = {"ok": "ok", "unknown": "unknown", "lost": "unknown", "fail": "fail"}[outcome]
        ops.append(Operation(client, kind, key, value, start, None if status == "unknown" else end, status))
    return ops


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(register_runs())
def test_histories_of_a_real_register_are_accepted(ops):
    result = check(ops, max_steps=200_000)
    assert result.ok, result.message


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(register_runs(), st.data())
def test_a_read_corrupted_to_a_value_not_yet_written_is_rejected(ops, data):
    reads = [i for i, op in enumerate(ops) if op.op == "get"]
    if not reads:
        return
    target = ops[data.draw(st.sampled_from(reads))]
    # A value whose only write started after this read ended, or one nobody ever wrote.
    later = [op.value for op in ops if op.op == "put" and op.key == target.key and op.start > target.end]
    value = data.draw(st.sampled_from([*later, "never-written"]))
    wrong = Operation(target.client, "get", target.key, None, target.start, target.end, "ok", value)
    corrupted = [wrong if op is target else op for op in ops]
    result = check(corrupted, max_steps=200_000)
    assert result.verdict == "not linearizable", result.message
    assert result.key == target.key
    assert wrong in result.window


def brute_force_linearizable(ops: list[Operation]) -> bool:
    """Every order of every choice of unknown writes, tried one by one: the definition itself."""
    from itertools import combinations, permutations

    required = [op for op in ops if op.status == "ok"]
    optional = [op for op in ops if op.status == "unknown" and op.op != "get"]
    for size in range(len(optional) + 1):
        for chosen in combinations(optional, size):
            for order in permutations([*required, *chosen]):
                if _valid_order(order):
                    return True
    return False


def _valid_order(order: tuple[Operation, ...]) -> bool:
    for i, first in enumerate(order):  # nothing placed after `first` may have ended before it started
        if any(then.end is not None and then.end < first.start for then in order[i + 1 :]):
            return False
    state: dict[str, str | None] = {}
    for op in order:
        if op.op == "get" and state.get(op.key) != op.output:
            return False
        if op.op != "get":
            state[op.key] = op.value
    return True


@st.composite
def small_arbitrary_histories(draw):
    ops = []
    for n in range(draw(st.integers(1, 6))):
        start = float(draw(st.integers(0, 6)))
        end = start + draw(st.integers(0, 3))
        kind = draw(st.sampled_from(["put", "get", "delete"]))
        status = draw(st.sampled_from(["ok", "ok", "ok", "unknown", "fail"]))
        value = draw(st.sampled_from(["a", "b"])) if kind == "put" else None
        output = draw(st.sampled_from(["a", "b", None])) if kind == "get" and status == "ok" else None
        ops.append(
            Operation(f"c{n}", kind, "k", value, start, None if status == "unknown" else end, status, output)
        )
    return ops


@settings(max_examples=300, deadline=None)
@given(small_arbitrary_histories())
def test_the_verdict_agrees_with_trying_every_order_and_the_window_is_itself_a_violation(ops):
    result = check(ops)
    assert result.ok == brute_force_linearizable(ops), result.message
    if not result.ok:
        assert not brute_force_linearizable(list(result.window))
