"""Watch streams against the committed order: each watcher sees exactly the committed changes to
its keys after its start, in version order, with no gap, no duplicate and nothing uncommitted."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from keychain.testing.checker import check
from keychain.testing.history import Operation, TxnOp, WatchEvent, dump_lines, parse_lines
from keychain.testing.watch_check import Change, check_stream


def put(client: str, key: str, value: str, start: float, end: float | None, version: int | None, status="ok"):
    return Operation(client, "put", key, value, start, end, status, version=version)


def watch(
    client: str,
    events: list[tuple[int, str, str, str | None]],
    *,
    prefix: str = "",
    after: int = 0,
    status: str = "ok",
) -> Operation:
    return Operation(
        client,
        "watch",
        prefix,
        None,
        0.0,
        100.0,
        status,  # type: ignore[arg-type]
        range_end=None if not prefix else prefix[:-1] + chr(ord(prefix[-1]) + 1),
        from_version=after,
        events=tuple(WatchEvent(v, t, k, val) for v, t, k, val in events),  # type: ignore[arg-type]
    )


WRITES = [
    put("c1", "app/a", "a1", 1, 2, 1),
    put("c1", "other", "o1", 2, 3, 2),
    Operation(
        "c2",
        "txn",
        "",
        None,
        3,
        4,
        "ok",
        version=3,
        compare=(),
        succeeded=True,
        results=(None, None),
        success=(TxnOp("put", "app/a", "a2"), TxnOp("delete", "app/b")),
        failure=(),
    ),
    put("c1", "app/b", "b1", 5, 6, 4),
]
ALL_APP = [
    (1, "put", "app/a", "a1"),
    (3, "delete", "app/b", None),
    (3, "put", "app/a", "a2"),
    (4, "put", "app/b", "b1"),
]


def test_watchers_that_saw_exactly_the_committed_changes_pass():
    history = [
        *WRITES,
        watch("w1", ALL_APP, prefix="app/"),
        watch("w2", ALL_APP[3:], prefix="app/", after=3),  # resumed after version 3
        watch("w3", ALL_APP[:1], prefix="app/", status="unknown"),  # cut early: held to what it saw
        watch("w4", [(2, "put", "other", "o1")], prefix="ot"),
    ]
    result = check(history)
    assert result.ok, result.message


def test_a_watcher_that_skipped_an_event_fails():
    result = check([*WRITES, watch("w1", [ALL_APP[0], *ALL_APP[2:]], prefix="app/")])
    assert not result.ok and result.message.startswith(
        "watch stream wrong: w1: missed delete 'app/b' at version 3"
    )


def test_a_watcher_that_got_an_event_twice_fails():
    result = check([*WRITES, watch("w1", [*ALL_APP[:3], ALL_APP[2], ALL_APP[3]], prefix="app/")])
    assert not result.ok and "twice" in result.message


def test_a_watcher_that_got_events_out_of_order_fails():
    result = check([*WRITES, watch("w1", [ALL_APP[0], ALL_APP[3], *ALL_APP[1:3]], prefix="app/")])
    assert not result.ok and "out of order" in result.message


def test_a_watcher_that_saw_an_uncommitted_write_fails():
    failed = put("c3", "app/c", "dirty", 6, 7, None, status="fail")
    result = check([*WRITES, failed, watch("w1", [*ALL_APP, (5, "put", "app/c", "dirty")], prefix="app/")])
    assert not result.ok and "never written (or its write failed)" in result.message


def test_a_write_of_unknown_outcome_that_one_watcher_saw_is_a_gap_for_another():
    lost = put("c3", "app/c", "maybe", 6, None, None, status="unknown")
    saw = watch("w1", [*ALL_APP, (5, "put", "app/c", "maybe")], prefix="app/")
    assert check([*WRITES, lost, saw]).ok
    result = check([*WRITES, lost, saw, watch("w2", [*ALL_APP[:3], (6, "put", "app/a", "x")], prefix="app/")])
    assert not result.ok
    later = put("c1", "app/a", "a3", 7, 8, 6)
    result = check(
        [*WRITES, lost, later, saw, watch("w2", [*ALL_APP, (6, "put", "app/a", "a3")], prefix="app/")]
    )
    assert not result.ok and "w2: missed put 'app/c'='maybe' at version 5" in result.message


def test_a_watcher_must_not_see_events_before_its_start_or_outside_its_keys():
    assert not check([*WRITES, watch("w1", ALL_APP, prefix="app/", after=1)]).ok
    assert not check([*WRITES, watch("w1", [(2, "put", "other", "o1")], prefix="app/")]).ok


def test_an_event_at_another_version_than_the_write_was_acknowledged_with_fails():
    result = check([*WRITES, watch("w1", [(2, "put", "app/a", "a1")], prefix="app/")])
    assert not result.ok and "acknowledged at version 1" in result.message


def test_versions_must_agree_with_real_time():
    history = [put("c1", "k", "1", 0, 1, 5), put("c1", "k", "2", 2, 3, 4), watch("w", [], prefix="k")]
    result = check(history)
    assert not result.ok and "acknowledged after version 5" in result.message


def test_check_stream_takes_the_committed_order_directly():
    committed = [Change(1, "put", "a", "1"), Change(2, "put", "b", "2"), Change(2, "delete", "c", None)]
    everything = watch("w", [])
    events = [WatchEvent(2, "delete", "c"), WatchEvent(2, "put", "b", "2")]  # one txn's changes: any order
    assert check_stream(committed, 1, events, everything) is None
    assert (
        check_stream(committed, 0, events, everything)
        == "missed put 'a'='1' at version 1 (a gap; 1 committed changes missed in all)"
    )


def test_watch_lines_round_trip_through_the_file_format():
    history = [watch("w1", ALL_APP, prefix="app/", status="unknown")]
    assert parse_lines(dump_lines(history).splitlines()) == history


@st.composite
def committed_writes_and_a_watcher(draw):
    """Acknowledged puts and deletes on keys a..c, and a watcher on [b, d) from some version."""
    writes, events = [], []
    for version in range(1, draw(st.integers(1, 12)) + 1):
        key = draw(st.sampled_from(["a", "b", "c"]))
        if draw(st.booleans()):
            writes.append(put("c1", key, f"v{version}", version, version + 0.5, version))
            events.append((version, "put", key, f"v{version}"))
        else:
            writes.append(Operation("c1", "delete", key, None, version, version + 0.5, "ok", version=version))
            events.append((version, "delete", key, None))
    after = draw(st.integers(0, len(writes)))
    seen = [e for e in events if e[0] > after and "b" <= e[2] < "d"]
    return writes, after, seen


def _watching(events, after: int) -> Operation:
    return Operation(
        "w",
        "watch",
        "b",
        None,
        0.0,
        100.0,
        "ok",
        range_end="d",
        from_version=after,
        events=tuple(WatchEvent(*e) for e in events),
    )


@settings(max_examples=200, deadline=None)
@given(committed_writes_and_a_watcher(), st.data())
def test_a_faithful_watcher_passes_and_one_lost_or_repeated_event_fails(case, data):
    writes, after, seen = case
    assert check([*writes, _watching(seen, after)]).ok
    if len(seen) >= 2:
        lost = data.draw(st.integers(0, len(seen) - 2))  # not the last: beyond it nothing is owed
        assert not check([*writes, _watching(seen[:lost] + seen[lost + 1 :], after)]).ok
    if seen:
        repeated = data.draw(st.integers(0, len(seen) - 1))
        assert not check([*writes, _watching([*seen[: repeated + 1], *seen[repeated:]], after)]).ok
