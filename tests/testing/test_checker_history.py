"""The history model: JSON-lines parsing with errors that name the line, and the recorder."""

from __future__ import annotations

import io
import json

import pytest

from keychain.testing.checker import check
from keychain.testing.history import (
    Compare,
    HistoryError,
    Operation,
    Recorder,
    TxnOp,
    WatchEvent,
    dump_lines,
    parse_lines,
    write_history,
)

LINE = '{"client": "c1", "op": "put", "key": "k", "value": "v", "start": 1.25, "end": 1.31, "status": "ok", "output": null}'


def test_a_line_in_the_documented_format_parses_and_round_trips():
    (op,) = parse_lines([LINE, "   "])
    assert op == Operation("c1", "put", "k", "v", 1.25, 1.31, "ok", None)
    assert parse_lines(dump_lines([op]).splitlines()) == [op]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"op": "cas"}, "'op' must be one of put, get, delete"),
        ({"status": "maybe"}, "'status' must be one of ok, fail, unknown"),
        ({"value": None}, "a put needs a string 'value'"),
        ({"op": "get"}, "a get takes no 'value'"),
        ({"start": "soon"}, "'start' must be a finite number"),
        ({"start": True}, "'start' must be a finite number"),
        ({"end": 1.0}, "'end' (1.0) is before 'start' (1.25)"),
        ({"end": None}, "an 'ok' operation needs an 'end' time"),
        ({"status": "unknown"}, "an 'unknown' operation has no 'end'"),
        ({"client": 7}, "'client' must be a string"),
        ({"output": 3}, "'output' must be a string or null"),
        ({"colour": "red"}, "unknown field(s) 'colour'"),
    ],
)
def test_bad_lines_are_refused_with_the_line_number_and_the_reason(change, error):
    bad = json.dumps({**json.loads(LINE), **change})
    with pytest.raises(HistoryError) as caught:
        parse_lines([LINE, bad], source="h.jsonl")
    assert str(caught.value).startswith("h.jsonl:2: ")
    assert error in str(caught.value)


def test_a_line_missing_a_required_field_is_refused():
    with pytest.raises(HistoryError, match=r"h:1: missing field\(s\) 'key'"):
        parse_lines(['{"client": "c", "op": "get", "start": 1, "end": 2, "status": "ok"}'], source="h")


def test_the_recorder_logs_calls_and_reports_pending_ones_as_unknown():
    rec = Recorder()
    write = rec.invoke("c1", "put", "k", "a", at=1.0)
    read = rec.invoke("c2", "get", "k", at=1.5)
    lost = rec.invoke("c3", "put", "k", "b", at=1.6)
    hung = rec.invoke("c4", "delete", "k", at=1.7)
    rec.ok(write, at=2.0)
    rec.ok(read, at=2.5, output="a")
    rec.fail(lost, at=2.6)
    history = rec.history()
    assert [op.status for op in history] == ["ok", "ok", "fail", "unknown"]
    assert history[3] == Operation("c4", "delete", "k", None, 1.7, None, "unknown")
    assert check(history).ok
    with pytest.raises(HistoryError, match="already completed"):
        rec.ok(write, at=3.0)
    rec.unknown(hung)
    with pytest.raises(HistoryError, match="already completed"):
        rec.ok(hung, at=3.0)
    out = io.StringIO()
    write_history(history, out)
    assert parse_lines(out.getvalue().splitlines()) == history


def test_the_recorder_refuses_bad_calls_when_they_happen():
    rec = Recorder()
    with pytest.raises(HistoryError, match="a put needs a string 'value'"):
        rec.invoke("c1", "put", "k", at=1.0)
    call = rec.invoke("c1", "get", "k", at=1.0)
    with pytest.raises(HistoryError, match="before 'start'"):
        rec.ok(call, at=0.5)
    with pytest.raises(HistoryError, match="no such call"):
        rec.fail(99, at=2.0)


def test_the_recorder_logs_ranges_transactions_and_watch_events():
    rec = Recorder()
    watcher = rec.invoke("w1", "watch", "app/", at=0.5, range_end="app0", from_version=0)
    txn = rec.invoke(
        "c1",
        "txn",
        "",
        at=1.0,
        compare=(Compare("app/a", exists=False),),
        success=(TxnOp("put", "app/a", "1"),),
        failure=(),
    )
    scan = rec.invoke("c2", "range", "app/", at=1.5, range_end="app0", limit=10)
    rec.ok(txn, at=2.0, version=1, succeeded=True, results=(None,))
    rec.event(watcher, WatchEvent(1, "put", "app/a", "1"), at=2.1)
    rec.ok(scan, at=2.5, version=1, items=(("app/a", "1"),))
    running = rec.history()
    assert running[0].status == "unknown" and running[0].end == 2.1 and len(running[0].events or ()) == 1
    rec.unknown(watcher)
    history = rec.history()
    assert [op.status for op in history] == ["unknown", "ok", "ok"]
    assert check(history).ok, check(history).message
    assert parse_lines(dump_lines(history).splitlines()) == history
    with pytest.raises(HistoryError, match="not a running watch"):
        rec.event(scan, WatchEvent(2, "delete", "app/a"), at=3.0)
