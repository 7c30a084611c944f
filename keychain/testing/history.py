"""Client operation histories: the model, the JSON-lines format and a recorder.

A history is what the clients saw: for each operation, who issued it, what it asked, when it
started and ended on one clock, how it ended and what it returned. One JSON object a line:

    {"client": "c1", "op": "put", "key": "k", "value": "v", "start": 1.25, "end": 1.31,
     "status": "ok", "output": null}

- `put` writes `value`; `delete` removes the key; `get` read `output` (null = absent).
- `status` is `ok` (took effect between `start` and `end`), `fail` (certainly had no effect)
  or `unknown` (may take effect at any time after `start`, or never; its `end` is null).
- `version` (optional): the version an `ok` write was acknowledged with, a range's snapshot
  version, a transaction's version. It orders the committed changes for the watch check.

Multi-key operations add fields of their own, left out of the line when unused (so single-key
lines read and write exactly as before):

- `range`: the keys in [`key`, `range_end`) (`range_end` null: to the end of the key space; a
  prefix P is [P, the prefix's end)), at most `limit` of them (null: no limit), `keys_only`.
  Its output is `items`: `[[key, value], ...]` in key order (value null when `keys_only`).
- `txn`: `compare` (`[{"key", "value": v or null}]` equal to the value, null = absent; or
  `[{"key", "exists": bool}]`), then the `success` or `failure` branch, each a list of
  `{"op": "put"|"delete"|"get", "key", "value"}`. Its output: `succeeded` and `results` (one a
  branch op: the value a get read, null for absent and for writes). `key` is "" (unused).
- `watch`: the changes after `from_version` to keys in [`key`, `range_end`), as `events`
  `[{"version", "type": "put"|"delete", "key", "value"}]` in the order received; `ok` when the
  stream ended cleanly, `unknown` when it was cut; either way `end` is when the client stopped.

`Recorder` is how the simulator and the process tests log their clients' operations as they
happen; whatever is still pending when the history is taken is reported as `unknown`.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

OpKind = Literal["put", "get", "delete", "range", "txn", "watch"]
Status = Literal["ok", "fail", "unknown"]

OP_KINDS: tuple[str, ...] = ("put", "get", "delete", "range", "txn", "watch")
SINGLE_KEY_KINDS = frozenset({"put", "get", "delete"})
STATUSES: tuple[str, ...] = ("ok", "fail", "unknown")
FIELDS: tuple[str, ...] = ("client", "op", "key", "value", "start", "end", "status", "output")
# The fields of the multi-key kinds and `version`, written only when set.
EXTRA_FIELDS: tuple[str, ...] = (
    "version", "range_end", "limit", "keys_only", "items", "compare", "success", "failure",
    "succeeded", "results", "from_version", "events",
)  # fmt: skip
_RANGE_FIELDS = frozenset({"range_end", "limit", "keys_only", "items"})
_TXN_FIELDS = frozenset({"compare", "success", "failure", "succeeded", "results"})
_WATCH_FIELDS = frozenset({"range_end", "from_version", "events"})
_KIND_FIELDS = {"range": _RANGE_FIELDS, "txn": _TXN_FIELDS, "watch": _WATCH_FIELDS}
# Fields that may be left out of a line; they then read as null.
OPTIONAL_FIELDS = frozenset({"value", "end", "output", *EXTRA_FIELDS})


class HistoryError(ValueError):
    """A history that does not follow the format; the message names the line when there is one."""


@dataclass(frozen=True, slots=True)
class Compare:
    """One comparison of a transaction: the key's value equals `value` (None: absent), or, when
    `exists` is set, whether the key exists."""

    key: str
    value: str | None = None
    exists: bool | None = None

    def holds(self, current: str | None) -> bool:
        """Whether the comparison holds when the key's value is `current` (None: absent)."""
        if self.exists is not None:
            return (current is not None) == self.exists
        return current == self.value

    def to_dict(self) -> dict[str, object]:
        if self.exists is not None:
            return {"key": self.key, "exists": self.exists}
        return {"key": self.key, "value": self.value}


@dataclass(frozen=True, slots=True)
class TxnOp:
    """One operation of a transaction's branch."""

    op: Literal["put", "delete", "get"]
    key: str
    value: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"op": self.op, "key": self.key, "value": self.value}


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change a watcher received."""

    version: int
    type: Literal["put", "delete"]
    key: str
    value: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"version": self.version, "type": self.type, "key": self.key, "value": self.value}


Item = tuple[str, str | None]


@dataclass(frozen=True, slots=True)
class Operation:
    """One client operation as the client observed it."""

    client: str
    op: OpKind
    key: str
    value: str | None
    start: float
    end: float | None
    status: Status
    output: str | None = None
    version: int | None = None
    range_end: str | None = None
    limit: int | None = None
    keys_only: bool | None = None
    items: tuple[Item, ...] | None = None
    compare: tuple[Compare, ...] | None = None
    success: tuple[TxnOp, ...] | None = None
    failure: tuple[TxnOp, ...] | None = None
    succeeded: bool | None = None
    results: tuple[str | None, ...] | None = None
    from_version: int | None = None
    events: tuple[WatchEvent, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("client", "key"):
            if not isinstance(getattr(self, name), str):
                raise HistoryError(f"{name!r} must be a string, got {getattr(self, name)!r}")
        if self.op not in OP_KINDS:
            raise HistoryError(f"'op' must be one of {', '.join(OP_KINDS)}, got {self.op!r}")
        if self.status not in STATUSES:
            raise HistoryError(f"'status' must be one of {', '.join(STATUSES)}, got {self.status!r}")
        allowed = _KIND_FIELDS.get(self.op, frozenset())
        for name in EXTRA_FIELDS:
            if name != "version" and name not in allowed and getattr(self, name) is not None:
                raise HistoryError(f"a {self.op} takes no {name!r}")
        if self.version is not None and not _is_int(self.version):
            raise HistoryError(f"'version' must be an integer or null, got {self.version!r}")
        if self.op == "put" and not isinstance(self.value, str):
            raise HistoryError(f"a put needs a string 'value', got {self.value!r}")
        if self.op != "put" and self.value is not None:
            raise HistoryError(f"a {self.op} takes no 'value' (must be null), got {self.value!r}")
        if self.output is not None and not isinstance(self.output, str):
            raise HistoryError(f"'output' must be a string or null, got {self.output!r}")
        _check_time("start", self.start)
        if self.end is not None:
            _check_time("end", self.end)
            if self.end < self.start:
                raise HistoryError(f"'end' ({self.end}) is before 'start' ({self.start})")
        if self.status == "ok" and self.end is None:
            raise HistoryError("an 'ok' operation needs an 'end' time")
        if self.status == "unknown" and self.end is not None and self.op != "watch":
            # The effect of an unknown write may land at any later time, so it has no end.
            raise HistoryError("an 'unknown' operation has no 'end' (must be null)")
        if self.op in _KIND_FIELDS:
            if self.output is not None:
                raise HistoryError(f"a {self.op} has no 'output' (its results have fields of their own)")
            {"range": self._check_range, "txn": self._check_txn, "watch": self._check_watch}[self.op]()

    def _check_range(self) -> None:
        if self.range_end is not None and not isinstance(self.range_end, str):
            raise HistoryError(f"'range_end' must be a string or null, got {self.range_end!r}")
        if self.limit is not None and (not _is_int(self.limit) or self.limit < 1):
            raise HistoryError(f"'limit' must be a positive integer or null, got {self.limit!r}")
        if self.keys_only not in (None, True, False):
            raise HistoryError(f"'keys_only' must be true, false or null, got {self.keys_only!r}")
        if self.status == "ok" and self.items is None:
            raise HistoryError("an 'ok' range needs its 'items'")
        if self.status != "ok" and self.items is not None:
            raise HistoryError("only an 'ok' range has 'items'")

    def _check_txn(self) -> None:
        if self.key != "":
            raise HistoryError("a txn's 'key' is unused and must be empty")
        if self.compare is None or self.success is None or self.failure is None:
            raise HistoryError("a txn needs 'compare', 'success' and 'failure' (lists, maybe empty)")
        if self.status == "ok":
            if self.succeeded is None or self.results is None:
                raise HistoryError("an 'ok' txn needs 'succeeded' and 'results'")
            branch = self.success if self.succeeded else self.failure
            if len(self.results) != len(branch):
                raise HistoryError(f"'results' has {len(self.results)} entries for {len(branch)} branch ops")
        elif self.succeeded is not None or self.results is not None:
            raise HistoryError("only an 'ok' txn has 'succeeded' and 'results'")

    def _check_watch(self) -> None:
        if self.from_version is None or not _is_int(self.from_version) or self.from_version < 0:
            raise HistoryError(f"a watch needs a 'from_version' >= 0, got {self.from_version!r}")
        if self.events is None:
            raise HistoryError("a watch needs its 'events' (a list, maybe empty)")
        if self.status == "fail" or self.end is None:
            raise HistoryError("a watch is 'ok' or 'unknown' (cut) and has the 'end' its client stopped at")

    @property
    def is_write(self) -> bool:
        """Whether the operation may change the key space (a txn may)."""
        return self.op in ("put", "delete", "txn")

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys the operation names (a range's and watch's interval bounds are not keys)."""
        if self.op == "txn":
            named = [c.key for c in self.compare or ()] + [
                o.key for o in (self.success or ()) + (self.failure or ())
            ]
            return tuple(dict.fromkeys(named))
        if self.op == "range":
            return tuple(k for k, _ in self.items or ())
        if self.op == "watch":
            return ()
        return (self.key,)

    def in_range(self, key: str) -> bool:
        """For a range or watch: whether `key` lies in [key, range_end)."""
        return self.key <= key and (self.range_end is None or key < self.range_end)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {name: getattr(self, name) for name in FIELDS}
        for name in EXTRA_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if name in ("compare", "success", "failure", "events"):
                value = [part.to_dict() for part in value]
            elif name in ("items", "results"):
                value = [list(item) if isinstance(item, tuple) else item for item in value]
            out[name] = value
        return out

    def describe(self) -> str:
        """A short readable form, e.g. `c1 put 'a' [1.000, 1.100] ok`."""
        if self.op == "put":
            what = f"put {self.value!r}"
        elif self.op == "delete":
            what = "delete"
        elif self.op == "range":
            what = f"range [{self.key!r}, {self.range_end!r})" + (
                f" limit {self.limit}" if self.limit else ""
            )
            if self.items is not None:
                what += " -> {" + ", ".join(f"{k!r}: {v!r}" for k, v in self.items) + "}"
        elif self.op == "txn":
            compares = " and ".join(
                f"{c.key!r} exists"
                if c.exists
                else f"{c.key!r} absent"
                if c.exists is False
                else f"{c.key!r} == {c.value!r}"
                for c in self.compare or ()
            )
            what = f"txn if {compares or 'true'} then {_branch(self.success)} else {_branch(self.failure)}"
            if self.succeeded is not None:
                what += f" -> {'success' if self.succeeded else 'failure'} {list(self.results or ())}"
        elif self.op == "watch":
            what = f"watch [{self.key!r}, {self.range_end!r}) from {self.from_version}: {len(self.events or ())} events"
        elif self.status == "ok":
            what = f"get -> {'absent' if self.output is None else repr(self.output)}"
        else:
            what = "get"
        end = "..." if self.end is None else f"{self.end:.6g}"
        return f"{self.client} {what} [{self.start:.6g}, {end}] {self.status}"


def _branch(ops: tuple[TxnOp, ...] | None) -> str:
    return (
        "["
        + ", ".join(f"{o.op} {o.key!r}" + (f"={o.value!r}" if o.op == "put" else "") for o in ops or ())
        + "]"
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_time(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise HistoryError(f"{name!r} must be a finite number of seconds, got {value!r}")


def parse_operation(obj: object) -> Operation:
    """Build an Operation from one decoded JSON object, rejecting missing or unknown fields."""
    if not isinstance(obj, dict):
        raise HistoryError(f"expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(FIELDS) - set(EXTRA_FIELDS))
    if unknown:
        raise HistoryError(f"unknown field(s) {', '.join(map(repr, unknown))}")
    missing = [name for name in FIELDS if name not in obj and name not in OPTIONAL_FIELDS]
    if missing:
        raise HistoryError(f"missing field(s) {', '.join(map(repr, missing))}")
    start, end = obj["start"], obj.get("end")
    _check_time("start", start)
    if end is not None:
        _check_time("end", end)
    return Operation(
        client=obj["client"],
        op=obj["op"],
        key=obj["key"],
        value=obj.get("value"),
        start=float(start),
        end=None if end is None else float(end),
        status=obj["status"],
        output=obj.get("output"),
        **_parse_extra(obj),
    )


def _parse_extra(obj: dict) -> dict[str, object]:
    """The multi-key fields of a decoded line, as the immutable values Operation holds."""
    out: dict[str, object] = {name: obj[name] for name in EXTRA_FIELDS if obj.get(name) is not None}
    try:
        if "items" in out:
            out["items"] = tuple(_item(item) for item in _list(out["items"], "items"))
        for name in ("success", "failure"):
            if name in out:
                out[name] = tuple(_txn_op(part) for part in _list(out[name], name))
        if "compare" in out:
            out["compare"] = tuple(_compare(part) for part in _list(out["compare"], "compare"))
        if "results" in out:
            out["results"] = tuple(_optional_text(r, "results") for r in _list(out["results"], "results"))
        if "events" in out:
            out["events"] = tuple(_event(part) for part in _list(out["events"], "events"))
    except (TypeError, KeyError) as exc:
        raise HistoryError(f"malformed multi-key field: {exc}") from None
    if "succeeded" in out and not isinstance(out["succeeded"], bool):
        raise HistoryError(f"'succeeded' must be true, false or null, got {out['succeeded']!r}")
    return out


def _list(value: object, name: str) -> list:
    if not isinstance(value, list):
        raise HistoryError(f"{name!r} must be a list, got {value!r}")
    return value


def _optional_text(value: object, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise HistoryError(f"{name!r} holds strings or null, got {value!r}")
    return value


def _item(value: object) -> Item:
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], str):
        raise HistoryError(f"an item is [key, value], got {value!r}")
    return value[0], _optional_text(value[1], "items")


def _fields(value: object, name: str, allowed: set[str]) -> dict:
    if not isinstance(value, dict) or not isinstance(value.get("key"), str) or set(value) - allowed:
        raise HistoryError(
            f"{name} must be an object with a string 'key' and fields {sorted(allowed)}, got {value!r}"
        )
    return value


def _compare(value: object) -> Compare:
    fields = _fields(value, "a compare", {"key", "value", "exists"})
    if ("exists" in fields) == ("value" in fields) or fields.get("exists") not in (None, True, False):
        raise HistoryError(f"a compare has either 'value' or a boolean 'exists', got {value!r}")
    return Compare(fields["key"], _optional_text(fields.get("value"), "value"), fields.get("exists"))


def _txn_op(value: object) -> TxnOp:
    fields = _fields(value, "a txn op", {"op", "key", "value"})
    kind, text = fields.get("op"), _optional_text(fields.get("value"), "value")
    if kind not in ("put", "delete", "get") or (kind == "put") != (text is not None):
        raise HistoryError(f"a txn op is put (with a value), delete or get, got {value!r}")
    return TxnOp(kind, fields["key"], text)


def _event(value: object) -> WatchEvent:
    fields = _fields(value, "a watch event", {"version", "type", "key", "value"})
    version, kind, text = (
        fields.get("version"),
        fields.get("type"),
        _optional_text(fields.get("value"), "value"),
    )
    if not _is_int(version) or kind not in ("put", "delete") or (kind == "put") != (text is not None):
        raise HistoryError(
            f"a watch event has an integer 'version' and is a put with a value or a delete, got {value!r}"
        )
    return WatchEvent(version, kind, fields["key"], text)


def parse_lines(lines: Iterable[str], source: str = "<history>") -> list[Operation]:
    """Parse JSON lines (blank lines are skipped); an invalid line raises HistoryError naming it."""
    ops: list[Operation] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            ops.append(parse_operation(json.loads(line)))
        except json.JSONDecodeError as exc:
            raise HistoryError(f"{source}:{number}: not valid JSON ({exc.msg})") from None
        except HistoryError as exc:
            raise HistoryError(f"{source}:{number}: {exc}") from None
    return ops


def read_history(path: str | Path) -> list[Operation]:
    """Read a JSON-lines history file."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as file:
            return parse_lines(file, source=str(path))
    except UnicodeDecodeError as exc:
        raise HistoryError(f"{path}: not UTF-8 text ({exc.reason})") from None


def dump_lines(ops: Iterable[Operation]) -> str:
    """The JSON-lines text of a history, one operation a line, fields in the documented order."""
    return "".join(json.dumps(op.to_dict()) + "\n" for op in ops)


def write_history(ops: Iterable[Operation], target: str | Path | IO[str]) -> None:
    """Write a history as JSON lines to a path or an open text file."""
    text = dump_lines(ops)
    if isinstance(target, str | Path):
        Path(target).write_text(text, encoding="utf-8")
    else:
        target.write(text)


class Recorder:
    """Logs client operations as they are invoked and completed, in any clock the caller uses.

    Safe to share between threads (process tests drive several clients at once). Calls still
    pending when `history()` is taken are reported as `unknown`: a client that never heard back
    cannot know whether its write took effect.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[dict[str, object]] = []
        self._closed: set[int] = set()

    def invoke(
        self, client: str, op: OpKind, key: str, value: str | None = None, *, at: float, **request: object
    ) -> int:
        """Record the start of an operation; returns the call id to complete it with.

        `request`: a multi-key operation's own fields (range_end, limit, keys_only; compare,
        success, failure; from_version).
        """
        call = {
            "client": client,
            "op": op,
            "key": key,
            "value": value,
            "start": at,
            "end": None,
            "status": "unknown",
            "output": None,
            **request,
        }
        if op == "watch":
            call.update(events=(), end=at)  # a watch has seen nothing yet; `event` adds to it
        Operation(**call)  # type: ignore[arg-type]  # validate now, not at the end
        with self._lock:
            self._calls.append(call)
            return len(self._calls) - 1

    def event(self, call: int, event: WatchEvent, *, at: float) -> None:
        """A watch received `event` at time `at`."""
        with self._lock:
            record = self._calls[call]
            if record["op"] != "watch" or call in self._closed:
                raise HistoryError(f"call {call} is not a running watch")
            record["events"] = (*record["events"], event)  # type: ignore[misc]
            record["end"] = max(at, record["end"])  # type: ignore[type-var]

    def ok(self, call: int, *, at: float, output: str | None = None, **outcome: object) -> None:
        """The operation succeeded at time `at`; a get passes what it read (None = absent).

        `outcome`: `version`, and a multi-key operation's results (items; succeeded, results;
        events).
        """
        self._finish(call, status="ok", end=at, output=output, **outcome)

    def fail(self, call: int, *, at: float) -> None:
        """The operation certainly had no effect."""
        self._finish(call, status="fail", end=at, output=None)

    def unknown(self, call: int, **outcome: object) -> None:
        """The client gave up without learning the outcome; the effect may still land later.

        For a watch: its stream was cut; it keeps the events it received.
        """
        with self._lock:
            watching = 0 <= call < len(self._calls) and self._calls[call]["op"] == "watch"
        self._finish(call, status="unknown", output=None, **({} if watching else {"end": None}), **outcome)

    def _finish(self, call: int, *, status: Status, **outcome: object) -> None:
        with self._lock:
            if not 0 <= call < len(self._calls):
                raise HistoryError(f"no such call id {call}")
            record = self._calls[call]
            if call in self._closed:
                raise HistoryError(f"call {call} was already completed as {record['status']}")
            updated = {**record, "status": status, **outcome}
            Operation(**updated)  # type: ignore[arg-type]
            self._calls[call] = updated
            self._closed.add(call)

    def history(self) -> list[Operation]:
        """The operations so far, in invocation order (a running watch: as received so far)."""
        with self._lock:
            return [Operation(**call) for call in self._calls]  # type: ignore[arg-type]
